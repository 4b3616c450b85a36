"""One registry of every exported bijection, with random parameters and inputs.

Each entry is a factory `key -> (bijection, x, condition)`: the bijection with
random (not initial) parameters, an input `x` drawn from its domain, and the
condition (None for unconditional ones). Factories build everything inside the
call, so calling one under `jax.enable_x64` gives a float64 case.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from flowrox.bijections import (
    Affine,
    BoundedAffine,
    Chain,
    Exp,
    Identity,
    Invert,
    Permute,
    Power,
    RationalQuadraticSpline,
    Reshape,
    Reverse,
    Scale,
    Scan,
    Shift,
    Sigmoid,
    SinhArcsinh,
    SoftPlus,
    Tanh,
    Vmap,
)
from tests.bijections.registry_analytic import ANALYTIC_CASES
from tests.bijections.registry_continuous import CONTINUOUS_CASES
from tests.bijections.registry_flows import FLOW_CASES
from tests.bijections.registry_modulation import MODULATION_CASES
from tests.bijections.registry_radial import RADIAL_CASES
from tests.bijections.registry_standardize import STANDARDIZE_CASES
from tests.helpers import ConditionalAffine
from tests.helpers import random_normal as _normal
from tests.helpers import random_positive as _positive


def _affine(key, shape):
    loc_key, scale_key = jax.random.split(key)
    return Affine(_normal(loc_key, shape), _positive(scale_key, shape))


def _sinh_arcsinh(key, shape):
    skew_key, tail_key = jax.random.split(key)
    return SinhArcsinh(_normal(skew_key, shape, 0.5), _positive(tail_key, shape, 0.3))


def _affine_then_sinh_arcsinh(key, shape):
    first, second = jax.random.split(key)
    return Chain([_affine(first, shape), _sinh_arcsinh(second, shape)])


def _case(bijection, x, condition=None):
    return bijection, x, condition


def _spline(key, **options):
    template = RationalQuadraticSpline(-2.0, 2.0, 5, shape=(3,), **options)
    shape = template.identity_parameters().shape
    return template.with_parameters(0.8 * jax.random.normal(key, shape))


def _spline_cases():
    def case(options, scale=3.0):
        return lambda k: _case(_spline(k, **options), _normal(k, (3,), scale))

    return {
        "RationalQuadraticSpline": case({}),
        "RationalQuadraticSpline-outside": case({}, scale=30.0),
        "RationalQuadraticSpline-circular": lambda k: _case(
            _spline(k, circular=True), jax.random.uniform(k, (3,), minval=-2, maxval=2)
        ),
        "RationalQuadraticSpline-circular-identity-slopes": lambda k: _case(
            _spline(k, circular=True, identity_boundary_slopes=True),
            jax.random.uniform(k, (3,), minval=-2, maxval=2),
        ),
        "RationalQuadraticSpline-identity-slopes": case(
            {"identity_boundary_slopes": True}
        ),
        "RationalQuadraticSpline-learn-lower": case({"learn_lower_bound": True}),
        "RationalQuadraticSpline-learn-upper": case({"learn_upper_bound": True}),
        "RationalQuadraticSpline-learn-both": case(
            {"learn_lower_bound": True, "learn_upper_bound": True}
        ),
    }


def _elementwise_cases():
    return {
        "Affine": lambda k: _case(_affine(k, (3,)), _normal(k, (3,))),
        "BoundedAffine": lambda k: _case(
            BoundedAffine(
                _normal(k, (3,)), 4.0 * _normal(jax.random.fold_in(k, 1), (3,))
            ),
            _normal(k, (3,)),
        ),
        "Shift": lambda k: _case(Shift(_normal(k, (2, 3))), _normal(k, (2, 3))),
        "Scale": lambda k: _case(
            Scale(_positive(k, (2, 2)), shape=(2, 2)), _normal(k, (2, 2))
        ),
        "Exp": lambda k: _case(Exp((3,)), _normal(k, (3,))),
        "SoftPlus": lambda k: _case(SoftPlus((3,)), _normal(k, (3,), 2.0)),
        "Sigmoid": lambda k: _case(Sigmoid((3,)), _normal(k, (3,), 2.0)),
        "Tanh": lambda k: _case(Tanh((3,)), _normal(k, (3,))),
        "Power": lambda k: _case(
            Power(_positive(k, (3,))), jnp.abs(_normal(k, (3,))) + 0.1
        ),
        "SinhArcsinh": lambda k: _case(_sinh_arcsinh(k, (3,)), _normal(k, (3,), 2.0)),
        "Identity": lambda k: _case(Identity((2,)), _normal(k, (2,))),
    }


def _structure_cases():
    def chain(key):
        keys = jax.random.split(key, 3)
        bijection = Chain(
            [
                _affine(keys[0], (3,)),
                Permute(jax.random.permutation(keys[1], 3)),
                _sinh_arcsinh(keys[2], (3,)),
            ]
        )
        return _case(bijection, _normal(key, (3,)))

    def chain_conditional(key):
        keys = jax.random.split(key, 3)
        bijection = Chain(
            [_affine(keys[0], (3,)), ConditionalAffine(keys[1], 3, 2), Reverse((3,))]
        )
        return _case(bijection, _normal(keys[2], (3,)), _normal(key, (2,)))

    def scan(key):
        layers = eqx.filter_vmap(lambda k: _affine_then_sinh_arcsinh(k, (3,)))(
            jax.random.split(key, 4)
        )
        return _case(Scan(layers), _normal(key, (3,)))

    def scan_conditional(key):
        layers = eqx.filter_vmap(lambda k: ConditionalAffine(k, 2, 3))(
            jax.random.split(key, 3)
        )
        return _case(Scan(layers), _normal(key, (2,)), _normal(key, (3,)))

    def vmap_stacked(key):
        layers = eqx.filter_vmap(lambda k: _sinh_arcsinh(k, (2,)))(
            jax.random.split(key, 4)
        )
        return _case(Vmap(layers), _normal(key, (4, 2)))

    def vmap_shared(key):
        return _case(Vmap(_affine(key, (2,)), axis_size=3), _normal(key, (3, 2)))

    def invert(key):
        return _case(Invert(_sinh_arcsinh(key, (3,))), _normal(key, (3,)))

    def permute(key):
        permutation = jax.random.permutation(key, 6).reshape(2, 3)
        return _case(Permute(permutation), _normal(key, (2, 3)))

    def reshape(key):
        inner = Chain([_affine(key, (6,)), Permute(jax.random.permutation(key, 6))])
        return _case(Reshape(inner, (2, 3)), _normal(key, (2, 3)))

    return {
        "Chain": chain,
        "Chain-conditional": chain_conditional,
        "Scan": scan,
        "Scan-conditional": scan_conditional,
        "Vmap": vmap_stacked,
        "Vmap-shared": vmap_shared,
        "Invert": invert,
        "Permute": permute,
        "Reverse": lambda k: _case(Reverse((2, 2)), _normal(k, (2, 2))),
        "Reshape": reshape,
    }


REGISTRY = {
    **_elementwise_cases(),
    **_spline_cases(),
    **_structure_cases(),
    **ANALYTIC_CASES,
    **RADIAL_CASES,
    **FLOW_CASES,
    **MODULATION_CASES,
    **STANDARDIZE_CASES,
    **CONTINUOUS_CASES,
}
