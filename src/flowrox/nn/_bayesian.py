"""Bayesian conditioners: the conditioners with priors declared on their weights.

Each function builds the ordinary layer, or takes one already built (a trained
layer, say), and returns `flowrox.bayesian(layer, prior, where=...)`: the same
class, with random markers in place of the chosen leaves.
`flowrox.sample_module(name, layer)` inside a NumPyro model draws them and
returns an ordinary layer, so every feature of the layer (both context paths,
`log_det`, `weights`, the calibrated initialisation) works on the draw.
"""

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from .._bayes import AbstractPrior, bayesian
from ..priors import init_matched
from ._conditioners import AffineModulation, ConcatConditioner, HyperLinear
from ._shared import last_layer, refuse_scope_name

Prior = dist.Distribution | AbstractPrior | Mapping | Callable


def _given_or_built(
    owner: str,
    cls: type,
    first: Any,
    sizes: Mapping[str, Any],
    key: jax.Array | None,
    options: Mapping[str, Any],
    build: Callable[[], Any],
) -> Any:
    """`first` if it is a `cls` to wrap; otherwise `build()` from the sizes.

    `sizes` are the size arguments after the first, `options` the construction
    options; a given module brings its own, so none of them may be passed too.
    """
    name = cls.__name__
    if isinstance(first, cls):
        passed = [
            argument
            for argument, value in {**sizes, "key": key, **options}.items()
            if value is not None
        ]
        if passed:
            raise ValueError(
                f"{owner}: got a {name} to wrap and also {', '.join(passed)}; a "
                f"given {name} keeps its own sizes, weights and options. Pass "
                f"{owner}(module, prior_scale=..., centred_on_init=...) with prior "
                "arguments only, or the sizes and key of a new one."
            )
        return first
    if isinstance(first, eqx.Module):
        raise TypeError(
            f"{owner}: expected a module of type {name} to wrap, or the sizes of a "
            f"new one, got a module of type {type(first).__name__}. Pass a {name}, "
            "or the sizes and key to build one."
        )
    missing = [argument for argument, value in sizes.items() if value is None]
    missing += ["key"] if key is None else []
    if missing:
        raise TypeError(
            f"{owner}: building a new {name} needs {', '.join(missing)}, got "
            f"none. Pass them, or pass an existing {name} as the first argument."
        )
    return build()


def _prior_for(
    owner: str,
    prior: Prior | None,
    prior_scale: float | None,
    centred_on_init: bool,
    default_scale: float | None,
) -> Prior:
    """The prior to declare: `prior` as given, or a Normal from `prior_scale`.

    A `prior_scale` of None falls back to `default_scale`; a `default_scale` of
    None means the init-matched Normal (each leaf's root mean square).
    """
    if prior is not None:
        if prior_scale is not None or centred_on_init:
            raise ValueError(
                f"{owner}: give either prior=... or prior_scale/centred_on_init, "
                f"not both; got prior={prior!r}, prior_scale={prior_scale}, "
                f"centred_on_init={centred_on_init}."
            )
        return prior
    scale = default_scale if prior_scale is None else prior_scale
    if scale is None:
        return init_matched(centred_on_init=centred_on_init)
    if not scale > 0:
        raise ValueError(f"{owner}: prior_scale must be positive; got {scale}.")
    if not centred_on_init:
        return dist.Normal(0.0, scale)

    def centred(path: str, leaf: jax.Array) -> dist.Distribution:
        del path
        return dist.Normal(leaf, jnp.full(leaf.shape, scale, leaf.dtype))

    return centred


def _part_matched(
    n_weight: int, centred_on_init: bool, zero_scale: float = 1e-2
) -> Callable[[str, jax.Array], dist.Distribution]:
    """Init-matched Normals for a hyper-network's last layer, one scale per part.

    The rows generating the target weight and those generating the target bias
    are initialised at different scales (see `HyperLinear`'s bounds), so each
    part gets its own root mean square as its prior scale.
    """

    def prior(path: str, leaf: jax.Array) -> dist.Distribution:
        del path
        scales = []
        for part in (leaf[:n_weight], leaf[n_weight:]):
            rms = jnp.sqrt(jnp.mean(jnp.square(part)))
            scales.append(jnp.full(part.shape, jnp.where(rms > 0, rms, zero_scale)))
        loc = leaf if centred_on_init else jnp.zeros_like(leaf)
        return dist.Normal(loc, jnp.concatenate(scales))

    return prior


