"""Volume-preserving rearrangements: `Permute`, `Reverse`, and the `Reshape` wrapper."""

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._base import SET_PRESERVING, AbstractBijection


class Permute(AbstractBijection):
    """Reorders the elements of the event: `y.ravel() = x.ravel()[permutation.ravel()]`.

    The permutation is an integer array of the event shape holding each of
    `0, ..., size - 1` once (for a vector event, simply `y = x[permutation]`).
    It is an integer leaf, so it is never trained. The log-det is zero.

    Args:
        permutation: integer array of the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Permute
        >>> permute = Permute(jnp.array([2, 0, 1]))
        >>> permute.transform(jnp.array([10.0, 20.0, 30.0])).tolist()
        [30.0, 10.0, 20.0]
    """

    permutation: jax.Array
    inverse_permutation: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None
    known_images: ClassVar = SET_PRESERVING

    def __init__(self, permutation: ArrayLike):
        permutation = jnp.asarray(permutation)
        if not jnp.issubdtype(permutation.dtype, jnp.integer):
            raise TypeError(
                f"Permute expected an integer permutation array; got dtype "
                f"{permutation.dtype}. Pass e.g. jax.random.permutation(key, n)."
            )
        if not isinstance(permutation, jax.core.Tracer):
            flat = np.sort(np.asarray(permutation).ravel())
            if not np.array_equal(flat, np.arange(flat.size)):
                raise ValueError(
                    "Permute expected each of 0, ..., size - 1 exactly once; got "
                    f"{np.asarray(permutation).tolist()}."
                )
        self.shape = tuple(permutation.shape)
        self.permutation = permutation
        self.inverse_permutation = jnp.argsort(permutation.ravel()).reshape(self.shape)

    def _apply(self, value, indices):
        return value.ravel()[indices.ravel()].reshape(self.shape)

    def transform_and_log_det(self, x, condition=None):
        del condition
        return self._apply(x, self.permutation), jnp.zeros((), x.dtype)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        return self._apply(y, self.inverse_permutation), jnp.zeros((), y.dtype)


class Reverse(AbstractBijection):
    """Reverses the order of the event's elements (flips every axis).

    For a vector it reverses the vector; for an array it reverses the flattened
    order. It is its own inverse, with zero log-det; between coupling layers it
    swaps which half is transformed.

    Args:
        shape: the event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Reverse
        >>> Reverse((3,)).transform(jnp.array([1.0, 2.0, 3.0])).tolist()
        [3.0, 2.0, 1.0]
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None
    known_images: ClassVar = SET_PRESERVING

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = tuple(int(n) for n in shape)

    def transform_and_log_det(self, x, condition=None):
        del condition
        return jnp.flip(x), jnp.zeros((), x.dtype)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        return jnp.flip(y), jnp.zeros((), y.dtype)


class Reshape(AbstractBijection):
    """Lets a bijection act on an event of another shape with the same size.

    The event (and, if `cond_shape` is given, the condition) is reshaped to what
    the wrapped bijection expects, transformed, and reshaped back. For example, a
    vector-valued flow acts on an `(L, L)` lattice through `Reshape(flow, (L, L))`.

    Args:
        bijection: the wrapped bijection.
        shape: the outer event shape; its size must equal the bijection's.
        cond_shape: the outer condition shape (default: the bijection's own);
            its size must equal the bijection's `cond_shape` size.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Permute, Reshape
        >>> bijection = Reshape(Permute(jnp.array([3, 2, 1, 0])), (2, 2))
        >>> bijection.transform(jnp.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
        [[4.0, 3.0], [2.0, 1.0]]
    """

    bijection: AbstractBijection
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        bijection: AbstractBijection,
        shape: Sequence[int],
        *,
        cond_shape: Sequence[int] | None = None,
    ):
        shape = tuple(int(n) for n in shape)
        if math.prod(shape) != math.prod(bijection.shape):
            raise ValueError(
                f"Reshape: the event shape {shape} has {math.prod(shape)} elements but "
                f"the bijection's shape {tuple(bijection.shape)} has "
                f"{math.prod(bijection.shape)}; they must match."
            )
        if cond_shape is None:
            cond_shape = bijection.cond_shape
        else:
            cond_shape = tuple(int(n) for n in cond_shape)
            inner = bijection.cond_shape
            if inner is None or math.prod(cond_shape) != math.prod(inner):
                raise ValueError(
                    f"Reshape: cond_shape {cond_shape} must have as many elements as "
                    f"the bijection's cond_shape {inner}."
                )
        self.bijection = bijection
        self.shape = shape
        self.cond_shape = cond_shape

    @property
    def known_images(self) -> tuple:
        # Sets of element values do not change when the event is reshaped.
        return self.bijection.known_images

    def _run(self, value, condition, inverse: bool):
        inner = self.bijection
        if condition is not None:
            condition = condition.reshape(inner.cond_shape)
        value = value.reshape(inner.shape)
        if inverse:
            value, log_det = inner.inverse_and_log_det(value, condition)
        else:
            value, log_det = inner.transform_and_log_det(value, condition)
        return value.reshape(self.shape), log_det

    def transform_and_log_det(self, x, condition=None):
        return self._run(x, condition, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        return self._run(y, condition, inverse=True)
