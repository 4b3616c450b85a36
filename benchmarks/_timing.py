"""Interleaved timing shared by the benchmarks."""

import statistics
import time

import jax


def interleaved_medians(pairs, repeats: int) -> dict[str, float]:
    """Times each `(name, function, args)` in rounds, so drift hits all alike.

    Every function is called once first (compilation), then `repeats` rounds
    time one call of each; returns the median seconds per name.
    """
    results = {name: [] for name, _, _ in pairs}
    for _name, function, args in pairs:
        jax.block_until_ready(function(*args))
    for _ in range(repeats):
        for name, function, args in pairs:
            start = time.perf_counter()
            jax.block_until_ready(function(*args))
            results[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in results.items()}
