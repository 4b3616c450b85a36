"""Analytic bijections of the real line: two conjugations and a cubic rational map.

Each map is monotone increasing on all of the real line, has a closed-form
inverse, and is exactly the identity at its default parameters, so that deep
stacks of randomly initialised copies (built with `eqx.filter_vmap` and applied
with `Scan`) start from a sane map and train.

The formulas are evaluated in forms that are exact at the identity (the output
is `x` plus a correction that is exactly zero there) and that never form
quantities which overflow for large inputs.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._numerics import as_float_array, log_cosh
from ._elementwise import AbstractElementwise
from ._parameters import event_shape_of, log_of_positive

# Above this |v| the root of the CubicRational cubic is v to working precision
# (the first correction is (r - 1) / v), and v**4 would risk overflow.
_LARGE_ARGUMENT = 1e6


def _sign(value: jax.Array) -> jax.Array:
    # +1 at zero, unlike jnp.sign, so that the symmetric reductions below keep
    # the derivative of the x >= 0 branch at x = 0.
    return jnp.where(value >= 0, 1.0, -1.0).astype(value.dtype)


def _normal(key, shape, spread):
    return spread * jax.random.normal(key, shape)


def _cubic_conjugate(x, center, log_slope, shift, curvature):
    r"""$h^{-1}(e^{\alpha} h(x) + b)$ for $h(x) = (x - \mu) + c(x - \mu)^3$.

    Below, $x$ stands for $x - \mu \ge 0$ (the other sign follows by symmetry).
    With $k = \sqrt{3c}$, Cardano's root of the cubic in hyperbolic form is
    $h^{-1}(s) = (2/k)\sinh\theta$, $\theta = \tfrac13\operatorname{arsinh} Z$,
    $Z = \tfrac32 k s$; likewise $x = (2/k)\sinh\varphi$ with
    $\varphi = \tfrac13\operatorname{arsinh} Z_0$, $Z_0 = \tfrac32 k h(x)$. With
    $1 + e = e^{\theta - \varphi} = \big((Z + \sqrt{1 + Z^2}) /
    (Z_0 + \sqrt{1 + Z_0^2})\big)^{1/3}$, the addition theorem gives
    $y - x = e\,(x e + R(2 + e)) / (2(1 + e))$, $R = \sqrt{4/k^2 + x^2}$, where
    the ratio minus one is formed from $Z - Z_0$ (exactly zero at the identity).
    Where $Z < 0$ the direct root $-(q - 1/q)/k$, $q^3 = |Z| + \sqrt{1 + Z^2}$,
    is used.
    """
    sign = _sign(x - center)
    x_abs = sign * (x - center)
    shift = sign * shift
    k = jnp.sqrt(3.0 * curvature)
    h = x_abs + curvature * x_abs**3
    z0 = 1.5 * k * h
    difference = 1.5 * k * (jnp.expm1(log_slope) * h + shift)  # Z - Z0
    z = z0 + difference
    upper = z >= 0
    # Both branches are evaluated; each gets inputs on which it is finite.
    z_upper = jnp.where(upper, z, 0.0)
    difference_upper = jnp.where(upper, difference, -z0)
    root0 = jnp.sqrt(1.0 + z0**2)
    root = jnp.sqrt(1.0 + z_upper**2)
    ratio_minus_one = (
        difference_upper * (1.0 + (z_upper + z0) / (root + root0)) / (z0 + root0)
    )
    e = jnp.expm1(jnp.log1p(ratio_minus_one) / 3.0)
    radius = jnp.sqrt(4.0 / (3.0 * curvature) + x_abs**2)
    y_upper = x + sign * e * (x_abs * e + radius * (2.0 + e)) / (2.0 * (1.0 + e))
    z_lower = jnp.where(upper, -1.0, z)
    cube_root = jnp.cbrt(jnp.sqrt(1.0 + z_lower**2) - z_lower)
    y_lower = center - sign * (cube_root - 1.0 / cube_root) / k
    return jnp.where(upper, y_upper, y_lower)


def _sinh_conjugate(x, center, log_slope, shift, width):
    r"""$\mu + w\operatorname{arsinh}(e^{\alpha}\sinh((x - \mu)/w) + b)$ as $x + \dots$.

    For $v = (x - \mu)/w \ge 0$ (the other sign follows by symmetry) write
    $\epsilon = e^{-v}$ and $e^{\alpha}\sinh v + b = e^{v} m$ with
    $m = e^{\alpha}(1 - \epsilon^2)/2 + b\epsilon$. Then
    $\operatorname{arsinh}(e^v m) = v + \log(m + \sqrt{m^2 + \epsilon^2})$ for
    $m \ge 0$, and the log's argument minus one is formed from
    $m - m_0$, $m_0 = (1 - \epsilon^2)/2$ (exactly zero at the identity). For
    $m < 0$ it is $-v - \log(\sqrt{m^2 + \epsilon^2} - m)$. Nothing overflows.
    """
    u = (x - center) / width
    sign = _sign(u)
    v = sign * u
    shift = sign * shift
    decay = jnp.exp(-v)
    m0 = -0.5 * jnp.expm1(-2.0 * v)
    r0 = 0.5 * (1.0 + decay**2)  # sqrt(m0**2 + decay**2)
    dm = jnp.expm1(log_slope) * m0 + shift * decay
    m = m0 + dm
    upper = m >= 0
    r = jnp.sqrt(m**2 + decay**2)
    log_argument_minus_one = dm * (1.0 + (m + m0) / (r + r0))
    y_upper = x + sign * width * jnp.log1p(jnp.where(upper, log_argument_minus_one, 0))
    m_lower = jnp.where(upper, -1.0, m)
    y_lower = center - sign * width * (
        v + jnp.log(jnp.sqrt(m_lower**2 + decay**2) - m_lower)
    )
    return jnp.where(upper, y_upper, y_lower)


class CubicConjugation(AbstractElementwise):
    r"""An affine map conjugated by a monotone cubic: $y = h^{-1}(a\,h(x) + b)$.

    With $h(x) = (x - \mu) + c(x - \mu)^3$ ($c > 0$, so $h' \ge 1$ and $h$ is a
    bijection of the real line), the map is affine with slope $a$ near the
    center $\mu$ (for $|x - \mu| \ll 1/\sqrt{c}$) and grows like $a^{1/3} x$ in
    the tails:

    - forward: $y = h^{-1}(a\,h(x) + b)$;
    - inverse: $x = h^{-1}\big((h(y) - b)/a\big)$, the same map with
      $(a, b) \to (1/a, -b/a)$;
    - log-derivative: $\log a + \log(1 + 3c(x - \mu)^2) - \log(1 + 3c(y - \mu)^2)$.

    The cubic $h(y) = s$ is solved by Cardano's formula in hyperbolic form,
    $h^{-1}(s) = \mu + \frac{2}{k}\sinh\big(\tfrac13\operatorname{arsinh}
    (\tfrac32 k s)\big)$ with $k = \sqrt{3c}$, rewritten so that the output is $x$
    plus a correction proportional to $(a - 1)h(x) + b$: values and gradients
    stay finite for large inputs, and $a = 1$, $b = 0$ is exactly the identity
    for every $\mu$ and $c$.

    Parameters are stored unconstrained: `log_slope` ($\log a$), `shift` ($b$),
    `center` ($\mu$) and `log_curvature` ($\log c$). They broadcast to the event
    shape, each element getting its own entry.

    Args:
        slope: $a > 0$, the slope of the conjugated affine map.
        shift: $b$, its shift.
        center: $\mu$, the center of the cubic.
        curvature: $c > 0$, the cubic coefficient of $h$; the map changes from
            slope $a$ to the $a^{1/3}$ regime around $|x - \mu| \approx 1/\sqrt{c}$.
        shape: the event shape (default: the broadcast shape of the parameters).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import CubicConjugation
        >>> bijection = CubicConjugation(slope=2.0, shift=0.5, curvature=1.0)
        >>> x = jnp.array([-1.0, 0.0, 3.0])
        >>> y = CubicConjugation(slope=2.0, shift=0.5, shape=(3,)).transform(x)
        >>> bool(jnp.allclose(y + y**3, 2.0 * (x + x**3) + 0.5, rtol=1e-5))
        True
        >>> bool(jnp.allclose(bijection.inverse(bijection.transform(x[2])), x[2]))
        True
        >>> CubicConjugation(shape=(2,)).transform(jnp.array([0.1, -3.0])).tolist()
        [0.10000000149011612, -3.0]
    """

    log_slope: jax.Array
    shift: jax.Array
    center: jax.Array
    log_curvature: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        *,
        slope: ArrayLike = 1.0,
        shift: ArrayLike = 0.0,
        center: ArrayLike = 0.0,
        curvature: ArrayLike = 1.0,
        shape: Sequence[int] | None = None,
    ):
        parameters = tuple(map(as_float_array, (slope, shift, center, curvature)))
        slope, shift, center, curvature = parameters
        owner = "CubicConjugation"
        self.shape = event_shape_of(owner, shape, *parameters)
        self.log_slope = jnp.broadcast_to(
            log_of_positive(owner, "slope", slope), self.shape
        )
        self.shift = jnp.broadcast_to(shift, self.shape)
        self.center = jnp.broadcast_to(center, self.shape)
        self.log_curvature = jnp.broadcast_to(
            log_of_positive(owner, "curvature", curvature), self.shape
        )

    @classmethod
    def init(
        cls, key: jax.Array, shape: Sequence[int] = (), *, scale: float = 0.01
    ) -> "CubicConjugation":
        r"""A randomly initialised near-identity layer.

        `log_slope` and `shift` are drawn from $\mathcal N(0, \mathrm{scale}^2)$,
        so the layer is within about `scale` of the identity; `center` and
        `log_curvature`, which do not move the map away from the identity, are
        drawn from $\mathcal N(0, 1)$, so that stacked layers bend at different
        places and scales. Built for
        `eqx.filter_vmap(lambda k: CubicConjugation.init(k))(keys)`.

        Args:
            key: a JAX random key.
            shape: the event shape.
            scale: the spread of the parameters that move the map away from the
                identity; `scale=0` gives exactly the identity.

        Returns:
            A `CubicConjugation` of event shape `shape`.
        """
        shape = tuple(int(n) for n in shape)
        keys = jax.random.split(key, 4)
        return eqx.tree_at(
            lambda b: (b.log_slope, b.shift, b.center, b.log_curvature),
            cls(shape=shape),
            (
                _normal(keys[0], shape, scale),
                _normal(keys[1], shape, scale),
                _normal(keys[2], shape, 1.0),
                _normal(keys[3], shape, 1.0),
            ),
        )

    @property
    def slope(self) -> jax.Array:
        return jnp.exp(self.log_slope)

    @property
    def curvature(self) -> jax.Array:
        return jnp.exp(self.log_curvature)

    def _log_derivative(self, x, y):
        three_c = 3.0 * self.curvature
        return (
            self.log_slope
            + jnp.log1p(three_c * (x - self.center) ** 2)
            - jnp.log1p(three_c * (y - self.center) ** 2)
        )

    def forward_elementwise(self, x):
        y = _cubic_conjugate(x, self.center, self.log_slope, self.shift, self.curvature)
        return y, self._log_derivative(x, y)

    def inverse_elementwise(self, y):
        inverse_shift = -self.shift * jnp.exp(-self.log_slope)
        x = _cubic_conjugate(
            y, self.center, -self.log_slope, inverse_shift, self.curvature
        )
        return x, -self._log_derivative(x, y)


class SinhConjugation(AbstractElementwise):
    r"""An affine map conjugated by sinh: $y = h^{-1}(a\,h(x) + b)$, $h = \sinh$.

    With $h(x) = \sinh((x - \mu)/w)$, $w > 0$,
    $y = \mu + w\operatorname{arsinh}\big(a\sinh((x - \mu)/w) + b\big)$: near the
    center ($|x - \mu| \lesssim w$) the map is affine with slope about $a$, and in
    the tails it is a shift, $y \approx x \pm w \log a$, so the tails keep the
    base distribution's shape.

    - forward: $y = \mu + w\operatorname{arsinh}(a\sinh((x - \mu)/w) + b)$;
    - inverse: $x = \mu + w\operatorname{arsinh}\big((\sinh((y - \mu)/w) -
      b)/a\big)$, the same map with $(a, b) \to (1/a, -b/a)$;
    - log-derivative: $\log a + \log\cosh((x - \mu)/w) - \log\cosh((y - \mu)/w)$.

    The map is evaluated as $x$ plus a correction that is exactly zero at
    $a = 1$, $b = 0$ (the identity, for every $\mu$ and $w$), in a form in which
    $\sinh((x - \mu)/w)$ is never formed, so values and gradients stay finite
    for any finite input.

    Parameters are stored unconstrained: `log_slope` ($\log a$), `shift` ($b$),
    `center` ($\mu$) and `log_width` ($\log w$), broadcast to the event shape.

    Args:
        slope: $a > 0$, the central slope.
        shift: $b$, the shift in sinh space (the output at $x = \mu$ is
            $\mu + w \operatorname{arsinh} b$).
        center: $\mu$, the center of the affine region.
        width: $w > 0$, the half-width of the affine region.
        shape: the event shape (default: the broadcast shape of the parameters).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import SinhConjugation
        >>> bijection = SinhConjugation(slope=3.0, shift=-0.2, width=0.5)
        >>> x = jnp.array(0.7)
        >>> y = bijection.transform(x)
        >>> bool(jnp.allclose(jnp.sinh(y / 0.5), 3.0 * jnp.sinh(x / 0.5) - 0.2))
        True
        >>> round(float(bijection.transform(jnp.array(50.0))), 4)  # 50 + w log 3
        50.5493
        >>> bool(jnp.allclose(bijection.inverse(y), x))
        True
    """

    log_slope: jax.Array
    shift: jax.Array
    center: jax.Array
    log_width: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        *,
        slope: ArrayLike = 1.0,
        shift: ArrayLike = 0.0,
        center: ArrayLike = 0.0,
        width: ArrayLike = 1.0,
        shape: Sequence[int] | None = None,
    ):
        parameters = tuple(map(as_float_array, (slope, shift, center, width)))
        slope, shift, center, width = parameters
        owner = "SinhConjugation"
        self.shape = event_shape_of(owner, shape, *parameters)
        self.log_slope = jnp.broadcast_to(
            log_of_positive(owner, "slope", slope), self.shape
        )
        self.shift = jnp.broadcast_to(shift, self.shape)
        self.center = jnp.broadcast_to(center, self.shape)
        self.log_width = jnp.broadcast_to(
            log_of_positive(owner, "width", width), self.shape
        )

    @classmethod
    def init(
        cls, key: jax.Array, shape: Sequence[int] = (), *, scale: float = 0.01
    ) -> "SinhConjugation":
        r"""A randomly initialised near-identity layer.

        `log_slope` and `shift` are drawn from $\mathcal N(0, \mathrm{scale}^2)$;
        `center` and `log_width`, which do not move the map away from the
        identity, from $\mathcal N(0, 1)$, so that stacked layers act at
        different places and scales.

        Args:
            key: a JAX random key.
            shape: the event shape.
            scale: the spread of the parameters that move the map away from the
                identity; `scale=0` gives exactly the identity.

        Returns:
            A `SinhConjugation` of event shape `shape`.
        """
        shape = tuple(int(n) for n in shape)
        keys = jax.random.split(key, 4)
        return eqx.tree_at(
            lambda b: (b.log_slope, b.shift, b.center, b.log_width),
            cls(shape=shape),
            (
                _normal(keys[0], shape, scale),
                _normal(keys[1], shape, scale),
                _normal(keys[2], shape, 1.0),
                _normal(keys[3], shape, 1.0),
            ),
        )

    @property
    def slope(self) -> jax.Array:
        return jnp.exp(self.log_slope)

    @property
    def width(self) -> jax.Array:
        return jnp.exp(self.log_width)

    def _log_derivative(self, x, y):
        width = self.width
        return (
            self.log_slope
            + log_cosh((x - self.center) / width)
            - log_cosh((y - self.center) / width)
        )

    def forward_elementwise(self, x):
        y = _sinh_conjugate(x, self.center, self.log_slope, self.shift, self.width)
        return y, self._log_derivative(x, y)

    def inverse_elementwise(self, y):
        inverse_shift = -self.shift * jnp.exp(-self.log_slope)
        x = _sinh_conjugate(y, self.center, -self.log_slope, inverse_shift, self.width)
        return x, -self._log_derivative(x, y)


def _ratio_of(owner: str, ratio) -> jax.Array:
    """`log(8 r / (9 - r))` after checking that `0 < ratio < 9`."""
    ratio = as_float_array(ratio)
    message = (
        f"{owner}: ratio must lie in (0, 9), the range in which the map is "
        "monotone; got a value outside it. Pass 0 < ratio < 9 (it is stored "
        "unconstrained, so training keeps it inside)."
    )
    if isinstance(ratio, jax.core.Tracer):
        ratio = eqx.error_if(ratio, (ratio <= 0) | (ratio >= 9), message)
    elif not bool(np.all((np.asarray(ratio) > 0) & (np.asarray(ratio) < 9))):
        raise ValueError(message + f" Got ratio={np.asarray(ratio)}.")
    return jnp.log(8.0 * ratio) - jnp.log(9.0 - ratio)


def _cubic_rational_root(v, ratio):
    """The one real root of u**3 - v u**2 + r u - v = 0 (Cardano, stable form)."""
    large = jnp.abs(v) > _LARGE_ARGUMENT
    v_small = jnp.where(large, 0.0, v)
    p = ratio - v_small**2 / 3.0
    q = v_small * (ratio / 3.0 - 1.0 - 2.0 * v_small**2 / 27.0)
    # q**2/4 + p**3/27, expanded so that the v**6 terms cancel exactly; it is
    # positive for 0 < r < 9, so A below never vanishes.
    v2 = v_small**2
    discriminant = (4.0 * v2**2 + (27.0 - 18.0 * ratio - ratio**2) * v2) / 108.0
    discriminant = discriminant + ratio**3 / 27.0
    outer = -_sign(q) * jnp.cbrt(0.5 * jnp.abs(q) + jnp.sqrt(discriminant))
    root = outer - p / (3.0 * outer) + v_small / 3.0
    return jnp.where(large, v, root)


class CubicRational(AbstractElementwise):
    r"""A monotone cubic-over-quadratic map with a closed-form (Cardano) inverse.

    With $z = x - \mu$ and $u = z / w$,

    $$y = x + \nu + (\tau - 1) z + \tau (r - 1)\frac{z}{1 + u^2}
        = \mu + \nu + \tau\, z\,\frac{r w^2 + z^2}{w^2 + z^2}:$$

    around the center $\mu$ (for $|z| \lesssim w$) the slope is $\tau r$, in the
    tails it is $\tau$, and $\nu$ shifts the output. The map is monotone exactly
    when the central-to-tail slope ratio satisfies $0 < r < 9$; a small $r$
    concentrates mass near $\mu$, $r > 1$ pushes it away.

    - log-derivative:
      $\log\tau + \log\big(1 + (r - 1)\frac{1 - u^2}{(1 + u^2)^2}\big)$;
    - inverse: with $v = (y - \mu - \nu)/(\tau w)$, $u$ is the one real root of
      $u^3 - v u^2 + r u - v = 0$, found by Cardano's formula
      $u = A - p/(3A) + v/3$, $A = -\operatorname{sign}(q)\sqrt[3]{|q|/2 +
      \sqrt{q^2/4 + p^3/27}}$, $p = r - v^2/3$, $q = v(r/3 - 1 - 2v^2/27)$,
      polished by one Newton step, and mapped through
      $u \leftarrow v - (r - 1)v/(u^2 + r)$, a rearrangement of the cubic that
      makes $r = 1$ exact and at most doubles rounding errors. Then
      $x = \mu + w u$, and the inverse log-derivative is minus the forward one
      at $x$.

    At the defaults ($\nu = 0$, $\tau = 1$, $r = 1$, any $\mu$ and $w$) the map is
    exactly the identity. Parameters are stored unconstrained: `shift` ($\nu$),
    `log_slope` ($\log\tau$), `center` ($\mu$), `log_width` ($\log w$) and
    `ratio_logit` ($\log\frac{8r}{9 - r}$, zero at $r = 1$).

    Args:
        shift: $\nu$, the output shift.
        slope: $\tau > 0$, the slope in the tails.
        center: $\mu$, where the central region sits.
        width: $w > 0$, the half-width of the central region.
        ratio: $r \in (0, 9)$, the central slope divided by the tail slope.
        shape: the event shape (default: the broadcast shape of the parameters).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import CubicRational
        >>> bijection = CubicRational(center=0.5, width=0.2, ratio=0.1)
        >>> y, log_det = bijection.transform_and_log_det(jnp.array(0.5))
        >>> float(y), round(float(log_det), 4)  # slope r = 0.1 at the center
        (0.5, -2.3026)
        >>> x = jnp.array(2.0)
        >>> bool(jnp.allclose(bijection.inverse(bijection.transform(x)), x))
        True
    """

    shift: jax.Array
    log_slope: jax.Array
    center: jax.Array
    log_width: jax.Array
    ratio_logit: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        *,
        shift: ArrayLike = 0.0,
        slope: ArrayLike = 1.0,
        center: ArrayLike = 0.0,
        width: ArrayLike = 1.0,
        ratio: ArrayLike = 1.0,
        shape: Sequence[int] | None = None,
    ):
        parameters = tuple(map(as_float_array, (shift, slope, center, width, ratio)))
        shift, slope, center, width, ratio = parameters
        owner = "CubicRational"
        self.shape = event_shape_of(owner, shape, *parameters)
        self.shift = jnp.broadcast_to(shift, self.shape)
        self.log_slope = jnp.broadcast_to(
            log_of_positive(owner, "slope", slope), self.shape
        )
        self.center = jnp.broadcast_to(center, self.shape)
        self.log_width = jnp.broadcast_to(
            log_of_positive(owner, "width", width), self.shape
        )
        self.ratio_logit = jnp.broadcast_to(_ratio_of(owner, ratio), self.shape)

    @classmethod
    def init(
        cls, key: jax.Array, shape: Sequence[int] = (), *, scale: float = 0.01
    ) -> "CubicRational":
        r"""A randomly initialised near-identity layer.

        `shift`, `log_slope` and `ratio_logit` are drawn from
        $\mathcal N(0, \mathrm{scale}^2)$; `center` and `log_width`, which do not
        move the map away from the identity, from $\mathcal N(0, 1)$, so that
        stacked layers act at different places and scales.

        Args:
            key: a JAX random key.
            shape: the event shape.
            scale: the spread of the parameters that move the map away from the
                identity; `scale=0` gives exactly the identity.
        """
        shape = tuple(int(n) for n in shape)
        keys = jax.random.split(key, 5)
        return eqx.tree_at(
            lambda b: (b.shift, b.log_slope, b.center, b.log_width, b.ratio_logit),
            cls(shape=shape),
            (
                _normal(keys[0], shape, scale),
                _normal(keys[1], shape, scale),
                _normal(keys[2], shape, 1.0),
                _normal(keys[3], shape, 1.0),
                _normal(keys[4], shape, scale),
            ),
        )

    @property
    def slope(self) -> jax.Array:
        return jnp.exp(self.log_slope)

    @property
    def width(self) -> jax.Array:
        return jnp.exp(self.log_width)

    @property
    def ratio(self) -> jax.Array:
        return 9.0 * jax.nn.sigmoid(self.ratio_logit - jnp.log(8.0))

    def _ratio_minus_one(self):
        # 8 (e^rho - 1) / (8 + e^rho): exactly zero at rho = 0, finite for any rho.
        logit = self.ratio_logit
        below = jnp.expm1(jnp.minimum(logit, 0.0))
        above = -jnp.expm1(-jnp.maximum(logit, 0.0))
        return jnp.where(
            logit <= 0,
            8.0 * below / (9.0 + below),
            8.0 * above / (1.0 + 8.0 * jnp.exp(-jnp.maximum(logit, 0.0))),
        )

    def _log_derivative(self, x):
        # log of 1 + (r - 1)(1 - u^2)/(1 + u^2)^2, with rho = 1/(1 + u^2) and
        # kappa = u^2 rho in [0, 1], so that nothing overflows.
        u = (x - self.center) / self.width
        rho = 1.0 / (1.0 + u**2)
        kappa = u**2 * rho
        ratio = self.ratio
        correction = self._ratio_minus_one() * (rho - kappa) * rho
        # Near -1 the sum of positive terms avoids cancellation (small ratio).
        direct = correction > -0.5
        positive_terms = kappa**2 + (3.0 - ratio) * kappa * rho + ratio * rho**2
        log_derivative = jnp.where(
            direct,
            jnp.log1p(jnp.where(direct, correction, 0.0)),
            jnp.log(jnp.where(direct, 1.0, positive_terms)),
        )
        return self.log_slope + log_derivative

    def forward_elementwise(self, x):
        z = x - self.center
        u = z / self.width
        bend = self.slope * self._ratio_minus_one() * z / (1.0 + u**2)
        y = x + self.shift + jnp.expm1(self.log_slope) * z + bend
        return y, self._log_derivative(x)

    def inverse_elementwise(self, y):
        ratio = self.ratio
        offset = y - self.center - self.shift
        target = offset * jnp.exp(-self.log_slope)  # V = (y - mu - nu) / tau
        v = target / self.width
        ratio_minus_one = self._ratio_minus_one()
        root = _cubic_rational_root(v, ratio)
        # Cardano loses digits where the map is nearly flat (r close to 9): one
        # Newton step on g(u) = u + (r - 1) u / (1 + u^2) = v restores them, as
        # g(u) - v has no large cancelling terms.
        rho = 1.0 / (1.0 + root**2)
        residual = root + ratio_minus_one * root * rho - v
        slope = 1.0 + ratio_minus_one * (rho - root**2 * rho) * rho
        root = root - residual / slope
        # An exact rearrangement of the cubic, u = v - (r - 1) v / (u^2 + r),
        # applied last: exact at r = 1, and it at most doubles rounding errors.
        correction = -ratio_minus_one * target / (root**2 + ratio)
        x = y - self.shift + jnp.expm1(-self.log_slope) * offset + correction
        return x, -self._log_derivative(x)
