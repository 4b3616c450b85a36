"""What every training loop shares: the trainable filter, the default optimizer,
the compiled step, the finiteness checks (of the inputs, and of every loss,
keeping the last finite parameters), the sticking-the-landing estimator and the
placement of batches on a device mesh."""

import math
from collections.abc import Callable, Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .._tree import trainable_leaves

#: The largest global gradient norm the default optimizer lets through.
CLIP_NORM = 10.0


def trainable_filter(module):
    """A pytree of bools: True for the leaves a training loop updates.

    Trainable leaves are the inexact arrays that are not buffers (fields declared
    with `flowrox.buffer()`, a Flow's base distribution and condition); integer
    arrays (permutations, masks of indices) are never trained. Every loop of
    `flowrox.train` partitions its modules with it.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow
        >>> from flowrox.bijections import Affine
        >>> from flowrox.train import trainable_filter
        >>> base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
        >>> spec = trainable_filter(Flow(base, Affine(jnp.zeros(2))))
        >>> spec.bijection.loc, spec.base_dist.base_dist.loc
        (True, False)
    """
    return trainable_leaves(module)


def default_optimizer(
    learning_rate: float, *, steps: int | None = None
) -> optax.GradientTransformation:
    """The optimizer of every training loop given no `optimizer=`.

    Adam after clipping the global gradient norm at 10 (one bad batch cannot
    throw the parameters far). With `steps`, the learning rate warms up
    linearly from 0 over the first tenth of the steps, then decays to 0 by a
    cosine; `learning_rate` is its peak.

    Args:
        learning_rate: Adam's (peak) learning rate.
        steps: the number of steps of a warm-up and cosine-decay schedule, or
            None for a constant learning rate.

    Returns:
        An optax `GradientTransformation`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.train import default_optimizer
        >>> optimizer = default_optimizer(0.1)
        >>> state = optimizer.init(jnp.zeros(2))
        >>> updates, _ = optimizer.update(jnp.array([1.0, -1.0]), state)
        >>> [round(float(u), 3) for u in updates]  # Adam's first step: the rate
        [-0.1, 0.1]
    """
    if steps is None:
        rate = learning_rate
    else:
        rate = optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, steps // 10, steps
        )
    return optax.chain(optax.clip_by_global_norm(CLIP_NORM), optax.adam(rate))


def compile_step(
    loss: Callable[[Any, Any, Any], jax.Array],
    static: Any,
    optimizer: optax.GradientTransformation,
) -> Callable[[Any, Any, Any], tuple[Any, Any, jax.Array]]:
    """One optimizer step on `loss`, compiled once for the whole loop.

    The trainable parameters and the static part come from
    `eqx.partition(module, trainable_filter(module))`. The arrays of the static
    part (buffers, a base distribution's parameters) enter the compiled step as
    arguments rather than as constants folded into the program; the rest of it
    (functions, shapes) is fixed at compilation. The step is traced once per
    shape and placement of its inputs, so a loop that feeds it batches of one
    shape compiles it once.

    Args:
        loss: `loss(parameters, static, batch)`, a scalar to minimise; `batch`
            is any pytree (a minibatch, a key).
        static: the non-trainable part of the module.
        optimizer: an optax optimizer.

    Returns:
        `step(parameters, state, batch) -> (parameters, state, loss)`, where
        `state` starts as `optimizer.init(parameters)` and `loss` is the value
        before the update.

    Examples:
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from flowrox.train import compile_step
        >>> def loss(parameters, static, target):
        ...     return jnp.sum((parameters - target) ** 2)
        >>> step = compile_step(loss, None, optax.sgd(0.25))
        >>> parameters = jnp.zeros(2)
        >>> state = optax.sgd(0.25).init(parameters)
        >>> parameters, state, value = step(parameters, state, jnp.array([2.0, 4.0]))
        >>> parameters.tolist(), float(value)  # halfway there in one step
        ([1.0, 2.0], 20.0)
    """
    static_arrays, static_rest = eqx.partition(static, eqx.is_array)

    @jax.jit
    def update(parameters, state, static_arrays, batch):
        static = eqx.combine(static_arrays, static_rest)
        value, gradients = jax.value_and_grad(loss)(parameters, static, batch)
        updates, state = optimizer.update(gradients, state, parameters)
        return optax.apply_updates(parameters, updates), state, value

    def step(parameters, state, batch):
        return update(parameters, state, static_arrays, batch)

    return step


