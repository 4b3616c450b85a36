r"""Continuous normalizing flows on diffrax: `ContinuousFlow`."""

from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._tree import buffer
from ..nn import AbstractVectorField, jacobian_trace
from ._base import AbstractBijection

_DIVERGENCES = ("exact", "hutchinson", "field")
_PROBES = ("rademacher", "gaussian")

#: diffrax's own `max_steps` default, used for adaptive steps.
ADAPTIVE_MAX_STEPS = 4096


class _AugmentedDynamics(eqx.Module):
    """The right-hand side of the augmented ODE: $(v(t, x), \\nabla \\cdot v)$.

    A module of one static field, so every `ContinuousFlow` with the same
    divergence passes diffrax an equal term, and diffrax's own compiled solve
    is reused across calls instead of being traced again. The field, the
    condition and the probe travel as `args` (what `BacksolveAdjoint`
    differentiates).
    """

    divergence: str = eqx.field(static=True)

    def __call__(self, t, state, args):
        x, _ = state
        field, condition, probe = args

        def velocity(value):
            return field(t, value, condition)

        if self.divergence == "exact":
            dx, divergence = jacobian_trace(velocity, x)
        elif self.divergence == "field":
            dx, divergence = field.velocity_and_divergence(t, x, condition)
        else:
            dx, divergence = _hutchinson(velocity, x, probe)
        return dx, jnp.asarray(divergence, x.dtype)


def _hutchinson(velocity, x, probe):
    r"""`velocity(x)` and $\varepsilon^\top J \varepsilon$ from one product."""
    dx, tangent = jax.jvp(velocity, (x,), (probe,))
    return dx, jnp.sum(probe * tangent)


def _weighted_sum(state, increments, weights, step_size):
    """`state + step_size * sum_j weights[j] * increments[j]`, leaf by leaf."""
    terms = [(float(w), k) for w, k in zip(weights, increments, strict=False) if w]

    def combine(leaf, *stage_leaves):
        total = sum(w * k for (w, _), k in zip(terms, stage_leaves, strict=True))
        return leaf + step_size * total

    return jax.tree.map(combine, state, *[k for _, k in terms])


def _fixed_step_solve(dynamics, solver, start, end, steps, state, args):
    r"""Integrates `dynamics` over `steps` equal steps of an explicit RK solver.

    The steps run in one `jax.lax.scan` whose body applies the solver's Butcher
    tableau with its stages written out, each step under `jax.checkpoint`: the
    forward pass keeps one state per step, and the backward pass recomputes
    each step once, as `RecursiveCheckpointAdjoint(checkpoints=steps)` does,
    but without a while loop over the steps or over the stages (whose
    backward passes dominate the cost of differentiating `diffeqsolve`). A
    first-same-as-last tableau (Tsit5, Dopri5) carries its last stage on as
    the next step's first.
    """
    tableau = solver.tableau
    fsal = bool(tableau.fsal)
    times = jnp.linspace(start, end, steps + 1, dtype=state[0].dtype)

    def step(carry, interval):
        value, first = carry
        t_start, t_end = interval
        size = t_end - t_start
        if not fsal:
            first = dynamics(t_start, value, args)
        increments = [first]
        n_inner = len(tableau.c) - 1 if fsal else len(tableau.c)
        for c, a in zip(tableau.c[:n_inner], tableau.a_lower[:n_inner], strict=True):
            stage = _weighted_sum(value, increments, a, size)
            increments.append(dynamics(t_start + float(c) * size, stage, args))
        next_value = _weighted_sum(value, increments, tableau.b_sol, size)
        last = dynamics(t_end, next_value, args) if fsal else first
        return (next_value, last), None

    first = (
        dynamics(times[0], state, args) if fsal else jax.tree.map(jnp.zeros_like, state)
    )
    body = jax.checkpoint(step, prevent_cse=False)
    (state, _), _ = jax.lax.scan(body, (state, first), (times[:-1], times[1:]))
    return state


def _bits_hash(value: jax.Array) -> jax.Array:
    """A 32-bit hash of the bits of an array (gradients stopped)."""
    value = jax.lax.stop_gradient(value).ravel()
    if value.dtype.itemsize >= 4:
        bits = jax.lax.bitcast_convert_type(value, jnp.uint32).ravel()
    else:
        bits = jax.lax.bitcast_convert_type(value, jnp.uint16).astype(jnp.uint32)
    multipliers = (2 * jnp.arange(bits.size, dtype=jnp.uint32) + 1) * jnp.uint32(
        0x9E3779B1
    )
    mixed = jnp.sum(bits * multipliers, dtype=jnp.uint32)
    return mixed ^ (mixed >> 16)


