"""`ConvNet`: a plain stack of "same" convolutions with a boundary condition."""

from collections.abc import Callable

import equinox as eqx
import jax
from jax.typing import ArrayLike

from ._boundary import BoundaryMode, check_boundary_mode
from ._conv_common import check_count, check_field, check_num_spatial_dims
from ._physics_conv import PhysicsConv


def _identity(x):
    return x


class ConvNet(eqx.Module):
    r"""`depth` hidden `PhysicsConv` layers with an activation, then a linear one.

    The input field `(in_channels, *spatial)` goes through `depth + 1`
    stride-1 convolutions of `kernel_size` taps, all with the same boundary
    mode: `in_channels -> hidden_channels`, `depth - 1` times `hidden_channels
    -> hidden_channels`, then `hidden_channels -> out_channels`, each but the
    last followed by `activation`, the last by `final_activation`. With
    `depth=0` it is one linear convolution. The arguments and the layer order
    are pdequinox's `ConvNet`'s, so its weights copy across leaf by leaf.

    Args:
        num_spatial_dims: the number of spatial axes.
        in_channels: the input's channels.
        out_channels: the output's channels.
        hidden_channels: the channels of the hidden layers.
        depth: the number of hidden layers.
        activation: the activation after each hidden layer.
        kernel_size: taps per axis of every convolution.
        final_activation: applied to the output.
        use_bias: whether the hidden layers have a bias.
        use_final_bias: whether the last layer has a bias.
        boundary_mode: `"periodic"`, `"dirichlet"` or `"neumann"`, for every layer.
        key: the key for the initial weights.
        zero_bias_init: start every bias at zero.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import ConvNet
        >>> net = ConvNet(2, 1, 1, hidden_channels=8, depth=2, key=jax.random.key(0))
        >>> len(net.layers), net(jnp.ones((1, 16, 16))).shape
        (3, (1, 16, 16))
    """

    layers: tuple[PhysicsConv, ...]
    activation: Callable = eqx.field(static=True)
    final_activation: Callable = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    boundary_mode: BoundaryMode = eqx.field(static=True)

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 16,
        depth: int = 10,
        activation: Callable = jax.nn.relu,
        kernel_size: int = 3,
        final_activation: Callable = _identity,
        use_bias: bool = True,
        use_final_bias: bool = True,
        boundary_mode: BoundaryMode = "periodic",
        key: jax.Array,
        zero_bias_init: bool = False,
    ):
        owner = "ConvNet"
        self.boundary_mode = check_boundary_mode(owner, boundary_mode)
        self.num_spatial_dims = check_num_spatial_dims(owner, num_spatial_dims)
        self.in_channels = check_count(owner, "in_channels", in_channels)
        self.out_channels = check_count(owner, "out_channels", out_channels)
        depth = check_count(owner, "depth", depth, minimum=0)
        hidden_channels = check_count(owner, "hidden_channels", hidden_channels)
        widths = (in_channels,) + (hidden_channels,) * depth + (out_channels,)
        biases = (use_bias,) * depth + (use_final_bias,)
        keys = jax.random.split(key, depth + 1)
        self.layers = tuple(
            PhysicsConv(
                num_spatial_dims,
                fan_in,
                fan_out,
                kernel_size,
                use_bias=bias,
                key=layer_key,
                boundary_mode=boundary_mode,
                zero_bias_init=zero_bias_init,
            )
            for fan_in, fan_out, bias, layer_key in zip(
                widths[:-1], widths[1:], biases, keys, strict=True
            )
        )
        self.activation = activation
        self.final_activation = final_activation

    def __call__(self, x: ArrayLike) -> jax.Array:
        """`(in_channels, *spatial)` to `(out_channels, *spatial)`."""
        x = check_field("ConvNet", x, self.in_channels, self.num_spatial_dims)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.final_activation(self.layers[-1](x))
