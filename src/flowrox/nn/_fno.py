"""`FNO`: the Fourier neural operator of Li et al. (2020), with boundary modes."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
from jax.typing import ArrayLike

from ._boundary import (
    BoundaryMode,
    check_boundary_mode,
    periodic_extension,
    restrict_extension,
)
from ._conv_common import check_count, check_field, check_num_spatial_dims
from ._lifted import lifted_layers, run_lifted
from ._pointwise_conv import PointwiseLinearConv
from ._spectral_conv import SpectralConv


class SpectralBlock(eqx.Module):
    r"""$x \mapsto \sigma(\mathrm{spectral}(x) + W x + b)$: one Fourier layer.

    A `SpectralConv` on the lowest modes plus a `PointwiseLinearConv` bypass
    (which carries what the truncated spectrum drops, the high frequencies and
    the non-periodic part), then the activation; pdequinox's
    `ClassicSpectralBlock`, with the same leaves in the same order.

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels.
        out_channels: the output's channels.
        num_modes: the Fourier modes kept per axis (see `SpectralConv`).
        activation: the activation $\sigma$.
        key: the key for the initial weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import SpectralBlock
        >>> block = SpectralBlock(1, 4, 4, num_modes=6, key=jax.random.key(0))
        >>> block(jnp.ones((4, 64))).shape
        (4, 64)
    """

    spectral_conv: SpectralConv
    bypass_conv: PointwiseLinearConv
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        num_modes: int | Sequence[int] = 8,
        activation: Callable = jax.nn.gelu,
        key: jax.Array,
    ):
        spectral_key, bypass_key = jax.random.split(key)
        self.spectral_conv = SpectralConv(
            num_spatial_dims, in_channels, out_channels, num_modes, key=spectral_key
        )
        self.bypass_conv = PointwiseLinearConv(
            num_spatial_dims, in_channels, out_channels, key=bypass_key
        )
        self.activation = activation

    def __call__(self, x: ArrayLike) -> jax.Array:
        """`(in_channels, *spatial)` to `(out_channels, *spatial)`."""
        return self.activation(self.spectral_conv(x) + self.bypass_conv(x))


class FNO(eqx.Module):
    r"""A Fourier neural operator: 1x1 lifting, `SpectralBlock`s, 1x1 projection.

    The field is lifted to `hidden_channels`, goes through `num_blocks`
    spectral blocks, and is projected to `out_channels` (lifting and
    projection linear), as in Li et al. (2020) and pdequinox's `ClassicFNO`,
    whose leaves come in the same order.

    Fourier layers are periodic. With `boundary_mode="periodic"` the network
    acts on the field as it is. With `"neumann"` or `"dirichlet"` it acts on
    the field's periodic extension under that mode's ghost rule — the even
    extension about the end nodes ($2(N-1)$ nodes per axis) or the odd one
    about the zero boundary nodes ($2(N+1)$) — and returns the values on the
    field's own nodes: the spectral layers then see a field continued as the
    boundary condition continues it, instead of a jump where the periodic
    wrap joins its two ends. `num_modes` counts modes of the extended grid.

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels.
        out_channels: the output's channels.
        hidden_channels: the width of the blocks.
        num_modes: the Fourier modes kept per axis in every block.
        num_blocks: the number of spectral blocks (at least 1).
        activation: the activation inside the blocks.
        boundary_mode: `"periodic"`, `"dirichlet"` or `"neumann"`.
        key: the key for the initial weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import FNO
        >>> net = FNO(1, 1, 1, hidden_channels=8, num_modes=6, num_blocks=2,
        ...           key=jax.random.key(0))
        >>> net(jnp.ones((1, 64))).shape
        (1, 64)
    """

    lifting: PointwiseLinearConv
    blocks: tuple[SpectralBlock, ...]
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
        num_modes: int | Sequence[int] = 12,
        num_blocks: int = 4,
        activation: Callable = jax.nn.gelu,
        boundary_mode: BoundaryMode = "periodic",
        key: jax.Array,
    ):
        owner = "FNO"
        self.boundary_mode = check_boundary_mode(owner, boundary_mode)
        self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)

        def make_block(block_key):
            return SpectralBlock(
                num_spatial_dims,
                hidden_channels,
                hidden_channels,
                num_modes=num_modes,
                activation=activation,
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
        x = check_field("FNO", x, self.in_channels, self.num_spatial_dims)
        extended = periodic_extension(x, self.boundary_mode)
        y = run_lifted(self.lifting, self.blocks, self.projection, extended)
        return restrict_extension(y, x.shape[1:], self.boundary_mode)
