"""Monotone rational-quadratic splines (Durkan et al. 2019), with circular splines."""

import functools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._numerics import as_float_array, softplus_inverse
from .._tree import buffer
from ._elementwise import AbstractElementwise
from ._parameters import event_shape_of

_LOG2 = math.log(2.0)


def _positive_slopes(raw, min_slope):
    # softplus(0) / log 2 = 1: zero parameters give unit slopes.
    return min_slope + (1.0 - min_slope) * jax.nn.softplus(raw) / _LOG2


def _bin_sizes(raw, min_bin_size):
    n_bins = raw.shape[-1]
    return min_bin_size + (1.0 - min_bin_size * n_bins) * jax.nn.softmax(raw, axis=-1)


def _knots(sizes, start, end):
    """Knots `(n_features, K + 1)` from bin sizes `(n_features, K)` summing to 1."""
    n_bins = sizes.shape[-1]
    # The interior knots are partial sums, added up column by column: on CPU
    # these few adds differentiate faster than a cumsum or a product with a
    # constant triangular matrix. The columns come from one split, whose
    # gradient is one concatenation (a slice's would be a zero-padded copy of
    # the whole array per column).
    sizes = jnp.split(sizes, n_bins, axis=1)
    columns = [sizes[0]]
    for size in sizes[1:-1]:
        columns.append(columns[-1] + size)
    partial_sums = jnp.concatenate(columns, axis=1)[:, : n_bins - 1]
    start, end = start[:, None], end[:, None]
    # The end knots are exactly the bounds, whatever the rounding of the sums.
    return jnp.concatenate([start, start + (end - start) * partial_sums, end], axis=1)


def _bin(value, knots, x_knots, y_knots, slopes):
    """One feature: the bin of `value` among `knots` (the x or the y knots) as
    its left x knot, width, left y knot, height and the `slopes` entries (the
    unconstrained slope parameters) at its ends."""
    k = jnp.clip(
        jnp.searchsorted(knots, value, side="right", method="compare_all") - 1,
        0,
        knots.shape[0] - 2,
    )
    x_k, width = x_knots[k], x_knots[k + 1] - x_knots[k]
    y_k, height = y_knots[k], y_knots[k + 1] - y_knots[k]
    return x_k, width, y_k, height, slopes[k], slopes[k + 1]


# The two maps below take every element's bin (from `_bin`) and run the rest of
# the spline elementwise. Each is a `jax.checkpoint`: a training step keeps
# only their inputs for the backward pass and recomputes the rest inside its
# fused gradient kernel, instead of storing some twenty intermediates per
# element and layer. They take the end slopes unconstrained and apply the
# softplus themselves.


@functools.partial(jax.checkpoint, static_argnums=0)
def _forward_map(
    min_slope, x, clipped, x0, xf, y0, yf, x_k, width, y_k, height, d_k, d_k1
):
    """Elementwise: y and log dy/dx; the bin's rational-quadratic piece at
    `clipped` (x clipped into [x0, xf]), the linear tails outside."""
    d_k, d_k1 = _positive_slopes(d_k, min_slope), _positive_slopes(d_k1, min_slope)
    s = height / width
    theta = jnp.clip((clipped - x_k) / width, 0.0, 1.0)
    one_minus = 1.0 - theta
    mixed = theta * one_minus
    denominator = s + (d_k1 + d_k - 2.0 * s) * mixed
    y_in = y_k + height * (s * theta**2 + d_k * mixed) / denominator
    numerator = s**2 * (d_k1 * theta**2 + 2.0 * s * mixed + d_k * one_minus**2)
    slope_in = numerator / denominator**2
    # Outside, the clipped value sits in the first or the last bin, whose outer
    # slope is the tail's: no slices of the knots (each would cost a
    # zero-padded copy in the gradient).
    inside = (x >= x0) & (x <= xf)
    below, above = y0 + d_k * (x - x0), yf + d_k1 * (x - xf)
    y = jnp.where(inside, y_in, jnp.where(x < x0, below, above))
    tail_slope = jnp.where(x < x0, d_k, d_k1)
    # One logarithm per element.
    return y, jnp.log(jnp.where(inside, slope_in, tail_slope))


