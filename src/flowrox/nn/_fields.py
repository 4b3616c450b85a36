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

from ._bayesian import BayesianHyperLinear
from ._conditioners import AbstractConditioner, AffineModulation, HyperLinear
from ._shared import (
    apply_linear,
    check_context,
    check_width,
    declared_input_width,
    map_rows,
    refuse_scope_name,
)


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


def _square_hyper_linear(num_features, cond_dim, *, key, **options):
    return HyperLinear(num_features, num_features, cond_dim, key=key, **options)


def _square_bayesian_hyper_linear(num_features, cond_dim, *, key, **options):
    return BayesianHyperLinear(num_features, num_features, cond_dim, key=key, **options)


def _square_init(init, num_features, cond_dim, *, key, **options):
    return init(num_features, num_features, cond_dim, key=key, **options)


# The conditioners that take their input and output widths: built square, from
# and to the width of the layer they follow.
_SQUARE = {
    HyperLinear: _square_hyper_linear,
    BayesianHyperLinear: _square_bayesian_hyper_linear,
}


def _pyrox_builder(conditioner_cls: Callable) -> Callable[..., AbstractConditioner]:
    """A conditioner builder `(num_features, cond_dim, *, key, **options)` that
    reads the options with pyrox's names, through the class's `init`."""
    init = getattr(conditioner_cls, "init", None)
    if init is None:
        return conditioner_cls
    if conditioner_cls in _SQUARE:
        return functools.partial(_square_init, init)
    return init


@eqx.filter_jit
def _conditioner_parts(
    conditioner, widths, cond_dim, key, options
) -> tuple[AbstractConditioner, ...]:
    # One compiled program for all the conditioners' draws (see `_mlp_parts`).
    build = _SQUARE.get(conditioner, conditioner)
    return tuple(
        build(width, cond_dim, key=k, **options)
        for width, k in zip(widths, jax.random.split(key, len(widths)), strict=True)
    )


def _layers_of(inner: Any) -> tuple[tuple[Callable, ...], Callable] | None:
    """The hidden layers and the readout of a layered network, each acting on
    the last axis of a batch; None for a network that exposes no layers.

    An `AbstractField` gives its `layers` and `readout`; any other network its
    `layers`, the last being the readout, each applied one point at a time.
    """
    if isinstance(inner, AbstractField):
        return tuple(inner.layers), functools.partial(apply_linear, inner.readout)
    layers = getattr(inner, "layers", None)
    if isinstance(inner, eqx.nn.MLP) or not isinstance(layers, list | tuple):
        return None
    if len(layers) < 2 or not all(callable(layer) for layer in layers):
        return None
    per_point = tuple(functools.partial(map_rows, layer) for layer in layers)
    return per_point[:-1], per_point[-1]


def _apply(inner: Any, h: jax.Array) -> jax.Array:
    """`inner` on the last axis of `h`: a field takes the batch, any other
    callable one point at a time."""
    if isinstance(inner, AbstractField):
        return inner(h)
    return map_rows(inner, h)


def _hidden_widths(inner: Any, hidden: tuple, in_features: int) -> tuple[int, ...]:
    """The output width of each hidden layer, from their shapes on one point."""
    if isinstance(inner, AbstractField):
        return (inner.hidden_features,) * len(hidden)
    point = jax.ShapeDtypeStruct((in_features,), jnp.result_type(float))
    widths = []
    for index, layer in enumerate(hidden):
        point = eqx.filter_eval_shape(layer, point)
        if len(point.shape) != 1:
            raise ValueError(
                f"ConditionedINR: layer {index} of the inner network maps one "
                f"point to shape {point.shape}; a conditioner follows it, so it "
                "must return a vector."
            )
        widths.append(point.shape[0])
    return tuple(widths)


def _input_width(declared: int | None, in_features: int | None, context: int) -> int:
    """The width of `x`: the inner network's input width minus `context`
    (the context's width when it is concatenated to `x`), or `in_features`."""
    if declared is None:
        if in_features is None:
            raise TypeError(
                "ConditionedINR: the inner network declares no input width (an "
                "in_features or in_size attribute, on itself or on its first "
                "layer); pass in_features=... (the width of x)."
            )
        return int(in_features)
    if in_features is not None and int(in_features) != declared - context:
        raise ValueError(
            f"ConditionedINR: got in_features={in_features}, but the inner "
            f"network takes inputs of width {declared}"
            + (f" (x and a context of {context})" if context else "")
            + f". Pass in_features={declared - context} or leave it out."
        )
    return declared - context


