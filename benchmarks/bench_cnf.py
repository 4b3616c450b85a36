"""A continuous normalizing flow written plainly with diffrax against `ContinuousFlow`.

The plain version is the CNF of diffrax's own example (its concat-squash MLP
with tanh, the log-density augmented with a Jacobian trace from `jax.vjp`,
one `diffeqsolve` of Tsit5 from t1 back to t0 with `dt0=0.1` and every other
argument at its default: `max_steps=4096`, `RecursiveCheckpointAdjoint()`),
one Gaussian probe per point for Hutchinson's estimate. The flowrox version is
`Flow(Normal, ContinuousFlow(MLPVectorField(...), steps=10))` holding the same
weights. Both: width 64, 3 hidden layers, Tsit5 with 10 fixed steps over
[0, 1]; 2-D data with the exact divergence and 16-D data with Hutchinson's.

Timed, interleaved in one process (medians): one maximum-likelihood training
step (value_and_grad of the mean NLL of a batch of 1024, and an Adam update),
`log_prob` and `sample` of a batch of 1024; and the compile time of the
training step. Prints flowrox / plain ratios (target for the training step:
at most 0.7), and both losses on the same batch with the same probes.

Run: nice python benchmarks/bench_cnf.py [--quick] [--repeats 10]
"""

import argparse
import math
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from _timing import interleaved_medians

from flowrox import Flow
from flowrox.bijections import ContinuousFlow
from flowrox.nn import MLPVectorField

WIDTH, DEPTH, STEPS = 64, 3, 10


class ConcatSquash(eqx.Module):
    """diffrax's example layer: lin1(y) * sigmoid(lin2(t)) + lin3(t)."""

    lin1: eqx.nn.Linear
    lin2: eqx.nn.Linear
    lin3: eqx.nn.Linear

    def __init__(self, *, in_size, out_size, key):
        key1, key2, key3 = jax.random.split(key, 3)
        self.lin1 = eqx.nn.Linear(in_size, out_size, key=key1)
        self.lin2 = eqx.nn.Linear(1, out_size, key=key2)
        self.lin3 = eqx.nn.Linear(1, out_size, use_bias=False, key=key3)

    def __call__(self, t, y):
        return self.lin1(y) * jax.nn.sigmoid(self.lin2(t)) + self.lin3(t)


class Func(eqx.Module):
    """diffrax's example vector field: concat-squash layers with tanh."""

    layers: list

    def __init__(self, *, data_size, width_size, depth, key):
        keys = jax.random.split(key, depth + 1)
        sizes = [data_size] + [width_size] * depth + [data_size]
        self.layers = [
            ConcatSquash(in_size=sizes[i], out_size=sizes[i + 1], key=keys[i])
            for i in range(depth + 1)
        ]

    def __call__(self, t, y, args):
        t = jnp.asarray(t)[None]
        for layer in self.layers[:-1]:
            y = jax.nn.tanh(layer(t, y))
        return self.layers[-1](t, y)


def approx_logp_wrapper(t, y, args):
    y, _ = y
    *args, eps, func = args
    f, vjp_fn = jax.vjp(lambda y: func(t, y, args), y)
    (eps_dfdy,) = vjp_fn(eps)
    return f, jnp.sum(eps_dfdy * eps)


def exact_logp_wrapper(t, y, args):
    y, _ = y
    *args, _, func = args
    f, vjp_fn = jax.vjp(lambda y: func(t, y, args), y)
    (size,) = y.shape
    (dfdy,) = jax.vmap(vjp_fn)(jnp.eye(size))
    return f, jnp.trace(dfdy)


def normal_log_likelihood(y):
    return -0.5 * (y.size * math.log(2 * math.pi) + jnp.sum(y**2))


class PlainCNF(eqx.Module):
    """diffrax's example CNF with one block, t in [0, 1] and dt0 = 0.1."""

    func: Func
    exact_logp: bool = eqx.field(static=True)
    data_size: int = eqx.field(static=True)

    def train(self, y, *, key=None, eps=None):
        wrapper = exact_logp_wrapper if self.exact_logp else approx_logp_wrapper
        if eps is None:
            eps = jax.random.normal(key, y.shape)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(wrapper),
            diffrax.Tsit5(),
            1.0,
            0.0,
            -1.0 / STEPS,
            (y, 0.0),
            (eps, self.func),
        )
        (y,), (delta_log_likelihood,) = sol.ys
        return delta_log_likelihood + normal_log_likelihood(y)

    def sample(self, *, key):
        y = jax.random.normal(key, (self.data_size,))
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(self.func), diffrax.Tsit5(), 0.0, 1.0, 1.0 / STEPS, y
        )
        (y,) = sol.ys
        return y


def _same_weights(func: Func, field: MLPVectorField) -> MLPVectorField:
    """The flowrox field holding the weights of diffrax's example field."""
    for index, layer in enumerate(func.layers):
        values = (
            layer.lin1.weight,
            layer.lin1.bias,
            layer.lin2.weight,
            layer.lin2.bias,
            layer.lin3.weight,
        )
        field = eqx.tree_at(
            lambda f, i=index: (
                f.layers[i].weight,
                f.layers[i].bias,
                f.layers[i].gate_weight,
                f.layers[i].gate_bias,
                f.layers[i].shift_weight,
            ),
            field,
            values,
        )
    return field


