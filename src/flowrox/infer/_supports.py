"""Latent sites whose support depends on other latents, which an
`AutoContinuous` guide cannot represent."""

import warnings
from collections.abc import Callable

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer.util import constrain_fn


def _bounds(support) -> dict[str, np.ndarray]:
    """The array-valued parameters of a constraint (an interval's bounds, a
    half-line's lower bound), recursing into `independent` constraints."""
    inner = getattr(support, "base_constraint", None)
    if inner is not None:
        return _bounds(inner)
    found = {}
    for name, value in vars(support).items():
        if isinstance(value, jax.Array | np.ndarray | float | int) and not isinstance(
            value, bool
        ):
            found[name] = value
    return found


def _is_traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def dependent_supports(
    model: Callable,
    prototype_trace: dict,
    unpack_latent: Callable,
    init_latent: jax.Array,
    args: tuple,
    kwargs: dict,
) -> list[str]:
    """The latent sites whose support bounds change when the other latents
    move (each unconstrained latent is shifted by 0.5 and the model replayed).

    Traced values (the guide set up inside `jit`) cannot be compared and give
    an empty list.
    """
    latent_sites = {
        name: site
        for name, site in prototype_trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site["fn"].support.is_discrete
    }
    candidates = {
        name: _bounds(site["fn"].support)
        for name, site in latent_sites.items()
        if not all(
            isinstance(value, float | int)
            for value in _bounds(site["fn"].support).values()
        )
    }
    if not candidates or _is_traced(init_latent):
        return []
    moved = unpack_latent(init_latent + 0.5)
    with handlers.block():
        values = constrain_fn(handlers.seed(model, 0), args, kwargs, moved)
        replayed = handlers.trace(
            handlers.seed(handlers.substitute(model, data=values), 0)
        ).get_trace(*args, **kwargs)
    dependent = []
    for name, bounds in candidates.items():
        again = _bounds(replayed[name]["fn"].support)
        for key, value in bounds.items():
            if key not in again or _is_traced(value):
                continue
            if not np.allclose(np.asarray(value), np.asarray(again[key])):
                dependent.append(name)
                break
    return dependent


def warn_dependent_supports(owner: str, names: list[str]) -> None:
    if not names:
        return
    shown = ", ".join(repr(name) for name in names)
    first = names[0]
    warnings.warn(
        f"{owner}: the support of latent site(s) {shown} depends on other latent "
        "sites. An AutoContinuous guide maps each site to its support once, with "
        "the bounds at the initial values, so its draws of "
        f"{first!r} stay within the initial bounds as the other latents move: "
        "the posterior is truncated there, and draws during training may fall "
        "outside the true bounds (an infinite loss). Sample a variable with a "
        "fixed support and transform it in the model instead, e.g. for "
        "0 < beta < 1 - alpha: "
        "u = numpyro.sample('u', dist.Uniform(0.0, 1.0)); "
        "beta = numpyro.deterministic('beta', u * (1.0 - alpha)).",
        UserWarning,
        stacklevel=4,
    )
