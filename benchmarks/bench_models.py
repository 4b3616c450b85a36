"""SVI guides on small realistic models, each against a long NUTS reference.

Six NumPyro models with simulated data of a realistic size:

- "AR(2)": y_t = c + phi_1 y_{t-1} + phi_2 y_{t-2} + sigma eps_t, T = 200.
- "GARCH(1,1)": daily returns in percent, T = 500, r_t = mu + sigma_t eps_t,
  sigma_t^2 = omega + alpha (r_{t-1} - mu)^2 + beta sigma_{t-1}^2, with
  omega > 0 and alpha, beta > 0, alpha + beta < 1 written with fixed supports:
  alpha ~ Uniform(0, 1), u ~ Uniform(0, 1), beta = u (1 - alpha) (a
  `numpyro.deterministic`).
- "GARCH naive": the same model written as beta ~ Uniform(0, 1 - alpha), a
  support that depends on another latent. The two are one posterior (the
  density of beta given alpha is 1 / (1 - alpha) on (0, 1 - alpha) in both),
  so the reference is the first model's NUTS run. NUTS replays the model and
  follows the moving bound; an `AutoContinuous` guide maps beta to its support
  once, at the initial alpha, in the guide program that SVI trains
  (flowrox's AutoFlowGuide warns about it). The table shows the share of
  each guide's draws with beta >= 1 - alpha, and the same errors and share
  for `sample_posterior`, which for NumPyro's `AutoContinuous` guides replays
  the model and so maps beta with the drawn alpha.
- "mixture": a two-component Gaussian mixture, n = 300, marginalised over the
  assignments (`MixtureSameFamily`), the means ordered (an
  `ordered_vector` site: NumPyro's `OrderedTransform`) with N(0, 10) priors.
- "regression": y = a + b_1 x_1 + b_2 x_2 + noise, n = 100, on raw
  predictors of scale 100 and 50 (sd 15 and 10), so the intercept is
  correlated with the slopes at about -0.99.
- "GP Poisson": counts at n = 30 points on [0, 10], log rate m + f, f a
  Gaussian process with an RBF kernel, amplitude and length scale inferred,
  f = amplitude L z non-centred (z ~ N(0, I), L the Cholesky factor of the
  unit-amplitude kernel plus 1e-4 I, so float32 never factors a large
  kernel).

Every guide gets NumPyro's example settings: `Trace_ELBO()`, Adam(3e-3),
`--steps` steps (default 5000), for each of the SVI keys `--seeds` (default
0, 1, 2; the same keys for every guide). The guides, each with its
defaults: `AutoFlowGuide(model)` trained with `svi.run`, the same trained with
`flowrox.infer.run_svi` (which returns the best window's parameters if the
loss runs away), NumPyro's `AutoMultivariateNormal`, `AutoIAFNormal` and
`AutoNormal`. The reference is NUTS with its defaults (`--warmup` 1000,
`--draws` 2000, 2 chains run one after the other; the regression's with a
dense mass matrix, as one would for correlations near 1), whose largest
split r-hat and smallest ESS over the latent scalars are printed with it; it
is trusted when r-hat < 1.01 and ESS >= 400.

Per model and guide, the median and the worst over the keys of: over every
latent scalar (each element of each latent sample site, in its constrained
space) and `--guide-draws` draws of the guide program (run by `Predictive`,
the distribution SVI trained), "mean err", the largest
|mean_guide - mean_NUTS| / sd_NUTS, and "sd err", the largest
|sd_guide / sd_NUTS - 1|, each with the scalar where the worst key has it;
"diverged", the keys on which the mean loss of the last window of steps // 50
steps is not finite or more than max(10, 0.1 |best|) above the best window's
("rest.": run_svi returned the best window's parameters; "nf k": on k keys
some steps' losses were not finite); the
median SVI wall time (setup, compilation and steps). The "ref se" of a model
is the NUTS reference's own Monte-Carlo error of a mean, in sd units,
1 / sqrt(ESS) at the smallest ESS: errors near it are noise.

Away from NumPyro's settings, for every guide: `--elbo stl` trains on
flowrox's `StickingTheLandingELBO` (the same loss without the score term,
whose gradient vanishes at the optimum), `--lr-end` decays Adam's step size
linearly from 3e-3 to the given value over the run.

Then a verdict per model, for each AutoFlowGuide row: does it meet "means
within 0.1 sd and sds within 10%" on every key where NUTS is trusted, and is
it no worse than AutoMultivariateNormal on the worse of its two errors, at
the median key and at the worst (allowing 0.02 for the Monte-Carlo noise of
both guides' draws).

Run: nice python benchmarks/bench_models.py [--steps 5000] [--warmup 1000]
    [--draws 2000] [--chains 2] [--guide-draws 10000] [--seeds 0,1,2]
    [--models ar2,garch,garch-naive,mixture,regression,gp] [--elbo trace]
    [--lr-end LR] [--quick]
"""

