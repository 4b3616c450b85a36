"""Small helpers that several nn modules share: input checks and linear layers.

Each is written once here; conditioners, fields, feature networks and their
Bayesian forms import them.
"""

import math
import numbers
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


def refuse_scope_name(owner: str, pyrox_name: str | None) -> None:
    """Refuses a pyrox scope name: flowrox names sites where a module is used.

    Examples:
        >>> from flowrox.nn._shared import refuse_scope_name
        >>> refuse_scope_name("SIREN.init", None)  # the default: nothing to refuse
        >>> try:
        ...     refuse_scope_name("SIREN.init", "field")
        ... except ValueError as error:
        ...     print(str(error)[:52])
        SIREN.init: got pyrox_name='field', but a flowrox mo
    """
    if pyrox_name is not None:
        raise ValueError(
            f"{owner}: got pyrox_name={pyrox_name!r}, but a flowrox module carries "
            "no scope name: its sites are named when it is used, from the name "
            "given to flowrox.sample_module (or flowrox.param_module) and each "
            "leaf's path. Drop pyrox_name and call "
            f"flowrox.sample_module({pyrox_name!r}, module) inside the model."
        )


def hidden_depth(owner: str, depth: int) -> int:
    """The number of hidden layers for pyrox's `depth`, which counts the readout.

    Examples:
        >>> from flowrox.nn._shared import hidden_depth
        >>> hidden_depth("SIREN.init", 4)  # three sine layers and the readout
        3
    """
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 2:
        raise ValueError(
            f"{owner}: depth counts every layer, the linear readout included (as "
            "pyrox counts it), so it must be a whole number of at least 2 (one "
            f"hidden layer and the readout); got {depth!r}. depth=d builds d - 1 "
            "hidden layers."
        )
    return int(depth) - 1


def declared_input_width(module: Any) -> int | None:
    """The input width a module declares, or None when it declares none.

    Read from `in_features` (flowrox's and pyrox's layers) or `in_size`
    (equinox's `Linear` and `MLP`), or from the last axis of a 2-D `weight`; on
    the module, else on its first layer (`layers[0]`, through nested layers).

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> from flowrox.nn._shared import declared_input_width
        >>> declared_input_width(eqx.nn.MLP(3, 1, 8, 2, key=jax.random.key(0)))
        3
        >>> declared_input_width(lambda x: x) is None
        True
    """
    while module is not None:
        for name in ("in_features", "in_size"):
            width = getattr(module, name, None)
            if isinstance(width, numbers.Integral) and not isinstance(width, bool):
                return int(width)
        weight = getattr(module, "weight", None)
        if getattr(weight, "ndim", 0) == 2:
            return int(weight.shape[-1])
        layers = getattr(module, "layers", None)
        module = layers[0] if isinstance(layers, list | tuple) and layers else None
    return None
