r"""SIREN (sine networks) and HyperSIREN (NIF: SIREN weights generated from a context).

A sine layer computes $\sin(\omega (W h + b))$. Sitzmann et al. (2020) choose the
initialisation so that every hidden pre-activation $\omega (W h + b)$ has unit
variance whatever the depth: with the inputs of a hidden layer arcsine
distributed on $[-1, 1]$ (variance $1/2$) and $W_{ij} \sim U(\pm u)$,
$u = \sqrt{c / \text{fan-in}} / \omega$, the pre-activation variance is
$\omega^2 \cdot \text{fan-in} \cdot (u^2/3) \cdot (1/2) = c/6$, which is 1 for
$c = 6$. The first layer uses $U(\pm 1/\text{fan-in})$, its frequency
$\omega_0$ (`first_omega`) setting the bandwidth of the field. Here every bias
is drawn with its layer's weight bound, and the readout uses the hidden bound.
"""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._conditioners import HyperLinear
from ._fields import AbstractField, uniform_linear
from ._shared import (
    check_context,
    check_width,
    declared_input_width,
    hidden_depth,
    map_rows,
    refuse_scope_name,
)


def siren_bounds(
    in_features: int, hidden_features: int, depth: int, hidden_omega: float, c: float
) -> tuple[float, ...]:
    """The initialisation bounds of a SIREN's `depth` sine layers and its readout.

    Args:
        in_features: the input width.
        hidden_features: the hidden width.
        depth: the number of sine layers.
        hidden_omega: the frequency of the hidden layers.
        c: the constant of the hidden bound $\\sqrt{c / \\text{fan-in}} / \\omega$.

    Returns:
        `depth + 1` bounds: $1/\\text{in}$ for the first layer, then the hidden
        bound for every later sine layer and for the readout.

    Examples:
        >>> from flowrox.nn import siren_bounds
        >>> tuple(round(b, 4) for b in siren_bounds(2, 24, 2, hidden_omega=30.0, c=6.0))
        (0.5, 0.0167, 0.0167)
    """
    hidden = math.sqrt(c / hidden_features) / hidden_omega
    return (1.0 / in_features,) + (hidden,) * depth


def _check_siren_arguments(owner: str, depth: int, omegas, c: float) -> None:
    if depth < 1:
        raise ValueError(f"{owner}: expected depth of at least 1, got {depth}.")
    if min(omegas) <= 0 or c <= 0:
        raise ValueError(
            f"{owner}: expected first_omega, hidden_omega and c > 0, got "
            f"first_omega={omegas[0]}, hidden_omega={omegas[1]}, c={c}."
        )


# The builders below run as one compiled program: run eagerly, every random
# draw of a new shape would be compiled on its own (seconds for a deep network).


@eqx.filter_jit
def _siren_parts(
    in_features, hidden_features, out_features, depth, first_omega, hidden_omega, c, key
):
    bounds = siren_bounds(in_features, hidden_features, depth, hidden_omega, c)
    omegas = (first_omega,) + (hidden_omega,) * (depth - 1)
    widths = (in_features,) + (hidden_features,) * depth
    keys = jax.random.split(key, depth + 1)
    layers = tuple(
        SineLayer(n_in, hidden_features, key=k, omega=omega, bound=bound)
        for n_in, k, omega, bound in zip(
            widths[:-1], keys[:-1], omegas, bounds[:-1], strict=True
        )
    )
    readout = uniform_linear(hidden_features, out_features, bounds[-1], key=keys[-1])
    return layers, readout


