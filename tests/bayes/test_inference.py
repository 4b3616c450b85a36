"""Bayesian modules in real inference, against closed forms."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal
from numpyro.infer.util import initialize_model, log_density

import flowrox
from flowrox import Flow
from flowrox.bijections import Affine, Chain, Scan, SinhArcsinh

# Bayesian linear regression y = w x + b + noise, known noise, N(0, alpha^2) priors.
ALPHA, NOISE = 1.5, 0.4
X = jax.random.normal(jax.random.key(0), (20, 3))
Y = (
    X @ jnp.array([1.0, -0.5, 0.25])
    + 0.3
    + NOISE * jax.random.normal(jax.random.key(1), (20,))
)
LINEAR = flowrox.bayesian(
    eqx.nn.Linear(3, 1, key=jax.random.key(2)), dist.Normal(0.0, ALPHA)
)


def _regression(x=X, y=Y):
    linear = flowrox.sample_module("linear", LINEAR)
    mean = jax.vmap(linear)(x)[:, 0]
    numpyro.sample("y", dist.Normal(mean, NOISE), obs=y)


def _exact():
    features = jnp.concatenate([X, jnp.ones((X.shape[0], 1))], axis=1)
    precision = features.T @ features / NOISE**2 + jnp.eye(4) / ALPHA**2
    covariance = jnp.linalg.inv(precision)
    mean = covariance @ features.T @ Y / NOISE**2
    evidence = dist.MultivariateNormal(
        jnp.zeros(X.shape[0]),
        NOISE**2 * jnp.eye(X.shape[0]) + ALPHA**2 * features @ features.T,
    ).log_prob(Y)
    return mean, covariance, evidence


def _stack(samples):
    return np.concatenate(
        [
            np.asarray(samples["linear/weight"])[:, 0],
            np.asarray(samples["linear/bias"]),
        ],
        axis=1,
    )


@pytest.mark.slow
def test_nuts_posterior_of_bayesian_linear_regression_matches_closed_form():
    mcmc = MCMC(NUTS(_regression), num_warmup=500, num_samples=3000, progress_bar=False)
    mcmc.run(jax.random.key(3))
    draws = _stack(mcmc.get_samples())
    mean, covariance, _ = _exact()
    ess = np.asarray(effective_sample_size(draws[None]))
    sd = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(ess))
    empirical = np.cov(draws.T)
    cov = np.asarray(covariance)
    n_eff = ess.min()
    tolerance = 4 * np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n_eff)
    assert np.all(np.abs(empirical - cov) < tolerance)


@pytest.mark.slow
def test_svi_with_a_multivariate_normal_guide_matches_mean_and_evidence():
    guide = AutoMultivariateNormal(_regression)
    schedule = optax.exponential_decay(0.02, transition_steps=3000, decay_rate=0.01)
    svi = SVI(_regression, guide, optax.adam(schedule), Trace_ELBO(num_particles=16))
    result = svi.run(jax.random.key(4), 3000, progress_bar=False)
    posterior = guide.get_posterior(result.params)
    mean, covariance, evidence = _exact()
    # The guide's latent vector follows the sites' order: weight, then bias.
    sd = np.sqrt(np.diag(covariance))
    errors = np.abs(posterior.mean - mean) / sd
    assert np.all(errors < 0.05), errors
    elbo = -Trace_ELBO(num_particles=2000).loss(
        jax.random.key(5), result.params, _regression, guide
    )
    assert abs(elbo - evidence) < 0.05, (elbo, evidence)


def _affine_layer(key):
    return Affine(0.1 * jax.random.normal(key, (2,)), 1.0)


def test_stacked_and_unrolled_bayesian_layers_have_identical_log_joints():
    keys = jax.random.split(jax.random.key(6), 3)
    prior = dist.Normal(0.0, 0.7)
    stacked = flowrox.bayesian(
        Flow(dist.Normal(0.0, 1.0), Scan(eqx.filter_vmap(_affine_layer)(keys))), prior
    )
    unrolled = flowrox.bayesian(
        Flow(dist.Normal(0.0, 1.0), Chain([_affine_layer(k) for k in keys])), prior
    )
    data = jnp.array([[0.5, -1.0], [2.0, 0.3]])

    def model(module):
        flow = flowrox.sample_module("flow", module)
        numpyro.sample("x", flow.expand([2]), obs=data)

    locs = jax.random.normal(jax.random.key(7), (3, 2))
    log_scales = 0.3 * jax.random.normal(jax.random.key(8), (3, 2))
    stacked_values = {
        "flow/bijection.bijection.loc": locs,
        "flow/bijection.bijection.log_scale": log_scales,
    }
    unrolled_values = {}
    for i in range(3):
        unrolled_values[f"flow/bijection.bijections.{i}.loc"] = locs[i]
        unrolled_values[f"flow/bijection.bijections.{i}.log_scale"] = log_scales[i]
    stacked_log_joint, trace = log_density(model, (stacked,), {}, stacked_values)
    unrolled_log_joint, _ = log_density(model, (unrolled,), {}, unrolled_values)
    np.testing.assert_allclose(stacked_log_joint, unrolled_log_joint, rtol=1e-6)
    # One site per leaf, inside a plate over the 3 layers.
    frames = trace["flow/bijection.bijection.loc"]["cond_indep_stack"]
    # The plate is named after the Scan (the flow's bijection).
    assert [(f.name, f.size) for f in frames] == [("flow/bijection/layers", 3)]


def test_posterior_modules_with_filter_vmap_equals_a_loop_and_predictive_works():
    net = flowrox.bayesian(
        eqx.nn.MLP(1, 1, 8, 1, activation=jnp.tanh, key=jax.random.key(9)),
        flowrox.priors.init_matched(),
    )

    def model(x, y=None):
        f = flowrox.sample_module("net", net)
        mean = numpyro.deterministic("mean", jax.vmap(f)(x)[:, 0])
        numpyro.sample("y", dist.Normal(mean, 0.1), obs=y)

    x = jnp.linspace(-1, 1, 7)[:, None]
    samples = Predictive(model, num_samples=16)(jax.random.key(10), x)
    assert samples["net/layers.0.weight"].shape == (16, 8, 1)
    nets = flowrox.posterior_modules(net, samples)
    vmapped = eqx.filter_vmap(lambda f: jax.vmap(f)(x)[:, 0])(nets)
    for i in range(16):
        one = handlers.substitute(
            lambda: flowrox.sample_module("net", net),
            data={k: v[i] for k, v in samples.items()},
        )
        looped = jax.vmap(handlers.seed(one, 0)())(x)[:, 0]
        np.testing.assert_allclose(vmapped[i], looped, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vmapped, samples["mean"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_bayesian_flow_posterior_predictive_is_wider_far_from_the_data():
    flow = Flow(dist.Normal(0.0, 1.0), Chain([SinhArcsinh(), Affine()]))
    bayesian_flow = flowrox.bayesian(flow, dist.Normal(0.0, 1.0))
    data = 1.0 + 0.5 * jax.random.normal(jax.random.key(11), (50,))

    def model(data):
        sampled = flowrox.sample_module("flow", bayesian_flow)
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("x", sampled, obs=data)

    mcmc = MCMC(NUTS(model), num_warmup=400, num_samples=600, progress_bar=False)
    mcmc.run(jax.random.key(12), data)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    flows = flowrox.posterior_modules(bayesian_flow, mcmc.get_samples())
    grid = jnp.array([1.0, 5.0])  # the data's centre, and 8 data sds away
    log_densities = eqx.filter_vmap(lambda f: f.log_prob(grid))(flows)
    spread_near, spread_far = np.std(np.asarray(log_densities), axis=0)
    assert spread_far > 3 * spread_near
    # Near the data the posterior predictive density is close to the truth.
    predictive = jax.scipy.special.logsumexp(log_densities[:, 0]) - np.log(600)
    assert abs(predictive - dist.Normal(1.0, 0.5).log_prob(1.0)) < 0.3


def test_init_to_module_starts_inference_at_the_module_values():
    pretrained = eqx.nn.Linear(3, 1, key=jax.random.key(13))
    bayesian_linear = flowrox.bayesian(pretrained, dist.Normal(0.0, ALPHA))

    def model():
        linear = flowrox.sample_module("linear", bayesian_linear)
        numpyro.sample("y", dist.Normal(jax.vmap(linear)(X)[:, 0], NOISE), obs=Y)
        numpyro.sample("other", dist.Normal(3.0, 1.0))

    info = initialize_model(
        jax.random.key(14), model, init_strategy=flowrox.init_to_module(pretrained)
    )[0]
    start = info.z
    np.testing.assert_allclose(start["linear/weight"], pretrained.weight)
    np.testing.assert_allclose(start["linear/bias"], pretrained.bias)
    assert abs(float(start["other"]) - 3.0) < 1.0  # the median fallback


def test_param_module_learns_a_flow_guide_and_skips_buffers():
    prior_loc, prior_scale, noise = 1.0, 2.0, 0.5
    observed = jnp.array([0.2, 0.9, 1.4, 0.7])

    def model():
        z = numpyro.sample("z", dist.Normal(prior_loc, prior_scale))
        with numpyro.plate("data", observed.shape[0]):
            numpyro.sample("y", dist.Normal(z, noise), obs=observed)

    def guide():
        flow = flowrox.param_module("q", Flow(dist.Normal(0.0, 1.0), Affine()))
        numpyro.sample("z", flow)

    schedule = optax.exponential_decay(0.05, transition_steps=2000, decay_rate=0.05)
    svi = SVI(model, guide, optax.adam(schedule), Trace_ELBO(num_particles=16))
    result = svi.run(jax.random.key(15), 2000, progress_bar=False)
    assert sorted(result.params) == ["q/bijection.loc", "q/bijection.log_scale"]
    precision = 1 / prior_scale**2 + observed.shape[0] / noise**2
    mean = (prior_loc / prior_scale**2 + observed.sum() / noise**2) / precision
    sd = 1 / np.sqrt(precision)
    assert abs(result.params["q/bijection.loc"] - mean) < 0.05 * sd
    assert abs(np.exp(result.params["q/bijection.log_scale"]) / sd - 1) < 0.05


class _Masked(eqx.Module):
    weight: jax.Array
    mask: jax.Array = flowrox.buffer()
    order: jax.Array = flowrox.buffer()

    def __call__(self, x):
        return (self.weight * self.mask) @ x


def test_buffers_and_integer_leaves_are_never_params_or_random():
    layer = _Masked(jnp.ones((2, 2)), jnp.eye(2), jnp.array([1, 0]))

    def guide():
        flowrox.param_module(
            "layer", layer, constraints={"weight": dist.constraints.positive}
        )

    trace = handlers.trace(handlers.seed(guide, 0)).get_trace()
    assert list(trace) == ["layer/weight"]
    assert trace["layer/weight"]["kwargs"]["constraint"] is dist.constraints.positive
    random = flowrox.bayesian(layer, dist.Normal(0.0, 1.0))
    assert [type(leaf).__name__ for leaf in (random.weight, random.mask)] == [
        "RandomLeaf",
        "ArrayImpl",
    ]
    # where= may still select a buffer explicitly.
    chosen = flowrox.bayesian(layer, dist.Normal(0.0, 1.0), where=lambda m: m.mask)
    assert isinstance(chosen.mask, flowrox.RandomLeaf)
    assert not isinstance(chosen.weight, flowrox.RandomLeaf)


@pytest.mark.slow
def test_priors_init_matched_laplace_student_t_and_horseshoe():
    linear = eqx.nn.Linear(400, 30, key=jax.random.key(16))
    prior = flowrox.priors.init_matched()("weight", linear.weight)
    np.testing.assert_allclose(prior.scale[0, 0], 1 / np.sqrt(3 * 400), rtol=0.02)
    patterned = flowrox.bayesian(
        linear,
        {"weight": flowrox.priors.laplace(0.1), "bias": flowrox.priors.student_t(4.0)},
    )
    drawn = flowrox.sample_module("l", patterned, rng_key=jax.random.key(17))
    # Laplace(0, b) has mean |w| = b.
    np.testing.assert_allclose(jnp.abs(drawn.weight).mean(), 0.1, rtol=0.05)

    keys = jax.random.split(jax.random.key(18), 4)
    stacked = flowrox.bayesian(
        Scan(eqx.filter_vmap(_affine_layer)(keys)),
        {"*.loc": flowrox.priors.Horseshoe(0.5)},
    )

    def model():
        flowrox.sample_module("s", stacked)

    trace = handlers.trace(handlers.seed(model, 1)).get_trace()
    assert trace["s/bijection.loc/global_scale"]["value"].shape == (4,)  # one per layer
    assert trace["s/bijection.loc/local_scale"]["value"].shape == (4, 2)
    assert trace["s/bijection.loc"]["value"].shape == (4, 2)
    assert "s/bijection.log_scale" not in trace  # matched nothing: deterministic
