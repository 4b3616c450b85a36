"""Spline coupling and spline MAF flows against flowjax's, in the same run.

For a 16-dimensional RQ-spline coupling flow and a 16-dimensional RQ-spline MAF
(8 bins, 5 layers, conditioner width 64 with one hidden layer, as flowjax's
default depth), both libraries: compile time of the training step, time per
maximum-likelihood training step (value_and_grad + optax Adam update, batch
256), log_prob and sample times for 4096 events, and the held-out NLL after the
same number of steps on the same data, from several initialisations (the spread
across them is the noise the NLL difference is read against). Each library
trains the leaves its own fit_to_data trains. Prints flowrox/flowjax ratios
(targets: training step <= 0.9, log_prob and sample <= 1.0).

Run: pip install -e ".[bench]" && python benchmarks/bench_flows.py [--repeats 50]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import interleaved_medians

from flowrox.bijections import RationalQuadraticSpline
from flowrox.flows import masked_autoregressive_flow, spline_flow
from flowrox.train import trainable_filter

DIM, BINS, LAYERS, WIDTH, BATCH, EVAL_BATCH = 16, 8, 5, 64, 256, 4096
BOUND = 5.0
STEP_REPEATS = 8


def _data(key, n):
    # A fixed nonlinear, correlated 16-d density: each coordinate bends with
    # the previous one.
    z = jax.random.normal(key, (n, DIM))
    shifted = jnp.concatenate([jnp.zeros((n, 1)), z[:, :-1]], axis=1)
    return z + 0.8 * jnp.sin(2.0 * shifted) + 0.3 * shifted**2


def _flowrox_flows(key):
    coupling = spline_flow(
        key, DIM, layers=LAYERS, hidden=WIDTH, depth=1, n_bins=BINS, bound=BOUND
    )
    maf = masked_autoregressive_flow(
        key,
        DIM,
        layers=LAYERS,
        hidden=WIDTH,
        depth=1,
        transformer=RationalQuadraticSpline(-BOUND, BOUND, BINS),
    )
    return {"coupling": coupling, "maf": maf}


def _flowjax_flows(key):
    import flowjax.bijections as fjb
    import flowjax.distributions as fjd
    import flowjax.flows as fjf

    base = fjd.StandardNormal((DIM,))
    transformer = fjb.RationalQuadraticSpline(knots=BINS - 1, interval=BOUND)
    options = dict(
        base_dist=base,
        transformer=transformer,
        flow_layers=LAYERS,
        nn_width=WIDTH,
        nn_depth=1,
    )
    return {
        "coupling": fjf.coupling_flow(key, **options),
        "maf": fjf.masked_autoregressive_flow(key, **options),
    }


def _trainable(flow):
    # Each library's leaves as its own fit_to_data trains them: flowrox keeps
    # its buffers (the spline's bounds) fixed; flowjax trains every float array.
    if type(flow).__module__.startswith("flowrox"):
        return trainable_filter(flow)
    return eqx.is_inexact_array


def _trainer(flow):
    """A jitted max-likelihood step and its initial state for `flow`."""
    parameters, static = eqx.partition(flow, _trainable(flow))
    optimizer = optax.adam(1e-3)

    def loss(parameters, batch):
        return -jnp.mean(eqx.combine(parameters, static).log_prob(batch))

    @jax.jit
    def step(parameters, state, batch):
        value, gradients = jax.value_and_grad(loss)(parameters, batch)
        updates, state = optimizer.update(gradients, state, parameters)
        return optax.apply_updates(parameters, updates), state, value

    return step, parameters, optimizer.init(parameters), static


def _compile_seconds(step, parameters, state, batch):
    start = time.perf_counter()
    jax.block_until_ready(step(parameters, state, batch))
    return time.perf_counter() - start


def _held_out_nll(step, parameters, state, static, data, held_out, n_steps):
    batches = data[: n_steps * BATCH].reshape(n_steps, BATCH, DIM)
    for batch in batches:
        parameters, state, _ = step(parameters, state, batch)
    flow = eqx.combine(parameters, static)
    return float(-jnp.mean(eqx.filter_jit(lambda f, x: f.log_prob(x))(flow, held_out)))


def _extra_nlls(library, kind, seeds, data, held_out, quality_steps):
    """Held-out NLLs of `library`'s `kind` flow initialised from other seeds."""
    build = _flowrox_flows if library == "flowrox" else _flowjax_flows
    values = []
    for seed in seeds:
        step, parameters, state, static = _trainer(build(jax.random.key(seed))[kind])
        values.append(
            _held_out_nll(
                step, parameters, state, static, data, held_out, quality_steps
            )
        )
    return values


