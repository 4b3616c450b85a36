"""The bijection contract: `AbstractBijection`."""

import abc
import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jax.typing import ArrayLike
from numpyro.distributions import constraints

#: The sets of element values that flowrox's declared images name.
ELEMENT_SETS = (
    constraints.real,
    constraints.positive,
    constraints.nonnegative,
    constraints.unit_interval,
    constraints.open_interval(-1.0, 1.0),
)

#: `(domain, image)` pairs of a map that sends each of those sets onto itself
#: (one that moves elements around, as a permutation does).
SET_PRESERVING = tuple((element_set, element_set) for element_set in ELEMENT_SETS)

_CHECKED_METHODS = ("transform_and_log_det", "inverse_and_log_det")


def _as_inexact(value):
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        value = value.astype(jnp.result_type(float))
    return value


def _check_arguments(bijection, method_name: str, value, condition):
    """Validates one unbatched input and its condition against the declared shapes."""
    name = type(bijection).__name__
    argument = "x" if method_name == "transform_and_log_det" else "y"
    value = _as_inexact(value)
    if value.shape != tuple(bijection.shape):
        raise ValueError(
            f"{name}.{method_name} expected {argument} of shape {bijection.shape}, "
            f"got {value.shape}. Bijections act on one unbatched event; map over a "
            "batch with jax.vmap, or use flowrox.Flow, which does it for you."
        )
    if bijection.cond_shape is None:
        if condition is not None:
            raise ValueError(
                f"{name} is unconditional (cond_shape=None) but got a condition of "
                f"shape {jnp.shape(condition)}. Pass condition=None."
            )
        return value, None
    if condition is None:
        raise ValueError(
            f"{name} is conditional and expected a condition of shape "
            f"{bijection.cond_shape}, got None. Pass condition=... with that shape."
        )
    condition = _as_inexact(condition)
    if condition.shape != tuple(bijection.cond_shape):
        raise ValueError(
            f"{name}.{method_name} expected a condition of shape "
            f"{bijection.cond_shape}, got {condition.shape}."
        )
    return value, condition


def _with_checks(method):
    @functools.wraps(method)
    def checked(self, value, condition=None):
        value, condition = _check_arguments(self, method.__name__, value, condition)
        return method(self, value, condition)

    checked.__flowrox_checked__ = True
    return checked


class AbstractBijection(eqx.Module):
    r"""A differentiable bijection $y = f(x)$ of one unbatched event.

    Subclasses declare `shape` (the event shape of both $x$ and $y$) and
    `cond_shape` (the shape of the condition, or `None` for an unconditional
    bijection), and implement `transform_and_log_det` and `inverse_and_log_det`.
    Both return the output and the scalar $\log|\det \partial y / \partial x|$
    (for the inverse: $\log|\det \partial x / \partial y|$, i.e. minus the forward
    value at the matching point).

    Input shapes are checked here, once, for every subclass: a wrong event shape,
    a missing condition for a conditional bijection, or a condition given to an
    unconditional one raises `ValueError`. Integer inputs are promoted to the
    default float type. Batches go through `jax.vmap` (or `flowrox.Flow`).

    `known_images` declares which sets of element values the bijection maps
    onto which: by default the real arrays onto the real arrays, the common
    case; a bijection onto a smaller set says so (`Exp`: the reals onto the
    positive reals), and composites derive theirs from their layers. `Flow`
    reads its support from it with `image`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine
        >>> bijection = Affine(loc=jnp.ones(2), scale=2.0)
        >>> y, log_det = bijection.transform_and_log_det(jnp.zeros(2))
        >>> y.tolist(), round(float(log_det), 4)
        ([1.0, 1.0], 1.3863)
    """

    shape: AbstractVar[tuple[int, ...]]
    cond_shape: AbstractVar[tuple[int, ...] | None]
    #: `(domain, image)` pairs of NumPyro constraints of event dim 0: when
    #: every element of the input lies in `domain`, the outputs fill exactly
    #: the events whose elements lie in `image`.
    known_images: ClassVar[
        tuple[tuple[constraints.Constraint, constraints.Constraint], ...]
    ] = ((constraints.real, constraints.real),)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for method_name in _CHECKED_METHODS:
            method = cls.__dict__.get(method_name)
            if method is None or getattr(method, "__isabstractmethod__", False):
                continue
            if getattr(method, "__flowrox_checked__", False):
                continue
            setattr(cls, method_name, _with_checks(method))

    @abc.abstractmethod
    def transform_and_log_det(
        self, x: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Computes $y = f(x)$ and $\\log|\\det \\partial y/\\partial x|$.

        Args:
            x: one event, of shape `shape`.
            condition: the condition, of shape `cond_shape`; `None` (the only
                accepted value) for an unconditional bijection.

        Returns:
            `(y, log_det)`, `y` of shape `shape` and a scalar `log_det`.
        """

    @abc.abstractmethod
    def inverse_and_log_det(
        self, y: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Computes $x = f^{-1}(y)$ and $\\log|\\det \\partial x/\\partial y|$.

        Args:
            y: one event, of shape `shape`.
            condition: the condition, of shape `cond_shape`, or `None`.

        Returns:
            `(x, log_det)`, `x` of shape `shape` and a scalar `log_det`.
        """

    def image(self, domain: constraints.Constraint) -> constraints.Constraint | None:
        """The set the bijection maps `domain` onto, element by element.

        Args:
            domain: the set every element of the input lies in, a NumPyro
                constraint of event dim 0 (e.g. `constraints.real`).

        Returns:
            The set of the output's elements, or `None` when `known_images`
            does not say.

        Examples:
            >>> from numpyro.distributions import constraints
            >>> from flowrox.bijections import Chain, Exp, Scale
            >>> Chain([Exp(), Scale(2.0)]).image(constraints.real)
            Positive(lower_bound=0.0)
            >>> print(Exp().image(constraints.unit_interval))
            None
        """
        for known, image in self.known_images:
            # Both ways: NumPyro's `positive == nonnegative` holds, the reverse not.
            if known == domain and domain == known:
                return image
        return None

    def transform(self, x: ArrayLike, condition: ArrayLike | None = None) -> jax.Array:
        """Computes $y = f(x)$ (the log-det is computed and dropped by XLA)."""
        return self.transform_and_log_det(x, condition)[0]

    def inverse(self, y: ArrayLike, condition: ArrayLike | None = None) -> jax.Array:
        """Computes $x = f^{-1}(y)$."""
        return self.inverse_and_log_det(y, condition)[0]


def missing_inverse(bijection: AbstractBijection, direction: str = "inverse"):
    """Builds the `NotImplementedError` raised by a bijection without a closed form.

    Args:
        bijection: the bijection that lacks the direction.
        direction: `"inverse"` or `"transform"`.

    Returns:
        A `NotImplementedError` to raise; its message names the remedies.
    """
    name = type(bijection).__name__
    return NotImplementedError(
        f"{name} has no closed-form {direction}. Use the other direction where it "
        f"is needed (wrap the bijection in Invert({name}(...)) so that the fast "
        "direction is the one your Flow calls: log_prob uses the inverse, sample "
        "uses the transform), or choose a bijection with a closed-form "
        f"{direction}."
    )
