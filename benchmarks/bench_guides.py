"""Flow guides for SVI and NeuTra: flowrox's AutoFlowGuide against NumPyro's
AutoIAFNormal and AutoBNAFNormal, in the same run.

Two targets with a known normaliser, as NumPyro models without observations:
Neal's funnel in 10 dimensions (y ~ N(0, 3), x_1..x_9 ~ N(0, exp(y / 2)),
log Z = 0) and NumPyro's dual-moon density from its NeuTra example (2-d,
log Z = 1.8775, computed here by quadrature). Every guide gets the same SVI
run: `--steps` steps of Adam(3e-3), the same keys, and on each target the same
number of particles: 8 on the funnel, 256 on the 2-d dual moon, where a
mass-balance between two moons is what the gradient has to resolve
(`--particles` sets both). The guides:
"AutoFlowGuide spline", AutoFlowGuide with a rational-quadratic
spline coupling flow (`--layers` 4, `--hidden` 32), and "AutoFlowGuide IAF",
AutoFlowGuide with an affine autoregressive flow sampled in one pass (3 layers
of width 32), both with init_to_median and init_scale 1 on the funnel, 3 on
the dual moon (the scale of the affine map around the flow: from 3 the flow
works on a ring of radius 2 / 3 rather than 2, with gentler splines;
`--init-scale` sets both, `--init-loc uniform` changes the initial point);
AutoIAFNormal with NumPyro's defaults; AutoBNAFNormal with the NeuTra example's
hidden_factors=[8, 8] (also NumPyro's default). The AutoFlowGuides train on
`--elbo` (default "stl": flowrox's StickingTheLandingELBO; "trace":
Trace_ELBO); NumPyro's guides on Trace_ELBO, as NumPyro ships them, and with
"stl" AutoIAFNormal runs a second time on StickingTheLandingELBO ("AutoIAFNormal
STL"), so the estimator's share of the difference is on the table.
AutoBNAFNormal cannot use it: NumPyro's BNAF has no inverse, so its density at
a given point is not available. Before any timing, a throwaway
AutoNormal fit and a short NUTS run on each target pay JAX's and NumPyro's
one-time start-up, so the first guide timed is not charged for it; each
guide's own setup (building the flow) and compilation count.

For every target and guide the script prints the SVI wall time (guide setup,
compilation and all steps; the compile time is also shown on its own), the
final loss (the mean of the last 500 losses, or of the last 10% with fewer
steps) and the KL(q || p) estimate, loss + log Z (the loss is -ELBO =
KL - log Z); also "KL(q)", the same at the final parameters from
`--importance-draws` draws, log Z - mean(log p~ - log q), free of the
optimiser's jitter over the last steps. Then NUTS on the NeuTra-reparametrised
model (`--warmup`, `--draws`) with each trained guide, and plain NUTS on the
model for reference: the effective sample size of y (of x[0] for the dual
moon), ESS per second with the SVI time included, sd(y) against its exact 3.0
(sd(x[0]) against quadrature), leapfrog steps per draw and divergences. For
both AutoFlowGuides it also prints `flowrox.infer.importance_diagnostics`
(ESS, PSIS k-hat, KL and log Z ± se).

Finally, the targets, each judged on the flow one would choose for the
target: on the funnel, AutoFlowGuide IAF's KL at most half of AutoIAFNormal's
(on Trace_ELBO; the STL row is shown beside it),
its NeuTra ESS(y) at least twice AutoIAFNormal's, and its NeuTra sd(y) within
5% of 3.0; on the dual moon, AutoFlowGuide spline's KL at most 0.05 nats
(judged on loss + log Z; KL(q) is shown beside it).

With `--defaults`, instead: every guide with its library's defaults, as a
user swapping one for another in NumPyro's NeuTra example would run them:
`AutoFlowGuide(model)`, `AutoIAFNormal(model)`, `AutoBNAFNormal(model)` and
`AutoMultivariateNormal(model)`, each on `Trace_ELBO()` (one particle),
Adam(3e-3), `--steps` steps, for SVI keys `--seeds` (default 0-4), on the
funnel and on the dual moon written as NumPyro's example writes it
(`x ~ DualMoonDistribution()`). Per guide: parameter count, SVI time per
step (compilation excluded), KL = mean of the last 500 losses + log Z (mean
and worst over the seeds); on the funnel NeuTra NUTS ESS(y), sd(y) and
divergences; on the dual moon the share of the guide's draws with x0 > 0
(both moons kept: within 0.1 of 0.5).

Run: python benchmarks/bench_guides.py [--steps 5000] [--warmup 500]
    [--draws 1000] [--layers 4] [--hidden 32] [--init-scale S]
    [--init-loc median] [--particles N] [--elbo stl] [--quick]
    [--defaults [--seeds 0,1,2,3,4]]
"""