import argparse
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.diagnostics import summary
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoIAFNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.initialization import init_to_uniform

from flowrox.infer import AutoFlowGuide, StickingTheLandingELBO, run_svi

LEARNING_RATE = 3e-3
MEAN_TARGET = 0.1  # means within 0.1 posterior sd
SD_TARGET = 0.1  # sds within 10%
MVN_MARGIN = 0.02  # two guides' draws compared through one reference
TRUSTED_R_HAT = 1.01
TRUSTED_ESS = 400
ELBOS = {"trace": Trace_ELBO, "stl": StickingTheLandingELBO}

FLOW_RUN, FLOW_RUN_SVI = "AutoFlowGuide, svi.run", "AutoFlowGuide, run_svi"
MVN = "AutoMultivariateNormal"
GUIDES: dict[str, Callable] = {
    FLOW_RUN: AutoFlowGuide,
    FLOW_RUN_SVI: AutoFlowGuide,
    MVN: AutoMultivariateNormal,
    "AutoIAFNormal": AutoIAFNormal,
    "AutoNormal": AutoNormal,
}


class Problem(NamedTuple):
    model: Callable
    description: str
    reference: str | None = None  # another problem whose NUTS run is this one's
    dense_mass: bool = False


# --- the models ---------------------------------------------------------


def _ar2_data(key, length: int = 200):
    c, phi, sigma = 0.5, (0.6, 0.25), 1.0
    noise = sigma * np.asarray(jax.random.normal(key, (length + 100,)))
    y = np.zeros(length + 100)
    for t in range(2, length + 100):
        y[t] = c + phi[0] * y[t - 1] + phi[1] * y[t - 2] + noise[t]
    return jnp.asarray(y[100:], jnp.float32)  # 100 steps of burn-in dropped


