"""PointwiseLinearConv, ConvNet, ResNet and FNO: against pdequinox and formulas."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pdequinox
import pytest

from flowrox.nn import FNO, ConvNet, PointwiseLinearConv, ResNet
from tests.nn.test_physics_conv import assert_gradients_match_differences, both, filled


def copied(build, theirs):
    """`build()`'s structure with `theirs`'s arrays, leaf by leaf in order."""
    flat, treedef = jax.tree.flatten(eqx.filter_eval_shape(build))
    arrays = iter(leaf for leaf in jax.tree.leaves(theirs) if eqx.is_array(leaf))
    leaves = []
    for leaf in flat:
        if isinstance(leaf, jax.ShapeDtypeStruct):
            array = next(arrays)
            assert array.shape == leaf.shape
            leaf = array
        leaves.append(leaf)
    assert next(arrays, None) is None
    return jax.tree.unflatten(treedef, leaves)


def _field(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _key():
    return jax.random.key(0)


def test_pointwise_conv_equals_pdequinox_and_draws_its_weights():
    for dims in (1, 2, 3):
        ours, theirs = eqx.filter_jit(
            lambda d=dims: (
                PointwiseLinearConv(d, 3, 4, key=_key()),
                pdequinox.conv.PointwiseLinearConv(d, 3, 4, key=_key()),
            )
        )()
        np.testing.assert_array_equal(ours.weight, theirs.weight)
        np.testing.assert_array_equal(ours.bias, theirs.bias)
        x = _field(dims, (3, *(5, 4, 3)[:dims]))
        np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)
    no_bias = eqx.filter_eval_shape(
        lambda: PointwiseLinearConv(1, 3, 4, use_bias=False, key=_key())
    )
    assert no_bias.bias is None


@pytest.mark.parametrize(
    ("dims", "mode"), [(2, "periodic"), (1, "dirichlet"), (2, "neumann")]
)
def test_conv_net_equals_pdequinox(dims, mode):
    options = dict(hidden_channels=4, depth=2, boundary_mode=mode, key=_key())
    theirs = filled(lambda: pdequinox.arch.ConvNet(dims, 2, 3, **options), dims)
    ours = copied(lambda: ConvNet(dims, 2, 3, **options), theirs)
    x = _field(dims, (2, *(9, 8)[:dims]))
    np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)


def test_res_net_equals_pdequinox():
    options = dict(hidden_channels=4, num_blocks=2, boundary_mode="neumann", key=_key())
    theirs = filled(lambda: pdequinox.arch.ClassicResNet(2, 2, 1, **options), 0)
    ours = copied(lambda: ResNet(2, 2, 1, **options), theirs)
    x = _field(1, (2, 7, 6))
    np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("dims", "grid"), [(1, (32,)), (2, (12, 10))])
def test_fno_equals_pdequinox(dims, grid):
    options = dict(hidden_channels=4, num_modes=4, num_blocks=2, key=_key())
    theirs = filled(lambda: pdequinox.arch.ClassicFNO(dims, 2, 3, **options), dims)
    ours = copied(lambda: FNO(dims, 2, 3, **options), theirs)
    x = _field(dims, (2, *grid))
    np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)


def test_fno_boundary_modes_act_on_the_even_and_odd_extensions():
    options = dict(hidden_channels=4, num_modes=5, num_blocks=1, key=_key())
    periodic = filled(lambda: FNO(2, 1, 2, **options), 0)
    u = np.random.default_rng(1).normal(size=(1, 6, 5))

    def even(a, axis):  # u_0 .. u_{N-1}, u_{N-2} .. u_1
        inner = np.flip(np.take(a, range(1, a.shape[axis] - 1), axis=axis), axis)
        return np.concatenate([a, inner], axis=axis)

    def odd(a, axis):  # 0, u_0 .. u_{N-1}, 0, -u_{N-1} .. -u_0
        zero = np.zeros_like(np.take(a, [0], axis=axis))
        return np.concatenate([zero, a, zero, -np.flip(a, axis)], axis=axis)

    neumann = copied(lambda: FNO(2, 1, 2, **options, boundary_mode="neumann"), periodic)
    dirichlet = copied(
        lambda: FNO(2, 1, 2, **options, boundary_mode="dirichlet"), periodic
    )

    @eqx.filter_jit
    def outputs(u, even_u, odd_u):
        return (
            (neumann(u), periodic(even_u)[:, :6, :5]),
            (dirichlet(u), periodic(odd_u)[:, 1:7, 1:6]),
        )

    for ours, expected in outputs(u, even(even(u, 1), 2), odd(odd(u, 1), 2)):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_gradients_of_an_fno_on_the_even_extension_match_central_differences(x64):
    # The layers' own gradients are checked with the layers; this one adds the
    # extension and restriction of a non-periodic FNO.
    net = filled(
        lambda: FNO(1, 2, 1, hidden_channels=3, num_modes=3, num_blocks=1,
                    boundary_mode="neumann", key=_key()),
        3,
    )  # fmt: skip
    assert_gradients_match_differences(lambda net, x: net(x), net, _field(4, (2, 8)))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: ConvNet(1, 1, 1, depth=-1, key=_key()),
            r"ConvNet: depth must be a whole number of at least 0; got -1",
        ),
        (
            lambda: ConvNet(1, 1, 1, boundary_mode="wrap", key=_key()),
            r"ConvNet: boundary_mode must be one of",
        ),
        (
            lambda: ResNet(1, 1, 1, num_blocks=0, key=_key()),
            r"ResNet: num_blocks must be a whole number of at least 1; got 0",
        ),
        (
            lambda: FNO(1, 1, 1, hidden_channels=0, key=_key()),
            r"FNO: hidden_channels must be a whole number of at least 1; got 0",
        ),
    ],
)
def test_bad_arguments_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        eqx.filter_eval_shape(build)


def test_a_batch_given_to_a_network_names_the_network_and_vmap():
    net = eqx.filter_eval_shape(lambda: FNO(1, 2, 1, key=_key()))
    expected = (
        r"FNO: expected one field of shape \(2, \*spatial\) .* got shape "
        r"\(8, 2, 64\)\. It looks like a batch"
    )
    with pytest.raises(ValueError, match=expected):
        net(jnp.ones((8, 2, 64)))
