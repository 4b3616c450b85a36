"""Registry entry for `Modulated` (merged into registry.REGISTRY).

Same format as registry.py: a factory maps a key to `(bijection, x, condition)`,
with random (not initial) generator parameters, so that the scale and shift
depend on the condition. Built inside the call, so that calling it under
`jax.enable_x64` gives a float64 case.
"""

import equinox as eqx
import jax

from flowrox.bijections import Modulated
from flowrox.nn import AffineModulation
from tests.helpers import random_normal


def _modulated(key):
    keys = jax.random.split(key, 5)
    film = AffineModulation(3, 2, key=keys[0], gamma_activation="exp")
    film = eqx.tree_at(
        lambda m: (m.generator.weight, m.generator.bias),
        film,
        (random_normal(keys[1], (6, 2), 0.5), random_normal(keys[2], (6,), 0.5)),
    )
    return Modulated(film), random_normal(keys[3], (3,)), random_normal(keys[4], (2,))


MODULATION_CASES = {"Modulated": _modulated}
