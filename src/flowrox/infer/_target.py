"""What a flow is checked against: a proposal over flat unconstrained vectors
and the target's log density on the same vectors."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.distributions import Distribution, TransformedDistribution
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import initialize_model


class Proposal(NamedTuple):
    """A distribution over flat vectors, and how its vectors map to model sites."""

    distribution: Distribution
    # flat vector -> dict of unconstrained site values (None: no model).
    unpack: Callable | None


def proposal_from(owner: str, proposal, params) -> Proposal:
    """A flow (any NumPyro distribution with one event dim) or a trained
    `AutoContinuous` guide with its `params`."""
    if isinstance(proposal, AutoContinuous):
        if params is None:
            raise ValueError(
                f"{owner}: a guide as proposal needs its trained parameters: pass "
                "params=svi_result.params."
            )
        if proposal.prototype_trace is None:
            raise ValueError(
                f"{owner}: the guide has not been run yet; train it with SVI "
                "first (or call it once) so that it knows the model's latents."
            )
        return Proposal(proposal.get_posterior(params), proposal._unpack_latent)
    if not isinstance(proposal, Distribution):
        raise TypeError(
            f"{owner}: the proposal must be a flow (a NumPyro distribution such as "
            "flowrox.Flow) or a trained AutoContinuous guide (e.g. AutoFlowGuide) "
            f"with params=...; got {type(proposal).__name__}."
        )
    if len(proposal.event_shape) != 1 or proposal.batch_shape != ():
        raise ValueError(
            f"{owner}: the proposal must draw vectors: event shape (dim,), no batch "
            f"shape; got event shape {tuple(proposal.event_shape)} and batch shape "
            f"{tuple(proposal.batch_shape)}."
        )
    return Proposal(proposal, None)


def model_potential(
    owner: str,
    key: jax.Array,
    model: Callable,
    proposal: Proposal,
    model_args=(),
    model_kwargs=None,
    init_strategy: Callable = init_to_uniform,
):
    """The model's potential energy on flat vectors, the unpacking function and
    NumPyro's postprocessing of unconstrained samples."""
    model_kwargs = {} if model_kwargs is None else model_kwargs
    info, potential_gen, postprocess_gen, _ = initialize_model(
        key,
        model,
        dynamic_args=True,
        init_strategy=init_strategy,
        model_args=model_args,
        model_kwargs=model_kwargs,
    )
    site_potential = potential_gen(*model_args, **model_kwargs)
    example = info.z
    flat, unravel = ravel_pytree(example)
    unpack = unravel if proposal.unpack is None else proposal.unpack
    dim = int(proposal.distribution.event_shape[0])
    if flat.shape[0] != dim:
        raise ValueError(
            f"{owner}: the model has {flat.shape[0]} unconstrained latent "
            f"dimensions ({', '.join(example)}), but the proposal draws vectors "
            f"of {dim}."
        )

    def potential(flat_value):
        return site_potential(unpack(flat_value))

    return potential, unpack, postprocess_gen(*model_args, **model_kwargs)


def flat_potential(owner: str, potential_fn=None, log_density=None):
    """A potential energy on the proposal's vectors from either form."""
    if (potential_fn is None) == (log_density is None):
        raise ValueError(f"{owner}: give exactly one target.")
    if potential_fn is not None:
        return potential_fn
    return lambda value: -log_density(value)


def draw(distribution: Distribution, key, sample_shape=()):
    """Samples with their log densities, without inverting a flow."""
    if hasattr(distribution, "sample_and_log_prob"):
        return distribution.sample_and_log_prob(key, sample_shape)
    if isinstance(distribution, TransformedDistribution):
        value, intermediates = distribution.sample_with_intermediates(key, sample_shape)
        return value, distribution.log_prob(value, intermediates)
    value = distribution.sample(key, sample_shape)
    return value, distribution.log_prob(value)


def finite_or(value, fallback):
    return jnp.where(jnp.isfinite(value), value, fallback)
