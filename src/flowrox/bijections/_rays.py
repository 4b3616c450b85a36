r"""Ray transforms: maps along the rays from a centre.

`RayTransform` and `RadialConditional` move every point along the ray from a
trainable centre $c$ through it, changing only its distance from $c$:

$$y = c + \rho(r)\,\frac{x - c}{r}, \qquad r = |x - c|,$$

with an increasing radius map $\rho$ of $[0, \infty)$ onto itself. In polar
coordinates around $c$ the map is $(r, u) \mapsto (\rho(r), u)$, so

$$\log|\det \partial y/\partial x| = \log \rho'(r) + (d - 1)\log\frac{\rho(r)}{r}.$$

The radius map is built from any increasing scalar bijection $g$ of the real
line (any flowrox bijection of shape `()`), conjugated by the softplus, which
maps the real line onto $(0, \infty)$:

$$\rho(r) = \operatorname{softplus}\big(g(\operatorname{softplus}^{-1}(r))\big).$$

So $\rho$ is an increasing bijection of $(0, \infty)$ whatever $g$ is, its
inverse is $\operatorname{softplus} \circ g^{-1} \circ \operatorname{softplus}^{-1}$
(closed form whenever $g^{-1}$ is), $g = $ identity gives $\rho = $ identity,
and far from the centre ($\operatorname{softplus}^{-1}(r) \approx r$) the radius
follows $g$ itself. Near the centre $\rho(r) \approx \exp(g(\log r))$.
"""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._numerics import (
    log_softplus,
    softplus_inverse,
    vector_parameter,
    vector_size,
)
from ._base import AbstractBijection
from ._conditioned import (
    check_network,
    check_template,
    moved_template,
    split_network,
    template_size,
    zero_last_linear,
)

# ---------------------------------------------------------------------------
# Numerics (safe_norm also serves Radial)
# ---------------------------------------------------------------------------


def safe_norm(z: jax.Array) -> jax.Array:
    """|z|, with a zero (not NaN) gradient at z = 0."""
    squared = jnp.sum(z**2)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _safe_direction(z: jax.Array, norm: jax.Array) -> jax.Array:
    """z / |z|, and the zero vector (with zero gradient) at z = 0."""
    positive = norm > 0
    return jnp.where(positive, z / jnp.where(positive, norm, 1.0), 0.0)


def _check_scalar_bijection(owner: str, bijection) -> None:
    check_template(
        owner,
        bijection,
        role="the radius map",
        hint="SinhArcsinh(0.0, 1.0), or a Scan of stacked scalar layers",
    )


def _radius_forward(scalar_bijection: AbstractBijection, radius: jax.Array):
    r"""$\rho(r)$, $\log\rho(r)$ and $\log\rho'(r)$ for $r > 0$."""
    s = softplus_inverse(radius)
    t, log_derivative_g = scalar_bijection.transform_and_log_det(s)
    # d softplus(t)/dt = sigmoid(t), and log sigmoid(t) = -softplus(-t).
    log_derivative = log_derivative_g - jax.nn.softplus(-t) + jax.nn.softplus(-s)
    return jax.nn.softplus(t), log_softplus(t), log_derivative


def _radius_inverse(scalar_bijection: AbstractBijection, radius: jax.Array):
    r"""$r = \rho^{-1}(\varrho)$, $\log r$ and $\log dr/d\varrho$ for $\varrho > 0$."""
    t = softplus_inverse(radius)
    s, log_derivative_g = scalar_bijection.inverse_and_log_det(t)
    log_derivative = log_derivative_g - jax.nn.softplus(-s) + jax.nn.softplus(-t)
    return jax.nn.softplus(s), log_softplus(s), log_derivative


def _along_rays(radius_map, offset: jax.Array, radius: jax.Array, dim: int):
    """Applies a radius map to `offset = value - centre`, whose (scaled) norm is
    `radius`; returns the new offset and the log-det.

    At the centre itself the output is the centre and the log-det is the one at
    the smallest normal radius, so both stay finite.
    """
    tiny = jnp.finfo(offset.dtype).tiny
    evaluated = jnp.maximum(radius, tiny)
    new_radius, log_new_radius, log_derivative = radius_map(evaluated)
    ratio = jnp.where(radius > 0, new_radius / evaluated, 0.0)
    log_det = log_derivative + (dim - 1) * (log_new_radius - jnp.log(evaluated))
    return ratio * offset, log_det


