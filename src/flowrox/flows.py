"""Flow builders: common architectures in one call, stacked and applied with Scan.

Every builder returns a `flowrox.Flow` with a standard normal base whose layers
are built with `eqx.filter_vmap` over keys and applied with `Scan`, so compile
time does not grow with depth. New coupling and autoregressive flows are the
identity map (the conditioner networks' last layers start at zero), so a new
flow is its base distribution; a new `bnaf_flow` is a random monotone map.
For a conditional flow (`cond_dim=...`) the returned flow holds no context: its
`log_prob` and `sample` raise until it is given one with `flow.with_condition(c)`
(one context, or a batch of them), and `flowrox.train.fit_to_data` takes the
per-sample contexts as `condition=...`.

A one-element event (`()`, `1` or `(1,)`) has nothing to couple or to order:
`coupling_flow`, `spline_flow` and `masked_autoregressive_flow` then stack
`layers` elementwise maps of their transformer (`RationalQuadraticSpline(-5,
5, 8)` when none is given, since a stack of affine maps is one affine map),
whose parameters come from a network of the context when `cond_dim` is
given; `bnaf_flow` is its monotone network of one element. On raw data of any
scale, `flowrox.train.fit_to_data` standardises them first (see there).
"""

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ._numerics import check_one_pass
from .bijections import (
    AbstractBijection,
    Affine,
    BlockNeuralAutoregressive,
    BoundedAffine,
    Chain,
    Coupling,
    Invert,
    MaskedAutoregressive,
    Permute,
    RationalQuadraticSpline,
    Reshape,
    Scan,
)
from .distributions import Flow

__all__ = [
    "bnaf_flow",
    "coupling_flow",
    "masked_autoregressive_flow",
    "spline_flow",
]


def _event_shape(builder: str, shape) -> tuple[int, ...]:
    shape = (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)
    if any(n < 1 for n in shape):
        raise ValueError(
            f"{builder} expected an event shape of positive sizes, e.g. (), 1, (2,) "
            f"or (8, 8); got {shape}."
        )
    return shape


def _is_scalar(shape: tuple[int, ...]) -> bool:
    """One element: `()`, `(1,)` or `(1, 1)`; no coupling split or order exists."""
    return math.prod(shape) == 1


#: The transformer of a one-element flow given none: a stack of affine maps is
#: one affine map, so the default is a spline.
_SCALAR_TRANSFORMER = RationalQuadraticSpline(-5.0, 5.0, 8)


def _scalar_flow(
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    layers: int,
    transformer: AbstractBijection,
    cond_dim: int | None,
    hidden: int,
    depth: int,
    activation: Callable,
    invert: bool,
) -> Flow:
    """A flow of one element: `layers` elementwise maps applied with Scan.

    Unconditional layers are copies of the template (the identity for the
    default spline), holding their own parameters. Conditional layers take
    their parameters from a network of the context (a `MaskedAutoregressive`
    of one element, whose network sees the context only), starting at the
    template.
    """
    if tuple(transformer.shape) != () or transformer.cond_shape is not None:
        raise ValueError(
            "a one-element flow expected an unconditional scalar transformer "
            f"(shape (), cond_shape None); got shape {tuple(transformer.shape)} and "
            f"cond_shape {transformer.cond_shape}. Build it with shape (), e.g. "
            "RationalQuadraticSpline(-5.0, 5.0, 8) or SinhArcsinh()."
        )
    if cond_dim is None:

        def layer(key):
            del key
            return transformer

        # Equal layers are a power of one map while training; measured on a
        # two-component mixture, random offsets that tell them apart do no
        # better (0.006 against 0.007 nats), so a new flow stays its base.
        inner_shape = ()
    else:

        def layer(key):
            return MaskedAutoregressive(
                transformer,
                shape=(1,),
                key=key,
                hidden=hidden,
                depth=depth,
                cond_shape=(int(cond_dim),),
                activation=activation,
            )

        inner_shape = (1,)
    bijection = Scan(eqx.filter_vmap(layer)(jax.random.split(key, layers)))
    if shape != inner_shape:
        bijection = Reshape(bijection, shape)
    return _flow(bijection, invert)


def _check_layers(builder: str, layers: int) -> int:
    layers = int(layers)
    if layers < 1:
        raise ValueError(f"{builder}: layers must be at least 1; got {layers}.")
    return layers


