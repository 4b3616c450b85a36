r"""`PhysicsConv` and `PhysicsConvTranspose`: "same" convolutions of fields with
exact boundary conditions.

Both are cross-correlations (no kernel flip), as `jax.lax.conv_general_dilated`
and equinox's `Conv` compute. For a stride-1 `PhysicsConv` with kernel $w$ of
$k$ taps per axis, dilation $d$ and bias $b$,

$$ y_{o,n} = b_o + \sum_{i \in \text{group}(o)} \sum_{j=0}^{k-1}
    w_{o,i,j}\, u_{i,\, n + dj - p}, \qquad p = d\lfloor (k-1)/2 \rfloor, $$

with $u$ read at ghost nodes beyond the grid by the boundary mode's rule
(see the Physics convolutions page); a stride $s$ keeps the output nodes
$n = 0, s, 2s, \dots$ of the input's grid.
"""

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._boundary import (
    BoundaryMode,
    check_boundary_mode,
    ghosts_for_conv,
    ghosts_for_transpose,
    same_padding,
)
from ._conv_common import (
    check_count,
    check_field,
    check_groups,
    check_num_spatial_dims,
    common_dtype,
    spatial_tuple,
    uniform_init,
)


def _check_output_padding(
    owner: str, output_padding, stride: tuple[int, ...], num_spatial_dims: int
) -> tuple[int, ...]:
    padding = spatial_tuple(
        owner, "output_padding", output_padding, num_spatial_dims, minimum=0
    )
    if any(o >= s for o, s in zip(padding, stride, strict=True)):
        raise ValueError(
            f"{owner}: output_padding must be below the stride on every axis (it "
            f"picks which of the `stride` input lengths that a strided conv maps to "
            f"one output length to give back); got output_padding {padding} with "
            f"stride {stride}. For an input of N nodes use (N - 1) % stride."
        )
    return padding


class PhysicsConv(eqx.Module):
    r"""A convolution of fields with "same" padding and a boundary condition.

    The input is one field `(in_channels, *spatial)`; a stride-1 output has the
    same grid, `(out_channels, *spatial)`, and a stride $s$ keeps every $s$-th
    node, $\lceil N/s \rceil$ per axis. The ghost nodes the kernel reads beyond
    the grid, $d\lfloor (k-1)/2 \rfloor$ before and $d\lfloor k/2 \rfloor$ after
    each axis (an even kernel reaches one dilation further forward), hold:

    - `"periodic"`: the wrapped field, $u_{-j} = u_{N-j}$;
    - `"dirichlet"`: zeros (the boundary nodes, where $u = 0$, lie one step
      outside the grid);
    - `"neumann"`: the field mirrored about its end nodes, $u_{-j} = u_j$ (a
      zero normal derivative at the nodes $u_0$ and $u_{N-1}$).

    `weight` has shape `(out_channels, in_channels // groups, *kernel_size)`
    and `bias` `(out_channels, 1, ..., 1)`, both initialised as equinox's
    `Conv` (uniform on $\pm 1/\sqrt{\text{fan-in}}$), so the same key gives
    pdequinox's `PhysicsConv` weights.

    Args:
        num_spatial_dims: the number of spatial axes (1, 2, 3, ...).
        in_channels: the input's channels.
        out_channels: the output's channels.
        kernel_size: taps per axis, one int for all axes or one per axis (odd
            or even).
        stride: the output keeps every `stride`-th node per axis.
        dilation: the spacing of the kernel's taps.
        groups: the channels split into this many groups, each convolved on its
            own (`in_channels` and `out_channels` divisible by it).
        use_bias: whether to add a bias per output channel.
        key: the key for the initial weights.
        boundary_mode: `"periodic"`, `"dirichlet"` or `"neumann"`.
        zero_bias_init: start the bias at zero.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import PhysicsConv
        >>> key = jax.random.key(0)
        >>> conv = PhysicsConv(2, 3, 8, 3, key=key, boundary_mode="periodic")
        >>> conv(jnp.ones((3, 16, 16))).shape
        (8, 16, 16)
        >>> jax.vmap(conv)(jnp.ones((5, 3, 16, 16))).shape  # a batch
        (5, 8, 16, 16)
    """

    weight: jax.Array
    bias: jax.Array | None
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_size: tuple[int, ...] = eqx.field(static=True)
    stride: tuple[int, ...] = eqx.field(static=True)
    padding: tuple[tuple[int, int], ...] = eqx.field(static=True)
    dilation: tuple[int, ...] = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)
    boundary_mode: BoundaryMode = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        use_bias: bool = True,
        *,
        key: jax.Array,
        boundary_mode: BoundaryMode,
        zero_bias_init: bool = False,
    ):
        owner = "PhysicsConv"
        self.boundary_mode = check_boundary_mode(owner, boundary_mode)
        n = self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)
        self.groups = check_groups(owner, self.in_channels, self.out_channels, groups)
        self.kernel_size = spatial_tuple(owner, "kernel_size", kernel_size, n)
        self.stride = spatial_tuple(owner, "stride", stride, n)
        self.dilation = spatial_tuple(owner, "dilation", dilation, n)
        self.padding = same_padding(self.kernel_size, self.dilation)
        self.use_bias = bool(use_bias)
        grouped = self.in_channels // self.groups
        self.weight, self.bias = uniform_init(
            key,
            (self.out_channels, grouped, *self.kernel_size),
            grouped * math.prod(self.kernel_size),
            self.out_channels,
            n,
            use_bias=self.use_bias,
            zero_bias_init=zero_bias_init,
        )

    def __call__(self, x: ArrayLike, *, key: jax.Array | None = None) -> jax.Array:
        """The convolved field: `(in_channels, *spatial)` to `(out_channels, *out)`.

        Args:
            x: one field, channels first.
            key: ignored (equinox's layer signature).
        """
        del key
        x = check_field("PhysicsConv", x, self.in_channels, self.num_spatial_dims)
        x, weight, bias = common_dtype(x, self.weight, self.bias)
        x, padding = ghosts_for_conv(x, self.padding, self.boundary_mode)
        y = jax.lax.conv_general_dilated(
            x[None],
            weight,
            window_strides=self.stride,
            padding=padding,
            rhs_dilation=self.dilation,
            feature_group_count=self.groups,
        )[0]
        return y if bias is None else y + bias