# ---------------------------------------------------------------------------
# RayTransform
# ---------------------------------------------------------------------------


class RayTransform(AbstractBijection):
    r"""Moves points along the rays from a centre with a scalar bijection of the radius.

    With $r = |x - c|$ and the radius map
    $\rho = \operatorname{softplus} \circ g \circ \operatorname{softplus}^{-1}$
    built from the scalar bijection $g$ (see the module docstring),

    $$y = c + \rho(r)\,\frac{x - c}{r},\qquad
    \log|\det J| = \log g'(s) + \log\sigma(g(s)) - \log\sigma(s)
    + (d - 1)\log\frac{\rho(r)}{r},$$

    where $s = \operatorname{softplus}^{-1}(r)$ and $\sigma$ is the logistic
    function. Rays from $c$ map onto themselves, with the same direction. Any
    increasing bijection $g$ of the real line works (`Affine`, `SinhArcsinh`, a
    `Chain` or a `Scan` of stacked scalar layers); a decreasing $g$ (none in
    flowrox) would not. The inverse is closed form when $g$'s is. The centre maps
    to itself, with a finite log-det (the one at the smallest normal radius).

    A fresh layer is the identity when $g$ is (to rounding); the centre starts at
    the origin unless given, and is trainable.

    Args:
        scalar_bijection: $g$, an unconditional flowrox bijection of shape `()`.
        dim: the dimension $d$ of the event, of shape `(dim,)`.
        center: the centre $c$, shape `(dim,)` or a scalar (default zeros).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine
        >>> from flowrox.bijections import RayTransform
        >>> layer = RayTransform(Affine(0.5, 2.0), dim=2, center=jnp.array([1.0, 0.0]))
        >>> x = jnp.array([4.0, 4.0])  # 5 from the centre, direction (0.6, 0.8)
        >>> y = layer.transform(x)
        >>> direction = (y - layer.center) / jnp.linalg.norm(y - layer.center)
        >>> print(*[round(value, 4) for value in direction.tolist()])
        0.6 0.8
        >>> bool(jnp.allclose(layer.inverse(y), x))
        True
    """

    scalar_bijection: AbstractBijection
    center: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        scalar_bijection: AbstractBijection,
        *,
        dim: int,
        center: ArrayLike | None = None,
    ):
        _check_scalar_bijection("RayTransform", scalar_bijection)
        dim = vector_size("RayTransform", dim)
        self.scalar_bijection = scalar_bijection
        self.center = vector_parameter("RayTransform", "center", center, dim)
        self.shape = (dim,)

    def transform_and_log_det(self, x, condition=None):
        del condition
        offset = x - self.center

        def radius_map(radius):
            return _radius_forward(self.scalar_bijection, radius)

        offset, log_det = _along_rays(radius_map, offset, safe_norm(offset), x.size)
        return self.center + offset, log_det

    def inverse_and_log_det(self, y, condition=None):
        del condition
        offset = y - self.center

        def radius_map(radius):
            return _radius_inverse(self.scalar_bijection, radius)

        offset, log_det = _along_rays(radius_map, offset, safe_norm(offset), y.size)
        return self.center + offset, log_det


# ---------------------------------------------------------------------------
# RadialConditional
# ---------------------------------------------------------------------------


