"""tfep's neural spline transformer options, by their names, on
`RationalQuadraticSpline`, with the numbers tfep's documentation states: the
parameter counts per feature, the identity, the linear tails, the identity
boundary slopes, the circular shift and the learned domain."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.bijections import RationalQuadraticSpline

K = 5  # n_bins
X0, XF = -2.0, 3.0


def spline(**options):
    options = {"y0": None, "yf": None, **options}
    return RationalQuadraticSpline(X0, XF, K, shape=(3,), **options)


@pytest.mark.parametrize(
    ("options", "per_feature"),
    [
        ({}, 3 * K + 1),
        ({"identity_boundary_slopes": True}, 3 * K + 1 - 2),
        ({"circular": True}, 3 * K + 1),
        ({"circular": True, "identity_boundary_slopes": True}, 3 * K + 1 - 1),
        ({"learn_lower_bound": True}, 3 * K + 1 + 1),
        ({"learn_upper_bound": True}, 3 * K + 1 + 1),
        ({"learn_lower_bound": True, "learn_upper_bound": True}, 3 * K + 1 + 2),
    ],
)
def test_the_parameter_counts_tfep_states(options, per_feature):
    # Standard splines take 3 K + 1 parameters per feature; identity boundary
    # slopes take 2 fewer (1 for circular splines, which replace the last
    # slope by a shift); each learned bound takes 1 more.
    layer = spline(**options)
    assert layer.n_parameters_per_feature == per_feature
    assert layer.parameters.shape == (3, per_feature)


def test_the_option_names_and_defaults():
    layer = RationalQuadraticSpline(
        jnp.full(2, X0),
        jnp.full(2, XF),
        K,
        y0=jnp.full(2, X0),
        yf=jnp.full(2, XF),
        circular=False,
        identity_boundary_slopes=False,
        learn_lower_bound=False,
        learn_upper_bound=False,
        min_bin_size=1e-4,
        min_slope=1e-4,
    )
    default = RationalQuadraticSpline(jnp.full(2, X0), jnp.full(2, XF), K)
    assert (default.min_bin_size, default.min_slope) == (1e-4, 1e-4)
    assert layer == default
    with pytest.raises(ValueError, match="circular splines cannot learn"):
        spline(circular=True, learn_lower_bound=True)
    with pytest.raises(ValueError, match="pass y0 = x0 and yf = xf"):
        spline(circular=True, y0=X0 - 1.0)


def _random(layer, seed=0):
    shape = layer.parameters.shape
    return layer.with_parameters(jax.random.normal(jax.random.key(seed), shape))


def test_identity_parameters_and_linear_tails():
    x = jnp.array([X0 - 4.0, 0.3, XF + 7.0])
    np.testing.assert_allclose(spline().transform(x), x, rtol=1e-6)
    # Outside the domain the map is linear, with the slope of the end knot.
    layer = _random(spline())

    def first(u):
        return layer.transform(jnp.full(3, u))[0]

    slope = jax.grad(first)
    np.testing.assert_allclose(first(X0), X0, rtol=1e-6)
    np.testing.assert_allclose(first(XF), XF, rtol=1e-6)
    for end, outside, further in ((X0, X0 - 1.0, X0 - 6.0), (XF, XF + 1.0, XF + 6.0)):
        np.testing.assert_allclose(slope(outside), slope(further), rtol=1e-5)
        np.testing.assert_allclose(
            first(further), first(end) + slope(outside) * (further - end), rtol=1e-5
        )
    assert abs(float(slope(X0 - 1.0)) - float(slope(XF + 1.0))) > 1e-3


def test_identity_parameters_map_the_domains_linearly_when_they_differ():
    # The documented identity parameters: with x0 != y0 or xf != yf, the linear
    # map of the input interval onto the output interval, tails included.
    layer = RationalQuadraticSpline(-1.0, 1.0, 8, y0=-3.0, yf=3.0, shape=(3,))
    x = jnp.array([0.1, -0.95, 2.5])
    y, log_det = layer.transform_and_log_det(x)
    np.testing.assert_allclose(y, 3.0 * x, rtol=1e-5)
    np.testing.assert_allclose(log_det, 3 * np.log(3.0), rtol=1e-5)
    shifted = RationalQuadraticSpline(0.0, 2.0, 5, y0=-1.0, yf=0.0)
    np.testing.assert_allclose(shifted.transform(jnp.array(1.5)), -0.25, rtol=1e-5)


def test_identity_boundary_slopes_continue_the_identity_outside():
    layer = _random(spline(identity_boundary_slopes=True))
    x = jnp.array([X0 - 3.0, XF + 0.5, XF + 9.0])
    np.testing.assert_allclose(layer.transform(x), x, rtol=1e-5)
    inside = jnp.array([-1.0, 0.5, 2.0])
    assert float(jnp.max(jnp.abs(layer.transform(inside) - inside))) > 1e-2


def test_circular_shift():
    # y = spline((x - x0 + phi) mod p + x0): with identity bins, the shift alone.
    layer = spline(circular=True)
    phi = 1.7
    parameters = layer.parameters.at[:, -1].set(phi)
    shifted = layer.with_parameters(parameters)
    x = jnp.array([-1.9, 0.4, 2.9])
    period = XF - X0
    np.testing.assert_allclose(
        shifted.transform(x), jnp.mod(x - X0 + phi, period) + X0, rtol=1e-5, atol=1e-6
    )
    random = _random(layer)
    inside = random.transform(x)
    np.testing.assert_allclose(random.transform(x + period), inside, atol=1e-5)
    np.testing.assert_allclose(random.inverse(inside), x, atol=1e-4)


def test_learned_bounds_scale_and_shift_both_domains():
    y0, yf = -1.0, 9.0
    s, t = math.log(1.5), 0.7
    cases = {
        # One learned bound: exp(s) scales the interval about the other bound.
        "learn_upper_bound": ((X0, X0 + (XF - X0) * 1.5), (y0, y0 + (yf - y0) * 1.5)),
        "learn_lower_bound": ((XF - (XF - X0) * 1.5, XF), (yf - (yf - y0) * 1.5, yf)),
    }
    for option, (x_ends, y_ends) in cases.items():
        layer = spline(y0=y0, yf=yf, **{option: True})
        layer = layer.with_parameters(layer.parameters.at[:, -1].set(s))
        for x_end, y_end in zip(x_ends, y_ends, strict=True):
            np.testing.assert_allclose(
                layer.transform(jnp.full(3, x_end)), jnp.full(3, y_end), rtol=1e-5
            )
    # Both: a shift t moves both intervals, exp(s) scales them.
    layer = spline(y0=y0, yf=yf, learn_lower_bound=True, learn_upper_bound=True)
    layer = layer.with_parameters(layer.parameters.at[:, -2].set(s).at[:, -1].set(t))
    for x_end, y_end in (
        (X0 + t, y0 + t),
        (X0 + t + (XF - X0) * 1.5, y0 + t + (yf - y0) * 1.5),
    ):
        np.testing.assert_allclose(
            layer.transform(jnp.full(3, x_end)), jnp.full(3, y_end), rtol=1e-5
        )
