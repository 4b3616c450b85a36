r"""Time embeddings: a scalar time $t$ to a feature vector, for vector fields.

A field of a continuous flow depends on time; these modules turn $t$ into
features that the field's weights are contracted with (a lattice field's
convolution kernels, an MLP field's gates). Each maps $t$ in its interval
$[t_0, t_1]$ through $u = (t - t_0) / (t_1 - t_0)$ to `size` features.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jax.typing import ArrayLike


def _check_count(owner: str, name: str, count: int, minimum: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < minimum:
        raise ValueError(
            f"{owner}: {name} must be a whole number of at least {minimum}; got "
            f"{count!r}."
        )
    return count


def _check_interval(owner: str, t0: float, t1: float) -> tuple[float, float]:
    t0, t1 = float(t0), float(t1)
    if not t1 > t0:
        raise ValueError(
            f"{owner}: expected an interval t0 < t1, got t0={t0}, t1={t1}. Give "
            "the interval the flow integrates over, e.g. t0=0.0, t1=1.0."
        )
    return t0, t1


class AbstractTimeEmbedding(eqx.Module):
    """A map from a scalar time to a feature vector of length `size`.

    Subclasses declare `size`, `t0` and `t1` and implement `features(u)` on the
    rescaled time $u = (t - t_0)/(t_1 - t_0)$, which is $0$ at `t0` and $1$ at
    `t1`; calling the module checks that `t` is a scalar and rescales it.
    """

    size: AbstractVar[int]
    t0: AbstractVar[float]
    t1: AbstractVar[float]

    @abc.abstractmethod
    def features(self, u: jax.Array) -> jax.Array:
        """The features, shape `(size,)`, at the rescaled time `u` (a scalar)."""

    def __call__(self, t: ArrayLike) -> jax.Array:
        """The features at time `t` (a scalar): shape `(size,)`."""
        t = jnp.asarray(t)
        if t.shape != ():
            raise ValueError(
                f"{type(self).__name__} expected a scalar time, got shape {t.shape}. "
                "Map over several times with jax.vmap."
            )
        if not jnp.issubdtype(t.dtype, jnp.inexact):
            t = t.astype(jnp.result_type(float))
        return self.features((t - self.t0) / (self.t1 - self.t0))


class FourierTimeEmbedding(AbstractTimeEmbedding):
    r"""$[\sin 2\pi k u, \cos 2\pi k u, 1]$ for $k = 1, \dots, K$: periodic features.

    $2K + 1$ features with no parameters; the constant lets a contraction with
    them hold a time-independent part.

    Args:
        n_frequencies: $K$, the number of frequencies.
        t0: the start of the time interval.
        t1: its end.

    Examples:
        >>> from flowrox.nn import FourierTimeEmbedding
        >>> embedding = FourierTimeEmbedding(2)
        >>> embedding.size
        5
        >>> embedding(0.0).tolist()  # sin, sin, cos, cos, 1
        [0.0, 0.0, 1.0, 1.0, 1.0]
    """

    n_frequencies: int = eqx.field(static=True)
    size: int = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, n_frequencies: int, *, t0: float = 0.0, t1: float = 1.0):
        owner = "FourierTimeEmbedding"
        self.n_frequencies = _check_count(owner, "n_frequencies", n_frequencies, 1)
        self.t0, self.t1 = _check_interval(owner, t0, t1)
        self.size = 2 * self.n_frequencies + 1

    def features(self, u):
        angles = 2 * jnp.pi * jnp.arange(1, self.n_frequencies + 1, dtype=u.dtype) * u
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles), jnp.ones(1, u.dtype)])


class GaussianTimeEmbedding(AbstractTimeEmbedding):
    r"""$\exp(-\tfrac12 ((u - c_k) / w_k)^2)$: Gaussian bumps with learnable widths.

    The centres $c_k$ are evenly spaced over $[0, 1]$ (the interval's two ends
    included); each width $w_k$ is a parameter, stored as its logarithm and
    starting at `width` (default: the spacing of the centres).

    Args:
        n_bumps: the number of bumps (at least 2).
        t0: the start of the time interval.
        t1: its end.
        width: the initial width of every bump, in units of the interval.

    Examples:
        >>> from flowrox.nn import GaussianTimeEmbedding
        >>> embedding = GaussianTimeEmbedding(3)
        >>> [round(v, 4) for v in embedding(0.5).tolist()]
        [0.6065, 1.0, 0.6065]
    """

    log_width: jax.Array
    n_bumps: int = eqx.field(static=True)
    size: int = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(
        self,
        n_bumps: int,
        *,
        t0: float = 0.0,
        t1: float = 1.0,
        width: float | None = None,
    ):
        owner = "GaussianTimeEmbedding"
        self.n_bumps = _check_count(owner, "n_bumps", n_bumps, 2)
        self.t0, self.t1 = _check_interval(owner, t0, t1)
        self.size = self.n_bumps
        width = 1.0 / (self.n_bumps - 1) if width is None else float(width)
        if not width > 0:
            raise ValueError(f"{owner}: width must be positive; got {width}.")
        self.log_width = jnp.full((self.n_bumps,), jnp.log(width))

    @property
    def width(self) -> jax.Array:
        """The widths of the bumps, in units of the interval."""
        return jnp.exp(self.log_width)

    def features(self, u):
        centres = jnp.linspace(0.0, 1.0, self.n_bumps, dtype=u.dtype)
        return jnp.exp(-0.5 * ((u - centres) / self.width.astype(u.dtype)) ** 2)


class LinearHatTimeEmbedding(AbstractTimeEmbedding):
    r"""$\max(0, 1 - |u - c_k| / \Delta)$: linear hats on evenly spaced knots.

    The knots $c_k$ are spaced $\Delta = 1/(n - 1)$ apart over $[0, 1]$; at any
    time at most two neighbouring hats are nonzero and all of them add up to
    one, so a contraction with them interpolates linearly between per-knot
    values. Times outside the interval are clipped to it (the end values
    hold).

    Args:
        n_knots: the number of knots (at least 2).
        t0: the start of the time interval.
        t1: its end.

    Examples:
        >>> from flowrox.nn import LinearHatTimeEmbedding
        >>> LinearHatTimeEmbedding(3)(0.75).tolist()
        [0.0, 0.5, 0.5]
    """

    n_knots: int = eqx.field(static=True)
    size: int = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, n_knots: int, *, t0: float = 0.0, t1: float = 1.0):
        owner = "LinearHatTimeEmbedding"
        self.n_knots = _check_count(owner, "n_knots", n_knots, 2)
        self.t0, self.t1 = _check_interval(owner, t0, t1)
        self.size = self.n_knots

    def features(self, u):
        knots = jnp.linspace(0.0, 1.0, self.n_knots, dtype=u.dtype)
        distance = jnp.abs(jnp.clip(u, 0.0, 1.0) - knots) * (self.n_knots - 1)
        return jnp.maximum(0.0, 1.0 - distance)


class ReducedTimeEmbedding(AbstractTimeEmbedding):
    r"""$W e(t)$: a learned linear reduction of another embedding's features.

    A field contracting many parameters with the time features gets fewer,
    smoother ones: `size` learned combinations of the `embedding.size`
    features of `embedding`. $W$ starts with entries drawn from
    $N(0, 1/\text{embedding.size})$.

    Args:
        embedding: the embedding whose features are combined.
        size: the number of combinations.
        key: the key for $W$.

    Examples:
        >>> import jax
        >>> from flowrox.nn import FourierTimeEmbedding, ReducedTimeEmbedding
        >>> embedding = ReducedTimeEmbedding(
        ...     FourierTimeEmbedding(10), 4, key=jax.random.key(0)
        ... )
        >>> embedding.size, embedding(0.3).shape
        (4, (4,))
    """

    embedding: AbstractTimeEmbedding
    weight: jax.Array
    size: int = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, embedding: AbstractTimeEmbedding, size: int, *, key: jax.Array):
        if not isinstance(embedding, AbstractTimeEmbedding):
            raise TypeError(
                "ReducedTimeEmbedding expected a time embedding (e.g. "
                f"FourierTimeEmbedding(...)), got {type(embedding).__name__}."
            )
        self.size = _check_count("ReducedTimeEmbedding", "size", size, 1)
        self.embedding = embedding
        self.t0, self.t1 = embedding.t0, embedding.t1
        scale = 1.0 / jnp.sqrt(embedding.size)
        self.weight = scale * jax.random.normal(key, (self.size, embedding.size))

    def features(self, u):
        return self.weight.astype(u.dtype) @ self.embedding.features(u)
