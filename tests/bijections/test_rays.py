"""Ray transforms: the geometric claims, the inverses, and a small fit."""

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
    RadialConditional,
    RayTransform,
    Scan,
    SinhArcsinh,
    angle_fourier_features,
)
from flowrox.train import fit_to_data
from tests.bijections.registry_radial import (
    RADIAL_CASES,
    _scalar_layer,
    _scalar_stack,
    check_the_center_maps_to_itself,
    unit,
)


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
        unit(y - bijection.center), unit(x - bijection.center), atol=2e-5
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
    x = layer.center + radii[:, None] * unit(jnp.array([1.0, 2.0, -2.0]))
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


@pytest.mark.parametrize("name", ["RayTransform", "RadialConditional"])
def test_the_center_maps_to_itself_with_finite_log_det_and_gradients(name):
    check_the_center_maps_to_itself(name)


def test_ray_transform_is_finite_far_from_and_close_to_the_center():
    layer = eqx.filter_jit(RADIAL_CASES["RayTransform"])(jax.random.key(4))[0]
    # At the origin, x = c + r u keeps tiny radii exactly (float32 would round
    # c + 1e-20 u to c for c != 0).
    layer = eqx.tree_at(lambda layer: layer.center, layer, jnp.zeros(3))
    direction = unit(jnp.array([1.0, -1.0, 0.5]))
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
