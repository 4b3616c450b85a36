"""ConvSym: orbit counts, the orbits against a brute-force group action, the
convolution against a dense periodic sum, and exact equivariance."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.lattice import ConvSym, kernel_orbits


def test_orbit_counts():
    counts = {
        (3, 3): 3,
        (5, 5): 6,
        (7, 7): 10,
        (4, 4): 6,  # offsets -1, 0, 1, 2 with 2 = -2 (mod 4)
        (1, 1): 1,
        (3, 3, 3): 4,
        (3,): 2,
        (3, 5): 6,  # unequal sizes: reflections only
    }
    for shape, count in counts.items():
        assert int(kernel_orbits(shape).max()) + 1 == count, shape
    assert int(kernel_orbits((3, 3), "translation").max()) + 1 == 9


def _brute_force_orbits(shape):
    """Orbits of the signed permutations of equal-size axes acting on offsets
    taken mod K (union-find over the whole group, not its generators)."""
    taps = list(np.ndindex(*shape))
    centre = [(k - 1) // 2 for k in shape]
    parent = {tap: tap for tap in taps}

    def find(tap):
        while parent[tap] != tap:
            tap = parent[tap]
        return tap

    for permutation in itertools.permutations(range(len(shape))):
        if any(shape[a] != shape[b] for a, b in enumerate(permutation)):
            continue
        for signs in itertools.product((1, -1), repeat=len(shape)):
            for tap in taps:
                offset = [j - c for j, c in zip(tap, centre, strict=True)]
                image = tuple(
                    (signs[axis] * offset[permutation[axis]] + centre[axis])
                    % shape[axis]
                    for axis in range(len(shape))
                )
                parent[find(tap)] = find(image)
    return {tap: find(tap) for tap in taps}


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (4, 4), (6, 6), (3, 5), (3, 3, 3)])
def test_orbits_are_the_orbits_of_the_whole_group(shape):
    orbits = kernel_orbits(shape)
    roots = _brute_force_orbits(shape)
    # Two taps share an orbit index exactly when the group maps one to the other.
    for a, b in itertools.combinations(roots, 2):
        assert (orbits[a] == orbits[b]) == (roots[a] == roots[b]), (a, b)
    centre = tuple((k - 1) // 2 for k in shape)
    assert orbits[centre] == 0


@eqx.filter_jit
def _apply(conv, phi, kernel=None):
    return conv(phi, kernel)


def _dense_reference(conv, phi):
    """y_c(x) = b_c + sum_{delta, c'} W_{c'c}(delta) phi_{c'}(x + delta), periodic."""
    kernel = np.asarray(conv.full_kernel())
    phi = np.asarray(phi)
    out = np.zeros((*phi.shape[:-1], conv.out_channels))
    for tap in np.ndindex(*conv.kernel_shape):
        offset = [j - (k - 1) // 2 for j, k in zip(tap, conv.kernel_shape, strict=True)]
        shifted = np.roll(phi, [-o for o in offset], axis=tuple(range(len(offset))))
        out += shifted @ kernel[tap]
    return out + (0 if conv.bias is None else np.asarray(conv.bias))


def _random(conv, key):
    """The layer with random weights and bias (a trained layer, not a new one)."""
    weight_key, bias_key = jax.random.split(key)
    conv = eqx.tree_at(
        lambda c: c.weight, conv, jax.random.normal(weight_key, conv.weight.shape)
    )
    if conv.bias is not None:
        bias = jax.random.normal(bias_key, conv.bias.shape)
        conv = eqx.tree_at(lambda c: c.bias, conv, bias)
    return conv


@pytest.mark.parametrize(
    ("kernel_shape", "lattice", "symmetry"),
    [
        ((3, 3), (5, 6), "hyperoctahedral"),
        ((4, 4), (6, 5), "hyperoctahedral"),
        ((3, 2), (4, 4), "translation"),
        ((3, 3, 3), (3, 4, 3), "hyperoctahedral"),
    ],
)
def test_convolution_equals_the_dense_periodic_sum(kernel_shape, lattice, symmetry):
    key = jax.random.key(0)
    conv = _random(ConvSym(2, 3, kernel_shape, symmetry=symmetry, key=key), key)
    phi = jax.random.normal(jax.random.key(1), (*lattice, 2))
    np.testing.assert_allclose(
        _apply(conv, phi), _dense_reference(conv, phi), atol=1e-5
    )
    # An external kernel (e.g. from a time embedding) reuses the orbits.
    external = jax.random.normal(jax.random.key(2), conv.weight.shape)
    swapped = eqx.tree_at(lambda c: c.weight, conv, external)
    np.testing.assert_allclose(
        _apply(conv, phi, external), _dense_reference(swapped, phi), atol=1e-5
    )


def _d4(phi):
    """The eight rotations and reflections of a square lattice (axes 0, 1)."""
    for k in range(4):
        rotated = jnp.rot90(phi, k, axes=(0, 1))
        yield rotated
        yield jnp.flip(rotated, axis=0)


@eqx.filter_jit
def _d4_gap(conv, phi):
    """The largest |conv(g phi) - g conv(phi)| over the eight elements g."""
    out = conv(phi)
    gaps = [
        jnp.max(jnp.abs(conv(transformed) - transformed_out))
        for transformed, transformed_out in zip(_d4(phi), _d4(out), strict=True)
    ]
    return jnp.max(jnp.stack(gaps))


@pytest.mark.parametrize(("kernel", "size"), [((3, 3), 6), ((5, 5), 5), ((4, 4), 4)])
def test_exact_d4_equivariance(kernel, size):
    # Odd kernels on any square lattice; an even kernel when it spans the lattice.
    key = jax.random.key(3)
    conv = _random(ConvSym(2, 2, kernel, key=key), key)
    phi = jax.random.normal(jax.random.key(4), (size, size, 2))
    assert float(_d4_gap(conv, phi)) < 1e-5


def test_equivariance_fails_where_the_docs_say_it_does():
    key = jax.random.key(5)
    phi = jax.random.normal(jax.random.key(6), (6, 6, 1))
    # An even kernel smaller than the lattice: offset 2 stands for both +-2.
    even = _random(ConvSym(1, 1, (4, 4), key=key), key)
    assert float(_d4_gap(even, phi)) > 1e-2
    # A plain translation-equivariant kernel is not D4-equivariant, but does
    # commute with translations.
    plain = _random(ConvSym(1, 1, (3, 3), symmetry="translation", key=key), key)
    assert float(_d4_gap(plain, phi)) > 1e-2
    shifted = _apply(plain, jnp.roll(phi, (1, 2), (0, 1)))
    np.testing.assert_allclose(
        shifted, jnp.roll(_apply(plain, phi), (1, 2), (0, 1)), atol=1e-5
    )


@eqx.filter_jit
def _cube_gaps(conv, phi):
    out = conv(phi)
    gaps = [
        conv(jnp.transpose(phi, (*axes, 3))) - jnp.transpose(out, (*axes, 3))
        for axes in [(1, 0, 2), (2, 0, 1), (0, 2, 1)]
    ]
    gaps += [conv(jnp.flip(phi, axis)) - jnp.flip(out, axis) for axis in range(3)]
    return jnp.max(jnp.abs(jnp.stack(gaps)))


def test_hyperoctahedral_equivariance_in_three_dimensions():
    key = jax.random.key(7)
    conv = _random(ConvSym(1, 2, (3, 3, 3), key=key), key)
    phi = jax.random.normal(jax.random.key(8), (4, 4, 4, 1))
    assert float(_cube_gaps(conv, phi)) < 1e-5


def test_center_tap_is_the_on_site_derivative():
    key = jax.random.key(9)
    conv = _random(ConvSym(2, 3, (3, 3), key=key), key)
    phi = jax.random.normal(jax.random.key(10), (4, 5, 2))
    # d y_c(x) / d phi_c'(x) at one site, from autodiff.
    jacobian = eqx.filter_jit(jax.jacobian(lambda p: conv(p)[1, 2]))(phi)
    jacobian = jacobian[:, 1, 2, :]
    np.testing.assert_allclose(jacobian.T, conv.center_tap(), atol=1e-6)
    assert conv.n_orbits == 3 and conv.center_orbit == 0
    plain = ConvSym(1, 1, (3, 3), symmetry="translation", key=key)
    assert plain.center_orbit == 4


def test_initialisation_and_errors():
    key = jax.random.key(11)
    zero = ConvSym(1, 2, (3, 3), zero_init=True, key=key)
    np.testing.assert_array_equal(_apply(zero, jnp.ones((4, 4, 1))), 0.0)
    assert ConvSym(1, 2, (3, 3), use_bias=False, key=key).bias is None
    conv = ConvSym(2, 1, (3, 3), key=key)
    with pytest.raises(ValueError, match=r"shape \(\*lattice, 2\) with 2 lattice"):
        conv(jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="larger than the lattice"):
        conv(jnp.ones((2, 4, 2)))
    with pytest.raises(ValueError, match=r"expected kernel of shape \(3, 2, 1\)"):
        conv(jnp.ones((4, 4, 2)), jnp.ones((9, 2, 1)))
    with pytest.raises(ValueError, match="symmetry must be 'hyperoctahedral'"):
        ConvSym(1, 1, (3, 3), symmetry="d4", key=key)
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        ConvSym(0, 1, (3, 3), key=key)
    with pytest.raises(ValueError, match="kernel_shape must be a tuple"):
        ConvSym(1, 1, 3, key=key)