import argparse
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoBNAFNormal,
    AutoIAFNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.initialization import init_to_median, init_to_uniform
from numpyro.infer.reparam import NeuTraReparam

from flowrox.flows import masked_autoregressive_flow, spline_flow
from flowrox.infer import (
    AutoFlowGuide,
    StickingTheLandingELBO,
    importance_diagnostics,
)

LEARNING_RATE = 3e-3
FUNNEL_X_DIM = 9  # plus y: 10 latent dimensions
FUNNEL_Y_SCALE = 3.0
INIT_LOC_FNS = {"uniform": init_to_uniform, "median": init_to_median}
ELBOS = {"stl": StickingTheLandingELBO, "trace": Trace_ELBO}


def _funnel():
    y = numpyro.sample("y", dist.Normal(0.0, FUNNEL_Y_SCALE))
    numpyro.sample(
        "x", dist.Normal(jnp.zeros(FUNNEL_X_DIM), jnp.exp(y / 2)).to_event(1)
    )


def _dual_moon_potential(x):
    # NumPyro's NeuTra example, examples/neutra.py.
    term1 = 0.5 * ((jnp.linalg.norm(x, axis=-1) - 2) / 0.4) ** 2
    term2 = -0.5 * ((x[..., :1] + jnp.array([-2.0, 2.0])) / 0.6) ** 2
    return term1 - logsumexp(term2, axis=-1)


def _dual_moon():
    # A flat "prior" (masked out) and the density as a factor, as in the example.
    x = numpyro.sample("x", dist.Normal().expand([2]).to_event(1).mask(False))
    numpyro.factor("log_density", -_dual_moon_potential(x))


def _dual_moon_reference(half_width: float = 6.0, n: int = 1201):
    """log Z and sd(x[0]) of the dual moon by quadrature on a fine grid."""
    grid = np.linspace(-half_width, half_width, n)
    cell = (grid[1] - grid[0]) ** 2
    points = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1)
    log_density = -np.asarray(_dual_moon_potential(jnp.asarray(points)), np.float64)
    top = log_density.max()
    weights = np.exp(log_density - top)
    log_normalizer = float(top + np.log(weights.sum() * cell))
    weights = weights / weights.sum()
    first = points[..., 0]
    mean = np.sum(weights * first)
    sd = float(np.sqrt(np.sum(weights * (first - mean) ** 2)))
    return log_normalizer, sd


def _targets() -> dict:
    dual_moon_log_normalizer, dual_moon_sd = _dual_moon_reference()
    return {
        "funnel": dict(
            model=_funnel,
            log_normalizer=0.0,
            particles=8,
            init_scale=1.0,
            site="y",
            label="y",
            exact_sd=FUNNEL_Y_SCALE,
        ),
        "dual moon": dict(
            model=_dual_moon,
            log_normalizer=dual_moon_log_normalizer,
            particles=256,
            init_scale=3.0,
            site="x",
            label="x[0]",
            exact_sd=dual_moon_sd,
        ),
    }


SPLINE, IAF = "AutoFlowGuide spline", "AutoFlowGuide IAF"


def _affine_iaf(key, dim: int):
    # An affine autoregressive flow, one pass in the sampling direction: the
    # flow to choose when scales depend on other latents (funnels, hierarchies).
    return masked_autoregressive_flow(
        key, dim, layers=3, hidden=32, one_pass="transform"
    )


def _guides(
    layers: int, hidden: int, init_scale: float, init_loc: str, elbo: str
) -> dict[str, tuple[Callable, str]]:
    """Each guide's constructor and the ELBO it trains on."""
    guides = {
        SPLINE: (
            lambda model: AutoFlowGuide(
                model,
                lambda key, dim: spline_flow(
                    key, dim, layers=layers, hidden=hidden, invert=False
                ),
                init_scale=init_scale,
                init_loc_fn=INIT_LOC_FNS[init_loc],
            ),
            elbo,
        ),
        IAF: (
            lambda model: AutoFlowGuide(
                model,
                _affine_iaf,
                init_scale=init_scale,
                init_loc_fn=INIT_LOC_FNS[init_loc],
            ),
            elbo,
        ),
        "AutoIAFNormal": (AutoIAFNormal, "trace"),
    }
    if elbo == "stl":
        guides["AutoIAFNormal STL"] = (AutoIAFNormal, "stl")
    guides["AutoBNAFNormal"] = (
        lambda model: AutoBNAFNormal(model, hidden_factors=[8, 8]),
        "trace",
    )
    return guides


