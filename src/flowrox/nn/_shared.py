"""Small helpers that several nn modules share: input checks and linear layers.

Each is written once here; conditioners, fields, feature networks and their
Bayesian forms import them.
"""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def check_width(
    owner: str, name: str, array: ArrayLike, width: int, role: str
) -> jax.Array:
    """`array` as an inexact array whose last axis is `width`, or a `ValueError`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._shared import check_width
        >>> check_width("SIREN", "x", jnp.ones((5, 3), int), 3, "in_features").dtype
        dtype('float32')
    """
    array = jnp.asarray(array)
    if not jnp.issubdtype(array.dtype, jnp.inexact):
        array = array.astype(jnp.result_type(float))
    if array.ndim == 0 or array.shape[-1] != width:
        raise ValueError(
            f"{owner}: expected {name} with last axis {width} ({role}), got shape "
            f"{array.shape}. Layers act on the last axis; leading axes are batch axes."
        )
    return array


def check_context(
    owner: str, x: jax.Array, z: ArrayLike, cond_dim: int
) -> tuple[jax.Array, bool]:
    """Checks a context against an input; returns it and whether it is shared.

    A context is shared when it is one vector `(cond_dim,)`, and per-sample when
    it has one row per row of `x`, `x.shape[:-1] + (cond_dim,)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._shared import check_context
        >>> x = jnp.ones((4, 3))
        >>> check_context("HyperSIREN", x, jnp.ones(2), 2)[1]
        True
        >>> check_context("HyperSIREN", x, jnp.ones((4, 2)), 2)[1]
        False
    """
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.inexact):
        z = z.astype(jnp.result_type(float))
    per_sample = (*x.shape[:-1], cond_dim)
    if z.shape == (cond_dim,):
        return z, True
    if z.shape == per_sample:
        return z, False
    raise ValueError(
        f"{owner}: expected z of shape ({cond_dim},) (shared by every row) or "
        f"{per_sample} (one row per row of x, whose shape is {x.shape}; cond_dim "
        f"{cond_dim}), got {z.shape}."
    )


def map_rows(function: Callable, array: jax.Array) -> Any:
    """Applies `function` to every row `(..., n)` of `array` (vmapped, then reshaped).

    `function` takes one vector and returns a pytree of arrays; each output leaf
    gets the leading axes of `array` back. One vector is passed as it is.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._shared import map_rows
        >>> map_rows(lambda row: {"sum": row.sum()}, jnp.ones((2, 5, 3)))["sum"].shape
        (2, 5)
    """
    if array.ndim == 1:
        return function(array)
    leading = array.shape[:-1]
    flat = array.reshape(math.prod(leading), array.shape[-1])
    out = jax.vmap(function)(flat)
    return jax.tree.map(lambda leaf: leaf.reshape(*leading, *leaf.shape[1:]), out)


def last_layer(generator: eqx.nn.Linear | eqx.nn.MLP) -> eqx.nn.Linear:
    """The generator itself if it is one `eqx.nn.Linear`, else its last layer.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> from flowrox.nn._shared import last_layer
        >>> mlp = eqx.nn.MLP(2, 3, 8, 2, key=jax.random.key(0))
        >>> last_layer(mlp).weight.shape
        (3, 8)
    """
    return generator if isinstance(generator, eqx.nn.Linear) else generator.layers[-1]


def apply_linear(linear: eqx.nn.Linear, x: jax.Array) -> jax.Array:
    """An `eqx.nn.Linear` (with bias) on the last axis of `x`, any leading axes.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._shared import apply_linear
        >>> linear = eqx.nn.Linear(3, 2, key=jax.random.key(0))
        >>> x = jnp.ones((4, 5, 3))
        >>> bool(jnp.allclose(apply_linear(linear, x)[1, 2], linear(x[1, 2])))
        True
    """
    return x @ linear.weight.T + linear.bias
