"""Elementwise bijections: each output element depends on one input element."""

import abc
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from .._numerics import as_float_array, log_cosh
from ._base import SET_PRESERVING, AbstractBijection
from ._parameters import (
    check_domain,
    event_shape_of,
    log_of_positive,
)


def _static_shape(shape) -> tuple[int, ...]:
    return tuple(int(n) for n in shape)


class AbstractElementwise(AbstractBijection):
    """A bijection acting independently on every element of the event.

    Subclasses implement `forward_elementwise` and `inverse_elementwise`, which
    return the output and the log-derivative of every element; the scalar log-det
    of the contract is their sum.
    """

    cond_shape: ClassVar[None] = None

    @abc.abstractmethod
    def forward_elementwise(self, x) -> tuple[jax.Array, jax.Array]:
        """Returns `(y, log|dy/dx|)`, both of the shape of `x`."""

    @abc.abstractmethod
    def inverse_elementwise(self, y) -> tuple[jax.Array, jax.Array]:
        """Returns `(x, log|dx/dy|)`, both of the shape of `y`."""

    def transform_and_log_det(self, x, condition=None):
        del condition
        y, log_derivative = self.forward_elementwise(x)
        return y, jnp.sum(log_derivative)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        x, log_derivative = self.inverse_elementwise(y)
        return x, jnp.sum(log_derivative)


class Affine(AbstractElementwise):
    r"""$y = \mathrm{loc} + \mathrm{scale} \cdot x$, elementwise, with scale > 0.

    The scale is stored as `log_scale`, so any real value is a valid parameter
    and the default (`loc=0`, `scale=1`) is exactly the identity. Parameters
    broadcast to the event shape, which defaults to their broadcast shape; every
    element gets its own trainable entry.

    Args:
        loc: the shift.
        scale: the positive scale.
        shape: the event shape (default: the broadcast shape of loc and scale).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine
        >>> Affine(1.0, 2.0, shape=(3,)).transform(jnp.arange(3.0)).tolist()
        [1.0, 3.0, 5.0]
    """

    loc: jax.Array
    log_scale: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        shape: Sequence[int] | None = None,
    ):
        loc, scale = as_float_array(loc), as_float_array(scale)
        self.shape = event_shape_of("Affine", shape, loc, scale)
        self.loc = jnp.broadcast_to(loc, self.shape)
        self.log_scale = jnp.broadcast_to(
            log_of_positive("Affine", "scale", scale), self.shape
        )

    @property
    def scale(self) -> jax.Array:
        return jnp.exp(self.log_scale)

    def forward_elementwise(self, x):
        return self.loc + self.scale * x, jnp.broadcast_to(self.log_scale, x.shape)

    def inverse_elementwise(self, y):
        x = (y - self.loc) * jnp.exp(-self.log_scale)
        return x, jnp.broadcast_to(-self.log_scale, y.shape)


class Shift(AbstractElementwise):
    """$y = x + \\mathrm{shift}$, elementwise (volume preserving).

    Args:
        shift: the shift; broadcasts to the event shape.
        shape: the event shape (default: the shape of shift).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Shift
        >>> Shift(jnp.array([1.0, -1.0])).transform(jnp.zeros(2)).tolist()
        [1.0, -1.0]
    """

    shift: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shift: ArrayLike = 0.0, *, shape: Sequence[int] | None = None):
        shift = as_float_array(shift)
        self.shape = event_shape_of("Shift", shape, shift)
        self.shift = jnp.broadcast_to(shift, self.shape)

    def forward_elementwise(self, x):
        return x + self.shift, jnp.zeros_like(x)

    def inverse_elementwise(self, y):
        return y - self.shift, jnp.zeros_like(y)