#: What a coupling layer's conditioner network sees: the flattened kept
#: elements (an MLP), or the field on the lattice (periodic 3x3 convolutions).
_CONDITIONERS = ("mlp", "conv")


def _lattice_options(
    builder: str,
    shape: tuple[int, ...],
    conditioner: str,
    num_spatial_dims: int | None,
    mask: str | None,
) -> tuple[int | None, str | None]:
    """`(num_spatial_dims, mask)` for the couplings, or a `ValueError`."""
    if conditioner not in _CONDITIONERS:
        raise ValueError(
            f"{builder}: conditioner must be one of {_CONDITIONERS}; got "
            f"{conditioner!r}. Use 'conv' for lattice-shaped events such as (8, 8)."
        )
    if conditioner == "mlp":
        if num_spatial_dims is not None:
            raise ValueError(
                f"{builder}: num_spatial_dims={num_spatial_dims} says how a conv "
                "conditioner sees the event, but conditioner='mlp'. Pass "
                "conditioner='conv', or drop num_spatial_dims."
            )
        return None, mask
    if _is_scalar(shape):
        raise ValueError(
            f"{builder}: conditioner='conv' couples the sites of a lattice, but "
            f"the event shape {shape} has one element. Use the default "
            "conditioner for one-element events."
        )
    if mask == "half":
        raise ValueError(
            f"{builder}: conditioner='conv' takes mask 'checkerboard' (the "
            "default) or 'alternating', drawn on the lattice; got 'half', whose "
            "permutations between layers would mix the lattice's sites."
        )
    num_spatial_dims = len(shape) if num_spatial_dims is None else num_spatial_dims
    return num_spatial_dims, "checkerboard" if mask is None else mask


def _flow(bijection: AbstractBijection, invert: bool = False) -> Flow:
    # A conditional flow holds no condition: it raises until given one.
    return Flow(dist.Normal(0.0, 1.0), Invert(bijection) if invert else bijection)


def _swap_halves_permutation(key: jax.Array, size: int) -> jax.Array:
    """A random permutation that moves elements the "half" coupling just
    transformed (the last `size - size // 2`) into the kept first half, so every
    element is transformed at least every other layer (a plain random
    permutation may keep the same half, e.g. the identity for 2 elements)."""
    kept = size // 2
    first, second = jax.random.split(key)
    transformed = kept + jax.random.permutation(first, size - kept)
    rest = jnp.concatenate([transformed[kept:], jnp.arange(kept)])
    return jnp.concatenate([transformed[:kept], jax.random.permutation(second, rest)])


