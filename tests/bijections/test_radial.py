"""Radial bijections: the geometric claims, the inverses, and a small fit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

from flowrox import Flow
from flowrox.bijections import (
    Affine,
    Chain,
    Planar,
    Radial,
    RadialConditional,
    RayTransform,
    Scan,
    SinhArcsinh,
    angle_fourier_features,
)
from flowrox.train import fit_to_data
from tests.bijections.registry_radial import RADIAL_CASES, _scalar_layer, _scalar_stack


def _unit(v):
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def _points_and_images(name, n=64, scale=2.0):
    bijection, _, _ = eqx.filter_jit(RADIAL_CASES[name])(jax.random.key(11))
    x = scale * jax.random.normal(jax.random.key(12), (n, *bijection.shape))
    y = jax.jit(jax.vmap(bijection.transform))(x)
    return bijection, x, y


@pytest.mark.parametrize("name", ["RayTransform", "RadialConditional"])
def test_rays_from_the_center_map_onto_themselves(name):
    bijection, x, y = _points_and_images(name)
    # Same direction from the centre (parallel, not anti-parallel) ...
    np.testing.assert_allclose(
        _unit(y - bijection.center), _unit(x - bijection.center), atol=2e-5
    )
    # ... and a radius that actually changed, so the check is not vacuous.
    radius_x = jnp.linalg.norm(x - bijection.center, axis=-1)
    radius_y = jnp.linalg.norm(y - bijection.center, axis=-1)
    assert float(jnp.max(jnp.abs(radius_y - radius_x))) > 0.1


def test_ray_transform_radius_is_the_softplus_conjugate_of_the_scalar_bijection():
    scalar = _scalar_stack(jax.random.key(0))
    # At the origin, y keeps small radii to full precision (float32 would round
    # y = c + 3e-5 u for c != 0, and the test would measure that rounding).
    layer = RayTransform(scalar, dim=3)
    radii = jnp.array([1e-3, 0.1, 1.0, 3.0, 40.0])
    x = layer.center + radii[:, None] * _unit(jnp.array([1.0, 2.0, -2.0]))
    y = jax.vmap(layer.transform)(x)
    s = radii + jnp.log(-jnp.expm1(-radii))  # softplus^{-1}
    expected = jax.nn.softplus(jax.vmap(scalar.transform)(s))
    np.testing.assert_allclose(
        jnp.linalg.norm(y - layer.center, axis=-1), expected, rtol=1e-5
    )


def test_radial_conditional_radius_map_depends_on_the_direction():
    bijection, _, _ = eqx.filter_jit(RADIAL_CASES["RadialConditional"])(
        jax.random.key(3)
    )
    angles = jnp.linspace(0.0, 2 * jnp.pi, 8, endpoint=False)
    directions = jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    scale = jnp.exp(bijection.log_scale)
    x = bijection.center + scale * directions  # scaled radius 1 in every direction
    y = jax.vmap(bijection.transform)(x)
    radii = jnp.linalg.norm((y - bijection.center) / scale, axis=-1)
    assert float(jnp.std(radii)) > 1e-2


def _template(key):
    return Scan(
        eqx.filter_vmap(lambda k: SinhArcsinh(0.4 * jax.random.normal(k), 1.3))(
            jax.random.split(key, 3)
        )
    )


@pytest.mark.parametrize(
    "n_frequencies", [None, pytest.param(3, marks=pytest.mark.slow)]
)
def test_radial_conditional_starts_as_its_template(n_frequencies):
    template = _template(jax.random.key(0))
    in_size, out_size = RadialConditional.network_sizes(
        template, dim=2, n_frequencies=n_frequencies
    )
    network = eqx.nn.MLP(in_size, out_size, 8, 2, key=jax.random.key(1))
    center, log_scale = jnp.array([0.3, -0.2]), jnp.array([0.2, -0.1])
    layer = RadialConditional(
        template,
        network,
        dim=2,
        center=center,
        log_scale=log_scale,
        n_frequencies=n_frequencies,
    )
    # The last linear layer is zeroed, the earlier ones are left as they were.
    assert jnp.all(layer.network.layers[-1].weight == 0)
    assert jnp.all(layer.network.layers[-1].bias == 0)
    assert jnp.any(layer.network.layers[0].weight != 0)
    # It is the template's ray transform in the scaled coordinates z = (x - c) / s.
    x = jax.random.normal(jax.random.key(2), (16, 2))
    y, log_det = jax.vmap(layer.transform_and_log_det)(x)
    reference = RayTransform(template, dim=2)
    scale = jnp.exp(log_scale)
    z, reference_log_det = jax.vmap(reference.transform_and_log_det)(
        (x - center) / scale
    )
    np.testing.assert_allclose(y, center + scale * z, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_det, reference_log_det, rtol=1e-6, atol=1e-6)


def test_fresh_layers_are_the_identity():
    x = jnp.array([0.7, -1.3, 2.1])
    for layer in [Planar(3, key=jax.random.key(0)), Radial(3), Radial(3, alpha=4.0)]:
        y, log_det = layer.transform_and_log_det(x)
        np.testing.assert_array_equal(y, x)
        assert float(log_det) == 0.0
    # The softplus conjugation is the identity up to rounding.
    template = SinhArcsinh()
    y, log_det = RayTransform(template, dim=3).transform_and_log_det(x)
    np.testing.assert_allclose(y, x, rtol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)
    network = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))
    layer = RadialConditional(template, network, dim=3)
    y, log_det = layer.transform_and_log_det(x)
    np.testing.assert_allclose(y, x, rtol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)


@pytest.mark.parametrize("name", ["RayTransform", "RadialConditional", "Radial"])
def test_the_center_maps_to_itself_with_finite_log_det_and_gradients(name):
    bijection, _, _ = eqx.filter_jit(RADIAL_CASES[name])(jax.random.key(5))
    parameters, static = eqx.partition(bijection, eqx.is_inexact_array)

    def loss(parameters, value, inverse):
        layer = eqx.combine(parameters, static)
        method = layer.inverse_and_log_det if inverse else layer.transform_and_log_det
        output, log_det = method(value)
        return jnp.sum(output**2) + log_det, (output, log_det)

    for inverse in (False, True):
        gradient_fn = jax.jit(
            jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2
        )
        (gradients, value_gradient), (output, log_det) = gradient_fn(
            parameters, bijection.center, inverse
        )
        np.testing.assert_allclose(output, bijection.center, atol=1e-6)
        assert jnp.isfinite(log_det)
        for leaf in [*jax.tree.leaves(gradients), value_gradient]:
            assert jnp.all(jnp.isfinite(leaf))


def test_ray_transform_is_finite_far_from_and_close_to_the_center():
    layer = eqx.filter_jit(RADIAL_CASES["RayTransform"])(jax.random.key(4))[0]
    # At the origin, x = c + r u keeps tiny radii exactly (float32 would round
    # c + 1e-20 u to c for c != 0).
    layer = eqx.tree_at(lambda layer: layer.center, layer, jnp.zeros(3))
    direction = _unit(jnp.array([1.0, -1.0, 0.5]))
    for radius in [1e-30, 1e-20, 1e-6, 1e3, 1e6]:
        x = layer.center + radius * direction
        y, log_det = layer.transform_and_log_det(x)
        x_back, inverse_log_det = layer.inverse_and_log_det(y)
        assert jnp.all(jnp.isfinite(y)) and jnp.isfinite(log_det)
        assert jnp.all(jnp.isfinite(x_back)) and jnp.isfinite(inverse_log_det)
        if radius < 1e-10:
            continue  # rho(r) may underflow float32 there: finite is the claim
        np.testing.assert_allclose(x_back, x, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-3, atol=1e-3)


def test_radial_inverse_solves_the_radius_quadratic():
    # A centre at the origin keeps tiny radii exact in float32.
    center = jnp.zeros(3)
    direction = _unit(jnp.array([0.3, 0.4, -1.0]))
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


def test_angle_fourier_features_are_the_harmonics_of_the_angle():
    theta = jnp.linspace(-3.0, 3.0, 7)
    directions = jnp.stack([jnp.cos(theta), jnp.sin(theta)], -1)
    features = jax.vmap(lambda u: angle_fourier_features(u, 3))(directions)
    k = jnp.arange(1, 4)
    expected = jnp.concatenate(
        [jnp.cos(k * theta[:, None]) / k, jnp.sin(k * theta[:, None]) / k], -1
    )
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"scalar bijection \(shape \(\)"):
        RayTransform(Affine(jnp.zeros(2)), dim=2)
    with pytest.raises(ValueError, match="Planar needs w or a key"):
        Planar(2)
    with pytest.raises(ValueError, match="beta / alpha must be positive"):
        Radial(2, alpha=1.0, beta=-1.5)
    template = _scalar_layer(jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        RadialConditional(
            template, eqx.nn.MLP(2, 3, 4, 1, key=jax.random.key(0)), dim=2
        )
    with pytest.raises(ValueError, match="needs dim=2"):
        RadialConditional.network_sizes(template, dim=3, n_frequencies=2)
    with pytest.raises(ValueError, match="holds none"):
        RadialConditional(template, lambda features: jnp.zeros(4), dim=2)


# A ring of 8 Gaussians (radius 2, sd 0.2) and its exact density.
_ANGLES = 2 * jnp.pi * jnp.arange(8) / 8
_MEANS = 2.0 * jnp.stack([jnp.cos(_ANGLES), jnp.sin(_ANGLES)], -1)


def _ring(key, n):
    index_key, noise_key = jax.random.split(key)
    index = jax.random.randint(index_key, (n,), 0, 8)
    return _MEANS[index] + 0.2 * jax.random.normal(noise_key, (n, 2))


def _ring_log_prob(x):
    components = dist.Normal(_MEANS, 0.2).to_event(1).log_prob(x[:, None, :])
    return jax.scipy.special.logsumexp(components, -1) - jnp.log(8.0)


def _ring_flow(key, n_rays=48):
    """Ray maps about many centres near the origin, stacked with Scan.

    One ray map keeps the angular density about its centre; composing maps
    about different centres moves mass between angles, enough for eight modes.
    """

    def ray(key):
        center_key, layer_key = jax.random.split(key)
        layers = eqx.filter_vmap(lambda k: Chain([Affine(), SinhArcsinh()]))(
            jax.random.split(layer_key, 2)
        )
        center = 0.7 * jax.random.normal(center_key, (2,))
        return RayTransform(Scan(layers), dim=2, center=center)

    rays = eqx.filter_vmap(ray)(jax.random.split(key, n_rays))
    return Flow(dist.Normal(jnp.zeros(2), 1.0).to_event(1), Scan(rays))


@pytest.mark.slow
def test_a_radial_flow_fitted_with_fit_to_data_learns_a_ring_of_gaussians():
    keys = jax.random.split(jax.random.key(0), 4)
    data, held_out = _ring(keys[0], 20_000), _ring(keys[1], 5_000)
    flow = _ring_flow(keys[2])
    initial = float(-jnp.mean(jax.jit(flow.log_prob)(held_out)))
    steps = 20_000
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 500, steps)),
    )
    flow, _ = fit_to_data(
        keys[3],
        flow,
        data,
        optimizer=optimizer,
        steps=steps,
        batch_size=256,
        patience=None,
        progress=False,
    )
    nll = float(-jnp.mean(jax.jit(flow.log_prob)(held_out)))
    truth = float(-jnp.mean(_ring_log_prob(held_out)))
    print(f"held-out NLL {nll:.4f}, true density {truth:.4f}")
    assert nll < initial - 1.0, (initial, nll)
    # No model beats the true density beyond sampling noise (sd ~0.01 nats).
    assert truth - 0.03 < nll < truth + 0.1, (nll, truth)