def compile_loss(
    loss: Callable[[Any, Any, Any], jax.Array], static: Any
) -> Callable[[Any, Any], jax.Array]:
    """`loss(parameters, static, batch)` compiled as `compile_step` compiles it,
    for scoring without a step (a held-out loss).

    Args:
        loss: as for `compile_step`.
        static: the non-trainable part of the module.

    Returns:
        `evaluate(parameters, batch) -> loss`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.train._core import compile_loss
        >>> evaluate = compile_loss(lambda p, s, b: jnp.sum(p * s * b), jnp.ones(2))
        >>> float(evaluate(jnp.array([1.0, 2.0]), 3.0))
        9.0
    """
    static_arrays, static_rest = eqx.partition(static, eqx.is_array)

    @jax.jit
    def evaluate(parameters, static_arrays, batch):
        return loss(parameters, eqx.combine(static_arrays, static_rest), batch)

    return lambda parameters, batch: evaluate(parameters, static_arrays, batch)


def check_finite_rows(owner: str, argument: str, values: jax.Array) -> None:
    """Raises `ValueError` naming the first row of `values` that holds NaN or inf.

    Args:
        owner: the function's name, which starts the message.
        argument: the argument's name (`"data"`, `"condition"`).
        values: an array of rows, shape `(n, ...)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.train._core import check_finite_rows
        >>> check_finite_rows("fit", "data", jnp.array([[0.0, 1.0], [2.0, jnp.nan]]))
        Traceback (most recent call last):
        ...
        ValueError: fit: data holds nan at row 1, column 1 ...
    """
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    bad_rows = ~finite.reshape(len(array), -1).all(axis=1)
    row = int(np.argmax(bad_rows))
    if array.ndim == 1:
        value, where = array[row], ""
    else:
        element = np.unravel_index(int(np.argmax(~finite[row])), array.shape[1:])
        value = array[row][element]
        if array.ndim == 2:
            where = f", column {int(element[0])}"
        else:
            where = f", element {tuple(int(i) for i in element)}"
    raise ValueError(
        f"{owner}: {argument} holds {value} at row {row}{where} "
        f"(rows holding NaN or inf: {int(bad_rows.sum())} of {len(array)}). Drop or "
        f"impute those rows first, e.g. keep = jnp.isfinite({argument})"
        f".reshape(len({argument}), -1).all(1), and pass {argument}[keep] (and "
        "the matching rows of the other arguments)."
    )


def check_finite(
    loss: float,
    step: int,
    owner: str,
    *,
    inputs: str | None = None,
    remedy: str = "",
    parameters: Any = None,
    losses: list[float] | None = None,
    rebuild: Callable[[Any], Any] | None = None,
) -> None:
    """Raises `FloatingPointError` when a training loss is NaN or infinite.

    The error keeps what the loop had learned: its attributes `parameters`
    (the parameters of the last step whose loss was finite, or the initial
    ones when the first step fails), `flow` (those parameters made into the
    loop's result by `rebuild`, or None), `step` and `losses` (the finite
    losses before it).

    Args:
        loss: the loss of one step (a Python float).
        step: the step's index, counted from 0.
        owner: the loop's name, which starts the message.
        inputs: what to check for infinite values ("the data"), or None.
        remedy: a further remedy, a sentence.
        parameters: the parameters of the last step whose loss was finite,
            kept on the error.
        losses: the finite losses so far, kept on the error.
        rebuild: turns `parameters` into the loop's result (a flow), kept on
            the error as `flow`.

    Examples:
        >>> from flowrox.train._core import check_finite
        >>> check_finite(float("nan"), 3, "my_loop", inputs="the data")
        Traceback (most recent call last):
        ...
        FloatingPointError: my_loop: the loss became nan at step 3. ...
    """
    if math.isfinite(loss):
        return
    check = f", or check {inputs} for infinite values" if inputs else ""
    kept = "error.flow" if rebuild is not None else "error.parameters"
    if step:
        which = f"The parameters of step {step - 1}, the last with a finite loss,"
    else:
        which = "No step had a finite loss; the initial parameters"
    message = (
        f"{owner}: the loss became {loss} at step {step}. Lower the learning rate "
        f"or clip the gradients harder (pass optimizer=){check}. {which} are "
        "kept on the error: catch it (except FloatingPointError as error) and "
        f"read {kept}."
    )
    error = FloatingPointError(f"{message} {remedy}".strip())
    error.step = step
    error.losses = list(losses or [])
    error.parameters = parameters
    error.flow = None if rebuild is None else rebuild(parameters)
    raise error


