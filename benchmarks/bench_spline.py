"""RationalQuadraticSpline throughput against flowjax's, in the same run.

8 bins, 16 features, a batch of 4096 events: forward + log-det, and inverse +
log-det, each jitted once and timed interleaved (medians). Prints the ratios
flowrox / flowjax (target <= 1.0: flowrox at least as fast).

Run: pip install -e ".[bench]" && python benchmarks/bench_spline.py [--repeats 200]
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
from _timing import interleaved_medians

from flowrox.bijections import RationalQuadraticSpline

BATCH, FEATURES, BINS = 4096, 16, 8


def _flowrox_spline(key):
    template = RationalQuadraticSpline(-3.0, 3.0, BINS, shape=(FEATURES,))
    shape = template.identity_parameters().shape
    return template.with_parameters(0.5 * jax.random.normal(key, shape))


def _flowjax_spline(key):
    import flowjax.bijections as fjb

    def one(_):
        return fjb.RationalQuadraticSpline(knots=BINS - 1, interval=3.0)

    stacked = eqx.filter_vmap(one)(jnp.arange(FEATURES))
    leaves, treedef = jax.tree.flatten(stacked)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + 0.5 * jax.random.normal(k, leaf.shape)
        if eqx.is_inexact_array(leaf)
        else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return fjb.Vmap(jax.tree.unflatten(treedef, leaves), in_axes=eqx.if_array(0))


def main(repeats: int) -> dict:
    x = jax.random.uniform(
        jax.random.key(1), (BATCH, FEATURES), minval=-3.5, maxval=3.5
    )
    ours = _flowrox_spline(jax.random.key(0))

    @jax.jit
    def forward(bijection, x):
        return jax.vmap(bijection.transform_and_log_det)(x)

    @jax.jit
    def inverse(bijection, y):
        return jax.vmap(bijection.inverse_and_log_det)(y)

    pairs = [
        ("flowrox forward", forward, (ours, x)),
        ("flowrox inverse", inverse, (ours, x)),
    ]
    try:
        theirs = _flowjax_spline(jax.random.key(0))
    except ImportError:
        theirs = None
        print("(flowjax not installed: pip install -e '.[bench]' to compare)")
    else:
        forward_theirs = eqx.filter_jit(
            lambda b, v: jax.vmap(b.transform_and_log_det)(v)
        )
        inverse_theirs = eqx.filter_jit(lambda b, v: jax.vmap(b.inverse_and_log_det)(v))
        pairs += [
            ("flowjax forward", forward_theirs, (theirs, x)),
            ("flowjax inverse", inverse_theirs, (theirs, x)),
        ]
    medians = interleaved_medians(pairs, repeats)
    print(f"batch {BATCH}, {FEATURES} features, {BINS} bins, {repeats} repeats")
    for name, seconds in medians.items():
        print(f"  {name:16s} {1e3 * seconds:8.3f} ms (median)")
    ratios = {}
    if theirs is not None:
        for direction in ("forward", "inverse"):
            ratio = medians[f"flowrox {direction}"] / medians[f"flowjax {direction}"]
            ratios[direction] = ratio
            verdict = "ok" if ratio <= 1.0 else "slower"
            print(
                f"  flowrox/flowjax {direction:8s} ratio {ratio:.3f} "
                f"(target <= 1.0: {verdict})"
            )
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    main(parser.parse_args().repeats)
