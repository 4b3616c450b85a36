"""`sample_module` and `param_module`: a module's leaves as NumPyro sites."""

import contextlib
import fnmatch
import warnings
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import numpyro
from numpyro.distributions import constraints

from .._tree import LeafInfo, PyTree, leaves_with_info, render_path, replace_leaves
from ._markers import (
    AbstractPrior,
    RandomLeaf,
    _is_marker,
    _selected_prefixes,
    random_leaves,
)

INFER_NAME = "flowrox_name"
INFER_PATH = "flowrox_path"


def _hidden_by(handler, site: str) -> bool:
    if not isinstance(handler, numpyro.handlers.block):
        return False
    try:
        return bool(handler.hide_fn({"name": site, "type": "sample", "infer": {}}))
    except (KeyError, TypeError, AttributeError):
        return True


def _existing_site(site: str, name: str):
    """A site, in a trace that will record `site`, that clashes with it or `name`."""
    for handler in reversed(numpyro.primitives._PYRO_STACK):
        # Only trace handlers record sites (replay also holds a .trace: skip it).
        trace = handler.trace if isinstance(handler, numpyro.handlers.trace) else None
        if isinstance(trace, dict):
            if site in trace:
                return trace[site]
            for message in trace.values():
                if (message.get("infer") or {}).get(INFER_NAME) == name:
                    return message
        if _hidden_by(handler, site):
            break
    return None


def _check_unique(name: str, info: LeafInfo, module) -> None:
    site = f"{name}/{info.name}"
    clash = _existing_site(site, name)
    if clash is None:
        return
    first = (clash.get("infer") or {}).get(INFER_PATH, clash["name"])
    raise ValueError(
        f"sample_module: the name '{name}' is already used in this model: a module "
        f"sampled earlier registered the site '{clash['name']}' (path '{first}'), "
        f"and this {type(module).__name__} would register '{site}' (path "
        f"'{info.name}'). Give each module its own name, or call sample_module once "
        "and reuse the module it returns (it can be called any number of times)."
    )


def _plate_name(name: str, stack: tuple) -> str:
    # Named after the stacking module (a Scan), not its stacked child.
    owner = render_path(stack[:-1])
    return f"{name}/{owner}/layers" if owner else f"{name}/layers"


def _sample_leaf(name: str, info: LeafInfo, marker: RandomLeaf, plate_sizes):
    site = f"{name}/{info.name}"
    shape = tuple(marker.value.shape)
    n_stacked = len(info.stacks)
    infer = {INFER_NAME: name, INFER_PATH: info.name}
    with contextlib.ExitStack() as plates:
        for axis, stack in enumerate(info.stacks):
            plates.enter_context(
                numpyro.plate(
                    _plate_name(name, stack),
                    plate_sizes[stack],
                    dim=axis - n_stacked,
                )
            )
        prior = marker.prior
        if isinstance(prior, AbstractPrior):
            return prior.sample(site, shape, n_stacked)
        n_event = len(prior.event_shape)
        outer = shape[: len(shape) - n_event]
        site_dist = prior.expand(outer).to_event(len(outer) - n_stacked)
        return numpyro.sample(site, site_dist, infer=infer)


def _stack_sizes(markers) -> dict:
    sizes = {}
    for info, marker in markers:
        for depth, stack in enumerate(info.stacks):
            sizes[stack] = int(marker.value.shape[depth])
    return sizes


