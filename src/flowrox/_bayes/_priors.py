"""Priors for module leaves: isotropic, init-matched, heavy-tailed, shrinkage."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ._markers import AbstractPrior


def normal(scale: float = 1.0, *, loc: float = 0.0) -> dist.Distribution:
    """An isotropic Normal prior, the same for every chosen leaf.

    Examples:
        >>> from flowrox import priors
        >>> priors.normal(0.5).scale
        0.5
    """
    return dist.Normal(loc, scale)


def laplace(scale: float = 1.0) -> dist.Distribution:
    """A Laplace prior (sparsity-favouring, the Bayesian lasso), centred at zero."""
    return dist.Laplace(0.0, scale)


def student_t(df: float = 3.0, scale: float = 1.0) -> dist.Distribution:
    """A Student-t prior: heavier tails than a Normal, centred at zero."""
    return dist.StudentT(df, 0.0, scale)


def init_matched(
    *, centred_on_init: bool = False, zero_scale: float = 1e-2
) -> Callable[[str, jax.Array], dist.Distribution]:
    r"""A per-leaf Normal whose scale is the leaf's initialisation scale.

    For each leaf the scale is its root mean square, $\sqrt{\overline{w^2}}$: for
    equinox's `Linear` (uniform on $\pm 1/\sqrt{\text{fan-in}}$) that is the init
    standard deviation $1/\sqrt{3\,\text{fan-in}}$, so the prior predictive of
    the network matches a freshly initialised one. Leaves initialised at zero
    (e.g. the last layer of an identity-initialised flow) get `zero_scale`.

    Args:
        centred_on_init: centre each prior on the leaf's current value (e.g. the
            identity initialisation of a flow) instead of zero.
        zero_scale: the scale for leaves whose values are all zero.

    Returns:
        A callable `(path, leaf) -> Normal` for `flowrox.bayesian`.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import flowrox
        >>> linear = eqx.nn.Linear(300, 10, key=jax.random.key(0))
        >>> prior = flowrox.priors.init_matched()("weight", linear.weight)
        >>> round(float(prior.scale[0, 0]), 3)  # 1 / sqrt(3 * 300)
        0.033
    """

    def prior(path: str, leaf: jax.Array) -> dist.Distribution:
        del path
        rms = jnp.sqrt(jnp.mean(jnp.square(leaf)))
        scale = jnp.where(rms > 0, rms, zero_scale)
        loc = leaf if centred_on_init else jnp.zeros_like(leaf)
        return dist.Normal(loc, jnp.broadcast_to(scale, leaf.shape))

    return prior


class Horseshoe(AbstractPrior):
    r"""Hierarchical shrinkage: a global scale per layer and local scales per weight.

    For a leaf $w$ (per layer, when stacked):
    $\tau \sim \mathrm{HalfCauchy}(\tau_0)$,
    $\lambda_i \sim \mathrm{HalfCauchy}(1)$,
    $w_i = \tau \lambda_i z_i$ with $z_i \sim \mathcal{N}(0, 1)$ — the
    non-centred form, which NUTS samples without funnels. Sites:
    `{site}/global_scale`, `{site}/local_scale`, `{site}/unscaled`, and the
    weight itself as a deterministic site `{site}`.

    Args:
        global_scale: $\tau_0$, the scale of the global half-Cauchy.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import flowrox
        >>> layer = flowrox.bayesian(
        ...     eqx.nn.Linear(4, 2, key=jax.random.key(0)),
        ...     {"weight": flowrox.priors.Horseshoe(0.1)},
        ... )
        >>> drawn = flowrox.sample_module("l", layer, rng_key=jax.random.key(1))
        >>> drawn.weight.shape
        (2, 4)
    """

    global_scale: float

    def __init__(self, global_scale: float = 1.0):
        self.global_scale = global_scale

    def sample(self, site: str, shape: tuple[int, ...], n_stacked: int) -> jax.Array:
        n_event = len(shape) - n_stacked
        event_shape = shape[n_stacked:]
        tau = numpyro.sample(f"{site}/global_scale", dist.HalfCauchy(self.global_scale))
        local = numpyro.sample(
            f"{site}/local_scale",
            dist.HalfCauchy(1.0).expand(shape).to_event(n_event),
        )
        unscaled = numpyro.sample(
            f"{site}/unscaled", dist.Normal(0.0, 1.0).expand(shape).to_event(n_event)
        )
        tau = jnp.reshape(tau, jnp.shape(tau) + (1,) * len(event_shape))
        return numpyro.deterministic(site, tau * local * unscaled)