def _parameters_hash(module) -> jax.Array:
    """A 32-bit hash of all inexact array leaves of `module`."""
    mixed = jnp.uint32(0x811C9DC5)
    for leaf in jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array)):
        mixed = (mixed ^ _bits_hash(leaf)) * jnp.uint32(0x01000193)
    return mixed


def _is_key(key) -> bool:
    if not isinstance(key, jax.Array):
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == ()
    return key.dtype == jnp.uint32 and key.shape == (2,)


class ContinuousFlow(AbstractBijection):
    r"""A continuous normalizing flow: the solution map of $\dot x = v(t, x, c)$.

    `transform` integrates the vector field from `t0` to `t1` with diffrax,
    `inverse` from `t1` back to `t0`, and the log-det is the integral of the
    divergence along the path,
    $\log|\det \partial x(t_1)/\partial x(t_0)| = \int_{t_0}^{t_1}
    \nabla \cdot v(t, x(t), c)\, \mathrm{d}t$, integrated with $x$ as one
    augmented state in one solve. A field that starts at zero (as
    `flowrox.nn.MLPVectorField` does) makes the flow exactly the identity. A
    conditional field (`cond_shape`) makes a conditional bijection:
    `Flow(base, ContinuousFlow(...), condition=c)` with a batch of conditions
    is a batch of distributions.

    Divergence:

    - `"exact"`: the trace of the field's Jacobian by vector-Jacobian
      products, one per element of the event (`flowrox.nn.jacobian_trace`):
      right for small events.
    - `"field"`: the field's own `divergence`, for fields with a cheap exact
      formula (autodiff for a field that has none).
    - `"hutchinson"`: $\varepsilon^\top (\partial v/\partial x)\, \varepsilon$,
      an unbiased estimate of the divergence from one Jacobian-vector product,
      with Rademacher (default; the smaller variance) or Gaussian probes
      $\varepsilon$, one per event and fixed along its path. The bijection's
      functions are deterministic, so the probes come from a key held by the
      flow, `probe_key`, which this mode requires at construction (there is no
      default key). Each event's probe is drawn from that key folded with a
      hash of the bits of the event and of the field's parameters: the
      events of a batch get independent probes, every training step (which
      changes the parameters) gets fresh ones, also inside `fit_to_data`,
      SVI or any loop that knows nothing of probes, and the same flow gives
      the same event the same probe. `flow.with_probes(key)` draws fresh
      probes for fixed parameters (`probe_for` returns the one of an event).

    Steps: `steps` fixed steps of size $(t_1 - t_0)/\text{steps}$ by default.
    With an explicit Runge-Kutta solver (`Tsit5`, `Dopri5`, `Heun`, ...) and
    no `adjoint`, they run as one `jax.lax.scan` of the solver's Butcher
    tableau, each step checkpointed (`scans_steps`): the gradients of
    `RecursiveCheckpointAdjoint` with a checkpoint per step, and diffrax's
    own numbers to rounding, without the while loops whose backward passes
    dominate the cost of differentiating `diffeqsolve`. Otherwise the flow
    calls `diffeqsolve` once with `SaveAt(t1=True)`, `max_steps` exactly
    `steps` and, unless `adjoint` says otherwise,
    `RecursiveCheckpointAdjoint(checkpoints=steps)`. With a
    `stepsize_controller` (e.g. `diffrax.PIDController(rtol=1e-5,
    atol=1e-5)`) the steps adapt, the first is $(t_1 - t_0)/\text{steps}$ and
    at most `max_steps` (default 4096) are taken.
    `adjoint=diffrax.BacksolveAdjoint()` saves memory by solving the adjoint
    equation backwards instead of storing the steps; its gradients are then
    those of the continuous problem, not of the solver's steps, and so differ
    from the exact gradients of the computed log-density by the solver's
    error (at fixed steps, an error that shrinks like the step size to the
    power of the solver's order; measured 1.5e-9 relative at 6 Tsit5 steps
    in float64, see docs/continuous-flows.md).

    Args:
        vector_field: the field, with the flow's `shape` and `cond_shape`.
        shape: the event shape (must equal the field's).
        cond_shape: the condition's shape, or `None` (must equal the field's).
        t0: the start time (the base side).
        t1: the end time (the data side), larger than `t0`.
        solver: a diffrax ODE solver.
        steps: the number of fixed steps (with a controller: sets the first
            step).
        stepsize_controller: `None` for fixed steps, or a diffrax controller.
        adjoint: the diffrax adjoint (default: see above).
        max_steps: with a controller, the most steps (default 4096); fixed
            steps take exactly `steps`.
        divergence: `"exact"`, `"field"` or `"hutchinson"`.
        probe: the probes' distribution, `"rademacher"` or `"gaussian"`.
        probe_key: the probes' random key, required with `"hutchinson"`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import ContinuousFlow
        >>> from flowrox.nn import MLPVectorField
        >>> field = MLPVectorField(2, width=8, depth=1, key=jax.random.key(0))
        >>> flow = ContinuousFlow(field, shape=(2,), steps=4)
        >>> y, log_det = flow.transform_and_log_det(jnp.array([0.5, -1.0]))
        >>> y.tolist(), float(log_det)  # a new field is zero: the identity
        ([0.5, -1.0], 0.0)
    """

    vector_field: AbstractVectorField
    probe_key: jax.Array | None = buffer()
    solver: diffrax.AbstractSolver = buffer()
    stepsize_controller: diffrax.AbstractStepSizeController = buffer()
    adjoint: diffrax.AbstractAdjoint | None = buffer()
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    divergence: str = eqx.field(static=True)
    probe: str = eqx.field(static=True)

    def __init__(
        self,
        vector_field: AbstractVectorField,
        *,
        shape: Sequence[int],
        cond_shape: Sequence[int] | None = None,
        t0: float = 0.0,
        t1: float = 1.0,
        solver: diffrax.AbstractSolver = diffrax.Tsit5(),  # noqa: B008 (immutable)
        steps: int = 10,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None,
        max_steps: int | None = None,
        divergence: str = "exact",
        probe: str = "rademacher",
        probe_key: jax.Array | None = None,
    ):
        if not isinstance(vector_field, AbstractVectorField):
            raise TypeError(
                "ContinuousFlow expected a flowrox.nn.AbstractVectorField (e.g. "
                f"MLPVectorField(...)), got {type(vector_field).__name__}."
            )
        shape = tuple(int(n) for n in shape)
        cond_shape = None if cond_shape is None else tuple(int(n) for n in cond_shape)
        field_cond = vector_field.cond_shape
        field_cond = None if field_cond is None else tuple(field_cond)
        if shape != tuple(vector_field.shape) or cond_shape != field_cond:
            raise ValueError(
                f"ContinuousFlow: got shape={shape}, cond_shape={cond_shape}, but the "
                f"vector field has shape={tuple(vector_field.shape)}, cond_shape="
                f"{field_cond}. Pass the field's shapes."
            )
        if not float(t1) > float(t0):
            raise ValueError(
                f"ContinuousFlow: expected t0 < t1, got t0={t0}, t1={t1}. The base "
                "is at t0 and the data at t1; to run the other way, wrap the flow "
                "in Invert(...)."
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"ContinuousFlow: steps must be a positive int; got {steps!r}."
            )
        if divergence not in _DIVERGENCES:
            raise ValueError(
                f"ContinuousFlow: divergence must be one of {_DIVERGENCES}; got "
                f"{divergence!r}."
            )
        if probe not in _PROBES:
            raise ValueError(
                f"ContinuousFlow: probe must be one of {_PROBES}; got {probe!r}."
            )
        if divergence == "hutchinson" and probe_key is None:
            raise ValueError(
                "ContinuousFlow(divergence='hutchinson') draws its probes from a "
                "key and has no default one: pass probe_key=jax.random.key(...). "
                "The probes change whenever the field's parameters do; "
                "flow.with_probes(new_key) draws fresh ones for fixed parameters."
            )
        if divergence != "hutchinson" and probe_key is not None:
            raise ValueError(
                f"ContinuousFlow: probe_key is used only with "
                f"divergence='hutchinson'; got divergence={divergence!r}. Drop "
                "probe_key, or choose the Hutchinson estimate."
            )
        if probe_key is not None and not _is_key(probe_key):
            raise TypeError(
                "ContinuousFlow: probe_key must be a random key "
                f"(jax.random.key(0)); got {probe_key!r}."
            )
        fixed = stepsize_controller is None or isinstance(
            stepsize_controller, diffrax.ConstantStepSize
        )
        if fixed:
            if max_steps is not None:
                raise ValueError(
                    f"ContinuousFlow: fixed steps take exactly steps={steps}, so "
                    f"max_steps={max_steps} has no use; drop it, or pass a "
                    "stepsize_controller (e.g. diffrax.PIDController(rtol=1e-5, "
                    "atol=1e-5)) for adaptive steps."
                )
            stepsize_controller = diffrax.ConstantStepSize()
            max_steps = steps
        else:
            max_steps = ADAPTIVE_MAX_STEPS if max_steps is None else int(max_steps)
        if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise TypeError(
                "ContinuousFlow: adjoint must be a diffrax adjoint (e.g. "
                f"diffrax.BacksolveAdjoint()) or None; got {type(adjoint).__name__}."
            )
        if not isinstance(solver, diffrax.AbstractSolver):
            raise TypeError(
                "ContinuousFlow: solver must be a diffrax solver (e.g. "
                f"diffrax.Tsit5()); got {type(solver).__name__}."
            )
        self.vector_field = vector_field
        self.probe_key = probe_key
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.shape = shape
        self.cond_shape = cond_shape
        self.t0, self.t1 = float(t0), float(t1)
        self.steps = steps
        self.max_steps = max_steps
        self.divergence = divergence
        self.probe = probe

    def with_probes(self, key: jax.Array) -> "ContinuousFlow":
        """The same flow drawing its Hutchinson probes from `key`.

        Args:
            key: a random key.

        Returns:
            A copy of the flow whose `probe_key` is `key`.
        """
        if self.divergence != "hutchinson":
            raise ValueError(
                "ContinuousFlow.with_probes: this flow computes its divergence "
                f"with divergence={self.divergence!r} and draws no probes."
            )
        if not _is_key(key):
            raise TypeError(
                "ContinuousFlow.with_probes expected a random key "
                f"(jax.random.key(0)); got {key!r}."
            )
        return eqx.tree_at(lambda flow: flow.probe_key, self, key)

    def probe_for(self, value: jax.Array) -> jax.Array:
        """The Hutchinson probe used for the event that starts at `value`.

        Drawn from `probe_key` folded with a hash of the bits of `value` and
        of the vector field's parameters (gradients stopped).

        Args:
            value: one event, of shape `shape` (`x` for `transform`, `y` for
                `inverse`).

        Returns:
            The probe, of shape `shape`: Rademacher signs or standard normal.
        """
        if self.divergence != "hutchinson":
            raise ValueError(
                "ContinuousFlow.probe_for: this flow computes its divergence "
                f"with divergence={self.divergence!r} and draws no probes."
            )
        key = jax.random.fold_in(self.probe_key, _bits_hash(value))
        key = jax.random.fold_in(key, _parameters_hash(self.vector_field))
        if self.probe == "rademacher":
            return jax.random.rademacher(key, self.shape, value.dtype)
        return jax.random.normal(key, self.shape, value.dtype)

    @property
    def scans_steps(self) -> bool:
        """Whether the steps run in `jax.lax.scan` rather than `diffeqsolve`.

        True for fixed steps of an explicit Runge-Kutta solver (`Tsit5`,
        `Dopri5`, `Heun`, ...) with no `adjoint` given.
        """
        return (
            self.adjoint is None
            and isinstance(self.stepsize_controller, diffrax.ConstantStepSize)
            and isinstance(self.solver, diffrax.AbstractERK)
        )

    def _solve(self, value, condition, inverse: bool):
        probe = self.probe_for(value) if self.divergence == "hutchinson" else None
        start, end = (self.t1, self.t0) if inverse else (self.t0, self.t1)
        dynamics = _AugmentedDynamics(self.divergence)
        state = (value, jnp.zeros((), value.dtype))
        args = (self.vector_field, condition, probe)
        if self.scans_steps:
            return _fixed_step_solve(
                dynamics, self.solver, start, end, self.steps, state, args
            )
        adjoint = self.adjoint
        if adjoint is None:
            fixed = isinstance(self.stepsize_controller, diffrax.ConstantStepSize)
            checkpoints = self.steps if fixed else None
            adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(dynamics),
            self.solver,
            start,
            end,
            (end - start) / self.steps,
            state,
            args=args,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=self.stepsize_controller,
            adjoint=adjoint,
            max_steps=self.max_steps,
        )
        output, log_det = solution.ys
        return output[0], log_det[0]

    def transform_and_log_det(self, x, condition=None):
        return self._solve(x, condition, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        return self._solve(y, condition, inverse=True)