class Scale(AbstractElementwise):
    """$y = \\mathrm{scale} \\cdot x$, elementwise, with scale > 0 (stored as log).

    Args:
        scale: the positive scale; broadcasts to the event shape.
        shape: the event shape (default: the shape of scale).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Scale
        >>> float(Scale(2.0, shape=(3,)).transform_and_log_det(jnp.ones(3))[1])
        2.079441...
    """

    known_images: ClassVar = (
        (constraints.real, constraints.real),
        (constraints.positive, constraints.positive),
        (constraints.nonnegative, constraints.nonnegative),
    )
    log_scale: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, scale: ArrayLike = 1.0, *, shape: Sequence[int] | None = None):
        scale = as_float_array(scale)
        self.shape = event_shape_of("Scale", shape, scale)
        self.log_scale = jnp.broadcast_to(
            log_of_positive("Scale", "scale", scale), self.shape
        )

    @property
    def scale(self) -> jax.Array:
        return jnp.exp(self.log_scale)

    def forward_elementwise(self, x):
        return self.scale * x, jnp.broadcast_to(self.log_scale, x.shape)

    def inverse_elementwise(self, y):
        return y * jnp.exp(-self.log_scale), jnp.broadcast_to(-self.log_scale, y.shape)


class Exp(AbstractElementwise):
    """$y = e^x$, mapping the reals onto the positive reals.

    A `Flow` over it has support `constraints.positive`, so NUTS samples it
    through NumPyro's transform of the positive reals.

    Args:
        shape: the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Exp
        >>> Exp((2,)).inverse(jnp.array([1.0, 1.0])).tolist()
        [0.0, 0.0]
    """

    known_images: ClassVar = ((constraints.real, constraints.positive),)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = _static_shape(shape)

    def forward_elementwise(self, x):
        return jnp.exp(x), x

    def inverse_elementwise(self, y):
        y = check_domain(y, y < 0, "Exp.inverse", "y > 0")
        x = jnp.log(y)
        return x, -x


class SoftPlus(AbstractElementwise):
    """$y = \\log(1 + e^x)$, mapping the reals onto the positive reals.

    Args:
        shape: the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import SoftPlus
        >>> round(float(SoftPlus().transform(jnp.array(0.0))), 6)
        0.693147
    """

    known_images: ClassVar = ((constraints.real, constraints.positive),)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = _static_shape(shape)

    def forward_elementwise(self, x):
        # dy/dx = sigmoid(x), so log dy/dx = -softplus(-x).
        return jax.nn.softplus(x), -jax.nn.softplus(-x)

    def inverse_elementwise(self, y):
        y = check_domain(y, y < 0, "SoftPlus.inverse", "y > 0")
        x = y + jnp.log(-jnp.expm1(-y))
        return x, jax.nn.softplus(-x)


class Sigmoid(AbstractElementwise):
    """$y = 1 / (1 + e^{-x})$, mapping the reals onto (0, 1).

    Args:
        shape: the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Sigmoid
        >>> float(Sigmoid().transform(jnp.array(0.0)))
        0.5
    """

    known_images: ClassVar = ((constraints.real, constraints.unit_interval),)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = _static_shape(shape)

    def forward_elementwise(self, x):
        return jax.nn.sigmoid(x), -jax.nn.softplus(-x) - jax.nn.softplus(x)

    def inverse_elementwise(self, y):
        y = check_domain(y, (y < 0) | (y > 1), "Sigmoid.inverse", "0 < y < 1")
        x = jnp.log(y) - jnp.log1p(-y)
        return x, jax.nn.softplus(-x) + jax.nn.softplus(x)


class Tanh(AbstractElementwise):
    """$y = \\tanh x$, mapping the reals onto (-1, 1).

    The log-derivative
    $\\log(1 - \\tanh^2 x) = 2(\\log 2 - x - \\mathrm{softplus}(-2x))$
    is computed from $x$, so it stays finite where $\\tanh x$ rounds to ±1.

    Args:
        shape: the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Tanh
        >>> float(Tanh().transform_and_log_det(jnp.array(0.0))[1])
        0.0
    """

    known_images: ClassVar = ((constraints.real, constraints.open_interval(-1.0, 1.0)),)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = _static_shape(shape)

    def _log_derivative(self, x):
        return 2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x))

    def forward_elementwise(self, x):
        return jnp.tanh(x), self._log_derivative(x)

    def inverse_elementwise(self, y):
        y = check_domain(y, jnp.abs(y) > 1, "Tanh.inverse", "-1 < y < 1")
        x = jnp.arctanh(y)
        return x, -self._log_derivative(x)