def _ar2(y):
    def model():
        c = numpyro.sample("c", dist.Normal(0.0, 2.0))
        phi = numpyro.sample("phi", dist.Normal(0.0, 0.5).expand([2]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        mean = c + phi[0] * y[1:-1] + phi[1] * y[:-2]
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y[2:])

    return model


def _garch_variances(returns, mu, omega, alpha, beta):
    start = jnp.var(returns)  # sigma_1^2: the sample variance, as is usual

    def step(variance, previous):
        variance = omega + alpha * (previous - mu) ** 2 + beta * variance
        return variance, variance

    _, rest = jax.lax.scan(step, start, returns[:-1])
    return jnp.concatenate([start[None], rest])


def _garch_data(key, length: int = 500):
    mu, omega, alpha, beta = 0.05, 0.05, 0.1, 0.85
    noise = np.asarray(jax.random.normal(key, (length + 200,)))
    returns, variance = np.zeros(length + 200), omega / (1 - alpha - beta)
    for t in range(length + 200):
        if t > 0:
            variance = omega + alpha * (returns[t - 1] - mu) ** 2 + beta * variance
        returns[t] = mu + np.sqrt(variance) * noise[t]
    return jnp.asarray(returns[200:], jnp.float32)


def _garch_likelihood(returns, mu, omega, alpha, beta):
    variances = _garch_variances(returns, mu, omega, alpha, beta)
    numpyro.sample("r", dist.Normal(mu, jnp.sqrt(variances)), obs=returns)


def _garch(returns):
    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        omega = numpyro.sample("omega", dist.HalfNormal(1.0))
        alpha = numpyro.sample("alpha", dist.Uniform(0.0, 1.0))
        # beta in (0, 1 - alpha) from a fraction of fixed support (0, 1).
        fraction = numpyro.sample("fraction", dist.Uniform(0.0, 1.0))
        beta = numpyro.deterministic("beta", fraction * (1.0 - alpha))
        _garch_likelihood(returns, mu, omega, alpha, beta)

    return model


def _garch_naive(returns):
    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        omega = numpyro.sample("omega", dist.HalfNormal(1.0))
        alpha = numpyro.sample("alpha", dist.Uniform(0.0, 1.0))
        beta = numpyro.sample("beta", dist.Uniform(0.0, 1.0 - alpha))
        _garch_likelihood(returns, mu, omega, alpha, beta)

    return model


def _mixture_data(key, size: int = 300):
    weight, means, scales = 0.3, np.array([-1.0, 2.0]), np.array([1.0, 0.7])
    pick_key, noise_key = jax.random.split(key)
    component = np.asarray(jax.random.bernoulli(pick_key, 1 - weight, (size,)), int)
    noise = np.asarray(jax.random.normal(noise_key, (size,)))
    return jnp.asarray(means[component] + scales[component] * noise, jnp.float32)


def _mixture(x):
    def model():
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
        means = numpyro.sample(
            "means", dist.ImproperUniform(constraints.ordered_vector, (), (2,))
        )
        # N(0, 10) on each mean; ordered, it is the same prior up to a constant.
        numpyro.factor("means_prior", dist.Normal(0.0, 10.0).log_prob(means).sum())
        scales = numpyro.sample("scales", dist.HalfNormal(2.0).expand([2]).to_event(1))
        mixture = dist.MixtureSameFamily(
            dist.Categorical(weights), dist.Normal(means, scales)
        )
        numpyro.sample("x", mixture, obs=x)

    return model


def _regression_data(key, size: int = 100):
    keys = jax.random.split(key, 3)
    x1 = 100.0 + 15.0 * np.asarray(jax.random.normal(keys[0], (size,)))
    x2 = 50.0 + 10.0 * np.asarray(jax.random.normal(keys[1], (size,)))
    noise = 2.0 * np.asarray(jax.random.normal(keys[2], (size,)))
    y = 3.0 + 0.5 * x1 - 0.2 * x2 + noise
    return tuple(jnp.asarray(v, jnp.float32) for v in (x1, x2, y))


def _regression(data):
    x1, x2, y = data

    def model():
        intercept = numpyro.sample("intercept", dist.Normal(0.0, 10.0))
        slopes = numpyro.sample("slopes", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
        mean = intercept + slopes[0] * x1 + slopes[1] * x2
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)

    return model


GP_POINTS = jnp.linspace(0.0, 10.0, 30)
GP_JITTER = 1e-4


def _rbf_cholesky(points, length_scale):
    """The Cholesky factor of the unit-amplitude RBF kernel plus jitter: the
    amplitude multiplies it outside, so float32 Cholesky never sees a large
    kernel."""
    distance = points[:, None] - points[None, :]
    kernel = jnp.exp(-0.5 * (distance / length_scale) ** 2)
    return jnp.linalg.cholesky(kernel + GP_JITTER * jnp.eye(points.shape[0]))


def _gp_data(key):
    latent_key, count_key = jax.random.split(key)
    f = (
        1.0
        * _rbf_cholesky(GP_POINTS, 2.0)
        @ jax.random.normal(latent_key, GP_POINTS.shape)
    )
    return jax.random.poisson(count_key, jnp.exp(1.0 + f)).astype(jnp.float32)


def _gp(counts):
    def model():
        offset = numpyro.sample("offset", dist.Normal(0.0, 2.0))
        amplitude = numpyro.sample("amplitude", dist.HalfNormal(1.0))
        length_scale = numpyro.sample("length_scale", dist.InverseGamma(5.0, 10.0))
        z = numpyro.sample(
            "z", dist.Normal(0.0, 1.0).expand([GP_POINTS.shape[0]]).to_event(1)
        )
        f = amplitude * (_rbf_cholesky(GP_POINTS, length_scale) @ z)
        numpyro.sample("counts", dist.Poisson(jnp.exp(offset + f)), obs=counts)

    return model


def _problems() -> dict[str, Problem]:
    keys = jax.random.split(jax.random.key(2024), 5)
    returns = _garch_data(keys[1])
    return {
        "AR(2)": Problem(_ar2(_ar2_data(keys[0])), "T = 200; c, phi (2), sigma"),
        "GARCH(1,1)": Problem(
            _garch(returns),
            "T = 500; mu, omega, alpha, fraction (beta = fraction (1 - alpha))",
        ),
        "GARCH naive": Problem(
            _garch_naive(returns),
            "T = 500; mu, omega, alpha, beta ~ Uniform(0, 1 - alpha)",
            reference="GARCH(1,1)",
        ),
        "mixture": Problem(
            _mixture(_mixture_data(keys[2])),
            "n = 300; weights (simplex), ordered means, scales",
        ),
        "regression": Problem(
            _regression(_regression_data(keys[3])),
            "n = 100, x ~ 100 and 50; intercept, slopes (2), sigma",
            dense_mass=True,
        ),
        "GP Poisson": Problem(
            _gp(_gp_data(keys[4])),
            "n = 30; offset, amplitude, length scale, z (30, non-centred)",
        ),
    }


MODEL_FLAGS = {
    "ar2": "AR(2)",
    "garch": "GARCH(1,1)",
    "garch-naive": "GARCH naive",
    "mixture": "mixture",
    "regression": "regression",
    "gp": "GP Poisson",
}


# --- the measurements ----------------------------------------------------


def _latent_sites(model) -> list[str]:
    # Values from init_to_uniform: an ImproperUniform site has no sampler.
    seeded = numpyro.handlers.seed(model, 0)
    with numpyro.handlers.block():
        trace = numpyro.handlers.trace(
            numpyro.handlers.substitute(seeded, substitute_fn=init_to_uniform)
        ).get_trace()
    return [
        name
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]


def _scalars(samples: dict, sites: list[str]) -> tuple[np.ndarray, list[str]]:
    """Draws x latent scalars, and each scalar's name."""
    columns, names = [], []
    for site in sites:
        values = np.asarray(samples[site], np.float64)
        values = values.reshape(values.shape[0], -1)
        columns.append(values)
        if values.shape[1] == 1:
            names.append(site)
        else:
            names.extend(f"{site}[{index}]" for index in range(values.shape[1]))
    return np.concatenate(columns, axis=1), names


def _nuts(problem: Problem, key, warmup: int, draws: int, chains: int) -> dict:
    mcmc = MCMC(
        NUTS(problem.model, dense_mass=problem.dense_mass),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(key, extra_fields=("diverging",))
    grouped = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    seconds = time.perf_counter() - start
    stats = summary({k: np.asarray(v) for k, v in grouped.items()})
    r_hat = max(float(np.max(s["r_hat"])) for s in stats.values())
    ess = min(float(np.min(s["n_eff"])) for s in stats.values())
    return dict(
        samples={k: v.reshape((-1, *v.shape[2:])) for k, v in grouped.items()},
        seconds=seconds,
        r_hat=r_hat,
        ess=ess,
        divergences=int(np.sum(mcmc.get_extra_fields()["diverging"])),
    )


def _diverged(losses: np.ndarray, steps: int) -> bool:
    """The last window's mean loss is not finite, or more than
    max(10, 0.1 |best|) above the best window's (run_svi's test)."""
    window = max(1, steps // 50)
    full = (steps // window) * window
    means = losses[:full].reshape(-1, window).mean(axis=1)
    last = float(np.mean(losses[-window:]))
    if not np.isfinite(last) or not np.isfinite(means).any():
        return True
    best = float(np.min(means[np.isfinite(means)]))
    return last > best + max(10.0, 0.1 * abs(best))


def _optimizer(steps: int, lr_end: float | None):
    if lr_end is None:
        return numpyro.optim.Adam(LEARNING_RATE)
    return optax.adam(optax.linear_schedule(LEARNING_RATE, lr_end, steps))


def _fit(
    name: str, problem: Problem, steps: int, key, elbo: str, lr_end: float | None
) -> dict:
    guide = GUIDES[name](problem.model)
    svi = SVI(problem.model, guide, _optimizer(steps, lr_end), ELBOS[elbo]())
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if name == FLOW_RUN_SVI:
            result = run_svi(svi, key, steps)
        else:
            result = svi.run(key, steps, progress_bar=False)
        params = jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return dict(
        guide=guide,
        params=params,
        seconds=seconds,
        losses=np.asarray(result.losses, np.float64),
        support_warning=any("support of latent site" in m for m in messages),
        restored=any("training diverged" in m for m in messages),
    )


def _errors(
    guide_draws: np.ndarray, reference: np.ndarray, names: list[str]
) -> tuple[float, str, float, str]:
    mean_ref, sd_ref = reference.mean(axis=0), reference.std(axis=0, ddof=1)
    mean_err = np.abs(guide_draws.mean(axis=0) - mean_ref) / sd_ref
    sd_err = np.abs(guide_draws.std(axis=0, ddof=1) / sd_ref - 1.0)
    if not (np.all(np.isfinite(mean_err)) and np.all(np.isfinite(sd_err))):
        return float("inf"), "(not finite)", float("inf"), "(not finite)"
    worst_mean, worst_sd = int(np.argmax(mean_err)), int(np.argmax(sd_err))
    return (
        float(mean_err[worst_mean]),
        names[worst_mean],
        float(sd_err[worst_sd]),
        names[worst_sd],
    )


def _violations(samples: dict) -> float:
    alpha, beta = np.asarray(samples["alpha"]), np.asarray(samples["beta"])
    return float(np.mean(beta >= 1.0 - alpha))


def _evaluate(fit: dict, sites: list[str], reference: np.ndarray, key, draws: int):
    """Errors of the guide's own draws (the distribution SVI trained: the guide
    program run under `Predictive`); for the naive GARCH also the share of
    violating draws, and the same from `sample_posterior`, which replays the
    model for NumPyro's `AutoContinuous` guides."""
    guide, params = fit["guide"], fit["params"]
    samples = Predictive(guide, params=params, num_samples=draws, parallel=True)(key)
    values, names = _scalars(samples, sites)
    mean_err, mean_at, sd_err, sd_at = _errors(values, reference, names)
    row = dict(mean_err=mean_err, mean_at=mean_at, sd_err=sd_err, sd_at=sd_at)
    if "beta" in sites:
        row["violations"] = _violations(samples)
        try:
            posterior = guide.sample_posterior(key, params, sample_shape=(draws,))
        except ValueError as error:  # AutoFlowGuide refuses NaN parameters
            print(f"    (sample_posterior refused: {str(error)[:100]}...)")
        else:
            values, _ = _scalars(posterior, sites)
            mean_err, _, sd_err, _ = _errors(values, reference, names)
            row.update(
                posterior_violations=_violations(posterior),
                posterior_mean_err=mean_err,
                posterior_sd_err=sd_err,
            )
    return row


def _warm_up(key) -> float:
    """Pays JAX's and NumPyro's one-time start-up outside the timings."""
    start = time.perf_counter()

    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    svi = SVI(model, AutoNormal(model), numpyro.optim.Adam(LEARNING_RATE), Trace_ELBO())
    svi.run(key, 10, progress_bar=False)
    MCMC(NUTS(model), num_warmup=10, num_samples=10, progress_bar=False).run(key)
    return time.perf_counter() - start


def _worse(run: dict) -> float:
    return max(run["mean_err"], run["sd_err"])


def _meets(run: dict) -> bool:
    return run["mean_err"] <= MEAN_TARGET and run["sd_err"] <= SD_TARGET


def _verdict(rows: dict, nuts: dict) -> list[str]:
    """Per AutoFlowGuide row: the target on each key, and the worse of the two
    errors against AutoMultivariateNormal's, at the median key and the worst."""
    trusted = nuts["r_hat"] < TRUSTED_R_HAT and nuts["ess"] >= TRUSTED_ESS
    mvn = [_worse(run) for run in rows[MVN]]
    lines = []
    for name in (FLOW_RUN, FLOW_RUN_SVI):
        runs = rows[name]
        worse = [_worse(run) for run in runs]
        met = sum(_meets(run) for run in runs)
        if not trusted:
            meets = "target n/a (NUTS not trusted)"
        elif met == len(runs):
            meets = f"meets the target on all {len(runs)} keys"
        else:
            meets = f"MISSES the target on {len(runs) - met} of {len(runs)} keys"
        no_worse = (
            np.median(worse) <= np.median(mvn) + MVN_MARGIN
            and max(worse) <= max(mvn) + MVN_MARGIN
        )
        lines.append(
            f"{name}: {meets}; {'no worse' if no_worse else 'WORSE'} than {MVN} "
            f"(worse error median {np.median(worse):.3f}, worst {max(worse):.3f}; "
            f"{MVN} {np.median(mvn):.3f}, {max(mvn):.3f})"
        )
    return lines


def _spread(values) -> str:
    """Median / worst of a measure over the keys."""
    values = np.asarray(values, np.float64)
    return f"{np.median(values):.3f} / {np.max(values):.3f}"


def _print_model(name: str, problem: Problem, nuts: dict, rows: dict):
    print(
        f"\n{name} ({problem.description}): NUTS {nuts['seconds']:.0f} s, "
        f"r-hat {nuts['r_hat']:.3f}, ESS {nuts['ess']:.0f}, divergences "
        f"{nuts['divergences']}, ref se {1 / np.sqrt(nuts['ess']):.3f}"
        + (" (reference: GARCH(1,1)'s run)" if problem.reference else "")
    )
    extra = "  beta>=1-alpha" if problem.reference else ""
    print(
        f"  {'median / worst over keys':24s} {'mean err':>15s} {'(worst at)':>13s} "
        f"{'sd err':>15s} {'(worst at)':>13s} {'diverged':>19s} {'SVI s':>6s}{extra}"
    )
    for guide_name, runs in rows.items():
        worst_mean = max(runs, key=lambda run: run["mean_err"])
        worst_sd = max(runs, key=lambda run: run["sd_err"])
        diverged = f"{sum(run['diverged'] for run in runs)}/{len(runs)}"
        restored = sum(run["restored"] for run in runs)
        if restored:
            diverged += f" ({restored} rest.)"
        nonfinite = sum(run["nonfinite"] > 0 for run in runs)
        if nonfinite:
            diverged += f" nf {nonfinite}"
        line = (
            f"  {guide_name:24s} {_spread([r['mean_err'] for r in runs]):>15s} "
            f"{worst_mean['mean_at']:>13s} {_spread([r['sd_err'] for r in runs]):>15s} "
            f"{worst_sd['sd_at']:>13s} {diverged:>19s} "
            f"{np.median([run['seconds'] for run in runs]):6.1f}"
        )
        if "violations" in runs[0]:
            line += f"  {_spread([run['violations'] for run in runs])}"
        print(line)
    if problem.reference:
        print(
            "  their sample_posterior, median / worst (mean err, sd err, "
            "beta>=1-alpha):"
        )
        for guide_name, runs in rows.items():
            if all("posterior_violations" in run for run in runs):
                print(
                    f"  {guide_name:24s} "
                    f"{_spread([r['posterior_mean_err'] for r in runs]):>15s} "
                    f"{_spread([r['posterior_sd_err'] for r in runs]):>29s} "
                    f"{_spread([r['posterior_violations'] for r in runs]):>13s}"
                )
        warned = [g for g, runs in rows.items() if runs[0]["support_warning"]]
        print(f"  dependent-support warning raised by: {', '.join(warned) or 'none'}")
    for line in _verdict(rows, nuts):
        print(f"  verdict: {line}")


def main(
    steps: int,
    warmup: int,
    draws: int,
    chains: int,
    guide_draws: int,
    seeds: list[int],
    selected: list[str],
    elbo: str = "trace",
    lr_end: float | None = None,
) -> dict:
    nuts_key, draw_key = jax.random.split(jax.random.key(0))
    print(
        f"{steps} SVI steps of {ELBOS[elbo].__name__}(), Adam({LEARNING_RATE}"
        + ("" if lr_end is None else f" decaying linearly to {lr_end}")
        + "), every guide with "
        f"its defaults, SVI keys {', '.join(map(str, seeds))}; NUTS {warmup} warmup "
        f"+ {draws} draws x {chains} chains (sequential); {guide_draws} draws per "
        "guide"
    )
    print(f"warm-up (not in any timing): {_warm_up(draw_key):.1f} s")
    problems = _problems()
    references, results = {}, {}
    for name in selected:
        problem = problems[name]
        source = problem.reference or name
        if source not in references:
            references[source] = _nuts(
                problems[source], nuts_key, warmup, draws, chains
            )
        nuts = references[source]
        sites = _latent_sites(problem.model)
        reference, _ = _scalars(nuts["samples"], sites)
        rows = {}
        for guide_name in GUIDES:
            rows[guide_name] = []
            for seed in seeds:
                fit = _fit(
                    guide_name, problem, steps, jax.random.key(seed), elbo, lr_end
                )
                run = _evaluate(fit, sites, reference, draw_key, guide_draws)
                run.update(
                    seconds=fit["seconds"],
                    diverged=_diverged(fit["losses"], steps),
                    nonfinite=int(np.sum(~np.isfinite(fit["losses"]))),
                    restored=fit["restored"],
                    support_warning=fit["support_warning"],
                )
                rows[guide_name].append(run)
        _print_model(name, problem, nuts, rows)
        results[name] = dict(nuts=nuts, rows=rows)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--guide-draws", type=int, default=10_000)
    parser.add_argument("--seeds", default="0,1,2", help="the SVI keys")
    parser.add_argument(
        "--elbo",
        choices=sorted(ELBOS),
        default="trace",
        help="trace: Trace_ELBO (NumPyro's examples); stl: StickingTheLandingELBO",
    )
    parser.add_argument(
        "--lr-end",
        type=float,
        help="decay Adam's step size linearly from 3e-3 to this over the run",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODEL_FLAGS),
        help=f"a comma-separated subset of {','.join(MODEL_FLAGS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 300 steps, NUTS 200 warmup + 200 draws, 2000 guide "
        "draws, SVI key 0",
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.steps, arguments.warmup, arguments.draws = 300, 200, 200
        arguments.guide_draws, arguments.seeds = 2000, "0"
    flags = [flag.strip() for flag in arguments.models.split(",") if flag.strip()]
    unknown = [flag for flag in flags if flag not in MODEL_FLAGS]
    if unknown:
        parser.error(
            f"--models: unknown {', '.join(unknown)}; choose from "
            f"{', '.join(MODEL_FLAGS)}"
        )
    start = time.perf_counter()
    main(
        arguments.steps,
        arguments.warmup,
        arguments.draws,
        arguments.chains,
        arguments.guide_draws,
        [int(seed) for seed in arguments.seeds.split(",")],
        [MODEL_FLAGS[flag] for flag in flags],
        elbo=arguments.elbo,
        lr_end=arguments.lr_end,
    )
    print(f"\nTotal wall time {time.perf_counter() - start:.1f} s")
