"""PhysicsConv and PhysicsConvTranspose: against pdequinox, as physics, as adjoints.

pdequinox's `PhysicsConv` runs all three boundary modes (its documentation
says only "periodic" is supported; its code pads "dirichlet" with zeros and
"neumann" by reflection, the conventions we document), so every mode is
compared. Its transposed convolution agrees with ours for odd kernels; for
even kernels it pads like the forward conv, which is not the adjoint, and its
output is ours shifted by one dilation (tested below).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pdequinox
import pytest

from flowrox.nn import PhysicsConv, PhysicsConvTranspose

MODES = ("periodic", "dirichlet", "neumann")
GRIDS = {1: (12,), 2: (10, 7), 3: (6, 5, 4)}

#: Convolution options per case, cut to the number of spatial axes.
CONV_CONFIGS = {
    "odd, stride 2, groups 2": dict(kernel_size=3, stride=2, dilation=1, groups=2),
    "even, dilation 2": dict(kernel_size=4, stride=1, dilation=2, groups=1),
    "per axis": dict(
        kernel_size=(2, 3, 5), stride=(1, 3, 1), dilation=(2, 1, 1), groups=1
    ),
}
#: Odd kernels only: there pdequinox's transposed padding is the adjoint's.
TRANSPOSE_CONFIGS = {
    "stride 2, groups 2": dict(
        kernel_size=3, stride=2, output_padding=1, dilation=1, groups=2
    ),
    "dilation 2": dict(kernel_size=5, stride=1, output_padding=0, dilation=2, groups=2),
    "per axis": dict(
        kernel_size=(3, 5, 3),
        stride=(2, 1, 3),
        output_padding=(1, 0, 2),
        dilation=(1, 2, 1),
        groups=1,
    ),
}


def _for_dims(config: dict, dims: int) -> dict:
    return {
        name: value[:dims] if isinstance(value, tuple) else value
        for name, value in config.items()
    }


def _cases(configs):
    """Every dims x mode x config case; the default run takes one config per
    (dims, mode) in turn, so each mode meets each config; the rest are slow."""
    names = list(configs)
    cases = []
    for dims in GRIDS:
        for index, mode in enumerate(MODES):
            for offset, name in enumerate(names):
                marks = (
                    () if offset == (dims + index) % len(names) else pytest.mark.slow
                )
                cases.append(
                    pytest.param(
                        dims,
                        mode,
                        configs[name],
                        id=f"{dims}d-{mode}-{name}",
                        marks=marks,
                    )
                )
    return cases


def filled(build, seed: int):
    """`build()` traced for its structure only, its arrays drawn by numpy.

    Building a layer draws its weights with `jax.random`, one compiled kernel
    per weight shape; numpy's draws cost nothing to compile.
    """
    rng = np.random.default_rng(seed)

    def draw(leaf):
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return jnp.asarray(rng.normal(size=leaf.shape), leaf.dtype)
        return leaf

    return jax.tree.map(draw, eqx.filter_eval_shape(build))


@eqx.filter_jit
def both(ours, theirs, x):
    """Both layers on `x`, compiled as one program (cheaper than op by op)."""
    return ours(x), theirs(x)


def _field(seed: int, shape) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def adjoint_layout(weight: np.ndarray, groups: int) -> np.ndarray:
    """pdequinox's transposed weight `(out, in // g, *k)` in ours, `(in, out // g, *k)`.

    Within each group the channel axes swap, and the kernel is reversed: ours
    is the weight of the forward conv whose adjoint the layer is.
    """
    out, grouped_in, *kernel = weight.shape
    weight = np.reshape(weight, (groups, out // groups, grouped_in, *kernel))
    weight = np.swapaxes(weight, 1, 2).reshape(groups * grouped_in, -1, *kernel)
    return np.flip(weight, axis=tuple(range(2, weight.ndim)))


@pytest.mark.parametrize(("dims", "mode", "config"), _cases(CONV_CONFIGS))
def test_conv_equals_pdequinox(dims, mode, config):
    options = dict(_for_dims(config, dims), key=jax.random.key(0), boundary_mode=mode)
    theirs = filled(lambda: pdequinox.conv.PhysicsConv(dims, 4, 6, **options), dims)
    ours = eqx.tree_at(
        lambda c: (c.weight, c.bias),
        eqx.filter_eval_shape(lambda: PhysicsConv(dims, 4, 6, **options)),
        (theirs.weight, theirs.bias),
    )
    x = _field(dims, (4, *GRIDS[dims]))
    np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("dims", "mode", "config"), _cases(TRANSPOSE_CONFIGS))
def test_odd_kernel_transpose_equals_pdequinox(dims, mode, config):
    options = dict(_for_dims(config, dims), key=jax.random.key(0), boundary_mode=mode)
    theirs = filled(
        lambda: pdequinox.conv.PhysicsConvTranspose(dims, 4, 2, **options), dims
    )
    ours = eqx.tree_at(
        lambda c: (c.weight, c.bias),
        eqx.filter_eval_shape(lambda: PhysicsConvTranspose(dims, 4, 2, **options)),
        (jnp.asarray(adjoint_layout(theirs.weight, options["groups"])), theirs.bias),
    )
    x = _field(dims, (4, *GRIDS[dims]))
    np.testing.assert_allclose(*both(ours, theirs, x), rtol=1e-5, atol=1e-5)


def test_the_same_key_draws_pdequinox_initial_layers():
    # Code ported from pdequinox starts from the same layers: the same draws,
    # the transposed weight brought into our layout.
    key, options = jax.random.key(1), dict(groups=2, boundary_mode="neumann")

    @eqx.filter_jit
    def build():
        return [
            (
                layer(2, 4, 6, 3, **options, key=key),
                theirs(2, 4, 6, 3, **options, key=key),
            )
            for layer, theirs in (
                (PhysicsConv, pdequinox.conv.PhysicsConv),
                (PhysicsConvTranspose, pdequinox.conv.PhysicsConvTranspose),
            )
        ]

    (conv, theirs), (transpose, theirs_transpose) = build()
    np.testing.assert_array_equal(conv.weight, theirs.weight)
    np.testing.assert_array_equal(conv.bias, theirs.bias)
    np.testing.assert_array_equal(
        transpose.weight, adjoint_layout(theirs_transpose.weight, 2)
    )
    np.testing.assert_array_equal(transpose.bias, theirs_transpose.bias)
    # The output padding given at call time, as pdequinox takes it.
    strided = filled(
        lambda: pdequinox.conv.PhysicsConvTranspose(2, 4, 6, 3, 2, **options, key=key),
        5,
    )
    ours = eqx.tree_at(
        lambda c: (c.weight, c.bias),
        eqx.filter_eval_shape(
            lambda: PhysicsConvTranspose(2, 4, 6, 3, stride=2, **options, key=key)
        ),
        (jnp.asarray(adjoint_layout(strided.weight, 2)), strided.bias),
    )
    x = _field(0, (4, 5, 6))
    np.testing.assert_allclose(
        ours(x, output_padding=(1, 0)),
        strided(x, output_padding=(1, 0)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_even_kernel_transpose_of_pdequinox_is_ours_shifted_by_one_dilation():
    # Ours pads (k/2 d, (k/2 - 1) d) before and after: the adjoint's sides,
    # swapped from the forward conv's. pdequinox keeps the forward conv's
    # sides, one dilation off, and wraps one dilation too few ghost nodes at
    # the end of each axis (zeros stand there): its last `dilation` nodes per
    # axis differ further.
    options = dict(kernel_size=4, dilation=2, key=jax.random.key(0))
    theirs = filled(
        lambda: pdequinox.conv.PhysicsConvTranspose(
            2, 3, 2, **options, boundary_mode="periodic"
        ),
        3,
    )
    ours = eqx.tree_at(
        lambda c: (c.weight, c.bias),
        eqx.filter_eval_shape(
            lambda: PhysicsConvTranspose(2, 3, 2, **options, boundary_mode="periodic")
        ),
        (jnp.asarray(adjoint_layout(theirs.weight, 1)), theirs.bias),
    )
    ours_out, theirs_out = both(ours, theirs, _field(3, (3, *GRIDS[2])))
    shifted = jnp.roll(ours_out, -2, axis=(1, 2))
    np.testing.assert_allclose(
        theirs_out[:, :-2, :-2], shifted[:, :-2, :-2], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [9, 10, 11])
def test_a_strided_conv_output_goes_back_to_its_input_shape(mode, size):
    options = dict(stride=(3, 2), key=jax.random.key(0), boundary_mode=mode)
    conv = eqx.filter_eval_shape(lambda: PhysicsConv(2, 2, 3, 3, **options))
    back = eqx.filter_eval_shape(lambda: PhysicsConvTranspose(2, 3, 2, 3, **options))
    x = jax.ShapeDtypeStruct((2, size, size + 1), jnp.float32)
    coarse = jax.eval_shape(lambda c, x: c(x), conv, x)
    assert coarse.shape == (3, -(-size // 3), -(-(size + 1) // 2))
    output_padding = ((size - 1) % 3, size % 2)
    fine = jax.eval_shape(
        lambda t, y: t(y, output_padding=output_padding), back, coarse
    )
    assert fine.shape == x.shape


def test_a_periodic_conv_commutes_with_cyclic_shifts():
    options = dict(key=jax.random.key(0), boundary_mode="periodic")
    conv = filled(lambda: PhysicsConv(2, 2, 3, (4, 3), dilation=(1, 2), **options), 1)
    strided = filled(lambda: PhysicsConv(2, 2, 3, 3, stride=2, **options), 2)
    x = _field(3, (2, 12, 10))

    @jax.jit
    def shifted_pairs(x):
        return (
            (conv(jnp.roll(x, (1, -3), (1, 2))), jnp.roll(conv(x), (1, -3), (1, 2))),
            (
                strided(jnp.roll(x, (2, 4), (1, 2))),
                jnp.roll(strided(x), (1, 2), (1, 2)),
            ),
        )

    for of_shifted, shifted in shifted_pairs(x):
        np.testing.assert_allclose(of_shifted, shifted, rtol=1e-5, atol=1e-5)


def _stencil_conv(stencil, mode):
    stencil = jnp.asarray(stencil)
    conv = eqx.filter_eval_shape(
        lambda: PhysicsConv(
            stencil.ndim, 1, 1, stencil.shape, use_bias=False, key=jax.random.key(0),
            boundary_mode=mode,
        )
    )  # fmt: skip
    return eqx.tree_at(lambda c: c.weight, conv, stencil[None, None])


def test_dirichlet_laplacian_is_the_finite_difference_one_with_zero_ghosts(x64):
    # Interior nodes x_i = (i + 1) h, h = 1 / (N + 1); u vanishes at x = 0, 1.
    n = 15
    h = 1.0 / (n + 1)
    grid = np.arange(1, n + 1) * h
    u = np.sin(np.pi * grid)[:, None] * np.sin(2 * np.pi * grid)[None, :]
    five_point = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]) / h**2
    ours = _stencil_conv(five_point, "dirichlet")(u[None])[0]
    ghosts = np.pad(u, 1)  # zero ghost values, written out
    expected = (
        ghosts[2:, 1:-1]
        + ghosts[:-2, 1:-1]
        + ghosts[1:-1, 2:]
        + ghosts[1:-1, :-2]
        - 4 * ghosts[1:-1, 1:-1]
    ) / h**2
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-9)
    # And it is the Laplacian, to second order, up to the boundary.
    np.testing.assert_allclose(ours, -5 * np.pi**2 * u, atol=17 * np.pi**4 * h**2 / 12)


def _neumann_laplacian_error(n):
    # Nodes x_j = j h, h = 1 / (N - 1), both ends on the boundary: u = cos(pi x)
    # has u' = 0 there.
    h = 1.0 / (n - 1)
    grid = np.arange(n) * h
    laplacian = _stencil_conv(np.array([1.0, -2.0, 1.0]) / h**2, "neumann")
    exact = -(np.pi**2) * np.cos(np.pi * grid)
    return np.max(np.abs(laplacian(np.cos(np.pi * grid)[None])[0] - exact)), h


def test_neumann_ghosts_mirror_about_the_boundary_nodes(x64):
    # Mirrored about the end node (u_{-1} = u_1), the Laplacian is second-order
    # accurate at the boundary nodes too; mirroring about the cell face
    # (u_{-1} = u_0) would leave an O(1) error there.
    coarse, h = _neumann_laplacian_error(17)
    fine, _ = _neumann_laplacian_error(33)
    assert coarse < np.pi**4 * h**2 / 12 * 1.01
    assert 3.8 < coarse / fine < 4.2


@pytest.mark.parametrize(
    ("shape", "kernel_size", "dilation"),
    [((9,), 4, 2), ((4, 5, 3), (3, 2, 3), (1, 2, 1))],
)
def test_neumann_conv_of_a_constant_is_the_constant_times_the_kernel_sum(
    shape, kernel_size, dilation
):
    dims = len(shape)
    conv = filled(
        lambda: PhysicsConv(
            dims, 2, 3, kernel_size, dilation=dilation, key=jax.random.key(0),
            boundary_mode="neumann",
        ),
        dims,
    )  # fmt: skip
    constants = np.array([1.5, -0.7])
    field = np.broadcast_to(constants.reshape(2, *(1,) * dims), (2, *shape))
    kernel_sums = np.sum(conv.weight, axis=tuple(range(2, dims + 2)))
    expected = kernel_sums @ constants + np.ravel(conv.bias)
    np.testing.assert_allclose(
        both(conv, conv, field)[0],
        np.broadcast_to(expected.reshape(3, *(1,) * dims), (3, *shape)),
        rtol=1e-5,
        atol=1e-5,
    )


#: (dims, grid, options): for periodic strides the grid is a multiple of the
#: stride, and the output padding is (N - 1) % stride.
ADJOINT_CASES = {
    "1d even dilated": (1, (11,), dict(kernel_size=4, dilation=2)),
    "2d stride 2 groups 2": (
        2,
        (8, 6),
        dict(kernel_size=3, stride=2, groups=2, output_padding=1),
    ),
    "3d even per axis": (3, (4, 5, 3), dict(kernel_size=(2, 3, 2))),
}


@pytest.mark.parametrize(
    ("mode", "case"),
    [
        ("periodic", "2d stride 2 groups 2"),
        ("periodic", "3d even per axis"),
        ("dirichlet", "1d even dilated"),
        ("dirichlet", "2d stride 2 groups 2"),
    ],
)
def test_the_transpose_is_the_adjoint_of_the_conv(x64, mode, case):
    dims, grid, options = ADJOINT_CASES[case]
    options = dict(options, use_bias=False, boundary_mode=mode)
    output_padding = options.pop("output_padding", 0)

    @eqx.filter_jit
    def transpose_and_vjp():
        conv = PhysicsConv(dims, 4, 2, key=jax.random.key(0), **options)
        transpose = PhysicsConvTranspose(
            dims, 2, 4, output_padding=output_padding, key=jax.random.key(1), **options
        )
        # The conv's weight, as it is, is the transpose's.
        transpose = eqx.tree_at(lambda t: t.weight, transpose, conv.weight)
        x = jax.random.normal(jax.random.key(2), (4, *grid))
        y, vjp = jax.vjp(conv, x)
        cotangent = jax.random.normal(jax.random.key(3), y.shape)
        return transpose(cotangent), vjp(cotangent)[0]

    transposed, adjoint = transpose_and_vjp()
    np.testing.assert_allclose(transposed, adjoint, atol=1e-12)


def test_the_neumann_transpose_is_the_neumann_conv_of_the_transposed_kernel():
    # A mirrored boundary is not self-adjoint: the Neumann transpose is the
    # transposed connectivity with mirrored ghosts. At stride 1 that is a
    # Neumann conv with the kernel flipped and its channels swapped; along the
    # even axis (4 taps, dilation 2) it reaches one dilation less forward, so
    # the conv gets a fifth, zero tap at the end to pad like it.
    options = dict(dilation=(1, 2), key=jax.random.key(0), boundary_mode="neumann")
    transpose = filled(lambda: PhysicsConvTranspose(2, 3, 2, (3, 4), **options), 4)
    kernel = jnp.flip(jnp.swapaxes(transpose.weight, 0, 1), axis=(2, 3))
    conv = eqx.tree_at(
        lambda c: (c.weight, c.bias),
        eqx.filter_eval_shape(lambda: PhysicsConv(2, 3, 2, (3, 5), **options)),
        (jnp.pad(kernel, ((0, 0), (0, 0), (0, 0), (0, 1))), transpose.bias),
    )
    # ... which is not the adjoint of the Neumann conv of the same weight.
    forward = eqx.tree_at(
        lambda c: c.weight,
        eqx.filter_eval_shape(
            lambda: PhysicsConv(2, 2, 3, (3, 4), use_bias=False, **options)
        ),
        transpose.weight,
    )

    @jax.jit
    def outputs(x):
        adjoint = jax.vjp(forward, jnp.zeros((2, 7, 9)))[1](x)[0]
        return transpose(x), conv(x), adjoint + transpose.bias

    transposed, as_conv, adjoint = outputs(_field(4, (3, 7, 9)))
    np.testing.assert_allclose(transposed, as_conv, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(adjoint - transposed))) > 0.1


def test_gradients_match_central_differences(x64):
    # One chain through both layers and all three modes, strides included.
    key = jax.random.key(5)
    layers = (
        PhysicsConv(2, 2, 3, (3, 2), stride=(1, 2), key=key, boundary_mode="neumann"),
        PhysicsConvTranspose(
            2, 3, 2, 3, stride=(1, 2), output_padding=(0, 1), dilation=(2, 1),
            key=key, boundary_mode="periodic",
        ),
        PhysicsConv(2, 2, 2, 4, key=key, boundary_mode="dirichlet"),
        PhysicsConvTranspose(2, 2, 1, (2, 3), key=key, boundary_mode="neumann"),
    )  # fmt: skip
    x = jax.random.normal(jax.random.key(6), (2, 6, 6))

    def apply(layers, x):
        for layer in layers:
            x = jnp.tanh(layer(x))
        return x

    assert_gradients_match_differences(apply, layers, x)


def assert_gradients_match_differences(apply, modules, x, eps=1e-6):
    """Directional derivatives of a nonlinear loss, by autodiff and by differences.

    The loss is `sum(sin(apply(modules, x)))`; the derivative is taken with
    respect to every inexact leaf of `modules` and `x` at once.
    """
    parameters, static = eqx.partition((modules, x), eqx.is_inexact_array)

    @jax.jit
    def loss(parameters):
        return jnp.sum(jnp.sin(apply(*eqx.combine(parameters, static))))

    gradient = jax.jit(jax.grad(loss))(parameters)
    leaves, treedef = jax.tree.flatten(parameters)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction = jax.tree.unflatten(
        treedef,
        [
            jax.random.normal(k, leaf.shape)
            for k, leaf in zip(keys, leaves, strict=True)
        ],
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(gradient))
    moved = [
        jax.tree.map(lambda p, d, s=sign: p + s * eps * d, parameters, direction)
        for sign in (1.0, -1.0)
    ]
    difference = (loss(moved[0]) - loss(moved[1])) / (2 * eps)
    pairs = zip(jax.tree.leaves(gradient), jax.tree.leaves(direction), strict=True)
    autodiff = sum(jnp.vdot(g, d) for g, d in pairs)
    np.testing.assert_allclose(autodiff, difference, rtol=1e-6)


def _key():
    return jax.random.key(0)


def _conv(*args, **options):
    """A layer's structure (the checks run; no weights are drawn)."""
    options = {"boundary_mode": "periodic", **options}
    return eqx.filter_eval_shape(lambda: PhysicsConv(*args, key=_key(), **options))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: _conv(2, 2, 2, 3, boundary_mode="reflect"),
            r"boundary_mode must be one of \('periodic', 'dirichlet', 'neumann'\)",
        ),
        (
            lambda: _conv(2, 3, 2, 3, groups=2),
            r"in_channels \(3\) must be divisible by groups \(2\)",
        ),
        (
            lambda: _conv(2, 2, 3, 3, groups=2),
            r"out_channels \(3\) must be divisible by groups \(2\)",
        ),
        (
            lambda: _conv(2, 2, 2, (3, 3, 3)),
            r"kernel_size must be .* a sequence of 2 of them",
        ),
        (
            lambda: _conv(1, 2, 2, 0),
            r"kernel_size must be a whole number of at least 1",
        ),
        (
            lambda: _conv(0, 2, 2, 3),
            r"num_spatial_dims must be a whole number of at least 1",
        ),
        (
            lambda: PhysicsConvTranspose(
                1, 2, 2, 3, stride=2, output_padding=2, key=_key(),
                boundary_mode="dirichlet",
            ),
            r"output_padding must be below the stride .* got output_padding \(2,\) "
            r"with stride \(2,\)",
        ),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_with_the_remedy(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_are_refused_with_the_expected_shape():
    conv = _conv(2, 3, 2, 3)
    expected = (
        r"expected one field of shape \(3, \*spatial\) with 2 spatial axes .* got "
        r"shape \(4, 3, 8, 8\)\. It looks like a batch: map the layer over it, jax.vmap"
    )
    with pytest.raises(ValueError, match=expected):
        conv(jnp.ones((4, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"got shape \(2, 8, 8\)"):
        conv(jnp.ones((2, 8, 8)))
    transpose = eqx.filter_eval_shape(
        lambda: PhysicsConvTranspose(
            1, 2, 2, 3, stride=2, key=_key(), boundary_mode="periodic"
        )
    )
    with pytest.raises(ValueError, match=r"got output_padding \(3,\) with stride"):
        transpose(jnp.ones((2, 5)), output_padding=3)