def angle_fourier_features(direction: ArrayLike, n_frequencies: int) -> jax.Array:
    r"""Fourier features of the angle of a 2-D direction.

    For $u = (\cos\theta, \sin\theta)$ returns
    $[\cos k\theta / k]_{k=1}^{K}$ followed by $[\sin k\theta / k]_{k=1}^{K}$
    ($2K$ features); dividing by $k$ makes the higher harmonics start smaller,
    a smoothness prior on functions of the angle. They are computed as the
    powers $(u_0 + i u_1)^k$, a polynomial in $u$, so the features and their
    gradients are finite everywhere (all zero at $u = 0$).

    Args:
        direction: a unit vector of shape `(2,)`.
        n_frequencies: $K \ge 1$.

    Returns:
        An array of shape `(2 * n_frequencies,)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import angle_fourier_features
        >>> features = angle_fourier_features(jnp.array([0.0, 1.0]), 2)
        >>> print(*[round(value, 4) for value in features.tolist()])
        0.0 -0.5 1.0 0.0
    """
    direction = jnp.asarray(direction)
    if direction.shape != (2,):
        raise ValueError(
            "angle_fourier_features expected a 2-D direction of shape (2,), got "
            f"shape {direction.shape}. Angle features exist in 2-D only; in other "
            "dimensions give the network the direction itself."
        )
    cos_1, sin_1 = direction[0], direction[1]
    cos_k, sin_k = cos_1, sin_1
    cosines, sines = [], []
    for k in range(1, int(n_frequencies) + 1):
        cosines.append(cos_k / k)
        sines.append(sin_k / k)
        cos_k, sin_k = cos_k * cos_1 - sin_k * sin_1, sin_k * cos_1 + cos_k * sin_1
    return jnp.stack(cosines + sines)


