"""Applying a one-event bijection to batches of events and conditions."""

import jax
import jax.numpy as jnp
import numpy as np

from ..bijections import AbstractBijection


def leading_shape(
    owner: str, value: jax.Array, event_shape: tuple[int, ...], what: str
) -> tuple[int, ...]:
    """The batch dims of `value`, after checking that it ends with `event_shape`."""
    n_event = len(event_shape)
    if value.ndim < n_event or tuple(value.shape[value.ndim - n_event :]) != tuple(
        event_shape
    ):
        raise ValueError(
            f"{owner} expected {what} whose trailing dims are {tuple(event_shape)}, "
            f"got shape {tuple(value.shape)}."
        )
    return tuple(value.shape[: value.ndim - n_event])


def map_bijection(
    method: str,
    bijection: AbstractBijection,
    value: jax.Array,
    condition: jax.Array | None,
    *,
    owner: str,
) -> tuple[jax.Array, jax.Array]:
    """Calls `bijection.<method>` on every event of a batch, in one `jax.vmap`.

    Args:
        method: `"transform_and_log_det"` or `"inverse_and_log_det"`.
        bijection: the bijection, acting on one event.
        value: an array of shape `(*batch, *bijection.shape)`.
        condition: `None`, one condition of shape `cond_shape`, or a batch of
            conditions of shape `(*cond_batch, *cond_shape)`; its batch dims
            broadcast against the value's.
        owner: the name used in error messages.

    Returns:
        `(output, log_det)` of shapes `(*batch, *shape)` and `batch`, where
        `batch` is the broadcast of the value's and the condition's batch dims.
    """
    event_shape = tuple(bijection.shape)
    value = jnp.asarray(value)
    batch = leading_shape(owner, value, event_shape, "a value")
    apply = getattr(bijection, method)
    shared_condition = condition is None or condition.ndim == len(bijection.cond_shape)
    if shared_condition:
        flat = value.reshape((-1, *event_shape))
        output, log_det = jax.vmap(lambda v: apply(v, condition))(flat)
    else:
        cond_shape = tuple(bijection.cond_shape)
        cond_batch = leading_shape(owner, condition, cond_shape, "a condition")
        batch = tuple(np.broadcast_shapes(batch, cond_batch))
        flat = jnp.broadcast_to(value, (*batch, *event_shape)).reshape(
            (-1, *event_shape)
        )
        flat_condition = jnp.broadcast_to(condition, (*batch, *cond_shape)).reshape(
            (-1, *cond_shape)
        )
        output, log_det = jax.vmap(apply)(flat, flat_condition)
    return output.reshape((*batch, *event_shape)), log_det.reshape(batch)
