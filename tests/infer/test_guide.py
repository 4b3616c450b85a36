"""AutoFlowGuide against closed-form posteriors; NeuTra and Predictive with it."""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax.example_libraries import stax
from jax.scipy.special import logsumexp
from numpyro.infer import (
    MCMC,
    NUTS,
    SVI,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from numpyro.infer.autoguide import AutoBNAFNormal, AutoIAFNormal
from numpyro.infer.initialization import init_to_uniform, init_to_value
from numpyro.infer.reparam import NeuTraReparam

from flowrox import Flow
from flowrox.bijections import AbstractBijection, Affine
from flowrox.flows import bnaf_flow, masked_autoregressive_flow
from flowrox.infer import AutoFlowGuide, ForwardKL, StickingTheLandingELBO

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
    # The default flow's size keywords only go with the default flow.
    sizes = dict(layers=2, hidden=16) if flow_fn is None else {}
    guide = AutoFlowGuide(normal_model, flow_fn, **sizes)
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


# The drop-in constructor: NumPyro's AutoIAFNormal / AutoBNAFNormal keywords.


@pytest.mark.parametrize("numpyro_guide", [AutoIAFNormal, AutoBNAFNormal])
def test_numpyro_keywords_and_defaults_are_accepted(numpyro_guide):
    ours = inspect.signature(AutoFlowGuide).parameters
    theirs = inspect.signature(numpyro_guide).parameters
    assert set(theirs) <= set(ours)
    assert theirs["init_loc_fn"].default is init_to_uniform
    assert ours["init_loc_fn"].default is init_to_uniform
    assert AutoFlowGuide(normal_model).init_loc_fn is init_to_uniform
    defaults = {
        name: parameter.default
        for name, parameter in theirs.items()
        if parameter.default is not inspect.Parameter.empty
    }
    guide = AutoFlowGuide(normal_model, **defaults)
    SVI(normal_model, guide, optax.adam(1e-3), Trace_ELBO()).init(jax.random.key(0))
    assert guide.num_flows == defaults["num_flows"]
    assert len(guide.flow.bijection.bijections) == defaults["num_flows"]


def _shapes(guide):
    SVI(normal_model, guide, optax.adam(1e-3), Trace_ELBO()).init(jax.random.key(0))
    leaves = jax.tree.leaves(eqx.filter(guide.flow, eqx.is_inexact_array))
    return [leaf.shape for leaf in leaves]


def test_numpyro_sizes_map_onto_the_default_flow():
    spelled = _shapes(AutoFlowGuide(normal_model, layers=2, hidden=6, depth=2))
    assert _shapes(AutoFlowGuide(normal_model, num_flows=2, hidden_dims=[6, 6])) == (
        spelled
    )
    # BNAF's hidden factor is units per latent dimension: 3 * 2 = 6 here.
    assert (
        _shapes(AutoFlowGuide(normal_model, num_flows=2, hidden_factors=[3, 3]))
        == spelled
    )
    assert spelled != _shapes(AutoFlowGuide(normal_model, layers=2, hidden=6))


def test_a_stax_nonlinearity_is_the_same_activation():
    def log_density(nonlinearity):
        guide = AutoFlowGuide(normal_model, nonlinearity=nonlinearity, init_scale=0.5)
        svi = SVI(normal_model, guide, optax.adam(0.0), Trace_ELBO())
        params = svi.get_params(svi.init(jax.random.key(0)))
        posterior = guide.get_posterior(_perturbed(params, jax.random.key(1)))
        return posterior.log_prob(jnp.array([[0.3, -0.2], [1.5, 2.0]]))

    np.testing.assert_allclose(log_density(stax.Elu), log_density(jax.nn.elu))
    np.testing.assert_allclose(log_density(None), log_density(jax.nn.elu))
    assert not np.allclose(log_density(stax.Tanh), log_density(jax.nn.elu))


def test_skip_connections_give_each_layer_a_linear_path_starting_at_zero():
    guide = AutoFlowGuide(normal_model, num_flows=2, skip_connections=True)
    SVI(normal_model, guide, optax.adam(1e-3), Trace_ELBO()).init(jax.random.key(0))
    layers = guide.flow.bijection.bijections
    assert [layer.made.skip_weight.shape for layer in layers] == [(4, 2), (4, 2)]
    assert all(not jnp.any(layer.made.skip_weight) for layer in layers)
    with pytest.raises(TypeError, match="no effect"):
        AutoFlowGuide(normal_model, small_iaf, skip_connections=True)


@pytest.mark.parametrize(
    ("keywords", "error", "match"),
    [
        (dict(hidden_dims=[20, 10]), ValueError, "the same for every layer"),
        (dict(hidden_factors=[]), ValueError, "one positive width"),
        (dict(num_flows=3, layers=2), TypeError, "Pass one of them"),
        (dict(hidden=8, hidden_dims=[8]), TypeError, "pass only one"),
        (dict(hidden_dims=[8, 8], depth=1), TypeError, "pass only hidden_dims"),
        (dict(flow_fn=small_iaf, num_flows=2), TypeError, "no effect"),
        (dict(flow_fn=small_iaf, hidden_dims=[8]), TypeError, "no effect"),
        (dict(nonlinearity="elu"), TypeError, "stax layer"),
    ],
)
def test_keywords_that_cannot_be_honoured_are_refused(keywords, error, match):
    with pytest.raises(error, match=match):
        AutoFlowGuide(normal_model, **keywords)


class DualMoonDistribution(dist.Distribution):
    # NumPyro's NeuTra example (examples/neutra.py), as it writes it.
    support = dist.constraints.real_vector

    def __init__(self):
        super().__init__(event_shape=(2,))

    def sample(self, key, sample_shape=()):
        # it is enough to return an arbitrary sample with correct shape
        return jnp.zeros(sample_shape + self.event_shape)

    def log_prob(self, x):
        term1 = 0.5 * ((jnp.linalg.norm(x, axis=-1) - 2) / 0.4) ** 2
        term2 = -0.5 * ((x[..., :1] + jnp.array([-2.0, 2.0])) / 0.6) ** 2
        pe = term1 - logsumexp(term2, axis=-1)
        return -pe


def dual_moon_model():
    numpyro.sample("x", DualMoonDistribution())


def test_the_guide_starts_and_trains_on_numpyros_dual_moon():
    # The distribution's draws are zeros, where the norm's gradient is NaN:
    # the prior median cannot start, a uniform draw (NumPyro's default) can.
    guide = AutoFlowGuide(dual_moon_model)
    svi = SVI(dual_moon_model, guide, numpyro.optim.Adam(3e-3), Trace_ELBO())
    result = svi.run(jax.random.key(1), 300, progress_bar=False)
    losses = result.losses
    assert bool(jnp.all(jnp.isfinite(losses)))
    assert float(losses[-50:].mean()) < float(losses[:50].mean())


ELBOS = {
    "trace": lambda: Trace_ELBO(num_particles=8),
    "mean_field": lambda: TraceMeanField_ELBO(num_particles=8),
    "renyi": lambda: RenyiELBO(alpha=0.5, num_particles=8),
    "stl": lambda: StickingTheLandingELBO(8),
    "forward_kl": lambda: ForwardKL(64),
}


@pytest.mark.parametrize("elbo", sorted(ELBOS))
def test_every_elbo_trains_the_guide_onto_the_conjugate_posterior(elbo):
    # Each of these losses is minimised by the exact posterior, which the
    # affine guide contains: N(sum y / 5, I / 5). The Renyi bound's gradient
    # in the guide's spread is weak near it (in 400 steps the sds end 2-10%
    # wide; with 1000, within 9%), hence its wider bound on the sds.
    guide = AutoFlowGuide(normal_model, layers=1, hidden=4)
    schedule = optax.cosine_decay_schedule(3e-2, 400, 0.05)
    svi = SVI(normal_model, guide, optax.adam(schedule), ELBOS[elbo]())
    result = svi.run(jax.random.key(0), 400, progress_bar=False)
    assert bool(jnp.all(jnp.isfinite(result.losses)))
    z = guide.sample_posterior(
        jax.random.key(1), result.params, sample_shape=(20_000,)
    )["z"]
    np.testing.assert_allclose(z.mean(0), NORMAL_MEAN, atol=0.15 * NORMAL_SD)
    np.testing.assert_allclose(
        z.std(0), NORMAL_SD, rtol=0.15 if elbo == "renyi" else 0.1
    )


def test_parameters_with_nan_are_refused_with_the_remedy():
    guide = AutoFlowGuide(normal_model)
    svi = SVI(normal_model, guide, optax.adam(0.0), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0)))
    broken = dict(params, auto_loc=jnp.array([jnp.nan, 0.0]))
    for method in (guide.get_posterior, guide.get_transform):
        with pytest.raises(ValueError, match=r"auto_loc.*stable_update=True"):
            method(broken)
    with pytest.raises(ValueError, match="diverged"):
        guide.sample_posterior(jax.random.key(1), broken)
