"""Bayesian SIREN and HyperSIREN: the ordinary classes with priors on chosen leaves.

These are thin constructors: each builds the deterministic module, or takes
one already built (a trained decoder, say), and returns
`flowrox.bayesian(module, prior, where=...)`, so the result is still a `SIREN`
or a `HyperSIREN` (holding random markers), and `flowrox.sample_module(name, ...)`
inside a NumPyro model returns an ordinary one with every feature intact.
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from .._bayes import bayesian
from ._bayesian import Prior, _given_or_built, _part_matched, _prior_for
from ._shared import last_layer
from ._siren import SIREN, HyperSIREN


def _matched_normal(leaf: jax.Array, scale: float, centred_on_init: bool):
    loc = leaf if centred_on_init else jnp.zeros_like(leaf)
    return dist.Normal(loc, jnp.full(leaf.shape, scale, leaf.dtype))


def BayesianSIREN(
    in_features: int | SIREN,
    hidden_features: int | None = None,
    out_features: int | None = None,
    depth: int | None = None,
    *,
    key: jax.Array | None = None,
    first_omega: float | None = None,
    hidden_omega: float | None = None,
    c: float | None = None,
    prior_scale: float | None = None,
    prior: Prior | None = None,
    centred_on_init: bool = False,
) -> SIREN:
    r"""A `SIREN` with Normal priors matched to its initialisation regime.

    By default every weight and bias of layer $l$ (sine layers, then the
    readout) gets the prior $\mathcal{N}(0, u_l^2 / 3)$, where $u_l$ is the
    layer's SIREN bound (`SIREN.weight_bounds()`): $u_l/\sqrt{3}$ is the
    standard deviation of the $U(\pm u_l)$ initialisation, so prior draws are
    networks in Sitzmann's regime (unit-variance pre-activations through
    depth), whatever the width.
    Sites: `f"{name}/layers.{l}.weight"`, `.bias`, `f"{name}/readout.weight"`,
    `.bias`. A given (trained) `SIREN` is wrapped as it is, with the scales of
    its own regime: `BayesianSIREN(siren, centred_on_init=True)` centres the
    priors on its trained weights.

    Args:
        in_features: the input width; or an existing `SIREN` to wrap (then
            pass no other size, `key`, frequency or `c`).
        hidden_features: the width of every sine layer.
        out_features: the output width.
        depth: the number of sine layers.
        key: the key for the initial weights.
        first_omega: the frequency of the first layer (default 30.0).
        hidden_omega: the frequency of the later layers (default 30.0).
        c: the constant of the hidden bound (default 6.0).
        prior_scale: if given, one Normal scale for every leaf instead of the
            matched scales.
        prior: any prior accepted by `flowrox.bayesian`, instead of the
            matched Normals.
        centred_on_init: centre the Normal priors on the network's weights
            (the initial ones of a new network, the trained ones of a given
            one).

    Returns:
        The `SIREN`, with a random marker for every weight and bias.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import flowrox
        >>> from flowrox.nn import BayesianSIREN
        >>> model = BayesianSIREN(1, 16, 1, depth=2, key=jax.random.key(0))
        >>> siren = flowrox.sample_module("f", model, rng_key=jax.random.key(1))
        >>> siren(jnp.zeros((5, 1))).shape
        (5, 1)
    """
    regime = {"first_omega": first_omega, "hidden_omega": hidden_omega, "c": c}
    siren = _given_or_built(
        "BayesianSIREN",
        SIREN,
        in_features,
        {
            "hidden_features": hidden_features,
            "out_features": out_features,
            "depth": depth,
        },
        key,
        regime,
        lambda: SIREN(
            in_features,
            hidden_features,
            out_features,
            depth,
            key=key,
            **{name: value for name, value in regime.items() if value is not None},
        ),
    )
    if prior is not None or prior_scale is not None:
        prior = _prior_for(
            "BayesianSIREN", prior, prior_scale, centred_on_init, default_scale=None
        )
        return bayesian(siren, prior)
    return _declare_siren_priors(siren, centred_on_init)


@eqx.filter_jit
def _declare_siren_priors(siren: SIREN, centred_on_init: bool) -> SIREN:
    # One compiled program: run eagerly, each small array operation building
    # the priors would be compiled on its own.
    matched = {}
    layers = (*siren.layers, siren.readout)
    paths = [f"layers.{index}" for index in range(len(siren.layers))] + ["readout"]
    for path, layer, bound in zip(paths, layers, siren.weight_bounds(), strict=True):
        scale = bound / math.sqrt(3.0)
        for leaf_name in ("weight", "bias"):
            leaf = getattr(layer, leaf_name)
            matched[f"{path}.{leaf_name}"] = _matched_normal(
                leaf, scale, centred_on_init
            )
    return bayesian(siren, matched)


def _generators(nif: HyperSIREN) -> tuple:
    return (*(layer.generator for layer in nif.layers), nif.readout.generator)


def BayesianHyperSIREN(
    in_features: int | HyperSIREN,
    hidden_features: int | None = None,
    out_features: int | None = None,
    depth: int | None = None,
    cond_dim: int | None = None,
    *,
    key: jax.Array | None = None,
    prior_scale: float | None = None,
    prior: Prior | None = None,
    centred_on_init: bool = False,
    parameter_net_prior: Prior | None = None,
    **options: Any,
) -> HyperSIREN:
    r"""A `HyperSIREN` with priors on its generators' weights only.

    The target SIREN weights are generated, not sampled, so the number of sites
    (and the cost of inference) depends on the generators, not on the width of
    the SIREN: for a linear generator, two sites per layer,
    `f"{name}/layers.{l}.generator.weight"` and `.bias` (and
    `readout.generator.*`). By default the priors are init-matched, as in
    `BayesianHyperLinear`: each leaf's initial root mean square is its Normal
    scale, with separate scales, in a generator's last layer, for the rows
    generating the target weight and those generating its bias. Since the
    generators are calibrated to the SIREN bounds, prior draws generate weights
    with SIREN's spread. The parameter network stays deterministic (train it,
    or register it with `flowrox.param_module`) unless `parameter_net_prior` is
    given.

    A given (trained) `HyperSIREN`, such as the decoder of
    `fit_function_prior`, is wrapped as it is: the default scales are the root
    mean squares of its trained generator parts, and `centred_on_init=True`
    centres the priors on its trained generators, so that the posterior can
    move the generated SIREN away from the trained one where data ask for it.

    Args:
        in_features: the input width; or an existing `HyperSIREN` to wrap
            (then pass no other size, `key` or options).
        hidden_features: the width of every sine layer.
        out_features: the output width.
        depth: the number of sine layers.
        cond_dim: the context width.
        key: the key for the initial weights.
        prior_scale: if given, one Normal scale for every generator leaf
            instead of the init-matched scales.
        prior: any prior accepted by `flowrox.bayesian`, for the generator
            leaves, instead of the init-matched Normals.
        centred_on_init: centre the Normal priors on the network's values
            (the initial ones of a new network, the trained ones of a given
            one).
        parameter_net_prior: if given, a prior for the parameter network too.
        **options: passed to `HyperSIREN` (`parameter_net`, `latent_dim`,
            `first_omega`, `hidden_omega`, `c`, `init_scale`, ...).

    Returns:
        The `HyperSIREN`, with random markers in its generators.

    Examples:
        >>> import jax
        >>> import numpyro
        >>> import flowrox
        >>> from flowrox.nn import BayesianHyperSIREN
        >>> model = BayesianHyperSIREN(1, 16, 1, 1, cond_dim=2, key=jax.random.key(0))
        >>> def prior():
        ...     flowrox.sample_module("nif", model)  # an ordinary HyperSIREN
        >>> trace = numpyro.handlers.trace(numpyro.handlers.seed(prior, 0)).get_trace()
        >>> print(*trace, sep="\n")
        nif/layers.0.generator.weight
        nif/layers.0.generator.bias
        nif/readout.generator.weight
        nif/readout.generator.bias
    """
    nif = _given_or_built(
        "BayesianHyperSIREN",
        HyperSIREN,
        in_features,
        {
            "hidden_features": hidden_features,
            "out_features": out_features,
            "depth": depth,
            "cond_dim": cond_dim,
        },
        key,
        options,
        lambda: HyperSIREN(
            in_features,
            hidden_features,
            out_features,
            depth,
            cond_dim,
            key=key,
            **options,
        ),
    )
    default = prior is None and prior_scale is None
    prior = _prior_for("BayesianHyperSIREN", prior, prior_scale, centred_on_init, None)
    return _declare_hyper_siren_priors(
        nif, prior, default, centred_on_init, parameter_net_prior
    )


@eqx.filter_jit
def _declare_hyper_siren_priors(
    nif: HyperSIREN, prior, default, centred_on_init, parameter_net_prior
) -> HyperSIREN:
    # One compiled program for the priors' scales (see `_declare_siren_priors`).
    if default:
        for index, layer in enumerate((*nif.layers, nif.readout)):
            part_matched = _part_matched(
                layer.out_features * layer.in_features, centred_on_init
            )
            nif = bayesian(
                nif,
                part_matched,
                where=lambda m, index=index: last_layer(_generators(m)[index]),
            )
    # The rest of the generators (the hidden layers of MLP generators).
    nif = bayesian(nif, prior, where=_generators)
    if parameter_net_prior is not None:
        nif = bayesian(nif, parameter_net_prior, where=lambda m: m.parameter_net)
    return nif
