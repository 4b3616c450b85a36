"""The frame of a lifted network: a 1x1 lifting, blocks, a 1x1 projection.

`ResNet` and `FNO` share it: the field is lifted to `hidden_channels`, goes
through the blocks at that width, and is projected to `out_channels`.
"""

from collections.abc import Callable

import equinox as eqx
import jax

from ._conv_common import check_count
from ._pointwise_conv import PointwiseLinearConv


def lifted_layers(
    owner: str,
    num_spatial_dims: int,
    in_channels: int,
    out_channels: int,
    hidden_channels: int,
    num_blocks: int,
    make_block: Callable[[jax.Array], eqx.Module],
    key: jax.Array,
) -> tuple[PointwiseLinearConv, tuple[eqx.Module, ...], PointwiseLinearConv]:
    """The lifting, `num_blocks` blocks from `make_block(key)`, the projection."""
    hidden_channels = check_count(owner, "hidden_channels", hidden_channels)
    num_blocks = check_count(owner, "num_blocks", num_blocks)
    lifting_key, projection_key, *block_keys = jax.random.split(key, num_blocks + 2)
    lifting = PointwiseLinearConv(
        num_spatial_dims, in_channels, hidden_channels, key=lifting_key
    )
    blocks = tuple(make_block(block_key) for block_key in block_keys)
    projection = PointwiseLinearConv(
        num_spatial_dims, hidden_channels, out_channels, key=projection_key
    )
    return lifting, blocks, projection


def run_lifted(
    lifting: PointwiseLinearConv,
    blocks: tuple[eqx.Module, ...],
    projection: PointwiseLinearConv,
    x: jax.Array,
) -> jax.Array:
    """The projection of the blocks applied in turn to the lifted field."""
    x = lifting(x)
    for block in blocks:
        x = block(x)
    return projection(x)