def run_steps(
    step: Callable,
    parameters: Any,
    state: Any,
    batches: Iterable,
    *,
    owner: str,
    inputs: str | None = None,
    remedy: str = "",
    progress: bool = False,
    total: int | None = None,
    rebuild: Callable[[Any], Any] | None = None,
) -> tuple[Any, Any, list[float]]:
    """Runs a compiled step on each batch, checking every loss.

    Args:
        step: from `compile_step`.
        parameters: the trainable parameters.
        state: the optimizer's state.
        batches: one batch (or key) per step.
        owner: the loop's name (progress bar, errors).
        inputs: what `check_finite` tells to check.
        remedy: `check_finite`'s further remedy.
        progress: show a tqdm progress bar with the current loss.
        total: the number of batches, for the progress bar.
        rebuild: turns parameters into the loop's result; on a loss that is
            not finite, the error holds it as `flow`.

    Returns:
        `(parameters, state, losses)`, one loss per step.

    Raises:
        FloatingPointError: on a loss that is not finite, keeping the
            parameters of the last step whose loss was finite (see
            `check_finite`).
    """
    losses = []
    # A step's loss is that of the parameters going in, so those of the last
    # finite loss are the ones before the step whose loss is not finite.
    kept = parameters
    bar = tqdm(batches, total=total, disable=not progress, desc=owner)
    for index, batch in enumerate(bar):
        updated, state, loss = step(parameters, state, batch)
        loss = float(loss)
        if not math.isfinite(loss):
            bar.close()
        check_finite(
            loss,
            index,
            owner,
            inputs=inputs,
            remedy=remedy,
            parameters=kept,
            losses=losses,
            rebuild=rebuild,
        )
        kept, parameters = parameters, updated
        losses.append(loss)
        if index % 25 == 0 or index + 1 == total:
            bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    return parameters, state, losses


def sticking_the_landing(
    draw: Callable[[Any, Any], Any],
    log_density: Callable[[Any, Any], Any],
    parameters: Any,
    noise: Any,
) -> tuple[Any, Any]:
    r"""A reparameterised draw and its log density with the parameters held fixed.

    The path-derivative (sticking-the-landing) estimator of Roeder, Wu and
    Duvenaud (2017): with $x = g_\phi(\epsilon)$, the gradient of
    $\log q_\phi(x)$ has a path part, through $x$, and a score part
    $\nabla_\phi \log q_\phi$ at fixed $x$, of expectation zero. Evaluating the
    density at $\phi$ under `stop_gradient` keeps the path part only: an
    unbiased estimator whose variance vanishes as $q$ reaches the target.
    `fit_to_density(stick_the_landing=True)` and
    `flowrox.infer.StickingTheLandingELBO` both compute their $\log q$ with it.

    Args:
        draw: `draw(parameters, noise)`, the reparameterised draw $x$.
        log_density: `log_density(parameters, x)`; whatever it returns.
        parameters: the pytree $\phi$ the gradient is taken with respect to.
        noise: what `draw` turns into $x$ (a key, base draws $\epsilon$).

    Returns:
        `(x, log_density(stop_gradient(parameters), x))`.

    Examples:
        For $x = \mu + \epsilon$ and $q = \mathcal N(\mu, 1)$, $\log q(x) =
        \log \mathcal N(\epsilon)$ does not depend on $\mu$ at all, but its
        path part is $-\epsilon$:

        >>> import jax
        >>> import jax.scipy.stats as stats
        >>> from flowrox.train import sticking_the_landing
        >>> def log_q(mu, noise):
        ...     x, log_density = sticking_the_landing(
        ...         lambda mu, noise: mu + noise,
        ...         lambda mu, x: stats.norm.logpdf(x, mu),
        ...         mu,
        ...         noise,
        ...     )
        ...     return log_density
        >>> float(jax.grad(log_q)(0.5, 0.25))
        -0.25
    """
    x = draw(parameters, noise)
    return x, log_density(jax.lax.stop_gradient(parameters), x)


