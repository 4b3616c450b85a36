"""Vector fields of continuous flows: `AbstractVectorField` and the exact trace."""

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jax.typing import ArrayLike


def jacobian_trace(
    function: Callable[[jax.Array], jax.Array], x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    r"""`function(x)` and the trace of its Jacobian at `x`, by autodiff.

    $\operatorname{tr} \partial f / \partial x = \sum_i (e_i^\top J)_i$ over
    the basis vectors $e_i$ of the event: one vector-Jacobian product per
    element, all in one `jax.vmap` over the one linearisation of `function`.
    For an event of $d$ elements it costs about $d$ backward passes; a field
    with structure can do better (see `AbstractVectorField.divergence`).
    Reverse mode measured faster here than forward-mode products, both for
    the value and for its gradient (see docs/continuous-flows.md).

    Args:
        function: maps an array of the shape of `x` to one of the same shape.
        x: the point, any shape.

    Returns:
        `(function(x), trace)`, the trace a scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import jacobian_trace
        >>> matrix = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        >>> value, trace = jacobian_trace(lambda x: matrix @ x, jnp.ones(2))
        >>> value.tolist(), float(trace)
        ([3.0, 7.0], 5.0)
    """
    size = math.prod(x.shape)
    basis = jnp.eye(size, dtype=x.dtype).reshape(size, *x.shape)
    value, pullback = jax.vjp(function, x)
    (rows,) = jax.vmap(pullback)(basis)
    return value, jnp.trace(rows.reshape(size, size))


class AbstractVectorField(eqx.Module):
    r"""A time-dependent vector field $v(t, x, c)$ for a continuous flow.

    The field maps one unbatched event $x$ of `shape` (and its condition $c$ of
    `cond_shape`, `None` for an unconditional field) at time $t$ to
    $\mathrm{d}x/\mathrm{d}t$, of the same shape as $x$. Subclasses declare
    `shape` and `cond_shape` and implement `__call__`.

    `divergence` is the exact divergence $\nabla \cdot v =
    \operatorname{tr} \partial v / \partial x$. Here it is computed by
    autodiff (`jacobian_trace`, one product per element); a field
    whose structure gives its divergence in one pass (a convolution whose
    diagonal is its centre weight, an autoregressive network) overrides it,
    and `ContinuousFlow(..., divergence="field")` uses it, through
    `velocity_and_divergence` (which such a field may override too, to share
    the work of the two).

    Examples:
        >>> import equinox as eqx
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import AbstractVectorField
        >>> class Rotation(AbstractVectorField):
        ...     shape: tuple = eqx.field(static=True, default=(2,))
        ...     cond_shape: None = eqx.field(static=True, default=None)
        ...     def __call__(self, t, x, condition=None):
        ...         return jnp.array([-x[1], x[0]])
        >>> field = Rotation()
        >>> field(0.0, jnp.array([2.0, 1.0])).tolist()
        [-1.0, 2.0]
        >>> float(field.divergence(0.0, jnp.array([2.0, 1.0])))  # area preserving
        0.0
    """

    shape: AbstractVar[tuple[int, ...]]
    cond_shape: AbstractVar[tuple[int, ...] | None]

    @abc.abstractmethod
    def __call__(
        self, t: ArrayLike, x: jax.Array, condition: jax.Array | None = None
    ) -> jax.Array:
        """The velocity $\\mathrm{d}x/\\mathrm{d}t$ at time `t`.

        Args:
            t: the time, a scalar.
            x: one event, of shape `shape`.
            condition: the condition, of shape `cond_shape`, or `None`.

        Returns:
            The velocity, of shape `shape`.
        """

    def divergence(
        self, t: ArrayLike, x: jax.Array, condition: jax.Array | None = None
    ) -> jax.Array:
        """The exact divergence of the field at `(t, x)`, a scalar.

        Computed by autodiff here (`jacobian_trace`); a field with a cheaper
        exact formula overrides this method.
        """
        return jacobian_trace(lambda value: self(t, value, condition), x)[1]

    def velocity_and_divergence(
        self, t: ArrayLike, x: jax.Array, condition: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """The velocity and the exact divergence at `(t, x)` together.

        What `ContinuousFlow(..., divergence="field")` calls at every stage.
        Here it calls `__call__` and `divergence`; a field whose two share
        work (the features of a lattice field) overrides it to compute both in
        one pass.
        """
        return self(t, x, condition), self.divergence(t, x, condition)
