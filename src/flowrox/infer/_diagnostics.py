"""Importance-sampling diagnostics of a flow against its target."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.importance import _psis_khat

from ._target import draw, flat_potential, model_potential, proposal_from


class ImportanceDiagnostics(NamedTuple):
    """What `importance_diagnostics` measured.

    - `ess`: the normalised importance-sampling effective sample size,
      $(\\sum w)^2 / (n \\sum w^2) \\in (0, 1]$; 1 when the flow is the target.
    - `khat`: the Pareto-smoothed importance sampling shape $\\hat k$ (Vehtari
      et al.): below 0.5 the weights have finite variance; above 0.7
      importance-sampling estimates cannot be trusted.
    - `kl`: the reverse KL estimate $\\mathrm{KL}(q \\| p) = \\log Z -
      \\mathbb{E}_q[\\log \\tilde p - \\log q]$ with the estimated $\\log Z$.
    - `log_normalizer`, `log_normalizer_se`: the importance-sampling estimate of
      $\\log Z = \\log \\int \\tilde p$ and its standard error (delta method).
    - `elbo`: $\\mathbb{E}_q[\\log \\tilde p - \\log q]$, a lower bound on
      $\\log Z$.
    - `n`: the number of draws.
    """

    ess: float
    khat: float
    kl: float
    log_normalizer: float
    log_normalizer_se: float
    elbo: float
    n: int


def _summarise(log_weights: np.ndarray) -> ImportanceDiagnostics:
    n = log_weights.shape[0]
    finite = np.where(np.isfinite(log_weights), log_weights, -np.inf)
    top = np.max(finite)
    if not np.isfinite(top):
        raise ValueError(
            "importance_diagnostics: every draw has zero or undefined target "
            "density (log weights are -inf or NaN): the flow puts its mass "
            "outside the target's support."
        )
    weights = np.exp(finite - top)
    mean = weights.mean()
    log_normalizer = float(top + np.log(mean))
    ess = float(weights.sum() ** 2 / (n * np.sum(weights**2)))
    se = float(weights.std(ddof=1) / (mean * np.sqrt(n)))
    elbo = float(np.mean(log_weights)) if np.all(np.isfinite(log_weights)) else -np.inf
    return ImportanceDiagnostics(
        ess=ess,
        khat=float(_psis_khat(np.asarray(finite, dtype=np.float64))),
        kl=log_normalizer - elbo,
        log_normalizer=log_normalizer,
        log_normalizer_se=se,
        elbo=elbo,
        n=n,
    )


def importance_diagnostics(
    proposal: Distribution | AutoContinuous,
    log_density: Callable | None = None,
    key: jax.Array | None = None,
    n: int = 4096,
    *,
    model: Callable | None = None,
    params: dict | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
) -> ImportanceDiagnostics:
    r"""How well a flow matches its target, from `n` importance weights.

    Draws $x_i \sim q$ from the flow with their log densities and weighs them by
    $\log w_i = \log\tilde p(x_i) - \log q(x_i)$, with $\tilde p$ the
    unnormalised target. Returns the normalised ESS, PSIS $\hat k$ (NumPyro's
    implementation), the reverse-KL and $\log Z$ estimates (see
    `ImportanceDiagnostics`).

    The target is either `log_density` (a function of one of the flow's draws,
    e.g. one vector) or a NumPyro `model` (its log joint density over the
    unconstrained latent vector, with the Jacobians of NumPyro's transforms, as
    NUTS sees it). With a trained `AutoContinuous` guide as `proposal`, give
    `params`; the model defaults to the guide's.

    Every number comes from the proposal's own draws, so target mass the
    proposal never visits (a second mode, a tail it does not reach) is
    invisible: a guide that misses it can show a high ESS, a small $\hat k$ and
    a small KL while its true KL is several nats. The diagnostics confirm a
    proposal that covers the target; they cannot prove that it does (compare
    with a short NUTS run, as the inference docs describe).

    Args:
        proposal: a flow (any NumPyro distribution with one event dim) or a
            trained `AutoContinuous` guide such as `AutoFlowGuide`.
        log_density: the target's unnormalised log density, or None with a
            model.
        key: the random key.
        n: the number of draws.
        model: a NumPyro model instead of `log_density`.
        params: the guide's trained parameters.
        model_args: the model's positional arguments.
        model_kwargs: the model's keyword arguments.

    Returns:
        An `ImportanceDiagnostics`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox.infer import importance_diagnostics
        >>> target = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
        >>> result = importance_diagnostics(
        ...     target, lambda x: target.log_prob(x) + 1.5, jax.random.key(0), 1000
        ... )
        >>> round(result.ess, 6), round(result.log_normalizer, 6)
        (1.0, 1.5)
    """
    owner = "importance_diagnostics"
    if key is None:
        raise ValueError(f"{owner}: pass a random key, e.g. jax.random.key(0).")
    n = int(n)
    if n < 10:
        raise ValueError(f"{owner}: n must be at least 10 draws; got {n}.")
    if model is None and log_density is None and isinstance(proposal, AutoContinuous):
        model = proposal.model
    resolved = proposal_from(owner, proposal, params)
    model_key, draw_key = jax.random.split(key)
    if model is not None:
        if log_density is not None:
            raise ValueError(f"{owner}: give log_density or model, not both.")
        potential, _, _ = model_potential(
            owner, model_key, model, resolved, model_args, model_kwargs
        )
    else:
        potential = flat_potential(owner, log_density=log_density)

    @jax.jit
    def log_densities(key):
        values, log_q = draw(resolved.distribution, key, (n,))
        finite = jnp.isfinite(log_q) & jnp.all(
            jnp.isfinite(values.reshape(n, -1)), axis=-1
        )
        return -jax.vmap(potential)(values), log_q, finite

    log_p, log_q, finite = (np.asarray(a) for a in log_densities(draw_key))
    bad = int(np.sum(~finite))
    if bad:
        raise ValueError(
            f"{owner}: the flow's own draws or log densities are NaN or infinite "
            f"at {bad} of its {n} draws, so no weight is defined there. Its "
            "parameters are probably not finite (look for NaN in the SVI losses "
            "or in params), or its scales overflow; refit with a smaller "
            "learning rate."
        )
    log_p, log_q = log_p.astype(np.float64), log_q.astype(np.float64)
    return _summarise(log_p - log_q)
