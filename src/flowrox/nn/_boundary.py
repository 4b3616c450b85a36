r"""Ghost values of a field on a grid: the three boundary modes of the convolutions.

A "same" convolution of a field of $N$ nodes per axis reads a few nodes beyond
each end, the ghost nodes; the boundary mode says what they hold. The index
$j$ runs over the field's nodes, $0 \le j < N$, and $u_j$ is the value there;
for $j \ge 1$ the ghosts hold:

- `"periodic"`: $u_{-j} = u_{N-j}$ and $u_{N-1+j} = u_{j-1}$. Grid $x_j = jh$,
  $h = L/N$: node $N$ is node $0$ again.
- `"dirichlet"`: $u_{-j} = u_{N-1+j} = 0$. Grid $x_j = (j+1)h$, $h = L/(N+1)$:
  the boundary nodes $x = 0$ and $x = L$ are the first ghosts, holding $u = 0$.
- `"neumann"`: $u_{-j} = u_j$ and $u_{N-1+j} = u_{N-1-j}$. Grid $x_j = jh$,
  $h = L/(N-1)$: the boundary nodes are $u_0$ and $u_{N-1}$, mirrored about.

Mirroring about the boundary node makes the central
difference $(u_1 - u_{-1}) / 2h$ vanish there: the zero normal derivative of a
homogeneous Neumann condition, to second order. Ghosts further out than the
field is long continue the same rule (the periodic, the zero, the even
periodic extension).
"""

from typing import Literal

import jax
import jax.numpy as jnp

BoundaryMode = Literal["periodic", "dirichlet", "neumann"]
BOUNDARY_MODES = ("periodic", "dirichlet", "neumann")

# jnp.pad's name for each rule: "reflect" mirrors about the edge node itself
# (u_{-1} = u_1), which is the node-centred Neumann grid above; "symmetric"
# (u_{-1} = u_0) would be the cell-centred one.
_PAD_MODES = {"periodic": "wrap", "dirichlet": "constant", "neumann": "reflect"}

Padding = tuple[tuple[int, int], ...]


def check_boundary_mode(owner: str, boundary_mode: str) -> str:
    """The boundary mode in lower case, or a `ValueError` naming the three modes.

    Examples:
        >>> from flowrox.nn._boundary import check_boundary_mode
        >>> check_boundary_mode("PhysicsConv", "Neumann")
        'neumann'
    """
    mode = boundary_mode.lower() if isinstance(boundary_mode, str) else None
    if mode not in BOUNDARY_MODES:
        raise ValueError(
            f"{owner}: boundary_mode must be one of {BOUNDARY_MODES} (the ghost "
            f"values beyond the grid: wrapped, zero, mirrored); got "
            f"{boundary_mode!r}. Pass e.g. boundary_mode='periodic'."
        )
    return mode


