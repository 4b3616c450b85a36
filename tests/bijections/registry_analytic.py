"""Registry entries for the analytic bijections and `NumericalInverse`.

Same format as `registry.py`: each entry is a factory `key -> (bijection, x,
condition)` with random (not initial) parameters and an input from the domain,
building everything inside the call so that it gives float64 under
`jax.enable_x64`. Merge with `REGISTRY = {..., **ANALYTIC_CASES}`.
"""

import jax

from flowrox.bijections import (
    Chain,
    CubicConjugation,
    CubicRational,
    NumericalInverse,
    SinhArcsinh,
    SinhConjugation,
)
from tests.helpers import random_normal as _normal
from tests.helpers import random_positive as _positive


def _cubic_conjugation(key, shape):
    keys = jax.random.split(key, 4)
    return CubicConjugation(
        slope=_positive(keys[0], shape),
        shift=_normal(keys[1], shape),
        center=_normal(keys[2], shape, 0.5),
        curvature=_positive(keys[3], shape),
    )


def _sinh_conjugation(key, shape):
    keys = jax.random.split(key, 4)
    return SinhConjugation(
        slope=_positive(keys[0], shape),
        shift=_normal(keys[1], shape),
        center=_normal(keys[2], shape, 0.5),
        width=_positive(keys[3], shape),
    )


def _cubic_rational(key, shape):
    keys = jax.random.split(key, 5)
    return CubicRational(
        shift=_normal(keys[0], shape, 0.5),
        slope=_positive(keys[1], shape, 0.3),
        center=_normal(keys[2], shape, 0.5),
        width=_positive(keys[3], shape),
        # Ratios on both sides of the identity's 1, inside (0, 9).
        ratio=jax.random.uniform(keys[4], shape, minval=0.2, maxval=5.0),
    )


def _numerical_inverse(key, shape):
    # A chain of two maps, inverted only numerically.
    first, second = jax.random.split(key)
    skew_key, tail_key = jax.random.split(first)
    chain = Chain(
        [
            SinhArcsinh(_normal(skew_key, shape, 0.5), _positive(tail_key, shape, 0.3)),
            _cubic_rational(second, shape),
        ]
    )
    return NumericalInverse(chain)


def _case(bijection, x, condition=None):
    return bijection, x, condition


ANALYTIC_CASES = {
    "CubicConjugation": lambda k: _case(
        _cubic_conjugation(k, (3,)), _normal(jax.random.fold_in(k, 1), (3,), 1.5)
    ),
    "SinhConjugation": lambda k: _case(
        _sinh_conjugation(k, (2, 2)), _normal(jax.random.fold_in(k, 1), (2, 2), 1.5)
    ),
    "CubicRational": lambda k: _case(
        _cubic_rational(k, (3,)), _normal(jax.random.fold_in(k, 1), (3,), 1.5)
    ),
    "NumericalInverse": lambda k: _case(
        _numerical_inverse(k, (3,)), _normal(jax.random.fold_in(k, 1), (3,), 1.5)
    ),
}
