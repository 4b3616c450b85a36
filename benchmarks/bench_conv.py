"""Convolutional networks on fields against pdequinox's, same weights, same run.

(a) a 2-D periodic conv net (hidden 32, depth 6, 3x3 kernels: pdequinox's
`ConvNet`) on a batch of 64 fields of 64 x 64, and (b) a 1-D Fourier neural
operator (hidden 32, 12 modes, 4 blocks: pdequinox's `ClassicFNO`) on a batch
of 64 fields of 256 points. pdequinox's networks are built from a key and
their weights copied into flowrox's; the outputs are checked equal. Timed:
the forward pass over the batch, and the forward pass with the gradient of a
mean squared error with respect to every weight, each jitted once and run
interleaved (medians; the FNO, which takes milliseconds, gets FNO_REPEATS
times as many rounds). Prints flowrox/pdequinox ratios (target <= 1.0) of the
wall-clock time and of the process's CPU time: on a shared machine the wall
clock also counts the time the process waits for a core, and the CPU time is
the steadier measure of the work each library does.

Run: pip install -e ".[dev]" && python benchmarks/bench_conv.py [--repeats 10]
     python benchmarks/bench_conv.py --quick   (a smoke run: small batches)
"""

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from flowrox.nn import FNO, ConvNet

FNO_REPEATS = 20


def _copied(ours, theirs):
    """`ours` with `theirs`'s arrays put in, leaf by leaf in order."""
    leaves, treedef = jax.tree.flatten(ours)
    arrays = iter(leaf for leaf in jax.tree.leaves(theirs) if eqx.is_array(leaf))
    copied = []
    for leaf in leaves:
        if eqx.is_array(leaf):
            array = next(arrays)
            if array.shape != leaf.shape:
                raise ValueError(f"leaf shapes differ: {array.shape} != {leaf.shape}")
            leaf = array
        copied.append(leaf)
    return jax.tree.unflatten(treedef, copied)


def _networks(key, quick: bool):
    import pdequinox

    conv_options = dict(hidden_channels=32, depth=6, kernel_size=3)
    fno_options = dict(hidden_channels=32, num_modes=12, num_blocks=4)
    theirs = {
        "conv net": pdequinox.arch.ConvNet(
            2, 1, 1, **conv_options, boundary_mode="periodic", key=key
        ),
        "fno": pdequinox.arch.ClassicFNO(1, 1, 1, **fno_options, key=key),
    }
    ours = {
        "conv net": ConvNet(2, 1, 1, **conv_options, boundary_mode="periodic", key=key),
        "fno": FNO(1, 1, 1, **fno_options, boundary_mode="periodic", key=key),
    }
    ours = {name: _copied(net, theirs[name]) for name, net in ours.items()}
    batch = 8 if quick else 64
    keys = jax.random.split(key, 2)
    fields = {
        "conv net": jax.random.normal(keys[0], (batch, 1, 64, 64)),
        "fno": jax.random.normal(keys[1], (batch, 1, 256)),
    }
    return ours, theirs, fields


def _wall_and_cpu_medians(pairs, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds per `(name, function, args)`.

    As `_timing.interleaved_medians` (one compiling call each, then rounds
    that time one call of each), with the process's CPU time read as well, and
    every other round in reverse order, so that no function always runs
    right after the same other one.
    """
    times = {name: [] for name, _, _ in pairs}
    for _name, function, args in pairs:
        jax.block_until_ready(function(*args))
    for round_index in range(repeats):
        for name, function, args in pairs[:: 1 if round_index % 2 == 0 else -1]:
            wall, cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(function(*args))
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: tuple(statistics.median(column) for column in zip(*rows, strict=True))
        for name, rows in times.items()
    }


@eqx.filter_jit
def _forward(net, x):
    return jax.vmap(net)(x)


@eqx.filter_jit
def _forward_and_gradient(net, x):
    def loss(net):
        return jnp.mean(jnp.square(jax.vmap(net)(x) - x))

    return eqx.filter_value_and_grad(loss)(net)


def main(repeats: int, quick: bool) -> dict:
    ours, theirs, fields = _networks(jax.random.key(0), quick)
    ratios = {}
    for name, x in fields.items():
        difference = jnp.max(
            jnp.abs(_forward(ours[name], x) - _forward(theirs[name], x))
        )
        pairs = []
        for library, net in (("flowrox", ours[name]), ("pdequinox", theirs[name])):
            pairs += [
                (f"{library} forward", _forward, (net, x)),
                (f"{library} forward+grad", _forward_and_gradient, (net, x)),
            ]
        rounds = repeats * (FNO_REPEATS if name == "fno" else 1)
        medians = _wall_and_cpu_medians(pairs, rounds)
        print(
            f"\n{name}: batch of {x.shape[0]} fields {x.shape[1:]}, {rounds} "
            f"interleaved repeats; outputs differ by at most {float(difference):.1e}"
        )
        for what, (wall, cpu) in medians.items():
            print(f"  {what:24s} {1e3 * wall:9.2f} ms wall {1e3 * cpu:9.2f} ms CPU")
        for what in ("forward", "forward+grad"):
            ours_times = medians[f"flowrox {what}"]
            theirs_times = medians[f"pdequinox {what}"]
            wall, cpu = (a / b for a, b in zip(ours_times, theirs_times, strict=True))
            ratios[f"{name} {what}"] = (wall, cpu)
            verdicts = ["ok" if ratio <= 1.0 else "missed" for ratio in (wall, cpu)]
            print(
                f"  flowrox/pdequinox {what:12s} wall {wall:.3f} ({verdicts[0]}), "
                f"CPU {cpu:.3f} ({verdicts[1]}); target <= 1.0"
            )
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: batches of 8, 3 repeats"
    )
    arguments = parser.parse_args()
    main(3 if arguments.quick else arguments.repeats, arguments.quick)
