"""The leaf walk: paths, buffers and stacked layers of any pytree of modules.

The bottom layer of flowrox. It knows jax, equinox and NumPyro's
`Distribution` base class, and nothing of flowrox's own classes: a module
declares its roles with field markers (`buffer()`, `stacked()`), so a user's
module gets exactly what flowrox's own modules get.

- A field declared `buffer()` holds data, not parameters: never trained,
  never random.
- A field declared `stacked()` holds layers whose array leaves carry a leading
  layer axis (built with `eqx.filter_vmap`); the NumPyro bridge opens one plate
  per stacking level.
- Inside a NumPyro `Distribution` (a `Flow`, a `TransformedDistribution`),
  whatever holds no equinox module is data: the base distribution's
  parameters, a condition, a support. The modules it holds (a flow's
  bijection) are walked like any other.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey
from numpyro.distributions import Distribution

BUFFER_METADATA = "flowrox_buffer"
STACKED_METADATA = "flowrox_stacked"

#: Any pytree of equinox modules (or NumPyro distributions holding them).
PyTree = Any


def buffer(**field_kwargs: Any) -> Any:
    """Declares a field of an equinox module as a buffer: never trained, never random.

    The array leaves under a buffer field (a fixed mask, a permutation, a frozen
    lookup table) are skipped by `param_module`, by the training loops and by
    `bayesian` (unless selected explicitly with `where`).

    Args:
        **field_kwargs: passed on to `eqx.field` (e.g. `default=...`).

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import flowrox
        >>> class Masked(eqx.Module):
        ...     weight: jax.Array
        ...     mask: jax.Array = flowrox.buffer()
        ...     def __call__(self, x):
        ...         return (self.weight * self.mask) @ x
        >>> layer = Masked(jnp.ones((2, 2)), jnp.eye(2))
        >>> sorted(flowrox.param_module("layer", layer).__dict__)  # still a Masked
        ['mask', 'weight']
    """
    metadata = dict(field_kwargs.pop("metadata", {}))
    metadata[BUFFER_METADATA] = True
    return eqx.field(metadata=metadata, **field_kwargs)


def stacked(*, when: Callable[[Any], bool] | None = None, **field_kwargs: Any) -> Any:
    """Declares a field of an equinox module as a stack of layers.

    Every array leaf under the field carries a leading layer axis (the layers
    were built with `eqx.filter_vmap` over keys and are applied with
    `jax.lax.scan` or `jax.vmap`). `bayesian` priors are expanded over the
    layer's own shape, and `sample_module` registers one site per leaf inside a
    `numpyro.plate` over the layer axis, named `f"{name}/{owner}/layers"` after
    the module that holds the field. A stack inside a stack gets two plates.

    Args:
        when: optionally, a function of the module that says whether the field
            is stacked in this instance (`Vmap` is stacked only when its
            parameters are not shared).
        **field_kwargs: passed on to `eqx.field`.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> import flowrox
        >>> class Deep(eqx.Module):
        ...     layers: eqx.nn.Linear = flowrox.stacked()
        ...     def __init__(self, key):
        ...         make = lambda k: eqx.nn.Linear(4, 4, key=k)
        ...         self.layers = eqx.filter_vmap(make)(jax.random.split(key, 3))
        ...     def __call__(self, x):
        ...         params, static = eqx.partition(self.layers, eqx.is_array)
        ...         def step(h, p):
        ...             return jax.nn.tanh(eqx.combine(p, static)(h)), None
        ...         return jax.lax.scan(step, x, params)[0]
        >>> net = flowrox.bayesian(Deep(jax.random.key(0)), dist.Normal(0.0, 1.0))
        >>> def model():
        ...     flowrox.sample_module("net", net)
        >>> trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
        >>> site = trace["net/layers.weight"]
        >>> site["value"].shape, [frame.name for frame in site["cond_indep_stack"]]
        ((3, 4, 4), ['net/layers'])
    """
    metadata = dict(field_kwargs.pop("metadata", {}))
    metadata[STACKED_METADATA] = True if when is None else when
    return eqx.field(metadata=metadata, **field_kwargs)


class AbstractMarker(eqx.Module):
    """A module that stands in for one leaf: the walk never looks inside it.

    The NumPyro bridge's random markers (`flowrox.RandomLeaf`) are markers.
    """


def is_marker(node) -> bool:
    """Whether `node` stands in for one leaf (see `AbstractMarker`)."""
    return isinstance(node, AbstractMarker)


def render_path(path) -> str:
    """Renders a pytree key path as `a.b.0.c`: stable across processes and runs."""
    parts = []
    for key in path:
        if isinstance(key, GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, DictKey | FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key).strip(".[]"))
    return ".".join(parts)


class LeafInfo(NamedTuple):
    """Where a leaf sits in a module."""

    path: tuple
    name: str
    stacks: tuple[tuple, ...]  # key paths of the enclosing stacks, outermost first
    is_buffer: bool


def _is_node(node) -> bool:
    return isinstance(node, eqx.Module | Distribution) and not is_marker(node)


def _children(node) -> list[tuple[tuple, Any]]:
    """The immediate children of a pytree node, with their keys."""
    flat = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda n: n is not node)
    return [(tuple(path), child) for path, child in flat[0]]


def _holds_module(tree) -> bool:
    return any(
        isinstance(n, eqx.Module)
        for n in jax.tree.leaves(tree, is_leaf=lambda n: isinstance(n, eqx.Module))
    )


def _module_nodes(tree, prefix=()):
    """Yields `(path, node)` for the root and every module or distribution below."""
    yield prefix, tree

    def is_leaf(node):
        return node is not tree and (_is_node(node) or is_marker(node))

    for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]:
        if _is_node(node):
            yield from _module_nodes(node, prefix + tuple(path))


def _fields_with(node, metadata_key: str) -> list[str]:
    if not (isinstance(node, eqx.Module) and dataclasses.is_dataclass(node)):
        return []
    names = []
    for field in dataclasses.fields(node):
        flag = field.metadata.get(metadata_key, False)
        if flag is True or (callable(flag) and flag(node)):
            names.append(field.name)
    return names


def _buffer_paths(node) -> list[tuple]:
    """The key paths (relative to `node`) whose leaves are data, not parameters."""
    if isinstance(node, Distribution) and not isinstance(node, eqx.Module):
        return [path for path, child in _children(node) if not _holds_module(child)]
    return [(GetAttrKey(name),) for name in _fields_with(node, BUFFER_METADATA)]


def leaves_with_info(tree: PyTree) -> list[tuple[LeafInfo, Any]]:
    """Every leaf of `tree` (a marker counts as one leaf) with its `LeafInfo`."""
    stacks, buffers = [], []
    for prefix, node in _module_nodes(tree):
        stacks.extend(
            (*prefix, GetAttrKey(name)) for name in _fields_with(node, STACKED_METADATA)
        )
        buffers.extend((*prefix, *path) for path in _buffer_paths(node))

    def under(path, prefix):
        return tuple(path[: len(prefix)]) == prefix

    result = []
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_marker)[0]
    for path, leaf in flat:
        path = tuple(path)
        info = LeafInfo(
            path=path,
            name=render_path(path),
            stacks=tuple(s for s in stacks if under(path, s)),
            is_buffer=any(under(path, b) for b in buffers),
        )
        result.append((info, leaf))
    return result


def replace_leaves(tree: PyTree, replacements: dict) -> PyTree:
    """Returns `tree` with the leaves (or markers) at the given key paths replaced."""
    if not replacements:
        return tree
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: replacements.get(tuple(path), leaf),
        tree,
        is_leaf=is_marker,
    )


def trainable_leaves(tree: PyTree) -> PyTree:
    """A pytree of bools over `tree`: True for the leaves training updates.

    Trainable leaves are the inexact arrays that are neither buffers nor inside
    a marker. Use it as the filter of `eqx.partition`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import equinox as eqx
        >>> from flowrox._tree import buffer, trainable_leaves
        >>> class Layer(eqx.Module):
        ...     weight: jnp.ndarray
        ...     mask: jnp.ndarray = buffer()
        >>> trainable_leaves(Layer(jnp.ones(2), jnp.ones(2)))
        Layer(weight=True, mask=False)
    """
    trainable = {
        info.path
        for info, leaf in leaves_with_info(tree)
        if eqx.is_inexact_array(leaf) and not info.is_buffer
    }
    return jax.tree_util.tree_map_with_path(
        lambda path, _: tuple(path) in trainable, tree
    )