def BayesianConcatConditioner(
    num_features: int | ConcatConditioner,
    cond_dim: int | None = None,
    *,
    key: jax.Array | None = None,
    prior_scale: float | None = None,
    prior: Prior | None = None,
    centred_on_init: bool = False,
) -> ConcatConditioner:
    """A `ConcatConditioner` with Normal priors on its weight and bias.

    Sites: `{name}/linear.weight` and `{name}/linear.bias`. Either builds a new
    layer, or wraps a given (trained) one: `BayesianConcatConditioner(layer,
    centred_on_init=True)` centres the priors on its weights.
    `BayesianConcatConditioner.init(num_features, cond_dim, prior_std=1.0)`
    builds it from pyrox's arguments (`Normal(0, prior_std)` on both leaves).

    Args:
        num_features: the width of `h` and of the output; or an existing
            `ConcatConditioner` to wrap (then pass no `cond_dim` or `key`).
        cond_dim: the width of the context.
        key: the key for the initial weights.
        prior_scale: the scale of the Normal priors; default: each leaf's
            root mean square (`flowrox.priors.init_matched`), so that prior
            draws of a new layer look like freshly initialised layers.
        prior: any prior accepted by `flowrox.bayesian`, instead of
            `prior_scale`.
        centred_on_init: centre the Normal priors on the layer's values (the
            initial ones of a new layer, the trained ones of a given layer).

    Returns:
        The `ConcatConditioner`, with its leaves declared random.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import flowrox
        >>> from flowrox.nn import BayesianConcatConditioner
        >>> layer = BayesianConcatConditioner(4, 2, key=jax.random.key(0))
        >>> drawn = flowrox.sample_module("concat", layer, rng_key=jax.random.key(1))
        >>> drawn(jnp.ones((3, 4)), jnp.ones(2)).shape
        (3, 4)
    """
    owner = "BayesianConcatConditioner"
    prior = _prior_for(owner, prior, prior_scale, centred_on_init, None)
    layer = _given_or_built(
        owner,
        ConcatConditioner,
        num_features,
        {"cond_dim": cond_dim},
        key,
        {},
        lambda: ConcatConditioner(num_features, cond_dim, key=key),
    )
    return bayesian(layer, prior, where=lambda m: m.linear)


def BayesianAffineModulation(
    num_features: int | AffineModulation,
    cond_dim: int | None = None,
    *,
    key: jax.Array | None = None,
    prior_scale: float | None = None,
    prior: Prior | None = None,
    centred_on_init: bool = False,
    **options: Any,
) -> AffineModulation:
    r"""An `AffineModulation` (FiLM) with Normal priors on its generator.

    Sites: `{name}/generator.weight` and `{name}/generator.bias`; the prior on
    the raw generator output induces the prior on $\gamma(z)$ and $\beta(z)$
    through the chosen `gamma_activation`. With `centred_on_init=True` the
    prior is centred on the identity layer, or, for a given (trained) layer,
    on its generator. `BayesianAffineModulation.init(num_features, cond_dim,
    gamma_activation=..., prior_std=1.0)` builds it from pyrox's arguments.

    Args:
        num_features: the width of `h` and of the output; or an existing
            `AffineModulation` to wrap (then pass no `cond_dim`, `key` or
            options).
        cond_dim: the width of the context.
        key: passed to `AffineModulation`.
        prior_scale: the scale of the Normal priors (default 1.0).
        prior: any prior accepted by `flowrox.bayesian`, instead of
            `prior_scale`.
        centred_on_init: centre the Normal priors on the layer's generator
            (the identity generator of a new layer).
        **options: `AffineModulation`'s options (`gamma_activation`).

    Returns:
        The `AffineModulation`, with its generator declared random.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import flowrox
        >>> from flowrox.nn import BayesianAffineModulation
        >>> film = BayesianAffineModulation(
        ...     4, 2, key=jax.random.key(0), gamma_activation="exp"
        ... )
        >>> drawn = flowrox.sample_module("film", film, rng_key=jax.random.key(1))
        >>> drawn.log_det(jnp.ones((3, 2))).shape
        (3,)
    """
    owner = "BayesianAffineModulation"
    prior = _prior_for(owner, prior, prior_scale, centred_on_init, 1.0)
    layer = _given_or_built(
        owner,
        AffineModulation,
        num_features,
        {"cond_dim": cond_dim},
        key,
        options,
        lambda: AffineModulation(num_features, cond_dim, key=key, **options),
    )
    return bayesian(layer, prior, where=lambda m: m.generator)