def main(repeats: int, quality_steps: int, quality_seeds: int = 3) -> dict:
    keys = jax.random.split(jax.random.key(0), 4)
    data = _data(keys[0], quality_steps * BATCH)
    held_out = _data(keys[1], EVAL_BATCH)
    batch = data[:BATCH]
    libraries = {"flowrox": _flowrox_flows(keys[2])}
    try:
        libraries["flowjax"] = _flowjax_flows(keys[2])
    except ImportError:
        print("(flowjax not installed: pip install -e '.[bench]' to compare)")

    results = {}
    for kind in ("coupling", "maf"):
        steps, pairs, compiles, nlls = [], [], {}, {}
        for library, flows in libraries.items():
            flow = flows[kind]
            step, parameters, state, static = _trainer(flow)
            compiles[library] = _compile_seconds(step, parameters, state, batch)
            nlls[library] = [
                _held_out_nll(
                    step, parameters, state, static, data, held_out, quality_steps
                )
            ]
            nlls[library] += _extra_nlls(
                library,
                kind,
                range(100, 99 + quality_seeds),
                data,
                held_out,
                quality_steps,
            )
            log_prob = eqx.filter_jit(lambda f, x: f.log_prob(x))
            sample = eqx.filter_jit(lambda f, k: f.sample(k, (EVAL_BATCH,)))
            steps.append((f"{library} train step", step, (parameters, state, batch)))
            pairs += [
                (f"{library} log_prob", log_prob, (flow, held_out)),
                (f"{library} sample", sample, (flow, keys[3])),
            ]
        # A training step takes a few milliseconds and its median is the
        # noisiest: it gets its own interleaved rounds, STEP_REPEATS times as many.
        medians = interleaved_medians(steps, STEP_REPEATS * repeats)
        medians |= interleaved_medians(pairs, repeats)
        print(
            f"\n{kind}: dim {DIM}, {BINS} bins, {LAYERS} layers, width {WIDTH}, "
            f"train batch {BATCH}, eval batch {EVAL_BATCH}, {repeats} repeats "
            f"({STEP_REPEATS * repeats} for the training step)"
        )
        for library in libraries:
            print(
                f"  {library:8s} compile {compiles[library]:6.2f} s   held-out NLL "
                f"after {quality_steps} steps "
                + " ".join(f"{value:.4f}" for value in nlls[library])
                + f" ({len(nlls[library])} initialisations)"
            )
        for name, seconds in medians.items():
            print(f"  {name:22s} {1e3 * seconds:9.3f} ms (median)")
        if "flowjax" in libraries:
            ratios = {"compile": compiles["flowrox"] / compiles["flowjax"]}
            for what in ("train step", "log_prob", "sample"):
                ratios[what] = medians[f"flowrox {what}"] / medians[f"flowjax {what}"]
            targets = {"train step": 0.9, "log_prob": 1.0, "sample": 1.0}
            for what, ratio in ratios.items():
                target = targets.get(what)
                verdict = (
                    ""
                    if target is None
                    else f" (target <= {target}: "
                    f"{'ok' if ratio <= target else 'missed'})"
                )
                print(f"  flowrox/flowjax {what:10s} {ratio:.3f}{verdict}")
            # Quality: the mean NLL difference against the spread that the
            # initialisation alone gives each library.
            ours, theirs = np.array(nlls["flowrox"]), np.array(nlls["flowjax"])
            ratios["nll difference"] = float(ours.mean() - theirs.mean())
            spread = float(np.sqrt((ours.var(ddof=1) + theirs.var(ddof=1)) / 2))
            print(
                f"  held-out NLL flowrox - flowjax: {ratios['nll difference']:+.4f} "
                f"(mean over initialisations; one library's sd across them "
                f"{spread:.4f})"
            )
            results[kind] = ratios
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--quality-steps", type=int, default=500)
    parser.add_argument("--quality-seeds", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.repeats, arguments.quality_steps, arguments.quality_seeds)
