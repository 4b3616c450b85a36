"""`fit_to_data`: maximum likelihood on samples, with minibatches and early stopping."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ..distributions import Flow
from ._core import (
    batch_sharding,
    check_finite,
    compile_loss,
    compile_step,
    default_optimizer,
    replicate,
    trainable_filter,
)

_INPUTS = "the data"


def _log_prob(flow: Flow, x, condition):
    if condition is None:
        return flow.log_prob(x)
    return Flow(flow.base_dist, flow.bijection, condition=condition).log_prob(x)


def _negative_log_likelihood(parameters, static, batch):
    x, condition = batch
    return -jnp.mean(_log_prob(eqx.combine(parameters, static), x, condition))


def _gathered_negative_log_likelihood(parameters, static, batch):
    # One device: the minibatch is gathered inside the compiled step.
    x, condition, indices = batch
    condition = None if condition is None else condition[indices]
    return _negative_log_likelihood(parameters, static, (x[indices], condition))


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
        optimizer: an optax optimizer (default: `default_optimizer`, Adam with
            gradient clipping at a constant `learning_rate`).
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
    shard = batch_sharding("fit_to_data", mesh, data_axis, batch_size)

    split_key, key = jax.random.split(key)
    order = jax.random.permutation(split_key, n)
    train_x, val_x = data[order[n_val:]], data[order[:n_val]]
    train_c = val_c = None
    if condition is not None:
        train_c, val_c = condition[order[n_val:]], condition[order[:n_val]]

    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    parameters, static = eqx.partition(flow, trainable_filter(flow))
    parameters = replicate(parameters, shard)
    state = optimizer.init(parameters)

    if shard is None:
        gathered_step = compile_step(
            _gathered_negative_log_likelihood, static, optimizer
        )

        def train_step(parameters, state, indices):
            return gathered_step(parameters, state, (train_x, train_c, indices))

    else:
        sharded_step = compile_step(_negative_log_likelihood, static, optimizer)

        def train_step(parameters, state, indices):
            # The minibatch is placed split over the devices, and the compiled
            # step follows its sharding (XLA sums the gradients across devices).
            batch = (train_x[indices], None if train_c is None else train_c[indices])
            return sharded_step(parameters, state, jax.device_put(batch, shard))

    val_loss_fn = compile_loss(_negative_log_likelihood, static)

    def val_loss(parameters):
        return float(val_loss_fn(parameters, (val_x, val_c)))

    losses = {"train": [], "val": []}
    best_parameters, best_val = parameters, val_loss(parameters)
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
            check_finite(loss, step, "fit_to_data", inputs=_INPUTS)
            epoch_losses.append(loss)
            step += 1
        held_out = val_loss(parameters)
        check_finite(held_out, step, "fit_to_data (held-out loss)", inputs=_INPUTS)
        losses["train"].append(float(np.mean(epoch_losses)))
        losses["val"].append(held_out)
        bar.set_postfix(train=f"{losses['train'][-1]:.4f}", val=f"{held_out:.4f}")
        if held_out < best_val:
            best_val, best_parameters = held_out, parameters
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        if patience is not None and epochs_without_improvement >= patience:
            break
        if steps is not None and step >= steps:
            break
    bar.close()
    return eqx.combine(best_parameters, static), losses
