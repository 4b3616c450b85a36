"""SpectralConv: against pdequinox, against the FFT formula, as spectral derivatives."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pdequinox
import pytest

from flowrox.nn import SpectralConv
from flowrox.nn._spectral_transform import field_from_spectrum, kept_spectrum
from tests.nn.test_physics_conv import assert_gradients_match_differences, both, filled


@pytest.mark.parametrize(
    ("shape", "num_modes"), [((16,), 5), ((10, 8), (3, 4)), ((6, 8, 6), (2, 3, 3))]
)
def test_equals_pdequinox_with_equal_channel_counts(shape, num_modes):
    dims = len(shape)
    theirs = filled(
        lambda: pdequinox.conv.SpectralConv(dims, 3, 3, num_modes, key=_key()), dims
    )
    ours = eqx.tree_at(
        lambda c: (c.weights_real, c.weights_imag),
        eqx.filter_eval_shape(lambda: SpectralConv(dims, 3, 3, num_modes, key=_key())),
        (theirs.weights_real, theirs.weights_imag),
    )  # fmt: skip
    x = _field(dims, (3, *shape))
    np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)


def test_the_same_key_draws_pdequinox_initial_weights():
    ours, theirs = eqx.filter_jit(
        lambda: (
            SpectralConv(2, 4, 4, 3, key=_key()),
            pdequinox.conv.SpectralConv(2, 4, 4, 3, key=_key()),
        )
    )()
    np.testing.assert_array_equal(ours.weights_real, theirs.weights_real)
    np.testing.assert_array_equal(ours.weights_imag, theirs.weights_imag)


def _direct(conv: SpectralConv, x: np.ndarray) -> np.ndarray:
    """The layer by its formula: every weight entry whose frequency the grid
    has (once: -(n // 2) <= k < (n + 1) // 2 on a full axis, 0 <= k <= n // 2 on
    the last) multiplies that frequency of the real FFT; the rest are zero."""
    spatial = x.shape[1:]
    spectrum = np.fft.rfftn(x, axes=tuple(range(1, x.ndim)))
    weights = np.asarray(conv.weights_real) + 1j * np.asarray(conv.weights_imag)
    multiplier = np.zeros(
        (conv.out_channels, conv.in_channels, *spectrum.shape[1:]), complex
    )
    wavenumbers = conv.wavenumbers()
    for corner in range(weights.shape[0]):
        for entry in np.ndindex(*conv.num_modes):
            k = wavenumbers[(corner, slice(None), *entry)]
            inside = [
                -(n // 2) <= k_a < (n + 1) // 2
                for k_a, n in zip(k[:-1], spatial[:-1], strict=True)
            ] + [k[-1] <= spatial[-1] // 2]
            if all(inside):
                index = tuple(
                    k_a % n for k_a, n in zip(k[:-1], spatial[:-1], strict=True)
                )
                multiplier[(slice(None), slice(None), *index, k[-1])] = weights[
                    (corner, slice(None), slice(None), *entry)
                ]
    out = np.einsum("oi...,i...->o...", multiplier, spectrum)
    return np.fft.irfftn(out, s=spatial, axes=tuple(range(1, x.ndim)))  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "num_modes"),
    [
        ((12,), 4),
        ((9, 8), (3, 5)),
        # More modes than the grids have: clipped to every frequency once.
        ((7, 6), 9),
        ((4, 5, 6), (3, 2, 8)),
    ],
)
def test_different_channel_counts_match_the_fft_formula(shape, num_modes):
    # pdequinox's SpectralConv fails here: its weights are (corners, in, out,
    # *modes) but its einsum reads the second axis as the output channel, so
    # in_channels != out_channels is a shape error; the formula stands in.
    dims = len(shape)
    conv = filled(lambda: SpectralConv(dims, 2, 3, num_modes, key=_key()), dims)
    x = _field(10 + dims, (2, *shape))
    np.testing.assert_allclose(_run(conv, x), _direct(conv, np.asarray(x)), atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "kept"),
    [
        ((16,), [(9, 0)]),
        ((7, 6), [(4, 3), (2, 0)]),
        ((4, 5, 6), [(2, 2), (1, 2), (4, 0)]),
    ],
)
def test_the_dft_matrix_and_the_fft_give_the_kept_spectrum_and_back(shape, kept):
    # Few kept modes go by the truncated DFT matrix, many by the FFT: the
    # same numbers, and those of numpy's real FFT cut to the kept modes.
    x = np.random.default_rng(0).normal(size=(2, *shape))
    axes = tuple(range(1, x.ndim))
    full = np.fft.rfftn(x, axes=axes)
    # The kept modes, and the field from them alone (the others set to zero).
    kept_indices = [range(2)]
    for (low, high), n in zip(kept[:-1], shape[:-1], strict=True):
        kept_indices.append([*range(low), *range(n - high, n)])
    kept_indices.append(range(kept[-1][0]))
    expected = full[np.ix_(*kept_indices)]
    keep = np.zeros(full.shape, bool)
    keep[np.ix_(*kept_indices)] = True
    expected_back = np.fft.irfftn(np.where(keep, full, 0), s=shape, axes=axes)

    @jax.jit
    def both_ways(x):
        spectra = [kept_spectrum(x, kept, matmul) for matmul in (True, False)]
        backs = [
            field_from_spectrum(spectrum, shape, kept, matmul)
            for spectrum, matmul in zip(spectra, (True, False), strict=True)
        ]
        return spectra, backs

    spectra, backs = both_ways(jnp.asarray(x, jnp.float32))
    for spectrum, back in zip(spectra, backs, strict=True):
        np.testing.assert_allclose(spectrum, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(back, expected_back, rtol=1e-4, atol=1e-5)


def test_weights_of_frequencies_a_grid_lacks_get_no_gradient():
    conv = filled(lambda: SpectralConv(2, 1, 1, 5, key=_key()), 0)
    x = _field(1, (1, 6, 4))
    gradient = eqx.filter_jit(eqx.filter_grad(lambda conv: jnp.sum(jnp.sin(conv(x)))))(
        conv
    )
    k = conv.wavenumbers()
    kept = ((k[:, 0] >= -3) & (k[:, 0] < 3) & (k[:, 1] <= 2))[:, None, None]
    used = np.abs(np.asarray(gradient.weights_real)) > 0
    np.testing.assert_array_equal(used, np.broadcast_to(kept, used.shape))


def _operator_weights(conv: SpectralConv, operators, length=2 * np.pi):
    r"""Weights making output channel `o` the operator `operators[o]` of the one
    input channel: a list of terms `(coefficient, orders per axis)`, each term
    $c \prod_a (i k_a)^{n_a}$ in Fourier space."""
    dims = conv.num_spatial_dims
    lengths = np.broadcast_to(length, (dims,)).reshape(1, dims, *(1,) * dims)
    k = 2 * np.pi / lengths * conv.wavenumbers()
    rows = [
        sum(
            c * np.prod([(1j * k[:, a]) ** n for a, n in enumerate(orders)], axis=0)
            for c, orders in terms
        )
        for terms in operators
    ]
    multipliers = np.stack(rows, axis=1)[:, :, None]
    return eqx.tree_at(
        lambda c: (c.weights_real, c.weights_imag),
        conv,
        (jnp.asarray(multipliers.real), jnp.asarray(multipliers.imag)),
    )


def test_reproduces_spectral_derivatives_in_one_dimension(x64):
    n = 32
    x = 2 * np.pi * np.arange(n) / n
    u = np.sin(3 * x) + 0.5 * np.cos(5 * x)
    derivatives = [
        3 * np.cos(3 * x) - 2.5 * np.sin(5 * x),
        -9 * np.sin(3 * x) - 12.5 * np.cos(5 * x),
        -27 * np.cos(3 * x) + 62.5 * np.sin(5 * x),
    ]
    conv = eqx.filter_eval_shape(lambda: SpectralConv(1, 1, 3, 16, key=_key()))
    conv = _operator_weights(conv, [[(1, (1,))], [(1, (2,))], [(1, (3,))]])
    np.testing.assert_allclose(_run(conv, u[None]), np.stack(derivatives), atol=1e-11)


def test_reproduces_spectral_derivatives_in_two_dimensions(x64):
    # A 16 x 12 periodic grid on [0, 2 pi) x [0, 4 pi), and more modes than it
    # has (clipped): d/dx, d/dy and the Laplacian, exact to rounding.
    x = 2 * np.pi * np.arange(16)[:, None] / 16
    y = 4 * np.pi * np.arange(12)[None, :] / 12
    u = np.sin(2 * x) * np.cos(1.5 * y) + np.cos(x + y)
    expected = np.stack(
        [
            2 * np.cos(2 * x) * np.cos(1.5 * y) - np.sin(x + y),
            -1.5 * np.sin(2 * x) * np.sin(1.5 * y) - np.sin(x + y),
            -6.25 * np.sin(2 * x) * np.cos(1.5 * y) - 2 * np.cos(x + y),
        ]
    )
    conv = eqx.filter_eval_shape(lambda: SpectralConv(2, 1, 3, 40, key=_key()))
    gradient_and_laplacian = [
        [(1, (1, 0))],
        [(1, (0, 1))],
        [(1, (2, 0)), (1, (0, 2))],
    ]
    conv = _operator_weights(
        conv, gradient_and_laplacian, length=np.array([2 * np.pi, 4 * np.pi])
    )
    np.testing.assert_allclose(_run(conv, u[None]), expected, atol=1e-10)


def test_gradients_match_central_differences(x64):
    conv = filled(lambda: SpectralConv(2, 2, 3, (2, 3), key=_key()), 3)
    assert_gradients_match_differences(lambda c, x: c(x), conv, _field(4, (2, 6, 5)))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: SpectralConv(2, 1, 1, (3, 3, 3), key=_key()),
            r"num_modes must be a whole number of at least 1, or a sequence of 2",
        ),
        (
            lambda: SpectralConv(1, 1, 1, 0, key=_key()),
            r"num_modes must be a whole number of at least 1",
        ),
        (
            lambda: SpectralConv(1, 0, 1, 3, key=_key()),
            r"in_channels must be a whole number of at least 1; got 0",
        ),
    ],
)
def test_bad_arguments_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        eqx.filter_eval_shape(build)


def test_a_field_with_the_wrong_channels_is_refused():
    conv = eqx.filter_eval_shape(lambda: SpectralConv(1, 2, 2, 3, key=_key()))
    with pytest.raises(
        ValueError, match=r"expected one field of shape \(2, \*spatial\)"
    ):
        conv(jnp.ones((3, 16)))


def _key():
    return jax.random.key(0)


def _field(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


@eqx.filter_jit
def _run(conv, x):
    return conv(x)