def _statistic(samples: dict, site: str) -> np.ndarray:
    values = np.asarray(samples[site])
    # y is a scalar site; x of the dual moon is a vector, of which x[0].
    return values if values.ndim == 1 else values[:, 0]


def _warm_up(targets: dict, key) -> float:
    """Pays JAX's and NumPyro's one-time start-up outside the timings."""
    start = time.perf_counter()
    for target in targets.values():
        model = target["model"]
        svi = SVI(
            model, AutoNormal(model), numpyro.optim.Adam(LEARNING_RATE), Trace_ELBO()
        )
        svi.run(key, 10, progress_bar=False)
        mcmc = MCMC(NUTS(model), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(key, extra_fields=("diverging", "num_steps"))
    return time.perf_counter() - start


def _fit(model, guide, steps: int, key, elbo) -> dict:
    """SVI as `SVI.run(progress_bar=False)` does it (one `lax.scan`), with the
    setup, compilation and steps timed apart."""
    svi = SVI(model, guide, numpyro.optim.Adam(LEARNING_RATE), elbo)
    start = time.perf_counter()
    state = svi.init(key)

    def run(state):
        return jax.lax.scan(lambda s, _: svi.update(s), state, None, length=steps)

    compiled = jax.jit(run).lower(state).compile()
    compiled_at = time.perf_counter()
    state, losses = jax.block_until_ready(compiled(state))
    end = time.perf_counter()
    losses = np.asarray(losses, np.float64)
    tail = min(500, max(1, steps // 10))
    return dict(
        params=svi.get_params(state),
        seconds=end - start,
        compile_seconds=compiled_at - start,
        final_loss=float(np.mean(losses[-tail:])),
        finite=bool(np.all(np.isfinite(losses))),
    )


def _final_kl(guide, params, log_normalizer: float, key, n: int):
    """KL(q || p) at the final parameters: log Z - mean(log p~ - log q), and
    the full importance diagnostics."""
    try:
        diagnostics = importance_diagnostics(guide, key=key, n=n, params=params)
    except ValueError as error:  # every log weight undefined: no estimate
        print(f"  (importance_diagnostics failed: {error})")
        return float("nan"), None
    return log_normalizer - diagnostics.elbo, diagnostics._asdict()


def _nuts(model, key, warmup: int, draws: int, neutra: NeuTraReparam | None) -> dict:
    """NUTS on the model, or on its NeuTra reparametrisation; timed in full."""
    kernel_model = model if neutra is None else neutra.reparam(model)
    mcmc = MCMC(
        NUTS(kernel_model),
        num_warmup=warmup,
        num_samples=draws,
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(key, extra_fields=("diverging", "num_steps"))
    samples = jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - start
    if neutra is not None:
        latent = samples[f"{neutra.guide.prefix}_shared_latent"]
        samples = neutra.transform_sample(latent)
    extra = mcmc.get_extra_fields()
    return dict(
        samples=samples,
        seconds=seconds,
        divergences=int(np.sum(extra["diverging"])),
        steps_per_draw=float(np.mean(extra["num_steps"])),
    )


def _summary(run: dict, site: str, svi_seconds: float) -> dict:
    values = _statistic(run["samples"], site)
    ess = float(effective_sample_size(values[None]))
    total = svi_seconds + run["seconds"]
    return dict(
        nuts_seconds=run["seconds"],
        ess=ess,
        ess_per_second=ess / total,
        sd=float(np.std(values, ddof=1)),
        divergences=run["divergences"],
        steps_per_draw=run["steps_per_draw"],
    )


def _print_table(name: str, target: dict, rows: dict, steps: int, draws: int):
    label = target["label"]
    print(
        f"\n{name}: log Z = {target['log_normalizer']:.4f}, exact sd({label}) = "
        f"{target['exact_sd']:.4f}; {steps} SVI steps, NUTS {draws} draws"
    )
    print(
        f"  {'guide':20s} {'SVI s':>6s} {'(compile)':>9s} {'loss':>8s} {'KL':>7s} "
        f"{'KL(q)':>7s} "
        f"{'NUTS s':>7s} {'ESS':>7s} {'ESS/s':>7s} {'sd':>7s} {'steps':>6s} "
        f"{'div':>5s}"
    )
    for guide_name, row in rows.items():
        if "svi_seconds" in row:
            svi = (
                f"{row['svi_seconds']:6.1f} {row['compile_seconds']:9.1f} "
                f"{row['final_loss']:8.4f} {row['kl']:7.4f} {row['final_kl']:7.4f}"
            )
        else:
            svi = f"{'-':>6s} {'-':>9s} {'-':>8s} {'-':>7s} {'-':>7s}"
        print(
            f"  {guide_name:20s} {svi} {row['nuts_seconds']:7.1f} {row['ess']:7.1f} "
            f"{row['ess_per_second']:7.2f} {row['sd']:7.4f} "
            f"{row['steps_per_draw']:6.1f} {row['divergences']:5d}"
        )
    print(
        f"  (ESS, sd of {label}; ESS/s counts SVI + NUTS time; steps: leapfrog "
        "steps per draw; KL = loss + log Z, KL(q) at the final parameters)"
    )


def _verdicts(results: dict) -> dict:
    funnel, moon = results["funnel"], results["dual moon"]
    flow, iaf = funnel[IAF], funnel["AutoIAFNormal"]
    checks = {
        "funnel KL(AutoFlowGuide IAF) <= 0.5 * KL(AutoIAFNormal)": (
            flow["kl"] <= 0.5 * iaf["kl"],
            f"{flow['kl']:.4f} vs 0.5 * {iaf['kl']:.4f} = {0.5 * iaf['kl']:.4f}; "
            f"KL(q) {flow['final_kl']:.4f} vs {0.5 * iaf['final_kl']:.4f}",
        ),
        "funnel NeuTra ESS(y) AutoFlowGuide IAF >= 2 * AutoIAFNormal": (
            flow["ess"] >= 2 * iaf["ess"],
            f"{flow['ess']:.1f} vs 2 * {iaf['ess']:.1f} = {2 * iaf['ess']:.1f}",
        ),
        "funnel NeuTra sd(y) AutoFlowGuide IAF within 5% of 3.0": (
            abs(flow["sd"] - FUNNEL_Y_SCALE) <= 0.05 * FUNNEL_Y_SCALE,
            f"{flow['sd']:.4f} ({100 * (flow['sd'] / FUNNEL_Y_SCALE - 1):+.1f}%)",
        ),
        "dual moon KL(AutoFlowGuide spline) <= 0.05 nats": (
            moon[SPLINE]["kl"] <= 0.05,
            f"{moon[SPLINE]['kl']:.4f}; KL(q) {moon[SPLINE]['final_kl']:.4f}",
        ),
    }
    print("\nTargets:")
    for what, (met, detail) in checks.items():
        print(f"  {what:55s} {'met' if met else 'MISSED':6s} ({detail})")
    if "AutoIAFNormal STL" in funnel:
        same = funnel["AutoIAFNormal STL"]
        print(
            f"  (AutoIAFNormal on the same estimator: funnel KL {same['kl']:.4f}, "
            f"KL(q) {same['final_kl']:.4f}, NeuTra ESS(y) {same['ess']:.1f})"
        )
    return {what: met for what, (met, _) in checks.items()}


def main(
    steps: int = 5000,
    warmup: int = 500,
    draws: int = 1000,
    *,
    layers: int = 4,
    hidden: int = 32,
    init_scale: float | None = None,
    init_loc: str = "median",
    particles: int | None = None,
    elbo: str = "stl",
    importance_draws: int = 4096,
) -> dict:
    svi_key, nuts_key, importance_key = jax.random.split(jax.random.key(0), 3)
    targets = _targets()
    print(
        f"AutoFlowGuide spline: spline coupling flow, {layers} layers, width "
        f"{hidden}; AutoFlowGuide IAF: affine autoregressive flow, 3 layers, width "
        f"32 (one pass to sample); both init_to_{init_loc}, on "
        f"{ELBOS[elbo].__name__}; Adam({LEARNING_RATE})"
    )
    print(f"warm-up (not in any timing): {_warm_up(targets, svi_key):.1f} s")
    results = {}
    for name, target in targets.items():
        model, site = target["model"], target["site"]
        target_particles = target["particles"] if particles is None else particles
        target_scale = target["init_scale"] if init_scale is None else init_scale
        print(
            f"{name}: {target_particles} particles for every guide; AutoFlowGuide "
            f"init_scale {target_scale}"
        )
        guides = _guides(layers, hidden, target_scale, init_loc, elbo)
        rows = {}
        for guide_name, (make_guide, elbo_name) in guides.items():
            guide = make_guide(model)
            fit = _fit(
                model,
                guide,
                steps,
                svi_key,
                ELBOS[elbo_name](num_particles=target_particles),
            )
            if not fit["finite"]:
                print(f"  ({name}, {guide_name}: some SVI losses are not finite)")
            final_kl, diagnostics = _final_kl(
                guide,
                fit["params"],
                target["log_normalizer"],
                importance_key,
                importance_draws,
            )
            neutra = NeuTraReparam(guide, fit["params"])
            run = _nuts(model, nuts_key, warmup, draws, neutra)
            rows[guide_name] = dict(
                svi_seconds=fit["seconds"],
                compile_seconds=fit["compile_seconds"],
                final_loss=fit["final_loss"],
                kl=fit["final_loss"] + target["log_normalizer"],
                final_kl=final_kl,
                importance=diagnostics,
                **_summary(run, site, fit["seconds"]),
            )
        rows["NUTS (no guide)"] = _summary(
            _nuts(model, nuts_key, warmup, draws, None), site, 0.0
        )
        _print_table(name, target, rows, steps, draws)
        for guide_name in (SPLINE, IAF):
            diagnostics = rows[guide_name]["importance"]
            if diagnostics is None:
                continue
            print(
                f"  {guide_name} importance_diagnostics ({diagnostics['n']} draws): "
                f"ESS {diagnostics['ess']:.3f}, k-hat {diagnostics['khat']:.3f}, "
                f"KL {diagnostics['kl']:.4f}, log Z "
                f"{diagnostics['log_normalizer']:.4f} ± "
                f"{diagnostics['log_normalizer_se']:.4f} (exact "
                f"{target['log_normalizer']:.4f})"
            )
        results[name] = rows
    results["targets"] = _verdicts(results)
    return results


class DualMoonDistribution(dist.Distribution):
    # NumPyro's NeuTra example (examples/neutra.py), as it writes it.
    support = dist.constraints.real_vector

    def __init__(self):
        super().__init__(event_shape=(2,))

    def sample(self, key, sample_shape=()):
        return jnp.zeros(sample_shape + self.event_shape)

    def log_prob(self, x):
        return -_dual_moon_potential(x)


def _dual_moon_example():
    numpyro.sample("x", DualMoonDistribution())


DEFAULT_GUIDES = {
    "AutoFlowGuide(model)": AutoFlowGuide,
    "AutoFlowGuide(skip_connections)": partial(AutoFlowGuide, skip_connections=True),
    "AutoIAFNormal(model)": AutoIAFNormal,
    "AutoBNAFNormal(model)": AutoBNAFNormal,
    "AutoMultivariateNormal(model)": AutoMultivariateNormal,
}


def _default_run(model, make_guide, key, steps, log_normalizer) -> dict:
    guide = make_guide(model)
    svi = SVI(model, guide, numpyro.optim.Adam(LEARNING_RATE), Trace_ELBO())
    state = svi.init(key)

    def run(state):
        return jax.lax.scan(lambda s, _: svi.update(s), state, None, length=steps)

    compiled = jax.jit(run).lower(state).compile()
    start = time.perf_counter()
    state, losses = jax.block_until_ready(compiled(state))
    seconds = time.perf_counter() - start
    params = svi.get_params(state)
    losses = np.asarray(losses, np.float64)
    return dict(
        guide=guide,
        params=params,
        parameters=int(sum(np.size(leaf) for leaf in jax.tree.leaves(params))),
        ms_per_step=1000 * seconds / steps,
        kl=float(np.mean(losses[-min(500, steps) :]) + log_normalizer),
        finite=bool(np.all(np.isfinite(losses))),
    )


def defaults_table(steps: int, warmup: int, draws: int, seeds) -> dict:
    """Every guide with its library's defaults on Trace_ELBO, over seeds."""
    moon_log_normalizer, _ = _dual_moon_reference()
    targets = {
        "funnel": (_funnel, 0.0),
        "dual moon": (_dual_moon_example, moon_log_normalizer),
    }
    print(
        f"warm-up (not in any timing): {_warm_up(_targets(), jax.random.key(0)):.1f} s"
    )
    results = {}
    for name, (model, log_normalizer) in targets.items():
        rows = {}
        for guide_name, make_guide in DEFAULT_GUIDES.items():
            runs = []
            for seed in seeds:
                fit = _default_run(
                    model, make_guide, jax.random.key(seed), steps, log_normalizer
                )
                guide, params = fit.pop("guide"), fit.pop("params")
                if name == "funnel" and fit["finite"]:
                    neutra = NeuTraReparam(guide, params)
                    run = _nuts(
                        model, jax.random.key(1000 + seed), warmup, draws, neutra
                    )
                    fit.update(_summary(run, "y", 0.0))
                elif name == "dual moon" and fit["finite"]:
                    x = guide.sample_posterior(
                        jax.random.key(100 + seed), params, sample_shape=(4000,)
                    )["x"]
                    fit["share"] = float(np.mean(np.asarray(x[:, 0]) > 0))
                runs.append(fit)
            rows[guide_name] = runs
        _print_defaults(name, rows, seeds)
        results[name] = rows
    return results


def _print_defaults(name: str, rows: dict, seeds):
    print(f"\n{name}, every guide with its defaults on Trace_ELBO, seeds {list(seeds)}")
    extra = (
        "ESS(y) mean/worst, sd(y) worst, div mean"
        if name == "funnel"
        else ("x0 > 0 share worst |share - 0.5|")
    )
    print(
        f"  {'guide':30s} {'params':>7s} {'ms/step':>8s} {'KL mean':>8s} "
        f"{'KL worst':>9s}  {extra}"
    )
    for guide_name, runs in rows.items():
        kls = np.array([run["kl"] for run in runs])
        line = (
            f"  {guide_name:30s} {runs[0]['parameters']:7d} "
            f"{np.median([run['ms_per_step'] for run in runs]):8.4f} "
            f"{np.mean(kls):8.3f} {np.max(kls):9.3f}  "
        )
        if name == "funnel":
            ess = [run.get("ess", 0.0) for run in runs]
            sds = [run.get("sd", float("nan")) for run in runs]
            worst_sd = sds[int(np.nanargmax(np.abs(np.array(sds) - FUNNEL_Y_SCALE)))]
            divergences = np.mean([run.get("divergences", 0) for run in runs])
            line += (
                f"{np.mean(ess):.0f}/{np.min(ess):.0f}, {worst_sd:.2f}, "
                f"{divergences:.0f}"
            )
        else:
            shares = np.array([run.get("share", float("nan")) for run in runs])
            line += f"{shares[np.argmax(np.abs(shares - 0.5))]:.2f}"
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument(
        "--init-scale", type=float, help="default: 1 on the funnel, 3 on the dual moon"
    )
    parser.add_argument("--init-loc", choices=sorted(INIT_LOC_FNS), default="median")
    parser.add_argument(
        "--particles", type=int, help="default: 8 on the funnel, 256 on the dual moon"
    )
    parser.add_argument("--elbo", choices=sorted(ELBOS), default="stl")
    parser.add_argument("--importance-draws", type=int, default=4096)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1000 steps, 100 warmup, 100 draws, 512 importance draws",
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="every guide with its defaults on Trace_ELBO, over --seeds",
    )
    parser.add_argument("--seeds", default="0,1,2,3,4")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.steps, arguments.warmup, arguments.draws = 1000, 100, 100
        arguments.importance_draws = 512
    start = time.perf_counter()
    if arguments.defaults:
        seeds = [int(seed) for seed in arguments.seeds.split(",")]
        defaults_table(arguments.steps, arguments.warmup, arguments.draws, seeds)
        print(f"\nTotal wall time {time.perf_counter() - start:.1f} s")
        raise SystemExit
    main(
        arguments.steps,
        arguments.warmup,
        arguments.draws,
        layers=arguments.layers,
        hidden=arguments.hidden,
        init_scale=arguments.init_scale,
        init_loc=arguments.init_loc,
        particles=arguments.particles,
        elbo=arguments.elbo,
        importance_draws=arguments.importance_draws,
    )
    print(f"\nTotal wall time {time.perf_counter() - start:.1f} s")
