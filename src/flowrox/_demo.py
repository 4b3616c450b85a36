"""`python -m flowrox demo`: an end-to-end tour of what flowrox does today."""

import time
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

from ._bayes import bayesian, sample_module
from ._png import histogram_png
from .bijections import Affine, Chain, Permute, Scan
from .distributions import Flow
from .flows import masked_autoregressive_flow, spline_flow
from .infer import AutoFlowGuide, StickingTheLandingELBO, importance_diagnostics
from .nn import HyperSIREN
from .train import fit_function_prior, fit_to_data


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


def _build_flow(n_layers: int) -> Flow:
    layers = eqx.filter_vmap(_layer)(jax.random.split(jax.random.key(0), n_layers))
    return Flow(dist.Normal(0.0, 1.0), Scan(layers))


def _exact_prior(flow: Flow):
    # Every layer is affine, so the flow is z = f(0) + J x with a constant J:
    # the prior is exactly N(f(0), J J^T).
    bijection = flow.bijection
    jacobian = jax.jacobian(bijection.transform)(jnp.zeros(2))
    return bijection.transform(jnp.zeros(2)), jacobian @ jacobian.T


def _exact_posterior(prior_mean, prior_covariance, observed, noise):
    prior_precision = jnp.linalg.inv(prior_covariance)
    precision = prior_precision + observed.shape[0] / noise**2 * jnp.eye(2)
    covariance = jnp.linalg.inv(precision)
    mean = covariance @ (prior_precision @ prior_mean + observed.sum(0) / noise**2)
    return mean, covariance


def _section(title: str) -> None:
    print(f"\n== {title}")


def run_demo(
    *, num_samples: int = 2000, seed: int = 0, image: str | None = "flowrox_demo.png"
) -> dict:
    """Runs the tour and prints each step; returns the key numbers."""
    start = time.perf_counter()
    n_layers = 6
    _section(f"1. A flow: {n_layers} stacked Affine+Permute layers applied with Scan")
    flow = _build_flow(n_layers)
    print(f"   event shape {flow.event_shape}, batch shape {flow.batch_shape}")
    n_parameters = sum(
        leaf.size for leaf in jax.tree.leaves(eqx.filter(flow, eqx.is_inexact_array))
    )
    print(f"   trainable parameters: {n_parameters}")
    samples, log_probs = flow.sample_and_log_prob(jax.random.key(seed), (5,))
    print("   five samples and their log densities (one forward pass):")
    for sample, log_prob in zip(
        np.asarray(samples), np.asarray(log_probs), strict=True
    ):
        print(
            f"     z = [{sample[0]:+.3f}, {sample[1]:+.3f}]   log p = {log_prob:+.4f}"
        )
    prior_mean, prior_covariance = _exact_prior(flow)
    exact = dist.MultivariateNormal(prior_mean, prior_covariance).log_prob(samples)
    density_error = float(jnp.max(jnp.abs(flow.log_prob(samples) - exact)))
    print(f"   max |Flow.log_prob - exact Gaussian log density| = {density_error:.2e}")

    _section("2. The flow as a prior in a NumPyro model, sampled with NUTS")
    noise = 0.7
    observed = jnp.array([[0.4, 1.2], [1.1, 0.3], [0.8, 0.9], [1.5, 1.4]])

    def model(observed):
        z = numpyro.sample("z", flow)
        with numpyro.plate("data", observed.shape[0]):
            numpyro.sample("y", dist.Normal(z, noise).to_event(1), obs=observed)

    print("   model: z ~ Flow(...);  y_i ~ N(z, 0.7^2 I),  4 observations")
    mcmc = MCMC(
        NUTS(model),
        num_warmup=500,
        num_samples=num_samples,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed + 1), observed)
    z = np.asarray(mcmc.get_samples()["z"])
    ess = np.asarray(effective_sample_size(z[None]))
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    mean, covariance = _exact_posterior(prior_mean, prior_covariance, observed, noise)
    sd = np.sqrt(np.diag(covariance))
    print(f"   {num_samples} draws, {divergences} divergences, ESS {ess.round(0)}")
    print("   posterior      NUTS mean  exact mean   NUTS sd  exact sd   |error|/MC se")
    errors = []
    for i in range(2):
        standard_error = sd[i] / np.sqrt(ess[i])
        error = abs(z[:, i].mean() - mean[i]) / standard_error
        errors.append(float(error))
        print(
            f"   z[{i}]          {z[:, i].mean():+9.4f}  {mean[i]:+9.4f}   "
            f"{z[:, i].std():8.4f}  {sd[i]:8.4f}   {error:6.2f}"
        )
    regression = _bayesian_regression(num_samples=num_samples, seed=seed)
    fit_gap = _fit_density(seed=seed, image=image)
    neutra = _neutra_funnel(seed=seed)
    nif_coverage = _nif_prior(seed=seed)
    elapsed = time.perf_counter() - start
    _section(f"done in {elapsed:.1f} s")
    return {
        "density_error": density_error,
        "posterior_mean_errors_in_se": errors,
        "divergences": divergences,
        "regression_errors_in_se": regression,
        "fit_nll_gap": fit_gap,
        "neutra": neutra,
        "nif_coverage": nif_coverage,
        "seconds": elapsed,
    }