def same_padding(kernel_size: tuple[int, ...], dilation: tuple[int, ...]) -> Padding:
    """Ghost nodes before and after each axis that keep a stride-1 conv's size.

    A kernel of $k$ taps dilated by $d$ spans $d(k-1)$ nodes: $d\\lfloor (k-1)/2
    \\rfloor$ before the output node and $d\\lfloor k/2 \\rfloor$ after it, so an
    even kernel reaches one dilation further forward than back.

    Examples:
        >>> from flowrox.nn._boundary import same_padding
        >>> same_padding((3, 4), (1, 2))
        ((1, 1), (2, 4))
    """
    return tuple(
        (((k - 1) // 2) * d, (k // 2) * d)
        for k, d in zip(kernel_size, dilation, strict=True)
    )


def pad_ghosts(x: jax.Array, padding: Padding, boundary_mode: str) -> jax.Array:
    """`x` of shape `(C, *spatial)` with ghost nodes added to its spatial axes.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._boundary import pad_ghosts
        >>> u = jnp.array([[1.0, 2.0, 3.0]])
        >>> for mode in ("periodic", "dirichlet", "neumann"):
        ...     print(pad_ghosts(u, ((2, 1),), mode)[0].tolist())
        [2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
        [0.0, 0.0, 1.0, 2.0, 3.0, 0.0]
        [3.0, 2.0, 1.0, 2.0, 3.0, 2.0]
    """
    if not any(before or after for before, after in padding):
        return x
    return jnp.pad(x, ((0, 0), *padding), mode=_PAD_MODES[boundary_mode])


def ghosts_for_conv(
    x: jax.Array, padding: Padding, boundary_mode: str
) -> tuple[jax.Array, Padding]:
    """The input and the `lax` padding that together give `x` its ghost values.

    Zero ghosts are left to the convolution itself (no padded copy of the
    field); wrapped and mirrored ones are padded in, and the convolution pads
    nothing more.
    """
    if boundary_mode == "dirichlet":
        return x, padding
    return pad_ghosts(x, padding, boundary_mode), ((0, 0),) * len(padding)


def ghosts_for_transpose(
    x: jax.Array, padding: Padding, stride: tuple[int, ...], boundary_mode: str
) -> tuple[jax.Array, Padding]:
    """Like `ghosts_for_conv`, for the input of a transposed convolution.

    A transposed convolution works on its input upsampled by the stride (the
    values $s$ nodes apart, zeros between, `lax`'s `lhs_dilation`). Its ghost
    values follow the boundary rule on that fine grid: periodic with period
    $sN$, mirrored about the first and last coarse node, or zero. Both are got
    by ghost nodes added before upsampling, $\\lceil p/s \\rceil$ of them, and
    the surplus cut off again after it (a negative `lax` padding).
    """
    if boundary_mode == "dirichlet":
        return x, padding
    coarse = tuple(
        (-(-before // s), -(-after // s))
        for (before, after), s in zip(padding, stride, strict=True)
    )
    fine = tuple(
        (before - coarse_before * s, after - coarse_after * s)
        for (before, after), (coarse_before, coarse_after), s in zip(
            padding, coarse, stride, strict=True
        )
    )
    return pad_ghosts(x, coarse, boundary_mode), fine


def periodic_extension(x: jax.Array, boundary_mode: str) -> jax.Array:
    """The field `(C, *spatial)` continued to one whole period of its ghost rule.

    Periodic: the field itself. Neumann: the even extension, $2(N-1)$ nodes per
    axis ($u_0, \\dots, u_{N-1}, u_{N-2}, \\dots, u_1$). Dirichlet: the odd
    extension about the zero boundary nodes, $2(N+1)$ nodes ($0, u_0, \\dots,
    u_{N-1}, 0, -u_{N-1}, \\dots, -u_0$). A periodic operator (an FFT) applied
    to the extension sees the boundary condition instead of a jump at the wrap;
    `restrict_extension` takes the field's own nodes back.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn._boundary import periodic_extension
        >>> u = jnp.array([[1.0, 2.0, 3.0]])
        >>> periodic_extension(u, "neumann")[0].tolist()
        [1.0, 2.0, 3.0, 2.0]
        >>> periodic_extension(u, "dirichlet")[0].tolist()
        [0.0, 1.0, 2.0, 3.0, 0.0, -3.0, -2.0, -1.0]
    """
    if boundary_mode == "periodic":
        return x
    for axis in range(1, x.ndim):
        if boundary_mode == "neumann":
            inner = jax.lax.slice_in_dim(x, 1, x.shape[axis] - 1, axis=axis)
            x = jnp.concatenate([x, jnp.flip(inner, axis)], axis=axis)
        else:
            zero = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
            x = jnp.concatenate([zero, x, zero, -jnp.flip(x, axis)], axis=axis)
    return x


def restrict_extension(
    y: jax.Array, spatial_shape: tuple[int, ...], boundary_mode: str
) -> jax.Array:
    """The nodes of the original grid, taken back from a `periodic_extension`."""
    start = 1 if boundary_mode == "dirichlet" else 0
    for axis, size in enumerate(spatial_shape, start=1):
        y = jax.lax.slice_in_dim(y, start, start + size, axis=axis)
    return y
