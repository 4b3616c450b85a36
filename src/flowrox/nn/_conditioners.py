r"""Conditioners: layers $c(h, z) \to y$ that let a context $z$ steer an activation $h$.

Three ways of conditioning, from cheapest to most expressive per context entry:

- `ConcatConditioner`: one linear map of $[h, z]$.
- `AffineModulation` (FiLM): $y = \gamma(z) \odot h + \beta(z)$.
- `HyperLinear`: a generator maps $z$ to the whole weight matrix and bias of a
  linear layer applied to $h$.

Unlike bijections, these layers act on the last axis and accept any leading
batch axes. The context is either one vector `(cond_dim,)` shared by every row
of `h` (the shared path), or one row per row of `h`, `(..., cond_dim)` with the
leading shape of `h` (the per-sample path).
"""

import abc
import math
import numbers
from collections.abc import Callable

import einops
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jax.typing import ArrayLike

from .._numerics import as_float_array, log_softplus
from ._shared import apply_linear, last_layer, refuse_scope_name

# `flowrox.bijections.Modulated` wraps `AffineModulation`, so this module
# imports nothing from `flowrox.bijections`: the two packages load in any order.


def _check_sizes(owner: str, **sizes: int) -> None:
    bad = {
        name: size
        for name, size in sizes.items()
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
    }
    if bad:
        listed = ", ".join(f"{name}={size!r}" for name, size in bad.items())
        raise ValueError(
            f"{owner}: expected every size to be a whole number of at least 1, got "
            f"{listed}. Pass a positive int for each."
        )


