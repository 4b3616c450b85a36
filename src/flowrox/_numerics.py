"""Numerical helpers and argument checks shared by every layer, each written once.

This module sits at the bottom of the package with `flowrox._tree`: it imports
only jax, so any subpackage may use it.
"""

import warnings

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def as_float_array(value: ArrayLike) -> jax.Array:
    """A floating array: integers become the default float, Python scalars strong.

    Examples:
        >>> from flowrox._numerics import as_float_array
        >>> as_float_array(2).dtype == as_float_array(2.0).dtype
        True
    """
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.inexact):
        # An explicit dtype drops the weak type of Python scalars.
        return jnp.asarray(value, dtype=value.dtype)
    return jnp.asarray(value, dtype=jnp.result_type(float))


def softplus_inverse(y: jax.Array) -> jax.Array:
    r"""$\log(e^y - 1)$ for $y > 0$, accurate for tiny and for large $y$.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox._numerics import softplus_inverse
        >>> y = jnp.array([1e-6, 1.0, 50.0])
        >>> bool(jnp.allclose(jax.nn.softplus(softplus_inverse(y)), y, rtol=1e-5))
        True
    """
    return y + jnp.log(-jnp.expm1(-y))


def log_softplus(z: jax.Array) -> jax.Array:
    r"""$\log\operatorname{softplus}(z)$, finite for any finite $z$.

    Below $z = -30$, $\operatorname{softplus}(z) = e^z$ to rounding, so the
    result is $z$ itself (the direct formula would underflow to $\log 0$).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox._numerics import log_softplus
        >>> log_softplus(jnp.array([-100.0, 0.0])).tolist()[0]
        -100.0
    """
    small = z < -30.0
    return jnp.where(small, z, jnp.log(jax.nn.softplus(jnp.where(small, 0.0, z))))


def log_cosh(z: jax.Array) -> jax.Array:
    r"""$\log\cosh z = |z| + \log(1 + e^{-2|z|}) - \log 2$, finite for any finite $z$.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox._numerics import log_cosh
        >>> round(float(log_cosh(jnp.array(1000.0))), 3)  # cosh(1000) overflows
        999.307
    """
    abs_z = jnp.abs(z)
    return abs_z + jnp.log1p(jnp.exp(-2.0 * abs_z)) - jnp.log(2.0)


def vector_size(owner: str, dim) -> int:
    """Checks the length of a vector event: a whole number of at least 1.

    Examples:
        >>> from flowrox._numerics import vector_size
        >>> vector_size("Householder", 3)
        3
    """
    size = int(dim)
    if size < 1 or size != dim:
        raise ValueError(
            f"{owner}: dim must be a whole number of at least 1; got {dim!r}."
        )
    return size


def vector_parameter(owner: str, name: str, value, dim: int) -> jax.Array:
    """A parameter of shape `(dim,)`: zeros for `None`, a scalar or `(1,)` broadcast.

    Examples:
        >>> from flowrox._numerics import vector_parameter
        >>> vector_parameter("Planar", "bias", 2.0, 3).tolist()
        [2.0, 2.0, 2.0]
    """
    value = jnp.zeros(dim) if value is None else as_float_array(value)
    if jnp.shape(value) not in ((), (1,), (dim,)):
        raise ValueError(
            f"{owner} expected {name} of shape ({dim},) (or a scalar), got shape "
            f"{jnp.shape(value)}."
        )
    return jnp.broadcast_to(value, (dim,))


def check_one_pass(owner: str, one_pass: str) -> str:
    """Checks `one_pass`, the direction of a layer that is one network pass.

    The directions are named after the bijection contract's two methods:
    `"transform"` (`transform_and_log_det`: fast sampling) and `"inverse"`
    (`inverse_and_log_det`: fast density). The old spelling `"forward"` is
    accepted for one release, with a `DeprecationWarning`.

    Examples:
        >>> from flowrox._numerics import check_one_pass
        >>> check_one_pass("MaskedAutoregressive", "inverse")
        'inverse'
    """
    if one_pass == "forward":
        warnings.warn(
            f"{owner}: one_pass='forward' is deprecated and will be removed in the "
            "next release; pass one_pass='transform' (the direction of "
            "transform_and_log_det, fast sampling) instead.",
            DeprecationWarning,
            stacklevel=3,
        )
        return "transform"
    if one_pass not in ("inverse", "transform"):
        raise ValueError(
            f"{owner}: one_pass must be 'inverse' (fast density) or 'transform' "
            f"(fast sampling); got {one_pass!r}."
        )
    return one_pass


def renamed_keyword(owner: str, new: str, new_value, old: str, old_value, default):
    """The value of a renamed keyword: the new one, or the old one with a warning.

    Examples:
        >>> import warnings
        >>> from flowrox._numerics import renamed_keyword
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     renamed_keyword("MADE", "cond_dim", 0, "cond_size", 3, default=0)
        3
        >>> caught[0].category.__name__
        'DeprecationWarning'
    """
    if old_value is None:
        return new_value
    if new_value != default and new_value != old_value:
        raise TypeError(
            f"{owner}: got both {new}={new_value!r} and its old name "
            f"{old}={old_value!r}; pass only {new}=."
        )
    warnings.warn(
        f"{owner}: {old}= is deprecated and will be removed in the next release; "
        f"pass {new}= instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value
