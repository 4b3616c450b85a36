"""Elementwise bijections: identity at the defaults, finite far from the origin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowrox.bijections import (
    Affine,
    Identity,
    Power,
    Scale,
    Shift,
    Sigmoid,
    SinhArcsinh,
    SoftPlus,
    Tanh,
)


@pytest.mark.parametrize(
    "bijection",
    [Affine(shape=(3,)), Shift(shape=(3,)), Scale(shape=(3,))],
    ids=lambda b: type(b).__name__,
)
def test_default_parameters_are_exactly_the_identity(bijection):
    x = jnp.array([-2.5, 0.0, 7.25])
    y, log_det = bijection.transform_and_log_det(x)
    np.testing.assert_array_equal(y, x)
    assert float(log_det) == 0.0


def test_default_sinh_arcsinh_is_the_identity_to_rounding():
    x = jnp.array([-2.5, 0.0, 7.25, 1e3])
    y, log_det = SinhArcsinh(shape=(4,)).transform_and_log_det(x)
    np.testing.assert_allclose(y, x, rtol=2e-7)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)


FAR_RANGE = {
    "Affine": Affine(jnp.array(1.5), 0.3),
    "SinhArcsinh": SinhArcsinh(0.7, 1.4),
    "SoftPlus": SoftPlus(),
    "Sigmoid": Sigmoid(),
    "Tanh": Tanh(),
    "Identity": Identity(),
}


@jax.jit
def _values_and_gradients(bijection, x):
    def log_det(x):
        return bijection.transform_and_log_det(x)[1]

    y, value = bijection.transform_and_log_det(x)
    return y, value, jax.grad(log_det)(x)


@pytest.mark.parametrize("name", sorted(FAR_RANGE))
@settings(max_examples=60, deadline=None)
@given(x=st.floats(-1e4, 1e4, width=32))
def test_log_det_and_gradient_are_finite_for_any_finite_input(name, x):
    y, log_det, gradient = _values_and_gradients(FAR_RANGE[name], jnp.float32(x))
    assert np.isfinite(y) and np.isfinite(log_det) and np.isfinite(gradient)


@settings(max_examples=40, deadline=None)
@given(x=st.floats(2.0**-10, 2.0**10, width=32), exponent=st.floats(0.2, 5.0))
def test_power_matches_numpy(x, exponent):
    y, log_det = Power(exponent).transform_and_log_det(jnp.float32(x))
    np.testing.assert_allclose(y, np.float32(x) ** np.float32(exponent), rtol=2e-5)
    expected = np.log(exponent) + (exponent - 1) * np.log(x)
    np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=1e-4)