def _bayesian_regression(*, num_samples: int, seed: int) -> list[float]:
    _section("3. A Bayesian module: priors on an equinox Linear layer's weights")
    noise, prior_scale = 0.3, 1.0
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

    print(
        "   linear = bayesian(eqx.nn.Linear(2, 1), Normal(0, 1)); "
        "y ~ N(linear(x), 0.3^2)"
    )
    mcmc = MCMC(
        NUTS(model), num_warmup=500, num_samples=num_samples, progress_bar=False
    )
    mcmc.run(jax.random.key(seed + 4), x, y)
    samples = mcmc.get_samples()
    print(f"   sample sites: {sorted(samples)}")
    draws = np.concatenate(
        [
            np.asarray(samples["linear/weight"])[:, 0],
            np.asarray(samples["linear/bias"]),
        ],
        axis=1,
    )
    features = np.concatenate([np.asarray(x), np.ones((25, 1))], axis=1)
    precision = features.T @ features / noise**2 + np.eye(3) / prior_scale**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ features.T @ np.asarray(y) / noise**2
    ess = np.asarray(effective_sample_size(draws[None]))
    print("   coefficient    NUTS mean  exact mean   NUTS sd  exact sd   |error|/MC se")
    errors = []
    for i, label in enumerate(["weight[0]", "weight[1]", "bias"]):
        sd = np.sqrt(covariance[i, i])
        error = abs(draws[:, i].mean() - mean[i]) / (sd / np.sqrt(ess[i]))
        errors.append(float(error))
        print(
            f"   {label:12s}   {draws[:, i].mean():+9.4f}  {mean[i]:+9.4f}   "
            f"{draws[:, i].std():8.4f}  {sd:8.4f}   {error:6.2f}"
        )
    return errors


def _ring():
    """Eight Gaussians (sd 0.2) on a circle of radius 2, equally weighted."""
    angles = 2 * jnp.pi * jnp.arange(8) / 8
    means = 2.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    return dist.MixtureSameFamily(
        dist.Categorical(jnp.full(8, 1 / 8)), dist.Normal(means, 0.2).to_event(1)
    )


def _fit_density(*, seed: int, image: str | None) -> float:
    _section("4. Fitting a spline flow to samples with fit_to_data")
    target = _ring()
    keys = jax.random.split(jax.random.key(seed + 5), 4)
    data = target.sample(keys[0], (20_000,))
    print("   target: a ring of 8 Gaussians (radius 2, sd 0.2), 20000 samples")
    flow = spline_flow(keys[1], 2, layers=8, hidden=64)
    print(
        "   flow = flowrox.flows.spline_flow(key, 2, layers=8): 8 RQ-spline couplings"
    )
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
    print(
        f"   {steps} steps; held-out NLL: flow {flow_nll:.4f}, "
        f"true density {true_nll:.4f}, gap {flow_nll - true_nll:+.4f} nats"
    )
    if image is not None:
        samples = flow.sample(jax.random.key(seed + 8), (5000,))
        histogram_png(
            image, [np.asarray(held_out), np.asarray(samples)], bounds=(-3.0, 3.0)
        )
        print(f"   wrote {image}: target samples (left) and flow samples (right)")
    return flow_nll - true_nll


def _funnel():
    # Neal's funnel in 10 dimensions; log Z = 0, so -ELBO is the KL.
    y = numpyro.sample("y", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(y / 2)).expand([9]).to_event(1))


