"""The tour's first steps: flows, priors, Bayesian modules, fitting, guides,
neural fields."""

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, SVI
from numpyro.infer.reparam import NeuTraReparam

from .._bayes import bayesian, sample_module
from ..bijections import Affine, Chain, Permute, Scan
from ..distributions import Flow
from ..flows import masked_autoregressive_flow, spline_flow
from ..infer import AutoFlowGuide, StickingTheLandingELBO, importance_diagnostics
from ..nn import HyperSIREN
from ..train import fit_function_prior, fit_to_data
from ._report import MatplotlibMissingError, Settings, StepResult, Verdict, _show

# 1. A flow ------------------------------------------------------------------


def _layer(key):
    loc_key, scale_key = jax.random.split(key)
    return Chain(
        [
            Affine(
                0.5 * jax.random.normal(loc_key, (2,)),
                jnp.exp(0.3 * jax.random.normal(scale_key, (2,))),
            ),
            Permute(jnp.array([1, 0])),
        ]
    )


def _affine_flow(n_layers: int = 6) -> Flow:
    layers = eqx.filter_vmap(_layer)(jax.random.split(jax.random.key(0), n_layers))
    return Flow(dist.Normal(0.0, 1.0), Scan(layers))


def _exact_prior(flow: Flow):
    # Every layer is affine, so the flow is z = f(0) + J x with a constant J:
    # the prior is exactly N(f(0), J J^T).
    bijection = flow.bijection
    jacobian = jax.jacobian(bijection.transform)(jnp.zeros(2))
    return bijection.transform(jnp.zeros(2)), jacobian @ jacobian.T


@eqx.filter_jit
def _draws_and_density_error(flow: Flow, key):
    samples, log_probs = flow.sample_and_log_prob(key, (5,))
    # The flow is affine, so its exact density is a Gaussian's.
    exact = dist.MultivariateNormal(*_exact_prior(flow)).log_prob(samples)
    return samples, log_probs, jnp.max(jnp.abs(flow.log_prob(samples) - exact))


def _flow_step(settings: Settings) -> StepResult:
    flow = _affine_flow()
    _show("flow = Flow(Normal(0, 1), Scan(6 stacked Affine+Permute layers))")
    n_parameters = sum(
        leaf.size for leaf in jax.tree.leaves(eqx.filter(flow, eqx.is_inexact_array))
    )
    _show(
        f"event shape {flow.event_shape}, batch shape {flow.batch_shape}, "
        f"{n_parameters} trainable parameters"
    )
    samples, log_probs, error = _draws_and_density_error(
        flow, jax.random.key(settings.seed)
    )
    _show("five draws and their log densities (one forward pass):")
    for sample, log_prob in zip(
        np.asarray(samples), np.asarray(log_probs), strict=True
    ):
        _show(f"  z = [{sample[0]:+.3f}, {sample[1]:+.3f}]   log p = {log_prob:+.4f}")
    error = float(error)
    verdicts = [
        Verdict(
            f"max |Flow.log_prob - exact Gaussian log density| {error:.1e}",
            error < 1e-4,
            "< 1e-4, float32 round-off",
            "the flow's density disagrees with the closed form: please report it",
        )
    ]
    return StepResult({"density_error": error}, verdicts)


# 2. The flow as a NUTS prior -------------------------------------------------


def _exact_posterior(prior_mean, prior_covariance, observed, noise):
    prior_precision = jnp.linalg.inv(prior_covariance)
    precision = prior_precision + observed.shape[0] / noise**2 * jnp.eye(2)
    covariance = jnp.linalg.inv(precision)
    mean = covariance @ (prior_precision @ prior_mean + observed.sum(0) / noise**2)
    return np.asarray(mean), np.asarray(covariance)


