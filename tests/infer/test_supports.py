"""AutoFlowGuide warns about latent supports that depend on other latents."""

import warnings

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import SVI, Predictive, Trace_ELBO

from flowrox.infer import AutoFlowGuide


def dependent():
    # GARCH-style stationarity written directly: beta < 1 - alpha.
    alpha = numpyro.sample("alpha", dist.Uniform(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Uniform(0.0, 1.0 - alpha))
    numpyro.sample("obs", dist.Normal(alpha + beta, 0.1), obs=0.8)


def reparameterised():
    # The fix the warning names: a fixed support, transformed in the model.
    alpha = numpyro.sample("alpha", dist.Uniform(0.0, 1.0))
    fraction = numpyro.sample("fraction", dist.Uniform(0.0, 1.0))
    beta = numpyro.deterministic("beta", fraction * (1.0 - alpha))
    numpyro.sample("obs", dist.Normal(alpha + beta, 0.1), obs=0.8)


def array_bounds():
    # Array-valued bounds that do not depend on another latent.
    numpyro.sample("x", dist.Uniform(jnp.zeros(3), jnp.arange(1.0, 4.0)).to_event(1))
    numpyro.sample("s", dist.HalfNormal(jnp.ones(2)).to_event(1))


def _init(model):
    guide = AutoFlowGuide(model)
    svi = SVI(model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    return guide, svi, svi.init(jax.random.key(0))


def test_a_support_that_depends_on_another_latent_is_named_with_the_fix():
    with pytest.warns(
        UserWarning,
        match=r"AutoFlowGuide: the support of latent site\(s\) 'beta' depends on "
        r"other latent sites.*numpyro.deterministic\('beta', u \* \(1.0 - alpha\)\)",
    ):
        _init(dependent)


@pytest.mark.parametrize(
    "model", [reparameterised, pytest.param(array_bounds, marks=pytest.mark.slow)]
)
def test_fixed_supports_give_no_warning(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        guide, svi, state = _init(model)
    if model is reparameterised:
        draws = Predictive(
            model,
            guide=guide,
            params=svi.get_params(state),
            num_samples=500,
            return_sites=["alpha", "beta"],
        )(jax.random.key(1))
        assert bool(jnp.all(draws["beta"] < 1.0 - draws["alpha"]))