@eqx.filter_jit
def _hyper_siren_parts(
    widths,
    out_features,
    bounds,
    cond_dim,
    latent_dim,
    parameter_width,
    init_scale,
    generator_hidden,
    key,
):
    net_key, *keys = jax.random.split(key, len(widths) + 1)
    default_net = None
    if parameter_width is not None:
        default_net = eqx.nn.MLP(
            cond_dim, latent_dim, parameter_width, 1, activation=jnp.tanh, key=net_key
        )
    fan_outs = (*widths[1:], out_features)
    generators = tuple(
        HyperLinear(
            n_in,
            n_out,
            latent_dim,
            key=k,
            init_scale=init_scale,
            hidden=generator_hidden,
            weight_bound=bound,
            bias_bound=bound,
        )
        for n_in, n_out, k, bound in zip(widths, fan_outs, keys, bounds, strict=True)
    )
    return default_net, generators


class SineLayer(eqx.Module):
    r"""$\sin(\omega (W h + b))$ on the last axis of `h`, weights from $U(\pm u)$.

    Args:
        in_features: the input width (fan-in).
        out_features: the output width.
        key: the key for the weights.
        omega: the frequency $\omega$.
        bound: $u$, the bound of the uniform draw of the weight and the bias.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import SineLayer
        >>> layer = SineLayer(2, 8, key=jax.random.key(0), omega=30.0, bound=0.5)
        >>> layer(jnp.zeros((3, 2))).shape
        (3, 8)
    """

    weight: jax.Array
    bias: jax.Array
    omega: float = eqx.field(static=True)
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        key: jax.Array,
        omega: float,
        bound: float,
    ):
        linear = uniform_linear(in_features, out_features, bound, key=key)
        self.weight, self.bias = linear.weight, linear.bias
        self.omega = float(omega)
        self.in_features, self.out_features = int(in_features), int(out_features)

    def pre_activation(self, h: ArrayLike) -> jax.Array:
        r"""$\omega (W h + b)$, of shape `(..., out_features)`."""
        return self.omega * (h @ self.weight.T + self.bias)

    def __call__(self, h: ArrayLike) -> jax.Array:
        """`(..., in_features)` to `(..., out_features)`."""
        return jnp.sin(self.pre_activation(h))


class SIREN(AbstractField):
    r"""A sine network: `depth` `SineLayer`s, then a linear readout.

    Sitzmann's initialisation (see the module notes): the first layer draws from
    $U(\pm 1/\text{in})$ and uses frequency `first_omega`; the later sine layers
    and the readout draw from $U(\pm\sqrt{c/\text{hidden}}/\omega)$ with
    $\omega$ = `hidden_omega`, which keeps the pre-activations at unit variance
    through depth for $c = 6$. `weight_bounds()` gives each layer's bound.

    Args:
        in_features: the input width.
        hidden_features: the width of every sine layer.
        out_features: the output width.
        depth: the number of sine layers (at least 1).
        key: the key for the weights.
        first_omega: $\omega_0$, the frequency of the first layer.
        hidden_omega: the frequency of the later layers.
        c: the constant of the hidden bound.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import SIREN
        >>> siren = SIREN(2, 32, 1, depth=3, key=jax.random.key(0))
        >>> siren(jnp.zeros((10, 2))).shape, len(siren.weight_bounds())
        ((10, 1), 4)
    """

    layers: tuple[SineLayer, ...]
    readout: eqx.nn.Linear
    first_omega: float = eqx.field(static=True)
    hidden_omega: float = eqx.field(static=True)
    c: float = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        depth: int,
        *,
        key: jax.Array,
        first_omega: float = 30.0,
        hidden_omega: float = 30.0,
        c: float = 6.0,
    ):
        _check_siren_arguments("SIREN", depth, (first_omega, hidden_omega), c)
        self.layers, self.readout = _siren_parts(
            in_features,
            hidden_features,
            out_features,
            depth,
            first_omega,
            hidden_omega,
            c,
            key,
        )
        self.first_omega, self.hidden_omega = float(first_omega), float(hidden_omega)
        self.c = float(c)

    @classmethod
    def init(
        cls,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        depth: int,
        key: jax.Array,
        first_omega: float = 30.0,
        hidden_omega: float = 30.0,
        c: float = 6.0,
        pyrox_name: str | None = None,
    ) -> "SIREN":
        """Builds a SIREN from pyrox's arguments, with pyrox's count of `depth`.

        pyrox's `depth` counts every layer, the linear readout included, so
        `SIREN.init(..., depth=d)` is `SIREN(..., depth=d - 1)`: $d - 1$ sine
        layers (in `layers`) and the readout (in `readout`, not in `layers` as in
        pyrox). `d` must be at least 2. The frequencies and `c` mean the same in
        both. `pyrox_name` is refused unless it is None (sites are named by
        `flowrox.sample_module`).

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import SIREN
            >>> siren = SIREN.init(2, 32, 1, depth=4, key=jax.random.key(0))
            >>> len(siren.layers), siren(jnp.ones((10, 2))).shape  # 3 sine + readout
            (3, (10, 1))
        """
        refuse_scope_name("SIREN.init", pyrox_name)
        return cls(
            in_features,
            hidden_features,
            out_features,
            hidden_depth("SIREN.init", depth),
            key=key,
            first_omega=first_omega,
            hidden_omega=hidden_omega,
            c=c,
        )

    @property
    def omegas(self) -> tuple[float, ...]:
        """The frequency of each sine layer."""
        return tuple(layer.omega for layer in self.layers)

    def weight_bounds(self) -> tuple[float, ...]:
        """The initialisation bound of each sine layer, then of the readout.

        Weights and biases of a layer are drawn from $U(\\pm$bound$)$.
        """
        return siren_bounds(
            self.in_features,
            self.hidden_features,
            len(self.layers),
            self.hidden_omega,
            self.c,
        )

    def input_layer(self, in_features: int, *, key: jax.Array) -> SineLayer:
        """A fresh first sine layer for `in_features` inputs ($U(\\pm 1/$in$)$)."""
        return SineLayer(
            in_features,
            self.hidden_features,
            key=key,
            omega=self.first_omega,
            bound=1.0 / in_features,
        )


