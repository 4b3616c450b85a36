"""`BijectionTransform`: any flowrox bijection as a NumPyro `Transform`."""

import jax.numpy as jnp
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from ..bijections import AbstractBijection
from ._batching import leading_shape, map_bijection


class BijectionTransform(Transform):
    """Adapts a flowrox bijection to NumPyro's `Transform` interface.

    The domain and codomain are, by default, the real arrays of the bijection's
    event shape (`constraints.independent(constraints.real, len(shape))`), so
    the transform composes with `TransformedDistribution`, `ComposeTransform`,
    NumPyro's reparameterisers and autoguides. Inputs may carry batch dims in
    front of the event. `call_with_intermediates` returns the log-det computed
    in the forward pass, so NumPyro reuses it instead of recomputing it; and the
    transform remembers its last forward call (as Pyro's `cache_size=1`), so
    `log_abs_det_jacobian(x, y)` right after `y = transform(x)` (what
    `NeuTraReparam` and `ComposeTransform` do) costs no second pass.

    Prefer `flowrox.Flow` for a flow distribution: its `log_prob` needs one pass,
    while `TransformedDistribution.log_prob` inverts and then recomputes the
    forward log-det.

    Args:
        bijection: the flowrox bijection.
        condition: the condition of a conditional bijection (one, or a batch).
        domain: the constraint on inputs (default: real arrays of the event shape).
        codomain: the constraint on outputs (default: as the domain).

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox import BijectionTransform
        >>> from flowrox.bijections import Affine
        >>> transform = BijectionTransform(Affine(jnp.zeros(2), 2.0))
        >>> base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
        >>> flow = dist.TransformedDistribution(base, transform)
        >>> reference = dist.Normal(jnp.zeros(2), 2.0).to_event(1)
        >>> y = jnp.ones(2)
        >>> bool(jnp.allclose(flow.log_prob(y), reference.log_prob(y)))
        True
    """

    _last_call = None  # (x, y, log_det) of the last forward call; not a leaf

    def __init__(
        self,
        bijection: AbstractBijection,
        condition: ArrayLike | None = None,
        *,
        domain: constraints.Constraint | None = None,
        codomain: constraints.Constraint | None = None,
    ):
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(
                "BijectionTransform expected a flowrox bijection, got "
                f"{type(bijection).__name__}."
            )
        if (condition is None) != (bijection.cond_shape is None):
            expected = (
                "no condition"
                if bijection.cond_shape is None
                else f"a condition of shape {tuple(bijection.cond_shape)}"
            )
            remedy = (
                "Pass condition=None."
                if bijection.cond_shape is None
                else "Pass BijectionTransform(bijection, condition=c)."
            )
            raise ValueError(
                f"BijectionTransform: the bijection expects {expected}; got "
                f"{'None' if condition is None else jnp.shape(condition)}. {remedy}"
            )
        if condition is not None:
            condition = jnp.asarray(condition)
            leading_shape(
                "BijectionTransform",
                condition,
                tuple(bijection.cond_shape),
                "a condition",
            )
        real = constraints.independent(constraints.real, len(bijection.shape))
        self.bijection = bijection
        self.condition = condition
        self._domain = real if domain is None else domain
        self._codomain = self._domain if codomain is None else codomain

    @property
    def domain(self) -> constraints.Constraint:
        return self._domain

    @property
    def codomain(self) -> constraints.Constraint:
        return self._codomain

    def _map(self, method: str, value):
        return map_bijection(
            method, self.bijection, value, self.condition, owner="BijectionTransform"
        )

    def _forward(self, x):
        # The identity check is exact: the same array (or tracer) object gives
        # the same output, since the transform itself never changes. A tracer
        # left here by an earlier trace is never identical to a new input.
        last = self._last_call
        if last is not None and last[0] is x:
            return last[1], last[2]
        y, log_det = self._map("transform_and_log_det", x)
        self._last_call = (x, y, log_det)
        return y, log_det

    def __call__(self, x):
        return self._forward(x)[0]

    def _inverse(self, y):
        return self._map("inverse_and_log_det", y)[0]

    def call_with_intermediates(self, x):
        return self._forward(x)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        del y
        if intermediates is not None:
            return intermediates
        return self._forward(x)[1]

    def _condition_batch(self) -> tuple[int, ...]:
        if self.condition is None:
            return ()
        n_cond = len(self.bijection.cond_shape)
        return tuple(self.condition.shape[: self.condition.ndim - n_cond])

    def forward_shape(self, shape):
        n_event = len(self.bijection.shape)
        batch = jnp.broadcast_shapes(
            tuple(shape[: len(shape) - n_event]), self._condition_batch()
        )
        return (*batch, *self.bijection.shape)

    def inverse_shape(self, shape):
        return self.forward_shape(shape)

    def tree_flatten(self):
        return (self.bijection, self.condition, self._domain, self._codomain), (
            ("bijection", "condition", "_domain", "_codomain"),
            {},
        )
