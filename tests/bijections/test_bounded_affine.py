"""BoundedAffine: an affine map with a tanh-bounded log-scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.bijections import Affine, BoundedAffine


def test_it_is_the_affine_map_with_the_bounded_log_scale():
    loc = jnp.array([0.5, -1.0, 2.0, 0.0])
    raw = jnp.array([0.0, 0.7, -9.0, 40.0])
    layer = BoundedAffine(loc, raw, max_log_scale=2.0)
    expected_log_scale = 2.0 * np.tanh(np.asarray(raw) / 2.0)
    reference = Affine(loc, np.exp(expected_log_scale))
    x = jnp.array([1.0, -2.0, 0.3, 4.0])
    y, log_det = layer.transform_and_log_det(x)
    expected_y, expected_log_det = reference.transform_and_log_det(x)
    np.testing.assert_allclose(y, expected_y, rtol=1e-6)
    np.testing.assert_allclose(log_det, expected_log_det, rtol=1e-6)
    assert float(jnp.max(jnp.abs(layer.log_scale))) <= 2.0
    np.testing.assert_allclose(layer.inverse(y), x, rtol=1e-5)


def test_zeros_are_the_identity_and_small_raw_scales_are_unbounded_ones():
    x = jnp.array([-3.0, 0.2, 7.0])
    np.testing.assert_array_equal(BoundedAffine(shape=(3,)).transform(x), x)
    small = jnp.array([1e-3, -2e-3, 5e-4])
    np.testing.assert_allclose(BoundedAffine(0.0, small).log_scale, small, rtol=1e-6)


def test_the_gradient_stays_finite_far_past_the_bound():
    def loss(raw):
        return BoundedAffine(0.0, raw).transform_and_log_det(jnp.array(3.0))[0]

    gradient = jax.grad(loss)(jnp.array(1e3))
    assert np.isfinite(float(gradient))


def test_a_non_positive_bound_is_refused():
    with pytest.raises(ValueError, match=r"max_log_scale must be positive; got 0\.0"):
        BoundedAffine(max_log_scale=0.0)