def _neutra_funnel(*, seed: int) -> dict:
    _section("5. a flow guide, NeuTra NUTS and diagnostics on Neal's funnel")
    print("   model: y ~ N(0, 3), x_i ~ N(0, exp(y / 2)), i = 1..9 (log Z = 0)")

    def iaf(key, dim):
        return masked_autoregressive_flow(
            key, dim, layers=3, hidden=32, one_pass="transform"
        )

    guide = AutoFlowGuide(_funnel, iaf, init_scale=1.0)
    # Sticking the landing (see docs/inference.md) with a decaying step. On
    # Trace_ELBO at a constant 3e-3, with seed 1 and XLA's older CPU fusion
    # backend, this guide's loss turned infinite at step 2868: by then some of
    # its draws overflowed (y up to 1e26 and inf; the affine layers' scales
    # compound). Here, seeds 0-3: KL 0.07-0.12, ESS 0.42-0.57.
    schedule = optax.cosine_decay_schedule(3e-3, 3000, 0.05)
    elbo = StickingTheLandingELBO(num_particles=4)
    svi = SVI(_funnel, guide, optax.adam(schedule), elbo)
    result = svi.run(jax.random.key(seed + 10), 3000, progress_bar=False)
    diagnostics = importance_diagnostics(
        guide, key=jax.random.key(seed + 11), n=10_000, params=result.params
    )
    print(
        f"   AutoFlowGuide (affine IAF, 3 layers), 3000 SVI steps: KL "
        f"{diagnostics.kl:.3f} nats, importance ESS {diagnostics.ess:.2f}, "
        f"k-hat {diagnostics.khat:.2f}, log Z {diagnostics.log_normalizer:+.3f} "
        f"+- {diagnostics.log_normalizer_se:.3f}"
    )
    neutra = NeuTraReparam(guide, result.params)
    runs = {
        "NeuTra NUTS": (NUTS(neutra.reparam(_funnel)), True),
        "plain NUTS": (NUTS(_funnel), False),
    }
    out = {"kl": diagnostics.kl, "ess_fraction": diagnostics.ess}
    print("   sampler        sd(y) (exact 3)   ESS(y)   divergences")
    for name, (kernel, reparametrised) in runs.items():
        mcmc = MCMC(kernel, num_warmup=500, num_samples=1000, progress_bar=False)
        mcmc.run(jax.random.key(seed + 12), extra_fields=("diverging",))
        samples = mcmc.get_samples()
        if reparametrised:
            samples = neutra.transform_sample(samples["auto_shared_latent"])
        y = np.asarray(samples["y"])
        ess = float(effective_sample_size(y[None]))
        divergences = int(mcmc.get_extra_fields()["diverging"].sum())
        print(f"   {name:13s} {y.std():10.2f} {ess:12.0f} {divergences:10d}")
        out[name] = {"sd_y": float(y.std()), "ess_y": ess, "divergences": divergences}
    return out


def _nif_prior(*, seed: int) -> float:
    _section("6. a neural field prior: NIF with latent inference")
    keys = jax.random.split(jax.random.key(seed + 20), 7)
    n_functions, steps = 2048, 1000
    a = jax.random.uniform(keys[0], (n_functions, 1, 1), minval=1.0, maxval=3.0)
    b = jax.random.uniform(keys[1], (n_functions, 1, 1), maxval=2 * jnp.pi)
    x = jnp.linspace(-jnp.pi, jnp.pi, 32, endpoint=False)[:, None]
    print("   family: f(x) = sin(a x + b), a ~ U(1, 3), b ~ U(0, 2 pi), x in [-pi, pi]")
    decoder = HyperSIREN(
        1, 16, 1, 2, cond_dim=2, key=keys[2], latent_dim=8, first_omega=10.0
    )
    prior = fit_function_prior(
        keys[3], decoder, x / jnp.pi, jnp.sin(a * x + b), noise=0.05, steps=steps
    )
    print(
        f"   HyperSIREN decoder f(x, z), z in R^2, trained as a VAE on {n_functions} "
        f"functions ({steps} steps): -ELBO {float(prior.losses[-100:].mean()):.1f} "
        "nats per function"
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

    print(
        f"   model: z ~ N(0, I); y_i ~ N(f(x_i, z), {noise}^2), 8 noisy points of "
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
    predictive_coverage = coverage(y_draws)
    print(
        f"   NUTS over z: 4 chains of 125 draws, {divergences} divergences, "
        f"posterior-mean RMSE {rmse:.3f} against the true function"
    )
    print(
        "   share of the true function inside the 95% bands on a 101-point grid: "
        f"posterior predictive {predictive_coverage:.0%}, credible band of f "
        f"{coverage(f_draws):.0%}"
    )
    return predictive_coverage
