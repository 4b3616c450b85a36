"""`IndependentMetropolis`: an MCMC kernel that proposes from a flow."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import Distribution, TransformedDistribution
from numpyro.distributions.transforms import AffineTransform
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from ..distributions import Flow
from ._target import Proposal, draw, finite_or, model_potential, proposal_from


def _widened(base: Distribution, factor: float) -> TransformedDistribution:
    """`base` stretched by `factor` about its mean (about zero where it has no
    finite mean): NumPyro's affine map `x -> m + factor (x - m)`, whose density
    is exact."""
    try:
        location = jnp.broadcast_to(base.mean, base.shape())
    except NotImplementedError:
        location = jnp.zeros(base.shape())
    location = jnp.where(jnp.isfinite(location), location, 0.0)
    return TransformedDistribution(
        base, AffineTransform((1.0 - factor) * location, factor)
    )


def _defensive(owner: str, proposal: Distribution, fraction, widen: float):
    """The proposal with its base replaced by (1 - fraction) base + fraction
    (base stretched by `widen` about its mean); `fraction=None`: 0.1 for
    flows, else none."""
    is_flow = isinstance(proposal, Flow | TransformedDistribution)
    if fraction is None:
        fraction = 0.1 if is_flow else 0.0
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"{owner}: defensive must be in [0, 1) (the share of proposals drawn "
            f"from the widened base); got {fraction!r}."
        )
    if not widen >= 1.0:
        raise ValueError(
            f"{owner}: defensive_widen must be at least 1 (how much wider the "
            f"defensive component is than the base); got {widen!r}."
        )
    if fraction == 0.0:
        return proposal
    if not is_flow:
        raise ValueError(
            f"{owner}: a defensive mixture widens the base of a flow, but the "
            f"proposal is a {type(proposal).__name__} with no base distribution. "
            "Pass a flowrox.Flow, a TransformedDistribution or a guide, or "
            "defensive=0."
        )
    base = proposal.base_dist
    mixing = dist.Categorical(probs=jnp.array([1.0 - fraction, fraction]))
    mixture = dist.MixtureGeneral(
        mixing, [base, _widened(base, widen)], support=base.support
    )
    if isinstance(proposal, Flow):
        return Flow(
            mixture, proposal.bijection, proposal.condition, support=proposal.support
        )
    return TransformedDistribution(mixture, proposal.transforms)


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

    A flow fitted by reverse KL tends to have lighter tails than its target.
    Where $w$ is large the chain sticks: one draw far in a tail can hold it for
    hundreds of steps. So for a flow or guide the proposal is by default a
    *defensive mixture*: a share `defensive` of the draws come from the flow
    with its base stretched by `defensive_widen` about the base's mean (an
    `AffineTransform` of it), and $q$ is the mixture's exact density. This
    bounds $w$ in the tails for about a tenth of the acceptance rate. Pass
    `defensive=0` to propose from the flow alone.

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
        defensive: the share of proposals drawn from the widened base; default
            0.1 for a flow or guide, 0 for any other distribution (it has no
            base to widen).
        defensive_widen: how much wider (as a scale factor) the defensive
            component's base is than the flow's.

    Examples:
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
        defensive: float | None = None,
        defensive_widen: float = 2.0,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "IndependentMetropolis: give exactly one target: model=... (a "
                "NumPyro model) or potential_fn=... (minus the log density)."
            )
        proposal = proposal_from("IndependentMetropolis", proposal, params)
        self._proposal = Proposal(
            _defensive(
                "IndependentMetropolis",
                proposal.distribution,
                defensive,
                float(defensive_widen),
            ),
            proposal.unpack,
        )
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
