r"""`ConvSym`: a periodic convolution whose kernel is shared over symmetry orbits.

A kernel $W(\delta)$ over the offsets $\delta$ of its taps gives the
convolution $y(x) = \sum_\delta W(\delta)\,\phi(x + \delta)$. When $W$ is
constant on the orbits of a group $G$ of lattice symmetries that fix the
origin, $W(g\delta) = W(\delta)$, the convolution commutes with every $g$:
$(W * g\phi) = g(W * \phi)$. Sharing one parameter per orbit enforces it.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._numerics import as_float_array

#: The symmetry groups `ConvSym` can share its kernel over.
SYMMETRIES = ("hyperoctahedral", "translation")


def _kernel_shape(owner: str, kernel_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(k) for k in kernel_shape)
    except TypeError:
        raise ValueError(
            f"{owner}: kernel_shape must be a tuple of ints, one per lattice "
            f"axis, such as (3, 3); got {kernel_shape!r}."
        ) from None
    if not shape or any(k < 1 for k in shape):
        raise ValueError(
            f"{owner}: kernel_shape needs at least one axis, each of size >= 1; "
            f"got {shape}."
        )
    return shape


def _check_symmetry(owner: str, symmetry) -> str:
    if symmetry not in SYMMETRIES:
        raise ValueError(
            f"{owner}: symmetry must be 'hyperoctahedral' (reflections of every "
            "axis and permutations of axes of equal kernel size: D4 in 2-D) or "
            f"'translation' (one parameter per tap); got {symmetry!r}."
        )
    return symmetry


def kernel_orbits(
    kernel_shape: Sequence[int], symmetry: str = "hyperoctahedral"
) -> np.ndarray:
    r"""The orbit of every kernel tap under a symmetry group acting on offsets.

    Tap $j$ of an axis of size $K$ sits at offset $\delta = j - \lfloor (K-1)/2
    \rfloor$ (for odd $K$, $-\frac{K-1}2 \dots \frac{K-1}2$). With
    `"hyperoctahedral"` the group reflects each axis, $\delta_\mu \to
    -\delta_\mu$, and permutes the axes of equal kernel size (the square's
    rotations and reflections, D4, in 2-D). An even axis is treated
    periodically, its offsets taken mod $K$, so the offset $K/2$ is its own
    mirror image. Orbits are numbered by increasing $(|\delta_\mu|)$; the
    centre is orbit 0. With `"translation"` every tap is its own orbit.

    Args:
        kernel_shape: the kernel's size along each lattice axis.
        symmetry: `"hyperoctahedral"` or `"translation"`.

    Returns:
        An int array of `kernel_shape`: the orbit index of each tap, from 0 to
        the number of orbits minus one.

    Examples:
        >>> from flowrox.lattice import kernel_orbits
        >>> [int(kernel_orbits(k).max()) + 1 for k in [(3, 3), (5, 5), (7, 7), (4, 4)]]
        [3, 6, 10, 6]
        >>> kernel_orbits((3, 3)).tolist()  # centre, edges, corners
        [[2, 1, 2], [1, 0, 1], [2, 1, 2]]
    """
    shape = _kernel_shape("kernel_orbits", kernel_shape)
    symmetry = _check_symmetry("kernel_orbits", symmetry)
    if symmetry == "translation":
        return np.arange(int(np.prod(shape))).reshape(shape)
    groups = {}
    for axis, size in enumerate(shape):
        groups.setdefault(size, []).append(axis)
    keys = {}
    for tap in np.ndindex(*shape):
        distance = []
        for size, j in zip(shape, tap, strict=True):
            offset = j - (size - 1) // 2
            distance.append(min(offset % size, -offset % size))
        # Within a group of equal sizes the axes may be permuted: sort them.
        keys[tap] = tuple(
            tuple(sorted(distance[axis] for axis in axes)) for axes in groups.values()
        )
    numbering = {key: index for index, key in enumerate(sorted(set(keys.values())))}
    orbits = np.empty(shape, dtype=int)
    for tap, key in keys.items():
        orbits[tap] = numbering[key]
    return orbits


class ConvSym(eqx.Module):
    r"""A periodic convolution with one kernel parameter per symmetry orbit.

    Maps a field of shape `(*lattice, in_channels)` to `(*lattice,
    out_channels)` by $y_c(x) = b_c + \sum_{\delta, c'} W_{c'c}(\delta)\,
    \phi_{c'}(x + \delta)$ with periodic boundaries, where $W$ is shared over
    the orbits of `kernel_orbits(kernel_shape, symmetry)`. With the default
    hyperoctahedral symmetry and an odd kernel, the layer commutes exactly with
    the lattice's rotations and reflections (D4 in 2-D) and translations; an
    even kernel does so when it spans the lattice ($K = L$), otherwise its
    offset $K/2$ stands for both $\pm K/2$ only approximately.
    `symmetry="translation"` gives a plain periodic convolution.

    The kernel can come from outside (`kernel=`, one entry per orbit), e.g.
    a time-dependent kernel computed by a network, reusing the layer's orbits.

    Args:
        in_channels: the input channels.
        out_channels: the output channels.
        kernel_shape: the kernel's size along each lattice axis; its length is
            the lattice dimension.
        symmetry: `"hyperoctahedral"` (default) or `"translation"`.
        use_bias: add a learned bias per output channel (zero at first).
        zero_init: start with a zero kernel (the layer then outputs its bias).
        key: the key for the kernel's initial weights, uniform in
            $\pm 1/\sqrt{\text{fan-in}}$ as for `eqx.nn.Conv`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import ConvSym
        >>> conv = ConvSym(1, 2, (3, 3), key=jax.random.key(0))
        >>> conv.weight.shape  # 3 orbits: centre, edges, corners
        (3, 1, 2)
        >>> phi = jax.random.normal(jax.random.key(1), (6, 6, 1))
        >>> rotated = conv(jnp.rot90(phi))
        >>> bool(jnp.allclose(rotated, jnp.rot90(conv(phi)), atol=1e-6))
        True
    """

    weight: jax.Array
    bias: jax.Array | None
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_shape: tuple[int, ...] = eqx.field(static=True)
    symmetry: str = eqx.field(static=True)
    orbits: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_shape: Sequence[int],
        *,
        symmetry: str = "hyperoctahedral",
        use_bias: bool = True,
        zero_init: bool = False,
        key: jax.Array,
    ):
        owner = "ConvSym"
        self.kernel_shape = _kernel_shape(owner, kernel_shape)
        self.symmetry = _check_symmetry(owner, symmetry)
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{owner}: {name} must be an int; got {value!r}.")
            if value < 1:
                raise ValueError(f"{owner}: {name} must be >= 1; got {value}.")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        orbits = kernel_orbits(self.kernel_shape, self.symmetry)
        self.orbits = tuple(int(o) for o in orbits.ravel())
        shape = (self.n_orbits, self.in_channels, self.out_channels)
        if zero_init:
            self.weight = jnp.zeros(shape)
        else:
            bound = 1.0 / np.sqrt(self.in_channels * np.prod(self.kernel_shape))
            self.weight = jax.random.uniform(key, shape, minval=-bound, maxval=bound)
        self.bias = jnp.zeros(self.out_channels) if use_bias else None

    @property
    def n_orbits(self) -> int:
        """The number of orbits, i.e. of distinct kernel values per channel pair."""
        return max(self.orbits) + 1

    @property
    def center_orbit(self) -> int:
        """The orbit of the centre tap (offset 0)."""
        centre = tuple((k - 1) // 2 for k in self.kernel_shape)
        return self.orbits[int(np.ravel_multi_index(centre, self.kernel_shape))]

    def _orbit_kernel(self, kernel: ArrayLike | None) -> jax.Array:
        if kernel is None:
            return self.weight
        kernel = as_float_array(kernel)
        if kernel.shape != self.weight.shape:
            raise ValueError(
                f"ConvSym: expected kernel of shape {self.weight.shape} (orbits, "
                f"in_channels, out_channels), got {kernel.shape}."
            )
        return kernel

    def full_kernel(self, kernel: ArrayLike | None = None) -> jax.Array:
        """The kernel on every tap, of shape `(*kernel_shape, in, out)`.

        Args:
            kernel: an orbit kernel to unfold instead of the layer's own.
        """
        orbit_kernel = self._orbit_kernel(kernel)
        full = orbit_kernel[np.asarray(self.orbits)]
        return full.reshape(*self.kernel_shape, self.in_channels, self.out_channels)

    def center_tap(self, kernel: ArrayLike | None = None) -> jax.Array:
        """The `(in, out)` coupling of the centre tap: $\\partial y_c(x) /
        \\partial\\phi_{c'}(x)$ (the input's own site).

        Args:
            kernel: an orbit kernel to read instead of the layer's own.
        """
        return self._orbit_kernel(kernel)[self.center_orbit]

    def __call__(self, x: ArrayLike, kernel: ArrayLike | None = None) -> jax.Array:
        """Applies the convolution to one field of shape `(*lattice, in_channels)`.

        Args:
            x: the field; its lattice axes are as many as the kernel's.
            kernel: an orbit kernel of shape `(n_orbits, in_channels,
                out_channels)` to use instead of the layer's `weight`.

        Returns:
            The field of shape `(*lattice, out_channels)`.
        """
        x = as_float_array(x)
        ndim = len(self.kernel_shape)
        if x.ndim != ndim + 1 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"ConvSym: expected one field of shape (*lattice, "
                f"{self.in_channels}) with {ndim} lattice axes, got {x.shape}. Add "
                "a channel axis to a scalar field (phi[..., None]); map over a "
                "batch with jax.vmap."
            )
        lattice = x.shape[:-1]
        if any(k > n for k, n in zip(self.kernel_shape, lattice, strict=True)):
            raise ValueError(
                f"ConvSym: the kernel {self.kernel_shape} is larger than the lattice "
                f"{lattice}; its taps would wrap onto each other. Use a kernel no "
                "larger than the lattice."
            )
        full = self.full_kernel(kernel)
        pad = [((k - 1) // 2, k // 2) for k in self.kernel_shape]
        padded = jnp.pad(x, [*pad, (0, 0)], mode="wrap")
        # lax wants (batch, channels, *space) and (out, in, *space).
        lhs = jnp.moveaxis(padded, -1, 0)[None]
        rhs = jnp.moveaxis(full, (-1, -2), (0, 1))
        y = jax.lax.conv_general_dilated(
            lhs, rhs.astype(lhs.dtype), (1,) * ndim, "VALID"
        )
        y = jnp.moveaxis(y[0], 0, -1)
        if self.bias is not None:
            y = y + self.bias
        return y
