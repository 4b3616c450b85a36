"""Training loops: maximum likelihood and reverse KL."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from ._tree import trainable_leaves
from .distributions import Flow

__all__ = ["fit_to_data", "fit_to_density", "shard_batch", "trainable_filter"]


def trainable_filter(module):
    """A pytree of bools: True for the leaves a training loop updates.

    Trainable leaves are the inexact arrays that are not buffers (fields declared
    with `flowrox.buffer()`, a Flow's base distribution and condition); integer
    arrays (permutations, masks of indices) are never trained.

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


def _data_axis(mesh: Mesh, axis: str | None) -> str:
    if axis is None:
        return mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(
            f"the mesh has axes {mesh.axis_names}; got axis={axis!r}. Name one of "
            "them as the data axis."
        )
    return axis


def _auto_mesh(mesh: Mesh) -> Mesh:
    """The same devices and axis names, with every axis in automatic mode: XLA
    propagates the batch's sharding through the flow (scans included)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"expected a jax.sharding.Mesh, got {type(mesh).__name__}; build one "
            "with jax.make_mesh((jax.device_count(),), ('data',))."
        )
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    return Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def shard_batch(
    x: jax.typing.ArrayLike, mesh: Mesh, axis: str | None = None
) -> jax.Array:
    """Places an array with its leading (batch) axis split over a mesh axis.

    Data parallelism with JAX's own machinery: a jitted loss of a sharded batch
    runs on every device of the axis with its share of the rows, and the
    gradients are summed across devices by XLA. Pass sharded data to SVI as a
    model argument (`svi.run(key, steps, shard_batch(data, mesh))`), or give
    `fit_to_data` the mesh.

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
    mesh = _auto_mesh(mesh)
    axis = _data_axis(mesh, axis)
    x = jnp.asarray(x)
    devices = mesh.shape[axis]
    if x.ndim == 0 or x.shape[0] % devices:
        raise ValueError(
            f"shard_batch: the leading dimension must be divisible by the {devices} "
            f"devices of mesh axis {axis!r}; got shape {x.shape}. Choose a batch "
            "size that is a multiple of the device count."
        )
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(axis)))


def _default_optimizer(learning_rate: float):
    return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(learning_rate))


def _check_finite(loss: float, step: int, where: str) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"{where}: the loss became {loss} at step {step}. Lower the learning "
            "rate, clip gradients harder, or check the data / log density for "
            "infinite values; the parameters of the last finite step are lost."
        )


def _log_prob(flow: Flow, x, condition):
    if condition is None:
        return flow.log_prob(x)
    return Flow(flow.base_dist, flow.bijection, condition=condition).log_prob(x)


