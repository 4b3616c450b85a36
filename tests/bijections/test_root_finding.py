"""The shared root finder: roots and implicit gradients against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.bijections._root_finding import RootFinder, find_root


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    if request.param == "float64":
        request.getfixturevalue("x64")
    return jnp.dtype(request.param)


def _tolerance(dtype):
    return 2e-5 if dtype == jnp.float32 else 1e-12


def _scaled_sinh(x, scale):
    return scale * jnp.sinh(x)


def _scaled_sinh_slope(x, scale):
    return scale * jnp.cosh(x)


def _scaled_cube(x, scale):
    return scale * x**3


def _solve_sinh(scale, y, slope=None):
    # A bracket around y that misses most roots: the finder must move it.
    return find_root(_scaled_sinh, scale, y, low=y - 0.5, high=y + 0.5, slope=slope)


Y = [-300.0, -2.5, -1e-3, 0.0, 0.7, 40.0]


@pytest.mark.parametrize("slope", [None, _scaled_sinh_slope], ids=["autodiff", "given"])
def test_the_root_of_a_scaled_sinh_and_its_gradients_are_the_arcsinh(dtype, slope):
    scale = jnp.asarray(1.7, dtype)
    y = jnp.asarray(Y, dtype)
    root = jax.jit(lambda scale, y: _solve_sinh(scale, y, slope))(scale, y)
    assert root.dtype == dtype
    exact = np.arcsinh(np.float64(Y) / 1.7)
    tolerance = _tolerance(dtype)
    np.testing.assert_allclose(root, exact, rtol=tolerance, atol=tolerance)

    # x = arcsinh(y / a): dx/da = -(y / a^2) / sqrt(1 + (y / a)^2) and
    # dx/dy = (1 / a) / sqrt(1 + (y / a)^2).
    def element(scale, y):
        return _solve_sinh(scale, y, slope)

    d_scale, d_y = jax.jit(jax.vmap(jax.grad(element, argnums=(0, 1)), (None, 0)))(
        scale, y
    )
    ratio = np.float64(Y) / 1.7
    np.testing.assert_allclose(
        d_scale, -ratio / 1.7 / np.sqrt(1 + ratio**2), rtol=tolerance, atol=tolerance
    )
    np.testing.assert_allclose(
        d_y, 1 / 1.7 / np.sqrt(1 + ratio**2), rtol=tolerance, atol=tolerance
    )


def test_the_root_of_a_scaled_cube_and_its_gradient_are_the_cube_root(dtype):
    scale = jnp.asarray(0.6, dtype)
    y = jnp.asarray([-50.0, -0.2, 3.0, 1e3], dtype)

    def solve(scale, y):
        return find_root(_scaled_cube, scale, y, low=y - 1.0, high=y + 1.0)

    root = jax.jit(solve)(scale, y)
    # x = cbrt(y / a), dx/da = -x / (3 a).
    exact = np.cbrt(np.asarray(y, np.float64) / 0.6)
    tolerance = _tolerance(dtype)
    np.testing.assert_allclose(root, exact, rtol=tolerance)
    gradient = jax.jit(jax.grad(lambda scale: jnp.sum(solve(scale, y))))(scale)
    np.testing.assert_allclose(gradient, np.sum(-exact / (3 * 0.6)), rtol=tolerance)


def _triangular(x, scale):
    # F_0 = a sinh(x_0), F_1 = sinh(x_1) + x_0: lower triangular, increasing.
    return jnp.stack([scale * jnp.sinh(x[0]), jnp.sinh(x[1]) + x[0]])


def test_triangular_maps_are_solved_in_order_with_their_exact_gradient(dtype):
    scale = jnp.asarray(2.5, dtype)
    y = jnp.asarray([4.0, -1.5], dtype)

    def solve(scale):
        return find_root(
            _triangular, scale, y, low=y - 1.0, high=y + 1.0, triangular=True
        )

    root = jax.jit(solve)(scale)
    first = np.arcsinh(4.0 / 2.5)
    second = np.arcsinh(-1.5 - first)
    tolerance = _tolerance(dtype)
    np.testing.assert_allclose(root, [first, second], rtol=tolerance)
    # dx_0/da = -(y_0 / a^2) / sqrt(1 + (y_0 / a)^2); dx_1/da = -dx_0/da / cosh(x_1).
    d_first = -(4.0 / 2.5**2) / np.sqrt(1 + (4.0 / 2.5) ** 2)
    jacobian = jax.jit(jax.jacrev(solve))(scale)
    np.testing.assert_allclose(
        jacobian, [d_first, -d_first / np.cosh(second)], rtol=tolerance
    )


def _signed_square_root(x, center):
    # Newton from any x != center lands at 2 center - x: it cycles forever.
    offset = x - center
    return jnp.sign(offset) * jnp.sqrt(jnp.abs(offset))


def test_the_newton_safeguard_breaks_cycles():
    finder = RootFinder(max_bisection_steps=0, newton_steps=8)
    root = find_root(
        _signed_square_root, 0.3, jnp.array(0.0), low=-1.0, high=3.0, finder=finder
    )
    # Plain Newton from the midpoint 1 would alternate between 1 and -0.4.
    np.testing.assert_allclose(root, 0.3, atol=1e-6)


def test_bisection_alone_and_newton_alone_each_reach_the_root():
    y = jnp.asarray([-2.5, 0.7, 40.0])
    exact = np.arcsinh(np.float64(y) / 1.7)
    for finder in [
        RootFinder(newton_steps=0, tolerance=1e-7, max_bisection_steps=80),
        RootFinder(max_bisection_steps=0, tolerance=0.0, newton_steps=60),
    ]:
        root = find_root(_scaled_sinh, 1.7, y, low=y - 0.5, high=y + 0.5, finder=finder)
        np.testing.assert_allclose(root, exact, rtol=1e-6)


def test_an_unreachable_target_gives_nan():
    finder = RootFinder(max_expansion_steps=8)
    root = find_root(
        lambda x, _: jnp.tanh(x),
        None,
        jnp.array([0.5, 2.0]),
        low=-1.0,
        high=1.0,
        finder=finder,
    )
    assert np.isclose(root[0], np.arctanh(0.5), rtol=1e-5) and np.isnan(root[1])


def test_a_bracket_of_zero_width_still_grows():
    # A bracket that is a single point away from the root must still move.
    root = find_root(_scaled_sinh, 1.0, jnp.array(3.0), low=0.0, high=0.0)
    np.testing.assert_allclose(root, np.arcsinh(3.0), rtol=1e-6)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="slope applies to elementwise maps"):
        find_root(
            _triangular,
            1.0,
            jnp.zeros(2),
            low=-1.0,
            high=1.0,
            slope=_scaled_sinh_slope,
            triangular=True,
        )
    with pytest.raises(ValueError, match=r"acts on vectors; got y of shape \(\)"):
        find_root(_triangular, 1.0, jnp.array(0.0), low=-1.0, high=1.0, triangular=True)