class Power(AbstractElementwise):
    """$y = x^p$ on $x \\ge 0$, with exponent $p > 0$ (stored as $\\log p$).

    Inputs below zero raise a run-time error (also under `jit`).

    Args:
        exponent: the positive exponent; broadcasts to the event shape.
        shape: the event shape (default: the shape of exponent).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Power
        >>> Power(2.0, shape=(2,)).transform(jnp.array([2.0, 3.0])).tolist()
        [4.0, 9.0]
    """

    known_images: ClassVar = (
        (constraints.positive, constraints.positive),
        (constraints.nonnegative, constraints.nonnegative),
        (constraints.unit_interval, constraints.unit_interval),
    )
    log_exponent: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self, exponent: ArrayLike = 1.0, *, shape: Sequence[int] | None = None
    ):
        exponent = as_float_array(exponent)
        self.shape = event_shape_of("Power", shape, exponent)
        self.log_exponent = jnp.broadcast_to(
            log_of_positive("Power", "exponent", exponent), self.shape
        )

    @property
    def exponent(self) -> jax.Array:
        return jnp.exp(self.log_exponent)

    def forward_elementwise(self, x):
        x = check_domain(x, x < 0, "Power.transform", "x >= 0")
        exponent = self.exponent
        y = x**exponent
        return y, self.log_exponent + (exponent - 1.0) * jnp.log(x)

    def inverse_elementwise(self, y):
        y = check_domain(y, y < 0, "Power.inverse", "y >= 0")
        exponent = self.exponent
        x = y ** (1.0 / exponent)
        return x, -self.log_exponent - (exponent - 1.0) * jnp.log(x)


class SinhArcsinh(AbstractElementwise):
    r"""$y = \sinh\big(\tau(\operatorname{arcsinh} x + \epsilon)\big)$, elementwise.

    Jones & Pewsey's sinh-arcsinh map: the skewness $\epsilon$ shifts mass to one
    side and the tail weight $\tau > 0$ (stored as $\log\tau$) thins ($\tau > 1$)
    or fattens ($\tau < 1$) the tails. The default (0, 1) is the identity.

    Args:
        skewness: $\epsilon$, any real; broadcasts to the event shape.
        tailweight: $\tau > 0$; broadcasts to the event shape.
        shape: the event shape (default: the broadcast shape of the parameters).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import SinhArcsinh
        >>> bijection = SinhArcsinh(skewness=0.5, tailweight=2.0)
        >>> x = jnp.array(0.3)
        >>> bool(jnp.allclose(bijection.inverse(bijection.transform(x)), x))
        True
    """

    skewness: jax.Array
    log_tailweight: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        skewness: ArrayLike = 0.0,
        tailweight: ArrayLike = 1.0,
        *,
        shape: Sequence[int] | None = None,
    ):
        skewness, tailweight = as_float_array(skewness), as_float_array(tailweight)
        self.shape = event_shape_of("SinhArcsinh", shape, skewness, tailweight)
        self.skewness = jnp.broadcast_to(skewness, self.shape)
        self.log_tailweight = jnp.broadcast_to(
            log_of_positive("SinhArcsinh", "tailweight", tailweight), self.shape
        )

    @property
    def tailweight(self) -> jax.Array:
        return jnp.exp(self.log_tailweight)

    def _log_derivative(self, x, z):
        # dy/dx = tau cosh(z) / sqrt(1 + x^2), z = tau (arcsinh x + eps).
        return self.log_tailweight + log_cosh(z) - 0.5 * jnp.log1p(x**2)

    def forward_elementwise(self, x):
        z = self.tailweight * (jnp.arcsinh(x) + self.skewness)
        return jnp.sinh(z), self._log_derivative(x, z)

    def inverse_elementwise(self, y):
        z = jnp.arcsinh(y)
        x = jnp.sinh(z / self.tailweight - self.skewness)
        return x, -self._log_derivative(x, z)


class Identity(AbstractElementwise):
    """$y = x$.

    Args:
        shape: the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Identity
        >>> Identity((2,)).transform_and_log_det(jnp.ones(2))[1].item()
        0.0
    """

    known_images: ClassVar = SET_PRESERVING
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = _static_shape(shape)

    def forward_elementwise(self, x):
        return x, jnp.zeros_like(x)

    def inverse_elementwise(self, y):
        return y, jnp.zeros_like(y)