def _linear_from(weight: jax.Array, bias: jax.Array) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` holding the given weight and bias."""
    n_out, n_in = weight.shape
    # Only the structure is built: no random draw is computed and thrown away.
    skeleton = eqx.filter_eval_shape(
        lambda: eqx.nn.Linear(n_in, n_out, key=jax.random.key(0))
    )
    return eqx.tree_at(lambda g: (g.weight, g.bias), skeleton, (weight, bias))


class AbstractConditioner(eqx.Module):
    """A layer $c(h, z) \\to y$ conditioning an activation $h$ on a context $z$.

    Every conditioner maps `h` of shape `(..., num_features)` (for `HyperLinear`:
    `(..., in_features)`) and a context `z` to `(..., num_features)`. The context
    is one vector of shape `(cond_dim,)`, shared by every row of `h`, or a batch
    of shape `(..., cond_dim)` with the leading shape of `h`, one context per
    row. A concrete conditioner is built as
    `Cls(num_features, cond_dim, *, key, **options)`, so that composites can put
    one after each hidden layer of a network.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import AbstractConditioner, FiLM
        >>> layer = FiLM(4, 2, key=jax.random.key(0))
        >>> isinstance(layer, AbstractConditioner)
        True
        >>> layer(jnp.ones((3, 4)), jnp.ones(2)).shape
        (3, 4)
    """

    num_features: AbstractVar[int]
    cond_dim: AbstractVar[int]

    @abc.abstractmethod
    def __call__(self, h: ArrayLike, z: ArrayLike) -> jax.Array:
        """Conditions `h` on `z`.

        Args:
            h: the activations, of shape `(..., num_features)`.
            z: the context, `(cond_dim,)` or `(..., cond_dim)` with the leading
                shape of `h`.

        Returns:
            The conditioned activations, of shape `(..., num_features)`.
        """

    def _check_inputs(
        self,
        h: ArrayLike | None,
        z: ArrayLike,
        *,
        width: int | None = None,
        width_name: str = "num_features",
    ) -> tuple[jax.Array | None, jax.Array]:
        """Checks the widths of `h` and `z` and that their leading shapes agree.

        `h=None` checks the context alone. Returns both as floating arrays.
        """
        name = type(self).__name__
        width = self.num_features if width is None else width
        if h is not None:
            h = as_float_array(h)
            if h.ndim == 0 or h.shape[-1] != width:
                raise ValueError(
                    f"{name}: expected h with last axis {width} ({width_name}), got "
                    f"shape {h.shape}. Pass one point of shape ({width},) or a batch "
                    f"of shape (..., {width})."
                )
        z = as_float_array(z)
        k = self.cond_dim
        wrong_width = z.ndim == 0 or z.shape[-1] != k
        wrong_rows = h is not None and z.ndim > 1 and z.shape[:-1] != h.shape[:-1]
        if wrong_width or wrong_rows:
            rows = "" if h is None else f" for h of shape {h.shape}"
            per_sample = "" if h is None else f" (here {(*h.shape[:-1], k)})"
            raise ValueError(
                f"{name}: expected z of shape ({k},) or (..., {k}) (cond_dim {k}), "
                f"got {z.shape}{rows}. Pass one context shared by every row, or one "
                f"context per row of h{per_sample}."
            )
        return h, z


class ConcatConditioner(AbstractConditioner):
    r"""One linear map of the concatenation $[h, z]$ back to `num_features`.

    $y = W_h h + W_z z + b$ with $[W_h, W_z]$ the weight of one `eqx.nn.Linear`
    of $[h, z]$. The cheapest conditioner: $(C + K) C + C$ parameters for
    $C$ features and a context of $K$ entries. The concatenation is never built:
    in the shared path $W_z z + b$ is computed once for every row.

    Args:
        num_features: $C$, the width of `h` and of the output.
        cond_dim: $K$, the width of the context.
        key: the key for the weights (equinox's `Linear` initialisation).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import ConcatConditioner
        >>> layer = ConcatConditioner(4, 2, key=jax.random.key(0))
        >>> layer(jnp.ones((3, 4)), jnp.ones((3, 2))).shape
        (3, 4)
    """

    linear: eqx.nn.Linear
    num_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(self, num_features: int, cond_dim: int, *, key: jax.Array):
        _check_sizes("ConcatConditioner", num_features=num_features, cond_dim=cond_dim)
        self.num_features, self.cond_dim = int(num_features), int(cond_dim)
        self.linear = eqx.nn.Linear(
            self.num_features + self.cond_dim, self.num_features, key=key
        )

    @classmethod
    def init(
        cls,
        num_features: int,
        cond_dim: int,
        *,
        key: jax.Array,
        pyrox_name: str | None = None,
    ) -> "ConcatConditioner":
        """Builds the layer from pyrox's arguments (pyrox's `ConcatConditioner.init`).

        The arguments mean what they mean in the constructor:
        `ConcatConditioner.init(C, K, key=key)` is `ConcatConditioner(C, K, key=key)`.
        `pyrox_name` has no counterpart (sites are named by
        `flowrox.sample_module`) and is refused unless it is None.

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import ConcatConditioner
            >>> key = jax.random.key(0)
            >>> layer = ConcatConditioner.init(num_features=8, cond_dim=4, key=key)
            >>> layer(jnp.ones((5, 8)), jnp.ones((5, 4))).shape
            (5, 8)
        """
        refuse_scope_name("ConcatConditioner.init", pyrox_name)
        return cls(num_features, cond_dim, key=key)

    def __call__(self, h: ArrayLike, z: ArrayLike) -> jax.Array:
        h, z = self._check_inputs(h, z)
        weight, n = self.linear.weight, self.num_features
        return h @ weight[:, :n].T + (z @ weight[:, n:].T + self.linear.bias)


# For each activation: gamma from the raw generator output, and the raw value at
# which gamma = 1 (the generator's bias at initialisation).
_GAMMA_ACTIVATIONS: dict[str, tuple[Callable, float]] = {
    "one_plus_tanh": (lambda raw: 1.0 + jnp.tanh(raw), 0.0),
    "exp": (jnp.exp, 0.0),
    "softplus": (jax.nn.softplus, math.log(math.expm1(1.0))),
    "identity": (lambda raw: raw, 1.0),
}

# log(gamma) from the raw output, in closed form, for the positive activations.
_LOG_GAMMA: dict[str, Callable] = {
    # 1 + tanh(r) = 2 sigmoid(2 r)
    "one_plus_tanh": lambda raw: jnp.log(2.0) + jax.nn.log_sigmoid(2.0 * raw),
    "exp": lambda raw: raw,
    "softplus": log_softplus,
}


class AffineModulation(AbstractConditioner):
    r"""Feature-wise linear modulation (FiLM): $y = \gamma(z) \odot h + \beta(z)$.

    One linear generator maps the context to $2C$ raw values $(r, \beta)$, and
    $\gamma = a(r)$ for the chosen `gamma_activation` $a$:

    - `"one_plus_tanh"`: $\gamma = 1 + \tanh r \in (0, 2)$;
    - `"exp"`: $\gamma = e^r > 0$, with $\log\gamma = r$ (the mode for flows:
      see `flowrox.bijections.Modulated`);
    - `"softplus"`: $\gamma = \log(1 + e^r) > 0$;
    - `"identity"`: $\gamma = r$ (any sign).

    The generator's weight starts at zero and its bias at the raw value giving
    $\gamma = 1, \beta = 0$, so a fresh layer is exactly the identity for every
    context and every activation, while the gradients with respect to the
    generator's weight are not zero (they are
    $\partial L/\partial\gamma \cdot a'(r)\, z^\top$). Cost: $2CK + 2C$
    parameters, whatever the width of the layer it feeds.

    Args:
        num_features: $C$, the width of `h` and of the output.
        cond_dim: $K$, the width of the context.
        key: accepted so that every conditioner is built the same way; the
            layer starts at the identity, so nothing is drawn.
        gamma_activation: `"one_plus_tanh"`, `"exp"`, `"softplus"` or
            `"identity"`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import AffineModulation
        >>> film = AffineModulation(4, 2, key=jax.random.key(0))
        >>> h = jnp.arange(12.0).reshape(3, 4)
        >>> bool((film(h, jnp.ones((3, 2))) == h).all())  # the identity at init
        True
    """

    generator: eqx.nn.Linear
    num_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    gamma_activation: str = eqx.field(static=True)

    def __init__(
        self,
        num_features: int,
        cond_dim: int,
        *,
        key: jax.Array,
        gamma_activation: str = "one_plus_tanh",
    ):
        _check_sizes("AffineModulation", num_features=num_features, cond_dim=cond_dim)
        if gamma_activation not in _GAMMA_ACTIVATIONS:
            raise ValueError(
                f"AffineModulation: gamma_activation must be one of "
                f"{sorted(_GAMMA_ACTIVATIONS)}; got {gamma_activation!r}."
            )
        self.num_features, self.cond_dim = int(num_features), int(cond_dim)
        self.gamma_activation = gamma_activation
        del key
        dtype = jnp.result_type(float)
        raw_one = _GAMMA_ACTIVATIONS[gamma_activation][1]
        bias = np.concatenate(
            [np.full(self.num_features, raw_one), np.zeros(self.num_features)]
        )
        self.generator = _linear_from(
            jnp.zeros((2 * self.num_features, self.cond_dim), dtype),
            jnp.asarray(bias, dtype),
        )

    @classmethod
    def init(
        cls,
        num_features: int,
        cond_dim: int,
        *,
        key: jax.Array,
        gamma_activation: str = "one_plus_tanh",
        pyrox_name: str | None = None,
    ) -> "AffineModulation":
        """Builds the layer from pyrox's arguments (pyrox's `AffineModulation.init`).

        `AffineModulation.init(C, K, key=key, gamma_activation=a)` is
        `AffineModulation(C, K, key=key, gamma_activation=a)`: the same names and
        activations. The layer starts at exactly the identity (generator weight
        and bias both neutral), where pyrox's starts with a random generator
        weight. `pyrox_name` is refused unless it is None (sites are named by
        `flowrox.sample_module`).

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import FiLM
            >>> film = FiLM.init(num_features=8, cond_dim=4, key=jax.random.key(0))
            >>> h = jnp.ones((5, 8))
            >>> bool((film(h, jnp.ones((5, 4))) == h).all())
            True
        """
        refuse_scope_name("AffineModulation.init", pyrox_name)
        return cls(num_features, cond_dim, key=key, gamma_activation=gamma_activation)

    def _raw_and_beta(self, z: ArrayLike) -> tuple[jax.Array, jax.Array]:
        _, z = self._check_inputs(None, z)
        out = apply_linear(self.generator, z)
        raw, beta = einops.rearrange(out, "... (two c) -> two ... c", two=2)
        return raw, beta

    def gamma_and_beta(self, z: ArrayLike) -> tuple[jax.Array, jax.Array]:
        r"""The scale $\gamma(z)$ and shift $\beta(z)$.

        Args:
            z: the context, `(cond_dim,)` or `(..., cond_dim)`.

        Returns:
            `(gamma, beta)`, each of shape `z.shape[:-1] + (num_features,)`.
        """
        raw, beta = self._raw_and_beta(z)
        return _GAMMA_ACTIVATIONS[self.gamma_activation][0](raw), beta

    def log_det(self, z: ArrayLike) -> jax.Array:
        r"""$\log|\det \partial y / \partial h| = \sum_i \log \gamma_i(z)$.

        The Jacobian of $h \mapsto y$ is $\mathrm{diag}(\gamma(z))$. Exact, in
        log space, for the positive activations `"exp"` ($\log\gamma = r$),
        `"softplus"` and `"one_plus_tanh"`.

        Args:
            z: the context, `(cond_dim,)` or `(..., cond_dim)`.

        Returns:
            The log-det, of shape `z.shape[:-1]`.

        Raises:
            ValueError: for `gamma_activation="identity"`, whose $\gamma$ can be
                zero or negative, so that $h \mapsto y$ need not be invertible.

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import AffineModulation
            >>> key = jax.random.key(0)
            >>> film = AffineModulation(4, 2, key=key, gamma_activation="exp")
            >>> film.log_det(jnp.ones((3, 2))).tolist()  # the identity at init
            [0.0, 0.0, 0.0]
        """
        log_gamma = _LOG_GAMMA.get(self.gamma_activation)
        if log_gamma is None:
            raise ValueError(
                "AffineModulation.log_det needs a positive gamma: gamma_activation "
                f"'exp' (the natural choice for flows), 'softplus' or "
                f"'one_plus_tanh'; got {self.gamma_activation!r}, whose gamma can be "
                "zero or negative. Build the layer with gamma_activation='exp'."
            )
        raw, _ = self._raw_and_beta(z)
        return jnp.sum(log_gamma(raw), axis=-1)

    def __call__(self, h: ArrayLike, z: ArrayLike) -> jax.Array:
        h, z = self._check_inputs(h, z)
        gamma, beta = self.gamma_and_beta(z)
        return gamma * h + beta


FiLM = AffineModulation
"""Alias of `AffineModulation`: feature-wise linear modulation."""


class HyperLinear(AbstractConditioner):
    r"""A linear layer whose weight and bias are generated from the context.

    A generator $g$ (an `eqx.nn.Linear` of the context, or an MLP of width
    `hidden`) maps $z$ to the flattened weight $W(z)$, of shape
    `(out_features, in_features)`, and bias $b(z)$, of shape `(out_features,)`,
    of a target layer; then $y = W(z)\, h + b(z)$. Cost: the generator's
    $K \cdot (C_\text{out} C_\text{in} + C_\text{out})$ weights.

    - Shared path, `z` of shape `(cond_dim,)`: one $(W, b)$, generated once and
      applied to every row of `h`.
    - Per-sample path, `z` with one row per row of `h`: the last generator layer
      is contracted with `h` and the context features in one `einsum`, so the
      per-row weight matrices are not built when the context is narrower than
      `h`.

    Initialisation. By default the generator's last layer (weight and bias)
    is drawn from $U(\pm 1/\sqrt{\text{fan-in}})$, equinox's `Linear`
    initialisation, times `init_scale`, so the generated weights are exactly
    `init_scale` times what they would be with `init_scale=1`.
    With `weight_bound` (and/or `bias_bound`), that part is calibrated to a
    standard uniform initialisation instead: the generator's bias is drawn
    from $U(\pm\text{bound})$ and the rows of its weight are scaled by
    `init_scale * bound`, so for $z \sim \mathcal{N}(0, I)$ the generated
    entries spread like $U(\pm\text{bound})$ (standard deviation
    $\text{bound}\sqrt{(1 + \text{init\_scale}^2)/3}$ for a linear generator),
    with the context moving each entry by about `init_scale` times its bound.

    Args:
        in_features: $C_\text{in}$, the width of `h`.
        out_features: $C_\text{out}$, the width of the output.
        cond_dim: $K$, the width of the context.
        key: the key for the generator (and the calibrated biases).
        init_scale: the size of the context-driven part of the generated
            weights at initialisation (see above).
        hidden: if given, the generator is an MLP with one hidden layer of this
            width; otherwise one `eqx.nn.Linear`.
        activation: the hidden activation of the MLP generator.
        weight_bound: calibrates the generated weight to $U(\pm$`weight_bound`$)$.
        bias_bound: calibrates the generated bias to $U(\pm$`bias_bound`$)$.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import HyperLinear
        >>> hyper = HyperLinear(4, 4, 2, key=jax.random.key(0))
        >>> hyper(jnp.ones((3, 4)), jnp.ones(2)).shape  # one (W, b) for all rows
        (3, 4)
        >>> hyper(jnp.ones((3, 4)), jnp.ones((3, 2))).shape  # one (W, b) per row
        (3, 4)
    """

    generator: eqx.nn.Linear | eqx.nn.MLP
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        *,
        key: jax.Array,
        init_scale: float = 0.1,
        hidden: int | None = None,
        activation: Callable[[jax.Array], jax.Array] = jnp.tanh,
        weight_bound: float | None = None,
        bias_bound: float | None = None,
    ):
        sizes = {
            "in_features": in_features,
            "out_features": out_features,
            "cond_dim": cond_dim,
        }
        if hidden is not None:
            sizes["hidden"] = hidden
        _check_sizes("HyperLinear", **sizes)
        if not init_scale >= 0:
            raise ValueError(
                f"HyperLinear: expected init_scale >= 0, got {init_scale}. Pass a "
                "non-negative scale for the context-driven part of the generated "
                "weights (default 0.1; 0 makes them independent of the context)."
            )
        for name, bound in (("weight_bound", weight_bound), ("bias_bound", bias_bound)):
            if bound is not None and not bound > 0:
                raise ValueError(
                    f"HyperLinear: expected {name} > 0 or None, got {bound}. Pass "
                    f"the bound u of the U(-u, u) initialisation to calibrate to, "
                    f"or {name}=None for the default (init_scale times equinox's "
                    "Linear initialisation)."
                )
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.cond_dim = int(cond_dim)
        n_weight = self.out_features * self.in_features
        n_out = n_weight + self.out_features
        hidden_key, weight_key, bias_key = jax.random.split(key, 3)
        fan_in = self.cond_dim if hidden is None else int(hidden)
        # The bounds of the uniform draws of the last layer, row by row: the rows
        # generating the target weight, then those generating the target bias.
        default = 1.0 / math.sqrt(fan_in)
        weight_bounds, bias_bounds = [], []
        for bound, n_rows in ((weight_bound, n_weight), (bias_bound, n_out - n_weight)):
            if bound is None:
                rows = (init_scale * default, init_scale * default)
            else:
                rows = (init_scale * bound * default, bound)
            weight_bounds.append(np.full(n_rows, rows[0]))
            bias_bounds.append(np.full(n_rows, rows[1]))
        dtype = jnp.result_type(float)
        weight_bounds = jnp.asarray(np.concatenate(weight_bounds), dtype)
        bias_bounds = jnp.asarray(np.concatenate(bias_bounds), dtype)
        last = _linear_from(
            weight_bounds[:, None]
            * jax.random.uniform(weight_key, (n_out, fan_in), dtype, -1.0, 1.0),
            bias_bounds * jax.random.uniform(bias_key, (n_out,), dtype, -1.0, 1.0),
        )
        if hidden is None:
            self.generator = last
        else:
            mlp = eqx.nn.MLP(
                self.cond_dim,
                n_out,
                int(hidden),
                1,
                activation=activation,
                key=hidden_key,
            )
            self.generator = eqx.tree_at(lambda g: g.layers[-1], mlp, last)

    @classmethod
    def init(
        cls,
        target_in: int,
        target_out: int,
        cond_dim: int,
        *,
        key: jax.Array,
        init_scale: float = 0.1,
        pyrox_name: str | None = None,
    ) -> "HyperLinear":
        """Builds the layer from pyrox's arguments (pyrox's `HyperLinear.init`).

        pyrox names the target layer's widths `target_in` and `target_out`:
        `HyperLinear.init(target_in=C_in, target_out=C, cond_dim=K, key=key)` is
        `HyperLinear(C_in, C, K, key=key)`. `init_scale` keeps its meaning, the
        factor on the generator's weights; the generator's bias here is drawn
        with it too, where pyrox's starts at zero. `pyrox_name` is refused
        unless it is None (sites are named by `flowrox.sample_module`).

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import HyperLinear
            >>> key = jax.random.key(0)
            >>> hyper = HyperLinear.init(target_in=4, target_out=8, cond_dim=3, key=key)
            >>> hyper.in_features, hyper.out_features
            (4, 8)
            >>> hyper(jnp.ones((6, 4)), jnp.ones((6, 3))).shape
            (6, 8)
        """
        refuse_scope_name("HyperLinear.init", pyrox_name)
        return cls(target_in, target_out, cond_dim, key=key, init_scale=init_scale)

    @property
    def num_features(self) -> int:
        """The width of the output (`out_features`)."""
        return self.out_features

    def _features_and_last_layer(self, z: jax.Array) -> tuple[jax.Array, eqx.nn.Linear]:
        """The input of the generator's last layer, and that layer."""
        features = z
        if isinstance(self.generator, eqx.nn.MLP):
            for layer in self.generator.layers[:-1]:
                features = self.generator.activation(apply_linear(layer, features))
        return features, last_layer(self.generator)

    def weights(self, z: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """The generated weight and bias of the target layer.

        Args:
            z: the context, `(cond_dim,)` or `(..., cond_dim)`.

        Returns:
            `(weight, bias)` of shapes `z.shape[:-1] + (out_features, in_features)`
            and `z.shape[:-1] + (out_features,)`.

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import HyperLinear
            >>> hyper = HyperLinear(4, 4, 2, key=jax.random.key(0))
            >>> weight, bias = hyper.weights(jnp.ones((3, 2)))
            >>> weight.shape, bias.shape
            ((3, 4, 4), (3, 4))
        """
        _, z = self._check_inputs(None, z)
        features, layer = self._features_and_last_layer(z)
        flat = apply_linear(layer, features)
        n_weight = self.out_features * self.in_features
        weight = einops.rearrange(
            flat[..., :n_weight], "... (o i) -> ... o i", o=self.out_features
        )
        return weight, flat[..., n_weight:]

    def __call__(self, h: ArrayLike, z: ArrayLike) -> jax.Array:
        h, z = self._check_inputs(
            h, z, width=self.in_features, width_name="in_features"
        )
        if z.ndim == 1:
            weight, bias = self.weights(z)
            return h @ weight.T + bias
        features, layer = self._features_and_last_layer(z)
        n_weight = self.out_features * self.in_features
        # Rows of the last layer: the flattened target weight (o, i), then the bias.
        weight_map = einops.rearrange(
            layer.weight[:n_weight], "(o i) f -> o i f", o=self.out_features
        )
        weight_offset = einops.rearrange(
            layer.bias[:n_weight], "(o i) -> o i", o=self.out_features
        )
        bias = features @ layer.weight[n_weight:].T + layer.bias[n_weight:]
        return (
            jnp.einsum("...f,oif,...i->...o", features, weight_map, h, optimize=True)
            + h @ weight_offset.T
            + bias
        )