class PhysicsConvTranspose(eqx.Module):
    r"""The transposed convolution of `PhysicsConv`: its adjoint, and its way back.

    The layer holds a `weight` of shape
    `(in_channels, out_channels // groups, *kernel_size)`: the layout of the
    `PhysicsConv(out_channels, in_channels, ...)` it transposes, whose `weight`
    it can take as it is. With that weight, `"periodic"` or `"dirichlet"`, and
    no bias, the layer is exactly the adjoint (the vector-Jacobian product) of
    that `PhysicsConv`: for stride 1 on any grid; for stride $s$ when the
    `output_padding` is $(N-1) \bmod s$ for the conv's input of $N$ nodes (and,
    periodic, $N$ a multiple of $s$). Written as a correlation it flips the
    kernel, swaps its channel axes, and pads $d(k-1) - p$ before and after
    each axis where the conv pads $p$, on the input upsampled by the stride.

    Its output has $(M-1)s + 1 + o$ nodes per axis for an input of $M$, so the
    output of a strided `PhysicsConv` of $N$ nodes comes back to $N$ with
    $o = (N-1) \bmod s$. The ghost values are the boundary rule applied to the
    upsampled input. A mirrored boundary is not self-adjoint (the adjoint of
    mirroring folds the ghosts back onto the nodes they copy), so the
    `"neumann"` transpose is not the conv's adjoint: it is the transposed
    connectivity with mirrored ghosts, at stride 1 the `"neumann"`
    `PhysicsConv` of the flipped, channel-swapped kernel (with the even
    kernel's padding sides swapped).

    The bias has shape `(out_channels, 1, ..., 1)`. From a key the weight is
    drawn as pdequinox draws its transposed weight and brought into this
    layout, so for odd kernels the same key gives the same layer as pdequinox's
    `PhysicsConvTranspose`; for even kernels pdequinox's output is this
    layer's shifted by one dilation (it pads the even kernel like the forward
    conv, which is not the adjoint).

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels (the transposed conv's outputs).
        out_channels: the output's channels (the transposed conv's inputs).
        kernel_size: taps per axis (odd or even).
        stride: the upsampling factor per axis (the transposed conv's stride).
        output_padding: extra nodes at the end of each axis, below the stride;
            can also be given at call time.
        dilation: the spacing of the kernel's taps.
        groups: the number of channel groups.
        use_bias: whether to add a bias per output channel.
        key: the key for the initial weights.
        boundary_mode: `"periodic"`, `"dirichlet"` or `"neumann"`.
        zero_bias_init: start the bias at zero.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import PhysicsConv, PhysicsConvTranspose
        >>> key = jax.random.key(0)
        >>> down = PhysicsConv(1, 2, 4, 3, stride=2, key=key, boundary_mode="dirichlet")
        >>> up = PhysicsConvTranspose(
        ...     1, 4, 2, 3, stride=2, key=key, boundary_mode="dirichlet"
        ... )
        >>> coarse = down(jnp.ones((2, 9)))
        >>> coarse.shape, up(coarse).shape, up(coarse, output_padding=1).shape
        ((4, 5), (2, 9), (2, 10))
    """

    weight: jax.Array
    bias: jax.Array | None
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_size: tuple[int, ...] = eqx.field(static=True)
    stride: tuple[int, ...] = eqx.field(static=True)
    output_padding: tuple[int, ...] = eqx.field(static=True)
    padding: tuple[tuple[int, int], ...] = eqx.field(static=True)
    dilation: tuple[int, ...] = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)
    boundary_mode: BoundaryMode = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        output_padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        use_bias: bool = True,
        *,
        key: jax.Array,
        boundary_mode: BoundaryMode,
        zero_bias_init: bool = False,
    ):
        owner = "PhysicsConvTranspose"
        self.boundary_mode = check_boundary_mode(owner, boundary_mode)
        n = self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)
        self.groups = check_groups(owner, self.in_channels, self.out_channels, groups)
        self.kernel_size = spatial_tuple(owner, "kernel_size", kernel_size, n)
        self.stride = spatial_tuple(owner, "stride", stride, n)
        self.output_padding = _check_output_padding(
            owner, output_padding, self.stride, n
        )
        self.dilation = spatial_tuple(owner, "dilation", dilation, n)
        self.padding = same_padding(self.kernel_size, self.dilation)
        self.use_bias = bool(use_bias)
        grouped = self.in_channels // self.groups
        # Drawn in the correlation layout (out_channels, in_channels // groups,
        # *kernel), as pdequinox draws it, then brought into the adjoint layout.
        correlation_weight, self.bias = uniform_init(
            key,
            (self.out_channels, grouped, *self.kernel_size),
            grouped * math.prod(self.kernel_size),
            self.out_channels,
            n,
            use_bias=self.use_bias,
            zero_bias_init=zero_bias_init,
        )
        self.weight = _swap_and_flip(correlation_weight, self.groups)

    def __call__(
        self,
        x: ArrayLike,
        *,
        output_padding: int | Sequence[int] | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """The transposed convolution: `(in_channels, *M)` to `(out_channels, *N)`.

        Args:
            x: one field, channels first.
            output_padding: overrides the layer's `output_padding` for this call.
            key: ignored (equinox's layer signature).

        Returns:
            `(out_channels, *N)` with $N = (M - 1)s + 1 + o$ per axis.
        """
        del key
        owner = "PhysicsConvTranspose"
        if output_padding is None:
            extra = self.output_padding
        else:
            extra = _check_output_padding(
                owner, output_padding, self.stride, self.num_spatial_dims
            )
        x = check_field(owner, x, self.in_channels, self.num_spatial_dims)
        x, weight, bias = common_dtype(x, self.weight, self.bias)
        # The conv pads (p, q); its adjoint pads d(k-1) - p = q before and
        # d(k-1) - q = p after, plus the output padding at the end.
        padding = tuple(
            (after, before + o)
            for (before, after), o in zip(self.padding, extra, strict=True)
        )
        x, padding = ghosts_for_transpose(x, padding, self.stride, self.boundary_mode)
        y = jax.lax.conv_general_dilated(
            x[None],
            _swap_and_flip(weight, self.groups),
            window_strides=(1,) * self.num_spatial_dims,
            padding=padding,
            lhs_dilation=self.stride,
            rhs_dilation=self.dilation,
            feature_group_count=self.groups,
        )[0]
        return y if bias is None else y + bias


def _swap_and_flip(weight: jax.Array, groups: int) -> jax.Array:
    """`(A, B // groups, *k)` to `(B, A // groups, *k)`, kernel reversed.

    Within each group the two channel axes swap places. Its own inverse: it
    turns a conv's weight into the correlation kernel of its adjoint, and back.
    """
    a, b_grouped, *kernel = weight.shape
    grouped = weight.reshape(groups, a // groups, b_grouped, *kernel)
    swapped = jnp.swapaxes(grouped, 1, 2)
    swapped = swapped.reshape(groups * b_grouped, a // groups, *kernel)
    return jnp.flip(swapped, axis=tuple(range(2, weight.ndim)))
