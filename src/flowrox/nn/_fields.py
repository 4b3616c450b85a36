"""Neural fields: the layered-network base, an MLP field, and `ConditionedINR`.

Every layer here acts on the last axis and accepts any leading batch axes. A
context `z` is either one vector `(cond_dim,)` shared by every row of the input
(the shared path) or one row per input row, `(..., cond_dim)` with the input's
leading shape (the per-sample path).
"""

import abc
import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jax.typing import ArrayLike

from ._conditioners import AbstractConditioner, AffineModulation, HyperLinear
from ._shared import apply_linear, check_context, check_width


def uniform_linear(
    in_features: int, out_features: int, bound: float, *, key: jax.Array
) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` with weight and bias drawn from U(-bound, bound)."""
    # The Linear's structure only (its own draws are not computed), then one
    # draw for the weight and the bias together.
    linear = eqx.filter_eval_shape(eqx.nn.Linear, in_features, out_features, key=key)
    drawn = jax.random.uniform(
        key, (out_features, in_features + 1), minval=-bound, maxval=bound
    )
    weight, bias = drawn[:, :in_features], drawn[:, in_features]
    return eqx.tree_at(lambda layer: (layer.weight, layer.bias), linear, (weight, bias))


class AbstractField(eqx.Module):
    """A layered network $x \\mapsto$ readout(layer_L(... layer_1(x))).

    The structure that `ConditionedINR` relies on: `layers`, a tuple of modules
    each mapping `(..., fan_in)` to `(..., hidden_features)` (activation
    included) and exposing their `in_features` and `out_features`, and
    `readout`, an `eqx.nn.Linear` from `hidden_features` to `out_features`
    applied to the last axis. The widths are read from these layers.
    `input_layer` builds a fresh first layer for a wider input (what
    `ConditionedINR(mode="input")` needs).

    Examples:
        >>> import jax
        >>> from flowrox.nn import SIREN, AbstractField
        >>> siren = SIREN(3, 16, 2, depth=2, key=jax.random.key(0))
        >>> isinstance(siren, AbstractField), len(siren.layers)
        (True, 2)
        >>> siren.in_features, siren.hidden_features, siren.out_features
        (3, 16, 2)
    """

    layers: AbstractVar[tuple[eqx.Module, ...]]
    readout: AbstractVar[eqx.nn.Linear]

    @property
    def in_features(self) -> int:
        """The input width (that of the first layer)."""
        return self.layers[0].in_features

    @property
    def hidden_features(self) -> int:
        """The hidden width."""
        return self.layers[0].out_features

    @property
    def out_features(self) -> int:
        """The output width."""
        return self.readout.out_features

    @abc.abstractmethod
    def input_layer(self, in_features: int, *, key: jax.Array) -> eqx.Module:
        """A freshly initialised first layer taking `in_features` inputs.

        Args:
            in_features: the width of the new input.
            key: the key for its weights.

        Returns:
            A layer of the same kind as `layers[0]`, initialised under this
            field's scheme for that fan-in.
        """

    def __call__(self, x: ArrayLike) -> jax.Array:
        """The field at `x` of shape `(..., in_features)`: `(..., out_features)`."""
        h = check_width(type(self).__name__, "x", x, self.in_features, "in_features")
        for layer in self.layers:
            h = layer(h)
        return apply_linear(self.readout, h)


class DenseLayer(eqx.Module):
    """`activation(W h + b)` on the last axis of `h`: one hidden layer of `MLPField`.

    Args:
        in_features: the input width.
        out_features: the output width.
        key: the key for the weights (equinox's default `Linear` initialisation).
        activation: the elementwise activation.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import DenseLayer
        >>> layer = DenseLayer(3, 5, key=jax.random.key(0))
        >>> layer(jnp.ones((7, 3))).shape
        (7, 5)
    """

    linear: eqx.nn.Linear
    activation: Callable = eqx.field(static=True)
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        key: jax.Array,
        activation: Callable = jax.nn.tanh,
    ):
        self.linear = eqx.nn.Linear(in_features, out_features, key=key)
        self.activation = activation
        self.in_features, self.out_features = int(in_features), int(out_features)

    def __call__(self, h: ArrayLike) -> jax.Array:
        """`(..., in_features)` to `(..., out_features)`."""
        return self.activation(apply_linear(self.linear, h))


@eqx.filter_jit
def _mlp_parts(widths, out_features, activation, key):
    # One compiled program: run eagerly, every random draw of a new shape would
    # be compiled on its own.
    keys = jax.random.split(key, len(widths))
    layers = tuple(
        DenseLayer(n_in, n_out, key=k, activation=activation)
        for n_in, n_out, k in zip(widths[:-1], widths[1:], keys[:-1], strict=True)
    )
    return layers, eqx.nn.Linear(widths[-1], out_features, key=keys[-1])


class MLPField(AbstractField):
    """A multilayer perceptron as a neural field, with any activation.

    `depth` hidden `DenseLayer`s of width `hidden_features`, then a linear
    readout; equinox's default initialisation.

    Args:
        in_features: the input width.
        hidden_features: the hidden width.
        out_features: the output width.
        depth: the number of hidden layers (at least 1).
        key: the key for the weights.
        activation: the hidden activation.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import MLPField
        >>> field = MLPField(2, 8, 1, depth=2, key=jax.random.key(0))
        >>> field(jnp.zeros((4, 2))).shape, len(field.layers)
        ((4, 1), 2)
    """

    layers: tuple[DenseLayer, ...]
    readout: eqx.nn.Linear
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        depth: int,
        *,
        key: jax.Array,
        activation: Callable = jax.nn.tanh,
    ):
        if depth < 1:
            raise ValueError(f"MLPField: expected depth of at least 1, got {depth}.")
        widths = (in_features,) + (hidden_features,) * depth
        self.layers, self.readout = _mlp_parts(widths, out_features, activation, key)
        self.activation = activation

    def input_layer(self, in_features: int, *, key: jax.Array) -> DenseLayer:
        """A fresh `DenseLayer` from `in_features` inputs to the hidden width."""
        return DenseLayer(
            in_features, self.hidden_features, key=key, activation=self.activation
        )


_MODES = ("feature", "input")


@eqx.filter_jit
def _conditioner_parts(
    conditioner, count, num_features, cond_dim, key, options
) -> tuple[AbstractConditioner, ...]:
    # One compiled program for all the conditioners' draws (see `_mlp_parts`).
    if conditioner is HyperLinear:
        # HyperLinear takes its input and output widths: a square target layer.
        conditioner = functools.partial(HyperLinear, num_features)
    return tuple(
        conditioner(num_features, cond_dim, key=k, **options)
        for k in jax.random.split(key, count)
    )


class ConditionedINR(eqx.Module):
    r"""A neural field conditioned on a context, after each hidden layer or at input.

    - `mode="feature"`: a conditioner $c_l$ after every hidden layer $f_l$ of the
      inner field: $h_l = c_l(f_l(h_{l-1}), z)$, then the readout. With the
      default `AffineModulation` (FiLM), which starts at the identity, the
      composite is exactly the inner field at initialisation.
    - `mode="input"`: the context is concatenated to the input,
      $y = \text{field}([x, z])$; the first layer is rebuilt (with the inner
      field's own initialisation) for `in_features + cond_dim` inputs.

    Args:
        inner: the field to condition (`SIREN`, `MLPField`, any `AbstractField`).
        conditioner: the conditioner class for `mode="feature"`, built as
            `conditioner(hidden_features, cond_dim, key=..., **conditioner_options)`
            (`HyperLinear` is built square, from and to `hidden_features`); or
            any callable with that signature returning an `AbstractConditioner`.
        cond_dim: the context width.
        key: the key for the conditioners (or the rebuilt first layer).
        mode: `"feature"` or `"input"`.
        **conditioner_options: passed to every conditioner (e.g.
            `gamma_activation="exp"`).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import SIREN, ConditionedINR
        >>> inner = SIREN(2, 16, 1, depth=3, key=jax.random.key(0))
        >>> field = ConditionedINR(inner, cond_dim=4, key=jax.random.key(1))
        >>> x, z = jnp.ones((10, 2)), jnp.ones((10, 4))
        >>> bool(jnp.all(field(x, z) == inner(x)))  # FiLM starts at the identity
        True
    """

    inner: AbstractField
    conditioners: tuple[AbstractConditioner, ...]
    in_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    mode: str = eqx.field(static=True)

    def __init__(
        self,
        inner: AbstractField,
        conditioner: Callable[..., AbstractConditioner] = AffineModulation,
        *,
        cond_dim: int,
        key: jax.Array,
        mode: str = "feature",
        **conditioner_options: Any,
    ):
        if mode not in _MODES:
            raise ValueError(
                f"ConditionedINR: mode must be one of {list(_MODES)}; got {mode!r}."
            )
        if not isinstance(inner, AbstractField):
            raise TypeError(
                "ConditionedINR: inner must be an AbstractField (SIREN, MLPField, "
                f"...), which exposes its layers; got {type(inner).__name__}."
            )
        self.in_features, self.cond_dim, self.mode = inner.in_features, cond_dim, mode
        if mode == "input":
            if conditioner_options:
                raise ValueError(
                    "ConditionedINR: conditioner options apply to mode='feature' "
                    f"only; got {sorted(conditioner_options)} with mode='input'."
                )
            first = inner.input_layer(inner.in_features + cond_dim, key=key)
            self.inner = eqx.tree_at(lambda field: field.layers[0], inner, first)
            self.conditioners = ()
        else:
            self.inner = inner
            self.conditioners = _conditioner_parts(
                conditioner,
                len(inner.layers),
                inner.hidden_features,
                cond_dim,
                key,
                conditioner_options,
            )

    @property
    def out_features(self) -> int:
        """The output width."""
        return self.inner.out_features

    def __call__(self, x: ArrayLike, z: ArrayLike) -> jax.Array:
        """The conditioned field at `x` `(..., in_features)`: `(..., out_features)`.

        Args:
            x: inputs of shape `(..., in_features)`.
            z: one context `(cond_dim,)` for all rows, or one per row,
                `(..., cond_dim)` with the leading shape of `x`.
        """
        x = check_width("ConditionedINR", "x", x, self.in_features, "in_features")
        z, shared = check_context("ConditionedINR", x, z, self.cond_dim)
        if self.mode == "input":
            if shared:
                z = jnp.broadcast_to(z, (*x.shape[:-1], self.cond_dim))
            return self.inner(jnp.concatenate([x, z.astype(x.dtype)], axis=-1))
        h = x
        for layer, conditioner in zip(
            self.inner.layers, self.conditioners, strict=True
        ):
            h = conditioner(layer(h), z)
        return apply_linear(self.inner.readout, h)
