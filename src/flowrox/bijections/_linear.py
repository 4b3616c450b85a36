"""Trainable linear bijections, each the identity at initialisation."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._numerics import as_float_array, vector_parameter, vector_size
from ._base import AbstractBijection


def _matrix(owner: str, name: str, value, dim: int, default) -> jax.Array:
    value = default if value is None else as_float_array(value)
    if value.shape != (dim, dim):
        raise ValueError(
            f"{owner} expected {name} of shape ({dim}, {dim}), got {value.shape}."
        )
    return value


class TriangularAffine(AbstractBijection):
    r"""$y = L x + b$ with $L$ triangular and a positive diagonal.

    $L$ is stored as `off_diagonal` (only the strictly lower, or upper, part is
    used) and `log_diagonal`, so any real values are valid and the defaults
    (zeros) give the identity. $\log|\det L| = \sum_i$ `log_diagonal`$_i$; the
    inverse is a triangular solve.

    Args:
        dim: the event dimension.
        loc: the shift $b$ (default zeros).
        off_diagonal: a `(dim, dim)` matrix whose strict triangle is used.
        log_diagonal: the log of the diagonal (default zeros).
        lower: lower (True) or upper triangular.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import TriangularAffine
        >>> strict_lower = jnp.array([[0.0, 0.0], [2.0, 0.0]])
        >>> layer = TriangularAffine(2, off_diagonal=strict_lower)
        >>> layer.transform(jnp.array([1.0, 1.0])).tolist()
        [1.0, 3.0]
    """

    loc: jax.Array
    off_diagonal: jax.Array
    log_diagonal: jax.Array
    lower: bool = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        dim: int,
        *,
        loc: ArrayLike | None = None,
        off_diagonal: ArrayLike | None = None,
        log_diagonal: ArrayLike | None = None,
        lower: bool = True,
    ):
        owner = "TriangularAffine"
        self.shape = (vector_size(owner, dim),)
        dim = self.shape[0]
        self.loc = vector_parameter(owner, "loc", loc, dim)
        self.off_diagonal = _matrix(
            owner, "off_diagonal", off_diagonal, dim, jnp.zeros((dim, dim))
        )
        self.log_diagonal = vector_parameter(owner, "log_diagonal", log_diagonal, dim)
        self.lower = bool(lower)

    @property
    def matrix(self) -> jax.Array:
        """The triangular matrix $L$."""
        strict = (
            jnp.tril(self.off_diagonal, -1)
            if self.lower
            else jnp.triu(self.off_diagonal, 1)
        )
        return strict + jnp.diag(jnp.exp(self.log_diagonal))

    def transform_and_log_det(self, x, condition=None):
        del condition
        return self.matrix @ x + self.loc, jnp.sum(self.log_diagonal)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        x = jax.scipy.linalg.solve_triangular(
            self.matrix, y - self.loc, lower=self.lower
        )
        return x, -jnp.sum(self.log_diagonal)


class LULinear(AbstractBijection):
    r"""$y = P L U x + b$: a fixed permutation $P$, a unit lower triangular $L$,
    an upper triangular $U$ with a positive diagonal.

    Any invertible matrix with a positive-diagonal $U$ factor is reachable, at
    $O(d^2)$ per evaluation and $O(d)$ for the log-det, $\sum_i \log U_{ii}$.
    $L$ and $U$ are stored as `lower` (strict part used), `upper` (strict part
    used) and `log_diagonal`; zeros (the default) give $P$ itself, the identity
    without a permutation. The permutation is an integer array, never trained.

    Args:
        dim: the event dimension.
        permutation: the fixed permutation: output `i` is entry
            `permutation[i]` of $L U x + b$ (default: none).
        loc: the shift $b$.
        lower: a `(dim, dim)` matrix whose strict lower triangle is used.
        upper: a `(dim, dim)` matrix whose strict upper triangle is used.
        log_diagonal: the log of $U$'s diagonal.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import LULinear
        >>> layer = LULinear(3, permutation=jnp.array([2, 0, 1]))
        >>> layer.transform(jnp.array([1.0, 2.0, 3.0])).tolist()
        [3.0, 1.0, 2.0]
    """

    loc: jax.Array
    lower: jax.Array
    upper: jax.Array
    log_diagonal: jax.Array
    permutation: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        dim: int,
        *,
        permutation: ArrayLike | None = None,
        loc: ArrayLike | None = None,
        lower: ArrayLike | None = None,
        upper: ArrayLike | None = None,
        log_diagonal: ArrayLike | None = None,
    ):
        owner = "LULinear"
        self.shape = (vector_size(owner, dim),)
        dim = self.shape[0]
        zeros = jnp.zeros((dim, dim))
        self.loc = vector_parameter(owner, "loc", loc, dim)
        self.lower = _matrix(owner, "lower", lower, dim, zeros)
        self.upper = _matrix(owner, "upper", upper, dim, zeros)
        self.log_diagonal = vector_parameter(owner, "log_diagonal", log_diagonal, dim)
        if permutation is None:
            permutation = np.arange(dim)
        if not isinstance(permutation, jax.core.Tracer):
            values = np.asarray(permutation).tolist()
            if sorted(values) != list(range(dim)):
                raise ValueError(
                    f"LULinear: permutation must be a permutation of range({dim}); "
                    f"got {values}."
                )
        self.permutation = jnp.asarray(permutation, dtype=jnp.int32)

    def _factors(self):
        dim = self.shape[0]
        lower = jnp.tril(self.lower, -1) + jnp.eye(dim, dtype=self.lower.dtype)
        upper = jnp.triu(self.upper, 1) + jnp.diag(jnp.exp(self.log_diagonal))
        return lower, upper

    def transform_and_log_det(self, x, condition=None):
        del condition
        lower, upper = self._factors()
        y = lower @ (upper @ x) + self.loc
        return y[self.permutation], jnp.sum(self.log_diagonal)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        lower, upper = self._factors()
        unpermuted = jnp.zeros_like(y).at[self.permutation].set(y) - self.loc
        z = jax.scipy.linalg.solve_triangular(
            lower, unpermuted, lower=True, unit_diagonal=True
        )
        x = jax.scipy.linalg.solve_triangular(upper, z, lower=False)
        return x, -jnp.sum(self.log_diagonal)


class Householder(AbstractBijection):
    r"""An orthogonal map: a product of Householder reflections, $|\det| = 1$.

    $y = H_{v_1} H_{v_2} \cdots H_{v_k} x$ with
    $H_v = I - 2 v v^\top / |v|^2$. The reflections come in pairs initialised
    equal, so a new layer is exactly the identity ($H_v H_v = I$), and the
    product of an even number of reflections is a rotation (determinant +1).
    Training moves the vectors apart. The inverse applies the reflections in
    the opposite order; the log-det is 0.

    Args:
        dim: the event dimension.
        key: the key for the initial vectors.
        n_reflections: the number of reflections $k$ (even, at least 2).
        vectors: the `(k, dim)` vectors, instead of `key` (nonzero rows).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Householder
        >>> layer = Householder(3, key=jax.random.key(0))
        >>> x = jnp.array([1.0, -2.0, 0.5])
        >>> bool(jnp.allclose(layer.transform(x), x, atol=1e-6))
        True
    """

    vectors: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(
        self,
        dim: int,
        *,
        key: jax.Array | None = None,
        n_reflections: int = 2,
        vectors: ArrayLike | None = None,
    ):
        self.shape = (vector_size("Householder", dim),)
        dim = self.shape[0]
        if vectors is None:
            n_reflections = int(n_reflections)
            if n_reflections < 2 or n_reflections % 2:
                raise ValueError(
                    "Householder: n_reflections must be even and at least 2 (pairs "
                    f"start equal, so the layer starts as the identity); got "
                    f"{n_reflections}."
                )
            if key is None:
                raise ValueError("Householder needs a key (or explicit vectors).")
            half = jax.random.normal(key, (n_reflections // 2, dim))
            vectors = jnp.repeat(half, 2, axis=0)
        vectors = as_float_array(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(
                f"Householder expected vectors of shape (k, {dim}), got "
                f"{vectors.shape}."
            )
        self.vectors = vectors

    def _reflect_all(self, value, reverse: bool):
        units = self.vectors / jnp.linalg.norm(self.vectors, axis=-1, keepdims=True)

        def reflect(out, unit):
            return out - 2.0 * unit * jnp.dot(unit, out), None

        # y = H_1 (H_2 (... H_k x)): the last vector acts first.
        ordered = units if reverse else units[::-1]
        return jax.lax.scan(reflect, value, ordered)[0]

    def transform_and_log_det(self, x, condition=None):
        del condition
        return self._reflect_all(x, reverse=False), jnp.zeros((), x.dtype)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        return self._reflect_all(y, reverse=True), jnp.zeros((), y.dtype)