def _compare_with_exact(labels, draws, mean, covariance, *, name: str):
    """Prints NUTS's mean and sd next to the exact ones; returns the errors."""
    ess = np.asarray(effective_sample_size(draws[None]))
    sd = np.sqrt(np.diag(covariance))
    _show(
        f"{name:12s} NUTS mean  exact mean   NUTS sd  exact sd     ESS  |error|/MC se"
    )
    mean_errors, sd_errors = [], []
    for i, label in enumerate(labels):
        standard_error = sd[i] / np.sqrt(ess[i])
        mean_errors.append(float(abs(draws[:, i].mean() - mean[i]) / standard_error))
        sd_errors.append(float(abs(draws[:, i].std() / sd[i] - 1.0)))
        _show(
            f"{label:12s} {draws[:, i].mean():+9.4f}  {mean[i]:+9.4f}   "
            f"{draws[:, i].std():8.4f}  {sd[i]:8.4f}  {float(ess[i]):6.0f}  "
            f"{mean_errors[-1]:9.2f}"
        )
    return mean_errors, sd_errors


def _agreement_verdicts(mean_errors, sd_errors, divergences: int):
    retry = "rerun with more --samples or another --seed; if it persists, report it"
    worst_mean, worst_sd = max(mean_errors), max(sd_errors)
    return [
        Verdict(
            f"{divergences} divergences",
            divergences == 0,
            "0",
            "NUTS hit a region its step size cannot resolve; " + retry,
        ),
        Verdict(
            f"largest mean error {worst_mean:.2f} Monte Carlo standard errors",
            worst_mean < 4.0,
            "< 4",
            "NUTS disagrees with the exact posterior; " + retry,
        ),
        Verdict(
            f"largest sd error {worst_sd:.1%}",
            worst_sd < 0.1,
            "< 10%",
            "NUTS's spread disagrees with the exact posterior; " + retry,
        ),
    ]


def _prior_step(settings: Settings) -> StepResult:
    flow = _affine_flow()
    noise = 0.7
    observed = jnp.array([[0.4, 1.2], [1.1, 0.3], [0.8, 0.9], [1.5, 1.4]])

    def model(observed):
        z = numpyro.sample("z", flow)
        with numpyro.plate("data", observed.shape[0]):
            numpyro.sample("y", dist.Normal(z, noise).to_event(1), obs=observed)

    _show("model: z ~ flow (step 1);  y_i ~ N(z, 0.7^2 I), 4 observations")
    mcmc = MCMC(
        NUTS(model),
        num_warmup=500,
        num_samples=settings.num_samples,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(settings.seed + 1), observed)
    z = np.asarray(mcmc.get_samples()["z"])
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    mean, covariance = _exact_posterior(*_exact_prior(flow), observed, noise)
    _show(f"NUTS: 500 warm-up steps, {settings.num_samples} draws")
    mean_errors, sd_errors = _compare_with_exact(
        ["z[0]", "z[1]"], z, mean, covariance, name="posterior"
    )
    numbers = {
        "divergences": divergences,
        "mean_errors_in_se": mean_errors,
        "sd_errors": sd_errors,
    }
    return StepResult(numbers, _agreement_verdicts(mean_errors, sd_errors, divergences))


# 3. A Bayesian module --------------------------------------------------------


