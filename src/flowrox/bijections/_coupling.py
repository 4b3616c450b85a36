r"""Coupling layers (Dinh et al. 2015, 2017; Durkan et al. 2019).

A mask splits the event into a transformed part $x_T$ and an untransformed part
$x_U$. The untransformed part (and the context) set the parameters of an
elementwise transformer applied to the transformed part:

$$y_U = x_U, \qquad y_T = \tau\big(x_T;\ \theta(x_U, c)\big).$$

The Jacobian is block triangular with an identity block, so the log-det is the
sum of the transformer's log-derivatives, and the inverse is one pass too.

The conditioner sees either the untransformed elements as one vector (an MLP),
or, for an event on a lattice (`num_spatial_dims=...`), the whole field with
the transformed elements zeroed (a convolutional network; see
`_field_conditioner`).
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._base import AbstractBijection
from ._conditioned import (
    apply_template,
    check_network,
    check_template,
    split_network,
    template_size,
    zero_last_linear,
)
from ._field_conditioner import (
    check_field_network,
    context_channels,
    conv_conditioner,
    field_layout,
    field_offsets,
    zero_last_layer,
)

MASKS = ("half", "alternating", "checkerboard")


def coupling_mask(
    shape: Sequence[int], kind: str = "half", *, flip: bool = False
) -> np.ndarray:
    """A boolean mask of the event shape: True where a coupling layer transforms.

    - `"half"`: the second half of the flattened event (the larger half when the
      size is odd);
    - `"alternating"`: every other element of the flattened event (odd indices);
    - `"checkerboard"`: the sites whose index sum is odd, for lattice-shaped
      events of any number of dimensions (e.g. shape `(L, L)`).

    `flip=True` swaps the two parts, so that two layers with opposite flips
    transform every element once.

    Args:
        shape: the event shape.
        kind: `"half"`, `"alternating"` or `"checkerboard"`.
        flip: swap transformed and untransformed.

    Returns:
        A numpy boolean array of shape `shape`.

    Examples:
        >>> from flowrox.bijections import coupling_mask
        >>> coupling_mask((2, 3), "checkerboard").astype(int).tolist()
        [[0, 1, 0], [1, 0, 1]]
        >>> coupling_mask((5,), "half").astype(int).tolist()
        [0, 0, 1, 1, 1]
    """
    shape = tuple(int(n) for n in shape)
    size = int(np.prod(shape, dtype=int))
    if kind == "half":
        mask = np.arange(size) >= size // 2
    elif kind == "alternating":
        mask = np.arange(size) % 2 == 1
    elif kind == "checkerboard":
        mask = (np.indices(shape).sum(axis=0) % 2 == 1).reshape(-1)
    else:
        raise ValueError(
            f"coupling_mask: kind must be one of {MASKS}; got {kind!r}. For another "
            "split pass a boolean array of the event shape as the mask."
        )
    return (mask != bool(flip)).reshape(shape)


def _indices_and_slices(mask: np.ndarray):
    transformed = tuple(int(i) for i in np.flatnonzero(mask.reshape(-1)))
    untransformed = tuple(int(i) for i in np.flatnonzero(~mask.reshape(-1)))
    return transformed, untransformed


def _take(flat, indices: tuple[int, ...]):
    # A contiguous block is a slice (cheaper than a gather, for XLA and for AD).
    start = indices[0]
    if indices == tuple(range(start, start + len(indices))):
        return jax.lax.slice_in_dim(flat, start, start + len(indices))
    return flat[np.asarray(indices)]


def _leads(indices: tuple[int, ...]) -> bool:
    # The two parts are complementary: when one is the leading block of the
    # flat event, the other is the trailing block.
    return indices == tuple(range(len(indices)))


def _parts(flat, untransformed: tuple[int, ...], transformed: tuple[int, ...]):
    """`(kept, changed)`: the untransformed and the transformed elements."""
    # Two contiguous blocks are one split: its gradient is one concatenation,
    # where each of two slices would give a zero-padded full-size copy.
    if _leads(untransformed):
        kept, changed = jnp.split(flat, [len(untransformed)])
        return kept, changed
    if _leads(transformed):
        changed, kept = jnp.split(flat, [len(transformed)])
        return kept, changed
    return _take(flat, untransformed), _take(flat, transformed)


def _merge(kept, changed, untransformed, transformed):
    """The flat event with `kept` at `untransformed` and `changed` at `transformed`."""
    if _leads(untransformed):
        return jnp.concatenate([kept, changed])
    if _leads(transformed):
        return jnp.concatenate([changed, kept])
    flat = jnp.zeros((kept.size + changed.size,), jnp.result_type(kept, changed))
    flat = flat.at[np.asarray(untransformed)].set(kept)
    return flat.at[np.asarray(transformed)].set(changed)


def _named_mask(
    shape: tuple[int, ...], kind: str, flip: bool, num_spatial_dims: int | None
) -> np.ndarray:
    """A named mask: of the whole event, or on a lattice shared by each site's
    channels."""
    if num_spatial_dims is None:
        return coupling_mask(shape, kind, flip=flip)
    channels, spatial = field_layout("Coupling", shape, num_spatial_dims)
    site_mask = coupling_mask(spatial, kind, flip=flip)
    return np.broadcast_to(site_mask, (channels, *spatial)).reshape(shape)


def _flat_conditioner(
    transformer, conditioner, mask, cond_shape, *, key, hidden, depth, activation
):
    in_size, out_size = Coupling.conditioner_sizes(
        transformer, mask, cond_shape=cond_shape
    )
    if conditioner is None:
        conditioner = eqx.nn.MLP(
            in_size, out_size, hidden, depth, activation=activation, key=key
        )
    check_network("Coupling", conditioner, in_size, out_size)
    return conditioner


def _lattice_conditioner(
    transformer,
    conditioner,
    shape,
    cond_shape,
    num_spatial_dims,
    *,
    key,
    hidden,
    depth,
    activation,
):
    in_channels, out_channels = Coupling.conditioner_channels(
        transformer, shape, num_spatial_dims=num_spatial_dims, cond_shape=cond_shape
    )
    if conditioner is None:
        conditioner = conv_conditioner(
            key,
            num_spatial_dims,
            in_channels,
            out_channels,
            hidden=hidden,
            depth=depth,
            activation=activation,
        )
    spatial = shape[len(shape) - num_spatial_dims :]
    check_field_network(
        "Coupling", conditioner, (in_channels, *spatial), (out_channels, *spatial)
    )
    return conditioner


class Coupling(AbstractBijection):
    r"""A coupling layer: a network of the untransformed part (and the context)
    sets an elementwise transformer on the transformed part.

    $y_U = x_U$ and $y_T = \tau(x_T; \theta_0 + \mathrm{net}([x_U, c]))$, where
    the transformer $\tau$ is any flowrox bijection of shape `()` (`Affine()`,
    `RationalQuadraticSpline(-5, 5, 8)`, `CubicConjugation()`, ...) used as a
    template: $\theta_0$ are its trainable leaves, and the conditioner adds one
    value per leaf entry for every transformed element, in
    `jax.flatten_util.ravel_pytree` order (`Coupling.conditioner_sizes` gives the
    sizes). With `zero_init=True` the conditioner's last layer starts at zero,
    so a new layer is its template on every element: the identity for the
    default templates.

    The mask is `"half"`, `"alternating"`, `"checkerboard"` (see
    `coupling_mask`; `flip=True` swaps the parts) or a boolean array of the
    event shape, True where the layer transforms. Any event shape works: the
    conditioner sees the untransformed elements flattened, followed by the
    flattened context, and the last layer that `zero_init` zeroes is its last
    `eqx.nn.Linear`.

    **On a lattice** (`num_spatial_dims=d`) the event is a field, `(L_1, ...,
    L_d)` or channels first `(C, L_1, ..., L_d)`, and the conditioner is a
    network of fields, as in the flows of Albergo, Kanwar and Shanahan (2019)
    for scalar field theory. It sees the whole field with the transformed
    elements set to zero, of shape `(C + n_context, L_1, ..., L_d)` (one
    channel for an event without channels; a context adds `prod(cond_shape)`
    channels, each constant over the lattice), and returns `C * P` channels,
    $P$ the template's parameter count (`Coupling.conditioner_channels`):
    channel `c * P + p` holds parameter `p` of the event's channel `c` at every
    site. A named mask is drawn on the lattice and shared by the channels of a
    site; the `"checkerboard"` transforms the sites whose index sum is odd.
    The default conditioner is a `flowrox.nn.ConvNet` of periodic 3x3
    convolutions (`hidden` channels, `depth` hidden layers); any network of
    fields may be passed instead, and `zero_init` zeroes the arrays of the
    node that holds its last trainable array (a `ConvNet`'s last
    convolution). With a periodic conditioner the layer commutes with every
    lattice translation that keeps its mask: for the checkerboard, those by
    an even number of sites in all (two along one axis, or one along each of
    two axes).

    Args:
        transformer: the template bijection, shape `()`.
        conditioner: a network from `in_size` to `out_size` (see
            `conditioner_sizes`); on a lattice, a network of fields from
            `in_channels` to `out_channels` (see `conditioner_channels`); or
            None to build the default from `key`, `hidden`, `depth` and
            `activation` (an `eqx.nn.MLP`; on a lattice a periodic `ConvNet`).
        mask: the mask kind or a boolean array.
        shape: the event shape.
        cond_shape: the context shape, or None.
        flip: swap the parts of a named mask.
        num_spatial_dims: the number of lattice axes of the event (the
            trailing ones), or None for a conditioner of the flattened
            untransformed elements.
        key: the key for the default conditioner.
        hidden: the default conditioner's width (on a lattice: its channels).
        depth: the default conditioner's number of hidden layers.
        activation: the default conditioner's activation.
        zero_init: zero the conditioner's last layer.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine, Coupling, RationalQuadraticSpline
        >>> layer = Coupling(
        ...     RationalQuadraticSpline(-4.0, 4.0, 8), mask="half", shape=(4,),
        ...     key=jax.random.key(0),
        ... )
        >>> x = jnp.array([0.1, -0.3, 1.2, 2.0])
        >>> bool(jnp.allclose(layer.transform(x), x))  # new layers are the identity
        True
        >>> lattice = Coupling(  # periodic 3x3 conv nets on a 6 x 6 lattice
        ...     Affine(), mask="checkerboard", shape=(6, 6), num_spatial_dims=2,
        ...     key=jax.random.key(0), hidden=8,
        ... )
        >>> phi = jnp.arange(36.0).reshape(6, 6)
        >>> bool(jnp.array_equal(lattice.transform(phi), phi))
        True
        >>> Coupling.conditioner_channels(Affine(), (6, 6), num_spatial_dims=2)
        (1, 2)
    """

    transformer: AbstractBijection
    conditioner: eqx.Module
    conditioner_static: eqx.Module = eqx.field(static=True)
    transformed: tuple[int, ...] = eqx.field(static=True)
    untransformed: tuple[int, ...] = eqx.field(static=True)
    num_spatial_dims: int | None = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        transformer: AbstractBijection,
        conditioner: Callable | None = None,
        mask: str | ArrayLike = "half",
        *,
        shape: Sequence[int],
        cond_shape: Sequence[int] | None = None,
        flip: bool = False,
        num_spatial_dims: int | None = None,
        key: jax.Array | None = None,
        hidden: int = 64,
        depth: int = 2,
        activation: Callable = jax.nn.relu,
        zero_init: bool = True,
    ):
        check_template("Coupling", transformer)
        self.shape = tuple(int(n) for n in shape)
        self.cond_shape = None if cond_shape is None else tuple(map(int, cond_shape))
        if num_spatial_dims is not None:
            field_layout("Coupling", self.shape, num_spatial_dims)
            num_spatial_dims = int(num_spatial_dims)
        self.num_spatial_dims = num_spatial_dims
        if isinstance(mask, str):
            mask = _named_mask(self.shape, mask, flip, num_spatial_dims)
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != self.shape:
            raise ValueError(
                f"Coupling expected a boolean mask of the event shape {self.shape}, "
                f"got dtype {mask.dtype} and shape {mask.shape}."
            )
        if mask.all() or not mask.any():
            raise ValueError(
                "Coupling: the mask must transform some elements and keep others; "
                f"it marks {int(mask.sum())} of {mask.size} elements as transformed."
            )
        self.transformed, self.untransformed = _indices_and_slices(mask)
        if conditioner is None and key is None:
            raise ValueError(
                "Coupling needs a conditioner network or a key to build the "
                "default one: pass key=jax.random.key(...)."
            )
        defaults = dict(key=key, hidden=hidden, depth=depth, activation=activation)
        if num_spatial_dims is None:
            conditioner = _flat_conditioner(
                transformer, conditioner, mask, self.cond_shape, **defaults
            )
            if zero_init:
                conditioner = zero_last_linear("Coupling", conditioner)
        else:
            conditioner = _lattice_conditioner(
                transformer,
                conditioner,
                self.shape,
                self.cond_shape,
                num_spatial_dims,
                **defaults,
            )
            if zero_init:
                conditioner = zero_last_layer("Coupling", conditioner)
        self.conditioner, self.conditioner_static = split_network(conditioner)
        self.transformer = transformer

    @staticmethod
    def conditioner_sizes(
        transformer: AbstractBijection,
        mask: ArrayLike,
        *,
        cond_shape: Sequence[int] | None = None,
    ) -> tuple[int, int]:
        """The conditioner's `(in_size, out_size)`.

        Args:
            transformer: the template bijection.
            mask: the boolean mask (True: transformed).
            cond_shape: the context shape, or None.

        Returns:
            `in_size`: untransformed elements plus context entries; `out_size`:
            transformed elements times the template's parameter count.
        """
        mask = np.asarray(mask, dtype=bool)
        n_context = 0 if cond_shape is None else int(np.prod(cond_shape, dtype=int))
        in_size = int((~mask).sum()) + n_context
        return in_size, int(mask.sum()) * template_size(transformer)

    @staticmethod
    def conditioner_channels(
        transformer: AbstractBijection,
        shape: Sequence[int],
        *,
        num_spatial_dims: int,
        cond_shape: Sequence[int] | None = None,
    ) -> tuple[int, int]:
        """A lattice conditioner's `(in_channels, out_channels)`.

        Args:
            transformer: the template bijection.
            shape: the event shape, `(L_1, ..., L_d)` or `(C, L_1, ..., L_d)`.
            num_spatial_dims: the number of lattice axes, `d`.
            cond_shape: the context shape, or None.

        Returns:
            `in_channels`: the event's channels (1 without a channel axis)
            plus the context's entries; `out_channels`: the event's channels
            times the template's parameter count.
        """
        channels, _ = field_layout(
            "Coupling", tuple(int(n) for n in shape), num_spatial_dims
        )
        cond_shape = None if cond_shape is None else tuple(map(int, cond_shape))
        in_channels = channels + context_channels(cond_shape)
        return in_channels, channels * template_size(transformer)

    def _offsets(self, value, kept, condition):
        network = eqx.combine(self.conditioner, self.conditioner_static)
        if self.num_spatial_dims is not None:
            return self._lattice_offsets(network, value, condition)
        features = (
            kept
            if condition is None
            else jnp.concatenate([kept, condition.reshape(-1).astype(kept.dtype)])
        )
        return network(features).reshape(len(self.transformed), -1)

    def _lattice_offsets(self, network, value, condition):
        changing = np.zeros(value.size, dtype=bool)
        changing[np.asarray(self.transformed)] = True
        field = jnp.where(changing.reshape(value.shape), 0, value)
        channels, spatial = field_layout("Coupling", self.shape, self.num_spatial_dims)
        offsets = field_offsets(
            network, field, condition, channels=channels, spatial=spatial
        )
        return _take(offsets, self.transformed)

    def _run(self, value, condition, inverse: bool):
        kept, changing = _parts(value.reshape(-1), self.untransformed, self.transformed)
        offsets = self._offsets(value, kept, condition)
        changed, log_derivatives = apply_template(
            self.transformer, offsets, changing, inverse
        )
        out = _merge(kept, changed, self.untransformed, self.transformed)
        return out.reshape(value.shape), jnp.sum(log_derivatives)

    def transform_and_log_det(self, x, condition=None):
        return self._run(x, condition, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        return self._run(y, condition, inverse=True)
