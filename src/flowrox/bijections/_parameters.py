"""Helpers shared by parameterised bijections: event shapes and positive parameters."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import as_float_array


def event_shape_of(owner: str, shape, *parameters: jax.Array) -> tuple[int, ...]:
    """The event shape: `shape` if given, else the broadcast of the parameter shapes.

    Raises:
        ValueError: a parameter does not broadcast to `shape`.
    """
    parameter_shapes = [tuple(jnp.shape(p)) for p in parameters]
    if shape is None:
        try:
            return tuple(np.broadcast_shapes(*parameter_shapes))
        except ValueError:
            raise ValueError(
                f"{owner}: parameter shapes {parameter_shapes} do not broadcast "
                "together. Give parameters of compatible shapes, or pass shape=..."
            ) from None
    shape = tuple(int(n) for n in shape)
    for parameter_shape in parameter_shapes:
        try:
            broadcast = tuple(np.broadcast_shapes(parameter_shape, shape))
        except ValueError:
            broadcast = None
        if broadcast != shape:
            raise ValueError(
                f"{owner}: a parameter of shape {parameter_shape} does not broadcast "
                f"to the event shape {shape}. Give parameters that broadcast to "
                "shape, or change shape."
            )
    return shape


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def log_of_positive(owner: str, name: str, value) -> jax.Array:
    """Returns `log(value)` after checking that `value > 0`.

    Concrete values are checked at once (`ValueError`); traced values (a
    `numpyro.param` under `jit`) are checked at run time with `eqx.error_if`.
    """
    value = as_float_array(value)
    message = (
        f"{owner}: {name} must be positive; got a value <= 0. Pass a positive "
        f"{name} (it is stored as log({name}) so training keeps it positive)."
    )
    if _is_concrete(value):
        if not bool(np.all(np.asarray(value) > 0)):
            raise ValueError(message + f" Got {name}={np.asarray(value)}.")
        return jnp.log(value)
    return jnp.log(eqx.error_if(value, value <= 0, message))


def check_domain(value: jax.Array, bad: jax.Array, owner: str, domain: str):
    """Raises at run time (even under `jit`) when any element lies outside `domain`."""
    return eqx.error_if(
        value,
        jnp.any(bad),
        f"{owner} got an input outside its domain {domain}. Only transform values "
        f"from {domain}; for a Flow, give it support=... so NumPyro stays inside.",
    )
