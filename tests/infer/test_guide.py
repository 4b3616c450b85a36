"""AutoFlowGuide against closed-form posteriors; NeuTra and Predictive with it."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.initialization import init_to_value
from numpyro.infer.reparam import NeuTraReparam

from flowrox.bijections import Affine
from flowrox.flows import bnaf_flow, masked_autoregressive_flow
from flowrox.infer import AutoFlowGuide

DATA = jnp.array([[1.0, -0.5], [2.0, 0.5], [1.5, 0.0], [0.5, 1.0]])


def normal_model(data=DATA):
    # z ~ N(0, I), y_i ~ N(z, I): posterior N(sum y / (n + 1), I / (n + 1)).
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("y", dist.Normal(z, 1.0).to_event(1), obs=data)


NORMAL_MEAN = DATA.sum(0) / 5
NORMAL_SD = np.sqrt(1 / 5)
FLIPS = jnp.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1])


def beta_bernoulli_model(flips=FLIPS):
    # p ~ Beta(2, 2): the posterior is Beta(2 + heads, 2 + tails), on (0, 1).
    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    with numpyro.plate("flips", flips.shape[0]):
        numpyro.sample("x", dist.Bernoulli(p), obs=flips)


def _fit(model, guide, steps, learning_rate=1e-2, particles=8):
    schedule = optax.cosine_decay_schedule(learning_rate, steps, 0.05)
    svi = SVI(model, guide, optax.adam(schedule), Trace_ELBO(num_particles=particles))
    return svi.run(jax.random.key(0), steps, progress_bar=False)


def test_the_guide_starts_at_the_initial_point_with_the_initial_scale():
    start = {"z": jnp.array([0.3, -0.7])}
    guide = AutoFlowGuide(
        normal_model,
        layers=1,
        hidden=4,
        transformer=Affine(),
        init_loc_fn=init_to_value(values=start),
        init_scale=0.1,
    )
    svi = SVI(normal_model, guide, optax.adam(0.0), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0)))
    samples = guide.sample_posterior(jax.random.key(1), params, sample_shape=(20_000,))
    # A new coupling flow is the identity: the guide is N(start, 0.1^2).
    np.testing.assert_allclose(samples["z"].mean(0), start["z"], atol=3e-3)
    np.testing.assert_allclose(samples["z"].std(0), 0.1, rtol=0.02)
    names = set(params)
    assert {"auto_loc", "auto_scale"} <= names
    assert any(name.startswith("auto_flow/bijection.") for name in names)


def small_iaf(key, dim):
    """A small affine IAF for guides of the conjugate models."""
    return masked_autoregressive_flow(key, dim, layers=2, hidden=8, one_pass="forward")


@pytest.mark.slow
@pytest.mark.parametrize(
    "flow_fn",
    [
        None,
        pytest.param(small_iaf, id="iaf"),
        pytest.param(
            lambda key, dim: bnaf_flow(key, dim, hidden=4, one_pass="forward"),
            id="bnaf",
        ),
    ],
)
def test_conjugate_normal_posterior(flow_fn):
    guide = AutoFlowGuide(normal_model, flow_fn, layers=2, hidden=16)
    result = _fit(normal_model, guide, 2000)
    samples = guide.sample_posterior(
        jax.random.key(1), result.params, sample_shape=(20_000,)
    )["z"]
    # Means within 0.1 posterior sd (Monte-Carlo error: 0.007 sd). The rest is
    # Trace_ELBO's gradient noise at the last step size: 0.02-0.07 sd over
    # training keys, a KL of at most 0.003 nats. StickingTheLandingELBO removes
    # it (test_elbo.py holds the same guides to 0.05 sd).
    np.testing.assert_allclose(samples.mean(0), NORMAL_MEAN, atol=0.1 * NORMAL_SD)
    np.testing.assert_allclose(samples.std(0), NORMAL_SD, rtol=0.05)


@pytest.mark.slow
def test_beta_bernoulli_posterior_on_the_unit_interval():
    guide = AutoFlowGuide(beta_bernoulli_model)
    result = _fit(beta_bernoulli_model, guide, 2000)
    p = guide.sample_posterior(jax.random.key(1), result.params, sample_shape=(20_000,))
    p = p["p"]
    heads = int(FLIPS.sum())
    exact = dist.Beta(2.0 + heads, 2.0 + FLIPS.shape[0] - heads)
    sd = float(jnp.sqrt(exact.variance))
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(p.mean(), exact.mean, atol=0.05 * sd)
    np.testing.assert_allclose(p.std(), sd, rtol=0.05)


@pytest.mark.slow
def test_predictive_and_a_custom_flow_fn():
    guide = AutoFlowGuide(
        normal_model,
        lambda key, dim: masked_autoregressive_flow(key, dim, layers=1, hidden=4),
    )
    result = _fit(normal_model, guide, 10, particles=1)
    predictive = Predictive(
        normal_model,
        guide=guide,
        params=result.params,
        num_samples=7,
        return_sites=["z", "y"],
    )
    draws = predictive(jax.random.key(2))
    assert draws["z"].shape == (7, 2) and draws["y"].shape == (7, 4, 2)


def test_flow_fn_must_return_a_matching_flow():
    guide = AutoFlowGuide(
        normal_model, lambda key, dim: bnaf_flow(key, dim + 1, hidden=2)
    )
    with pytest.raises(ValueError, match="event shape \\(2,\\)"):
        SVI(normal_model, guide, optax.adam(1e-3), Trace_ELBO()).init(jax.random.key(0))
    with pytest.raises(ValueError, match="init_scale must be positive"):
        AutoFlowGuide(normal_model, init_scale=0.0)


@pytest.mark.slow
def test_neutra_reparam_uses_the_learned_flow():
    guide = AutoFlowGuide(normal_model, layers=2, hidden=8, transformer=Affine())
    result = _fit(normal_model, guide, 1000)
    neutra = NeuTraReparam(guide, result.params)
    kernel = NUTS(neutra.reparam(normal_model))
    mcmc = MCMC(kernel, num_warmup=200, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(3))
    latent = mcmc.get_samples()["auto_shared_latent"]
    z = neutra.transform_sample(latent)["z"]
    np.testing.assert_allclose(z.mean(0), NORMAL_MEAN, atol=0.15 * NORMAL_SD)
    np.testing.assert_allclose(z.std(0), NORMAL_SD, rtol=0.15)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