@functools.partial(jax.checkpoint, static_argnums=0)
def _inverse_map(
    min_slope, y, clipped, x0, xf, y0, yf, x_k, width, y_k, height, d_k, d_k1
):
    """Elementwise: x and log dx/dy; the inverse of the bin's piece at
    `clipped` (y clipped into [y0, yf]), the linear tails outside."""
    d_k, d_k1 = _positive_slopes(d_k, min_slope), _positive_slopes(d_k1, min_slope)
    s = height / width
    offset = clipped - y_k
    curvature = d_k1 + d_k - 2.0 * s
    # theta solves a theta^2 + b theta + c = 0 with
    # a = height * (s - d_k) + offset * curvature (needed only through b^2 - 4ac):
    b = height * d_k - offset * curvature
    c = -s * offset
    # b^2 - 4ac, rearranged as a sum of two non-negative terms: the textbook
    # difference cancels near the bin's top (where b^2 and 4ac agree to float32
    # precision), can come out negative there, and sqrt's gradient at the clamp
    # then multiplies inf by zero.
    rest = height - offset
    discriminant = (rest * d_k - offset * d_k1) ** 2 + 4.0 * s**2 * offset * rest
    # The root of a theta^2 + b theta + c = 0 in [0, 1], in its stable form.
    theta = jnp.clip(2.0 * c / (-b - jnp.sqrt(discriminant)), 0.0, 1.0)
    x_in = x_k + theta * width
    one_minus = 1.0 - theta
    mixed = theta * one_minus
    numerator = s**2 * (d_k1 * theta**2 + 2.0 * s * mixed + d_k * one_minus**2)
    slope_in = numerator / (s + curvature * mixed) ** 2
    inside = (y >= y0) & (y <= yf)
    below, above = x0 + (y - y0) / d_k, xf + (y - yf) / d_k1
    x = jnp.where(inside, x_in, jnp.where(y < y0, below, above))
    tail_slope = jnp.where(y < y0, d_k, d_k1)
    return x, -jnp.log(jnp.where(inside, slope_in, tail_slope))


