r"""Block neural autoregressive flow (BNAF, De Cao, Aziz and Titov 2019).

One network maps $x \in \mathbb{R}^D$ to $y$: every layer is a block matrix of
$D \times D$ blocks that is block lower triangular, with positive entries in
its diagonal blocks, and the hidden layers use tanh. So $y_i$ depends on
$x_{\le i}$ only, increasingly in $x_i$, and the Jacobian is triangular; its
diagonal is the product, element by element, of the diagonal blocks and the
activation slopes, which we compute in log space (a log-sum-exp matrix
product), so the log-det is exact and never underflows.

A tanh network alone has a bounded range, so it is not a bijection of the real
line. We add a positive skip term, $y = e^{\alpha} \odot x + g(x)$: then
$y_i \to \pm\infty$ with $x_i$, the map is onto, and
$\partial y_i/\partial x_i = e^{\alpha_i} + \partial g_i/\partial x_i > 0$.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._base import AbstractBijection
from ._numerical_inverse import NumericalInverse


def _block_masks(dim: int, out_block: int, in_block: int):
    """Boolean masks of the strictly lower blocks and of the diagonal blocks."""
    block = np.ones((out_block, in_block), dtype=bool)
    lower = np.kron(np.tri(dim, k=-1, dtype=bool), block)
    diagonal = np.kron(np.eye(dim, dtype=bool), block)
    return lower, diagonal


def _log_tanh_slope(pre: jax.Array) -> jax.Array:
    # log(1 - tanh(a)^2) = 2 (log 2 - |a| - softplus(-2|a|)), stable for large |a|.
    magnitude = jnp.abs(pre)
    return 2.0 * (jnp.log(2.0) - magnitude - jax.nn.softplus(-2.0 * magnitude))


class BlockNeuralAutoregressive(AbstractBijection):
    r"""A block neural autoregressive bijection with the exact log-det.

    $y = e^{\alpha} \odot x + W_L \tanh(\cdots \tanh(W_1 [x, c] + b_1) \cdots)
    + b_L$, where every $W_l$ has $D \times D$ blocks (of `hidden` rows and
    columns per element; one at the input and output ends), zero above the
    block diagonal and positive on it ($e^{V}$ entrywise), and is
    weight-normalised row by row (each row has norm $e^{s}$, `s` trainable).
    A context $c$ enters the first layer through dense columns.

    The forward map is one pass. The inverse has no closed form: it is solved
    element by element by root finding (`NumericalInverse(..., triangular=True)`),
    with implicit-function gradients, so samples through the inverse still
    train the weights. In a flow, `Invert(BlockNeuralAutoregressive(...))`
    makes the density one pass (see `flowrox.flows.bnaf_flow`).

    Args:
        dim: the number of elements $D$ (event shape `(dim,)`).
        key: the key for the weights.
        hidden: hidden units per element in each hidden layer (the block size).
        depth: the number of hidden layers.
        cond_shape: the context shape, or None.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import BlockNeuralAutoregressive
        >>> layer = BlockNeuralAutoregressive(3, key=jax.random.key(0))
        >>> x = jnp.array([0.5, -1.0, 2.0])
        >>> y, log_det = layer.transform_and_log_det(x)
        >>> exact = jnp.linalg.slogdet(jax.jacobian(layer.transform)(x))[1]
        >>> bool(jnp.allclose(log_det, exact, atol=1e-5))
        True
        >>> bool(jnp.allclose(layer.inverse(y), x, atol=1e-4))
        True
    """

    weights: tuple[jax.Array, ...]
    log_scales: tuple[jax.Array, ...]
    biases: tuple[jax.Array, ...]
    log_skip: jax.Array
    hidden: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: jax.Array,
        hidden: int = 8,
        depth: int = 1,
        cond_shape: Sequence[int] | None = None,
    ):
        dim, hidden, depth = int(dim), int(hidden), int(depth)
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(
                "BlockNeuralAutoregressive needs dim, hidden and depth of at least "
                f"1; got dim={dim}, hidden={hidden}, depth={depth}."
            )
        self.cond_shape = None if cond_shape is None else tuple(map(int, cond_shape))
        cond_size = 0 if cond_shape is None else int(np.prod(cond_shape, dtype=int))
        blocks = [1] + [hidden] * depth + [1]
        weights, log_scales, biases = [], [], []
        for index, (in_block, out_block, layer_key) in enumerate(
            zip(blocks[:-1], blocks[1:], jax.random.split(key, depth + 1), strict=True)
        ):
            n_in = dim * in_block + (cond_size if index == 0 else 0)
            n_out = dim * out_block
            weight_key, bias_key = jax.random.split(layer_key)
            # Fan-in of a row: the lower blocks and the diagonal block it sees
            # (on average half the row), as in a dense layer of that width.
            bound = 1.0 / np.sqrt(max(1, (dim + 1) // 2 * in_block))
            weights.append(
                jax.random.uniform(
                    weight_key, (n_out, n_in), minval=-bound, maxval=bound
                )
            )
            biases.append(
                jax.random.uniform(bias_key, (n_out,), minval=-bound, maxval=bound)
            )
            log_scales.append(jnp.zeros(n_out))
        self.weights, self.log_scales = tuple(weights), tuple(log_scales)
        self.biases = tuple(biases)
        self.log_skip = jnp.zeros(dim)
        self.hidden = hidden
        self.shape = (dim,)

    def _layer(self, index: int):
        """The layer's effective weight and the log of its diagonal blocks,
        shaped `(dim, out_block, in_block)`."""
        dim = self.shape[0]
        raw, log_scale = self.weights[index], self.log_scales[index]
        out_block, in_block = raw.shape[0] // dim, (1 if index == 0 else self.hidden)
        lower, diagonal = _block_masks(dim, out_block, in_block)
        square = raw[:, : dim * in_block]
        masked = jnp.where(lower, square, 0.0) + jnp.where(
            diagonal, jnp.exp(square), 0.0
        )
        weight = jnp.concatenate([masked, raw[:, dim * in_block :]], axis=1)
        log_norm = 0.5 * jnp.log(jnp.sum(weight**2, axis=1))
        weight = weight * jnp.exp(log_scale - log_norm)[:, None]
        rows = jnp.arange(dim * out_block).reshape(dim, out_block)
        columns = jnp.arange(dim * in_block).reshape(dim, in_block)
        log_diagonal = (
            square[rows[:, :, None], columns[:, None, :]]
            + (log_scale - log_norm)[rows][:, :, None]
        )
        return weight, log_diagonal

    def transform_and_log_det(
        self, x: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[jax.Array, jax.Array]:
        x = jnp.asarray(x)
        dim = self.shape[0]
        h = x
        if condition is not None:
            h = jnp.concatenate([x, jnp.reshape(condition, (-1,)).astype(x.dtype)])
        log_jacobian = None  # (dim, units per element, 1), in log space
        n_layers = len(self.weights)
        for index in range(n_layers):
            weight, log_diagonal = self._layer(index)
            h = weight @ h + self.biases[index]
            if log_jacobian is None:
                log_jacobian = log_diagonal
            else:
                log_jacobian = jax.nn.logsumexp(
                    log_diagonal[:, :, :, None] + log_jacobian[:, None, :, :], axis=2
                )
            if index < n_layers - 1:
                log_slope = _log_tanh_slope(h).reshape(dim, -1)
                log_jacobian = log_jacobian + log_slope[:, :, None]
                h = jnp.tanh(h)
        y = jnp.exp(self.log_skip) * x + h
        log_derivative = jnp.logaddexp(self.log_skip, log_jacobian.reshape(dim))
        return y, jnp.sum(log_derivative)

    def inverse_and_log_det(
        self, y: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[jax.Array, jax.Array]:
        return NumericalInverse(self, triangular=True).inverse_and_log_det(y, condition)