def BayesianHyperLinear(
    in_features: int | HyperLinear,
    out_features: int | None = None,
    cond_dim: int | None = None,
    *,
    key: jax.Array | None = None,
    prior_scale: float | None = None,
    prior: Prior | None = None,
    centred_on_init: bool = False,
    **options: Any,
) -> HyperLinear:
    """A `HyperLinear` with priors on its generator only.

    The target weights are generated from the context, not sampled, so the
    sites are the generator's leaves: `{name}/generator.weight` and
    `{name}/generator.bias` for a linear generator
    (`{name}/generator.layers.0.weight`, ... for an MLP). Their number does not
    depend on the width of the target layer.

    The default prior is init-matched: each generator leaf's root mean square
    is its prior scale, with separate scales, in the last layer, for the rows
    generating the target weight and those generating its bias. With
    `weight_bound`/`bias_bound`, a prior draw then generates weights with the
    spread of the calibrated initialisation. A given (trained) layer is
    wrapped as it is, its root mean squares setting the default scales;
    `centred_on_init=True` centres the priors on its generator.

    Args:
        in_features: the width of `h`; or an existing `HyperLinear` to wrap
            (then pass no other size, `key` or options).
        out_features: the width of the output.
        cond_dim: the width of the context.
        key: passed to `HyperLinear`.
        prior_scale: the scale of Normal priors on the generator leaves;
            default: each leaf's root mean square.
        prior: any prior accepted by `flowrox.bayesian`, instead of
            `prior_scale`.
        centred_on_init: centre the Normal priors on the layer's generator
            (the initial one of a new layer).
        **options: `HyperLinear`'s options (`init_scale`, `hidden`,
            `activation`, `weight_bound`, `bias_bound`).

    Returns:
        The `HyperLinear`, with its generator declared random.

    Examples:
        >>> import jax
        >>> import numpyro
        >>> import flowrox
        >>> from flowrox.nn import BayesianHyperLinear
        >>> hyper = BayesianHyperLinear(4, 4, 2, key=jax.random.key(0))
        >>> def model():
        ...     flowrox.sample_module("hyper", hyper)
        >>> trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
        >>> list(trace)
        ['hyper/generator.weight', 'hyper/generator.bias']
    """
    owner = "BayesianHyperLinear"
    default = prior is None and prior_scale is None
    prior = _prior_for(owner, prior, prior_scale, centred_on_init, None)
    layer = _given_or_built(
        owner,
        HyperLinear,
        in_features,
        {"out_features": out_features, "cond_dim": cond_dim},
        key,
        options,
        lambda: HyperLinear(in_features, out_features, cond_dim, key=key, **options),
    )
    if default:
        n_weight = layer.out_features * layer.in_features
        layer = bayesian(
            layer,
            _part_matched(n_weight, centred_on_init),
            where=lambda m: last_layer(m.generator),
        )
    # The rest of the generator (the hidden layers of an MLP generator).
    return bayesian(layer, prior, where=lambda m: m.generator)


# pyrox's Bayesian conditioners draw every weight from the prior and take no key;
# their `init` builders below give the same priors. The key, when given, sets
# only the initial values (where `flowrox.init_to_module` starts a chain).


def _key_or_default(key: jax.Array | None) -> jax.Array:
    return jax.random.key(0) if key is None else key


