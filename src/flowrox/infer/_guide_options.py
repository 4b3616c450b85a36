"""`AutoFlowGuide`'s default flow, and NumPyro's autoguide keywords mapped onto it.

NumPyro's `AutoIAFNormal(model, *, prefix, init_loc_fn, num_flows, hidden_dims,
skip_connections, nonlinearity)` and `AutoBNAFNormal(model, *, prefix,
init_loc_fn, num_flows, hidden_factors)` describe their flows with keywords
that `AutoFlowGuide` takes too; `flow_options` turns them (and flowrox's own
spellings) into one `FlowOptions`, and refuses what it cannot honour.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ..bijections import (
    AbstractBijection,
    Affine,
    Chain,
    MaskedAutoregressive,
    RationalQuadraticSpline,
)
from ..distributions import Flow

# The default flow, chosen by benchmarks/bench_guides.py on NumPyro's example
# settings (Trace_ELBO, Adam(3e-3), 5000 steps): see docs/inference.md.
DEFAULT_LAYERS = 3
DEFAULT_DEPTH = 1
DEFAULT_MIN_WIDTH = 8
DEFAULT_ACTIVATION = jax.nn.elu


class FlowOptions(NamedTuple):
    """The default flow's architecture; `hidden=None`: `max(dim, 8)` wide."""

    layers: int
    hidden: int | None
    hidden_factor: int | None
    depth: int
    activation: Callable
    transformer: AbstractBijection | None
    skip_connections: bool

    def width(self, dim: int) -> int:
        if self.hidden_factor is not None:
            return self.hidden_factor * dim
        if self.hidden is not None:
            return self.hidden
        return max(dim, DEFAULT_MIN_WIDTH)


def _one_width(name: str, widths) -> tuple[int, int]:
    """(width, depth) of a NumPyro list of hidden sizes, all of one width."""
    widths = [int(width) for width in widths]
    if not widths or len(set(widths)) != 1 or widths[0] < 1:
        raise ValueError(
            f"AutoFlowGuide: {name} must list one positive width per hidden layer, "
            f"the same for every layer (flowrox's conditioners have one width); "
            f"got {name}={widths!r}. Pass e.g. {name}=[{max(widths, default=8)}] * "
            f"{max(len(widths), 1)}, or hidden=..., depth=..."
        )
    return widths[0], len(widths)


def _activation(nonlinearity) -> Callable:
    """A function of an array, from a function or a `jax.example_libraries.stax`
    layer (NumPyro's spelling, e.g. `stax.Elu`)."""
    if (
        isinstance(nonlinearity, tuple)
        and len(nonlinearity) == 2
        and all(callable(part) for part in nonlinearity)
    ):
        _, apply_fun = nonlinearity
        return lambda x: apply_fun((), x)
    if callable(nonlinearity):
        return nonlinearity
    raise TypeError(
        "AutoFlowGuide: nonlinearity must be a function of an array (jax.nn.elu) "
        "or a stax layer (jax.example_libraries.stax.Elu, as NumPyro's "
        f"AutoIAFNormal takes); got {type(nonlinearity).__name__}."
    )


def flow_options(
    *,
    flow_fn_given: bool,
    layers,
    num_flows,
    hidden,
    depth,
    hidden_dims,
    hidden_factors,
    skip_connections,
    nonlinearity,
    transformer,
) -> FlowOptions:
    """Resolve the default flow's keywords; an error for any that would be
    ignored or that contradict each other."""
    given = {
        name: value
        for name, value in dict(
            layers=layers,
            num_flows=num_flows,
            hidden=hidden,
            depth=depth,
            hidden_dims=hidden_dims,
            hidden_factors=hidden_factors,
            nonlinearity=nonlinearity,
            transformer=transformer,
            skip_connections=skip_connections,
        ).items()
        if value is not None
    }
    if flow_fn_given and given:
        raise TypeError(
            f"AutoFlowGuide: {', '.join(sorted(given))} describe the default flow, "
            "but flow_fn was given, so they would have no effect. Build them into "
            "the flow that flow_fn returns, or leave flow_fn out."
        )
    if layers is not None and num_flows is not None and int(layers) != int(num_flows):
        raise TypeError(
            f"AutoFlowGuide: num_flows (NumPyro's name) and layers are one setting; "
            f"got num_flows={num_flows!r} and layers={layers!r}. Pass one of them."
        )
    count = layers if layers is not None else num_flows
    count = DEFAULT_LAYERS if count is None else int(count)
    if count < 1:
        raise ValueError(f"AutoFlowGuide: layers must be at least 1; got {count}.")
    widths = [
        name for name in ("hidden", "hidden_dims", "hidden_factors") if name in given
    ]
    if len(widths) > 1:
        raise TypeError(
            f"AutoFlowGuide: {' and '.join(widths)} all set the conditioner width; "
            "pass only one of them."
        )
    width, factor, network_depth = hidden, None, depth
    for name, value in (
        ("hidden_dims", hidden_dims),
        ("hidden_factors", hidden_factors),
    ):
        if value is None:
            continue
        size, listed_depth = _one_width(name, value)
        if depth is not None and int(depth) != listed_depth:
            raise TypeError(
                f"AutoFlowGuide: {name}={list(value)!r} has {listed_depth} hidden "
                f"layers, but depth={depth!r}; pass only {name}."
            )
        network_depth = listed_depth
        width, factor = (size, None) if name == "hidden_dims" else (None, size)
    network_depth = DEFAULT_DEPTH if network_depth is None else int(network_depth)
    if (width is not None and int(width) < 1) or network_depth < 1:
        raise ValueError(
            "AutoFlowGuide: the conditioner needs a positive width and depth; got "
            f"hidden={width!r}, depth={network_depth!r}."
        )
    return FlowOptions(
        layers=count,
        hidden=None if width is None else int(width),
        hidden_factor=factor,
        depth=network_depth,
        activation=DEFAULT_ACTIVATION
        if nonlinearity is None
        else _activation(nonlinearity),
        transformer=transformer,
        skip_connections=bool(skip_connections),
    )


def default_flow(key: jax.Array, dim: int, options: FlowOptions) -> Flow:
    """Inverse autoregressive layers (one pass to sample), in the latent vector's
    own order and reversed in turn, as NumPyro's `AutoIAFNormal` orders them."""
    base = dist.Normal(jnp.zeros(dim), 1.0).to_event(1)
    if dim == 1:
        # One element: nothing to condition on; a spline with many bins is a
        # flexible 1-D map on its own.
        return Flow(base, RationalQuadraticSpline(-5.0, 5.0, 16, shape=(1,)))
    transformer = Affine() if options.transformer is None else options.transformer
    natural = jnp.arange(dim)
    layers = [
        MaskedAutoregressive(
            transformer,
            shape=(dim,),
            key=layer_key,
            hidden=options.width(dim),
            depth=options.depth,
            # The model's own order first: a site sampled first (a hierarchical
            # scale) then conditions every later one in the first layer.
            order=natural if index % 2 == 0 else natural[::-1],
            one_pass="transform",
            activation=options.activation,
            skip_connections=options.skip_connections,
        )
        for index, layer_key in enumerate(jax.random.split(key, options.layers))
    ]
    return Flow(base, Chain(layers))