def coupling_flow(
    key: jax.Array,
    shape: int | Sequence[int],
    *,
    layers: int = 8,
    hidden: int = 64,
    depth: int = 2,
    transformer: AbstractBijection | None = None,
    cond_dim: int | None = None,
    mask: str | None = None,
    activation: Callable = jax.nn.relu,
    invert: bool = False,
    conditioner: str = "mlp",
    num_spatial_dims: int | None = None,
) -> Flow:
    """A flow of coupling layers.

    With `mask="half"` (the default for vector events) each layer transforms
    the second half of the elements and is followed by a random permutation
    that brings them into the first half, so each element is transformed at
    least every other layer. With
    `"alternating"` or `"checkerboard"` (the default for lattice-shaped events,
    e.g. `(L, L)`) each layer is a pair of couplings with opposite masks, so
    every element is transformed once per layer, and no permutation is needed.

    With `conditioner="conv"` the event is a field on a periodic lattice,
    `(L_1, ..., L_d)` or channels first `(C, L_1, ..., L_d)`, and each coupling
    takes its parameters from a `flowrox.nn.ConvNet` of periodic 3x3
    convolutions of the field with its transformed sites zeroed, whose last
    layer starts at zero: the flows of Albergo, Kanwar and Shanahan (2019) for
    lattice field theory (see `Coupling`). The masks are drawn on the lattice
    (`"checkerboard"` by default), and the flow commutes with the lattice
    translations that keep them (for the checkerboard: by an even number of
    sites in all).

    Args:
        key: the random key.
        shape: the event shape, e.g. `2`, `(16,)` or `(8, 8)`; one element
            (`()`, `1`, `(1,)`) gives the elementwise stack of the module
            docstring, with `mask` unused.
        layers: the number of (Scan-stacked) layers.
        hidden: the conditioner width.
        depth: the conditioner's number of hidden layers.
        transformer: the elementwise template (default `BoundedAffine()`, an
            affine map whose log-scale stays within [-3, 3] per layer: with an
            unbounded `Affine()` a point in the tails can grow through the
            stack until it overflows, as on a ring of Gaussians; for one
            element, `RationalQuadraticSpline(-5.0, 5.0, 8)`).
        cond_dim: the size of a context vector, or None. A conditional flow
            holds no context: give it one with `flow.with_condition(c)`.
        mask: `"half"`, `"alternating"` or `"checkerboard"`.
        activation: the conditioner activation.
        invert: build the layers from data to base (wrapped in `Invert`), so
            that `log_prob` runs the transformer's forward formula and sampling
            its inverse. Both directions are one pass; for a spline the
            forward formula is the cheaper one (the inverse solves a
            quadratic), so `invert=True` trains faster by maximum likelihood
            and `invert=False` samples (and trains a guide) faster.
        conditioner: `"mlp"` (an MLP of the flattened untransformed elements)
            or `"conv"` (periodic 3x3 convolutions of the field; `hidden` is
            their channels and `depth` their number of hidden layers).
        num_spatial_dims: with `"conv"`, the number of lattice axes of the
            event, the trailing ones (default: all of them; pass
            `len(shape) - 1` for a leading channel axis).

    Returns:
        A `Flow` with a standard normal base.

    Examples:
        >>> import jax
        >>> from flowrox.flows import coupling_flow
        >>> flow = coupling_flow(jax.random.key(0), (2,), layers=4)
        >>> flow.event_shape, flow.bijection.n_layers
        ((2,), 4)
        >>> coupling_flow(jax.random.key(0), ()).sample(jax.random.key(1), (3,)).shape
        (3,)
        >>> lattice = coupling_flow(  # on a periodic 6 x 6 lattice
        ...     jax.random.key(0), (6, 6), layers=2, hidden=8, conditioner="conv"
        ... )
        >>> lattice.sample(jax.random.key(1), (3,)).shape
        (3, 6, 6)
    """
    builder = "coupling_flow"
    shape = _event_shape(builder, shape)
    layers = _check_layers(builder, layers)
    num_spatial_dims, mask = _lattice_options(
        builder, shape, conditioner, num_spatial_dims, mask
    )
    if _is_scalar(shape):
        return _scalar_flow(
            key,
            shape,
            layers=layers,
            transformer=_SCALAR_TRANSFORMER if transformer is None else transformer,
            cond_dim=cond_dim,
            hidden=hidden,
            depth=depth,
            activation=activation,
            invert=invert,
        )
    transformer = BoundedAffine() if transformer is None else transformer
    mask = ("half" if len(shape) == 1 else "checkerboard") if mask is None else mask
    cond_shape = None if cond_dim is None else (int(cond_dim),)
    options = dict(
        shape=shape,
        cond_shape=cond_shape,
        num_spatial_dims=num_spatial_dims,
        hidden=hidden,
        depth=depth,
        activation=activation,
    )

    def layer(key):
        first, second = jax.random.split(key)
        coupling = Coupling(transformer, mask=mask, key=first, **options)
        if mask == "half":
            permutation = _swap_halves_permutation(second, math.prod(shape))
            return Chain([coupling, Permute(permutation.reshape(shape))])
        flipped = Coupling(transformer, mask=mask, flip=True, key=second, **options)
        return Chain([coupling, flipped])

    stack = eqx.filter_vmap(layer)(jax.random.split(key, layers))
    return _flow(Scan(stack), invert)