class ConditionedINR(eqx.Module):
    r"""A neural field conditioned on a context, after each hidden layer or at input.

    - `mode="feature"`: a conditioner $c_l$ after every hidden layer $f_l$ of the
      inner network: $h_l = c_l(f_l(h_{l-1}), z)$, then the readout. With the
      default `AffineModulation` (FiLM), which starts at the identity, the
      composite is exactly the inner network at initialisation.
    - `mode="input"` without a conditioner: the context is concatenated to the
      input, $y = \text{field}([x, z])$. An `AbstractField`'s first layer is
      rebuilt (with the field's own initialisation) for `in_features + cond_dim`
      inputs; any other callable is used as it is and must take that width.
    - `mode="input"` with a conditioner: the conditioner acts on the input,
      $y = \text{field}(c(x, z))$, with `num_features` the input width (a
      `ConcatConditioner` maps $[x, z]$ back to the input width); the inner
      network, any callable, is used as it is.

    The inner network of `mode="feature"` is an `AbstractField` (`SIREN`,
    `MLPField`) or any module exposing `layers`, a list or tuple of at least two
    callables run one after the other, the last being the readout (pyrox's
    `SIREN` has this form, as does `eqx.nn.Sequential`); the conditioners'
    widths are read from the layers' output shapes. An `eqx.nn.MLP` applies its
    activation between its layers, so it is refused there: use `MLPField`, the
    same network as a field. Layers of a network other than an `AbstractField`,
    and an inner callable of `mode="input"`, are applied one point at a time
    (vmapped over the rows), as equinox's layers expect.

    Args:
        inner: the network to condition (see above).
        conditioner: the conditioner, built as
            `conditioner(width, cond_dim, key=..., **conditioner_options)` for
            each hidden layer's output width (`HyperLinear` and
            `BayesianHyperLinear` are built square, from and to that width); or
            any callable with that signature returning an `AbstractConditioner`.
            Default: `AffineModulation` in `mode="feature"`; none (concatenation)
            in `mode="input"`.
        cond_dim: the context width.
        key: the key for the conditioners (or the rebuilt first layer).
        mode: `"feature"` or `"input"`.
        in_features: the width of `x`, needed only when the inner network does
            not declare its input width (an `in_features` or `in_size`
            attribute, on itself or its first layer, or its first layer's
            `weight`).
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

    inner: Callable
    conditioners: tuple[AbstractConditioner, ...]
    in_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    mode: str = eqx.field(static=True)

    def __init__(
        self,
        inner: Callable,
        conditioner: Callable[..., AbstractConditioner] | None = None,
        *,
        cond_dim: int,
        key: jax.Array,
        mode: str = "feature",
        in_features: int | None = None,
        **conditioner_options: Any,
    ):
        if mode not in _MODES:
            raise ValueError(
                f"ConditionedINR: mode must be one of {list(_MODES)}; got {mode!r}."
            )
        self.cond_dim, self.mode = int(cond_dim), mode
        declared = (
            inner.in_features
            if isinstance(inner, AbstractField)
            else declared_input_width(inner)
        )
        if mode == "feature":
            parts = _layers_of(inner)
            if parts is None:
                raise TypeError(
                    "ConditionedINR: mode='feature' puts a conditioner after each "
                    "hidden layer, so inner must be an AbstractField (SIREN, "
                    "MLPField, ...) or a network exposing `layers`, a list or tuple "
                    "of at least two callables run one after the other (the last "
                    f"the readout); got {type(inner).__name__}."
                    + _MLP_REMEDY
                    * isinstance(inner, eqx.nn.MLP)
                    + " Any callable can be conditioned at its input with "
                    "mode='input'."
                )
            self.in_features = _input_width(declared, in_features, 0)
            self.inner = inner
            self.conditioners = _conditioner_parts(
                AffineModulation if conditioner is None else conditioner,
                _hidden_widths(inner, parts[0], self.in_features),
                self.cond_dim,
                key,
                conditioner_options,
            )
        elif conditioner is None:
            if conditioner_options:
                raise ValueError(
                    "ConditionedINR: conditioner options apply to mode='feature' "
                    "only, or to mode='input' with a conditioner (applied to the "
                    f"input); got {sorted(conditioner_options)} with mode='input' "
                    "and no conditioner. Pass the conditioner too, or drop them."
                )
            if isinstance(inner, AbstractField):
                self.in_features = _input_width(declared, in_features, 0)
                first = inner.input_layer(self.in_features + self.cond_dim, key=key)
                self.inner = eqx.tree_at(lambda field: field.layers[0], inner, first)
            else:
                self.in_features = _input_width(declared, in_features, self.cond_dim)
                self.inner = inner
            self.conditioners = ()
        else:
            self.in_features = _input_width(declared, in_features, 0)
            self.inner = inner
            self.conditioners = _conditioner_parts(
                conditioner,
                (self.in_features,),
                self.cond_dim,
                key,
                conditioner_options,
            )

    @classmethod
    def init(
        cls,
        inner: Callable,
        *,
        conditioner_cls: Callable[..., AbstractConditioner],
        cond_dim: int,
        key: jax.Array,
        mode: str = "feature",
        pyrox_name: str | None = None,
        **conditioner_kwargs: Any,
    ) -> "ConditionedINR":
        """Builds the field from pyrox's arguments (pyrox's `ConditionedINR.init`).

        pyrox passes the conditioner as `conditioner_cls` and its options with
        pyrox's names, which go to the class's own `init` (`prior_std` for the
        Bayesian conditioners, `init_scale` for `HyperLinear`, which is built
        square as in pyrox). The rest means what it means in the constructor:
        `ConditionedINR.init(inner, conditioner_cls=FiLM, cond_dim=K, key=key)`
        is `ConditionedINR(inner, FiLM.init, cond_dim=K, key=key)`. With
        `mode="input"` the conditioner acts on the input, as pyrox applies it:
        `inner(conditioner_cls(x, z))`, the inner network used as it is.
        `pyrox_name` is refused unless it is None (sites are named by
        `flowrox.sample_module`, `{name}/conditioners.0.generator.weight`, ...).

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import SIREN, AffineModulation, ConditionedINR
            >>> key = jax.random.key(0)
            >>> inner = SIREN.init(2, 32, 1, depth=4, key=key)
            >>> wrapped = ConditionedINR.init(
            ...     inner, conditioner_cls=AffineModulation, cond_dim=4, key=key
            ... )
            >>> len(wrapped.conditioners), wrapped(jnp.ones((10, 2)), jnp.ones(4)).shape
            (3, (10, 1))
        """
        refuse_scope_name("ConditionedINR.init", pyrox_name)
        if conditioner_cls is None or not callable(conditioner_cls):
            raise TypeError(
                "ConditionedINR.init: expected conditioner_cls to be a conditioner "
                "class such as AffineModulation, ConcatConditioner or HyperLinear "
                f"(or a Bayesian one), got {conditioner_cls!r}. For a context "
                "concatenated to the input with no conditioner, call "
                "ConditionedINR(inner, cond_dim=..., key=..., mode='input')."
            )
        return cls(
            inner,
            _pyrox_builder(conditioner_cls),
            cond_dim=cond_dim,
            key=key,
            mode=mode,
            **conditioner_kwargs,
        )

    @property
    def out_features(self) -> int:
        """The output width."""
        if isinstance(self.inner, AbstractField):
            return self.inner.out_features
        dtype = jnp.result_type(float)
        shape = eqx.filter_eval_shape(
            self,
            jax.ShapeDtypeStruct((self.in_features,), dtype),
            jax.ShapeDtypeStruct((self.cond_dim,), dtype),
        ).shape
        return shape[-1] if shape else 1

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
            if self.conditioners:
                return _apply(self.inner, self.conditioners[0](x, z))
            if shared:
                z = jnp.broadcast_to(z, (*x.shape[:-1], self.cond_dim))
            return _apply(self.inner, jnp.concatenate([x, z.astype(x.dtype)], axis=-1))
        hidden, readout = _layers_of(self.inner)
        h = x
        for layer, conditioner in zip(hidden, self.conditioners, strict=True):
            h = conditioner(layer(h), z)
        return readout(h)


_MLP_REMEDY = (
    " An eqx.nn.MLP applies its activation between its layers, where no "
    "conditioner can be placed; build the same network as a field, "
    "flowrox.nn.MLPField(in_size, width_size, out_size, depth, activation=...)."
)
