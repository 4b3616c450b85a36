"""`IndependentMetropolis`: an MCMC kernel that proposes from a flow."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from ._target import draw, finite_or, model_potential, proposal_from


class IMHState(NamedTuple):
    """The state of `IndependentMetropolis`.

    Fields: `i` (the iteration), `z` (the current sample: a dict of
    unconstrained site values with a model, the vector with `potential_fn`),
    `potential_energy`, `log_weight` (log target minus log proposal at `z`),
    `accept_prob` and `accepted` (of the last move), `mean_accept_prob` (over
    the iterations so far), `rng_key`.
    """

    i: jax.Array
    z: object
    flat_z: jax.Array
    potential_energy: jax.Array
    log_weight: jax.Array
    accept_prob: jax.Array
    accepted: jax.Array
    mean_accept_prob: jax.Array
    rng_key: jax.Array


class IndependentMetropolis(MCMCKernel):
    r"""Independence Metropolis-Hastings with a flow as the proposal.

    Every step draws $x' \sim q$ from the proposal, independently of the current
    $x$, and accepts it with probability
    $\min(1, w(x')/w(x))$, $w = p/q$ (the unnormalised target over the
    proposal). With $q = p$ every move is accepted and the chain is a sequence
    of independent exact draws; a good flow gives near-independent draws at the
    cost of one flow sample and one target evaluation per step, with no
    gradients. The chain starts from a proposal draw.

    Runs under `numpyro.infer.MCMC` with `chain_method="sequential"` or
    `"parallel"`. Pass `extra_fields=("accept_prob", "accepted")` to
    `MCMC.run` to record the acceptance of every step.

    Args:
        proposal: a flow over the unconstrained latent vector (any NumPyro
            distribution with event shape `(dim,)`, e.g. a `flowrox.Flow`), or
            a trained `AutoContinuous` guide such as `AutoFlowGuide` (then
            give `params`).
        model: a NumPyro model (its latent sites are unpacked from the vector
            as the guide packs them, or in `ravel_pytree` order for a flow).
        potential_fn: instead of a model, the potential energy (minus the log
            target density) of the proposal's vectors.
        params: the guide's trained parameters (`svi_result.params`).
        init_strategy: only used to discover the model's latent sites.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from flowrox.infer import IndependentMetropolis
        >>> target = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
        >>> kernel = IndependentMetropolis(
        ...     target, potential_fn=lambda x: -target.log_prob(x)
        ... )
        >>> mcmc = MCMC(kernel, num_warmup=10, num_samples=100, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), extra_fields=("accept_prob",))
        >>> float(mcmc.get_extra_fields()["accept_prob"].min())  # exact proposal
        1.0
    """

    sample_field = "z"

    def __init__(
        self,
        proposal: Distribution | AutoContinuous,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        params: dict | None = None,
        init_strategy: Callable = init_to_uniform,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "IndependentMetropolis: give exactly one target: model=... (a "
                "NumPyro model) or potential_fn=... (minus the log density)."
            )
        self._proposal = proposal_from("IndependentMetropolis", proposal, params)
        self._model = model
        self._potential_fn = potential_fn
        self._init_strategy = init_strategy
        self._unpack = None
        self._postprocess_fn = None

    @property
    def model(self):
        return self._model

    @property
    def default_fields(self):
        return ("z",)

    def get_diagnostics_str(self, state):
        return f"acc. prob={float(state.mean_accept_prob):.2f}"

    def postprocess_fn(self, args, kwargs):
        if self._postprocess_fn is None:
            return lambda z: z
        return self._postprocess_fn

    def _log_weight(self, flat, log_q):
        potential = self._potential(flat)
        # A draw where the target is undefined is never accepted.
        return potential, finite_or(-potential - log_q, -jnp.inf)

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        if not is_prng_key(rng_key):
            raise ValueError(
                "IndependentMetropolis runs one chain per call: use "
                "chain_method='sequential' or 'parallel' for several chains."
            )
        model_key, draw_key, rng_key = jax.random.split(rng_key, 3)
        if self._model is not None:
            self._potential, self._unpack, self._postprocess_fn = model_potential(
                "IndependentMetropolis",
                model_key,
                self._model,
                self._proposal,
                model_args,
                model_kwargs,
                self._init_strategy,
            )
        else:
            self._potential, self._unpack = self._potential_fn, lambda flat: flat
        flat, log_q = draw(self._proposal.distribution, draw_key)
        if init_params is not None:
            if self._model is not None:
                raise ValueError(
                    "IndependentMetropolis starts from a proposal draw; init_params "
                    "are only accepted with potential_fn (as a vector)."
                )
            flat = jnp.asarray(init_params)
            log_q = self._proposal.distribution.log_prob(flat)
        potential, log_weight = self._log_weight(flat, log_q)
        zero = jnp.zeros((), flat.dtype)
        return IMHState(
            jnp.array(0),
            self._unpack(flat),
            flat,
            potential,
            log_weight,
            zero,
            jnp.array(False),
            zero,
            rng_key,
        )

    def sample(self, state, model_args, model_kwargs):
        rng_key, draw_key, accept_key = jax.random.split(state.rng_key, 3)
        proposal, log_q = draw(self._proposal.distribution, draw_key)
        potential, log_weight = self._log_weight(proposal, log_q)
        log_ratio = finite_or(log_weight - state.log_weight, -jnp.inf)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accepted = jax.random.uniform(accept_key) < accept_prob
        flat = jnp.where(accepted, proposal, state.flat_z)
        i = state.i + 1
        mean_accept_prob = (
            state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / i
        )
        return IMHState(
            i,
            self._unpack(flat),
            flat,
            jnp.where(accepted, potential, state.potential_energy),
            jnp.where(accepted, log_weight, state.log_weight),
            accept_prob,
            accepted,
            mean_accept_prob,
            rng_key,
        )
