"""Registry entries for the radial bijections (merged into registry.REGISTRY).

Same format as registry.py: each factory maps a key to `(bijection, x,
condition)`, with random (not initial) parameters and an input away from the
centre. Everything is built inside the call, so calling a factory under
`jax.enable_x64` gives a float64 case. The checks at the end are shared by the
tests of the ray transforms and of Rezende & Mohamed's flows.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flowrox.bijections import (
    Affine,
    Chain,
    Planar,
    Radial,
    RadialConditional,
    RayTransform,
    Scan,
    SinhArcsinh,
)


def _normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape)


def _scalar_layer(key):
    keys = jax.random.split(key, 4)
    return Chain(
        [
            Affine(_normal(keys[0], (), 0.3), jnp.exp(_normal(keys[1], (), 0.3))),
            SinhArcsinh(_normal(keys[2], (), 0.3), jnp.exp(_normal(keys[3], (), 0.2))),
        ]
    )


def _scalar_stack(key, n_layers=3):
    return Scan(eqx.filter_vmap(_scalar_layer)(jax.random.split(key, n_layers)))


def _ray_transform(key):
    keys = jax.random.split(key, 3)
    center = _normal(keys[1], (3,), 0.5)
    x = center + _normal(keys[2], (3,), 1.5)
    return RayTransform(_scalar_stack(keys[0]), dim=3, center=center), x, None


def _radial_conditional(key):
    keys = jax.random.split(key, 5)
    template = _scalar_layer(keys[0])
    in_size, out_size = RadialConditional.network_sizes(
        template, dim=2, n_frequencies=2
    )
    network = eqx.nn.MLP(in_size, out_size, 6, 1, activation=jnp.tanh, key=keys[1])
    bijection = RadialConditional(
        template,
        network,
        dim=2,
        center=_normal(keys[2], (2,), 0.5),
        log_scale=_normal(keys[3], (2,), 0.3),
        n_frequencies=2,
        zero_init=False,
    )
    x = bijection.center + _normal(keys[4], (2,), 1.5)
    return bijection, x, None


def _planar(key):
    keys = jax.random.split(key, 4)
    bijection = Planar(
        3,
        u=_normal(keys[0], (3,)),
        w=_normal(keys[1], (3,)),
        b=_normal(keys[2], (), 0.5),
    )
    return bijection, _normal(keys[3], (3,)), None


def _radial(key):
    keys = jax.random.split(key, 5)
    alpha = jnp.exp(_normal(keys[0], (), 0.5))
    # beta = alpha (e^z - 1) > -alpha: both contractions and expansions.
    beta = alpha * jnp.expm1(_normal(keys[1], ()))
    center = _normal(keys[2], (3,), 0.5)
    bijection = Radial(3, center=center, alpha=alpha, beta=beta)
    return bijection, center + _normal(keys[3], (3,)), None


RADIAL_CASES = {
    "RayTransform": _ray_transform,
    "RadialConditional": _radial_conditional,
    "Planar": _planar,
    "Radial": _radial,
}


def unit(v):
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def check_the_center_maps_to_itself(name):
    """The centre maps to itself both ways, with finite log-det and gradients."""
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
