r"""Masked autoregressive layers (MAF, Papamakarios et al. 2017; IAF, Kingma et al.
2016), with any elementwise transformer.

Element $i$ (in the layer's order) is transformed with parameters that a MADE
network computes from the elements before it. If the parameters are read off
the output $y$ (`one_pass="inverse"`, MAF), the inverse, and so `Flow.log_prob`,
is one network pass, and the forward map (sampling) takes $D$ passes, one per
element. If they are read off the input $x$ (`one_pass="transform"`, IAF),
sampling is one pass and the density takes $D$. Either way the Jacobian is
triangular in the order, and the log-det is the sum of the transformer's
log-derivatives.
"""

from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import check_one_pass
from ..nn import MADE
from ._base import AbstractBijection
from ._conditioned import (
    apply_template,
    check_template,
    split_network,
    template_size,
    zero_last_linear,
)


class MaskedAutoregressive(AbstractBijection):
    r"""An autoregressive layer: a MADE network of the earlier elements (and the
    context) sets an elementwise transformer on each element.

    With `one_pass="inverse"` (the default, MAF),
    $y_i = \tau(x_i;\ \theta_0 + \mathrm{MADE}(y, c)_i)$: the inverse
    $x_i = \tau^{-1}(y_i; \theta_i(y_{<i}, c))$ is one pass, so density
    evaluation is fast, and the forward map is solved element by element in
    $D$ passes. With `one_pass="transform"` (IAF),
    $y_i = \tau(x_i;\ \theta_0 + \mathrm{MADE}(x, c)_i)$: sampling is one pass.
    (`Invert(MaskedAutoregressive(...))` also swaps the fast direction.)

    The transformer is a template bijection of shape `()`, as for `Coupling`;
    its inverse must be closed form (affine, splines, analytic bijections).
    With `zero_init=True` the MADE's last layer starts at zero, so a new layer
    is its template on every element.

    Args:
        transformer: the template bijection, shape `()`.
        shape: the event shape `(dim,)`.
        key: the key for the MADE weights (and the random order).
        hidden: the MADE width.
        depth: the MADE's number of hidden layers.
        cond_shape: the context shape, or None.
        order: the autoregressive order (a permutation of `range(dim)`);
            `"random"` draws one from `key`; default: natural order.
        one_pass: `"inverse"` (MAF: fast density) or `"transform"` (IAF: fast
            sampling); `"forward"` is a deprecated spelling of `"transform"`.
        activation: the MADE activation.
        zero_init: zero the MADE's last layer.
        skip_connections: give the MADE a masked linear path from the inputs
            to the outputs (see `flowrox.nn.MADE`), starting at zero.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine, MaskedAutoregressive
        >>> layer = MaskedAutoregressive(
        ...     Affine(), shape=(3,), key=jax.random.key(0), zero_init=False
        ... )
        >>> y = jnp.array([0.5, -1.0, 2.0])
        >>> x = layer.inverse(y)  # one pass
        >>> bool(jnp.allclose(layer.transform(x), y, atol=1e-5))  # three passes
        True
    """

    transformer: AbstractBijection
    made: MADE
    made_static: MADE = eqx.field(static=True)
    one_pass: str = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        transformer: AbstractBijection,
        *,
        shape: Sequence[int],
        key: jax.Array,
        hidden: int = 64,
        depth: int = 2,
        cond_shape: Sequence[int] | None = None,
        order: Sequence[int] | Literal["random"] | None = None,
        one_pass: Literal["inverse", "transform"] = "inverse",
        activation: Callable = jax.nn.relu,
        zero_init: bool = True,
        skip_connections: bool = False,
    ):
        check_template("MaskedAutoregressive", transformer)
        shape = tuple(int(n) for n in shape)
        if len(shape) != 1:
            raise ValueError(
                f"MaskedAutoregressive expects a vector event shape (dim,); got "
                f"{shape}. Wrap it in Reshape for other shapes."
            )
        one_pass = check_one_pass("MaskedAutoregressive", one_pass)
        order_key, made_key = jax.random.split(key)
        if isinstance(order, str):
            if order != "random":
                raise ValueError(
                    "MaskedAutoregressive: order must be a permutation, 'random' or "
                    f"None; got {order!r}."
                )
            order = jax.random.permutation(order_key, shape[0])
        self.cond_shape = None if cond_shape is None else tuple(map(int, cond_shape))
        cond_dim = 0 if cond_shape is None else int(np.prod(cond_shape, dtype=int))
        made = MADE(
            shape[0],
            template_size(transformer),
            hidden=hidden,
            depth=depth,
            key=made_key,
            cond_dim=cond_dim,
            order=order,
            activation=activation,
            skip_connections=skip_connections,
        )
        if zero_init:
            made = zero_last_linear("MaskedAutoregressive", made)
        self.made, self.made_static = split_network(made)
        self.transformer = transformer
        self.one_pass = one_pass
        self.shape = shape

    @property
    def order(self) -> jax.Array:
        """The autoregressive order: `order[k]` is the element that comes k-th."""
        return jnp.argsort(self.made.input_degrees)

    def _apply(self, source, value, condition, inverse: bool):
        made = eqx.combine(self.made, self.made_static)
        offsets = made(source, condition)
        out, log_derivatives = apply_template(self.transformer, offsets, value, inverse)
        return out, jnp.sum(log_derivatives)

    def _sequential(self, value, condition, inverse: bool):
        # After k passes the first k elements in the order are exact (each pass
        # reads only earlier elements); the last pass also gives the log-det.
        # The later elements are kept at zero rather than at the pass's values
        # for them: those come from unfinished inputs, can overflow, and an inf
        # read through a masked weight (0 * inf) would turn every output NaN.
        degrees = self.made.input_degrees

        def one_pass(k, out):
            new = self._apply(out, value, condition, inverse)[0]
            return jnp.where(degrees <= k + 1, new, 0.0)

        out = jax.lax.fori_loop(0, self.shape[0] - 1, one_pass, jnp.zeros_like(value))
        return self._apply(out, value, condition, inverse)

    def transform_and_log_det(self, x, condition=None):
        if self.one_pass == "transform":
            return self._apply(x, x, condition, inverse=False)
        return self._sequential(x, condition, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        if self.one_pass == "inverse":
            return self._apply(y, y, condition, inverse=True)
        return self._sequential(y, condition, inverse=True)
