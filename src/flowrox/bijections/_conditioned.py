"""Bijections whose parameters come from a network: the pieces they share.

A *template* is an unconditional bijection of shape `()` (an `Affine`, a
`RationalQuadraticSpline`, a `CubicConjugation`, a `Scan` of them...). Its
trainable leaves, flattened in `jax.flatten_util.ravel_pytree` order, are a
vector $\theta_0$ of `template_size(template)` entries; a network adds to it one
value per entry. A network whose last `eqx.nn.Linear` starts at zero therefore
starts every conditioned layer as its template (the identity for the default
templates). Buffers (a spline's bounds) are not parameters and stay fixed.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._tree import trainable_leaves
from ._base import AbstractBijection
from ._elementwise import AbstractElementwise


def check_template(
    owner: str,
    template,
    *,
    role: str = "its transformer",
    hint: str = "RationalQuadraticSpline(-5.0, 5.0, 8) or Affine()",
) -> None:
    """Raises a clear error unless `template` is an unconditional scalar bijection."""
    if not isinstance(template, AbstractBijection):
        raise TypeError(
            f"{owner} expected a flowrox bijection as {role}, got "
            f"{type(template).__name__}."
        )
    if tuple(template.shape) != () or template.cond_shape is not None:
        raise ValueError(
            f"{owner} expected an unconditional scalar bijection (shape (), "
            f"cond_shape None) as {role}; got shape {tuple(template.shape)} and "
            f"cond_shape {template.cond_shape}. Build it with shape (), e.g. {hint}."
        )


def _split_template(template):
    parameters, static = eqx.partition(template, trainable_leaves(template))
    flat, unravel = ravel_pytree(parameters)
    return flat, unravel, static


def template_size(template) -> int:
    """The number of trainable entries of a template, $|\\theta_0|$."""
    leaves = jax.tree.leaves(eqx.filter(template, trainable_leaves(template)))
    return sum(int(jnp.size(leaf)) for leaf in leaves)


def moved_template(template, offset):
    """The template with `offset` (shape `(template_size,)`) added to its parameters."""
    flat, unravel, static = _split_template(template)
    return eqx.combine(unravel(flat + offset.astype(flat.dtype)), static)


def apply_template(template, offsets, values, inverse: bool):
    """Applies the template moved by `offsets[i]` to `values[i]`, for every i.

    Args:
        template: the template, shape ().
        offsets: `(n, template_size)`, added to the template's parameters.
        values: `(n,)`, the inputs.
        inverse: run the inverse direction.

    Returns:
        The outputs `(n,)` and their log-derivatives `(n,)`.
    """
    flat, unravel, static = _split_template(template)
    parameters = jax.vmap(unravel)(flat + offsets.astype(flat.dtype))
    if isinstance(template, AbstractElementwise):
        # An elementwise map computes every element from its own parameters, so
        # one layer with a leading parameter axis of size n does all n elements
        # at once: the same numbers as the vmap below, about 1.4x faster for
        # splines (tests/test_flows.py checks that the two paths agree).
        n = values.shape[0]
        buffers = jax.tree.map(
            lambda leaf: (
                jnp.broadcast_to(leaf, (n, *leaf.shape)) if eqx.is_array(leaf) else leaf
            ),
            static,
        )
        widened = eqx.combine(parameters, buffers)
        if inverse:
            return widened.inverse_elementwise(values)
        return widened.forward_elementwise(values)

    def one(moved, value):
        bijection = eqx.combine(moved, static)
        if inverse:
            return bijection.inverse_and_log_det(value)
        return bijection.transform_and_log_det(value)

    return jax.vmap(one)(parameters, values)


def _is_linear(node) -> bool:
    return isinstance(node, eqx.nn.Linear)


def _last_linear(network):
    linears = [n for n in jax.tree.leaves(network, is_leaf=_is_linear) if _is_linear(n)]
    return linears[-1] if linears else None


def zero_last_linear(owner: str, network):
    """The network with the weight and bias of its last `eqx.nn.Linear` zeroed."""
    if _last_linear(network) is None:
        raise ValueError(
            f"{owner}(zero_init=True) zeroes the last eqx.nn.Linear of the network so "
            f"that the layer starts as its template, but the {type(network).__name__} "
            "holds none. Make the network's output zero at initialisation yourself "
            "and pass zero_init=False."
        )

    def where(tree):
        last = _last_linear(tree)
        return (last.weight,) if last.bias is None else (last.weight, last.bias)

    return eqx.tree_at(where, network, replace_fn=jnp.zeros_like)


def check_network(owner: str, network: Callable, in_size: int, out_size: int) -> None:
    """Raises a clear error unless `network` maps `(in_size,)` to `(out_size,)`."""
    features = jax.ShapeDtypeStruct((in_size,), jnp.result_type(float))
    try:
        output = eqx.filter_eval_shape(network, features)
    except Exception as error:
        raise ValueError(
            f"{owner}: the network could not be called on inputs of shape "
            f"({in_size},) ({error}). Build it for in_size={in_size}, e.g. "
            f"eqx.nn.MLP({in_size}, {out_size}, width, depth, key=key)."
        ) from error
    got = tuple(getattr(output, "shape", ()))
    if got != (out_size,):
        raise ValueError(
            f"{owner}: the network must output shape ({out_size},); it outputs shape "
            f"{got}. Build it with out_size={out_size}."
        )


def split_network(network):
    """`(arrays, static)`: the network's array leaves and the rest.

    Holding the callables (activations) as static data keeps a layer's leaves
    arrays only, so plain `jax.jit` accepts it.
    """
    return eqx.partition(network, eqx.is_array)
