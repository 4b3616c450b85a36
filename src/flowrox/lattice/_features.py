r"""Site-wise features of a lattice field, for the vector field `ConvVF`.

A feature map sends a field of shape `(..., C)` (channels last) to
`(..., C, K)`: $K$ features of every channel at every site, feature
$(c, k)$ a function $f_k$ of $\phi_c$ at the same site only. That locality is
what makes the divergence of `ConvVF` cheap: the Jacobian of the features is
diagonal, and `value_and_derivative` gets every $f_k'(\phi_c)$ in one
forward-mode pass.
"""

import abc
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jax.typing import ArrayLike

from .._numerics import as_float_array

# Cephes' single-precision constants: pi/2 in three parts (for a Cody-Waite
# range reduction) and the minimax polynomials of sin and cos on [-pi/4, pi/4].
_PI_2_PARTS = (1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8)
_SIN_COEFFICIENTS = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS_COEFFICIENTS = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)


def _sin_cos_float32(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """sin and cos of a float32 array from one range reduction.

    Elementwise multiplies and adds that XLA fuses into one loop: on CPU about
    eight times faster than `jnp.sin` and `jnp.cos`, within 1.2e-7 of them for
    |x| <= 1e6 (beyond, a float32 x is coarser than the period's resolution;
    the values stay in [-1, 1]).
    """
    quadrant = jnp.round(x * np.float32(2 / np.pi))
    # The first two parts of pi/2 have 8 and 11 significant bits; split the
    # quadrant into parts of at most 12 so that every product is exact.
    high = jnp.round(quadrant * 2.0**-12) * 2.0**12
    low = quadrant - high
    r = x
    for part in _PI_2_PARTS:
        r = r - high * np.float32(part)
        r = r - low * np.float32(part)
    # Bounds r (and so the polynomials) where |x| is too large to reduce.
    r = jnp.clip(r, -1.0, 1.0)
    z = r * r
    a, b, c = _SIN_COEFFICIENTS
    sin = ((a * z + b) * z + c) * z * r + r
    a, b, c = _COS_COEFFICIENTS
    cos = ((a * z + b) * z + c) * z * z - 0.5 * z + 1.0
    n = quadrant - 4.0 * jnp.floor(quadrant / 4.0)  # 0, 1, 2 or 3
    odd = (n == 1.0) | (n == 3.0)
    sin, cos = jnp.where(odd, cos, sin), jnp.where(odd, sin, cos)
    sin = jnp.where(n >= 2.0, -sin, sin)
    cos = jnp.where((n == 1.0) | (n == 2.0), -cos, cos)
    return sin, cos


@jax.custom_jvp
def _sin_cos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(sin x, cos x)`, fast in float32 (`_sin_cos_float32`), `jnp`'s otherwise.

    The derivatives are written with the two values themselves, so
    differentiating a feature and its slope evaluates no new sine or cosine.
    """
    if x.dtype == jnp.float32:
        return _sin_cos_float32(x)
    return jnp.sin(x), jnp.cos(x)


@_sin_cos.defjvp
def _sin_cos_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    sin, cos = _sin_cos(x)
    return (sin, cos), (cos * dx, -sin * dx)


def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int; got {value!r}.")
    return value


def _powers(owner: str, powers) -> tuple[int, ...]:
    try:
        powers = tuple(powers)
    except TypeError:
        raise ValueError(
            f"{owner}: powers must be a sequence of non-negative ints, such as "
            f"(1,) or (1, 3); got {powers!r}."
        ) from None
    if not powers or any(
        isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in powers
    ):
        raise ValueError(
            f"{owner}: powers must be a non-empty sequence of non-negative ints, "
            f"such as (1,) or (1, 3); got {powers!r}."
        )
    return powers


def _positive_float(owner: str, name: str, value) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be positive; got {value}.")
    return value


class AbstractSiteFeatures(eqx.Module):
    r"""$K$ features $f_k(\phi_c)$ of every channel $c$ at every site.

    Subclasses declare `input_channels` ($C$), `count` ($K$) and `odd`
    (whether every $f_k$ is odd, $f_k(-\phi) = -f_k(\phi)$), and implement
    `features`, which must compute feature $(c, k)$ from channel $c$ of the
    same site alone: that is the contract `value_and_derivative` relies on.
    """

    input_channels: AbstractVar[int]
    count: AbstractVar[int]

    @property
    @abc.abstractmethod
    def odd(self) -> bool:
        """Whether every feature is an odd function of the field."""

    @abc.abstractmethod
    def features(self, phi: jax.Array) -> jax.Array:
        """The features of `phi` (shape `(..., C)`): shape `(..., C, K)`."""

    @property
    def size(self) -> int:
        """$C K$, the number of features at a site."""
        return self.input_channels * self.count

    def _checked(self, phi: ArrayLike) -> jax.Array:
        phi = as_float_array(phi)
        if phi.ndim < 1 or phi.shape[-1] != self.input_channels:
            raise ValueError(
                f"{type(self).__name__}: expected a field with {self.input_channels} "
                f"channel(s) on its last axis, shape (..., {self.input_channels}); "
                f"got {phi.shape}. Add a channel axis to a scalar field "
                "(phi[..., None])."
            )
        return phi

    def __call__(self, phi: ArrayLike) -> jax.Array:
        """The features of a field of shape `(..., C)`: shape `(..., C, K)`."""
        return self.features(self._checked(phi))

    def value_and_derivative(self, phi: ArrayLike) -> tuple[jax.Array, jax.Array]:
        r"""The features and their derivatives $f_k'(\phi_c)$, both `(..., C, K)`.

        Every feature depends on one element of `phi`, so the product of the
        Jacobian with a tangent of ones is exactly the elementwise derivative:
        one forward-mode pass.
        """
        phi = self._checked(phi)
        return jax.jvp(self.features, (phi,), (jnp.ones_like(phi),))


class FourierFeatures(AbstractSiteFeatures):
    r"""$\sin(\omega_{ck}\,\phi_c)$ with learnable frequencies $\omega$.

    Odd in $\phi$. The frequencies start uniform in $[0,$ `max_frequency`$)$.

    Args:
        count: $K$, the number of frequencies per channel.
        input_channels: $C$, the channels of the field.
        key: the key for the initial frequencies.
        max_frequency: the upper end of their initial range.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import FourierFeatures
        >>> features = FourierFeatures(4, key=jax.random.key(0))
        >>> features(jnp.zeros((3, 3, 1))).shape  # (lattice, channels, count)
        (3, 3, 1, 4)
        >>> value, slope = features.value_and_derivative(jnp.zeros((1,)))
        >>> bool(jnp.allclose(slope, features.frequency))  # d/dphi sin at 0
        True
    """

    frequency: jax.Array
    input_channels: int = eqx.field(static=True)
    count: int = eqx.field(static=True)

    def __init__(
        self,
        count: int,
        input_channels: int = 1,
        *,
        key: jax.Array,
        max_frequency: float = 5.0,
    ):
        owner = "FourierFeatures"
        self.count = _positive_int(owner, "count", count)
        self.input_channels = _positive_int(owner, "input_channels", input_channels)
        max_frequency = _positive_float(owner, "max_frequency", max_frequency)
        self.frequency = jax.random.uniform(
            key, (self.input_channels, self.count), maxval=max_frequency
        )

    @property
    def odd(self) -> bool:
        return True

    def features(self, phi):
        return _sin_cos(phi[..., None] * self.frequency.astype(phi.dtype))[0]


class PolynomialFeatures(AbstractSiteFeatures):
    r"""$\phi_c^{p}$ for each of the given powers $p$: no parameters.

    Odd when every power is odd. Powers above 1 make the vector field grow
    faster than linearly in $\phi$ (not Lipschitz), which can make the ODE
    stiff; `DampedPolynomialFeatures` keeps them bounded.

    Args:
        powers: the non-negative integer powers, e.g. `(1,)` or `(1, 3)`.
        input_channels: $C$, the channels of the field.
        key: unused (there is nothing random), accepted so that every feature
            map is built the same way.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import PolynomialFeatures
        >>> PolynomialFeatures((1, 2))(jnp.array([[3.0]])).tolist()
        [[[3.0, 9.0]]]
    """

    powers: tuple[int, ...] = eqx.field(static=True)
    input_channels: int = eqx.field(static=True)
    count: int = eqx.field(static=True)

    def __init__(
        self,
        powers: Sequence[int],
        input_channels: int = 1,
        *,
        key: jax.Array | None = None,
    ):
        del key
        owner = "PolynomialFeatures"
        self.powers = _powers(owner, powers)
        self.input_channels = _positive_int(owner, "input_channels", input_channels)
        self.count = len(self.powers)

    @property
    def odd(self) -> bool:
        return all(p % 2 == 1 for p in self.powers)

    def features(self, phi):
        return jnp.stack([phi**p for p in self.powers], axis=-1)


class DampedFourierFeatures(AbstractSiteFeatures):
    r"""$\sin(\omega_{ck}\phi_c)\,e^{-\phi_c^2 / 2\ell_c^2}$: Fourier features
    under a Gaussian envelope with a learnable width $\ell_c$ per channel.

    Near $\phi = 0$ these are `FourierFeatures` (same slope $\omega$); far out
    the envelope switches the field off, so it stops repeating periodically.
    Odd in $\phi$. $\ell$ is stored as its logarithm and starts at
    `decay_length` (20 by default: flat over the usual range of $\phi$).

    Args:
        count: $K$, the number of frequencies per channel.
        input_channels: $C$, the channels of the field.
        key: the key for the initial frequencies.
        max_frequency: the upper end of their initial range.
        decay_length: the initial $\ell$.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import DampedFourierFeatures
        >>> features = DampedFourierFeatures(3, key=jax.random.key(0), decay_length=1.0)
        >>> float(jnp.abs(features(jnp.array([10.0]))).max()) < 1e-20
        True
    """

    frequency: jax.Array
    log_decay_length: jax.Array
    input_channels: int = eqx.field(static=True)
    count: int = eqx.field(static=True)

    def __init__(
        self,
        count: int,
        input_channels: int = 1,
        *,
        key: jax.Array,
        max_frequency: float = 5.0,
        decay_length: float = 20.0,
    ):
        owner = "DampedFourierFeatures"
        self.count = _positive_int(owner, "count", count)
        self.input_channels = _positive_int(owner, "input_channels", input_channels)
        max_frequency = _positive_float(owner, "max_frequency", max_frequency)
        decay_length = _positive_float(owner, "decay_length", decay_length)
        self.frequency = jax.random.uniform(
            key, (self.input_channels, self.count), maxval=max_frequency
        )
        self.log_decay_length = jnp.full((self.input_channels,), jnp.log(decay_length))

    @property
    def odd(self) -> bool:
        return True

    def features(self, phi):
        scaled = phi * jnp.exp(-self.log_decay_length.astype(phi.dtype))
        envelope = jnp.exp(-0.5 * scaled**2)
        angle = phi[..., None] * self.frequency.astype(phi.dtype)
        return _sin_cos(angle)[0] * envelope[..., None]


class DampedPolynomialFeatures(AbstractSiteFeatures):
    r"""$\phi_c^{p}\,e^{-\phi_c^2 / 2\ell_c^2}$: monomials under a Gaussian
    envelope with a learnable width $\ell_c$ per channel.

    Bounded for every power, so the vector field stays Lipschitz; odd when
    every power is odd. $\ell$ is stored as its logarithm and starts at
    `decay_length`.

    Args:
        powers: the non-negative integer powers.
        input_channels: $C$, the channels of the field.
        key: unused, accepted so that every feature map is built the same way.
        decay_length: the initial $\ell$.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import DampedPolynomialFeatures
        >>> features = DampedPolynomialFeatures((1, 3), decay_length=1.0)
        >>> [round(v, 4) for v in features(jnp.array([1.0]))[0].tolist()]
        [0.6065, 0.6065]
    """

    log_decay_length: jax.Array
    powers: tuple[int, ...] = eqx.field(static=True)
    input_channels: int = eqx.field(static=True)
    count: int = eqx.field(static=True)

    def __init__(
        self,
        powers: Sequence[int],
        input_channels: int = 1,
        *,
        key: jax.Array | None = None,
        decay_length: float = 20.0,
    ):
        del key
        owner = "DampedPolynomialFeatures"
        self.powers = _powers(owner, powers)
        self.input_channels = _positive_int(owner, "input_channels", input_channels)
        self.count = len(self.powers)
        decay_length = _positive_float(owner, "decay_length", decay_length)
        self.log_decay_length = jnp.full((self.input_channels,), jnp.log(decay_length))

    @property
    def odd(self) -> bool:
        return all(p % 2 == 1 for p in self.powers)

    def features(self, phi):
        scaled = phi * jnp.exp(-self.log_decay_length.astype(phi.dtype))
        envelope = jnp.exp(-0.5 * scaled**2)[..., None]
        return jnp.stack([phi**p for p in self.powers], axis=-1) * envelope
