"""NumericalInverse: accurate inverses, and implicit gradients that train."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.flatten_util import ravel_pytree

from flowrox import Flow
from flowrox.bijections import (
    AbstractElementwise,
    BlockNeuralAutoregressive,
    Chain,
    CubicConjugation,
    CubicRational,
    Invert,
    NumericalInverse,
    Scan,
    SinhArcsinh,
    Tanh,
)
from flowrox.bijections._base import missing_inverse
from tests.helpers import ConditionalAffine


class TanhCubic(AbstractElementwise):
    """y = x + b + 0.5 tanh(x) + a x^3 / (1 + x^2), a > 0: no closed-form inverse."""

    shift: jax.Array
    log_cubic: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shift, cubic, *, shape: Sequence[int] = ()):
        self.shape = tuple(shape)
        self.shift = jnp.broadcast_to(jnp.asarray(shift, float), self.shape)
        self.log_cubic = jnp.broadcast_to(
            jnp.log(jnp.asarray(cubic, float)), self.shape
        )

    def forward_elementwise(self, x):
        cubic = jnp.exp(self.log_cubic)
        y = x + self.shift + 0.5 * jnp.tanh(x) + cubic * x**3 / (1 + x**2)
        slope = (
            1.0 + 0.5 / jnp.cosh(x) ** 2 + cubic * x**2 * (3 + x**2) / (1 + x**2) ** 2
        )
        return y, jnp.log(slope)

    def inverse_elementwise(self, y):
        raise missing_inverse(self)


def _sinh_arcsinh(dtype):
    return SinhArcsinh(jnp.array([0.4, -0.3], dtype), jnp.array([1.7, 0.6], dtype))


def _cubic_conjugation(dtype):
    return CubicConjugation(
        slope=jnp.array([2.0, 0.3], dtype),
        shift=jnp.array([0.3, -1.0], dtype),
        center=jnp.array([0.2, -0.5], dtype),
        curvature=jnp.array([3.0, 0.5], dtype),
    )


def _tanh_cubic(dtype):
    return TanhCubic(
        jnp.array([0.5, -2.0], dtype), jnp.array([0.3, 2.0], dtype), shape=(2,)
    )


def _chain(dtype):
    return Chain(
        [
            _tanh_cubic(dtype),
            CubicRational(
                shift=jnp.array([0.1, 0.2], dtype),
                center=jnp.array([0.5, -0.5], dtype),
                width=jnp.array([0.3, 2.0], dtype),
                ratio=jnp.array([0.2, 4.0], dtype),
            ),
        ]
    )


WRAPPED = {
    "SinhArcsinh": _sinh_arcsinh,
    "CubicConjugation": _cubic_conjugation,
    "TanhCubic": _tanh_cubic,
    "Chain": _chain,
}
HAS_ANALYTIC_INVERSE = {"SinhArcsinh", "CubicConjugation"}

# Points on both sides of the origin, near it and far from it.
X_POINTS = np.array(
    [[0.0, 1e-3], [-0.3, 0.8], [2.5, -4.0], [-30.0, 17.0], [900.0, -1e3]]
)


@jax.jit
def _round_trip(bijection, x):
    y = jax.vmap(bijection.transform)(x)
    x_back, inverse_log_det = jax.vmap(bijection.inverse_and_log_det)(y)
    forward_log_det = jax.vmap(lambda v: bijection.transform_and_log_det(v)[1])(x)
    return y, x_back, inverse_log_det, forward_log_det


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_round_trip_float32(name):
    bijection = NumericalInverse(WRAPPED[name](jnp.float32))
    x = jnp.asarray(X_POINTS, jnp.float32)
    _, x_back, inverse_log_det, forward_log_det = _round_trip(bijection, x)
    np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inverse_log_det, -forward_log_det, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_round_trip_float64(name, x64):
    bijection = NumericalInverse(WRAPPED[name](jnp.float64))
    x = jnp.asarray(X_POINTS, jnp.float64)
    _, x_back, inverse_log_det, forward_log_det = _round_trip(bijection, x)
    np.testing.assert_allclose(x_back, x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(inverse_log_det, -forward_log_det, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(HAS_ANALYTIC_INVERSE))
def test_matches_the_analytic_inverse_and_its_derivatives(name, x64):
    exact = WRAPPED[name](jnp.float64)
    numerical = NumericalInverse(exact)
    y = jnp.asarray(X_POINTS, jnp.float64)

    @jax.jit
    def inverse_with_slopes(bijection, y):
        x, log_det = jax.vmap(bijection.inverse_and_log_det)(y)
        slope = jax.vmap(jax.jacobian(bijection.inverse))(y)
        return x, log_det, slope

    x, log_det, slope = inverse_with_slopes(numerical, y)
    x_ref, log_det_ref, slope_ref = inverse_with_slopes(exact, y)
    np.testing.assert_allclose(x, x_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(log_det, log_det_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(slope, slope_ref, rtol=1e-9, atol=1e-12)


def _sample_loss(flow, key):
    """A reverse-KL-like loss of samples drawn through the numerical inverse."""
    x, log_q = flow.sample_and_log_prob(key, (64,))
    return jnp.mean(log_q + 0.5 * jnp.sum((x - 1.0) ** 2, -1) + jnp.sum(jnp.sin(x), -1))


def _flow(wrapped, numerical: bool):
    # Invert makes sampling run the wrapped map's inverse.
    inner = NumericalInverse(wrapped) if numerical else wrapped
    return Flow(dist.Normal(0.0, 1.0), Invert(inner))


def _parameter_gradient(flow, key):
    parameters, static = eqx.partition(flow, eqx.is_inexact_array)
    return jax.jit(jax.grad(lambda p: _sample_loss(eqx.combine(p, static), key)))(
        parameters
    )


def _finite_difference_gradient(flow, key, step=1e-6):
    """Central differences of the loss along every parameter entry."""
    parameters, static = eqx.partition(flow, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(parameters)
    loss = jax.jit(lambda f: _sample_loss(eqx.combine(unravel(f), static), key))
    gradient = np.zeros(flat.shape)
    for index in range(flat.size):
        offset = jnp.zeros_like(flat).at[index].set(step)
        gradient[index] = (loss(flat + offset) - loss(flat - offset)) / (2 * step)
    return gradient


# One case runs by default; the finite-difference loop is long for the others.
FINITE_DIFFERENCE_CASES = [
    name if name == "SinhArcsinh" else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(WRAPPED)
]


@pytest.mark.parametrize("name", FINITE_DIFFERENCE_CASES)
def test_gradient_of_samples_through_the_inverse_matches_finite_differences(name, x64):
    flow = _flow(WRAPPED[name](jnp.float64), numerical=True)
    key = jax.random.key(4)
    gradient = ravel_pytree(_parameter_gradient(flow, key))[0]
    expected = _finite_difference_gradient(flow, key)
    assert np.all(np.abs(gradient) > 1e-6), "every parameter must get a gradient"
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(HAS_ANALYTIC_INVERSE))
def test_gradient_of_samples_matches_the_analytic_inverse(name):
    # float32, as in training.
    wrapped = WRAPPED[name](jnp.float32)
    key = jax.random.key(5)
    numerical = _parameter_gradient(_flow(wrapped, numerical=True), key)
    analytic = _parameter_gradient(_flow(wrapped, numerical=False), key)
    numerical_leaves = jax.tree.leaves(numerical.bijection.bijection.bijection)
    analytic_leaves = jax.tree.leaves(analytic.bijection.bijection)
    assert len(numerical_leaves) == len(analytic_leaves) > 0
    for got, expected in zip(numerical_leaves, analytic_leaves, strict=True):
        assert np.all(got != 0)
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-5)


@pytest.mark.slow
def test_triangular_maps_are_solved_in_order_with_implicit_gradients(x64):
    # A BNAF layer has no closed-form inverse: samples drawn through it (one
    # element at a time) get gradients by a triangular solve, checked against
    # central differences of the whole root-finding loss.
    network = BlockNeuralAutoregressive(3, key=jax.random.key(0), hidden=2)
    flow = _flow(network, numerical=False)
    key = jax.random.key(4)
    gradient = ravel_pytree(_parameter_gradient(flow, key))[0]
    expected = _finite_difference_gradient(flow, key)
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-8)
    # Unused: the raw weights above the block diagonal (3 blocks of 2 x 1 in
    # the first layer, 3 of 1 x 2 in the second), and the two first-layer rows
    # of element 0, whose single entry weight normalisation cancels.
    unused = np.abs(gradient) < 1e-12
    assert np.sum(unused) == 14
    assert np.all(np.abs(gradient[~unused]) > 1e-8)


def test_triangular_solving_needs_a_vector_event():
    with pytest.raises(ValueError, match="triangular map of vectors"):
        NumericalInverse(SinhArcsinh(0.3, 1.2), triangular=True)


def test_gradient_with_respect_to_the_condition():
    wrapped = ConditionalAffine(jax.random.key(0), 3, 2)
    numerical = NumericalInverse(wrapped)
    y = jnp.array([0.3, -2.0, 5.0])
    condition = jnp.array([0.7, -0.4])

    def loss(bijection, condition):
        x, log_det = bijection.inverse_and_log_det(y, condition)
        return jnp.sum(jnp.sin(x)) + log_det

    got = jax.jit(jax.grad(loss, argnums=1))(numerical, condition)
    expected = jax.jit(jax.grad(loss, argnums=1))(wrapped, condition)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert np.all(got != 0)


def test_jit_and_vmap_of_the_object():
    def make(key):
        keys = jax.random.split(key, 2)
        return NumericalInverse(
            TanhCubic(
                jax.random.normal(keys[0], (2,)),
                jnp.exp(jax.random.normal(keys[1], (2,))),
                shape=(2,),
            )
        )

    keys = jax.random.split(jax.random.key(6), 5)
    stacked = eqx.filter_vmap(make)(keys)
    ys = jax.random.normal(jax.random.key(7), (5, 2)) * 3.0

    @eqx.filter_jit
    def batched_inverse(stacked, ys):
        return eqx.filter_vmap(lambda b, y: b.inverse_and_log_det(y))(stacked, ys)

    xs, log_dets = batched_inverse(stacked, ys)
    for index, key in enumerate(keys):
        one = make(key)
        x, log_det = one.inverse_and_log_det(ys[index])
        np.testing.assert_allclose(xs[index], x, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(log_dets[index], log_det, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(one.transform(x), ys[index], rtol=1e-5, atol=1e-5)

    # A stack of numerically inverted layers, scanned in the inverse direction.
    flow = Scan(stacked)
    x = eqx.filter_jit(flow.inverse)(ys[0])
    np.testing.assert_allclose(
        eqx.filter_jit(flow.transform)(x), ys[0], rtol=1e-5, atol=1e-5
    )


def test_brackets_far_roots_and_flags_unreachable_values():
    bijection = NumericalInverse(_tanh_cubic(jnp.float32), initial_bracket=1e-3)
    y = jnp.array([4e5, -3e4])
    x = eqx.filter_jit(bijection.inverse)(y)
    np.testing.assert_allclose(bijection.transform(x), y, rtol=1e-5)
    # Tanh only reaches (-1, 1): no bracket exists for y = 2, and the inverse
    # says so with NaN instead of returning a wrong number.
    bounded = NumericalInverse(Tanh((2,)), max_expansion_steps=8)
    x = eqx.filter_jit(bounded.inverse)(jnp.array([0.5, 2.0]))
    assert np.isclose(x[0], np.arctanh(0.5), rtol=1e-5) and np.isnan(x[1])


def test_options_are_validated():
    wrapped = _sinh_arcsinh(jnp.float32)
    with pytest.raises(ValueError, match="initial_bracket must be positive"):
        NumericalInverse(wrapped, initial_bracket=0.0)
    with pytest.raises(ValueError, match="newton_steps must be a non-negative integer"):
        NumericalInverse(wrapped, newton_steps=-1)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        NumericalInverse(wrapped, tolerance=-1e-3)
    with pytest.raises(TypeError, match="expected a flowrox bijection"):
        NumericalInverse(jnp.tanh)


def test_the_wrapped_map_has_no_inverse_of_its_own():
    # The map these tests invert really has no closed form: it names the remedy.
    with pytest.raises(NotImplementedError, match="no closed-form inverse"):
        _tanh_cubic(jnp.float32).inverse(jnp.zeros(2))


def test_bisection_alone_reaches_the_tolerance():
    bijection = NumericalInverse(
        _tanh_cubic(jnp.float32), newton_steps=0, tolerance=1e-6, max_bisection_steps=80
    )
    x = jnp.array([0.3, -2.0])
    x_back = eqx.filter_jit(bijection.inverse)(bijection.transform(x))
    np.testing.assert_allclose(x_back, x, atol=1e-5)
