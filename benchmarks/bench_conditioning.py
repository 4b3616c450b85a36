"""Shared against per-sample contexts: HyperLinear, HyperSIREN, and SVI on NIF.

For a batch of 4096 points, each layer is timed in two modes: shared, one
context vector for every point (the target weights are generated once), and
per-sample, 4096 contexts, one per point (every point gets its own weights).
Measured, for each mode:

- HyperLinear (64 -> 64 features, context width 8, linear generator): the
  forward pass, and the gradient of a squared-output loss with respect to the
  generator (`eqx.filter_grad`);
- HyperSIREN (2 inputs, 3 sine layers of width 64, 1 output, context width 8,
  latent width 8): the same two, the gradient with respect to the generators
  and the parameter network;
- a BayesianHyperSIREN (widths 32 and depth 2, otherwise as above) under SVI:
  the model samples the generator weights with `flowrox.sample_module` and
  observes y ~ N(nif(x, z), 0.1) at the 4096 points; AutoNormal guide, optax
  Adam(1e-3), Trace_ELBO with one particle; the time of one `SVI.update`, shown
  as steps per second.

For reference, the forward pass of the plain target network (an
`eqx.nn.Linear` of the same widths applied as `h @ W.T + b`, a SIREN of the
same widths) is timed beside them. Each function is jitted and called once
before timing (the compilation is excluded, and shown on its own); the
functions are then timed interleaved, `--repeats` rounds, and the median is
reported. The script prints one table (milliseconds, SVI in steps per
second) with the per-sample/shared ratio of every row, and the load average
of the machine when the run started and ended, since other processes change
the numbers.

Run: python benchmarks/bench_conditioning.py [--repeats 50] [--quick]
"""

import argparse
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
from _timing import interleaved_medians
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import flowrox
from flowrox.nn import SIREN, BayesianHyperSIREN, HyperLinear, HyperSIREN

BATCH, WIDTH, COND_DIM, IN, DEPTH = 4096, 64, 8, 2, 3
SVI_WIDTH, SVI_DEPTH, NOISE = 32, 2, 0.1


def _contexts(key, batch: int) -> dict[str, jax.Array]:
    """One shared context, and one context per point."""
    return {
        "shared": jax.random.normal(key, (COND_DIM,)),
        "per-sample": jax.random.normal(key, (batch, COND_DIM)),
    }


def _squared_output(module, x, z):
    return jnp.mean(module(x, z) ** 2)


def _layer_functions(name, module, x, contexts) -> list:
    """`(label, function, args)` for the forward pass and the gradient."""
    forward = eqx.filter_jit(lambda module, x, z: module(x, z))
    gradient = eqx.filter_jit(eqx.filter_grad(_squared_output))
    rows = []
    for mode, z in contexts.items():
        rows.append(((name, "forward", mode), forward, (module, x, z)))
        rows.append(((name, "gradient", mode), gradient, (module, x, z)))
    return rows


def _svi_functions(key, x, contexts, *, learning_rate: float = 1e-3) -> list:
    """`(label, update, (state,))` of one SVI step on a BayesianHyperSIREN."""
    model_key, data_key, init_key = jax.random.split(key, 3)
    prior = BayesianHyperSIREN(
        IN, SVI_WIDTH, 1, SVI_DEPTH, COND_DIM, key=model_key, latent_dim=COND_DIM
    )
    truth = flowrox.sample_module("nif", prior, rng_key=data_key)

    def model(x, z, y):
        nif = flowrox.sample_module("nif", prior)
        numpyro.sample("y", dist.Normal(nif(x, z)[..., 0], NOISE), obs=y)

    rows = []
    for mode, z in contexts.items():
        y = truth(x, z)[..., 0]
        guide = AutoNormal(model, init_loc_fn=flowrox.init_to_module(prior))
        svi = SVI(model, guide, optax.adam(learning_rate), Trace_ELBO())
        state = svi.init(init_key, x, z, y)
        update = jax.jit(lambda state, svi=svi, z=z, y=y: svi.update(state, x, z, y))
        rows.append((("BayesianHyperSIREN", "SVI step", mode), update, (state,)))
    return rows