def _concat_init(
    num_features: int,
    cond_dim: int,
    *,
    prior_std: float = 1.0,
    pyrox_name: str | None = None,
    key: jax.Array | None = None,
) -> ConcatConditioner:
    """`BayesianConcatConditioner` from pyrox's arguments.

    pyrox's `prior_std` is the scale of the Normal priors on the projection's
    weight and bias: `BayesianConcatConditioner.init(C, K, prior_std=s)` is
    `BayesianConcatConditioner(C, K, key=key, prior_scale=s)`, sites
    `{name}/linear.weight` and `{name}/linear.bias`. pyrox takes no key (its
    weights come from the prior); `key` (default `jax.random.key(0)`) sets only
    the initial values. `pyrox_name` is refused unless it is None.

    Examples:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from flowrox.nn import BayesianConcatConditioner
        >>> layer = BayesianConcatConditioner.init(8, 4, prior_std=0.5)
        >>> prior = layer.linear.weight.prior
        >>> isinstance(prior, dist.Normal), float(prior.scale)
        (True, 0.5)
    """
    refuse_scope_name("BayesianConcatConditioner.init", pyrox_name)
    return BayesianConcatConditioner(
        num_features, cond_dim, key=_key_or_default(key), prior_scale=prior_std
    )


def _affine_modulation_init(
    num_features: int,
    cond_dim: int,
    *,
    gamma_activation: str = "one_plus_tanh",
    prior_std: float = 1.0,
    pyrox_name: str | None = None,
    key: jax.Array | None = None,
) -> AffineModulation:
    """`BayesianAffineModulation` from pyrox's arguments.

    `BayesianAffineModulation.init(C, K, gamma_activation=a, prior_std=s)` is
    `BayesianAffineModulation(C, K, key=key, prior_scale=s, gamma_activation=a)`:
    `Normal(0, s)` on the generator's weight and bias (sites
    `{name}/generator.weight`, `{name}/generator.bias`). `key` (default
    `jax.random.key(0)`) sets only the initial values; `pyrox_name` is refused
    unless it is None.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import flowrox
        >>> from flowrox.nn import BayesianAffineModulation
        >>> film = BayesianAffineModulation.init(8, 4, gamma_activation="exp")
        >>> drawn = flowrox.sample_module("film", film, rng_key=jax.random.key(1))
        >>> drawn(jnp.ones((5, 8)), jnp.ones(4)).shape, drawn.gamma_activation
        ((5, 8), 'exp')
    """
    refuse_scope_name("BayesianAffineModulation.init", pyrox_name)
    return BayesianAffineModulation(
        num_features,
        cond_dim,
        key=_key_or_default(key),
        prior_scale=prior_std,
        gamma_activation=gamma_activation,
    )


def _hyper_linear_init(
    target_in: int,
    target_out: int,
    cond_dim: int,
    *,
    prior_std: float = 1.0,
    pyrox_name: str | None = None,
    key: jax.Array | None = None,
) -> HyperLinear:
    r"""`BayesianHyperLinear` from pyrox's arguments.

    `BayesianHyperLinear.init(target_in=C_in, target_out=C, cond_dim=K,
    prior_std=s)` is `BayesianHyperLinear(C_in, C, K, key=key, prior_scale=s)`:
    `Normal(0, s)` on the generator only, whose weight holds
    $K (C C_\text{in} + C)$ numbers. `key` (default `jax.random.key(0)`) sets
    only the initial values; `pyrox_name` is refused unless it is None.

    Examples:
        >>> from flowrox.nn import BayesianHyperLinear
        >>> hyper = BayesianHyperLinear.init(target_in=4, target_out=8, cond_dim=3)
        >>> hyper.generator.weight.value.shape  # K x (C C_in + C), transposed
        (40, 3)
    """
    refuse_scope_name("BayesianHyperLinear.init", pyrox_name)
    return BayesianHyperLinear(
        target_in, target_out, cond_dim, key=_key_or_default(key), prior_scale=prior_std
    )


BayesianConcatConditioner.init = _concat_init
BayesianAffineModulation.init = _affine_modulation_init
BayesianHyperLinear.init = _hyper_linear_init
