r"""Conditioners that see the whole field: couplings on lattice-shaped events.

A coupling on a lattice (Albergo, Kanwar and Shanahan 2019) gives its network
the field with the transformed sites set to zero, as one channels-first field
`(channels, *spatial)`, and reads the transformer's parameters off the
network's output at every site. With a periodic convolutional network the
layer commutes with the lattice translations that keep its mask (for a
checkerboard: those whose steps add up to an even number of sites).

The layout of an event of `num_spatial_dims` spatial axes:

- `(L_1, ..., L_d)`: one channel, added in front;
- `(C, L_1, ..., L_d)`: `C` channels.

A context of `cond_shape` joins the field as `prod(cond_shape)` more channels,
each constant over the lattice. The network outputs `channels * P` channels,
where `P` is the template's parameter count: output channel `c * P + p` holds
parameter `p` of channel `c` at every site.
"""

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._tree import trainable_leaves
from ..nn import ConvNet


def field_layout(
    owner: str, shape: tuple[int, ...], num_spatial_dims: int
) -> tuple[int, tuple[int, ...]]:
    """`(channels, spatial_shape)` of an event seen as a field, or a `ValueError`.

    Examples:
        >>> from flowrox.bijections._field_conditioner import field_layout
        >>> field_layout("Coupling", (6, 6), 2), field_layout("Coupling", (3, 6, 6), 2)
        ((1, (6, 6)), (3, (6, 6)))
    """
    whole = isinstance(num_spatial_dims, numbers.Integral) and not isinstance(
        num_spatial_dims, bool
    )
    if not whole or num_spatial_dims < 1:
        raise ValueError(
            f"{owner}: num_spatial_dims must be a whole number of at least 1 (2 for "
            f"a field on a plane); got {num_spatial_dims!r}."
        )
    if len(shape) == num_spatial_dims:
        return 1, shape
    if len(shape) == num_spatial_dims + 1:
        return shape[0], shape[1:]
    raise ValueError(
        f"{owner}: an event on a lattice of num_spatial_dims={num_spatial_dims} "
        f"axes has shape (L_1, ..., L_{num_spatial_dims}) or (channels, L_1, ..., "
        f"L_{num_spatial_dims}); got shape {shape}. Pass the number of spatial "
        f"axes of the event as num_spatial_dims (here {len(shape)} or "
        f"{len(shape) - 1})."
    )


def context_channels(cond_shape: tuple[int, ...] | None) -> int:
    """The number of constant channels a context adds to the network's input."""
    return 0 if cond_shape is None else math.prod(cond_shape)


def conv_conditioner(
    key: jax.Array,
    num_spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    hidden: int,
    depth: int,
    activation,
) -> ConvNet:
    """The default field conditioner: periodic 3x3 convolutions (`ConvNet`)."""
    return ConvNet(
        num_spatial_dims,
        in_channels,
        out_channels,
        hidden_channels=hidden,
        depth=depth,
        activation=activation,
        kernel_size=3,
        boundary_mode="periodic",
        key=key,
    )


def check_field_network(
    owner: str,
    network,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> None:
    """Raises a clear error unless `network` maps `in_shape` fields to `out_shape`."""
    example = (
        f"flowrox.nn.ConvNet({len(in_shape) - 1}, {in_shape[0]}, {out_shape[0]}, "
        'boundary_mode="periodic", key=key)'
    )
    field = jax.ShapeDtypeStruct(in_shape, jnp.result_type(float))
    try:
        output = jax.eval_shape(network, field)
    except Exception as error:
        raise ValueError(
            f"{owner}: the field conditioner could not be called on a field of shape "
            f"{in_shape} (channels first) ({error}). Build it for "
            f"{in_shape[0]} input channels, e.g. {example}."
        ) from error
    got = tuple(getattr(output, "shape", ()))
    if got != out_shape:
        raise ValueError(
            f"{owner}: the field conditioner must map a field of shape {in_shape} "
            f"to shape {out_shape} ({out_shape[0]} channels: the template's "
            f"parameters for every channel of the event); it gives shape {got}. "
            f"Build it with {out_shape[0]} output channels and 'same' padding, e.g. "
            f"{example}."
        )


def zero_last_layer(owner: str, network):
    """The network with every array of its last layer set to zero.

    The last layer is the node holding the network's last trainable array in
    pytree order, and its arrays are that array and its siblings: the weight
    and bias of a `ConvNet`'s last `PhysicsConv`, of an FNO's projection, of an
    `eqx.nn.Sequential`'s last convolution. No class is named, so a user's own
    network is treated as flowrox's.
    """
    flags = jax.tree_util.tree_flatten_with_path(trainable_leaves(network))[0]
    paths = [tuple(path) for path, trainable in flags if trainable]
    if not paths:
        raise ValueError(
            f"{owner}(zero_init=True) zeroes the last layer of the conditioner so "
            f"that the layer starts as its template, but the "
            f"{type(network).__name__} holds no trainable array. Make its output "
            "zero at initialisation yourself and pass zero_init=False."
        )
    parent = paths[-1][:-1]
    last_layer = {path for path in paths if path[:-1] == parent}

    def zero_if_last(path, leaf):
        return jnp.zeros_like(leaf) if tuple(path) in last_layer else leaf

    return jax.tree_util.tree_map_with_path(zero_if_last, network)


def field_offsets(
    network,
    field: jax.Array,
    condition: jax.Array | None,
    *,
    channels: int,
    spatial: Sequence[int],
) -> jax.Array:
    """The network's parameters for every element of the event, `(size, P)`.

    Args:
        network: the field conditioner.
        field: the event with its transformed elements zeroed, of the event shape.
        condition: the context, or None.
        channels: the event's channels.
        spatial: the lattice shape.

    Returns:
        One row of template parameters per element, in the event's flat order.
    """
    spatial = tuple(spatial)
    features = field.reshape(channels, *spatial)
    if condition is not None:
        context = condition.reshape(-1, *(1,) * len(spatial)).astype(field.dtype)
        context = jnp.broadcast_to(context, (context.shape[0], *spatial))
        features = jnp.concatenate([features, context])
    output = network(features)
    per_channel = output.reshape(channels, -1, *spatial)
    return jnp.moveaxis(per_channel, 1, -1).reshape(channels * math.prod(spatial), -1)