class RationalQuadraticSpline(AbstractElementwise):
    r"""A monotone rational-quadratic spline per element (Durkan et al., 2019).

    Feature $i$ maps $[x_0, x_f]$ onto $[y_0, y_f]$ through `n_bins` rational-
    quadratic pieces whose knots and slopes are set by unconstrained parameters:
    widths and heights through a softmax (each at least `min_bin_size` of the
    interval), slopes through a scaled softplus (at least `min_slope`). Outside
    the interval the map is linear with the boundary slopes, so values and
    gradients are finite for any finite input. All-zero parameters give equal
    bins and unit slopes: the identity when $x_0 = y_0$ and $x_f = y_f$.

    Options (those of tfep's neural spline transformer):

    - `circular=True`: periodic features with period $p = x_f - x_0$ (needs
      $y_0 = x_0$, $y_f = x_f$); the last slope is tied to the first and a shift
      $\phi$ is learned: $y = \mathrm{spline}((x - x_0 + \phi) \bmod p + x_0)$.
      Inputs are wrapped into $[x_0, x_f)$; outputs lie in $[x_0, x_f)$.
    - `identity_boundary_slopes=True`: the boundary slopes are fixed to 1, so
      the tails continue the identity.
    - `learn_lower_bound` / `learn_upper_bound`: one extra parameter $s$ scales
      the interval about the fixed bound, $x_0' = x_f - (x_f - x_0) e^s$ (same
      for $y$); with both, a second parameter $t$ shifts it:
      $x_0' = x_0 + t$, $x_f' = x_0 + t + (x_f - x_0) e^s$.

    Parameters have shape `(*shape, n_parameters_per_feature)`; per feature the
    flat layout is `[widths (n_bins), heights (n_bins), slopes (n_slopes),
    shift (circular only), log-scale (a learned bound), shift (both bounds)]`,
    with `n_slopes` = `n_bins + 1`, minus 1 if circular, minus 2 (standard) or
    1 (circular) with identity boundary slopes. A conditioner that produces
    parameters uses `with_parameters`.

    Args:
        x0: the lower end of the input interval, broadcast to the event shape.
        xf: the upper end of the input interval.
        n_bins: the number of bins $K$.
        y0: the lower end of the output interval (default: `x0`).
        yf: the upper end of the output interval (default: `xf`).
        shape: the event shape (default: the broadcast shape of the bounds).
        parameters: unconstrained parameters (default: `identity_parameters`).
        circular: periodic features (see above).
        identity_boundary_slopes: fix the boundary slopes to 1.
        learn_lower_bound: learn the lower end of the interval.
        learn_upper_bound: learn the upper end of the interval.
        min_bin_size: the smallest bin, as a fraction of the interval.
        min_slope: the smallest slope at a knot.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import RationalQuadraticSpline
        >>> spline = RationalQuadraticSpline(-3.0, 3.0, n_bins=8, shape=(2,))
        >>> spline.n_parameters_per_feature
        25
        >>> x = jnp.array([0.5, 10.0])  # inside, and far out on the linear tail
        >>> bool(jnp.allclose(spline.transform(x), x))
        True
        >>> parameters = jax.random.normal(jax.random.key(0), (2, 25))
        >>> random = spline.with_parameters(parameters)
        >>> bool(jnp.allclose(random.inverse(random.transform(x)), x, atol=1e-4))
        True
    """

    parameters: jax.Array
    x0: jax.Array = buffer()
    xf: jax.Array = buffer()
    y0: jax.Array = buffer()
    yf: jax.Array = buffer()
    n_bins: int = eqx.field(static=True)
    circular: bool = eqx.field(static=True)
    identity_boundary_slopes: bool = eqx.field(static=True)
    learn_lower_bound: bool = eqx.field(static=True)
    learn_upper_bound: bool = eqx.field(static=True)
    min_bin_size: float = eqx.field(static=True)
    min_slope: float = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        x0: ArrayLike,
        xf: ArrayLike,
        n_bins: int,
        *,
        y0: ArrayLike | None = None,
        yf: ArrayLike | None = None,
        shape: Sequence[int] | None = None,
        parameters: ArrayLike | None = None,
        circular: bool = False,
        identity_boundary_slopes: bool = False,
        learn_lower_bound: bool = False,
        learn_upper_bound: bool = False,
        min_bin_size: float = 1e-4,
        min_slope: float = 1e-4,
    ):
        x0, xf = as_float_array(x0), as_float_array(xf)
        y0 = x0 if y0 is None else as_float_array(y0)
        yf = xf if yf is None else as_float_array(yf)
        self.shape = event_shape_of("RationalQuadraticSpline", shape, x0, xf, y0, yf)
        self.x0, self.xf, self.y0, self.yf = (
            jnp.broadcast_to(v, self.shape) for v in (x0, xf, y0, yf)
        )
        self.n_bins = int(n_bins)
        self.circular = bool(circular)
        self.identity_boundary_slopes = bool(identity_boundary_slopes)
        self.learn_lower_bound = bool(learn_lower_bound)
        self.learn_upper_bound = bool(learn_upper_bound)
        self.min_bin_size = float(min_bin_size)
        self.min_slope = float(min_slope)
        if self.n_bins < 1:
            raise ValueError(
                f"RationalQuadraticSpline: n_bins must be >= 1; got {n_bins}."
            )
        if self.min_bin_size * self.n_bins >= 1.0:
            raise ValueError(
                f"RationalQuadraticSpline: min_bin_size * n_bins must be < 1; got "
                f"{self.min_bin_size} * {self.n_bins}."
            )
        if self.circular and (self.learn_lower_bound or self.learn_upper_bound):
            raise ValueError(
                "RationalQuadraticSpline: circular splines cannot learn their bounds; "
                "pass learn_lower_bound=False and learn_upper_bound=False."
            )
        if parameters is None:
            parameters = self.identity_parameters()
        parameters = as_float_array(parameters)
        expected = (*self.shape, self.n_parameters_per_feature)
        if tuple(parameters.shape) != expected:
            raise ValueError(
                f"RationalQuadraticSpline expected parameters of shape {expected} "
                f"(event shape + n_parameters_per_feature), got {parameters.shape}."
            )
        self.parameters = parameters

    def __check_init__(self):
        import numpy as np

        concrete = not any(
            isinstance(v, jax.core.Tracer) for v in (self.x0, self.xf, self.y0, self.yf)
        )
        if not concrete:
            return
        if np.any(np.asarray(self.xf) <= np.asarray(self.x0)) or np.any(
            np.asarray(self.yf) <= np.asarray(self.y0)
        ):
            raise ValueError(
                "RationalQuadraticSpline: each interval must have x0 < xf and y0 < yf."
            )
        if self.circular and not (
            np.array_equal(np.asarray(self.x0), np.asarray(self.y0))
            and np.array_equal(np.asarray(self.xf), np.asarray(self.yf))
        ):
            raise ValueError(
                "RationalQuadraticSpline: a circular spline maps its period onto "
                "itself; pass y0 = x0 and yf = xf (or leave them out)."
            )

    @property
    def n_slopes(self) -> int:
        n = self.n_bins + 1
        if self.circular:
            n -= 1
        if self.identity_boundary_slopes:
            n -= 1 if self.circular else 2
        return n

    @property
    def n_parameters_per_feature(self) -> int:
        """The length of the last axis of `parameters` (see the layout above)."""
        n = 2 * self.n_bins + self.n_slopes
        n += int(self.circular)
        n += int(self.learn_lower_bound or self.learn_upper_bound)
        n += int(self.learn_lower_bound and self.learn_upper_bound)
        return n

    def identity_parameters(self) -> jax.Array:
        """Equal bins, no shift, no rescaling, and at every free knot the slope
        $(y_f - y_0) / (x_f - x_0)$: the linear map of $[x_0, x_f]$ onto
        $[y_0, y_f]$, inside and (linear tails) outside. Where the two intervals
        are equal these are all zeros (unit slopes): the identity. With
        `identity_boundary_slopes` the end slopes stay 1, so the map is linear
        only where the intervals are equal."""
        parameters = jnp.zeros((*self.shape, self.n_parameters_per_feature))
        ratio = jnp.broadcast_to((self.yf - self.y0) / (self.xf - self.x0), self.shape)
        # The inverse of _positive_slopes at the ratio; exactly 0 where it is 1.
        scaled = (ratio - self.min_slope) * _LOG2 / (1.0 - self.min_slope)
        raw = jnp.where(ratio == 1.0, 0.0, softplus_inverse(scaled))
        start = 2 * self.n_bins
        return parameters.at[..., start : start + self.n_slopes].set(raw[..., None])

    def with_parameters(self, parameters: ArrayLike) -> "RationalQuadraticSpline":
        """The same spline with other (e.g. conditioner-produced) parameters."""
        parameters = jnp.asarray(parameters)
        expected = (*self.shape, self.n_parameters_per_feature)
        if tuple(parameters.shape) != expected:
            raise ValueError(
                f"RationalQuadraticSpline.with_parameters expected shape {expected}, "
                f"got {parameters.shape}."
            )
        return eqx.tree_at(lambda s: s.parameters, self, parameters)

    def _features(self):
        """Per feature: x knots, y knots and the unconstrained slope parameters at
        the knots, each (n_features, K + 1), the bounds `(x0, xf, y0, yf)` (the
        end knots) and the extra parameters. The slopes are
        `_positive_slopes(raw, min_slope)`; a fixed unit slope has raw value 0.
        They stay unconstrained until an element's two are gathered: the
        softplus then runs on two values per element, inside the checkpointed
        map, rather than on every knot with its result kept for the gradient."""
        n_bins = self.n_bins
        flat = self.parameters.reshape(-1, self.n_parameters_per_feature)
        bounds = [v.reshape(-1) for v in (self.x0, self.xf, self.y0, self.yf)]
        x0, xf, y0, yf = bounds
        # One split rather than a slice per group: the gradient of a split is
        # one concatenation, that of each slice a zero-padded full-size copy
        # (a tenth of a spline coupling layer's training step).
        raw_widths, raw_heights, raw_slopes, extra = jnp.split(
            flat, [n_bins, 2 * n_bins, 2 * n_bins + self.n_slopes], axis=1
        )
        if self.learn_lower_bound or self.learn_upper_bound:
            # A circular spline learns no bounds, so extra is [log-scale, shift].
            scale = jnp.exp(extra[:, 0])
            if self.learn_lower_bound and self.learn_upper_bound:
                shift = extra[:, 1]
                x0, xf = x0 + shift, x0 + shift + (xf - x0) * scale
                y0, yf = y0 + shift, y0 + shift + (yf - y0) * scale
            elif self.learn_lower_bound:
                x0, y0 = xf - (xf - x0) * scale, yf - (yf - y0) * scale
            else:
                xf, yf = x0 + (xf - x0) * scale, y0 + (yf - y0) * scale
        widths = _bin_sizes(raw_widths, self.min_bin_size)
        heights = _bin_sizes(raw_heights, self.min_bin_size)
        x_knots = _knots(widths, x0, xf)
        y_knots = _knots(heights, y0, yf)
        # softplus(0) / log 2 = 1: a fixed unit slope has raw value 0.
        unit = jnp.zeros((raw_slopes.shape[0], 1), raw_slopes.dtype)
        if self.circular:
            first = unit if self.identity_boundary_slopes else raw_slopes[:, :1]
            if not self.identity_boundary_slopes:
                raw_slopes = raw_slopes[:, 1:]
            raw_slopes = jnp.concatenate([first, raw_slopes, first], axis=1)
        elif self.identity_boundary_slopes:
            raw_slopes = jnp.concatenate([unit, raw_slopes, unit], axis=1)
        return x_knots, y_knots, raw_slopes, (x0, xf, y0, yf), extra

    def _shift(self, extra):
        # A circular spline's extra parameters are its shift alone.
        return extra[:, 0]

    def forward_elementwise(self, x):
        x_knots, y_knots, raw_slopes, bounds, extra = self._features()
        x0, xf = bounds[:2]
        flat_x = x.reshape(-1)
        if self.circular:
            flat_x = jnp.mod(flat_x - x0 + self._shift(extra), xf - x0) + x0
        clipped = jnp.clip(flat_x, x0, xf)
        bins = jax.vmap(_bin)(clipped, x_knots, x_knots, y_knots, raw_slopes)
        y, log_derivative = _forward_map(
            self.min_slope, flat_x, clipped, *bounds, *bins
        )
        return y.reshape(x.shape), log_derivative.reshape(x.shape)

    def inverse_elementwise(self, y):
        x_knots, y_knots, raw_slopes, bounds, extra = self._features()
        x0, xf, y0, yf = bounds
        flat_y = y.reshape(-1)
        if self.circular:
            flat_y = jnp.mod(flat_y - y0, yf - y0) + y0
        clipped = jnp.clip(flat_y, y0, yf)
        bins = jax.vmap(_bin)(clipped, y_knots, x_knots, y_knots, raw_slopes)
        x, log_derivative = _inverse_map(
            self.min_slope, flat_y, clipped, *bounds, *bins
        )
        if self.circular:
            x = jnp.mod(x - x0 - self._shift(extra), xf - x0) + x0
        return x.reshape(y.shape), log_derivative.reshape(y.shape)
