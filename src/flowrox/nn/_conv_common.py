"""What every convolution layer shares: its arguments, its field checks, its init.

The layers act on one field at a time, channels first: `(C, *spatial)`, with
`num_spatial_dims` spatial axes. Batches go through `jax.vmap`.
"""

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_num_spatial_dims(owner: str, num_spatial_dims: int) -> int:
    """`num_spatial_dims` as an int of at least 1, or a `ValueError`."""
    if not _is_whole(num_spatial_dims) or num_spatial_dims < 1:
        raise ValueError(
            f"{owner}: num_spatial_dims must be a whole number of at least 1 (1 for "
            f"fields on a line, 2 on a plane, 3 in a volume); got {num_spatial_dims!r}."
        )
    return int(num_spatial_dims)


def check_count(owner: str, name: str, value: int, minimum: int = 1) -> int:
    """`value` as an int of at least `minimum`, or a `ValueError`.

    Examples:
        >>> from flowrox.nn._conv_common import check_count
        >>> check_count("PhysicsConv", "in_channels", 3)
        3
    """
    if not _is_whole(value) or value < minimum:
        raise ValueError(
            f"{owner}: {name} must be a whole number of at least {minimum}; got "
            f"{value!r}."
        )
    return int(value)


def spatial_tuple(
    owner: str, name: str, value: int | Sequence[int], num_spatial_dims: int, minimum=1
) -> tuple[int, ...]:
    """One whole number per spatial axis, from one for all or a sequence of them.

    Examples:
        >>> from flowrox.nn._conv_common import spatial_tuple
        >>> spatial_tuple("PhysicsConv", "kernel_size", 3, 2)
        (3, 3)
        >>> spatial_tuple("PhysicsConv", "stride", (1, 2), 2)
        (1, 2)
    """
    values = (value,) * num_spatial_dims if _is_whole(value) else value
    if (
        not isinstance(values, Sequence)
        or len(values) != num_spatial_dims
        or not all(_is_whole(v) and v >= minimum for v in values)
    ):
        raise ValueError(
            f"{owner}: {name} must be a whole number of at least {minimum}, or a "
            f"sequence of {num_spatial_dims} of them (one per spatial axis, "
            f"num_spatial_dims={num_spatial_dims}); got {value!r}."
        )
    return tuple(int(v) for v in values)


def check_groups(owner: str, in_channels: int, out_channels: int, groups: int) -> int:
    """`groups` when it divides both channel counts, else a `ValueError`."""
    groups = check_count(owner, "groups", groups)
    channel_counts = (("in_channels", in_channels), ("out_channels", out_channels))
    for name, channels in channel_counts:
        if channels % groups:
            raise ValueError(
                f"{owner}: {name} ({channels}) must be divisible by groups "
                f"({groups}): each of the {groups} groups maps in_channels // groups "
                "inputs to out_channels // groups outputs. Choose groups among the "
                "common divisors of in_channels and out_channels."
            )
    return groups


def check_field(
    owner: str, x: ArrayLike, channels: int, num_spatial_dims: int
) -> jax.Array:
    """`x` as an inexact array of shape `(channels, *spatial)`, or a `ValueError`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._conv_common import check_field
        >>> check_field("PhysicsConv", jnp.ones((2, 8), int), 2, 1).dtype
        dtype('float32')
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    if x.ndim != num_spatial_dims + 1 or x.shape[0] != channels:
        batch = ""
        if x.ndim == num_spatial_dims + 2 and x.shape[1] == channels:
            batch = " It looks like a batch: map the layer over it, jax.vmap(layer)(x)."
        raise ValueError(
            f"{owner}: expected one field of shape ({channels}, *spatial) with "
            f"{num_spatial_dims} spatial axes (channels first, {channels} channels), "
            f"got shape {x.shape}.{batch}"
        )
    return x


def uniform_init(
    key: jax.Array,
    weight_shape: tuple[int, ...],
    fan_in: int,
    out_channels: int,
    num_spatial_dims: int,
    *,
    use_bias: bool,
    zero_bias_init: bool,
) -> tuple[jax.Array, jax.Array | None]:
    r"""Weight and bias drawn from $U(\pm 1/\sqrt{\text{fan-in}})$, as equinox's `Conv`.

    The key is split into the weight's and the bias's keys in that order, so a
    layer draws the same initial values as equinox's and pdequinox's from the
    same key. The bias has shape `(out_channels, 1, ..., 1)`; with
    `zero_bias_init` it starts at zero.
    """
    weight_key, bias_key = jax.random.split(key)
    limit = 1.0 / math.sqrt(fan_in)
    weight = jax.random.uniform(weight_key, weight_shape, minval=-limit, maxval=limit)
    if not use_bias:
        return weight, None
    bias_shape = (out_channels,) + (1,) * num_spatial_dims
    if zero_bias_init:
        return weight, jnp.zeros(bias_shape)
    return weight, jax.random.uniform(bias_key, bias_shape, minval=-limit, maxval=limit)


def common_dtype(x: jax.Array, *weights: jax.Array | None) -> tuple[jax.Array, ...]:
    """`x` and the weights (None skipped) cast to their common floating dtype."""
    arrays = [w for w in weights if w is not None]
    dtype = jnp.result_type(x, *arrays)
    return (x.astype(dtype), *(None if w is None else w.astype(dtype) for w in weights))
