"""ConvVF continuous flows for phi^4 against bijx's, side by side in one process.

phi^4 in 2-D in the bare convention (bijx's), m^2 = -4, with lambda tuned for
m_p L ~ 4: L = 6 -> 6.975, L = 8 -> 6.008, L = 12 -> 5.276. For each L, a
ConvVF with the seed's default architecture (3x3 D4 kernel; 49 Fourier
features and phi, reduced to 20; 21 Fourier time features, reduced to 20) in
each library, integrated by Tsit5 over the same number of fixed steps (bijx:
`ContFlowDiffrax` with `ConstantStepSize` and `max_steps` equal to the steps,
its fastest setting; flowrox: `ContinuousFlow(..., divergence="field")`), a
standard normal base, reverse KL on batches of 64, Adam (b1 0.8, b2 0.9) at a
constant 5e-3. bijx's model is trained through nnx's functional API (split
once, `jax.jit` of pure functions), its cheapest path.

(a) Speed: one jitted training step (draw, solve, action, gradient, Adam
update) timed interleaved (medians), and its compile time (first call less a
timed call), with the flowrox/bijx ratio (target <= 0.5).

(b) Quality: both trained for `--steps` steps from their own initialisation
(flowrox's kernel starts at zero, bijx's at lecun-normal); then 1024 draws:
the normalised importance ESS, (sum w)^2 / (n sum w^2), and the acceptance
rate of an independence Metropolis chain run through those 1024 draws with the
same uniforms for both.

Before timing, bijx's initial parameters are copied into a flowrox ConvVF and
the two velocity fields are checked equal on random fields (same
architecture), and the two actions are checked equal.

Run: pip install -e ".[bench]" && nice python benchmarks/bench_lattice.py [--steps 500]
     python benchmarks/bench_lattice.py --quick   (a smoke run: L = 6, 20 steps)
"""

import argparse
import statistics
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax

from flowrox import Flow
from flowrox.bijections import ContinuousFlow
from flowrox.lattice import ConvVF, phi4_action
from flowrox.train import fit_to_density, trainable_filter

LAMBDAS = {6: 6.975, 8: 6.008, 12: 5.276}
M2 = -4.0
BATCH = 64


def _optimizer(steps: int | None = None):
    """Adam (b1 0.8, b2 0.9) at 5e-3, decaying by a cosine to 0 over `steps`."""
    rate = 5e-3 if steps is None else optax.cosine_decay_schedule(5e-3, steps)
    return optax.adam(rate, b1=0.8, b2=0.9)


# -- bijx ------------------------------------------------------------------------


def _bijx_model(lattice: int, ode_steps: int, seed: int):
    import bijx
    from flax import nnx

    rngs = nnx.Rngs(seed)
    field = bijx.ConvVF.build((3, 3), (), rngs=rngs)
    config = bijx.DiffraxConfig(
        solver=diffrax.Tsit5(),
        dt=1.0 / ode_steps,
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=ode_steps,
    )
    prior = bijx.IndependentNormal(event_shape=(lattice, lattice), rngs=rngs)
    return field, bijx.Transformed(prior, bijx.ContFlowDiffrax(field, config))


def _bijx_action(phi, lam):
    from bijx.lattice.scalar import phi4_term

    # phi4_term rolls every axis of its argument: one configuration at a time.
    return jax.vmap(lambda one: jnp.sum(phi4_term(one, M2, lam)))(phi)


def _bijx_functions(model, lam, steps=None):
    from flax import nnx

    graph, params, rest = nnx.split(model, nnx.Param, ...)
    optimizer = _optimizer(steps)

    def draws(params, key, n):
        x, log_q = nnx.merge(graph, params, rest).sample((n,), rng=key)
        return x, -_bijx_action(x, lam) - log_q

    def loss(params, key):
        _, log_w = draws(params, key, BATCH)
        return -jnp.mean(log_w)

    @jax.jit
    def step(params, state, key):
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    return params, optimizer.init(params), step, jax.jit(draws, static_argnums=2)


def _copy_from_bijx(bijx_field, ours: ConvVF) -> ConvVF:
    """`ours` with bijx's parameters (identical layouts: features channel-major,
    kernel `(orbit, in, (channel time))`)."""
    from flax import nnx

    state = nnx.state(bijx_field)
    kernel = jnp.asarray(state["conv"]["kernel_params"].get_value())
    frequency = state["feature_map"]["features"][0]["phi_freq"].get_value()
    replacements = [
        (lambda f: f.kernel_weight, kernel.reshape(ours.kernel_weight.shape)),
        (lambda f: f.feature_weight, state["feature_superposition"].get_value()),
        (lambda f: f.time_weight, state["time_kernel"]["superposition"].get_value()),
        (lambda f: f.features[0].frequency, frequency),
    ]
    for where, value in replacements:
        ours = eqx.tree_at(where, ours, jnp.asarray(value))
    return ours


