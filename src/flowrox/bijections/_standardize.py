"""`Standardized`: a bijection that works in standardised coordinates."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from .._numerics import as_float_array
from .._tree import buffer
from ._base import AbstractBijection


def _broadcast(owner: str, name: str, value, shape: tuple[int, ...]) -> jax.Array:
    value = as_float_array(value)
    try:
        return jnp.broadcast_to(value, shape)
    except ValueError:
        raise ValueError(
            f"{owner}: {name} of shape {value.shape} does not broadcast to the "
            f"shape {shape}. Give one value per element, or a scalar."
        ) from None


class Standardized(AbstractBijection):
    r"""`bijection` applied to standardised values, with fixed shifts and scales.

    With $f$ the wrapped bijection, data location $\mu$ and scale $\sigma$ (per
    element) and, for a conditional $f$, context location $\mu_c$ and scale
    $\sigma_c$:

    $$y = \mu + \sigma \odot f\big(x, (c - \mu_c) / \sigma_c\big), \qquad
    \log|\det \partial y / \partial x| = \log|\det \partial f/\partial x| +
    \textstyle\sum_i \log \sigma_i.$$

    So a flow whose base feeds $f$ sees data and contexts of unit scale, and
    the flow's density is that of the data in their own units. The shifts
    and scales are buffers (`flowrox.buffer()`): training loops,
    `param_module` and `bayesian` leave them fixed. `flowrox.train.fit_to_data`
    wraps a flow's bijection in one, fitted to the training data, unless given
    `standardize=False`.

    Args:
        bijection: the bijection between the base and the standardised data.
        loc: the data location $\mu$, broadcast to `bijection.shape`.
        scale: the positive data scale $\sigma$, broadcast to `bijection.shape`.
        cond_loc: the context location $\mu_c$, broadcast to
            `bijection.cond_shape` (default 0; only for a conditional bijection).
        cond_scale: the positive context scale $\sigma_c$ (default 1).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Identity, Standardized
        >>> bijection = Standardized(Identity((2,)), jnp.array([100.0, 0.0]), 10.0)
        >>> y, log_det = bijection.transform_and_log_det(jnp.array([1.0, -1.0]))
        >>> y.tolist(), round(float(log_det), 4)  # 2 log 10
        ([110.0, -10.0], 4.6052)
    """

    bijection: AbstractBijection
    loc: jax.Array = buffer()
    scale: jax.Array = buffer()
    cond_loc: jax.Array | None = buffer()
    cond_scale: jax.Array | None = buffer()
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        bijection: AbstractBijection,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        cond_loc: ArrayLike | None = None,
        cond_scale: ArrayLike | None = None,
    ):
        owner = "Standardized"
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(
                f"{owner} expected a flowrox bijection, got {type(bijection).__name__}."
            )
        self.bijection = bijection
        self.shape = tuple(bijection.shape)
        self.cond_shape = bijection.cond_shape
        self.loc = _broadcast(owner, "loc", loc, self.shape)
        self.scale = _broadcast(owner, "scale", scale, self.shape)
        if self.cond_shape is None:
            if cond_loc is not None or cond_scale is not None:
                raise ValueError(
                    f"{owner}: the bijection is unconditional (cond_shape=None) but "
                    "cond_loc or cond_scale was given. Leave them out, or wrap a "
                    "conditional bijection."
                )
            self.cond_loc = self.cond_scale = None
        else:
            cond_shape = tuple(self.cond_shape)
            self.cond_loc = _broadcast(
                owner, "cond_loc", 0.0 if cond_loc is None else cond_loc, cond_shape
            )
            self.cond_scale = _broadcast(
                owner,
                "cond_scale",
                1.0 if cond_scale is None else cond_scale,
                cond_shape,
            )

    def __check_init__(self):
        scales = [self.scale, self.cond_scale]
        for scale in scales:
            if scale is None or isinstance(scale, jax.core.Tracer):
                continue
            if not bool(jnp.all(scale > 0)) or not bool(jnp.all(jnp.isfinite(scale))):
                raise ValueError(
                    "Standardized: scales must be positive and finite; got "
                    f"{scale}. A constant column has scale 0: drop it, or give a "
                    "scale of 1 for it."
                )

    @property
    def known_images(self) -> tuple:
        # A shift and a positive scale keep the reals the reals; other sets
        # move with `loc`, which is data, so they are left unknown.
        return tuple(
            (domain, image)
            for domain, image in self.bijection.known_images
            if image == constraints.real and constraints.real == image
        )

    def _condition(self, condition):
        if condition is None:
            return None
        return (condition - self.cond_loc) / self.cond_scale

    def transform_and_log_det(self, x, condition=None):
        z, log_det = self.bijection.transform_and_log_det(x, self._condition(condition))
        y = self.loc + self.scale * z
        return y, log_det + jnp.sum(jnp.log(self.scale)).astype(log_det.dtype)

    def inverse_and_log_det(self, y, condition=None):
        z = (y - self.loc) / self.scale
        x, log_det = self.bijection.inverse_and_log_det(z, self._condition(condition))
        return x, log_det - jnp.sum(jnp.log(self.scale)).astype(log_det.dtype)
