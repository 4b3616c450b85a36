"""`bayesian`: declare priors on the leaves of any module."""

import abc
import fnmatch
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import numpy as np
from numpyro.distributions import Distribution

from .._tree import (
    AbstractMarker,
    LeafInfo,
    PyTree,
    leaves_with_info,
    replace_leaves,
)
from .._tree import is_marker as _is_marker


class AbstractPrior(eqx.Module):
    """A prior that needs more than one sample site (e.g. hierarchical shrinkage).

    `sample_module` calls `sample` inside the plates of any stacked-layer axes;
    it must register its sites under names that start with `site` and return a
    value of shape `shape`.
    """

    @abc.abstractmethod
    def sample(self, site: str, shape: tuple[int, ...], n_stacked: int) -> jax.Array:
        """Registers the sites of this prior and returns the leaf's value.

        Args:
            site: the leaf's site name, `f"{name}/{path}"`.
            shape: the leaf's full shape, stacked axes first.
            n_stacked: how many leading axes are stacked-layer axes (plates).
        """


class RandomLeaf(AbstractMarker):
    """A leaf declared random: its prior, and the value it had (its init).

    `bayesian` puts these in place of the chosen leaves; `sample_module` replaces
    them with samples; `init_to_module` starts inference at `value`.
    """

    prior: Distribution | AbstractPrior
    value: jax.Array

    def _not_sampled_message(self) -> str:
        return (
            f"a leaf of shape {tuple(self.value.shape)} is a random marker made by "
            "flowrox.bayesian (its prior, not yet a value), so the module cannot "
            "compute with it. Call module = flowrox.sample_module(name, module) "
            "inside the NumPyro model (or pass rng_key= to draw from the priors) "
            "and call the module it returns; or use flowrox.param_module(name, "
            "module) to learn the leaves, or flowrox.deterministic(module) for "
            "their initial values."
        )

    def _used_before_sampling(self, *args, **kwargs):
        del args, kwargs
        raise TypeError(self._not_sampled_message())

    def __getattr__(self, name: str):
        # Only reached for attributes a marker lacks: an array's (`.shape`,
        # `.T`, `.reshape`). Special names stay plain AttributeErrors, so that
        # `hasattr` probes (NumPy's, JAX's, pickle's) keep working.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"no attribute .{name}: {self._not_sampled_message()}")

    # Any arithmetic, comparison or array conversion of a marker is a module
    # used before sample_module: say so, instead of "unsupported operand".
    __jax_array__ = __array__ = __float__ = __int__ = __index__ = _used_before_sampling
    __neg__ = __pos__ = __abs__ = __getitem__ = _used_before_sampling
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _used_before_sampling
    __matmul__ = __rmatmul__ = __truediv__ = __rtruediv__ = __pow__ = __rpow__ = (
        _used_before_sampling
    )
    __lt__ = __le__ = __gt__ = __ge__ = _used_before_sampling


def _check_prior_shape(prior, info: LeafInfo, shape: tuple[int, ...]) -> None:
    if isinstance(prior, AbstractPrior):
        return
    if not isinstance(prior, Distribution):
        raise TypeError(
            f"bayesian: the prior for '{info.name}' is a {type(prior).__name__}; "
            "expected a NumPyro distribution, a flowrox prior, or None."
        )
    event = tuple(prior.event_shape)
    batch = tuple(prior.batch_shape)
    ok = len(event) <= len(shape) and tuple(shape[len(shape) - len(event) :]) == event
    if ok:
        outer = tuple(shape[: len(shape) - len(event)])
        try:
            ok = tuple(np.broadcast_shapes(batch, outer)) == outer
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(
            f"bayesian: the prior for '{info.name}' has batch shape {batch} and "
            f"event shape {event}, which cannot broadcast to the leaf's shape "
            f"{tuple(shape)}. Give a scalar prior (it is expanded for you) or one "
            "whose shape broadcasts to the leaf."
        )