def spline_flow(
    key: jax.Array,
    shape: int | Sequence[int],
    *,
    layers: int = 8,
    hidden: int = 64,
    depth: int = 2,
    n_bins: int = 8,
    bound: float = 5.0,
    cond_dim: int | None = None,
    mask: str | None = None,
    activation: Callable = jax.nn.relu,
    invert: bool = True,
    conditioner: str = "mlp",
    num_spatial_dims: int | None = None,
) -> Flow:
    """A flow of rational-quadratic spline couplings (neural spline flow).

    `coupling_flow` with a `RationalQuadraticSpline(-bound, bound, n_bins)`
    transformer: inside `[-bound, bound]` each element gets a monotone spline,
    outside it the linear tails.

    Args:
        key: the random key.
        shape: the event shape (`()` or `1` for a one-element density).
        layers: the number of layers.
        hidden: the conditioner width.
        depth: the conditioner's number of hidden layers.
        n_bins: spline bins.
        bound: the spline interval is `[-bound, bound]`. A spline maps each
            tail beyond it into itself, so data should lie inside it:
            `fit_to_data` standardises raw data and widens the scale of a
            long-tailed element until its bulk does.
        cond_dim: the size of a context vector, or None. A conditional flow
            holds no context: give it one with `flow.with_condition(c)`.
        mask: as for `coupling_flow`.
        activation: the conditioner activation.
        invert: as for `coupling_flow`; the default `True` suits density
            estimation (`log_prob` runs the splines' closed forward formula, as
            flowjax's flows do); pass `False` for a flow that mostly samples,
            e.g. a variational guide (`AutoFlowGuide` does).
        conditioner: as for `coupling_flow` (`"conv"`: periodic 3x3
            convolutions of a lattice-shaped event).
        num_spatial_dims: as for `coupling_flow`.

    Returns:
        A `Flow` with a standard normal base.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.flows import spline_flow
        >>> flow = spline_flow(jax.random.key(0), 3, layers=2)
        >>> x = jnp.array([0.1, -0.5, 2.0])  # a new flow is its base
        >>> bool(jnp.allclose(flow.log_prob(x), -0.5 * (x**2).sum() - 1.5 * 1.8379))
        True
    """
    transformer = RationalQuadraticSpline(-float(bound), float(bound), n_bins)
    return coupling_flow(
        key,
        shape,
        layers=layers,
        hidden=hidden,
        depth=depth,
        transformer=transformer,
        cond_dim=cond_dim,
        mask=mask,
        activation=activation,
        invert=invert,
        conditioner=conditioner,
        num_spatial_dims=num_spatial_dims,
    )


def _vector_shape(builder: str, shape) -> tuple[int]:
    shape = _event_shape(builder, shape)
    if len(shape) != 1 and not _is_scalar(shape):
        raise ValueError(
            f"{builder} expects a vector event shape (dim,); got {shape}. Use "
            "coupling_flow for lattice-shaped events."
        )
    return shape


def masked_autoregressive_flow(
    key: jax.Array,
    shape: int | Sequence[int],
    *,
    layers: int = 5,
    hidden: int = 64,
    depth: int = 2,
    transformer: AbstractBijection | None = None,
    cond_dim: int | None = None,
    one_pass: str = "inverse",
    activation: Callable = jax.nn.relu,
    invert: bool | None = None,
) -> Flow:
    """A masked autoregressive flow: MAF (fast density) or IAF (fast sampling).

    Each layer is a `MaskedAutoregressive` with its own random order. With a
    standard normal base this gives the same densities as layers in natural
    order with random permutations between them, without moving the data
    between layers (a permutation costs a gather, and its gradient a scatter).
    `one_pass="inverse"` (MAF) makes `log_prob` one network pass per layer and
    sampling `dim` passes; `one_pass="transform"` (IAF) the reverse.

    By default the one-pass direction runs the transformer's forward formula
    (for a spline the closed form; its inverse solves a quadratic): for MAF
    the layers are built from data to base and wrapped in `Invert`, as
    flowjax builds its flows. `invert=False` keeps them from base to data
    whatever `one_pass` says; `invert=True` always inverts.

    Args:
        key: the random key.
        shape: the event shape `(dim,)` (or `()`, `1`: one element).
        layers: the number of layers.
        hidden: the MADE width.
        depth: the MADE's number of hidden layers.
        transformer: the elementwise template (default `Affine()`, for one
            element `RationalQuadraticSpline(-5.0, 5.0, 8)`; e.g.
            `RationalQuadraticSpline(-5.0, 5.0, 8)`).
        cond_dim: the size of a context vector, or None. A conditional flow
            holds no context: give it one with `flow.with_condition(c)`.
        one_pass: `"inverse"` or `"transform"` (`"forward"`: deprecated).
        activation: the MADE activation.
        invert: build the layers from data to base; default: when
            `one_pass="inverse"`.

    Returns:
        A `Flow` with a standard normal base.

    Examples:
        >>> import jax
        >>> from flowrox.flows import masked_autoregressive_flow
        >>> flow = masked_autoregressive_flow(jax.random.key(0), 4, layers=3)
        >>> flow.sample(jax.random.key(1), (5,)).shape
        (5, 4)
    """
    builder = "masked_autoregressive_flow"
    shape = _event_shape(builder, shape)
    layers = _check_layers(builder, layers)
    one_pass = check_one_pass(builder, one_pass)
    if _is_scalar(shape):
        return _scalar_flow(
            key,
            shape,
            layers=layers,
            transformer=_SCALAR_TRANSFORMER if transformer is None else transformer,
            cond_dim=cond_dim,
            hidden=hidden,
            depth=depth,
            activation=activation,
            invert=one_pass == "inverse" if invert is None else bool(invert),
        )
    shape = _vector_shape(builder, shape)
    transformer = Affine() if transformer is None else transformer
    cond_shape = None if cond_dim is None else (int(cond_dim),)
    invert = one_pass == "inverse" if invert is None else bool(invert)
    if invert:
        # The flow's one-pass direction is the layers' other one.
        one_pass = "transform" if one_pass == "inverse" else "inverse"

    def layer(key):
        return MaskedAutoregressive(
            transformer,
            shape=shape,
            key=key,
            hidden=hidden,
            depth=depth,
            cond_shape=cond_shape,
            order="random",
            one_pass=one_pass,
            activation=activation,
        )

    stack = eqx.filter_vmap(layer)(jax.random.split(key, layers))
    return _flow(Scan(stack), invert)


