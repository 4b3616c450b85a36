"""`PointwiseLinearConv`: a 1x1 convolution, the same linear map at every node."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._conv_common import (
    check_count,
    check_field,
    check_num_spatial_dims,
    common_dtype,
    uniform_init,
)


class PointwiseLinearConv(eqx.Module):
    r"""A 1x1 convolution: $y_{o,n} = b_o + \sum_i w_{o,i}\, u_{i,n}$ at every node $n$.

    Used to change the number of channels (the lifting and projection of a
    Fourier neural operator, a residual block's bypass). No boundary mode: it
    reads no neighbours. `weight` has shape `(out_channels, in_channels, 1, ...,
    1)` and `bias` `(out_channels, 1, ..., 1)`, initialised as equinox's `Conv`
    with a kernel of one tap (uniform on $\pm 1/\sqrt{\text{in\_channels}}$), so
    the same key gives pdequinox's `PointwiseLinearConv`. It runs as one
    contraction over the channel axis rather than a convolution.

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels.
        out_channels: the output's channels.
        use_bias: whether to add a bias per output channel.
        zero_bias_init: start the bias at zero.
        key: the key for the initial weights.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import PointwiseLinearConv
        >>> lift = PointwiseLinearConv(1, 2, 32, key=jax.random.key(0))
        >>> lift(jnp.ones((2, 64))).shape
        (32, 64)
    """

    weight: jax.Array
    bias: jax.Array | None
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        use_bias: bool = True,
        *,
        zero_bias_init: bool = False,
        key: jax.Array,
    ):
        owner = "PointwiseLinearConv"
        n = self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)
        self.use_bias = bool(use_bias)
        self.weight, self.bias = uniform_init(
            key,
            (self.out_channels, self.in_channels) + (1,) * n,
            self.in_channels,
            self.out_channels,
            n,
            use_bias=self.use_bias,
            zero_bias_init=zero_bias_init,
        )

    def __call__(self, x: ArrayLike, *, key: jax.Array | None = None) -> jax.Array:
        """`(in_channels, *spatial)` to `(out_channels, *spatial)`.

        Args:
            x: one field, channels first.
            key: ignored (equinox's layer signature).
        """
        del key
        x = check_field(
            "PointwiseLinearConv", x, self.in_channels, self.num_spatial_dims
        )
        x, weight, bias = common_dtype(x, self.weight, self.bias)
        matrix = weight.reshape(self.out_channels, self.in_channels)
        y = jnp.tensordot(matrix, x, axes=1)
        return y if bias is None else y + bias
