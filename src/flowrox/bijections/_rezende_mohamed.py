r"""The planar and radial flows of Rezende & Mohamed (2015).

From "Variational inference with normalizing flows": `Planar` moves points
along one direction by a tanh of their projection on another, and `Radial`
contracts or expands them about a centre. Both are invertible by construction
(their raw parameters are mapped into the invertible range); `Planar`'s inverse
reduces to one scalar equation, solved by the package's root finder.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._numerics import as_float_array, vector_parameter, vector_size
from ._base import AbstractBijection
from ._parameters import log_of_positive
from ._rays import safe_norm
from ._root_finding import RootFinder, find_root

# ---------------------------------------------------------------------------
# Planar
# ---------------------------------------------------------------------------


def _sech_squared(a: jax.Array) -> jax.Array:
    # 4 e^{-2|a|} / (1 + e^{-2|a|})^2: no overflow of cosh, finite gradients.
    decay = jnp.exp(-2.0 * jnp.abs(a))
    return 4.0 * decay / (1.0 + decay) ** 2


def _planar_equation(alpha, coefficients):
    # w.u_hat as computed, so that the root inverts the forward map to rounding.
    projection, _ = coefficients
    return alpha + projection * jnp.tanh(alpha)


def _planar_slope(alpha, coefficients):
    # 1 + kappa sech^2 with 1 + kappa > 0 computed directly: no cancellation
    # near kappa = -1, and never a division by 0.
    _, one_plus_kappa = coefficients
    return jnp.tanh(alpha) ** 2 + one_plus_kappa * _sech_squared(alpha)


class Planar(AbstractBijection):
    r"""The planar flow $y = x + \hat u \tanh(w^\top x + b)$ (Rezende & Mohamed 2015).

    The stored `u` is unconstrained; the map uses
    $\hat u = u + (m(w^\top u) - w^\top u)\,w / |w|^2$, so that
    $w^\top \hat u = m(w^\top u)$ with $m(a) = a$ for $a \ge 0$ and
    $m(a) = e^a - 1$ below: $w^\top \hat u > -1$, which makes the map invertible.
    ($m$ is a variant of the paper's $-1 + \operatorname{softplus}(a)$ with
    $m(0) = 0$: $\hat u = u$ whenever $w^\top u \ge 0$, and $u = 0$ is exactly the
    identity.) With $\kappa = w^\top\hat u$ and $\alpha = w^\top x + b$,

    $$\log|\det J| = \log\big(1 + \kappa\,\operatorname{sech}^2\alpha\big)
    = \log\big(\tanh^2\alpha + (1 + \kappa)\operatorname{sech}^2\alpha\big).$$

    The inverse has no closed form but reduces to one scalar equation: since
    $w^\top y + b = \alpha + \kappa\tanh\alpha$, which increases in $\alpha$,
    $\alpha$ is found by safeguarded Newton iterations inside the bracket
    $w^\top y + b \pm |\kappa|$ (a fixed number of steps, so it runs under
    `jit`), and $x = y - \hat u\tanh\alpha$. The inverse is thus numerical
    (accurate to rounding); its gradients come from the implicit function
    theorem, not from differentiating the iterations.

    Args:
        dim: the dimension of the event, of shape `(dim,)`.
        key: draws $w \sim N(0, I/d)$ when `w` is not given.
        u: the unconstrained $u$ (default zeros: the identity).
        w: $w$, non-zero (default: drawn with `key`).
        b: the bias (default 0).
        n_iterations: the number of root-finding steps of the inverse.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Planar
        >>> layer = Planar(2, u=jnp.array([-3.0, 0.5]), w=jnp.array([1.0, 0.0]))
        >>> float(layer.w @ layer.u_hat) > -1.0
        True
        >>> x = jnp.array([0.2, -0.7])
        >>> bool(jnp.allclose(layer.inverse(layer.transform(x)), x, atol=1e-5))
        True
        >>> Planar(3, key=jax.random.key(0)).transform(jnp.ones(3)).tolist()
        [1.0, 1.0, 1.0]
    """

    u: jax.Array
    w: jax.Array
    b: jax.Array
    n_iterations: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        dim: int,
        *,
        key: jax.Array | None = None,
        u: ArrayLike | None = None,
        w: ArrayLike | None = None,
        b: ArrayLike = 0.0,
        n_iterations: int = 60,
    ):
        dim = vector_size("Planar", dim)
        if w is None:
            if key is None:
                raise ValueError(
                    "Planar needs w or a key to draw it: Planar(dim, key=key), or "
                    "Planar(dim, w=...) with a non-zero w."
                )
            w = jax.random.normal(key, (dim,)) / jnp.sqrt(dim)
        self.w = vector_parameter("Planar", "w", w, dim)
        self.u = vector_parameter("Planar", "u", u, dim)
        self.b = as_float_array(b)
        if self.b.shape != ():
            raise ValueError(f"Planar: b must be a scalar; got shape {self.b.shape}.")
        self.n_iterations = int(n_iterations)
        self.shape = (dim,)

    def _constrained(self):
        """$\\hat u$, $w^\\top \\hat u$ as computed, and $m = m(w^\\top u)$, $1 + m$."""
        projection = self.w @ self.u
        negative = projection < 0
        exp_part = jnp.exp(jnp.minimum(projection, 0.0))
        one_plus_kappa = jnp.where(negative, exp_part, 1.0 + projection)
        kappa = jnp.where(negative, exp_part - 1.0, projection)
        squared_norm = jnp.maximum(self.w @ self.w, jnp.finfo(self.w.dtype).tiny)
        u_hat = self.u + (kappa - projection) * self.w / squared_norm
        return u_hat, self.w @ u_hat, kappa, one_plus_kappa

    @property
    def u_hat(self) -> jax.Array:
        """$\\hat u$, the vector the map actually uses."""
        return self._constrained()[0]

    @staticmethod
    def _log_det(alpha, kappa, one_plus_kappa):
        # log(1 + kappa sech^2): log1p is exact near kappa = 0 (the identity gives
        # exactly 0); near kappa = -1 the form tanh^2 + (1 + kappa) sech^2, with
        # 1 + kappa = e^{w.u} computed directly, stays positive.
        sech_squared = _sech_squared(alpha)
        strong = kappa < -0.5
        return jnp.where(
            strong,
            jnp.log(jnp.tanh(alpha) ** 2 + one_plus_kappa * sech_squared),
            jnp.log1p(jnp.where(strong, 0.0, kappa) * sech_squared),
        )

    def transform_and_log_det(self, x, condition=None):
        del condition
        u_hat, _, kappa, one_plus_kappa = self._constrained()
        alpha = self.w @ x + self.b
        log_det = self._log_det(alpha, kappa, one_plus_kappa)
        return x + u_hat * jnp.tanh(alpha), log_det

    def inverse_and_log_det(self, y, condition=None):
        del condition
        u_hat, projection, kappa, one_plus_kappa = self._constrained()
        target = self.w @ y + self.b
        # alpha + kappa tanh(alpha) = target has its root within |kappa| of target.
        spread = jnp.abs(projection)
        finder = RootFinder(
            max_bisection_steps=0, tolerance=0.0, newton_steps=self.n_iterations
        )
        alpha = find_root(
            _planar_equation,
            (projection, one_plus_kappa),
            target,
            low=target - spread,
            high=target + spread,
            finder=finder,
            slope=_planar_slope,
        )
        log_det = -self._log_det(alpha, kappa, one_plus_kappa)
        return y - u_hat * jnp.tanh(alpha), log_det


# ---------------------------------------------------------------------------
# Radial
# ---------------------------------------------------------------------------


class Radial(AbstractBijection):
    r"""The radial flow $y = x + \beta h(r)(x - z_0)$ (Rezende & Mohamed 2015).

    With $r = |x - z_0|$, $h(r) = 1/(\alpha + r)$, $\alpha > 0$ and
    $\beta > -\alpha$ (which makes it invertible), the radius maps to
    $\varrho = r(1 + \beta h) = r (r + \gamma)/(r + \alpha)$, $\gamma = \alpha +
    \beta > 0$, and

    $$\log|\det J| = (d - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h' r)
    = (d - 1)\log\frac{r + \gamma}{r + \alpha}
    + \log\frac{r^2 + 2\alpha r + \alpha\gamma}{(r + \alpha)^2},$$

    finite everywhere ($d\log(\gamma/\alpha)$ at the centre). The inverse solves
    $r^2 + (\gamma - \varrho) r - \alpha\varrho = 0$ for its positive root (closed
    form), then $x = z_0 + (y - z_0)(r + \alpha)/(r + \gamma)$.

    Parameters are stored unconstrained: `log_alpha` $= \log\alpha$ and
    `beta_unconstrained` $= \log(\gamma/\alpha)$, i.e.
    $\beta = \alpha\,(e^{\tilde\beta} - 1)$ (the paper's $-\alpha +
    \operatorname{softplus}(\tilde\beta)$ with another link, chosen so that
    $\tilde\beta = 0$ means $\beta = 0$ whatever $\alpha$): the default is the
    identity (exactly so for the default centre at the origin; elsewhere up to
    the rounding of $z_0 + (x - z_0)$).

    Args:
        dim: the dimension of the event, of shape `(dim,)`.
        center: $z_0$ (default zeros).
        alpha: $\alpha > 0$ (default 1).
        beta: $\beta > -\alpha$ (default 0: the identity).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Radial
        >>> layer = Radial(2, alpha=0.5, beta=-0.4)  # pulls points towards z0
        >>> x = jnp.array([0.3, 0.4])  # r = 0.5: y = x (1 - 0.4 / (0.5 + 0.5))
        >>> print(*[round(value, 4) for value in layer.transform(x).tolist()])
        0.18 0.24
        >>> bool(jnp.allclose(layer.inverse(layer.transform(x)), x))
        True
    """

    center: jax.Array
    log_alpha: jax.Array
    beta_unconstrained: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        dim: int,
        *,
        center: ArrayLike | None = None,
        alpha: ArrayLike = 1.0,
        beta: ArrayLike = 0.0,
    ):
        dim = vector_size("Radial", dim)
        self.center = vector_parameter("Radial", "center", center, dim)
        self.log_alpha = log_of_positive("Radial", "alpha", alpha)
        alpha, beta = jnp.exp(self.log_alpha), as_float_array(beta)
        if self.log_alpha.shape != () or beta.shape != ():
            raise ValueError(
                f"Radial: alpha and beta must be scalars; got shapes "
                f"{self.log_alpha.shape} and {beta.shape}."
            )
        # gamma / alpha = 1 + beta / alpha must be positive.
        self.beta_unconstrained = log_of_positive(
            "Radial", "1 + beta / alpha", 1.0 + beta / alpha
        )
        self.shape = (dim,)

    @property
    def alpha(self) -> jax.Array:
        return jnp.exp(self.log_alpha)

    @property
    def beta(self) -> jax.Array:
        return self.alpha * jnp.expm1(self.beta_unconstrained)

    def _parameters(self):
        """alpha and gamma = alpha + beta, both positive."""
        alpha = self.alpha
        return alpha, alpha * jnp.exp(self.beta_unconstrained)

    @staticmethod
    def _log_det(radius, alpha, gamma, dim):
        # Written with alpha and gamma only (not beta = gamma - alpha, which loses
        # precision when beta ~ -alpha), and exactly 0 when gamma = alpha.
        log_ratio = jnp.log(radius + gamma) - jnp.log(radius + alpha)
        # log(1 + beta h + beta h' r) = log(1 + alpha beta / (r + alpha)^2): log1p
        # near beta = 0, the factored form near -1 (strong contraction).
        excess = alpha * (gamma - alpha) / (radius + alpha) ** 2
        near_minus_one = excess < -0.5
        log_slope = jnp.where(
            near_minus_one,
            jnp.log(radius * (radius + 2.0 * alpha) + alpha * gamma)
            - 2.0 * jnp.log(radius + alpha),
            jnp.log1p(jnp.where(near_minus_one, 0.0, excess)),
        )
        return (dim - 1) * log_ratio + log_slope

    def transform_and_log_det(self, x, condition=None):
        del condition
        alpha, gamma = self._parameters()
        offset = x - self.center
        radius = safe_norm(offset)
        # y - z0 = (1 + beta h)(x - z0), with 1 + beta h = (r + gamma) / (r + alpha).
        y = self.center + offset * ((radius + gamma) / (radius + alpha))
        return y, self._log_det(radius, alpha, gamma, x.size)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        alpha, gamma = self._parameters()
        offset = y - self.center
        new_radius = safe_norm(offset)
        linear = new_radius - gamma
        root = jnp.sqrt(linear**2 + 4.0 * alpha * new_radius)
        # The two forms of the positive root, each free of cancellation on its side.
        negative = linear < 0
        radius = jnp.where(
            negative,
            2.0 * alpha * new_radius / jnp.where(negative, root - linear, 1.0),
            0.5 * (linear + root),
        )
        x = self.center + offset * ((radius + alpha) / (radius + gamma))
        return x, -self._log_det(radius, alpha, gamma, y.size)
