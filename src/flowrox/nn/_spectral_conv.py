"""`SpectralConv`: a convolution done in Fourier space on the lowest modes."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._conv_common import (
    check_count,
    check_field,
    check_num_spatial_dims,
    spatial_tuple,
)
from ._spectral_transform import field_from_spectrum, kept_spectrum


class SpectralConv(eqx.Module):
    r"""Multiplies a real field's lowest Fourier modes by learned complex weights.

    For a field $u$ of shape `(in_channels, *spatial)`, with $\hat u$ its real
    FFT over the spatial axes,

    $$ \hat y_o(\mathbf k) = \sum_i W_{o,i}(\mathbf k)\, \hat u_i(\mathbf k) $$

    for every retained wavenumber $\mathbf k$, and $\hat y_o(\mathbf k) = 0$ for
    the others; the output is the inverse real FFT, `(out_channels, *spatial)`,
    on the input's grid. Along the last axis the real FFT keeps the
    non-negative frequencies, and the layer keeps the first `num_modes` of them;
    along every other axis it keeps `num_modes` non-negative and `num_modes`
    negative frequencies ($0, \dots, m-1$ and $-m, \dots, -1$). Hence the
    $2^{D-1}$ corners of the spectrum in $D$ dimensions, each with its own
    weights.

    `weights_real` and `weights_imag` have shape
    `(2 ** (num_spatial_dims - 1), out_channels, in_channels, *num_modes)`.
    Corner $c$ takes the negative frequencies of axis $a$ (for
    $a < D - 1$) when bit $a$ of $c$ is set, its entry $j$ then being the
    frequency $j - m_a$; `wavenumbers()` gives the signed frequency of every
    entry. Both are initialised from $\mathcal N(0, (C_\text{in}
    C_\text{out})^{-2})$, as pdequinox's `SpectralConv`, whose corner order
    and (for equal channel counts) layout these are.

    On a grid too small for `num_modes`, the modes are clipped: an axis of $n$
    nodes keeps at most $\lceil n/2 \rceil$ non-negative and $\lfloor n/2
    \rfloor$ negative frequencies (together every frequency once, the Nyquist
    one of an even $n$ as $-n/2$), the last axis at most $n/2 + 1$; the
    weights of frequencies a grid lacks are not used (their gradient is zero).

    An axis with few kept modes ($k \le 2 \log_2 n$) is transformed by a
    product with its truncated DFT matrix, the others by the FFT: the same
    numbers up to rounding, and on CPU a 1-D FNO of 12 modes on 256 points
    runs faster than with FFTs (`benchmarks/bench_conv.py`).

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels.
        out_channels: the output's channels.
        num_modes: the modes kept per axis, one int for all axes or one per axis.
        key: the key for the initial weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import SpectralConv
        >>> conv = SpectralConv(2, 3, 5, num_modes=4, key=jax.random.key(0))
        >>> conv.weights_real.shape
        (2, 5, 3, 4, 4)
        >>> conv(jnp.ones((3, 32, 16))).shape
        (5, 32, 16)
    """

    weights_real: jax.Array
    weights_imag: jax.Array
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_modes: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_modes: int | Sequence[int],
        *,
        key: jax.Array,
    ):
        owner = "SpectralConv"
        n = self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)
        self.num_modes = spatial_tuple(owner, "num_modes", num_modes, n)
        shape = (2 ** (n - 1), self.out_channels, self.in_channels, *self.num_modes)
        real_key, imag_key = jax.random.split(key)
        scale = 1.0 / (self.in_channels * self.out_channels)
        self.weights_real = scale * jax.random.normal(real_key, shape)
        self.weights_imag = scale * jax.random.normal(imag_key, shape)

    def wavenumbers(self) -> np.ndarray:
        """The signed frequency of every weight entry, per axis.

        Returns:
            An int array of shape `(2 ** (D - 1), D, *num_modes)`: entry
            `[c, a, j_0, ..., j_{D-1}]` is the frequency along axis `a` that
            the weights at `[c, :, :, j_0, ..., j_{D-1}]` multiply (in cycles
            per domain: times $2\\pi/L_a$ for the angular wavenumber).

        Examples:
            >>> import jax
            >>> from flowrox.nn import SpectralConv
            >>> conv = SpectralConv(2, 1, 1, num_modes=3, key=jax.random.key(0))
            >>> conv.wavenumbers()[1, 0, :, 0].tolist()  # corner 1: axis 0 negative
            [-3, -2, -1]
        """
        dims = self.num_spatial_dims
        result = np.zeros((2 ** (dims - 1), dims, *self.num_modes), dtype=int)
        for corner in range(2 ** (dims - 1)):
            for axis, modes in enumerate(self.num_modes):
                negative = axis < dims - 1 and (corner >> axis) & 1
                frequencies = np.arange(modes) - (modes if negative else 0)
                shape = [1] * dims
                shape[axis] = modes
                result[corner, axis] = np.reshape(frequencies, shape)
        return result

    def _kept(self, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        """The non-negative and negative frequencies kept per axis on this grid."""
        *full, last = spatial
        kept = [
            (min(m, (n + 1) // 2), min(m, n // 2))
            for m, n in zip(self.num_modes[:-1], full, strict=True)
        ]
        return [*kept, (min(self.num_modes[-1], last // 2 + 1), 0)]

    def _compact_weights(self, kept: list[tuple[int, int]]) -> jax.Array:
        """The kept weights as one array `(out, in, *kept frequencies per axis)`.

        Along each full axis the non-negative block comes first, then the
        negative one, the order of the FFT's own frequencies.
        """
        dims = self.num_spatial_dims
        weights = jax.lax.complex(self.weights_real, self.weights_imag)
        # The corner axis as one axis per corner bit, bit 0 (axis 0) first.
        weights = weights.reshape((2,) * (dims - 1) + weights.shape[1:])
        weights = jnp.transpose(
            weights, (*reversed(range(dims - 1)), *range(dims - 1, weights.ndim))
        )
        for axis in range(dims - 1):
            # Bit `axis` leads; the spatial axis `axis` then sits at position dims.
            (low, high), modes = kept[axis], self.num_modes[axis]
            weights = jnp.concatenate(
                [
                    jax.lax.slice_in_dim(weights[0], 0, low, axis=dims),
                    jax.lax.slice_in_dim(weights[1], modes - high, modes, axis=dims),
                ],
                axis=dims,
            )
        return jax.lax.slice_in_dim(weights, 0, kept[-1][0], axis=weights.ndim - 1)

    def __call__(self, x: ArrayLike, *, key: jax.Array | None = None) -> jax.Array:
        """`(in_channels, *spatial)` to `(out_channels, *spatial)`.

        Args:
            x: one real field, channels first.
            key: ignored (equinox's layer signature).
        """
        del key
        x = check_field("SpectralConv", x, self.in_channels, self.num_spatial_dims)
        spatial = x.shape[1:]
        kept = self._kept(spatial)
        spectrum = kept_spectrum(x, kept)
        weights = self._compact_weights(kept).astype(spectrum.dtype)
        out = jnp.einsum("i...,oi...->o...", spectrum, weights)
        return field_from_spectrum(out, spatial, kept).astype(x.dtype)
