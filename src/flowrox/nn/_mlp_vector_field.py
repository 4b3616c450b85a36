"""FFJORD's concat-squash MLP as the vector field of a continuous flow."""

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._time_embeddings import AbstractTimeEmbedding
from ._vector_field import AbstractVectorField


def _uniform(key, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def _event_shape(owner: str, name: str, shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape
    ):
        raise ValueError(
            f"{owner}: {name} must be a positive int or a non-empty tuple of "
            f"positive ints; got {shape!r}."
        )
    return shape


class ConcatSquashLinear(eqx.Module):
    r"""$(W h + b) \odot \sigma(G s + g) + B s$: a linear layer gated by a context.

    FFJORD's concat-squash layer: the context $s$ (the time features and the
    condition of a vector field) scales every output by a sigmoid gate and
    shifts it. Weights start as equinox's `Linear` (uniform in
    $\pm 1/\sqrt{\text{fan-in}}$); with `zero=True`, $W$, $b$ and $B$ start at
    zero, so the layer outputs zero until trained.

    Args:
        in_features: the width of $h$.
        out_features: the output width.
        context_features: the width of $s$.
        key: the key for the weights.
        zero: start with a zero output.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import ConcatSquashLinear
        >>> layer = ConcatSquashLinear(3, 4, 1, key=jax.random.key(0))
        >>> layer(jnp.ones(3), jnp.array([0.5])).shape
        (4,)
    """

    weight: jax.Array
    bias: jax.Array
    gate_weight: jax.Array
    gate_bias: jax.Array
    shift_weight: jax.Array
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    context_features: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        context_features: int,
        *,
        key: jax.Array,
        zero: bool = False,
    ):
        keys = jax.random.split(key, 5)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.context_features = int(context_features)
        out, fan_in, fan_context = self.out_features, in_features, context_features
        self.gate_weight = _uniform(keys[2], (out, fan_context), fan_context)
        self.gate_bias = _uniform(keys[3], (out,), fan_context)
        if zero:
            self.weight = jnp.zeros((out, fan_in))
            self.bias = jnp.zeros(out)
            self.shift_weight = jnp.zeros((out, fan_context))
        else:
            self.weight = _uniform(keys[0], (out, fan_in), fan_in)
            self.bias = _uniform(keys[1], (out,), fan_in)
            self.shift_weight = _uniform(keys[4], (out, fan_context), fan_context)

    def __call__(self, h: jax.Array, context: jax.Array) -> jax.Array:
        """The layer on one input `(in_features,)` and context `(context_features,)`."""
        gate = jax.nn.sigmoid(self.gate_weight @ context + self.gate_bias)
        return (self.weight @ h + self.bias) * gate + self.shift_weight @ context


class MLPVectorField(AbstractVectorField):
    r"""An MLP of concat-squash layers: FFJORD's vector field, conditional or not.

    The event is flattened to a vector $h_0$; each of `depth` hidden layers
    computes $h_{l+1} = a(\mathrm{CS}_l(h_l, s))$ and a last concat-squash
    layer gives the velocity, reshaped to the event. Time and condition enter
    every layer through the context $s = [e(t), c]$, where $e(t)$ is $[t]$ or
    the features of `time_embedding`, and $c$ the flattened condition.

    The last layer starts at zero, so a new field is zero and a
    `ContinuousFlow` built on it is exactly the identity.

    Args:
        shape: the event shape (an int for a vector).
        width: the width of the hidden layers.
        depth: the number of hidden layers.
        cond_shape: the shape of the condition, or `None`.
        activation: the activation of the hidden layers.
        time_embedding: the features of time (default: $t$ itself).
        key: the key for the weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import MLPVectorField
        >>> field = MLPVectorField(2, width=16, depth=2, key=jax.random.key(0))
        >>> field(0.5, jnp.ones(2)).tolist()  # zero until trained
        [0.0, 0.0]
        >>> conditional = MLPVectorField(
        ...     (2, 3), width=8, depth=1, cond_shape=(4,), key=jax.random.key(0)
        ... )
        >>> len(conditional.layers), conditional.layers[0].context_features
        (2, 5)
    """

    layers: tuple[ConcatSquashLinear, ...]
    time_embedding: AbstractTimeEmbedding | None
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        width: int = 64,
        depth: int = 3,
        cond_shape: int | Sequence[int] | None = None,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.tanh,
        time_embedding: AbstractTimeEmbedding | None = None,
        key: jax.Array,
    ):
        owner = "MLPVectorField"
        self.shape = _event_shape(owner, "shape", shape)
        if cond_shape is not None:
            cond_shape = _event_shape(owner, "cond_shape", cond_shape)
        self.cond_shape = cond_shape
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(
                f"{owner}: depth (the number of hidden layers) must be a whole "
                f"number >= 0; got {depth!r}."
            )
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"{owner}: width must be a positive int; got {width!r}.")
        if time_embedding is not None and not isinstance(
            time_embedding, AbstractTimeEmbedding
        ):
            raise TypeError(
                f"{owner}: time_embedding must be a time embedding (e.g. "
                "FourierTimeEmbedding(4)) or None; got "
                f"{type(time_embedding).__name__}."
            )
        size = math.prod(self.shape)
        context = 1 if time_embedding is None else time_embedding.size
        if self.cond_shape is not None:
            context += math.prod(self.cond_shape)
        widths = [size] + [width] * depth + [size]
        keys = jax.random.split(key, depth + 1)
        self.layers = tuple(
            ConcatSquashLinear(
                widths[index],
                widths[index + 1],
                context,
                key=keys[index],
                zero=index == depth,
            )
            for index in range(depth + 1)
        )
        self.time_embedding = time_embedding
        self.activation = activation

    def __call__(
        self, t: ArrayLike, x: jax.Array, condition: jax.Array | None = None
    ) -> jax.Array:
        if x.shape != self.shape:
            raise ValueError(
                f"MLPVectorField expected x of shape {self.shape}, got {x.shape}; "
                "a vector field acts on one unbatched event (map with jax.vmap)."
            )
        if (condition is None) != (self.cond_shape is None):
            raise ValueError(
                f"MLPVectorField has cond_shape={self.cond_shape} but got "
                f"condition={'None' if condition is None else 'an array'}; pass "
                "a condition exactly when the field is conditional."
            )
        dtype = x.dtype
        t = jnp.asarray(t, dtype)
        if self.time_embedding is None:
            context = t.reshape(1)
        else:
            context = self.time_embedding(t).astype(dtype)
        if self.cond_shape is not None:
            context = jnp.concatenate([context, condition.reshape(-1).astype(dtype)])
        h = x.reshape(-1)
        for layer in self.layers[:-1]:
            h = self.activation(layer(h, context))
        return self.layers[-1](h, context).reshape(self.shape)
