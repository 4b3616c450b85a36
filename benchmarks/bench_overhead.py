"""Overhead of `Flow.log_prob` / `Flow.sample` over calling the bijection directly.

A batch of 4096 events in 16 dimensions through a Scan of 8 stacked
Affine + SinhArcsinh + Permute layers. "Direct" is the hand-written equivalent:
`jax.vmap` of the bijection plus the base density. Both are jitted once and
timed interleaved; the script prints median times and ratios (target <= 1.05).
With flowjax installed (`pip install -e ".[bench]"`), the same Affine + Permute
stack built from flowjax's layers is timed in the same run for reference.

Run: python benchmarks/bench_overhead.py [--repeats 200]
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from _timing import interleaved_medians

from flowrox import Flow
from flowrox.bijections import Affine, Chain, Permute, Scan, SinhArcsinh

BATCH, DIM, LAYERS = 4096, 16, 8


def _layer(key):
    keys = jax.random.split(key, 4)
    return Chain(
        [
            Affine(
                0.1 * jax.random.normal(keys[0], (DIM,)),
                jnp.exp(0.1 * jax.random.normal(keys[1], (DIM,))),
            ),
            SinhArcsinh(0.1 * jax.random.normal(keys[2], (DIM,)), 1.05),
            Permute(jax.random.permutation(keys[3], DIM)),
        ]
    )


def main(repeats: int) -> dict:
    bijection = Scan(
        eqx.filter_vmap(_layer)(jax.random.split(jax.random.key(0), LAYERS))
    )
    flow = Flow(dist.Normal(0.0, 1.0), bijection)
    base = dist.Normal(jnp.zeros(DIM), 1.0).to_event(1)
    y = jax.random.normal(jax.random.key(1), (BATCH, DIM))
    key = jax.random.key(2)

    @jax.jit
    def direct_log_prob(bijection, y):
        x, log_det = jax.vmap(bijection.inverse_and_log_det)(y)
        return base.log_prob(x) + log_det

    @jax.jit
    def flow_log_prob(flow, y):
        return flow.log_prob(y)

    @jax.jit
    def direct_sample(bijection, key):
        z = jax.random.normal(key, (BATCH, DIM))
        return jax.vmap(bijection.transform)(z)

    @jax.jit
    def flow_sample(flow, key):
        return flow.sample(key, (BATCH,))

    medians = interleaved_medians(
        [
            ("direct log_prob", direct_log_prob, (bijection, y)),
            ("Flow.log_prob", flow_log_prob, (flow, y)),
            ("direct sample", direct_sample, (bijection, key)),
            ("Flow.sample", flow_sample, (flow, key)),
        ],
        repeats,
    )
    print(f"batch {BATCH}, dim {DIM}, {LAYERS} stacked layers, {repeats} repeats")
    for name, seconds in medians.items():
        print(f"  {name:18s} {1e3 * seconds:8.3f} ms (median)")
    ratios = {
        "log_prob": medians["Flow.log_prob"] / medians["direct log_prob"],
        "sample": medians["Flow.sample"] / medians["direct sample"],
    }
    for name, ratio in ratios.items():
        verdict = "ok" if ratio <= 1.05 else "over target"
        print(f"  Flow/direct {name:9s} ratio {ratio:.3f}  (target <= 1.05: {verdict})")
    _compare_with_flowjax(repeats)
    return ratios


def _compare_with_flowjax(repeats: int) -> None:
    try:
        import flowjax.bijections as fjb
        import flowjax.distributions as fjd
    except ImportError:
        print("  (flowjax not installed: pip install -e '.[bench]' to compare)")
        return

    def flowrox_layer(key):
        keys = jax.random.split(key, 3)
        return Chain(
            [
                Affine(
                    jax.random.normal(keys[0], (DIM,)),
                    jnp.exp(0.1 * jax.random.normal(keys[1], (DIM,))),
                ),
                Permute(jax.random.permutation(keys[2], DIM)),
            ]
        )

    def flowjax_layer(key):
        keys = jax.random.split(key, 3)
        return fjb.Chain(
            [
                fjb.Affine(
                    jax.random.normal(keys[0], (DIM,)),
                    jnp.exp(0.1 * jax.random.normal(keys[1], (DIM,))),
                ),
                fjb.Permute(jax.random.permutation(keys[2], DIM)),
            ]
        )

    keys = jax.random.split(jax.random.key(3), LAYERS)
    ours = Flow(dist.Normal(0.0, 1.0), Scan(eqx.filter_vmap(flowrox_layer)(keys)))
    theirs = fjd.Transformed(
        fjd.StandardNormal((DIM,)), fjb.Scan(eqx.filter_vmap(flowjax_layer)(keys))
    )
    y = jax.random.normal(jax.random.key(4), (BATCH, DIM))
    key = jax.random.key(5)
    medians = interleaved_medians(
        [
            ("flowrox log_prob", eqx.filter_jit(lambda f, v: f.log_prob(v)), (ours, y)),
            (
                "flowjax log_prob",
                eqx.filter_jit(lambda f, v: f.log_prob(v)),
                (theirs, y),
            ),
            (
                "flowrox sample",
                eqx.filter_jit(lambda f, k: f.sample(k, (BATCH,))),
                (ours, key),
            ),
            (
                "flowjax sample",
                eqx.filter_jit(lambda f, k: f.sample(k, (BATCH,))),
                (theirs, key),
            ),
        ],
        repeats,
    )
    print("Affine + Permute stack, flowrox vs flowjax in the same run:")
    for name, seconds in medians.items():
        print(f"  {name:18s} {1e3 * seconds:8.3f} ms (median)")
    for what in ("log_prob", "sample"):
        ratio = medians[f"flowrox {what}"] / medians[f"flowjax {what}"]
        print(f"  flowrox/flowjax {what:9s} ratio {ratio:.3f}  (< 1: flowrox faster)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    main(parser.parse_args().repeats)
