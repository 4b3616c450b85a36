"""Stacked layers: `Scan` (depth) and `Vmap` (a leading event axis)."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._tree import stacked
from ._base import AbstractBijection
from ._chain import composed_images


def stacked_size(owner: str, bijection: AbstractBijection) -> int:
    """The common leading-axis size of every array leaf of a stacked bijection."""
    sizes = {
        path: jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
        for path, leaf in jax.tree_util.tree_leaves_with_path(
            eqx.filter(bijection, eqx.is_array)
        )
    }
    if not sizes:
        raise ValueError(
            f"{owner}: the bijection has no array leaves to stack, so there is no "
            "layer axis. Build the layers with eqx.filter_vmap over keys (or pass "
            "axis_size= to Vmap to share one set of parameters)."
        )
    distinct = set(sizes.values())
    if len(distinct) != 1 or None in distinct:
        found = {jax.tree_util.keystr(p): s for p, s in sizes.items()}
        raise ValueError(
            f"{owner}: every array leaf must carry the same leading layer axis; got "
            f"leading sizes {found}. Build the stack with eqx.filter_vmap, e.g. "
            "eqx.filter_vmap(make_layer)(jax.random.split(key, n_layers))."
        )
    return int(distinct.pop())


class Scan(AbstractBijection):
    r"""Applies $n$ stacked copies of one layer in sequence with `jax.lax.scan`.

    The layer's array leaves carry a leading axis of size $n$ (the layer index),
    as produced by `eqx.filter_vmap` over a layer constructor. Because the layer
    is traced once, compile time stays flat in depth, unlike `Chain`. Layer 0 is
    applied first in `transform`; `inverse` runs the layers backwards. The
    condition (if any) goes to every layer. The sets it maps onto each other
    (`known_images`) are those of the layer applied $n$ times.

    Args:
        bijection: one layer with stacked parameters.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine, Scan
        >>> def make_layer(key):
        ...     return Affine(jax.random.normal(key, (2,)), 1.5)
        >>> keys = jax.random.split(jax.random.key(0), 8)
        >>> flow = Scan(eqx.filter_vmap(make_layer)(keys))
        >>> flow.n_layers, flow.shape
        (8, (2,))
        >>> round(float(flow.transform_and_log_det(jnp.zeros(2))[1]), 4)  # 16 log 1.5
        6.4874
    """

    bijection: AbstractBijection = stacked()
    n_layers: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection):
        self.n_layers = stacked_size("Scan", bijection)
        self.bijection = bijection
        self.shape = tuple(bijection.shape)
        self.cond_shape = bijection.cond_shape

    @property
    def known_images(self) -> tuple:
        # The stacked layer declares what one layer does: its images depend on
        # its classes, not on its (stacked) parameters.
        return composed_images((self.bijection,) * self.n_layers)

    def _run(self, value, condition, inverse: bool):
        parameters, static = eqx.partition(self.bijection, eqx.is_array)

        def step(carry, layer_parameters):
            value, log_det = carry
            layer = eqx.combine(layer_parameters, static)
            if inverse:
                value, layer_log_det = layer.inverse_and_log_det(value, condition)
            else:
                value, layer_log_det = layer.transform_and_log_det(value, condition)
            return (value, log_det + layer_log_det.astype(log_det.dtype)), None

        initial = (value, jnp.zeros((), value.dtype))
        (value, log_det), _ = jax.lax.scan(step, initial, parameters, reverse=inverse)
        return value, log_det

    def transform_and_log_det(self, x, condition=None):
        return self._run(x, condition, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        return self._run(y, condition, inverse=True)


class Vmap(AbstractBijection):
    r"""Maps a bijection over a new leading axis of the event.

    With event shape `(axis_size, *bijection.shape)`, slice $i$ of the event is
    transformed by the bijection, and the log-dets add. Two modes:

    - `axis_size=None`: the bijection's array leaves are stacked on a leading
      axis (e.g. built with `eqx.filter_vmap`), one set of parameters per slice;
    - `axis_size=n`: one set of parameters shared by all `n` slices.

    The condition (if any) is shared by all slices, and the sets it maps onto
    each other (`known_images`) are the bijection's.

    Args:
        bijection: the bijection for one slice (stacked, or shared).
        axis_size: the number of slices when the parameters are shared.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine, Vmap
        >>> bijection = Vmap(Affine(jnp.array([0.0, 1.0]), 2.0), axis_size=3)
        >>> bijection.shape
        (3, 2)
        >>> bijection.transform(jnp.zeros((3, 2)))[:, 1].tolist()
        [1.0, 1.0, 1.0]
    """

    bijection: AbstractBijection = stacked(when=lambda vmap: not vmap.shared)
    axis_size: int = eqx.field(static=True)
    shared: bool = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection, *, axis_size: int | None = None):
        self.shared = axis_size is not None
        if axis_size is None:
            axis_size = stacked_size("Vmap", bijection)
        elif int(axis_size) < 1:
            raise ValueError(f"Vmap: axis_size must be >= 1; got {axis_size}.")
        self.axis_size = int(axis_size)
        self.bijection = bijection
        self.shape = (self.axis_size, *bijection.shape)
        self.cond_shape = bijection.cond_shape

    @property
    def known_images(self) -> tuple:
        return self.bijection.known_images

    def _run(self, value, condition, inverse: bool):
        parameters, static = eqx.partition(self.bijection, eqx.is_array)

        def one_slice(slice_parameters, slice_value):
            layer = eqx.combine(slice_parameters, static)
            if inverse:
                return layer.inverse_and_log_det(slice_value, condition)
            return layer.transform_and_log_det(slice_value, condition)

        in_axes = (None if self.shared else 0, 0)
        value, log_dets = jax.vmap(one_slice, in_axes=in_axes)(parameters, value)
        return value, jnp.sum(log_dets)

    def transform_and_log_det(self, x, condition=None):
        return self._run(x, condition, inverse=False)

    def inverse_and_log_det(self, y, condition=None):
        return self._run(y, condition, inverse=True)
