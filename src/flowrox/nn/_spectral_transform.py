"""The kept Fourier modes of a real field, and the field back from them.

`kept_spectrum` is the real FFT of a field `(C, *spatial)` over its spatial
axes, cut to the kept frequencies of each axis: on the last axis the first
`m`, on every other axis the first `low` and the last `high` (the
non-negative, then the negative frequencies). `field_from_spectrum` is the
inverse real FFT of such a spectrum, the dropped frequencies taken as zero.

Each axis is transformed on its own, by the FFT or, when few modes are kept,
by a product with the truncated DFT matrix: $n k$ multiply-adds for $k$ kept
modes against the FFT's $O(n \\log n)$, but as one dense matrix product, which
runs several times faster per operation on CPUs and accelerators and needs no
transposes of a batch. The two give the same numbers up to rounding.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

Kept = list[tuple[int, int]]


def use_matmul(n: int, kept: int) -> bool:
    """Whether `kept` modes of an axis of `n` nodes go by the DFT matrix.

    The matrix product costs $nk$ against the FFT's $n \\log_2 n$ (about); it
    is taken while $k \\le 2 \\log_2 n$, where its speed per operation more
    than makes up for it.

    Examples:
        >>> from flowrox.nn._spectral_transform import use_matmul
        >>> use_matmul(256, 12), use_matmul(256, 40)
        (True, False)
    """
    return kept <= 2 * math.log2(max(n, 2))


def _frequencies(n: int, low: int, high: int) -> np.ndarray:
    """The kept frequencies of a full axis: $0, \\dots, low-1, -high, \\dots, -1$."""
    return np.concatenate([np.arange(low), np.arange(-high, 0)])


def _along(x: jax.Array, axis: int, matrix) -> jax.Array:
    """`x` with its axis `axis` contracted against the rows of `matrix`."""
    moved = jnp.moveaxis(x, axis, -1)
    return jnp.moveaxis(moved @ matrix, -1, axis)


def _forward_last(x: jax.Array, m: int, matmul: bool) -> jax.Array:
    n = x.shape[-1]
    if not matmul:
        return jax.lax.slice_in_dim(jnp.fft.rfft(x, axis=-1), 0, m, axis=-1)
    angle = 2 * np.pi * np.outer(np.arange(n), np.arange(m)) / n
    matrix = jnp.asarray(np.concatenate([np.cos(angle), -np.sin(angle)], 1), x.dtype)
    both = x @ matrix
    return jax.lax.complex(both[..., :m], both[..., m:])


def _forward_full(x: jax.Array, axis: int, low: int, high: int, matmul: bool):
    n = x.shape[axis]
    if not matmul:
        spectrum = jnp.fft.fft(x, axis=axis)
        return jnp.concatenate(
            [
                jax.lax.slice_in_dim(spectrum, 0, low, axis=axis),
                jax.lax.slice_in_dim(spectrum, n - high, n, axis=axis),
            ],
            axis=axis,
        )
    angle = -2 * np.pi * np.outer(np.arange(n), _frequencies(n, low, high)) / n
    return _along(x, axis, jnp.asarray(np.exp(1j * angle), x.dtype))


def kept_spectrum(x: jax.Array, kept: Kept, matmul: bool | None = None) -> jax.Array:
    """The real FFT of `x` `(C, *spatial)`, cut to the kept modes of each axis.

    Args:
        x: a real field, channels first.
        kept: per spatial axis `(low, high)`: the non-negative and negative
            frequencies kept (the last axis's `high` is 0).
        matmul: force the DFT matrix (True) or the FFT (False) on every axis;
            by default each axis takes the faster (`use_matmul`).

    Returns:
        A complex array `(C, low_0 + high_0, ..., low_{D-1})`.
    """
    spatial = x.shape[1:]
    m = kept[-1][0]
    chosen = use_matmul(spatial[-1], m) if matmul is None else matmul
    spectrum = _forward_last(x, m, chosen)
    for axis, ((low, high), n) in enumerate(zip(kept[:-1], spatial, strict=False), 1):
        chosen = use_matmul(n, low + high) if matmul is None else matmul
        spectrum = _forward_full(spectrum, axis, low, high, chosen)
    return spectrum


def _inverse_last(spectrum: jax.Array, n: int, matmul: bool) -> jax.Array:
    m = spectrum.shape[-1]
    if not matmul:
        padding = [(0, 0)] * (spectrum.ndim - 1) + [(0, n // 2 + 1 - m)]
        return jnp.fft.irfft(jnp.pad(spectrum, padding), n=n, axis=-1)
    # irfft: y_j = (1/n) sum_k w_k Re(Y_k e^{2 pi i jk / n}), w = 1 for the
    # zero and Nyquist frequencies (whose imaginary parts it ignores), else 2.
    k = np.arange(m)
    weights = np.where((k == 0) | (2 * k == n), 1.0, 2.0) / n
    angle = 2 * np.pi * np.outer(k, np.arange(n)) / n
    matrix = np.concatenate(
        [weights[:, None] * np.cos(angle), -weights[:, None] * np.sin(angle)], 0
    )
    real_dtype = jnp.finfo(spectrum.dtype).dtype
    both = jnp.concatenate([spectrum.real, spectrum.imag], axis=-1)
    return both @ jnp.asarray(matrix, real_dtype)


def _inverse_full(spectrum: jax.Array, axis: int, n: int, low: int, high: int, matmul):
    if not matmul:
        zeros = list(spectrum.shape)
        zeros[axis] = n - low - high
        full = jnp.concatenate(
            [
                jax.lax.slice_in_dim(spectrum, 0, low, axis=axis),
                jnp.zeros(zeros, spectrum.dtype),
                jax.lax.slice_in_dim(spectrum, low, low + high, axis=axis),
            ],
            axis=axis,
        )
        return jnp.fft.ifft(full, axis=axis)
    angle = 2 * np.pi * np.outer(_frequencies(n, low, high), np.arange(n)) / n
    return _along(spectrum, axis, jnp.asarray(np.exp(1j * angle) / n, spectrum.dtype))


def field_from_spectrum(
    spectrum: jax.Array,
    spatial: tuple[int, ...],
    kept: Kept,
    matmul: bool | None = None,
) -> jax.Array:
    """The inverse of `kept_spectrum`: the real field on the grid `spatial`.

    The frequencies outside `kept` are taken as zero, so this is the inverse
    real FFT of the spectrum they are dropped from.
    """
    for axis, ((low, high), n) in enumerate(zip(kept[:-1], spatial, strict=False), 1):
        chosen = use_matmul(n, low + high) if matmul is None else matmul
        spectrum = _inverse_full(spectrum, axis, n, low, high, chosen)
    n, m = spatial[-1], kept[-1][0]
    return _inverse_last(spectrum, n, use_matmul(n, m) if matmul is None else matmul)