def _resolve(prior, info: LeafInfo, leaf):
    if isinstance(prior, Distribution | AbstractPrior):
        return prior
    if isinstance(prior, Mapping):
        for pattern, candidate in prior.items():
            if fnmatch.fnmatchcase(info.name, pattern):
                return candidate
        return None
    if callable(prior):
        return prior(info.name, leaf)
    raise TypeError(
        "bayesian: prior must be a NumPyro distribution, a dict from path patterns "
        "to distributions, or a callable (path, leaf) -> distribution | None; got "
        f"{type(prior).__name__}."
    )


class _Selected:
    """Opaque stand-in used to find the paths chosen by a `where` function."""

    def __init__(self, node):
        self.node = node


def _selected_prefixes(module, where) -> list[tuple]:
    chosen = eqx.tree_at(where, module, replace_fn=_Selected)
    flat = jax.tree_util.tree_flatten_with_path(
        chosen, is_leaf=lambda node: isinstance(node, _Selected) or _is_marker(node)
    )[0]
    return [tuple(path) for path, node in flat if isinstance(node, _Selected)]


def bayesian(
    module: PyTree,
    prior: Distribution | AbstractPrior | Mapping | Callable,
    *,
    where: Callable | None = None,
) -> PyTree:
    """Declares priors on the leaves of any module (a bijection, network, flow).

    Each chosen leaf is replaced by a random marker holding its prior and its
    current value. Nothing is sampled here: call `sample_module(name, module)`
    inside a NumPyro model to register the sites and get a concrete module back.
    The module's class is unchanged, so every feature of it keeps working.

    Leaves under `Scan` (or a stacked `Vmap`) carry a leading layer axis; their
    sites live in a `numpyro.plate` over that axis (one plate per stacking level).

    Args:
        module: any pytree of equinox modules (or a `Flow`).
        prior: one of
            - a NumPyro distribution, expanded to each leaf's shape;
            - a dict from glob patterns on the leaf path (e.g. `"*.weight"`,
              `"layers.0.*"`) to distributions; the first match wins and leaves
              matching nothing stay deterministic;
            - a callable `(path, leaf) -> distribution | None`
              (see `flowrox.priors`).
        where: like `eqx.tree_at`'s `where`: a function of the module returning
            the leaves (or sub-modules) to consider. Default: every inexact
            array leaf except buffers.

    Returns:
        The module with random markers in place of the chosen leaves.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> import flowrox
        >>> linear = eqx.nn.Linear(3, 1, key=jax.random.key(0))
        >>> prior = {"weight": dist.Normal(0.0, 1.0)}  # the bias stays deterministic
        >>> model = flowrox.bayesian(linear, prior)
        >>> sampled = flowrox.sample_module("linear", model, rng_key=jax.random.key(1))
        >>> sampled.weight.shape, bool((sampled.bias == linear.bias).all())
        ((1, 3), True)
    """
    prefixes = None if where is None else _selected_prefixes(module, where)
    replacements = {}
    for info, leaf in leaves_with_info(module):
        if _is_marker(leaf) or not eqx.is_inexact_array(leaf):
            continue
        if prefixes is None:
            if info.is_buffer:
                continue
        elif not any(info.path[: len(p)] == p for p in prefixes):
            continue
        leaf_prior = _resolve(prior, info, leaf)
        if leaf_prior is None:
            continue
        _check_prior_shape(leaf_prior, info, tuple(leaf.shape))
        replacements[info.path] = RandomLeaf(leaf_prior, leaf)
    return replace_leaves(module, replacements)


def random_leaves(module) -> list[tuple[LeafInfo, RandomLeaf]]:
    """The random markers of a module, with their paths, in pytree order."""
    return [(info, leaf) for info, leaf in leaves_with_info(module) if _is_marker(leaf)]


def deterministic(module: PyTree) -> PyTree:
    """The module with every random marker replaced by the value it holds."""
    return replace_leaves(
        module, {info.path: marker.value for info, marker in random_leaves(module)}
    )
