"""SIREN and HyperSIREN: shapes, Sitzmann's initialisation, generated weights."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowrox.nn import SIREN, HyperSIREN, siren_bounds
from tests.nn.test_features import jit_build, traced_shape

KEY = jax.random.key(0)


def test_shape_contracts():
    siren = eqx.filter_eval_shape(lambda: SIREN(2, 8, 3, 2, key=KEY))
    nif = eqx.filter_eval_shape(lambda: HyperSIREN(2, 8, 3, 2, cond_dim=4, key=KEY))
    for leading in [(), (5,), (2, 3)]:
        x = jnp.ones((*leading, 2))
        assert traced_shape(siren, x) == (*leading, 3)
        assert traced_shape(siren.layers[0], x) == (*leading, 8)
        for z in [jnp.ones(4), jnp.ones((*leading, 4))]:
            assert traced_shape(nif, x, z) == (*leading, 3)
    weights = eqx.filter_eval_shape(nif.weights, jnp.ones((5, 4)))
    assert [(w.shape, b.shape) for w, b in weights] == [
        ((5, 8, 2), (5, 8)),
        ((5, 8, 8), (5, 8)),
        ((5, 3, 8), (5, 3)),
    ]


def test_siren_bounds_are_sitzmanns():
    bounds = siren_bounds(4, 96, 3, hidden_omega=20.0, c=6.0)
    hidden = np.sqrt(6.0 / 96) / 20.0
    np.testing.assert_allclose(bounds, [0.25, hidden, hidden, hidden])
    siren = eqx.filter_eval_shape(
        lambda: SIREN(4, 96, 1, 3, key=KEY, hidden_omega=20.0)
    )
    assert siren.weight_bounds() == bounds


def _uniform(seed, shape):
    # Test inputs from NumPy: nothing to compile.
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _check_spread(values, bound):
    values = np.asarray(values).ravel()
    # U(-bound, bound): standard deviation bound / sqrt(3), maximum bound.
    assert abs(values.std() * np.sqrt(3) / bound - 1) < 0.1
    assert abs(np.abs(values).max() / bound - 1) < 0.1


def _hidden_pre_activation_stds(weights, omegas, x):
    h, stds = x, []
    for (weight, bias), omega in zip(weights, omegas, strict=True):
        pre_activation = omega * (h @ weight.T + bias)
        stds.append(jnp.std(pre_activation))
        h = jnp.sin(pre_activation)
    return jnp.stack(stds[1:])  # the first layer's spread is set by first_omega


def test_siren_initialisation_spread_and_variance_through_depth():
    x = _uniform(1, (2048, 1))

    def run():
        siren = SIREN(1, 256, 1, 6, key=KEY)
        weights = [(layer.weight, layer.bias) for layer in siren.layers]
        stds = _hidden_pre_activation_stds(weights, siren.omegas, x)
        return siren, stds, siren(x[:5])

    siren, stds, y = jit_build(run)
    *bounds, readout_bound = siren.weight_bounds()
    for layer, bound in zip(siren.layers, bounds, strict=True):
        _check_spread(layer.weight, bound)
        _check_spread(layer.bias, bound)
    _check_spread(siren.readout.weight, readout_bound)
    # Sitzmann's c = 6 gives unit-variance pre-activations at every depth.
    stds = np.asarray(stds)
    assert np.all((stds > 0.8) & (stds < 1.2)), stds
    assert stds.max() / stds.min() < 1.5
    # The network itself: sine layers, then the linear readout.
    h = x[:5].astype(np.float64)
    for layer in siren.layers:
        h = np.sin(30.0 * (h @ np.asarray(layer.weight).T + np.asarray(layer.bias)))
    expected = h @ np.asarray(siren.readout.weight).T + np.asarray(siren.readout.bias)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_hyper_siren_initial_weights_spread_like_a_siren_through_depth():
    x = _uniform(1, (1024, 1))
    contexts = np.random.default_rng(2).normal(size=(32, 2)).astype(np.float32)

    def run():
        # Wide layers: every bias has enough entries for its spread to be measured.
        nif = HyperSIREN(1, 128, 128, 6, cond_dim=2, key=KEY)

        def stds(z):
            return _hidden_pre_activation_stds(nif.weights(z)[:-1], nif.omegas, x)

        return nif.weight_bounds(), nif.weights(contexts), jax.vmap(stds)(contexts[:3])

    bounds, weights, stds = jit_build(run)
    for (weight, bias), bound in zip(weights, bounds, strict=True):
        _check_spread(weight, bound)
        _check_spread(bias, bound)
    # The generated networks keep unit-variance pre-activations through depth.
    for measured in np.asarray(stds):
        assert np.all((measured > 0.75) & (measured < 1.25)), measured
        assert measured.max() / measured.min() < 1.5


def test_hyper_siren_is_the_siren_of_its_generated_weights():
    x = _uniform(1, (7, 2))
    z = np.random.default_rng(2).normal(size=(3,)).astype(np.float32)

    def run():
        nif = HyperSIREN(2, 6, 2, 2, cond_dim=3, key=KEY, first_omega=5)
        per_sample = nif(x, jnp.broadcast_to(z, (7, 3)))
        return nif.omegas, nif(x, z), per_sample, nif.weights(z)

    omegas, shared, per_sample, weights = jit_build(run)
    h = x
    for (weight, bias), omega in zip(weights[:-1], omegas, strict=True):
        h = np.sin(omega * (h @ np.asarray(weight).T + np.asarray(bias)))
    expected = h @ np.asarray(weights[-1][0]).T + np.asarray(weights[-1][1])
    np.testing.assert_allclose(shared, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(per_sample, shared, rtol=1e-4, atol=1e-5)


class _Raises(eqx.Module):
    def __call__(self, z):
        raise RuntimeError("the parameter network was called")


def test_hyper_siren_does_not_call_the_parameter_net_at_construction():
    nif = eqx.filter_eval_shape(
        lambda: HyperSIREN(1, 4, 1, 1, cond_dim=2, key=KEY, parameter_net=_Raises())
    )
    with pytest.raises(RuntimeError, match="was called"):
        eqx.filter_eval_shape(nif, jnp.ones((3, 1)), jnp.ones(2))
    wrong = eqx.filter_eval_shape(
        lambda: HyperSIREN(
            1, 4, 1, 1, cond_dim=2, key=KEY, parameter_net=lambda z: z[:1], latent_dim=3
        )
    )
    with pytest.raises(ValueError, match=r"latent of shape \(3,\).*got \(1,\)"):
        eqx.filter_eval_shape(wrong, jnp.ones((3, 1)), jnp.ones(2))


def test_bad_inputs_name_both_shapes():
    siren = eqx.filter_eval_shape(lambda: SIREN(2, 8, 1, 2, key=KEY))
    with pytest.raises(
        ValueError, match=r"SIREN: expected x with last axis 2.*\(10, 3\)"
    ):
        eqx.filter_eval_shape(siren, jnp.ones((10, 3)))
    nif = eqx.filter_eval_shape(lambda: HyperSIREN(2, 8, 1, 2, cond_dim=4, key=KEY))
    with pytest.raises(ValueError, match=r"expected z of shape \(4,\).*got \(10, 3\)"):
        eqx.filter_eval_shape(nif, jnp.ones((10, 2)), jnp.ones((10, 3)))
    with pytest.raises(ValueError, match="depth of at least 1"):
        SIREN(2, 8, 1, 0, key=KEY)
    with pytest.raises(ValueError, match="hidden_omega and c > 0"):
        HyperSIREN(2, 8, 1, 1, cond_dim=1, key=KEY, c=0.0)


def _sine_family(key, n_functions, n_points):
    a_key, x_key = jax.random.split(key)
    a = jax.random.uniform(a_key, (n_functions, 1), minval=1.0, maxval=3.0)
    x = jax.random.uniform(x_key, (n_functions, n_points, 1), minval=-1.0)
    # f(x) = sin(a x) for x in [-pi, pi], written on t = x / pi in [-1, 1].
    return a, x, jnp.sin(a[:, None] * jnp.pi * x)


def fit_sine_family(model, steps=800, learning_rate=5e-3):
    """Fits `model(x, z)` to sin(a pi x) on [-1, 1] with z = a - 2; held-out MSE."""
    optimiser = optax.adam(learning_rate)
    state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))

    def loss(model, a, x, y):
        z = jnp.broadcast_to((a - 2.0)[:, None], (*x.shape[:-1], 1))
        return jnp.mean((model(x, z) - y) ** 2)

    @eqx.filter_jit
    def step(model, state, key):
        a, x, y = _sine_family(key, 16, 64)
        value, grads = eqx.filter_value_and_grad(loss)(model, a, x, y)
        updates, state = optimiser.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, value

    for key in jax.random.split(jax.random.key(10), steps):
        model, state, _ = step(model, state, key)
    a = jnp.linspace(1.05, 2.95, 7)[:, None]  # new values of a
    x = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, 101)[:, None], (7, 101, 1))
    return float(eqx.filter_jit(loss)(model, a, x, jnp.sin(a[:, None] * jnp.pi * x)))


@pytest.mark.slow
def test_hyper_siren_fits_the_sine_family():
    nif = HyperSIREN(1, 32, 1, 2, cond_dim=1, key=KEY, latent_dim=8, first_omega=10)
    assert fit_sine_family(nif) < 0.01