# -- flowrox ---------------------------------------------------------------------


def _flowrox_flow(lattice: int, ode_steps: int, seed: int, field=None) -> Flow:
    if field is None:
        field = ConvVF.build((3, 3), key=jax.random.key(seed))
    field = field.with_lattice((lattice, lattice))
    bijection = ContinuousFlow(
        field,
        shape=field.shape,
        solver=diffrax.Tsit5(),
        steps=ode_steps,
        divergence="field",
    )
    base = dist.Normal(jnp.zeros((lattice, lattice)), 1.0).to_event(2)
    return Flow(base, bijection)


def _flowrox_functions(flow: Flow, lam, steps=None):
    parameters, static = eqx.partition(flow, trainable_filter(flow))
    optimizer = _optimizer(steps)

    def action(phi):
        return phi4_action(phi, convention="bare", m2=M2, lam=lam)

    def draws(parameters, key, n):
        x, log_q = eqx.combine(parameters, static).sample_and_log_prob(key, (n,))
        return x, -jax.vmap(action)(x) - log_q

    def loss(parameters, key):
        flow = eqx.combine(parameters, static)
        z = flow.base_dist.sample(key, (BATCH,))
        x, log_det = jax.vmap(flow.bijection.transform_and_log_det)(z)
        log_q = flow.base_dist.log_prob(z) - log_det
        return jnp.mean(log_q + jax.vmap(action)(x))

    @jax.jit
    def step(parameters, state, key):
        value, grads = jax.value_and_grad(loss)(parameters, key)
        updates, state = optimizer.update(grads, state, parameters)
        return optax.apply_updates(parameters, updates), state, value

    return (
        parameters,
        optimizer.init(parameters),
        step,
        jax.jit(draws, static_argnums=2),
    )


# -- measurements ----------------------------------------------------------------


def _ess(log_w) -> float:
    log_w = np.asarray(log_w, dtype=np.float64)
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (len(w) * np.sum(w**2)))


def _imh_acceptance(log_w, uniforms) -> float:
    log_w = np.asarray(log_w, dtype=np.float64)
    current, accepted = log_w[0], 0
    for proposal, u in zip(log_w[1:], uniforms, strict=False):
        if np.log(u) < proposal - current:
            current, accepted = proposal, accepted + 1
    return accepted / (len(log_w) - 1)


def _clock(name: str):
    return {"wall": time.perf_counter, "cpu": time.process_time}[name]


def _compile_seconds(step, args, clock) -> float:
    """The first call's time less a second call's: tracing and compiling."""
    start = clock()
    jax.block_until_ready(step(*args))
    first = clock() - start
    start = clock()
    jax.block_until_ready(step(*args))
    return first - (clock() - start)


def _interleaved_medians(pairs, repeats: int, clock) -> dict[str, float]:
    """`_timing.interleaved_medians` on the chosen clock."""
    results = {name: [] for name, _, _ in pairs}
    for _, function, args in pairs:
        jax.block_until_ready(function(*args))
    for _ in range(repeats):
        for name, function, args in pairs:
            start = clock()
            jax.block_until_ready(function(*args))
            results[name].append(clock() - start)
    return {name: statistics.median(times) for name, times in results.items()}


def _check_same_field(bijx_field, lattice):
    ours = _copy_from_bijx(bijx_field, ConvVF.build((3, 3), key=jax.random.key(0)))
    phi = jax.random.normal(jax.random.key(1), (8, lattice, lattice))
    theirs, minus_divergence = bijx_field(0.37, phi)
    velocity, divergence = ours.velocity_and_divergence(0.37, phi)
    scale = float(jnp.abs(theirs).max())
    gap = float(jnp.abs(theirs - velocity).max())
    divergence_gap = float(jnp.abs(divergence + minus_divergence).max())
    if gap > 1e-5 * scale or divergence_gap > 1e-4:
        raise AssertionError(f"the fields differ: {gap} (scale {scale})")
    theirs_action = _bijx_action(phi, 6.0)
    ours_action = jax.vmap(lambda p: phi4_action(p, convention="bare", m2=M2, lam=6.0))(
        phi
    )
    # Relative where the action is large, absolute near zero (it changes sign).
    gaps = jnp.abs(theirs_action - ours_action) / jnp.maximum(1.0, jnp.abs(ours_action))
    action_gap = float(jnp.max(gaps))
    if action_gap > 1e-5:
        raise AssertionError(f"the actions differ by {action_gap} (relative)")
    return gap / scale


def _train_bijx(params, state, step, steps, key, clock):
    start = clock()
    for step_key in jax.random.split(key, steps):
        params, state, _ = step(params, state, step_key)
    jax.block_until_ready(params)
    return params, clock() - start


