"""Couplings on lattices: conv conditioners, checkerboard masks, periodic symmetry."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowrox.bijections import BoundedAffine, Coupling, Shift, coupling_mask
from flowrox.flows import coupling_flow, spline_flow
from flowrox.lattice import FreeField
from flowrox.nn import ConvNet
from flowrox.train import fit_to_density
from tests.helpers import autodiff_log_det


def _perturbed(tree, key, scale=0.3):
    """Every inexact leaf moved by random normal noise: far from the identity."""
    leaves, treedef = jax.tree.flatten(eqx.filter(tree, eqx.is_inexact_array))
    keys = jax.random.split(key, len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, noisy), tree)


def _lattice_flow(builder=coupling_flow, shape=(6, 6), **options):
    return builder(
        jax.random.key(0),
        shape,
        layers=2,
        hidden=4,
        depth=1,
        conditioner="conv",
        activation=jnp.tanh,
        **options,
    )


@eqx.filter_jit
def _checks(bijection, x, condition):
    y, log_det = bijection.transform_and_log_det(x, condition)
    x_back, inverse_log_det = bijection.inverse_and_log_det(y, condition)
    return {
        "log_det": log_det,
        "inverse_log_det": inverse_log_det,
        "x_back": x_back,
        "autodiff": autodiff_log_det(lambda v: bijection.transform(v, condition), x),
        "autodiff_inverse": autodiff_log_det(
            lambda v: bijection.inverse(v, condition), y
        ),
    }


@pytest.mark.parametrize(
    "builder, shape, options",
    [
        (coupling_flow, (6, 6), {}),
        # Two channels of a spline flow, conditioned on a context of three.
        pytest.param(
            spline_flow,
            (2, 4, 4),
            {"num_spatial_dims": 2, "cond_dim": 3, "n_bins": 4},
            marks=pytest.mark.slow,
        ),
    ],
    ids=["affine-6x6", "spline-2x4x4-conditional"],
)
def test_log_det_equals_autodiff_and_the_inverse_round_trips(
    x64, builder, shape, options
):
    flow = _lattice_flow(builder, shape, **options)
    bijection = _perturbed(flow.bijection, jax.random.key(1))
    keys = jax.random.split(jax.random.key(2))
    x = 1.5 * jax.random.normal(keys[0], shape, jnp.float64)
    condition = None
    if "cond_dim" in options:
        condition = jax.random.normal(keys[1], (options["cond_dim"],), jnp.float64)
    out = _checks(bijection, x, condition)
    assert out["log_det"].dtype == jnp.float64
    assert abs(float(out["log_det"])) > 1.0  # far from the identity
    np.testing.assert_allclose(out["log_det"], out["autodiff"], rtol=1e-10)
    np.testing.assert_allclose(out["inverse_log_det"], -out["log_det"], rtol=1e-10)
    np.testing.assert_allclose(out["autodiff_inverse"], -out["log_det"], rtol=1e-10)
    # A spline's inverse solves a quadratic: a little more round-off.
    np.testing.assert_allclose(out["x_back"], x, rtol=1e-8, atol=1e-8)


@eqx.filter_jit
def _transform(bijection, x):
    return bijection.transform_and_log_det(x)


def test_a_new_lattice_flow_is_the_identity():
    flow = _lattice_flow()
    x = 2.0 * jax.random.normal(jax.random.key(1), (6, 6))
    y, log_det = _transform(flow.bijection, x)
    np.testing.assert_array_equal(y, x)  # BoundedAffine at zero: exactly x
    assert float(log_det) == 0.0
    # Only the last convolution of each conditioner starts at zero.
    for coupling in flow.bijection.bijection.bijections:
        first, last = coupling.conditioner.layers
        assert np.all(np.asarray(last.weight) == 0.0)
        assert np.all(np.asarray(last.bias) == 0.0)
        assert np.all(np.asarray(first.weight) != 0.0)


def test_the_conditioner_sees_the_zeroed_field_and_the_context_as_channels():
    # With a Shift template (one parameter), y = x + mask * net(features): the
    # documented layout, checked against the network called by hand.
    shape, cond_dim = (2, 4, 6), 3
    keys = jax.random.split(jax.random.key(0), 3)
    network = ConvNet(2, 2 + cond_dim, 2, hidden_channels=4, depth=1, key=keys[0])
    layer = Coupling(
        Shift(0.0),
        network,
        mask="checkerboard",
        shape=shape,
        cond_shape=(cond_dim,),
        num_spatial_dims=2,
        zero_init=False,
    )
    assert Coupling.conditioner_channels(
        Shift(0.0), shape, num_spatial_dims=2, cond_shape=(cond_dim,)
    ) == (2 + cond_dim, 2)
    x = jax.random.normal(keys[1], shape)
    context = jax.random.normal(keys[2], (cond_dim,))
    # The lattice's checkerboard, shared by both channels of a site.
    mask = np.broadcast_to(coupling_mask((4, 6), "checkerboard"), shape)
    features = jnp.concatenate(
        [jnp.where(mask, 0.0, x), jnp.broadcast_to(context[:, None, None], (3, 4, 6))]
    )
    expected = x + jnp.where(mask, network(features), 0.0)
    y, log_det = layer.transform_and_log_det(x, context)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert float(log_det) == 0.0


@eqx.filter_jit
def _transform_all(bijection, inputs):
    return jax.vmap(lambda x: bijection.transform_and_log_det(x))(inputs)


def _roll(array, steps):
    return jnp.roll(array, steps, axis=(-2, -1))


@pytest.mark.parametrize("shape", [(6, 6), (2, 6, 6)])
def test_translations_that_keep_the_checkerboard_commute_with_the_flow(shape):
    options = {"num_spatial_dims": 2} if len(shape) == 3 else {}
    flow = _lattice_flow(coupling_flow, shape, **options)
    bijection = _perturbed(flow.bijection, jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), shape)
    # A translation keeps the checkerboard when its steps add up to an even
    # number of sites; a step of one site along one axis swaps its colours.
    keeping = [(2, 0), (0, 2), (1, 1), (1, -1), (3, 5)]
    swapping = [(1, 0), (0, 1), (2, 1)]
    inputs = jnp.stack([x] + [_roll(x, steps) for steps in keeping + swapping])
    outputs, log_dets = _transform_all(bijection, inputs)
    y = outputs[0]
    for i, steps in enumerate(keeping, start=1):
        np.testing.assert_allclose(outputs[i], _roll(y, steps), atol=1e-5)
        np.testing.assert_allclose(log_dets[i], log_dets[0], rtol=1e-5)
    for i, steps in enumerate(swapping, start=1 + len(keeping)):
        assert float(jnp.max(jnp.abs(outputs[i] - _roll(y, steps)))) > 1e-2, steps


def test_any_network_of_fields_is_a_conditioner_and_its_last_layer_starts_at_zero():
    # equinox's own circular convolutions: no flowrox class involved.
    keys = jax.random.split(jax.random.key(0), 3)
    network = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 4, 3, padding=1, padding_mode="CIRCULAR", key=keys[0]),
            eqx.nn.Lambda(jnp.tanh),
            eqx.nn.Conv2d(4, 2, 3, padding=1, padding_mode="CIRCULAR", key=keys[1]),
        ]
    )
    options = dict(mask="checkerboard", shape=(6, 6), num_spatial_dims=2)
    x = jax.random.normal(keys[2], (6, 6))
    new = Coupling(BoundedAffine(), network, **options)
    assert np.all(np.asarray(new.conditioner.layers[2].weight) == 0.0)
    assert np.all(np.asarray(new.conditioner.layers[2].bias) == 0.0)
    assert np.any(np.asarray(new.conditioner.layers[0].weight) != 0.0)
    np.testing.assert_array_equal(new.transform(x), x)
    trained = Coupling(BoundedAffine(), network, zero_init=False, **options)
    y = trained.transform(x)
    assert float(jnp.max(jnp.abs(y - x))) > 1e-2
    np.testing.assert_allclose(trained.transform(_roll(x, (1, 1))), _roll(y, (1, 1)))


def test_lattice_couplings_say_what_they_expected():
    affine = BoundedAffine()
    with pytest.raises(ValueError, match=r"num_spatial_dims=3 axes has shape"):
        Coupling(affine, shape=(6, 6), num_spatial_dims=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"num_spatial_dims must be a whole number"):
        Coupling(affine, shape=(6, 6), num_spatial_dims=0, key=jax.random.key(0))
    wrong_channels = ConvNet(2, 1, 3, depth=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"to shape \(2, 6, 6\) \(2 channels"):
        Coupling(affine, wrong_channels, shape=(6, 6), num_spatial_dims=2)
    mlp = eqx.nn.MLP(18, 36, 8, 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"could not be called on a field of shape"):
        Coupling(affine, mlp, shape=(6, 6), num_spatial_dims=2)
    fixed = eqx.nn.Lambda(lambda field: jnp.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match=r"holds no trainable array"):
        Coupling(affine, fixed, shape=(6, 6), num_spatial_dims=2)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"conditioner must be one of"):
        coupling_flow(key, (6, 6), conditioner="cnn")
    with pytest.raises(ValueError, match=r"drop num_spatial_dims"):
        coupling_flow(key, (6, 6), num_spatial_dims=2)
    with pytest.raises(ValueError, match=r"has one element"):
        spline_flow(key, (), conditioner="conv")
    with pytest.raises(ValueError, match=r"got 'half'"):
        coupling_flow(key, (6, 6), conditioner="conv", mask="half")


def _importance_ess(flow, target, key, n=4096):
    x, log_q = jax.jit(lambda k: flow.sample_and_log_prob(k, (n,)))(key)
    log_w = target.log_prob(x) - log_q
    w = jnp.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w**2).sum() / n)


@pytest.mark.slow
def test_a_conv_coupling_flow_learns_the_free_field():
    target = FreeField((6, 6), 1.0, convention="half")
    flow = coupling_flow(
        jax.random.key(0), (6, 6), layers=2, hidden=8, depth=1, conditioner="conv"
    )
    before = _importance_ess(flow, target, jax.random.key(2))
    steps = 400
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adam(optax.cosine_decay_schedule(1e-2, steps)),
    )
    flow, _ = fit_to_density(
        jax.random.key(1),
        flow,
        target.log_prob,
        optimizer=optimizer,
        steps=steps,
        batch_size=128,
        progress=False,
    )
    after = _importance_ess(flow, target, jax.random.key(2))
    assert before < 1e-3
    assert after > 0.5
