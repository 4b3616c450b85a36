"""Registry cases of `Standardized` (unconditional and conditional)."""

import jax

from flowrox.bijections import Affine, Chain, SinhArcsinh, Standardized
from tests.helpers import ConditionalAffine
from tests.helpers import random_normal as _normal
from tests.helpers import random_positive as _positive


def _standardized(key):
    keys = jax.random.split(key, 6)
    inner = Chain(
        [
            Affine(_normal(keys[0], (3,)), _positive(keys[1], (3,))),
            SinhArcsinh(_normal(keys[2], (3,), 0.5), _positive(keys[3], (3,), 0.3)),
        ]
    )
    bijection = Standardized(
        inner, _normal(keys[4], (3,), 10.0), _positive(keys[5], (3,))
    )
    return bijection, _normal(key, (3,)), None


def _standardized_conditional(key):
    keys = jax.random.split(key, 5)
    bijection = Standardized(
        ConditionalAffine(keys[0], 3, 2),
        _normal(keys[1], (3,), 10.0),
        _positive(keys[2], (3,)),
        cond_loc=_normal(keys[3], (2,), 5.0),
        cond_scale=_positive(keys[4], (2,)),
    )
    return bijection, _normal(key, (3,)), 5.0 + _normal(keys[0], (2,))


STANDARDIZE_CASES = {
    "Standardized": _standardized,
    "Standardized-conditional": _standardized_conditional,
}
