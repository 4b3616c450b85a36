"""Deterministic leaf paths, stacked-layer depth and buffer fields of a module."""

import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

BUFFER_METADATA = "flowrox_buffer"

#: Any pytree of equinox modules (or a `Flow`).
PyTree = Any


def buffer(**field_kwargs: Any) -> Any:
    """Declares a field of an equinox module as a buffer: never trained, never random.

    The array leaves under a buffer field (a fixed mask, a permutation, a frozen
    lookup table) are skipped by `param_module` and by `bayesian` (unless
    selected explicitly with `where`).

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


def _is_marker(node) -> bool:
    from ._markers import RandomLeaf

    return isinstance(node, RandomLeaf)


def _is_node(node) -> bool:
    from ..distributions import Flow

    return isinstance(node, eqx.Module | Flow) and not _is_marker(node)


def _module_nodes(tree, prefix=()):
    """Yields `(path, node)` for the root and every module (or Flow) below it."""
    yield prefix, tree

    def is_leaf(node):
        return node is not tree and (_is_node(node) or _is_marker(node))

    for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]:
        if _is_node(node):
            yield from _module_nodes(node, prefix + tuple(path))


def _stacked_child(node) -> str | None:
    """The field of `node` holding layers stacked on a leading axis, if any."""
    from ..bijections import Scan, Vmap

    if isinstance(node, Scan) or (isinstance(node, Vmap) and not node.shared):
        return "bijection"
    return None


def _buffer_children(node) -> list[str]:
    """The fields of `node` whose leaves are data, not parameters."""
    from ..distributions import Flow

    if isinstance(node, Flow):
        # A flow's base distribution and condition are data.
        return ["base_dist", "condition"]
    if dataclasses.is_dataclass(node):
        return [
            field.name
            for field in dataclasses.fields(node)
            if field.metadata.get(BUFFER_METADATA, False)
        ]
    return []


def leaves_with_info(module) -> list[tuple[LeafInfo, object]]:
    """Every leaf of `module` (random markers count as leaves) with its `LeafInfo`."""
    stacks, buffers = [], []
    for prefix, node in _module_nodes(module):
        child = _stacked_child(node)
        if child is not None:
            stacks.append((*prefix, GetAttrKey(child)))
        buffers.extend((*prefix, GetAttrKey(name)) for name in _buffer_children(node))

    def under(path, prefix):
        return tuple(path[: len(prefix)]) == prefix

    result = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(module, is_leaf=_is_marker)[
        0
    ]:
        path = tuple(path)
        info = LeafInfo(
            path=path,
            name=render_path(path),
            stacks=tuple(s for s in stacks if under(path, s)),
            is_buffer=any(under(path, b) for b in buffers),
        )
        result.append((info, leaf))
    return result


def replace_leaves(module, replacements: dict):
    """Returns `module` with the leaves at the given key paths replaced."""
    if not replacements:
        return module
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: replacements.get(tuple(path), leaf),
        module,
        is_leaf=_is_marker,
    )


def trainable_leaves(module):
    """A pytree of bools over `module`: True for the leaves training updates.

    Trainable leaves are the inexact arrays that are not buffers.
    """
    trainable = {
        info.path
        for info, leaf in leaves_with_info(module)
        if eqx.is_inexact_array(leaf) and not info.is_buffer
    }
    return jax.tree_util.tree_map_with_path(
        lambda path, _: tuple(path) in trainable, module
    )