class HyperSIREN(eqx.Module):
    r"""NIF: a SIREN whose every weight is generated from a context.

    Neural implicit flow (Pan, Brunton & Kutz, 2023). A parameter network maps
    the context $z$ (`cond_dim`) to a latent $\mu$ (`latent_dim`); one
    `HyperLinear` per sine layer, and one for the readout, generates that
    layer's weight and bias from $\mu$; then the SIREN runs with them:
    $h_{l+1} = \sin(\omega_l (W_l(\mu) h_l + b_l(\mu)))$,
    $y = W_\text{out}(\mu) h_L + b_\text{out}(\mu)$.

    Calibration: each `HyperLinear` is built with `weight_bound = bias_bound` =
    the SIREN bound of its layer (`weight_bounds()`), so at initialisation the
    generated weights spread like a SIREN's, and the context moves them by about
    `init_scale` times that bound. The parameter network is applied row by row
    (vmapped) and never called at construction.

    With `z` one vector (shared path) the weights are generated once for every
    row of `x`; with one row of `z` per row of `x` (per-sample path) each row
    gets its own network.

    Args:
        in_features: the input width.
        hidden_features: the width of every sine layer.
        out_features: the output width.
        depth: the number of sine layers (at least 1).
        cond_dim: the context width.
        key: the key for the generators and the default parameter network.
        parameter_net: a module mapping one context `(cond_dim,)` to a latent
            `(latent_dim,)`; default: an MLP with one tanh hidden layer of width
            `parameter_width`.
        latent_dim: the latent width (default: `cond_dim`).
        parameter_width: the hidden width of the default parameter network.
        first_omega: the frequency of the first sine layer.
        hidden_omega: the frequency of the later sine layers.
        c: the constant of the hidden SIREN bound.
        init_scale: the size of the context-driven part of the generated
            weights at initialisation, relative to each layer's bound.
        generator_hidden: if given, each generator is an MLP of this width
            (see `HyperLinear`'s `hidden`); otherwise linear in the latent.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import HyperSIREN
        >>> nif = HyperSIREN(2, 16, 1, depth=2, cond_dim=3, key=jax.random.key(0))
        >>> nif(jnp.ones((10, 2)), jnp.ones(3)).shape  # one context for all rows
        (10, 1)
    """

    parameter_net: Callable
    layers: tuple[HyperLinear, ...]
    readout: HyperLinear
    in_features: int = eqx.field(static=True)
    hidden_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    first_omega: float = eqx.field(static=True)
    hidden_omega: float = eqx.field(static=True)
    c: float = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        depth: int,
        cond_dim: int,
        *,
        key: jax.Array,
        parameter_net: Callable | None = None,
        latent_dim: int | None = None,
        parameter_width: int = 32,
        first_omega: float = 30.0,
        hidden_omega: float = 30.0,
        c: float = 6.0,
        init_scale: float = 0.1,
        generator_hidden: int | None = None,
    ):
        _check_siren_arguments("HyperSIREN", depth, (first_omega, hidden_omega), c)
        self.in_features, self.hidden_features = int(in_features), int(hidden_features)
        self.out_features, self.cond_dim = int(out_features), int(cond_dim)
        self.latent_dim = self.cond_dim if latent_dim is None else int(latent_dim)
        self.first_omega, self.hidden_omega = float(first_omega), float(hidden_omega)
        self.c = float(c)
        widths = (self.in_features,) + (self.hidden_features,) * depth
        default_net, generators = _hyper_siren_parts(
            widths,
            self.out_features,
            siren_bounds(
                self.in_features, self.hidden_features, depth, self.hidden_omega, c
            ),
            self.cond_dim,
            self.latent_dim,
            parameter_width if parameter_net is None else None,
            init_scale,
            generator_hidden,
            key,
        )
        self.parameter_net = default_net if parameter_net is None else parameter_net
        self.layers, self.readout = generators[:-1], generators[-1]

    @classmethod
    def init(
        cls,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        depth: int,
        cond_dim: int,
        parameter_net: Callable,
        key: jax.Array,
        first_omega: float = 30.0,
        hidden_omega: float = 30.0,
        c: float = 6.0,
        init_scale: float = 0.1,
        context_dim: int | None = None,
    ) -> "HyperSIREN":
        """Builds a NIF from pyrox's arguments and meanings (pyrox's `HyperSIREN`).

        Two of pyrox's arguments mean something else here:

        - `depth` counts every layer, the readout included: `depth=d` gives
          $d - 1$ sine layers and the readout (`HyperSIREN(..., depth=d - 1)`).
        - `cond_dim` is the width of what `parameter_net` returns, the latent
          that drives the generators: flowrox's `latent_dim`. flowrox's
          `cond_dim` is the width of the context the parameter network reads,
          taken from `context_dim`, or else from the network's own `in_size` or
          `in_features` (an `eqx.nn.MLP` declares it).

        So `HyperSIREN.init(2, 32, 1, depth=5, cond_dim=3, parameter_net=net,
        key=key)` with `net` mapping `(P,)` to `(3,)` is `HyperSIREN(2, 32, 1,
        4, P, key=key, parameter_net=net, latent_dim=3)`. `init_scale` keeps its
        meaning (the size of the context-driven part of the generated weights,
        relative to each layer's SIREN bound); the generators are calibrated as
        in the constructor, so the generated weights start with a SIREN's
        spread. Calling `HyperSIREN(...)` itself, as pyrox's function is
        called, builds flowrox's HyperSIREN: there `depth` counts sine layers.

        Examples:
            >>> import equinox as eqx
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import HyperSIREN
            >>> key = jax.random.key(0)
            >>> net = eqx.nn.MLP(6, 3, 16, 1, key=key)  # context (6,) -> latent (3,)
            >>> nif = HyperSIREN.init(
            ...     2, 32, 1, depth=5, cond_dim=3, parameter_net=net, key=key
            ... )
            >>> len(nif.layers), nif.cond_dim, nif.latent_dim
            (4, 6, 3)
            >>> nif(jnp.ones((10, 2)), jnp.ones(6)).shape
            (10, 1)
        """
        n_sine = hidden_depth("HyperSIREN.init", depth)
        declared = declared_input_width(parameter_net)
        if context_dim is None:
            context_dim = declared
        if context_dim is None:
            raise ValueError(
                "HyperSIREN.init: pyrox's cond_dim is the width of the latent that "
                f"parameter_net returns (here {cond_dim}); the width of the "
                "context it reads cannot be read from the parameter network (a "
                f"{type(parameter_net).__name__}, which declares no in_size or "
                "in_features). Pass context_dim=... (the width of z in "
                "nif(x, z))."
            )
        if declared is not None and declared != context_dim:
            raise ValueError(
                f"HyperSIREN.init: got context_dim={context_dim}, but parameter_net "
                f"reads contexts of width {declared}. Pass context_dim={declared} "
                "or leave it out."
            )
        return cls(
            in_features,
            hidden_features,
            out_features,
            n_sine,
            context_dim,
            key=key,
            parameter_net=parameter_net,
            latent_dim=cond_dim,
            first_omega=first_omega,
            hidden_omega=hidden_omega,
            c=c,
            init_scale=init_scale,
        )

    @property
    def omegas(self) -> tuple[float, ...]:
        """The frequency of each sine layer."""
        return (self.first_omega,) + (self.hidden_omega,) * (len(self.layers) - 1)

    def weight_bounds(self) -> tuple[float, ...]:
        """The SIREN bound each generator is calibrated to (sine layers, readout)."""
        return siren_bounds(
            self.in_features,
            self.hidden_features,
            len(self.layers),
            self.hidden_omega,
            self.c,
        )

    def latent(self, z: ArrayLike) -> jax.Array:
        """The parameter network's latent for contexts `z` `(..., cond_dim)`."""
        z = check_width("HyperSIREN", "z", z, self.cond_dim, "cond_dim")
        latent = map_rows(self.parameter_net, z)
        if latent.shape != (*z.shape[:-1], self.latent_dim):
            raise ValueError(
                "HyperSIREN: the parameter network should map a context of shape "
                f"({self.cond_dim},) to a latent of shape ({self.latent_dim},) "
                f"(latent_dim), got {latent.shape[z.ndim - 1 :]}. Pass "
                "latent_dim=... matching the parameter network's output."
            )
        return latent

    def weights(self, z: ArrayLike) -> tuple[tuple[jax.Array, jax.Array], ...]:
        """The generated `(weight, bias)` of every sine layer and of the readout.

        Args:
            z: contexts of shape `(..., cond_dim)`.

        Returns:
            One `(weight, bias)` per layer, of shapes `(..., fan_out, fan_in)`
            and `(..., fan_out)`.
        """
        latent = self.latent(z)
        return tuple(layer.weights(latent) for layer in (*self.layers, self.readout))

    def __call__(self, x: ArrayLike, z: ArrayLike) -> jax.Array:
        """The generated SIREN at `x` `(..., in_features)`: `(..., out_features)`.

        Args:
            x: inputs of shape `(..., in_features)`.
            z: one context `(cond_dim,)` for all rows, or one per row,
                `(..., cond_dim)` with the leading shape of `x`.
        """
        x = check_width("HyperSIREN", "x", x, self.in_features, "in_features")
        z, _ = check_context("HyperSIREN", x, z, self.cond_dim)
        latent = self.latent(z)
        h = x
        for layer, omega in zip(self.layers, self.omegas, strict=True):
            h = jnp.sin(omega * layer(h, latent))
        return self.readout(h, latent)