def _compile_seconds(function, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    return time.perf_counter() - start


def main(repeats: int, batch: int = BATCH) -> dict:
    keys = jax.random.split(jax.random.key(0), 6)
    x = jax.random.uniform(keys[0], (batch, IN), minval=-1.0)
    h = jax.random.normal(keys[1], (batch, WIDTH))
    contexts = _contexts(keys[2], batch)
    hyper = HyperLinear(WIDTH, WIDTH, COND_DIM, key=keys[3])
    nif = HyperSIREN(IN, WIDTH, 1, DEPTH, COND_DIM, key=keys[4], latent_dim=COND_DIM)
    linear = eqx.nn.Linear(WIDTH, WIDTH, key=keys[3])
    siren = SIREN(IN, WIDTH, 1, DEPTH, key=keys[4])

    load_before = os.getloadavg()
    rows = [
        *_layer_functions("HyperLinear", hyper, h, contexts),
        *_layer_functions("HyperSIREN", nif, x, contexts),
        *_svi_functions(keys[5], x, contexts),
    ]
    # The shared path's own arithmetic, without generating the weights.
    batched_linear = eqx.filter_jit(lambda module, h: h @ module.weight.T + module.bias)
    field = eqx.filter_jit(lambda module, x: module(x))
    references = [
        (("Linear (target)", "forward", "plain"), batched_linear, (linear, h)),
        (("SIREN (target)", "forward", "plain"), field, (siren, x)),
    ]
    rows += references
    compiles = {label: _compile_seconds(f, args) for label, f, args in rows}
    medians = interleaved_medians(rows, repeats)
    load_after = os.getloadavg()

    print(
        f"\nbatch {batch}, context width {COND_DIM}; HyperLinear {WIDTH} -> {WIDTH}; "
        f"HyperSIREN {IN} -> {DEPTH} x {WIDTH} -> 1; BayesianHyperSIREN "
        f"{IN} -> {SVI_DEPTH} x {SVI_WIDTH} -> 1 (AutoNormal, Adam); {repeats} "
        f"repeats, medians; {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPU cores visible"
    )
    print(
        "load average (1, 5, 15 min): "
        f"start {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"end {', '.join(f'{v:.2f}' for v in load_after)}"
    )
    header = (
        f"{'layer':20s} {'measure':9s} {'shared':>12s} {'per-sample':>12s} "
        f"{'ratio':>6s}   compile s (shared / per-sample)"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for name, measure in dict.fromkeys((n, m) for (n, m, _), _, _ in rows[:-2]):
        shared = medians[(name, measure, "shared")]
        per_sample = medians[(name, measure, "per-sample")]
        if measure == "SVI step":
            shown = [f"{1 / seconds:9.1f} /s" for seconds in (shared, per_sample)]
        else:
            shown = [f"{1e3 * seconds:9.3f} ms" for seconds in (shared, per_sample)]
        compile_times = " / ".join(
            f"{compiles[(name, measure, mode)]:.2f}"
            for mode in ("shared", "per-sample")
        )
        print(
            f"{name:20s} {measure:9s} {shown[0]} {shown[1]} "
            f"{per_sample / shared:6.2f}   {compile_times}"
        )
        results[(name, measure)] = {
            "shared": shared,
            "per-sample": per_sample,
            "ratio": per_sample / shared,
        }
    for label, _, _ in references:
        name, measure, _ = label
        print(
            f"{name:20s} {measure:9s} {1e3 * medians[label]:9.3f} ms "
            f"{'(no context)':>12s} {'':6s}   {compiles[label]:.2f}"
        )
        results[(name, measure)] = {"plain": medians[label]}
    print(
        "ratio: per-sample time / shared time (for SVI: shared steps per second / "
        "per-sample steps per second)"
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 5 repeats on a batch of 256",
    )
    arguments = parser.parse_args()
    start = time.perf_counter()
    if arguments.quick:
        main(5, batch=256)
    else:
        main(arguments.repeats)
    print(f"\nTotal wall time {time.perf_counter() - start:.1f} s")
