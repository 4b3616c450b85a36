"""The SVI step of a hand-written flow guide, with and without the draws'
intermediates (`Flow.sample_with_intermediates`).

The model is Neal's funnel in 10 dimensions (y ~ N(0, 3), x_1..x_9 ~
N(0, exp(y / 2))), as one 10-vector site. The guide is hand-written,
`numpyro.sample("z", flowrox.param_module("q", flow))`, with an affine IAF
(`masked_autoregressive_flow(one_pass="transform")`, `--layers` 3 of width
`--hidden` 32) that samples in one network pass per layer and inverts in
`dim` sequential passes. The loss is `Trace_ELBO(--particles 8)`, optax
Adam(1e-3).

- "after": the `Flow` as it is. Its draw carries its log density from the
  forward pass, and NumPyro's ELBO hands it back to `log_prob`.
- "before": the same flow, whose draws carry no intermediates (a subclass
  whose `sample_with_intermediates` returns `[]`), so `log_prob` inverts every
  draw, as it did before the hook.

With `--spline`, a spline coupling flow (`spline_flow(invert=False)`, the same
layers and width), whose inverse is one pass, is timed the same way for
comparison. Every step function is `jax.jit(svi.update)`; each is compiled and
called once (the compile time is printed on its own), then `--repeats`
interleaved rounds time one step of each. The script prints the median step
times and the ratio after/before, and the load average of the machine at the
start and the end, since other processes change the numbers.

Run: python benchmarks/bench_svi_step.py [--repeats 300] [--particles 8]
    [--layers 3] [--hidden 32] [--spline]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
from _timing import interleaved_medians
from numpyro.infer import SVI, Trace_ELBO

from flowrox import Flow, param_module
from flowrox.flows import masked_autoregressive_flow, spline_flow

DIM = 10


class _InvertingFlow(Flow):
    """The flow as it was before the hook: draws carry no intermediates."""

    def sample_with_intermediates(self, key, sample_shape=()):
        return self.sample(key, sample_shape), []


def _inverting(flow: Flow) -> _InvertingFlow:
    return _InvertingFlow(flow.base_dist, flow.bijection, flow.condition)


def funnel():
    z = numpyro.sample(
        "z", dist.ImproperUniform(dist.constraints.real_vector, (), (DIM,))
    )
    y, x = z[0], z[1:]
    numpyro.factor(
        "log_density",
        dist.Normal(0.0, 3.0).log_prob(y)
        + dist.Normal(0.0, jnp.exp(y / 2)).log_prob(x).sum(),
    )


def _guide(flow: Flow):
    def guide():
        numpyro.sample("z", param_module("q", flow))

    return guide


def _step(flow: Flow, particles: int):
    """A jitted SVI step, its initial state, the compile time and the loss of
    the first step."""
    svi = SVI(funnel, _guide(flow), optax.adam(1e-3), Trace_ELBO(particles))
    state = svi.init(jax.random.key(0))
    update = jax.jit(svi.update)
    start = time.perf_counter()
    _, loss = jax.block_until_ready(update(state))
    return update, state, time.perf_counter() - start, float(loss)


def main(repeats: int, particles: int, layers: int, hidden: int, spline: bool):
    load_start = os.getloadavg()[0]
    key = jax.random.key(1)
    flows = {
        "IAF": masked_autoregressive_flow(
            key, DIM, layers=layers, hidden=hidden, one_pass="transform"
        )
    }
    if spline:
        flows["spline coupling"] = spline_flow(
            key, DIM, layers=layers, hidden=hidden, invert=False
        )
    pairs, compile_times, losses = [], {}, {}
    for name, flow in flows.items():
        for variant, version in (("before", _inverting(flow)), ("after", flow)):
            update, state, seconds, loss = _step(version, particles)
            label = f"{name} {variant}"
            compile_times[label], losses[label] = seconds, loss
            pairs.append((label, update, (state,)))
    medians = interleaved_medians(pairs, repeats)
    print(
        f"funnel, dim {DIM}; guide: {layers} layers of width {hidden}; "
        f"Trace_ELBO({particles}); {repeats} interleaved repeats"
    )
    print(f"  {'':24s} {'step (median)':>14s} {'compile':>9s}")
    for label, seconds in medians.items():
        print(f"  {label:24s} {1e3 * seconds:11.3f} ms {compile_times[label]:7.2f} s")
    ratios = {}
    for name in flows:
        ratios[name] = medians[f"{name} after"] / medians[f"{name} before"]
        # The same draws and density: the first losses agree to rounding.
        difference = abs(losses[f"{name} after"] - losses[f"{name} before"])
        print(
            f"  {name}: after/before step time {ratios[name]:.3f} "
            f"(first losses {losses[f'{name} after']:.4f}, differ by {difference:.1e})"
        )
    load_end = os.getloadavg()[0]
    print(f"load average: {load_start:.1f} at the start, {load_end:.1f} at the end")
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--spline", action="store_true")
    arguments = parser.parse_args()
    main(
        arguments.repeats,
        arguments.particles,
        arguments.layers,
        arguments.hidden,
        arguments.spline,
    )