def data_axis(mesh: Mesh, axis: str | None) -> str:
    """The mesh axis that splits the batch: `axis`, or the mesh's first."""
    if axis is None:
        return mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(
            f"the mesh has axes {mesh.axis_names}; got axis={axis!r}. Name one of "
            "them as the data axis."
        )
    return axis


def auto_mesh(mesh: Mesh) -> Mesh:
    """The same devices and axis names, with every axis in automatic mode: XLA
    propagates the batch's sharding through the flow (scans included)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"expected a jax.sharding.Mesh, got {type(mesh).__name__}; build one "
            "with jax.make_mesh((jax.device_count(),), ('data',))."
        )
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    return Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def batch_sharding(
    owner: str, mesh: Mesh | None, axis: str | None, batch_size: int
) -> NamedSharding | None:
    """The placement of a batch split over a mesh axis (None without a mesh),
    after checking that the axis divides the batch."""
    if mesh is None:
        return None
    mesh = auto_mesh(mesh)
    axis = data_axis(mesh, axis)
    if batch_size % mesh.shape[axis]:
        raise ValueError(
            f"{owner}: batch_size {batch_size} is not a multiple of the "
            f"{mesh.shape[axis]} devices of mesh axis {axis!r}. Choose a batch "
            "size that is a multiple of the device count."
        )
    return NamedSharding(mesh, PartitionSpec(axis))


def replicate(tree: Any, sharding: NamedSharding | None) -> Any:
    """Places `tree` whole on every device of the sharding's mesh (no-op for
    None): the parameters of a data-parallel step."""
    if sharding is None:
        return tree
    return jax.device_put(tree, NamedSharding(sharding.mesh, PartitionSpec()))


def shard_batch(
    x: jax.typing.ArrayLike, mesh: Mesh, axis: str | None = None
) -> jax.Array:
    """Places an array with its leading (batch) axis split over a mesh axis.

    Data parallelism with JAX's own machinery: a jitted loss of a sharded batch
    runs on every device of the axis with its share of the rows, and the
    gradients are summed across devices by XLA. Pass sharded data to SVI as a
    model argument (`svi.run(key, steps, shard_batch(data, mesh))`), or give
    `fit_to_data` or `fit_to_density` the mesh.

    Args:
        x: an array whose leading dimension is divisible by the axis size.
        mesh: a `jax.sharding.Mesh`.
        axis: the mesh axis to split over (default: the mesh's first axis).

    Returns:
        The array, placed on the mesh's devices.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.train import shard_batch
        >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
        >>> shard_batch(jnp.zeros((8, 3)), mesh).shape
        (8, 3)
    """
    mesh = auto_mesh(mesh)
    axis = data_axis(mesh, axis)
    x = jnp.asarray(x)
    devices = mesh.shape[axis]
    if x.ndim == 0 or x.shape[0] % devices:
        raise ValueError(
            f"shard_batch: the leading dimension must be divisible by the {devices} "
            f"devices of mesh axis {axis!r}; got shape {x.shape}. Choose a batch "
            "size that is a multiple of the device count."
        )
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(axis)))