def fit_to_data(
    key: jax.Array,
    flow: Flow,
    data: jax.typing.ArrayLike,
    *,
    condition: jax.typing.ArrayLike | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    steps: int | None = None,
    max_epochs: int = 100,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    patience: int | None = 10,
    progress: bool = True,
    mesh: Mesh | None = None,
    data_axis: str | None = None,
) -> tuple[Flow, dict[str, list[float]]]:
    """Fits a flow to samples by maximum likelihood, with minibatches.

    The data (and the conditions, row by row) are split into a training and a
    held-out part; every epoch shuffles the training part and takes one optimizer
    step per minibatch, then scores the held-out part. The parameters with the
    best held-out loss are returned; training stops early when the held-out loss
    has not improved for `patience` epochs. One step is compiled once and reused.
    Only trainable leaves change (see `trainable_filter`).

    Args:
        key: the random key (split, shuffling).
        flow: the flow; for a conditional flow, built with any one condition.
        data: samples, shape `(n, *event_shape)`.
        condition: conditions per sample, shape `(n, *cond_shape)`.
        optimizer: an optax optimizer (default: Adam with gradient clipping).
        learning_rate: the default optimizer's learning rate.
        steps: stop after this many optimizer steps (overrides `max_epochs`).
        max_epochs: the most epochs to run.
        batch_size: samples per step.
        val_fraction: the held-out fraction (0 < val_fraction < 1).
        patience: epochs without held-out improvement before stopping (None:
            never stop early).
        progress: show a tqdm progress bar with the current losses.
        mesh: a `jax.sharding.Mesh`: every minibatch is split over the devices
            of `data_axis` (data parallel) and the parameters are replicated;
            the result equals the one-device result up to rounding. The batch
            size must be a multiple of the axis size.
        data_axis: the mesh axis for the batch (default: the first).

    Returns:
        `(trained_flow, losses)`, `losses["train"]` and `losses["val"]` holding
        one mean loss per epoch.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow
        >>> from flowrox.bijections import Affine
        >>> from flowrox.train import fit_to_data
        >>> data = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (2000, 1))
        >>> flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1)))
        >>> flow, losses = fit_to_data(
        ...     jax.random.key(1), flow, data, learning_rate=0.05, progress=False
        ... )
        >>> loc, scale = flow.bijection.loc[0], flow.bijection.scale[0]
        >>> bool(abs(loc - 3.0) < 0.3 and abs(scale - 2.0) < 0.2)
        True
    """
    data = jnp.asarray(data)
    if flow.batch_shape != ():
        raise ValueError(
            "fit_to_data expects a flow with batch shape (); got "
            f"{flow.batch_shape}. Build it with one condition (or none) and pass "
            "the per-sample conditions as condition=."
        )
    n = data.shape[0]
    if data.shape[1:] != flow.event_shape:
        raise ValueError(
            f"fit_to_data expected data of shape (n, *{flow.event_shape}), got "
            f"{data.shape}."
        )
    if condition is not None:
        condition = jnp.asarray(condition)
        if condition.shape[0] != n:
            raise ValueError(
                f"fit_to_data: {n} samples but {condition.shape[0]} conditions; give "
                "one condition per sample."
            )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"fit_to_data: val_fraction must be in (0, 1); got {val_fraction}."
        )
    n_val = max(1, round(n * val_fraction))
    n_train = n - n_val
    if n_train < 1:
        raise ValueError(f"fit_to_data: {n} samples leave none for training.")
    batch_size = min(batch_size, n_train)
    batches_per_epoch = max(1, n_train // batch_size)
    if steps is not None:
        max_epochs = math.ceil(steps / batches_per_epoch)
    shard = None
    if mesh is not None:
        mesh = _auto_mesh(mesh)
        data_axis = _data_axis(mesh, data_axis)
        if batch_size % mesh.shape[data_axis]:
            raise ValueError(
                f"fit_to_data: batch_size {batch_size} is not a multiple of the "
                f"{mesh.shape[data_axis]} devices of mesh axis {data_axis!r}."
            )
        shard = NamedSharding(mesh, PartitionSpec(data_axis))

    split_key, key = jax.random.split(key)
    order = jax.random.permutation(split_key, n)
    train_x, val_x = data[order[n_val:]], data[order[:n_val]]
    train_c = val_c = None
    if condition is not None:
        train_c, val_c = condition[order[n_val:]], condition[order[:n_val]]

    optimizer = _default_optimizer(learning_rate) if optimizer is None else optimizer
    parameters, static = eqx.partition(flow, trainable_filter(flow))
    if mesh is not None:
        parameters = jax.device_put(parameters, NamedSharding(mesh, PartitionSpec()))
    state = optimizer.init(parameters)

    def loss_fn(parameters, x, c):
        return -jnp.mean(_log_prob(eqx.combine(parameters, static), x, c))

    def gather(indices):
        # One device: the batch is gathered inside the compiled step. A mesh:
        # the batch is placed split over the devices, and the compiled step
        # follows its sharding (XLA sums the gradients across devices).
        c = None if train_c is None else train_c[indices]
        x = train_x[indices]
        if shard is not None:
            x = jax.device_put(x, shard)
            c = None if c is None else jax.device_put(c, shard)
        return x, c

    def update(parameters, state, x, c):
        loss, gradients = jax.value_and_grad(loss_fn)(parameters, x, c)
        updates, state = optimizer.update(gradients, state, parameters)
        return optax.apply_updates(parameters, updates), state, loss

    if shard is None:
        train_step = jax.jit(lambda p, s, indices: update(p, s, *gather(indices)))
    else:
        jitted_update = jax.jit(update)

        def train_step(parameters, state, indices):
            return jitted_update(parameters, state, *gather(indices))

    val_loss_fn = jax.jit(lambda parameters: loss_fn(parameters, val_x, val_c))

    losses = {"train": [], "val": []}
    best_parameters, best_val = parameters, float(val_loss_fn(parameters))
    epochs_without_improvement = 0
    step = 0
    bar = tqdm(range(max_epochs), disable=not progress, desc="fit_to_data")
    for _ in bar:
        key, shuffle_key = jax.random.split(key)
        permutation = jax.random.permutation(shuffle_key, n_train)
        epoch_losses = []
        for batch in range(batches_per_epoch):
            if steps is not None and step >= steps:
                break
            indices = permutation[batch * batch_size : (batch + 1) * batch_size]
            parameters, state, loss = train_step(parameters, state, indices)
            loss = float(loss)
            _check_finite(loss, step, "fit_to_data")
            epoch_losses.append(loss)
            step += 1
        val_loss = float(val_loss_fn(parameters))
        _check_finite(val_loss, step, "fit_to_data (held-out loss)")
        losses["train"].append(float(np.mean(epoch_losses)))
        losses["val"].append(val_loss)
        bar.set_postfix(train=f"{losses['train'][-1]:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best_val:
            best_val, best_parameters = val_loss, parameters
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        if patience is not None and epochs_without_improvement >= patience:
            break
        if steps is not None and step >= steps:
            break
    bar.close()
    return eqx.combine(best_parameters, static), losses


def fit_to_density(
    key: jax.Array,
    flow: Flow,
    log_density: Callable[[jax.Array], jax.Array],
    *,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    steps: int = 1000,
    batch_size: int = 256,
    stick_the_landing: bool = False,
    progress: bool = True,
) -> tuple[Flow, list[float]]:
    r"""Fits a flow to an unnormalised log density by minimising the reverse KL.

    Each step draws `batch_size` reparameterised samples $x \sim q$ and descends
    $\mathbb{E}_q[\log q(x) - \log \tilde p(x)]$, which equals
    $\mathrm{KL}(q\,\|\,p) - \log Z$. With `stick_the_landing=True` the score
    term is dropped ($\log q$ is evaluated with stopped parameters; Roeder et
    al. 2017), which lowers the gradient variance near the optimum. One step is
    compiled once and reused; only trainable leaves change.

    Args:
        key: the random key.
        flow: the flow $q$ (unconditional, batch shape ()).
        log_density: $\log \tilde p$ of one event of the flow's event shape,
            returning a scalar (it is vmapped over the batch).
        optimizer: an optax optimizer (default: Adam with gradient clipping).
        learning_rate: the default optimizer's learning rate.
        steps: optimizer steps.
        batch_size: samples per step.
        stick_the_landing: use the sticking-the-landing gradient.
        progress: show a tqdm progress bar with the current loss.

    Returns:
        `(trained_flow, losses)`: one loss per step.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow
        >>> from flowrox.bijections import Affine
        >>> from flowrox.train import fit_to_density
        >>> target = dist.Normal(1.0, 0.5)
        >>> flow = Flow(dist.Normal(0.0, 1.0), Affine(0.0, 1.0))
        >>> flow, losses = fit_to_density(jax.random.key(0), flow, target.log_prob,
        ...                               learning_rate=0.05, steps=300, progress=False)
        >>> round(float(flow.bijection.loc), 1), round(float(flow.bijection.scale), 1)
        (1.0, 0.5)
    """
    if flow.batch_shape != ():
        raise ValueError(
            "fit_to_density expects a flow with batch shape (); got "
            f"{flow.batch_shape}."
        )
    optimizer = _default_optimizer(learning_rate) if optimizer is None else optimizer
    parameters, static = eqx.partition(flow, trainable_filter(flow))
    state = optimizer.init(parameters)
    batched_log_density = jax.vmap(log_density)

    def loss_fn(parameters, key):
        current = eqx.combine(parameters, static)
        if stick_the_landing:
            x = current.sample(key, (batch_size,))
            frozen = eqx.combine(jax.lax.stop_gradient(parameters), static)
            log_q = frozen.log_prob(x)
        else:
            x, log_q = current.sample_and_log_prob(key, (batch_size,))
        return jnp.mean(log_q - batched_log_density(x))

    @jax.jit
    def train_step(parameters, state, key):
        loss, gradients = jax.value_and_grad(loss_fn)(parameters, key)
        updates, state = optimizer.update(gradients, state, parameters)
        return optax.apply_updates(parameters, updates), state, loss

    losses = []
    bar = tqdm(range(steps), disable=not progress, desc="fit_to_density")
    for step in bar:
        key, step_key = jax.random.split(key)
        parameters, state, loss = train_step(parameters, state, step_key)
        loss = float(loss)
        _check_finite(loss, step, "fit_to_density")
        losses.append(loss)
        if step % 25 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    return eqx.combine(parameters, static), losses
