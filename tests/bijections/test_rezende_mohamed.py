"""Planar and Radial: the constraints, the inverses and their gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.bijections import Planar, Radial
from tests.bijections.registry_radial import check_the_center_maps_to_itself, unit


def test_fresh_layers_are_the_identity():
    x = jnp.array([0.7, -1.3, 2.1])
    for layer in [Planar(3, key=jax.random.key(0)), Radial(3), Radial(3, alpha=4.0)]:
        y, log_det = layer.transform_and_log_det(x)
        np.testing.assert_array_equal(y, x)
        assert float(log_det) == 0.0


def test_the_radial_center_maps_to_itself_with_finite_log_det_and_gradients():
    check_the_center_maps_to_itself("Radial")


def test_radial_inverse_solves_the_radius_quadratic():
    # A centre at the origin keeps tiny radii exact in float32.
    center = jnp.zeros(3)
    direction = unit(jnp.array([0.3, 0.4, -1.0]))
    radii = jnp.array([0.0, 1e-6, 1e-3, 0.1, 1.0, 10.0, 1e4])
    for alpha, beta in [(0.5, -0.4999), (0.5, -0.3), (2.0, 5.0), (1e-2, 50.0)]:
        layer = Radial(3, center=center, alpha=alpha, beta=beta)
        x = center + radii[:, None] * direction
        y, log_det = jax.vmap(layer.transform_and_log_det)(x)
        # |y - z0| = r (1 + beta / (alpha + r)), in float64 from the stored
        # (float32) parameters.
        stored_alpha = np.exp(np.float64(layer.log_alpha))
        stored_beta = stored_alpha * np.expm1(np.float64(layer.beta_unconstrained))
        r = np.asarray(radii, np.float64)
        np.testing.assert_allclose(
            jnp.linalg.norm(y - center, axis=-1),
            r * (1 + stored_beta / (stored_alpha + r)),
            rtol=2e-6,
            atol=1e-30,
        )
        x_back, inverse_log_det = jax.vmap(layer.inverse_and_log_det)(y)
        np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-5, atol=1e-5)
        # At the centre the log-det is d log(gamma / alpha), gamma = alpha + beta.
        np.testing.assert_allclose(
            log_det[0], 3 * np.log((alpha + beta) / alpha), rtol=1e-4, atol=1e-6
        )


def _random_planar_layers(n, dim=4):
    keys = jax.random.split(jax.random.key(0), 3)
    u = 5.0 * jax.random.normal(keys[0], (n, dim))
    w = jax.random.normal(keys[1], (n, dim))
    layers = eqx.filter_vmap(lambda u, w: Planar(dim, u=u, w=w, b=0.3))(u, w)
    return layers, u, w, jax.random.normal(keys[2], (n, dim))


def _planar_round_trip(layers, x):
    y, log_det = jax.vmap(lambda layer, x: layer.transform_and_log_det(x))(layers, x)
    x_back = jax.vmap(lambda layer, y: layer.inverse(y))(layers, y)
    return x_back, log_det


def test_planar_constraint_holds_for_random_raw_parameters(x64):
    layers, u, w, x = _random_planar_layers(500)
    u_hat = eqx.filter_vmap(lambda layer: layer.u_hat)(layers)
    projection, raw = jnp.sum(w * u_hat, axis=-1), jnp.sum(w * u, axis=-1)
    assert jnp.any(raw < -10.0)  # the constraint was needed, and strongly
    # w.u_hat = m(w.u) > -1, with 1 + m(a) = e^a below zero.
    assert jnp.all(projection > -1.0)
    np.testing.assert_allclose(
        1.0 + projection,
        jnp.where(raw < 0, jnp.exp(raw), 1.0 + raw),
        rtol=1e-8,
        atol=1e-13,
    )
    # u is left alone where it already satisfied w.u >= 0.
    admissible = raw >= 0
    np.testing.assert_allclose(u_hat[admissible], u[admissible], rtol=1e-12)

    # Hence every layer is invertible, also on the hyperplane w.x + b = 0 where
    # the slope along w, 1 + w.u_hat, can be ~1e-7: there alpha solves
    # alpha + kappa tanh(alpha) = target, flat to third order, so x comes back
    # to about (rounding)^(1/3).
    on_plane = x - ((x @ w.T).diagonal() + 0.3)[:, None] * w / jnp.sum(
        w**2, -1, keepdims=True
    )
    for points, atol in [(x, 1e-9), (on_plane, 1e-4)]:
        x_back, log_det = _planar_round_trip(layers, points)
        assert jnp.all(jnp.isfinite(log_det))
        np.testing.assert_allclose(x_back, points, atol=atol)


def test_planar_round_trip_for_random_raw_parameters_in_float32():
    layers, _, _, x = _random_planar_layers(500)
    x_back, log_det = _planar_round_trip(layers, x)
    assert jnp.all(jnp.isfinite(log_det))
    # Where the Jacobian is near-singular (w.u_hat ~ -1 and w.x + b ~ 0) float32
    # cannot pin x down (the error grows like eps / |det J|), but the inverse
    # still maps back onto y.
    y = jax.vmap(lambda layer, x: layer.transform(x))(layers, x)
    y_again = jax.vmap(lambda layer, x: layer.transform(x))(layers, x_back)
    np.testing.assert_allclose(y_again, y, rtol=1e-4, atol=1e-4)
    conditioned = log_det > np.log(1e-2)
    assert jnp.mean(conditioned) > 0.9
    # x = y - u_hat tanh(alpha): a rounding error in alpha moves x by |u_hat| as
    # much (|u| ~ 10 here).
    u_norm = jnp.linalg.norm(
        eqx.filter_vmap(lambda layer: layer.u_hat)(layers), axis=-1
    )
    error = jnp.max(jnp.abs(x_back - x), axis=-1) / (1.0 + u_norm)
    assert jnp.max(error[conditioned]) < 2e-5, jnp.max(error[conditioned])


def test_planar_inverse_gradients_match_finite_differences(x64):
    layer = Planar(
        3, u=jnp.array([-2.0, 0.5, 1.0]), w=jnp.array([1.5, -0.5, 0.2]), b=0.3
    )
    y = jnp.array([0.4, -0.9, 1.1])
    parameters, static = eqx.partition(layer, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(parameters)

    def objective(flat):
        x, log_det = eqx.combine(unravel(flat), static).inverse_and_log_det(y)
        return jnp.sum(jnp.sin(x)) + log_det

    gradient = jax.jit(jax.grad(objective))(flat)
    objective = jax.jit(objective)
    step = 1e-6
    finite_differences = jnp.array(
        [
            (objective(flat + step * e) - objective(flat - step * e)) / (2 * step)
            for e in jnp.eye(flat.size)
        ]
    )
    np.testing.assert_allclose(gradient, finite_differences, rtol=1e-6, atol=1e-8)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="Planar needs w or a key"):
        Planar(2)
    with pytest.raises(ValueError, match="beta / alpha must be positive"):
        Radial(2, alpha=1.0, beta=-1.5)
