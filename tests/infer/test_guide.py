"""AutoFlowGuide against closed-form posteriors; NeuTra and Predictive with it."""

import equinox as eqx
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

from flowrox import Flow
from flowrox.bijections import AbstractBijection, Affine
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
    return masked_autoregressive_flow(
        key, dim, layers=2, hidden=8, one_pass="transform"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "flow_fn",
    [
        None,
        pytest.param(small_iaf, id="iaf"),
        pytest.param(
            lambda key, dim: bnaf_flow(key, dim, hidden=4, one_pass="transform"),
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


def _perturbed(params, key, spread=0.3):
    # Away from the identity flow and the unit scale a new guide starts at.
    keys = dict(zip(params, jax.random.split(key, len(params)), strict=True))

    def noise(name):
        value = params[name]
        return spread * jax.random.normal(keys[name], value.shape, value.dtype)

    return {
        name: value * jnp.exp(noise(name))
        if name == "auto_scale"
        else value + noise(name)
        for name, value in params.items()
    }


def test_the_posterior_is_a_flow_over_the_learned_map():
    guide = AutoFlowGuide(normal_model, small_iaf, init_scale=0.5)
    svi = SVI(normal_model, guide, optax.adam(0.0), Trace_ELBO())
    params = _perturbed(svi.get_params(svi.init(jax.random.key(0))), jax.random.key(1))
    posterior = guide.get_posterior(params)
    assert isinstance(posterior, Flow)
    assert posterior.event_shape == (2,) and posterior.batch_shape == ()
    support = posterior.support
    assert support.event_dim == 1 and support.base_constraint is dist.constraints.real
    # NumPyro's own construction over the same map: the same draws and density.
    transformed = dist.TransformedDistribution(
        guide.get_base_dist(), guide.get_transform(params)
    )
    y = posterior.sample(jax.random.key(2), (50,))
    np.testing.assert_allclose(
        y, transformed.sample(jax.random.key(2), (50,)), rtol=1e-6
    )
    np.testing.assert_allclose(
        posterior.log_prob(y), transformed.log_prob(y), rtol=1e-5, atol=1e-5
    )


class _TransformOnly(AbstractBijection):
    """A bijection's transform with its inverse withheld."""

    bijection: AbstractBijection
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection):
        self.bijection = bijection
        self.shape = tuple(bijection.shape)
        self.cond_shape = None

    def transform_and_log_det(self, x, condition=None):
        return self.bijection.transform_and_log_det(x)

    def inverse_and_log_det(self, y, condition=None):
        raise NotImplementedError("_TransformOnly withholds the inverse.")


def test_a_flow_without_an_inverse_trains_as_the_guide():
    def flow_fn(key, dim):
        return Flow(
            dist.Normal(0.0, 1.0), _TransformOnly(small_iaf(key, dim).bijection)
        )

    guide = AutoFlowGuide(normal_model, flow_fn)
    result = _fit(normal_model, guide, 300, learning_rate=3e-2)
    assert bool(jnp.all(jnp.isfinite(result.losses)))
    assert float(result.losses[-30:].mean()) < float(result.losses[:10].mean()) - 1.0
    # The latent site's density is the one from its draw's forward pass.
    trace = numpyro.handlers.trace(
        numpyro.handlers.seed(
            numpyro.handlers.substitute(guide, result.params), jax.random.key(1)
        )
    ).get_trace()
    latent = trace["_auto_latent"]
    (log_prob,) = latent["intermediates"]
    # The same map with the IAF's own (sequential) inverse gives it again.
    posterior = guide.get_posterior(result.params)
    with_inverse = eqx.tree_at(
        lambda chain: chain.bijections[0],
        posterior.bijection,
        posterior.bijection.bijections[0].bijection,
    )
    two_pass = Flow(posterior.base_dist, with_inverse)
    np.testing.assert_allclose(
        log_prob, two_pass.log_prob(latent["value"]), rtol=1e-5, atol=1e-5
    )
    samples = guide.sample_posterior(
        jax.random.key(2), result.params, sample_shape=(5,)
    )
    assert samples["z"].shape == (5, 2)
