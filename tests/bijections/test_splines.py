"""RationalQuadraticSpline: identity, tails, knots, options and errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.bijections import RationalQuadraticSpline
from flowrox.bijections._splines import _positive_slopes

OPTIONS = {
    "standard": {},
    "identity-slopes": {"identity_boundary_slopes": True},
    "learn-lower": {"learn_lower_bound": True},
    "learn-upper": {"learn_upper_bound": True},
    "learn-both": {"learn_lower_bound": True, "learn_upper_bound": True},
    "circular": {"circular": True},
    "circular-identity-slopes": {"circular": True, "identity_boundary_slopes": True},
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_zero_parameters_are_the_identity(name):
    spline = RationalQuadraticSpline(-2.0, 2.0, 6, shape=(5,), **OPTIONS[name])
    assert jnp.all(spline.parameters == 0)
    x = jnp.array([-1.9, -0.3, 0.0, 1.2, 1.99])
    y, log_det = spline.transform_and_log_det(x)
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)


def test_parameter_counts_follow_the_documented_layout():
    def count(**options):
        return RationalQuadraticSpline(0.0, 1.0, 8, **options).n_parameters_per_feature

    assert count() == 3 * 8 + 1
    assert count(identity_boundary_slopes=True) == 3 * 8 - 1
    assert count(circular=True) == 3 * 8 + 1  # K slopes and a shift
    assert count(circular=True, identity_boundary_slopes=True) == 3 * 8
    assert count(learn_lower_bound=True) == 3 * 8 + 2
    assert count(learn_lower_bound=True, learn_upper_bound=True) == 3 * 8 + 3


def _random(key, **options):
    template = RationalQuadraticSpline(-1.0, 3.0, 7, shape=(4,), **options)
    return template.with_parameters(
        jax.random.normal(key, template.identity_parameters().shape)
    )


@jax.jit
def _values_and_gradients(spline, x):
    def total(spline, x):
        y, log_det = spline.transform_and_log_det(x)
        return jnp.sum(y) + log_det

    def total_inverse(spline, y):
        x, log_det = spline.inverse_and_log_det(y)
        return jnp.sum(x) + log_det

    gradients = jax.grad(total, argnums=(0, 1))(spline, x)
    inverse_gradients = jax.grad(total_inverse, argnums=(0, 1))(spline, x)
    return spline.transform_and_log_det(x), gradients, inverse_gradients


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_finite_values_and_gradients_far_outside_at_knots_and_bounds(name):
    spline = _random(jax.random.key(0), **OPTIONS[name])
    x_knots = spline._features()[0]
    # Exactly at every knot of feature 0, far outside, and at the bounds.
    candidates = [
        jnp.array([1e4, -1e4, -1.0, 3.0]),
        jnp.array([-1e4, 1e4, 3.0, -1.0]),
        *[jnp.full((4,), knot) for knot in x_knots[0]],
    ]
    for x in candidates:
        (y, log_det), gradients, inverse_gradients = _values_and_gradients(
            spline, x.astype(jnp.float32)
        )
        for leaf in jax.tree.leaves((y, log_det, gradients, inverse_gradients)):
            if eqx.is_inexact_array(leaf):
                assert jnp.all(jnp.isfinite(leaf)), (name, x)


def test_inverse_gradients_are_finite_at_the_top_of_steep_bins():
    # At the top of a bin, b^2 and 4ac of the inverse's quadratic agree to
    # float32 precision; their difference came out negative for about one
    # steep spline in three hundred, and sqrt's gradient at zero made the
    # inverse's gradient NaN (a flow guide's SVI step turned NaN from it).
    template = RationalQuadraticSpline(-3.0, 3.0, 8, shape=(4000,))
    parameters = 4.0 * jax.random.normal(
        jax.random.key(0), template.identity_parameters().shape
    )
    spline = template.with_parameters(parameters)
    x_knots, y_knots, _, _, _ = spline._features()
    interior = jax.random.randint(jax.random.key(1), (4000,), 1, 8)
    knots = jnp.take_along_axis(y_knots, interior[:, None], axis=1)[:, 0]

    def total(parameters, y):
        x, log_det = template.with_parameters(parameters).inverse_and_log_det(y)
        return jnp.sum(x) + log_det

    gradient = jax.jit(jax.grad(total, argnums=(0, 1)))
    for y in (knots, jnp.nextafter(knots, jnp.full_like(knots, -jnp.inf))):
        for leaf in gradient(parameters, y):
            assert jnp.all(jnp.isfinite(leaf))
    # The value at a knot is its x knot.
    x, _ = spline.inverse_and_log_det(knots)
    expected = jnp.take_along_axis(x_knots, interior[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(x, expected, atol=1e-5)


@pytest.mark.parametrize("n_bins", [1, 2])
def test_one_and_two_bins_round_trip_with_the_autodiff_log_det(n_bins):
    template = RationalQuadraticSpline(-2.0, 2.0, n_bins, shape=(3,))
    spline = template.with_parameters(
        jax.random.normal(jax.random.key(2), template.identity_parameters().shape)
    )
    x = jnp.array([-2.5, 0.4, 1.7])
    y, log_det = spline.transform_and_log_det(x)
    np.testing.assert_allclose(spline.inverse(y), x, atol=1e-5)
    jacobian = jax.jacobian(spline.transform)(x)
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(jacobian)[1], atol=1e-5)
    assert spline._features()[0].shape == (3, n_bins + 1)


def test_linear_tails_use_the_boundary_slopes():
    spline = _random(jax.random.key(1))
    _, y_knots, raw_slopes, _, _ = spline._features()
    slopes = _positive_slopes(raw_slopes, spline.min_slope)
    x = jnp.array([-50.0, 40.0, -3.0, 10.0])
    y, _ = spline.forward_elementwise(x)
    np.testing.assert_allclose(
        y[0], y_knots[0, 0] + slopes[0, 0] * (-50.0 + 1.0), rtol=1e-5
    )
    np.testing.assert_allclose(
        y[1], y_knots[1, -1] + slopes[1, -1] * (40.0 - 3.0), rtol=1e-5
    )
    with_identity = _random(jax.random.key(1), identity_boundary_slopes=True)
    far = jnp.array([-100.0, 100.0, -100.0, 100.0])
    np.testing.assert_allclose(
        with_identity.transform_and_log_det(far)[1], 0.0, atol=1e-5
    )


def test_circular_spline_is_periodic_with_a_continuous_derivative():
    spline = _random(jax.random.key(2), circular=True)
    x = jnp.array([-0.5, 0.2, 1.7, 2.9])
    np.testing.assert_allclose(
        spline.transform(x), spline.transform(x + 4.0), atol=1e-5
    )
    y = spline.transform(x)
    assert jnp.all((y >= -1.0) & (y < 3.0))
    _, _, slopes, _, _ = spline._features()
    np.testing.assert_allclose(slopes[:, 0], slopes[:, -1])


def test_learned_bounds_move_the_domain():
    spline = RationalQuadraticSpline(0.0, 1.0, 4, shape=(1,), learn_upper_bound=True)
    parameters = spline.identity_parameters().at[0, -1].set(jnp.log(2.0))
    stretched = spline.with_parameters(parameters)
    x_knots, y_knots, _, bounds, _ = stretched._features()
    np.testing.assert_allclose([x_knots[0, 0], x_knots[0, -1]], [0.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose([y_knots[0, 0], y_knots[0, -1]], [0.0, 2.0], rtol=1e-6)
    # The tails start from these bounds: exactly the end knots.
    ends = [x_knots[:, 0], x_knots[:, -1], y_knots[:, 0], y_knots[:, -1]]
    for bound, end in zip(bounds, ends, strict=True):
        np.testing.assert_array_equal(bound, end)


def test_different_output_interval_maps_domain_onto_it():
    spline = RationalQuadraticSpline(0.0, 1.0, 4, y0=-5.0, yf=5.0, shape=(2,))
    np.testing.assert_allclose(spline.transform(jnp.array([0.0, 1.0])), [-5.0, 5.0])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: RationalQuadraticSpline(1.0, 0.0, 4), r"x0 < xf"),
        (lambda: RationalQuadraticSpline(0.0, 1.0, 0), r"n_bins must be >= 1"),
        (
            lambda: RationalQuadraticSpline(
                0.0, 1.0, 4, circular=True, learn_lower_bound=True
            ),
            r"circular splines cannot learn their bounds",
        ),
        (
            lambda: RationalQuadraticSpline(0.0, 1.0, 4, y0=0.0, yf=2.0, circular=True),
            r"pass y0 = x0 and yf = xf",
        ),
        (
            lambda: RationalQuadraticSpline(
                0.0, 1.0, 4, shape=(2,), parameters=jnp.zeros(13)
            ),
            r"parameters of shape \(2, 13\).*got \(13,\)",
        ),
        (
            lambda: RationalQuadraticSpline(0.0, 1.0, 4).with_parameters(jnp.zeros(3)),
            r"expected shape \(13,\), got \(3,\)",
        ),
    ],
)
def test_bad_spline_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()
