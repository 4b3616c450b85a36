r"""MADE: a masked MLP whose outputs are autoregressive in its inputs.

Germain et al. (2015). Input $i$ has degree $d_i$ (its rank in the order, from
1 to $D$); every hidden unit gets a degree in $[1, D - 1]$; a hidden unit sees
the inputs and units of degree at most its own, and the outputs for input $i$
see the hidden units of degree below $d_i$. So the outputs for input $i$ depend
on the inputs earlier in the order only. Context entries have degree 0: every
hidden unit sees them, and with a context some hidden units get degree 0 (they
see the context only), so that even the first output depends on it.
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import renamed_keyword


def _hidden_degrees(width: int, dim: int, conditional: bool) -> np.ndarray:
    # Degree-0 units see only the context; they carry it to the first output.
    if conditional or dim == 1:
        return np.arange(width) % dim
    return np.arange(width) % (dim - 1) + 1


class MADE(eqx.Module):
    r"""A masked MLP: the outputs for input $i$ depend only on inputs before $i$
    in `order` (and on the context).

    Maps `x` of shape `(dim,)` (and a context of `cond_dim` entries) to
    `(dim, out_per_input)`. The masks are fixed boolean arrays (never trained);
    the weights are ordinary `eqx.nn.Linear` leaves, multiplied by the masks at
    every call, so gradients of masked entries are zero.

    Args:
        dim: the number of autoregressive inputs $D$.
        out_per_input: outputs per input (the transformer's parameter count).
        hidden: the width of the hidden layers.
        depth: the number of hidden layers (at least 1).
        key: the key for the weights.
        cond_dim: the number of context entries (0: none).
        cond_size: deprecated name of `cond_dim`.
        order: the autoregressive order, a permutation of `range(dim)` (default:
            the natural order). `order[k]` is the input that comes k-th.
        activation: the hidden activation.
        skip_connections: add a masked linear map from the inputs (and the
            context) straight to the outputs, with the same autoregressive
            mask (NumPyro's `skip_connections`). It starts at zero, so it adds
            nothing until trained; with it an output can be an exact linear
            function of the earlier inputs (a Gaussian's Cholesky factor, a
            funnel's log-scale), which the hidden layers only approximate.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import MADE
        >>> made = MADE(3, 2, hidden=8, depth=1, key=jax.random.key(0))
        >>> jacobian = jax.jacobian(made)(jnp.ones(3))  # (3, 2, 3)
        >>> (jnp.abs(jacobian).sum(1) > 0).astype(int).tolist()
        [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    """

    layers: tuple[eqx.nn.Linear, ...]
    masks: tuple[jax.Array, ...]
    input_degrees: jax.Array
    skip_weight: jax.Array | None
    skip_mask: jax.Array | None
    activation: Callable = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    out_per_input: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        out_per_input: int,
        *,
        hidden: int,
        depth: int,
        key: jax.Array,
        cond_dim: int = 0,
        order: Sequence[int] | None = None,
        activation: Callable = jax.nn.relu,
        skip_connections: bool = False,
        cond_size: int | None = None,
    ):
        cond_dim = renamed_keyword(
            "MADE", "cond_dim", cond_dim, "cond_size", cond_size, default=0
        )
        dim, out_per_input = int(dim), int(out_per_input)
        hidden, depth, cond_dim = int(hidden), int(depth), int(cond_dim)
        if dim < 1 or out_per_input < 1 or hidden < 1 or depth < 1:
            raise ValueError(
                "MADE needs dim, out_per_input, hidden and depth of at least 1; got "
                f"dim={dim}, out_per_input={out_per_input}, hidden={hidden}, "
                f"depth={depth}."
            )
        order = jnp.arange(dim) if order is None else jnp.asarray(order)
        if not isinstance(order, jax.core.Tracer) and sorted(
            np.asarray(order).tolist()
        ) != list(range(dim)):
            raise ValueError(
                f"MADE: order must be a permutation of range({dim}); got "
                f"{np.asarray(order).tolist()}."
            )
        # Built with jnp, so that a traced order (layers stacked with
        # eqx.filter_vmap, each with its own random order) works too.
        input_degrees = (
            jnp.zeros(dim, dtype=jnp.int32)
            .at[order]
            .set(jnp.arange(1, dim + 1, dtype=jnp.int32))
        )
        in_degrees = jnp.concatenate(
            [input_degrees, jnp.zeros(cond_dim, dtype=jnp.int32)]
        )
        hidden_degrees = jnp.asarray(_hidden_degrees(hidden, dim, cond_dim > 0))
        output_degrees = jnp.repeat(input_degrees, out_per_input)

        masks = [hidden_degrees[:, None] >= in_degrees[None, :]]
        masks += [hidden_degrees[:, None] >= hidden_degrees[None, :]] * (depth - 1)
        masks.append(output_degrees[:, None] > hidden_degrees[None, :])
        sizes = [dim + cond_dim] + [hidden] * depth + [dim * out_per_input]
        keys = jax.random.split(key, depth + 1)
        self.layers = tuple(
            eqx.nn.Linear(n_in, n_out, key=k)
            for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.masks = tuple(masks)
        self.input_degrees = input_degrees
        if skip_connections:
            self.skip_mask = output_degrees[:, None] > in_degrees[None, :]
            self.skip_weight = jnp.zeros(self.skip_mask.shape)
        else:
            self.skip_mask = self.skip_weight = None
        self.activation = activation
        self.dim, self.out_per_input, self.cond_dim = dim, out_per_input, cond_dim

    @property
    def order(self) -> jax.Array:
        """The autoregressive order: `order[k]` is the input that comes k-th."""
        return jnp.argsort(self.input_degrees)

    def __call__(self, x, condition=None):
        """`(dim, out_per_input)` outputs for `x` of shape `(dim,)`."""
        h = (
            x
            if condition is None
            else jnp.concatenate([x, jnp.reshape(condition, (-1,)).astype(x.dtype)])
        )
        inputs = h
        for index, (layer, mask) in enumerate(
            zip(self.layers, self.masks, strict=True)
        ):
            h = (layer.weight * mask) @ h
            if layer.bias is not None:
                h = h + layer.bias
            if index < len(self.layers) - 1:
                h = self.activation(h)
        if self.skip_weight is not None:
            h = h + (self.skip_weight * self.skip_mask) @ inputs
        return h.reshape(self.dim, self.out_per_input)