def bnaf_flow(
    key: jax.Array,
    shape: int | Sequence[int],
    *,
    layers: int = 1,
    hidden: int = 8,
    depth: int = 1,
    cond_dim: int | None = None,
    one_pass: str = "inverse",
) -> Flow:
    """A block neural autoregressive flow (BNAF).

    Each layer is a `BlockNeuralAutoregressive` network followed by a random
    permutation. With `one_pass="inverse"` (the default) the flow's inverse,
    and so `log_prob`, is the network's explicit pass, and sampling solves the
    network element by element by root finding (`NumericalInverse`), with
    implicit-function gradients; `one_pass="transform"` makes sampling the
    explicit pass and `log_prob` the root finding.

    Args:
        key: the random key.
        shape: the event shape `(dim,)` (or `()`, `1`: one element).
        layers: the number of BNAF layers.
        hidden: hidden units per element in each hidden layer (block size).
        depth: hidden layers per BNAF network.
        cond_dim: the size of a context vector, or None. A conditional flow
            holds no context: give it one with `flow.with_condition(c)`.
        one_pass: `"inverse"` (fast density) or `"transform"` (fast sampling;
            `"forward"` is its deprecated spelling).

    Returns:
        A `Flow` with a standard normal base.

    Examples:
        >>> import jax
        >>> from flowrox.flows import bnaf_flow
        >>> flow = bnaf_flow(jax.random.key(0), 2, hidden=4)
        >>> x = flow.sample(jax.random.key(1), (3,))  # by root finding
        >>> flow.log_prob(x).shape  # one pass
        (3,)
    """
    builder = "bnaf_flow"
    outer_shape = _event_shape(builder, shape)
    # One element: the network is a monotone map of it, with nothing to permute.
    scalar = _is_scalar(outer_shape)
    shape = (1,) if scalar else _vector_shape(builder, outer_shape)
    layers = _check_layers(builder, layers)
    one_pass = check_one_pass(builder, one_pass)
    cond_shape = None if cond_dim is None else (int(cond_dim),)

    def layer(key):
        first, second = jax.random.split(key)
        network = BlockNeuralAutoregressive(
            shape[0], key=first, hidden=hidden, depth=depth, cond_shape=cond_shape
        )
        if one_pass == "inverse":
            network = Invert(network)
        if scalar:
            return network
        return Chain([network, Permute(jax.random.permutation(second, shape[0]))])

    bijection = Scan(eqx.filter_vmap(layer)(jax.random.split(key, layers)))
    if outer_shape != shape:
        bijection = Reshape(bijection, outer_shape)
    return _flow(bijection)
