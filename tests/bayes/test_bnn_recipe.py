"""The Bayesian-MLP recipe of docs/bayesian.md, on a regression with a gap.

40 points of sin(2x) + N(0, 0.1^2) on [-3, -1] and [1, 3], an
`eqx.nn.MLP(1, 1, 16, depth=2, activation=tanh)` with `priors.fan_in()` on every
weight and bias and a HalfNormal(1) prior on the noise. A posterior that has
learnt from the data finds the noise (0.1) and is uncertain in the gap, where
no point constrains the network: its sd of the mean function at x in
[-0.5, 0.5] is several times its sd at the data. Checked for NUTS and for the
approximation the docs give for SVI: a MAP fit by SVI, then the linearised
Laplace approximation around it.

Run as a script to print the measurements quoted in the docs and in
`priors.fan_in`'s docstring (a few minutes on a laptop CPU):

    python tests/bayes/test_bnn_recipe.py          # NUTS, MAP + Laplace, ELBO guides
    python tests/bayes/test_bnn_recipe.py --sweep  # the prior scale c
"""

import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_value
from numpyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal
from numpyro.infer.util import log_density

import flowrox

GAP = jnp.linspace(-0.5, 0.5, 11)


def gap_data(seed: int = 0, n: int = 40):
    """n points of sin(2x) + N(0, 0.1^2), half on [-3, -1] and half on [1, 3]."""
    key_left, key_right, key_noise = jax.random.split(jax.random.key(seed), 3)
    x = jnp.concatenate(
        [
            jax.random.uniform(key_left, (n // 2,), minval=-3.0, maxval=-1.0),
            jax.random.uniform(key_right, (n - n // 2,), minval=1.0, maxval=3.0),
        ]
    )
    return x, jnp.sin(2 * x) + 0.1 * jax.random.normal(key_noise, x.shape)


def regression(net, noise=None):
    """The model: y ~ N(net(x), noise^2), the noise HalfNormal(1) unless given."""

    def model(x, y=None):
        f = flowrox.sample_module("net", net)
        mean = numpyro.deterministic("mean", jax.vmap(f)(x[:, None])[:, 0])
        scale = (
            numpyro.sample("noise", dist.HalfNormal(1.0)) if noise is None else noise
        )
        numpyro.sample("y", dist.Normal(mean, scale), obs=y)

    return model


def gap_mlp(prior, *, width=16, depth=2, seed=1):
    mlp = eqx.nn.MLP(1, 1, width, depth, activation=jnp.tanh, key=jax.random.key(seed))
    return flowrox.bayesian(mlp, prior)


def _summary(noise, sd_data, sd_gap, mean_data, x, truth, **extra):
    return {
        "noise": float(noise),
        "sd_data": float(jnp.mean(sd_data)),
        "sd_gap": float(jnp.mean(sd_gap)),
        "rmse": float(jnp.sqrt(jnp.mean((mean_data - truth(x)) ** 2))),
        **extra,
    }


def nuts_fit(
    net,
    x,
    y,
    *,
    seed=0,
    num_warmup=300,
    num_samples=300,
    noise=None,
    far=GAP,
    truth=lambda x: jnp.sin(2 * x),
):
    """NUTS, one chain: the posterior noise and the sd of the mean function."""
    model = regression(net, noise)
    mcmc = MCMC(
        NUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=False
    )
    mcmc.run(jax.random.key(2 + 10 * seed), x, y)
    samples = mcmc.get_samples()
    nets = flowrox.posterior_modules(net, samples)
    draws = eqx.filter_vmap(
        lambda f: jax.vmap(f)(jnp.concatenate([x, far])[:, None])[:, 0]
    )(nets)
    at_data, at_far = draws[:, : len(x)], draws[:, len(x) :]
    return _summary(
        samples["noise"].mean() if noise is None else noise,
        at_data.std(0),
        at_far.std(0),
        at_data.mean(0),
        x,
        truth,
        divergences=int(mcmc.get_extra_fields()["diverging"].sum()),
    )


def map_fit(net, x, y, *, seed=0, steps=5000):
    """The recipe's first step: a MAP fit by SVI with a point-mass guide.

    The key draws the noise's start (`init_to_median` draws from its prior), and
    the start decides which of the MAPs the fit finds.
    """
    model = regression(net)
    guide = AutoDelta(model, init_loc_fn=flowrox.init_to_module(net))
    schedule = optax.cosine_decay_schedule(1e-2, steps, alpha=0.01)
    svi = SVI(model, guide, optax.adam(schedule), Trace_ELBO())
    result = svi.run(jax.random.key(3 + 10 * seed), steps, x, y, progress_bar=False)
    return guide.median(result.params)


def laplace_fit(net, x, y, map_values, *, far=GAP, truth=lambda x: jnp.sin(2 * x)):
    """The recipe's second step: the linearised Laplace approximation at the MAP.

    A Gaussian over the flattened weights with the Gauss-Newton precision
    J^T J / noise^2 plus the prior's, J the Jacobian of the mean function at the
    data; the noise is the MAP's corrected by one of MacKay's updates (the
    residuals divided among the degrees of freedom the fit left).
    """
    # The code of docs/bayesian.md, line for line.
    weights = {site: v for site, v in map_values.items() if site.startswith("net/")}
    theta, unravel = ravel_pytree(weights)

    def mean_at(theta, points):
        sites = numpyro.handlers.substitute(flowrox.sample_module, data=unravel(theta))
        return jax.vmap(sites("net", net))(points[:, None])[:, 0]

    def log_prior(theta):
        sampled = lambda: flowrox.sample_module("net", net)
        return log_density(sampled, (), {}, unravel(theta))[0]

    jac = jax.jacobian(mean_at)(theta, x)
    curvature, prior_precision = jac.T @ jac, -jax.hessian(log_prior)(theta)
    noise = map_values["noise"]
    precision = curvature / noise**2 + prior_precision
    used = jnp.trace(jnp.linalg.solve(precision, curvature / noise**2))  # gamma
    noise = jnp.sqrt(jnp.sum((y - mean_at(theta, x)) ** 2) / (len(x) - used))
    cholesky = jnp.linalg.cholesky(curvature / noise**2 + prior_precision)

    def sd_at(points):
        jac_points = jax.jacobian(mean_at)(theta, points)
        whitened = jax.scipy.linalg.solve_triangular(cholesky, jac_points.T, lower=True)
        return jnp.linalg.norm(whitened, axis=0)

    return _summary(
        noise,
        sd_at(x),
        sd_at(far),
        mean_at(theta, x),
        x,
        truth,
        map_noise=float(map_values["noise"]),
        parameters_used=float(used),
    )


@pytest.fixture(scope="module")
def problem():
    x, y = gap_data(0)
    return gap_mlp(flowrox.priors.fan_in()), x, y


@pytest.mark.slow
def test_nuts_with_the_fan_in_prior_finds_the_noise_and_widens_in_the_gap(problem):
    net, x, y = problem
    fit = nuts_fit(net, x, y)
    assert 0.07 < fit["noise"] < 0.15, fit
    assert fit["sd_gap"] > 2 * fit["sd_data"], fit
    assert fit["rmse"] < 0.15, fit  # the posterior mean follows sin(2x) at the data


@pytest.mark.slow
def test_svi_map_then_laplace_finds_the_noise_and_widens_in_the_gap(problem):
    net, x, y = problem
    fit = laplace_fit(net, x, y, map_fit(net, x, y))
    assert 0.07 < fit["noise"] < 0.15, fit
    assert fit["sd_gap"] > 2 * fit["sd_data"], fit
    assert fit["rmse"] < 0.15, fit


# --- measurements quoted in the docs -------------------------------------------


def elbo_fit(net, x, y, map_values, guide_class, *, seed=0, steps=5000, lr=1e-2):
    """An ELBO-trained Gaussian guide started at the MAP with a small scale."""
    model = regression(net)
    guide = guide_class(
        model, init_loc_fn=init_to_value(values=map_values), init_scale=0.01
    )
    svi = SVI(model, guide, optax.adam(lr), Trace_ELBO())
    result = svi.run(jax.random.key(4 + 10 * seed), steps, x, y, progress_bar=False)
    predictive = Predictive(
        model,
        guide=guide,
        params=result.params,
        num_samples=500,
        return_sites=["mean", "noise"],
    )
    at_data = predictive(jax.random.key(1), x)
    at_gap = predictive(jax.random.key(1), GAP)["mean"]
    return _summary(
        at_data["noise"].mean(),
        at_data["mean"].std(0),
        at_gap.std(0),
        at_data["mean"].mean(0),
        x,
        lambda x: jnp.sin(2 * x),
    )


def _print(label, fit, start):
    extra = "".join(
        f" {key}={value:.3g}"
        for key, value in fit.items()
        if key not in ("noise", "sd_data", "sd_gap", "rmse")
    )
    print(
        f"{label:44s} noise {fit['noise']:.3f}  sd at data {fit['sd_data']:.3f}  "
        f"sd far {fit['sd_gap']:.3f} ({fit['sd_gap'] / fit['sd_data']:.1f}x)  "
        f"rmse {fit['rmse']:.3f}{extra}  [{time.perf_counter() - start:.0f} s]",
        flush=True,
    )


def _recipe_table():
    x, y = gap_data(0)
    for label, prior in (
        ("fan_in()", flowrox.priors.fan_in()),
        ("init_matched()", flowrox.priors.init_matched()),
    ):
        net = gap_mlp(prior)
        start = time.perf_counter()
        _print(f"{label} NUTS 300+300", nuts_fit(net, x, y), start)
        start = time.perf_counter()
        map_values = map_fit(net, x, y)
        fit = laplace_fit(net, x, y, map_values)
        _print(f"{label} MAP 5000 steps + Laplace", fit, start)
        for guide in (AutoNormal, AutoMultivariateNormal):
            start = time.perf_counter()
            fit = elbo_fit(net, x, y, map_values, guide)
            _print(f"{label} MAP + {guide.__name__} 5000 steps", fit, start)
    net = gap_mlp(flowrox.priors.fan_in())
    for seed in (1, 2):  # the same data, other starts of the MAP
        start = time.perf_counter()
        fit = laplace_fit(net, x, y, map_fit(net, x, y, seed=seed))
        _print(f"fan_in() MAP + Laplace, MAP start {seed}", fit, start)
    for seed in (1, 2):  # other data sets
        x, y = gap_data(seed)
        start = time.perf_counter()
        _print(f"fan_in() NUTS, data {seed}", nuts_fit(net, x, y, seed=seed), start)
        start = time.perf_counter()
        fit = laplace_fit(net, x, y, map_fit(net, x, y, seed=seed))
        _print(f"fan_in() MAP + Laplace, data {seed}", fit, start)


def _docs_page_data():
    # The 20-point regression the Bayesian page used before (an 8-unit MLP).
    key_x, key_noise, key_net = jax.random.split(jax.random.key(0), 3)
    x = jax.random.uniform(key_x, (20,), minval=-2.0, maxval=2.0)
    return x, jnp.sin(x) + 0.1 * jax.random.normal(key_noise, (20,)), key_net


def _notebook_data():
    # The notebook's 30-point regression of sin(x) with a gap.
    key_left, key_right, key_noise = jax.random.split(jax.random.key(0), 3)
    x = jnp.concatenate(
        [
            jax.random.uniform(key_left, (15,), minval=-3.0, maxval=-1.0),
            jax.random.uniform(key_right, (15,), minval=1.0, maxval=3.0),
        ]
    )
    return x, jnp.sin(x) + 0.1 * jax.random.normal(key_noise, x.shape)


def _sweep():
    priors = {
        "init_matched()": flowrox.priors.init_matched(),
        "Normal(0, 1)": dist.Normal(0.0, 1.0),
        **{f"fan_in({c})": flowrox.priors.fan_in(c) for c in (1.0, 1.5, 2.0, 2.5, 3.0)},
    }
    for label, prior in priors.items():
        for seed in (0, 1, 2):
            x, y = gap_data(seed)
            start = time.perf_counter()
            _print(
                f"{label} sin(2x) gap, data {seed}",
                nuts_fit(gap_mlp(prior), x, y, seed=seed),
                start,
            )
        x, y, key_net = _docs_page_data()
        mlp = eqx.nn.MLP(1, 1, 8, 1, activation=jnp.tanh, key=key_net)
        start = time.perf_counter()
        _print(
            f"{label} page's sin(x), far = +-4",
            nuts_fit(
                flowrox.bayesian(mlp, prior),
                x,
                y,
                far=jnp.array([-4.0, 4.0]),
                truth=jnp.sin,
            ),
            start,
        )
        x, y = _notebook_data()
        start = time.perf_counter()
        _print(
            f"{label} notebook's sin(x) gap",
            nuts_fit(gap_mlp(prior), x, y, truth=jnp.sin),
            start,
        )


if __name__ == "__main__":
    _sweep() if "--sweep" in sys.argv[1:] else _recipe_table()