class RadialConditional(AbstractBijection):
    r"""A ray transform whose radius map depends on the direction.

    With centre $c$, per-dimension scale $s = e^{\text{log\_scale}}$, the scaled
    offset $z = (x - c)/s$, its radius $r = |z|$ and direction $u = z/r$,

    $$y = c + \rho_{\theta(u)}(r)\,\frac{x - c}{r},\qquad
    \theta(u) = \theta_0 + \text{network}(\phi(u)),$$

    where $\rho_\theta$ is the radius map of `RayTransform` built from the
    scalar bijection with parameters $\theta$. The `scalar_bijection` is a
    template: $\theta_0$ is the flat vector of its trainable leaves (inexact
    arrays that are not buffers), in `jax.flatten_util.ravel_pytree` order, and
    the network adds to it one value per entry.
    $\phi(u)$ is $u$ itself, or, in 2-D with `n_frequencies=K`,
    `angle_fourier_features(u, K)`. Use `RadialConditional.network_sizes` for the
    input and output sizes the network needs.

    The direction $u$ is unchanged by the map, so the inverse is closed form
    given $g^{-1}$: read $u$ off $y$, rebuild $\rho_{\theta(u)}$, invert the
    radius. In polar coordinates the Jacobian is triangular, and
    $\log|\det J| = \log\rho'_{\theta(u)}(r) + (d - 1)\log(\rho_{\theta(u)}(r)/r)$.

    With `zero_init=True` (the default) the weight and bias of the network's last
    `eqx.nn.Linear` are set to zero, so a fresh layer is exactly its template's
    `RayTransform` in the scaled coordinates $z$ (the identity if the template
    is). The network's array leaves
    are the field `network` (e.g. `layer.network.layers[0].weight`); its other
    parts (activation functions) are held as static data in `network_static`.

    Args:
        scalar_bijection: the template, an unconditional bijection of shape `()`.
        network: a callable module mapping $\phi(u)$ to a vector of the template's
            parameter count, e.g. an `eqx.nn.MLP`.
        dim: the dimension $d$ of the event, of shape `(dim,)`.
        center: the centre $c$ (default zeros).
        log_scale: $\log s$, shape `(dim,)` or a scalar (default zeros).
        n_frequencies: feed the network angle Fourier features (2-D only).
        zero_init: zero the network's last linear layer.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine, Scan, SinhArcsinh
        >>> from flowrox.bijections import RadialConditional, RayTransform
        >>> keys = jax.random.split(jax.random.key(0), 4)
        >>> template = Scan(
        ...     eqx.filter_vmap(lambda k: SinhArcsinh(jax.random.normal(k), 1.2))(keys)
        ... )
        >>> in_size, out_size = RadialConditional.network_sizes(
        ...     template, dim=2, n_frequencies=3
        ... )
        >>> in_size, out_size
        (6, 8)
        >>> network = eqx.nn.MLP(in_size, out_size, 16, 1, key=jax.random.key(1))
        >>> layer = RadialConditional(template, network, dim=2, n_frequencies=3)
        >>> x = jnp.array([0.3, -1.2])
        >>> y, log_det = layer.transform_and_log_det(x)
        >>> reference = RayTransform(template, dim=2)
        >>> y_reference, log_det_reference = reference.transform_and_log_det(x)
        >>> bool(jnp.allclose(y, y_reference)), bool(
        ...     jnp.allclose(log_det, log_det_reference)
        ... )
        (True, True)
        >>> bool(jnp.allclose(layer.inverse(y), x, atol=1e-5))
        True
    """

    scalar_bijection: AbstractBijection
    network: eqx.Module
    network_static: eqx.Module = eqx.field(static=True)
    center: jax.Array
    log_scale: jax.Array
    n_frequencies: int | None = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        scalar_bijection: AbstractBijection,
        network: Callable,
        *,
        dim: int,
        center: ArrayLike | None = None,
        log_scale: ArrayLike | None = None,
        n_frequencies: int | None = None,
        zero_init: bool = True,
    ):
        _check_scalar_bijection("RadialConditional", scalar_bijection)
        dim = vector_size("RadialConditional", dim)
        in_size, out_size = RadialConditional.network_sizes(
            scalar_bijection, dim=dim, n_frequencies=n_frequencies
        )
        check_network("RadialConditional", network, in_size, out_size)
        self.scalar_bijection = scalar_bijection
        if zero_init:
            network = zero_last_linear("RadialConditional", network)
        self.network, self.network_static = split_network(network)
        self.center = vector_parameter("RadialConditional", "center", center, dim)
        self.log_scale = vector_parameter(
            "RadialConditional", "log_scale", log_scale, dim
        )
        self.n_frequencies = None if n_frequencies is None else int(n_frequencies)
        self.shape = (dim,)

    @staticmethod
    def network_sizes(
        scalar_bijection: AbstractBijection,
        *,
        dim: int,
        n_frequencies: int | None = None,
    ) -> tuple[int, int]:
        """The `(in_size, out_size)` of the network for a template.

        Args:
            scalar_bijection: the template scalar bijection.
            dim: the event dimension.
            n_frequencies: the number of angle frequencies, or None.

        Returns:
            `in_size` (`dim`, or `2 * n_frequencies`) and `out_size` (the number
            of trainable entries of the template).
        """
        if n_frequencies is not None:
            if int(dim) != 2:
                raise ValueError(
                    "RadialConditional: n_frequencies (angle features) needs dim=2; "
                    f"got dim={dim}. Leave n_frequencies=None to feed the direction."
                )
            if int(n_frequencies) < 1:
                raise ValueError(
                    f"RadialConditional: n_frequencies must be >= 1; got "
                    f"{n_frequencies}."
                )
        in_size = int(dim) if n_frequencies is None else 2 * int(n_frequencies)
        return in_size, template_size(scalar_bijection)

    def _radius_bijection(self, direction: jax.Array) -> AbstractBijection:
        """The template with its parameters moved by the network at `direction`."""
        if self.n_frequencies is None:
            features = direction
        else:
            features = angle_fourier_features(direction, self.n_frequencies)
        network = eqx.combine(self.network, self.network_static)
        return moved_template(self.scalar_bijection, network(features))

    def _run(self, value, inverse: bool):
        offset = value - self.center
        scaled = offset * jnp.exp(-self.log_scale)
        radius = safe_norm(scaled)
        bijection = self._radius_bijection(_safe_direction(scaled, radius))
        radius_of = _radius_inverse if inverse else _radius_forward

        def radius_map(radius):
            return radius_of(bijection, radius)

        offset, log_det = _along_rays(radius_map, offset, radius, value.size)
        return self.center + offset, log_det

    def transform_and_log_det(self, x, condition=None):
        del condition
        return self._run(x, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        return self._run(y, inverse=True)