def run_lattice(lattice, *, ode_steps, steps, repeats, clock, seed=0):
    """One row: speed (a) and, with `steps` > 0, quality (b)."""
    clock = _clock(clock)
    lam = LAMBDAS[lattice]
    bijx_field, model = _bijx_model(lattice, ode_steps, seed)
    row = {
        "L": lattice,
        "lam": lam,
        "field gap": _check_same_field(bijx_field, lattice),
    }
    b_params, b_state, b_step, b_draws = _bijx_functions(model, lam)
    flow = _flowrox_flow(lattice, ode_steps, seed)
    f_params, f_state, f_step, f_draws = _flowrox_functions(flow, lam)
    key = jax.random.key(seed + 1)
    row["bijx compile"] = _compile_seconds(b_step, (b_params, b_state, key), clock)
    row["flowrox compile"] = _compile_seconds(f_step, (f_params, f_state, key), clock)
    medians = _interleaved_medians(
        [
            ("bijx", b_step, (b_params, b_state, key)),
            ("flowrox", f_step, (f_params, f_state, key)),
        ],
        repeats,
        clock,
    )
    row["bijx step"], row["flowrox step"] = medians["bijx"], medians["flowrox"]
    row["ratio"] = medians["flowrox"] / medians["bijx"]
    if not steps:
        return row

    # (b) The same steps and schedule; flowrox through fit_to_density.
    train_key, draw_key, uniform_key = jax.random.split(jax.random.key(seed + 2), 3)
    b_params, b_state, b_step, b_draws = _bijx_functions(model, lam, steps)
    b_trained, row["bijx train"] = _train_bijx(
        b_params, b_state, b_step, steps, train_key, clock
    )
    start = clock()
    trained, _ = fit_to_density(
        train_key,
        flow,
        lambda phi: -phi4_action(phi, convention="bare", m2=M2, lam=lam),
        optimizer=_optimizer(steps),
        steps=steps,
        batch_size=BATCH,
        progress=False,
    )
    row["flowrox train"] = clock() - start
    f_trained = eqx.partition(trained, trainable_filter(trained))[0]
    uniforms = np.asarray(jax.random.uniform(uniform_key, (1023,)))
    for name, draws, params in (
        ("bijx", b_draws, b_trained),
        ("flowrox", f_draws, f_trained),
    ):
        _, log_w = draws(params, draw_key, 1024)
        row[f"{name} ess"] = _ess(log_w)
        row[f"{name} imh"] = _imh_acceptance(log_w, uniforms)
    return row


def _table(rows, steps, ode_steps, clock):
    lines = [
        f"Tsit5 with {ode_steps} fixed steps, batch {BATCH}, {clock} clock"
        + (f", {steps} training steps" if steps else ""),
        "",
        "| L | lambda | bijx step (ms) | flowrox step (ms) | flowrox/bijx "
        "| bijx compile (s) | flowrox compile (s) |"
        + (" bijx ESS | flowrox ESS | bijx IMH | flowrox IMH |" if steps else ""),
        "|---" * (11 if steps else 7) + "|",
    ]
    for r in rows:
        line = (
            f"| {r['L']} | {r['lam']} | {r['bijx step'] * 1e3:.0f} | "
            f"{r['flowrox step'] * 1e3:.0f} | {r['ratio']:.2f} | "
            f"{r['bijx compile']:.1f} | {r['flowrox compile']:.1f} |"
        )
        if steps:
            line += (
                f" {r['bijx ess']:.3f} | {r['flowrox ess']:.3f} | "
                f"{r['bijx imh']:.3f} | {r['flowrox imh']:.3f} |"
            )
        lines.append(line)
    return "\n".join(lines)


def main(steps, ode_steps, repeats, quick, lattices, clock="wall") -> list:
    if quick:
        steps, ode_steps, repeats, lattices = 20, 4, 3, [6]
    rows = []
    for lattice in lattices:
        row = run_lattice(
            lattice, ode_steps=ode_steps, steps=steps, repeats=repeats, clock=clock
        )
        rows.append(row)
        print(_table([row], steps, ode_steps, clock).splitlines()[-1], flush=True)
    print()
    print(_table(rows, steps, ode_steps, clock))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=500, help="training steps for (b); 0 skips it"
    )
    parser.add_argument(
        "--ode-steps", type=int, default=20, help="fixed Tsit5 steps (bijx: dt 0.05)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds")
    parser.add_argument("--lattices", type=int, nargs="+", default=[6, 8, 12])
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process time, steadier on a machine shared with other work",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    arguments = parser.parse_args()
    main(
        arguments.steps,
        arguments.ode_steps,
        arguments.repeats,
        arguments.quick,
        arguments.lattices,
        arguments.clock,
    )
