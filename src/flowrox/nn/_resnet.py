"""`ResNet`: residual blocks of two "same" convolutions between 1x1 convolutions."""

from collections.abc import Callable

import equinox as eqx
import jax
from jax.typing import ArrayLike

from ._boundary import BoundaryMode, check_boundary_mode
from ._conv_common import check_count, check_field, check_num_spatial_dims
from ._lifted import lifted_layers, run_lifted
from ._physics_conv import PhysicsConv
from ._pointwise_conv import PointwiseLinearConv


class ResBlock(eqx.Module):
    r"""$x \mapsto \sigma(x + \mathrm{conv}_2(\sigma(\mathrm{conv}_1(x))))$.

    Two stride-1 `PhysicsConv` layers at a fixed width with a skip connection,
    the activation after the sum (the original ResNet's post-activation form,
    pdequinox's `ClassicResBlock` without normalisation).

    Args:
        num_spatial_dims: the number of spatial axes.
        channels: the width of the input, the output and the hidden field.
        activation: the activation $\sigma$.
        kernel_size: taps per axis of both convolutions.
        boundary_mode: `"periodic"`, `"dirichlet"` or `"neumann"`.
        key: the key for the initial weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import ResBlock
        >>> block = ResBlock(1, 8, boundary_mode="neumann", key=jax.random.key(0))
        >>> block(jnp.ones((8, 32))).shape
        (8, 32)
    """

    conv_1: PhysicsConv
    conv_2: PhysicsConv
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        channels: int,
        *,
        activation: Callable = jax.nn.relu,
        kernel_size: int = 3,
        boundary_mode: BoundaryMode,
        key: jax.Array,
    ):
        key_1, key_2 = jax.random.split(key)
        self.conv_1, self.conv_2 = (
            PhysicsConv(
                num_spatial_dims,
                channels,
                channels,
                kernel_size,
                key=conv_key,
                boundary_mode=boundary_mode,
            )
            for conv_key in (key_1, key_2)
        )
        self.activation = activation

    def __call__(self, x: ArrayLike) -> jax.Array:
        """`(channels, *spatial)` to `(channels, *spatial)`."""
        residual = self.conv_2(self.activation(self.conv_1(x)))
        return self.activation(x + residual)


class ResNet(eqx.Module):
    r"""A residual network: a 1x1 lifting, `num_blocks` `ResBlock`s, a 1x1 projection.

    The field is lifted to `hidden_channels` by a `PointwiseLinearConv`, goes
    through the residual blocks (each two convolutions of `kernel_size` taps
    with the boundary mode), and is projected to `out_channels`; lifting and
    projection are linear. This is pdequinox's `ClassicResNet` (without
    normalisation) with the same leaves in the same order.

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels.
        out_channels: the output's channels.
        hidden_channels: the width of the blocks.
        num_blocks: the number of residual blocks (at least 1).
        activation: the activation inside the blocks.
        kernel_size: taps per axis of the blocks' convolutions.
        boundary_mode: `"periodic"`, `"dirichlet"` or `"neumann"`.
        key: the key for the initial weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import ResNet
        >>> net = ResNet(2, 1, 2, hidden_channels=8, num_blocks=2,
        ...              boundary_mode="dirichlet", key=jax.random.key(0))
        >>> net(jnp.ones((1, 12, 12))).shape
        (2, 12, 12)
    """

    lifting: PointwiseLinearConv
    blocks: tuple[ResBlock, ...]
    projection: PointwiseLinearConv
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    boundary_mode: BoundaryMode = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 32,
        num_blocks: int = 6,
        activation: Callable = jax.nn.relu,
        kernel_size: int = 3,
        boundary_mode: BoundaryMode = "periodic",
        key: jax.Array,
    ):
        owner = "ResNet"
        self.boundary_mode = check_boundary_mode(owner, boundary_mode)
        self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)

        def make_block(block_key):
            return ResBlock(
                num_spatial_dims,
                hidden_channels,
                activation=activation,
                kernel_size=kernel_size,
                boundary_mode=self.boundary_mode,
                key=block_key,
            )

        self.lifting, self.blocks, self.projection = lifted_layers(
            owner,
            num_spatial_dims,
            in_channels,
            out_channels,
            hidden_channels,
            num_blocks,
            make_block,
            key,
        )

    def __call__(self, x: ArrayLike) -> jax.Array:
        """`(in_channels, *spatial)` to `(out_channels, *spatial)`."""
        x = check_field("ResNet", x, self.in_channels, self.num_spatial_dims)
        return run_lifted(self.lifting, self.blocks, self.projection, x)
