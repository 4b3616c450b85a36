"""An elementwise affine map whose log-scale is softly bounded."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._numerics import as_float_array
from ._elementwise import AbstractElementwise
from ._parameters import event_shape_of


class BoundedAffine(AbstractElementwise):
    r"""$y = \mathrm{loc} + e^{s} x$ with $s = b \tanh(r / b)$, elementwise.

    The raw log-scale $r$ is stored as `raw_log_scale`; the log-scale $s$ is
    $r$ near zero and never leaves $[-b, b]$, with $b$ = `max_log_scale`. As
    the transformer of a coupling or autoregressive layer, whose conditioner
    outputs $r$, this keeps one layer from scaling by more than $e^{b}$: an
    unbounded log-scale lets a point in the tails grow through a stack of
    layers until it overflows (NumPyro's IAF clips its log-scale for the same
    reason; the tanh bound keeps the gradient). The default parameters (zeros)
    are the identity.

    Args:
        loc: the shift.
        raw_log_scale: the unconstrained log-scale $r$.
        max_log_scale: the bound $b > 0$ (default 3: a factor of at most
            about 20 per layer either way).
        shape: the event shape (default: the broadcast shape of loc and
            raw_log_scale).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import BoundedAffine
        >>> layer = BoundedAffine(0.0, 100.0)  # a raw log-scale far past the bound
        >>> round(float(layer.log_scale), 4)
        3.0
        >>> round(float(layer.transform(jnp.array(1.0))), 2)  # e^3
        20.09
    """

    loc: jax.Array
    raw_log_scale: jax.Array
    max_log_scale: float = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        raw_log_scale: ArrayLike = 0.0,
        *,
        max_log_scale: float = 3.0,
        shape: Sequence[int] | None = None,
    ):
        if not float(max_log_scale) > 0:
            raise ValueError(
                f"BoundedAffine: max_log_scale must be positive; got {max_log_scale!r}."
            )
        loc, raw = as_float_array(loc), as_float_array(raw_log_scale)
        self.shape = event_shape_of("BoundedAffine", shape, loc, raw)
        self.loc = jnp.broadcast_to(loc, self.shape)
        self.raw_log_scale = jnp.broadcast_to(raw, self.shape)
        self.max_log_scale = float(max_log_scale)

    @property
    def log_scale(self) -> jax.Array:
        bound = self.max_log_scale
        return bound * jnp.tanh(self.raw_log_scale / bound)

    def forward_elementwise(self, x):
        log_scale = self.log_scale
        return self.loc + jnp.exp(log_scale) * x, jnp.broadcast_to(log_scale, x.shape)

    def inverse_elementwise(self, y):
        log_scale = self.log_scale
        x = (y - self.loc) * jnp.exp(-log_scale)
        return x, jnp.broadcast_to(-log_scale, y.shape)