def _bayesian_module_step(settings: Settings) -> StepResult:
    seed, noise, prior_scale = settings.seed, 0.3, 1.0
    x = jax.random.normal(jax.random.key(seed + 2), (25, 2))
    y = (
        x @ jnp.array([0.8, -1.2])
        + 0.5
        + noise * jax.random.normal(jax.random.key(seed + 3), (25,))
    )
    linear = bayesian(
        eqx.nn.Linear(2, 1, key=jax.random.key(seed)), dist.Normal(0.0, prior_scale)
    )

    def model(x, y):
        layer = sample_module("linear", linear)  # sites named from pytree paths
        numpyro.sample("y", dist.Normal(jax.vmap(layer)(x)[:, 0], noise), obs=y)

    _show("linear = bayesian(eqx.nn.Linear(2, 1), Normal(0, 1))")
    _show("model: y_i ~ N(sample_module('linear', linear)(x_i), 0.3^2), 25 points")
    mcmc = MCMC(
        NUTS(model),
        num_warmup=500,
        num_samples=settings.num_samples,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed + 4), x, y)
    samples = mcmc.get_samples()
    sites = sorted(samples)
    _show(f"sample sites: {', '.join(sites)}")
    draws = np.concatenate(
        [
            np.asarray(samples["linear/weight"])[:, 0],
            np.asarray(samples["linear/bias"]),
        ],
        axis=1,
    )
    # Conjugate: a Normal prior on the coefficients and Normal noise.
    features = np.concatenate([np.asarray(x), np.ones((25, 1))], axis=1)
    precision = features.T @ features / noise**2 + np.eye(3) / prior_scale**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ features.T @ np.asarray(y) / noise**2
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    mean_errors, sd_errors = _compare_with_exact(
        ["weight[0]", "weight[1]", "bias"], draws, mean, covariance, name="coefficient"
    )
    expected_sites = ["linear/bias", "linear/weight"]
    verdicts = [
        Verdict(
            f"sites {', '.join(sites)}",
            sites == expected_sites,
            f"one per leaf, named from its path: {', '.join(expected_sites)}",
            "the site names changed: please report it",
        ),
        *_agreement_verdicts(mean_errors, sd_errors, divergences),
    ]
    numbers = {
        "sites": sites,
        "divergences": divergences,
        "mean_errors_in_se": mean_errors,
        "sd_errors": sd_errors,
    }
    return StepResult(numbers, verdicts)


# 4. Fitting a flow to data ----------------------------------------------------


def _ring():
    """Eight Gaussians (sd 0.2) on a circle of radius 2, equally weighted."""
    angles = 2 * jnp.pi * jnp.arange(8) / 8
    means = 2.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    return dist.MixtureSameFamily(
        dist.Categorical(jnp.full(8, 1 / 8)), dist.Normal(means, 0.2).to_event(1)
    )


