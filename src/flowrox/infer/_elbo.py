r"""The sticking-the-landing ELBO (Roeder, Wu and Duvenaud, 2017).

For a reparameterised guide $z = g_\phi(\epsilon)$ the ELBO's gradient has two
parts: the path through the sample, and the score $\nabla_\phi \log
q_\phi(z)$ at fixed $z$, whose expectation is zero. Dropping the score (by
evaluating $\log q$ at parameters held fixed) leaves an unbiased estimator whose
variance vanishes when the guide equals the posterior, so SGD settles on the
optimum instead of jittering around it.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from numpyro.handlers import replay, seed, substitute, trace
from numpyro.infer.elbo import ELBO
from numpyro.infer.util import compute_log_probs

from ..train import sticking_the_landing

__all__ = ["ForwardKL", "StickingTheLandingELBO"]


def _total(log_probs) -> jax.Array:
    return sum(jax.tree.leaves(log_probs), start=jnp.zeros(()))


def _draws(guide, key, params, args, kwargs) -> dict:
    """The guide's unobserved sample sites, drawn at `params`."""
    guide_trace = trace(substitute(seed(guide, key), data=params)).get_trace(
        *args, **kwargs
    )
    return {
        name: site
        for name, site in guide_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _log_densities(model, guide, keys, draws, args, kwargs, guide_params, params):
    """log p(x, z) and log q(z) at the given draws `z`, the guide's density at
    `guide_params` and the model's at `params`."""
    model_key, guide_key = keys
    guide_log_probs, guide_trace = compute_log_probs(
        substitute(seed(guide, guide_key), data=draws), args, kwargs, guide_params
    )
    model_log_probs, _ = compute_log_probs(
        replay(seed(model, model_key), guide_trace), args, kwargs, params
    )
    return _total(model_log_probs), _total(guide_log_probs)


class StickingTheLandingELBO(ELBO):
    r"""`Trace_ELBO` with the sticking-the-landing gradient estimator.

    The loss is the same number as `numpyro.infer.Trace_ELBO`'s (the negative
    ELBO, averaged over `num_particles` draws); only its gradient differs: the
    guide's log density is evaluated at the draw with its parameters held
    fixed, so the zero-mean score term is left out. The estimator stays
    unbiased and its variance goes to zero as the guide reaches the posterior,
    which lets a flow guide land on the posterior's mean and spread rather than
    jitter around them at the optimiser's noise floor.

    The guide's draws must be reparameterised (`has_rsample`), and its log
    density is evaluated once more per draw: for a flow guide that is the
    density direction (one pass for a coupling flow; a sequential pass for an
    IAF).

    Args:
        num_particles: the number of draws per estimate.
        vectorize_particles: as for `numpyro.infer.Trace_ELBO`.

    Examples:
        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> import optax
        >>> from numpyro.infer import SVI
        >>> from numpyro.infer.autoguide import AutoNormal
        >>> from flowrox.infer import StickingTheLandingELBO
        >>> def model():
        ...     z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(z, 1.0), obs=1.0)
        >>> guide = AutoNormal(model)
        >>> svi = SVI(model, guide, optax.adam(0.05), StickingTheLandingELBO(4))
        >>> result = svi.run(jax.random.key(0), 1000, progress_bar=False)
        >>> loc = float(result.params["z_auto_loc"])  # the posterior mean is 0.5
        >>> abs(loc - 0.5) < 0.02
        True
    """

    def __init__(
        self, num_particles: int = 1, vectorize_particles: bool | Callable = True
    ):
        super().__init__(num_particles, vectorize_particles)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        def draw(params, key):
            sites = _draws(guide, key, params, args, kwargs)
            for name, site in sites.items():
                if not site["fn"].has_rsample:
                    raise ValueError(
                        "StickingTheLandingELBO needs a reparameterised guide, but "
                        f"the guide's site {name!r} draws from "
                        f"{type(site['fn']).__name__}, which has no rsample. Use "
                        "numpyro.infer.Trace_ELBO (or TraceGraph_ELBO) for it."
                    )
            return {name: site["value"] for name, site in sites.items()}

        def particle(key):
            keys = jax.random.split(key)

            def log_densities(guide_params, draws):
                return _log_densities(
                    model, guide, keys, draws, args, kwargs, guide_params, param_map
                )

            # The guide's density at its own draws, with the parameters fixed:
            # gradients reach it only through the draws.
            _, (log_p, log_q) = sticking_the_landing(
                draw, log_densities, param_map, keys[1]
            )
            return log_p - log_q

        keys = jax.random.split(rng_key, self.num_particles)
        return -jnp.mean(self.vectorize_particles_fn(particle, keys))


class ForwardKL(ELBO):
    r"""The forward (mass-covering) KL from the posterior to the guide, by
    self-normalised importance sampling with the guide's own draws.

    SVI with an ELBO minimises the reverse KL $\mathrm{KL}(q\,\|\,p)$, which is
    mode-seeking: a guide trained on it is usually lighter-tailed than the
    posterior, and misses the posterior's hard-to-reach corners (the neck of a
    funnel) most. That is the wrong way round for NeuTra and independence
    Metropolis, whose chains pay where the guide is too narrow. This loss's
    gradient estimates that of $\mathrm{KL}(p\,\|\,q)$ instead, which is
    mass-covering (Jerfel et al., 2021): with $K$ draws $z_k \sim q$ and
    self-normalised weights $\bar w_k \propto p(x, z_k) / q(z_k)$ (both held
    fixed), it is $-\sum_k \bar w_k \nabla_\phi \log q_\phi(z_k)$ for the
    guide's parameters and $-\sum_k \bar w_k \nabla_\theta \log p_\theta(x,
    z_k)$ for the model's (the gradient of $-\log p_\theta(x)$). The reported
    loss is $-\log \frac{1}{K}\sum_k w_k$, the negative importance-weighted
    bound on $\log p(x)$, which is at most `Trace_ELBO`'s and approaches
    $-\log p(x)$ as the guide improves.

    The weights must not be degenerate, so use it to refine a guide already
    trained on an ELBO (`StickingTheLandingELBO`), with many particles: the
    estimator is consistent in $K$, not unbiased. The guide's draws need not be
    reparameterised, since no gradient passes through them.

    Args:
        num_particles: the number of draws $K$ per estimate, at least 2.
        vectorize_particles: as for `numpyro.infer.Trace_ELBO`.

    Examples:
        A mean-field guide on a correlated Gaussian: reverse KL makes its
        scales the conditional sds, sqrt(1 - 0.9^2) = 0.44; forward KL the
        marginal ones, 1.

        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> import optax
        >>> from numpyro.infer import SVI
        >>> from numpyro.infer.autoguide import AutoNormal
        >>> from flowrox.infer import ForwardKL
        >>> def model():
        ...     a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("b", dist.Normal(0.9 * a, (1 - 0.9**2) ** 0.5))
        >>> guide = AutoNormal(model)
        >>> svi = SVI(model, guide, optax.adam(0.02), ForwardKL(256))
        >>> result = svi.run(jax.random.key(0), 1500, progress_bar=False)
        >>> round(float(result.params["a_auto_scale"]), 1)
        1.0
    """

    def __init__(
        self, num_particles: int = 64, vectorize_particles: bool | Callable = True
    ):
        if int(num_particles) < 2:
            raise ValueError(
                "ForwardKL weighs the guide's draws against each other, so it "
                f"needs num_particles >= 2 (64 or more is typical); got "
                f"{num_particles!r}."
            )
        super().__init__(int(num_particles), vectorize_particles)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        def particle(key):
            keys = jax.random.split(key)
            sites = _draws(guide, keys[1], param_map, args, kwargs)
            draws = {
                name: jax.lax.stop_gradient(site["value"])
                for name, site in sites.items()
            }
            # Both densities at the fixed draws: the gradients reach the guide's
            # parameters through log q and the model's through log p only.
            return _log_densities(
                model, guide, keys, draws, args, kwargs, param_map, param_map
            )

        keys = jax.random.split(rng_key, self.num_particles)
        log_p, log_q = self.vectorize_particles_fn(particle, keys)
        log_w = jax.lax.stop_gradient(log_p - log_q)
        weights = jax.nn.softmax(log_w)
        value = jnp.log(self.num_particles) - jax.scipy.special.logsumexp(log_w)
        surrogate = -jnp.sum(weights * (log_p + log_q))
        return value + surrogate - jax.lax.stop_gradient(surrogate)