def _models(dim: int, exact: bool):
    func = Func(data_size=dim, width_size=WIDTH, depth=DEPTH, key=jax.random.key(0))
    plain = PlainCNF(func, exact, dim)
    field = _same_weights(
        func, MLPVectorField(dim, width=WIDTH, depth=DEPTH, key=jax.random.key(1))
    )
    options = (
        {"divergence": "exact"}
        if exact
        else {
            "divergence": "hutchinson",
            "probe": "gaussian",
            "probe_key": jax.random.key(2),
        }
    )
    bijection = ContinuousFlow(field, shape=(dim,), steps=STEPS, **options)
    return plain, Flow(dist.Normal(0.0, 1.0), bijection)


def _compile_seconds(function, *args) -> float:
    start = time.perf_counter()
    jax.jit(function).lower(*args).compile()
    return time.perf_counter() - start


def run(dim: int, exact: bool, batch: int, repeats: int) -> dict:
    plain, flow = _models(dim, exact)
    optimizer = optax.adam(1e-3)
    data = 0.8 * jax.random.normal(jax.random.key(3), (batch, dim))
    key = jax.random.key(4)

    def plain_loss(plain, data, key):
        keys = jax.random.split(key, data.shape[0])
        return -jnp.mean(jax.vmap(lambda y, k: plain.train(y, key=k))(data, keys))

    def flow_loss(flow, data, key):
        if not exact:
            flow = Flow(flow.base_dist, flow.bijection.with_probes(key))
        return -jnp.mean(flow.log_prob(data))

    def train_step(loss):
        def step(model, state, data, key):
            parameters, static = eqx.partition(model, eqx.is_inexact_array)

            def objective(parameters):
                return loss(eqx.combine(parameters, static), data, key)

            _, grads = jax.value_and_grad(objective)(parameters)
            updates, state = optimizer.update(grads, state, parameters)
            return eqx.combine(optax.apply_updates(parameters, updates), static), state

        return step

    plain_state = optimizer.init(eqx.filter(plain, eqx.is_inexact_array))
    flow_state = optimizer.init(eqx.filter(flow, eqx.is_inexact_array))
    plain_step, flow_step = train_step(plain_loss), train_step(flow_loss)
    compile_plain = _compile_seconds(plain_step, plain, plain_state, data, key)
    compile_flow = _compile_seconds(flow_step, flow, flow_state, data, key)

    # The same batch and the same probes: the flow's own, given to the plain
    # version as its eps.
    probes = (
        jnp.zeros_like(data)
        if exact
        else jax.vmap(flow.bijection.with_probes(key).probe_for)(data)
    )
    plain_value = jax.jit(
        lambda p, d, e: -jnp.mean(jax.vmap(lambda y, e: p.train(y, eps=e))(d, e))
    )(plain, data, probes)
    flow_value = jax.jit(flow_loss)(flow, data, key)

    pairs = [
        ("plain step", jax.jit(plain_step), (plain, plain_state, data, key)),
        ("flowrox step", jax.jit(flow_step), (flow, flow_state, data, key)),
        (
            "plain log_prob",
            jax.jit(lambda p, d, k: -plain_loss(p, d, k)),
            (plain, data, key),
        ),
        (
            "flowrox log_prob",
            jax.jit(lambda f, d, k: -flow_loss(f, d, k)),
            (flow, data, key),
        ),
        (
            "plain sample",
            jax.jit(
                lambda p, k: jax.vmap(lambda k: p.sample(key=k))(
                    jax.random.split(k, batch)
                )
            ),
            (plain, key),
        ),
        ("flowrox sample", jax.jit(lambda f, k: f.sample(k, (batch,))), (flow, key)),
    ]
    times = interleaved_medians(pairs, repeats)
    return {
        "times": times,
        "compile": (compile_plain, compile_flow),
        "losses": (float(plain_value), float(flow_value)),
    }


def main(quick: bool, repeats: int) -> dict:
    batch = 64 if quick else 1024
    repeats = 2 if quick else repeats
    results = {}
    for dim, exact in ((2, True), (16, False)):
        name = f"{dim}-D, {'exact' if exact else 'Hutchinson'}"
        result = run(dim, exact, batch, repeats)
        results[name] = result
        times = result["times"]
        print(f"{name}, batch {batch}, medians of {repeats}:")
        for what in ("step", "log_prob", "sample"):
            plain, ours = times[f"plain {what}"], times[f"flowrox {what}"]
            print(
                f"  {what:9s} plain {1e3 * plain:9.1f} ms  flowrox {1e3 * ours:9.1f} ms"
                f"  ratio {ours / plain:.3f}"
            )
        plain_compile, flow_compile = result["compile"]
        print(
            f"  compile   plain {plain_compile:9.2f} s   flowrox {flow_compile:9.2f} s"
            f"   ratio {flow_compile / plain_compile:.3f}"
        )
        plain_loss, flow_loss = result["losses"]
        print(
            f"  loss on one batch: plain {plain_loss:.6f}  flowrox {flow_loss:.6f}"
            f"  difference {flow_loss - plain_loss:+.2e}"
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--repeats", type=int, default=10)
    arguments = parser.parse_args()
    main(arguments.quick, arguments.repeats)