def _matplotlib_figure():
    """matplotlib's `Figure` class, or an ImportError that says how to get it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MatplotlibMissingError() from error
    return Figure


def save_samples_figure(
    path, target: np.ndarray, fitted: np.ndarray, *, title: str, fitted_title: str
) -> None:
    """Saves 2-D histograms of target and flow draws side by side as a PNG.

    The image is 1000 x 480 pixels: two square panels on [-3, 3]^2 with their
    axes labelled, one title each and `title` above both.
    """
    figure = _matplotlib_figure()(figsize=(10.0, 4.8), dpi=100, layout="constrained")
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    panels = [
        (f"target ({len(target)} draws)", target),
        (f"{fitted_title} ({len(fitted)} draws)", fitted),
    ]
    for axis, (panel_title, draws) in zip(axes, panels, strict=True):
        draws = np.asarray(draws)
        axis.hist2d(
            draws[:, 0], draws[:, 1], bins=90, range=[[-3, 3], [-3, 3]], cmap="Blues"
        )
        axis.set_aspect("equal")
        axis.set_title(panel_title)
        axis.set_xlabel("$z_1$")
    axes[0].set_ylabel("$z_2$")
    figure.suptitle(title)
    figure.savefig(path, format="png")


def _fit_step(settings: Settings) -> StepResult:
    target = _ring()
    keys = jax.random.split(jax.random.key(settings.seed + 5), 4)
    data = target.sample(keys[0], (20_000,))
    _show("target: 8 Gaussians (sd 0.2) on a ring of radius 2; 20000 draws")
    flow = spline_flow(keys[1], 2, layers=8, hidden=64)
    _show("flow = spline_flow(key, 2, layers=8, hidden=64): 8 RQ-spline couplings")
    steps = 2000
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 200, steps)),
    )
    flow, _ = fit_to_data(
        keys[2],
        flow,
        data,
        optimizer=optimizer,
        steps=steps,
        patience=None,
        progress=False,
    )
    held_out = target.sample(keys[3], (5000,))
    true_nll = -float(jnp.mean(target.log_prob(held_out)))
    flow_nll = -float(jnp.mean(flow.log_prob(held_out)))
    gap = flow_nll - true_nll
    _show(
        f"fit_to_data, {steps} Adam steps; held-out NLL: flow {flow_nll:.4f}, "
        f"true density {true_nll:.4f} nats"
    )
    if settings.image is not None:
        draws = flow.sample(jax.random.key(settings.seed + 8), (5000,))
        save_samples_figure(
            settings.image,
            np.asarray(held_out),
            np.asarray(draws),
            title=f"fit_to_data on a ring of 8 Gaussians: gap {gap:+.3f} nats",
            fitted_title=f"spline_flow after {steps} steps",
        )
        _show(f"wrote {settings.image}: target draws (left), flow draws (right)")
    verdicts = [
        Verdict(
            f"gap {gap:+.3f} nats",
            gap < 0.05,
            "< 0.05",
            "the flow has not fitted the ring: train longer or use a wider "
            "flow; see docs/choosing-a-flow.md",
        )
    ]
    return StepResult({"nll_gap": gap}, verdicts)


# 5. A flow guide, NeuTra and diagnostics --------------------------------------


def _funnel():
    # Neal's funnel in 10 dimensions; log Z = 0, so -ELBO is the KL.
    y = numpyro.sample("y", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(y / 2)).expand([9]).to_event(1))


def _iaf(key, dim):
    return masked_autoregressive_flow(
        key, dim, layers=3, hidden=32, one_pass="transform"
    )


def _guide_step(settings: Settings) -> StepResult:
    seed = settings.seed
    _show("model: y ~ N(0, 3), x_i ~ N(0, exp(y / 2)), i = 1..9 (log Z = 0)")
    guide = AutoFlowGuide(_funnel, _iaf, init_scale=1.0)
    # Sticking the landing (see docs/inference.md) with a decaying step. On
    # Trace_ELBO at a constant 3e-3, with seed 1 and XLA's older CPU fusion
    # backend, this guide's loss turned infinite at step 2868: by then some of
    # its draws overflowed (y up to 1e26 and inf; the affine layers' scales
    # compound).
    schedule = optax.cosine_decay_schedule(3e-3, 3000, 0.05)
    elbo = StickingTheLandingELBO(num_particles=4)
    svi = SVI(_funnel, guide, optax.adam(schedule), elbo)
    result = svi.run(jax.random.key(seed + 10), 3000, progress_bar=False)
    diagnostics = importance_diagnostics(
        guide, key=jax.random.key(seed + 11), n=10_000, params=result.params
    )
    kl, ess_fraction = float(diagnostics.kl), float(diagnostics.ess)
    khat = float(diagnostics.khat)
    _show(
        "guide: AutoFlowGuide(model, affine IAF of 3 layers), 3000 SVI steps "
        "of StickingTheLandingELBO(4)"
    )
    _show(
        f"importance diagnostics: KL {kl:.3f} nats, ESS {ess_fraction:.2f} of "
        f"the draws, k-hat {khat:.2f}, log Z "
        f"{float(diagnostics.log_normalizer):+.3f} "
        f"+- {float(diagnostics.log_normalizer_se):.3f} (exact 0)"
    )
    neutra = NeuTraReparam(guide, result.params)
    # Both samplers at target_accept_prob=0.95. Seeds 0-3: NeuTra NUTS 3-8
    # divergences of 1000, sd(y) 2.82-2.92 (30-71 divergences at NUTS's
    # default 0.8); plain NUTS none, and sd(y) 1.8-2.6: it never enters the
    # neck, where a divergence would have told it so.
    runs = {
        "NeuTra NUTS": (NUTS(neutra.reparam(_funnel), target_accept_prob=0.95), True),
        "plain NUTS": (NUTS(_funnel, target_accept_prob=0.95), False),
    }
    numbers = {"kl": kl, "ess_fraction": ess_fraction, "khat": khat}
    _show("NUTS (target_accept_prob=0.95), 500 warm-up steps and 1000 draws each:")
    _show("sampler        sd(y) (exact 3)   ESS(y)   divergences")
    for name, (kernel, reparametrised) in runs.items():
        mcmc = MCMC(kernel, num_warmup=500, num_samples=1000, progress_bar=False)
        mcmc.run(jax.random.key(seed + 12), extra_fields=("diverging",))
        samples = mcmc.get_samples()
        if reparametrised:
            samples = neutra.transform_sample(samples["auto_shared_latent"])
        y = np.asarray(samples["y"])
        ess = float(effective_sample_size(y[None]))
        divergences = int(mcmc.get_extra_fields()["diverging"].sum())
        _show(f"{name:13s} {float(y.std()):10.2f} {ess:12.0f} {divergences:10d}")
        numbers[name] = {
            "sd_y": float(y.std()),
            "ess_y": ess,
            "divergences": divergences,
        }
    neutra_run, plain_run = numbers["NeuTra NUTS"], numbers["plain NUTS"]
    shortfall = 1.0 - plain_run["sd_y"] / 3.0
    if shortfall > 0.1:
        _show(
            f"plain NUTS's sd(y) is {shortfall:.0%} short of 3: it rarely enters "
            "the funnel's neck (y << 0), divergences or not"
        )
    sd_error = abs(neutra_run["sd_y"] / 3.0 - 1.0)
    longer = (
        "train the guide longer or with more particles (5000 steps of "
        "StickingTheLandingELBO(8)); see docs/inference.md"
    )
    verdicts = [
        Verdict(f"guide KL {kl:.3f} nats", kl < 0.2, "< 0.2", longer),
        Verdict(
            f"k-hat {khat:.2f}",
            khat < 0.7,
            "< 0.7, importance weights usable",
            "the guide's tails are too light for importance weights; " + longer,
        ),
        Verdict(
            f"NeuTra NUTS: {neutra_run['divergences']} divergences",
            neutra_run["divergences"] <= 10,
            "at most 10 of 1000",
            "the guide misses the funnel's neck; " + longer,
        ),
        Verdict(
            f"NeuTra NUTS: sd(y) {neutra_run['sd_y']:.2f}, {sd_error:.0%} off",
            sd_error < 0.1,
            "within 10% of 3",
            "NeuTra NUTS has not explored the funnel; " + longer,
        ),
        Verdict(
            f"NeuTra NUTS: ESS(y) {neutra_run['ess_y']:.0f}, plain NUTS "
            f"{plain_run['ess_y']:.0f}",
            neutra_run["ess_y"] > plain_run["ess_y"],
            "NeuTra above plain",
            "the guide does not straighten the funnel; " + longer,
        ),
    ]
    return StepResult(numbers, verdicts)


# 6. A neural field prior -----------------------------------------------------


def _field_prior_step(settings: Settings) -> StepResult:
    seed = settings.seed
    keys = jax.random.split(jax.random.key(seed + 20), 7)
    n_functions, steps = 2048, 1000
    a = jax.random.uniform(keys[0], (n_functions, 1, 1), minval=1.0, maxval=3.0)
    b = jax.random.uniform(keys[1], (n_functions, 1, 1), maxval=2 * jnp.pi)
    x = jnp.linspace(-jnp.pi, jnp.pi, 32, endpoint=False)[:, None]
    _show("family: f(x) = sin(a x + b), a ~ U(1, 3), b ~ U(0, 2 pi), x in [-pi, pi]")
    decoder = HyperSIREN(
        1, 16, 1, 2, cond_dim=2, key=keys[2], latent_dim=8, first_omega=10.0
    )
    prior = fit_function_prior(
        keys[3], decoder, x / jnp.pi, jnp.sin(a * x + b), noise=0.05, steps=steps
    )
    _show(
        f"fit_function_prior: a HyperSIREN decoder f(x, z), z in R^2, trained "
        f"as a VAE on {n_functions} functions ({steps} steps): -ELBO "
        f"{float(prior.losses[-100:].mean()):.1f} nats per function"
    )
    # One compiled program for the field: wherever NUTS's set-up runs the model
    # outside jit, it would otherwise compile every operation on its own.
    field = eqx.filter_jit(lambda x, z: prior.decoder(x[:, None] / jnp.pi, z)[:, 0])
    noise, a_new, b_new = 0.1, 2.3, 1.0
    x_observed = jax.random.uniform(keys[4], (8,), minval=-jnp.pi, maxval=jnp.pi)
    y_observed = jnp.sin(a_new * x_observed + b_new) + noise * jax.random.normal(
        keys[5], (8,)
    )

    def model(x, y=None):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(field(x, z), noise), obs=y)

    _show(
        f"model: z ~ N(0, I); y_i ~ N(f(x_i, z), {noise}^2), 8 noisy points of "
        f"a new function (a = {a_new}, b = {b_new})"
    )
    # The posterior over z can have several modes (other phases and frequencies
    # fit a few points), some far in the prior's tails: four chains start at
    # draws from the posterior evaluated on a grid over [-4, 4]^2.
    axis = jnp.linspace(-4.0, 4.0, 81)
    z_grid = jnp.stack(jnp.meshgrid(axis, axis), -1).reshape(-1, 2)

    @jax.jit
    @partial(jax.vmap, in_axes=(0, None, None))
    def log_joint(z, x, y):
        prior_term = dist.Normal(0.0, 1.0).log_prob(z).sum()
        return prior_term + dist.Normal(field(x, z), noise).log_prob(y).sum()

    weights = log_joint(z_grid, x_observed, y_observed)
    starts = z_grid[jax.random.categorical(keys[6], weights, shape=(4,))]
    mcmc = MCMC(
        NUTS(model),
        num_warmup=300,
        num_samples=125,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.key(seed + 21), x_observed, y_observed, init_params={"z": starts}
    )
    grid = jnp.linspace(-jnp.pi, jnp.pi, 101)
    f_draws = jax.jit(jax.vmap(lambda z: field(grid, z)))(mcmc.get_samples()["z"])
    y_draws = f_draws + noise * jax.random.normal(
        jax.random.key(seed + 22), f_draws.shape
    )
    truth = jnp.sin(a_new * grid + b_new)

    def coverage(draws):
        lower, upper = jnp.quantile(draws, jnp.array([0.025, 0.975]), axis=0)
        return float(jnp.mean((truth >= lower) & (truth <= upper)))

    rmse = float(jnp.sqrt(jnp.mean((f_draws.mean(0) - truth) ** 2)))
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    predictive_coverage, credible_coverage = coverage(y_draws), coverage(f_draws)
    _show(f"NUTS over z: 4 chains of 125 draws, {divergences} divergences")
    _show(
        "share of the true function inside the 95% bands on a 101-point grid: "
        f"posterior predictive {predictive_coverage:.0%}, credible band of f "
        f"{credible_coverage:.0%}"
    )
    retrain = (
        "the decoder has not learned the family: train it longer "
        "(fit_function_prior steps=); see docs/conditioners.md"
    )
    verdicts = [
        Verdict(
            f"posterior-mean RMSE {rmse:.3f} against the true function",
            rmse < 0.2,
            "< 0.2, twice the noise",
            retrain,
        ),
        Verdict(
            f"predictive band covers {predictive_coverage:.0%} of the true function",
            predictive_coverage >= 0.9,
            ">= 90%",
            retrain,
        ),
    ]
    numbers = {
        "rmse": rmse,
        "divergences": divergences,
        "predictive_coverage": predictive_coverage,
        "credible_coverage": credible_coverage,
    }
    return StepResult(numbers, verdicts)
