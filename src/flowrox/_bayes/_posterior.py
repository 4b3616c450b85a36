"""Starting inference at a module, and rebuilding modules from posterior samples."""

import functools
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.initialization import init_to_median

from .._tree import PyTree, leaves_with_info, replace_leaves
from ._markers import _is_marker, random_leaves
from ._sample import INFER_NAME, INFER_PATH


def init_to_module(
    module: PyTree,
    *,
    name: str | None = None,
    fallback: Callable | None = None,
) -> functools.partial:
    """A NumPyro init strategy that starts at a module's current values.

    Sites registered by `sample_module` for a leaf of `module` start at that
    leaf's value (for a module made with `bayesian`, the value it had before);
    every other site uses `fallback` (default `init_to_median`). Use it to warm
    start NUTS or SVI from a pretrained network.

    Args:
        module: the module whose values to start from (deterministic, or with
            random markers).
        name: only match sites sampled under this name (default: any name).
        fallback: the init strategy for other sites.

    Returns:
        An init strategy for `NUTS(model, init_strategy=...)` or autoguides.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from numpyro.infer import NUTS
        >>> import flowrox
        >>> net = eqx.nn.Linear(2, 1, key=jax.random.key(0))
        >>> kernel = NUTS(lambda: None, init_strategy=flowrox.init_to_module(net))
    """
    values = {}
    for info, leaf in leaves_with_info(module):
        if _is_marker(leaf):
            values[info.name] = leaf.value
        elif eqx.is_inexact_array(leaf):
            values[info.name] = leaf
    fallback = init_to_median if fallback is None else fallback
    # NumPyro expects an init strategy to be a functools.partial.
    return functools.partial(
        _init_to_values, values=values, name=name, fallback=fallback
    )


def _init_to_values(site=None, *, values, name, fallback):
    if site is None:
        return functools.partial(
            _init_to_values, values=values, name=name, fallback=fallback
        )
    infer = site.get("infer") or {}
    path = infer.get(INFER_PATH)
    if (
        site["type"] == "sample"
        and not site.get("is_observed", False)
        and path in values
        and (name is None or infer.get(INFER_NAME) == name)
    ):
        value = values[path]
        expected = tuple(site["fn"].shape())
        if tuple(jnp.shape(value)) != expected:
            raise ValueError(
                f"init_to_module: the module's value for '{site['name']}' has shape "
                f"{jnp.shape(value)}, but the site expects {expected}. Pass the "
                "module whose structure the model samples."
            )
        return value
    return fallback(site)


def _find_name(module, samples: Mapping) -> str:
    paths = [info.name for info, _ in random_leaves(module)]
    first = paths[0]
    candidates = {
        key[: -len(first) - 1] for key in samples if key.endswith("/" + first)
    }
    complete = sorted(
        c for c in candidates if all(f"{c}/{p}" in samples for p in paths)
    )
    if len(complete) == 1:
        return complete[0]
    if not complete:
        raise KeyError(
            "posterior_modules: the samples hold no complete set of sites for this "
            f"module (looked for '<name>/{paths[0]}' and its siblings among "
            f"{sorted(samples)[:8]}...). Pass name= as given to sample_module."
        )
    raise ValueError(
        f"posterior_modules: several modules match ({complete}); pass name=."
    )


def posterior_modules(
    module: PyTree, samples: Mapping, *, name: str | None = None
) -> PyTree:
    """Rebuilds a module with a leading sample axis from posterior samples.

    Every random leaf takes its samples (`samples[f"{name}/{path}"]`, shape
    `(n_samples, *leaf_shape)`); every other array leaf is broadcast along the new
    axis. Predictions for all samples are then one `eqx.filter_vmap` call.

    Args:
        module: the module given to `sample_module` (with random markers).
        samples: a dict of site name -> samples, e.g. `MCMC.get_samples()` or the
            output of `Predictive`.
        name: the name given to `sample_module` (found from the samples if
            omitted and unambiguous).

    Returns:
        The module, each array leaf with a leading axis of `n_samples`.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> import flowrox
        >>> net = flowrox.bayesian(eqx.nn.Linear(2, 1, key=jax.random.key(0)),
        ...                        dist.Normal(0.0, 1.0))
        >>> samples = {"net/weight": jnp.ones((10, 1, 2)),
        ...            "net/bias": jnp.zeros((10, 1))}
        >>> nets = flowrox.posterior_modules(net, samples)
        >>> eqx.filter_vmap(lambda f: f(jnp.ones(2)))(nets).shape
        (10, 1)
    """
    markers = random_leaves(module)
    if not markers:
        raise ValueError(
            "posterior_modules: the module has no random leaves; build it with "
            "flowrox.bayesian(...) and pass that module."
        )
    if name is None:
        name = _find_name(module, samples)
    replacements = {}
    n_samples = None
    for info, marker in markers:
        site = f"{name}/{info.name}"
        if site not in samples:
            raise KeyError(f"posterior_modules: no samples for the site '{site}'.")
        value = jnp.asarray(samples[site])
        expected = tuple(marker.value.shape)
        if tuple(value.shape[1:]) != expected:
            raise ValueError(
                f"posterior_modules: samples of '{site}' have shape {value.shape}; "
                f"expected (n_samples, *{expected})."
            )
        if n_samples is None:
            n_samples = value.shape[0]
        elif value.shape[0] != n_samples:
            raise ValueError(
                f"posterior_modules: '{site}' has {value.shape[0]} samples, others "
                f"have {n_samples}."
            )
        replacements[info.path] = value
    rebuilt = replace_leaves(module, replacements)
    sampled = set(replacements)

    def broadcast(path, leaf):
        if tuple(path) in sampled or not eqx.is_array(leaf):
            return leaf
        return jnp.broadcast_to(leaf, (n_samples, *jnp.shape(leaf)))

    return jax.tree_util.tree_map_with_path(broadcast, rebuilt)
