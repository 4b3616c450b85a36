"""Registry cases of `ContinuousFlow`: the exact divergence of an unconditional
MLP field, and the field's own divergence of a conditional elementwise field,
both with random parameters and 8 Tsit5 steps.

The contract's float64 test compares the integrated divergence with the
autodiff log-det of the solved map; the two differ by the solver's error,
which for these fields (paths that move the input by up to half a unit) is
below 1e-12 for the MLP and 6e-11 for the elementwise field over seeds 0-11.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from flowrox.bijections import ContinuousFlow
from flowrox.nn import AbstractVectorField, MLPVectorField
from tests.helpers import random_normal as _normal


def randomized(module, key, scale=0.3):
    """`module` with every inexact array leaf redrawn from N(0, scale^2)."""
    leaves, treedef = jax.tree.flatten(module)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [
            scale * jax.random.normal(k, jnp.shape(leaf))
            if eqx.is_inexact_array(leaf)
            else leaf
            for k, leaf in zip(keys, leaves, strict=True)
        ],
    )


class ElementwiseField(AbstractVectorField):
    r"""$v_i = a_i(t) \tanh(w_i x_i + b_i)$, with its divergence in closed form."""

    amplitude: jax.Array
    weight: jax.Array
    bias: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, key, shape, cond_shape=None):
        keys = jax.random.split(key, 3)
        n_context = 2 if cond_shape is None else 2 + cond_shape[0]
        self.amplitude = 0.1 * jax.random.normal(keys[0], (*shape, n_context))
        self.weight = 0.5 + 0.2 * jax.random.normal(keys[1], shape)
        self.bias = 0.3 * jax.random.normal(keys[2], shape)
        self.shape, self.cond_shape = tuple(shape), cond_shape

    def _parts(self, t, x, condition):
        context = jnp.array([1.0, t], x.dtype)
        if condition is not None:
            context = jnp.concatenate([context, condition * t])
        return self.amplitude @ context, jnp.tanh(self.weight * x + self.bias)

    def __call__(self, t, x, condition=None):
        amplitude, activation = self._parts(t, x, condition)
        return amplitude * activation

    def divergence(self, t, x, condition=None):
        amplitude, activation = self._parts(t, x, condition)
        return jnp.sum(amplitude * self.weight * (1 - activation**2))


def _mlp(key, cond_shape=None):
    field_key, parameter_key = jax.random.split(key)
    field = MLPVectorField(3, width=4, depth=1, cond_shape=cond_shape, key=field_key)
    return randomized(field, parameter_key)


def _continuous(key):
    flow = ContinuousFlow(_mlp(key), shape=(3,), steps=8)
    return flow, _normal(key, (3,)), None


def _continuous_conditional_field(key):
    field = ElementwiseField(key, (2, 2), cond_shape=(1,))
    flow = ContinuousFlow(
        field, shape=(2, 2), cond_shape=(1,), steps=8, divergence="field"
    )
    return flow, _normal(key, (2, 2)), _normal(key, (1,))


CONTINUOUS_CASES = {
    "ContinuousFlow": _continuous,
    "ContinuousFlow-conditional-field": _continuous_conditional_field,
}
