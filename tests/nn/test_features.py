"""Random Fourier features: shapes, closed forms, the RBF kernel limit, contexts."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import flowrox
from flowrox.nn import (
    ConditionedRFFNet,
    HyperFourierFeatures,
    RandomKitchenSinks,
    RBFFourierFeatures,
)
from flowrox.train import trainable_filter

KEY = jax.random.key(0)


@eqx.filter_jit
def jit_call(layer, *args):
    """`layer(*args)`, compiled once per layer and shapes (op by op is far slower)."""
    return layer(*args)


def jit_build(constructor):
    """`constructor()`, compiled as one program."""
    return eqx.filter_jit(constructor)()


def traced_shape(function, *args):
    """The output shape of `function(*args)`, traced, not compiled."""
    return eqx.filter_eval_shape(function, *args).shape


def test_shape_contracts():
    # Traced, not compiled: shapes only.
    sinks = eqx.filter_eval_shape(lambda: RandomKitchenSinks(2, 8, 3, key=KEY))
    features = eqx.filter_eval_shape(lambda: HyperFourierFeatures(2, 8, 3, key=KEY))
    net = eqx.filter_eval_shape(lambda: ConditionedRFFNet(2, 8, 4, 3, key=KEY))
    for leading in [(), (5,), (2, 3)]:
        x = jnp.ones((*leading, 2))
        assert traced_shape(sinks.features, x) == (*leading, 16)
        assert traced_shape(sinks, x) == (*leading, 3)
        for z in [jnp.ones(3), jnp.ones((*leading, 3))]:
            assert traced_shape(features, x, z) == (*leading, 16)
            assert traced_shape(net, x, z) == (*leading, 4)


def test_rbf_features_closed_form_and_unit_diagonal():
    features = jit_build(lambda: RBFFourierFeatures(2, 6, key=KEY, lengthscale=0.5))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    arguments = np.asarray(x) @ np.asarray(features.frequencies).T / 0.5
    expected = np.concatenate([np.cos(arguments), np.sin(arguments)], -1) / np.sqrt(6)
    phi = jit_call(features, x)
    np.testing.assert_allclose(phi, expected, rtol=1e-5, atol=1e-6)
    # cos^2 + sin^2 = 1 for every frequency: k(x, x) = 1 exactly.
    np.testing.assert_allclose(np.sum(np.asarray(phi) ** 2, -1), 1.0, rtol=1e-6)


def _kernel_rms_error(num_features, lengthscale=0.7, n_draws=16):
    x = jnp.linspace(-1.0, 1.0, 9)[:, None] * jnp.array([1.0, -0.5])
    distance2 = jnp.sum((x[:, None] - x[None]) ** 2, -1)
    exact = jnp.exp(-distance2 / (2 * lengthscale**2))

    def error(key):
        phi = RBFFourierFeatures(2, num_features, key=key, lengthscale=lengthscale)(x)
        return jnp.mean((phi @ phi.T - exact) ** 2)

    keys = jax.random.split(jax.random.key(2), n_draws)
    return jnp.sqrt(jnp.mean(jax.vmap(error)(keys)))


def test_rbf_kernel_estimate_converges_like_one_over_sqrt_n():
    small, large = jax.jit(lambda: (_kernel_rms_error(64), _kernel_rms_error(4096)))()
    small, large = float(small), float(large)
    # 64x the features: the error shrinks by sqrt(64) = 8 (Monte Carlo rate).
    assert 0.75 < (large * 8) / small < 1.33
    assert large < 0.02


def test_frequencies_are_a_buffer_the_lengthscale_a_parameter():
    features = jit_build(lambda: RBFFourierFeatures(2, 4, key=KEY))
    trainable = trainable_filter(features)
    assert (trainable.frequencies, trainable.log_lengthscale) == (False, True)
    random = flowrox.bayesian(features, dist.Normal(0.0, 1.0))
    assert isinstance(random.log_lengthscale, flowrox.RandomLeaf)
    assert not isinstance(random.frequencies, flowrox.RandomLeaf)
    # Chosen explicitly, the frequencies take a prior (gradients reach them).
    chosen = flowrox.bayesian(
        features, dist.Normal(0.0, 1.0), where=lambda m: m.frequencies
    )
    assert isinstance(chosen.frequencies, flowrox.RandomLeaf)
    grads = eqx.filter_jit(jax.grad(lambda f: jnp.sum(f(jnp.ones((3, 2))))))(features)
    assert np.all(np.asarray(grads.frequencies) != 0.0)


def test_kitchen_sinks_is_a_linear_readout_of_the_features():
    sinks = jit_build(lambda: RandomKitchenSinks(2, 5, 3, key=KEY))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    phi = np.asarray(jit_call(sinks.features, x))
    expected = phi @ np.asarray(sinks.readout.weight).T + np.asarray(sinks.readout.bias)
    np.testing.assert_allclose(jit_call(sinks, x), expected, rtol=1e-5, atol=1e-6)
    assert (sinks.in_features, sinks.out_features) == (2, 3)


class _Linear(eqx.Module):
    """A parameter network with known output: A z + c."""

    matrix: jax.Array
    offset: jax.Array

    def __call__(self, z):
        return self.matrix @ z + self.offset


def test_hyper_features_closed_form_with_a_given_parameter_net():
    in_features, n, cond_dim = 2, 3, 2
    size = in_features * n + n + 1
    net = _Linear(
        0.3 * jax.random.normal(jax.random.key(3), (size, cond_dim)),
        jax.random.normal(jax.random.key(4), (size,)),
    )
    features = HyperFourierFeatures(
        in_features, n, cond_dim, key=KEY, parameter_net=net
    )
    x = np.asarray(jax.random.normal(jax.random.key(5), (4, in_features)))
    z = np.asarray(jax.random.normal(jax.random.key(6), (4, cond_dim)))
    expected = []
    for x_row, z_row in zip(x, z, strict=True):
        flat = np.asarray(net.matrix) @ z_row + np.asarray(net.offset)
        omega = flat[: in_features * n].reshape(n, in_features)
        phase, log_lengthscale = flat[in_features * n : -1], flat[-1]
        argument = omega @ x_row / np.exp(log_lengthscale) + phase
        expected.append(
            np.concatenate([np.cos(argument), np.sin(argument)]) / np.sqrt(n)
        )
    np.testing.assert_allclose(
        jit_call(features, x, z), np.stack(expected), rtol=1e-5, atol=1e-6
    )


def test_hyper_features_start_as_rbf_features_whatever_the_context():
    features = jit_build(
        lambda: HyperFourierFeatures(1, 512, 2, key=KEY, lengthscale=0.5, init_scale=0)
    )
    x = jnp.linspace(-1.0, 1.0, 5)[:, None]

    @jax.jit
    def check(x):
        first = features(x, jnp.array([3.0, -2.0]))
        second = features(x, jnp.array([-1.0, 0.5]))
        frequencies, _, lengthscale = features.fourier_parameters(jnp.zeros(2))
        return first, second, jnp.std(frequencies), lengthscale

    first, second, frequency_std, lengthscale = check(x)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(lengthscale, 0.5, rtol=1e-6)
    assert abs(float(frequency_std) - 1.0) < 0.1
    exact = np.exp(-((x - x.T) ** 2) / (2 * 0.5**2))
    assert np.max(np.abs(np.asarray(first @ first.T) - exact)) < 0.15


class _Raises(eqx.Module):
    def __call__(self, z):
        raise RuntimeError("the parameter network was called")


def test_hyper_features_do_not_call_the_parameter_net_at_construction():
    features = HyperFourierFeatures(1, 4, 2, key=KEY, parameter_net=_Raises())
    net = ConditionedRFFNet(1, 4, 1, 2, key=KEY, parameter_net=_Raises())
    for layer in (features, net):
        with pytest.raises(RuntimeError, match="was called"):
            layer(jnp.ones((3, 1)), jnp.ones(2))


def test_hyper_features_check_the_parameter_net_output_size():
    net = eqx.nn.MLP(2, 7, 4, 1, key=KEY)  # 1 * 4 + 4 + 1 = 9 expected
    features = HyperFourierFeatures(1, 4, 2, key=KEY, parameter_net=net)
    with pytest.raises(ValueError, match=r"to \(9,\).*got \(7,\)"):
        eqx.filter_eval_shape(features, jnp.ones((3, 1)), jnp.ones(2))


def test_bad_widths_name_both_shapes():
    features = eqx.filter_eval_shape(lambda: HyperFourierFeatures(2, 4, 3, key=KEY))
    with pytest.raises(ValueError, match=r"last axis 2 \(in_features\), got shape"):
        eqx.filter_eval_shape(features, jnp.ones((10, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match=r"expected z of shape \(3,\).*\(10, 3\).*"):
        eqx.filter_eval_shape(features, jnp.ones((10, 2)), jnp.ones((10, 4)))
    with pytest.raises(ValueError, match=r"got \(9, 3\)"):
        eqx.filter_eval_shape(features, jnp.ones((10, 2)), jnp.ones((9, 3)))
    with pytest.raises(ValueError, match="lengthscale > 0"):
        RBFFourierFeatures(2, 4, key=KEY, lengthscale=0.0)


def test_conditioned_rff_net_is_a_readout_of_shared_or_per_sample_features():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 1)).astype(np.float32)
    z = rng.normal(size=(3,)).astype(np.float32)

    def run():
        net = ConditionedRFFNet(1, 6, 2, 3, key=KEY, init_scale=1.0)
        per_sample = jnp.broadcast_to(z, (2, 5, 3))
        features = (net.features(x, z), net.features(x, per_sample))
        return net, features, net(x, per_sample)

    net, (shared, per_sample), y = jit_build(run)
    np.testing.assert_allclose(shared, per_sample, rtol=1e-5, atol=1e-6)
    weight, bias = np.asarray(net.readout.weight), np.asarray(net.readout.bias)
    np.testing.assert_allclose(
        y, np.asarray(shared) @ weight.T + bias, rtol=1e-5, atol=1e-6
    )
    assert (net.in_features, net.out_features, net.cond_dim) == (1, 2, 3)