def sample_module(
    name: str, module: PyTree, *, rng_key: jax.Array | None = None
) -> PyTree:
    """Registers one NumPyro sample site per random leaf and returns a concrete module.

    Call it once per module inside a NumPyro model or guide; the module it returns
    holds ordinary arrays and can be called any number of times. Sites are named
    `f"{name}/{path}"`, the path rendered from the pytree keys (e.g.
    `net/layers.0.weight`), so names are identical across runs and processes and
    survive `eqx.tree_at`, `jax.tree.map`, `filter_jit` and serialisation. Leaves
    with stacked-layer axes (under `Scan`) get a `numpyro.plate` per axis.

    Outside any NumPyro handler, pass `rng_key` to draw from the priors (a
    one-line prior-predictive check).

    Args:
        name: the prefix of the site names; one per module in a model.
        module: a module made random with `flowrox.bayesian`.
        rng_key: a key for drawing outside a model.

    Returns:
        The module with every random marker replaced by its sampled value.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> import flowrox
        >>> net = flowrox.bayesian(
        ...     eqx.nn.MLP(1, 1, 8, 1, key=jax.random.key(0)), dist.Normal(0.0, 1.0)
        ... )
        >>> def model(x):
        ...     f = flowrox.sample_module("net", net)
        ...     numpyro.deterministic("f", jax.vmap(f)(x))
        >>> trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(
        ...     jax.numpy.ones((5, 1))
        ... )
        >>> for site in trace:
        ...     if site.startswith("net/"):
        ...         print(site)
        net/layers.0.weight
        net/layers.0.bias
        net/layers.1.weight
        net/layers.1.bias
    """
    if rng_key is not None:
        with numpyro.handlers.seed(rng_seed=rng_key):
            return sample_module(name, module)
    markers = random_leaves(module)
    if not markers:
        warnings.warn(
            f"sample_module('{name}', ...): the module has no random leaves, so no "
            "site was registered. Declare priors first with flowrox.bayesian(module, "
            "prior), or use param_module to learn its leaves.",
            stacklevel=2,
        )
        return module
    if not numpyro.primitives._PYRO_STACK:
        raise ValueError(
            f"sample_module('{name}', ...) was called outside a NumPyro model or "
            "handler, so there is no random key. Call it inside a model, or pass "
            "rng_key=jax.random.key(...) to draw from the priors."
        )
    plates = [
        handler.name
        for handler in numpyro.primitives._PYRO_STACK
        if isinstance(handler, numpyro.plate)
    ]
    if plates:
        raise ValueError(
            f"sample_module('{name}', ...) was called inside the plate(s) {plates}: "
            "the module's weights would be drawn once per plate element (and "
            "stacked-layer plates would clash with it). Call sample_module before "
            "entering data plates and use the returned module inside them."
        )
    # Checked for all sites before registering any of this call's own.
    for info, _ in markers:
        _check_unique(name, info, module)
    sizes = _stack_sizes(markers)
    values = {}
    for info, marker in markers:
        values[info.path] = _sample_leaf(name, info, marker, sizes)
    return replace_leaves(module, values)


def _constraint_for(constraint_spec, path: str):
    if constraint_spec is None:
        return constraints.real
    if isinstance(constraint_spec, Mapping):
        for pattern, constraint in constraint_spec.items():
            if fnmatch.fnmatchcase(path, pattern):
                return constraint
        return constraints.real
    return constraint_spec(path)


def param_module(
    name: str,
    module: PyTree,
    *,
    where: Callable | None = None,
    constraints: Mapping | Callable | None = None,
) -> PyTree:
    """Registers a module's trainable leaves as `numpyro.param` sites.

    Every inexact array leaf (not a buffer, not a random marker) becomes the site
    `f"{name}/{path}"` holding its current value as the initial value, so a
    deterministic flow or network inside a model or guide learns under SVI.
    Random markers in the same module are left for `sample_module`, so a module
    can mix learned and random leaves.

    Args:
        name: the prefix of the site names.
        module: any pytree of equinox modules (or a `Flow`).
        where: optionally, a function of the module returning the leaves (or
            sub-modules) to register (as in `eqx.tree_at`); others stay fixed.
        constraints: a constraint per leaf, as a dict from glob patterns on the
            path to NumPyro constraints or a callable `path -> constraint`; the
            leaf's value must lie in it. Default: unconstrained.

    Returns:
        The module holding the current values of the param sites.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow, param_module
        >>> from flowrox.bijections import Affine
        >>> def guide():
        ...     flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
        ...     numpyro.sample("z", param_module("q", flow))
        >>> trace = numpyro.handlers.trace(numpyro.handlers.seed(guide, 0)).get_trace()
        >>> print(*[site for site in trace if site.startswith("q/")])
        q/bijection.loc q/bijection.log_scale
    """
    prefixes = None if where is None else _selected_prefixes(module, where)
    values = {}
    for info, leaf in leaves_with_info(module):
        if _is_marker(leaf) or info.is_buffer or not eqx.is_inexact_array(leaf):
            continue
        if prefixes is not None and not any(info.path[: len(p)] == p for p in prefixes):
            continue
        constraint = _constraint_for(constraints, info.name)
        values[info.path] = numpyro.param(
            f"{name}/{info.name}", leaf, constraint=constraint
        )
    return replace_leaves(module, values)
