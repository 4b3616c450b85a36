r"""The $\phi^4$ action on a periodic hypercubic lattice, in three conventions.

Papers write the same theory in different normalisations, so the convention is
always named, never assumed: `"bare"` (Albergo et al. 2019, bijx), `"half"`
(1/2 on the kinetic and mass terms) and `"hopping"` (the hopping parameter
kappa). `convert_convention` maps couplings and fields between them.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._numerics import as_float_array

#: The couplings each convention takes, in order.
CONVENTIONS = {
    "bare": ("m2", "lam"),
    "half": ("m2", "lam"),
    "hopping": ("kappa", "lam"),
}

_EXAMPLES = {
    "bare": "convention='bare', m2=-4.0, lam=8.0",
    "half": "convention='half', m2=-4.0, lam=2.0",
    "hopping": "convention='hopping', kappa=0.2, lam=0.02",
}


def check_convention(owner: str, convention) -> str:
    """`convention` if it is one of the three names, else a `ValueError`."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(
            f"{owner}: convention must be one of 'bare', 'half' or 'hopping'; got "
            f"{convention!r}. 'bare' is Albergo et al.'s form (no 1/2), 'half' has "
            "1/2 on the kinetic and mass terms, 'hopping' uses the hopping "
            "parameter kappa."
        )
    return convention


def couplings_of(owner: str, convention, **given) -> dict[str, jax.Array]:
    """The couplings of `convention` from keyword values, checked by name.

    Every coupling of the convention must be given (no silent default) and none
    of another convention's may be.
    """
    convention = check_convention(owner, convention)
    needed = CONVENTIONS[convention]
    extra = sorted(n for n, v in given.items() if v is not None and n not in needed)
    if extra:
        raise ValueError(
            f"{owner}: the {convention!r} convention takes {' and '.join(needed)}, "
            f"not {', '.join(extra)}. Give {_EXAMPLES[convention]}, or convert the "
            "couplings with flowrox.lattice.convert_convention."
        )
    missing = [n for n in needed if given.get(n) is None]
    if missing:
        raise ValueError(
            f"{owner}: the {convention!r} convention needs {' and '.join(needed)}; "
            f"{' and '.join(missing)} missing. Give them explicitly, e.g. "
            f"{_EXAMPLES[convention]} (lam=0.0 for the free theory)."
        )
    return {name: as_float_array(given[name]) for name in needed}


def _shifted_sum(phi: jax.Array) -> jax.Array:
    """$\\sum_\\mu \\phi(x + \\hat\\mu)$ at every site, periodic."""
    return sum(jnp.roll(phi, -1, axis) for axis in range(phi.ndim))


def phi4_action(
    phi: ArrayLike,
    *,
    convention: str,
    m2: ArrayLike | None = None,
    lam: ArrayLike | None = None,
    kappa: ArrayLike | None = None,
) -> jax.Array:
    r"""The $\phi^4$ action $S[\phi]$ of one configuration, periodic in every axis.

    Every axis of `phi` is a lattice axis (any dimension). For a batch of
    configurations, `jax.vmap` over it. The convention is required, and with it
    exactly its couplings (see the table in `flowrox.lattice`):

    - `"bare"`: $\sum_x [\sum_\mu (\phi_{x+\hat\mu} - \phi_x)^2 + m^2\phi_x^2 +
      \lambda\phi_x^4]$, with `m2` and `lam`;
    - `"half"`: $\sum_x [\frac12\sum_\mu (\phi_{x+\hat\mu} - \phi_x)^2 +
      \frac12 m^2\phi_x^2 + \lambda\phi_x^4]$, with `m2` and `lam`;
    - `"hopping"`: $\sum_x [-2\kappa\sum_\mu\phi_x\phi_{x+\hat\mu} + \phi_x^2 +
      \lambda(\phi_x^2 - 1)^2]$, with `kappa` and `lam`.

    The couplings may be traced (differentiate or `vmap` over them).

    Args:
        phi: one field configuration, of shape `(L_1, ..., L_d)`.
        convention: `"bare"`, `"half"` or `"hopping"`.
        m2: the bare mass squared ("bare" and "half").
        lam: the quartic coupling (every convention).
        kappa: the hopping parameter ("hopping").

    Returns:
        The scalar action.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import phi4_action
        >>> phi = jnp.ones((4, 4))  # constant: no kinetic term
        >>> float(phi4_action(phi, convention="bare", m2=-4.0, lam=8.0))  # 16 (-4 + 8)
        64.0
    """
    couplings = couplings_of("phi4_action", convention, m2=m2, lam=lam, kappa=kappa)
    phi = as_float_array(phi)
    if phi.ndim == 0:
        raise ValueError(
            "phi4_action: expected one configuration with at least one lattice "
            "axis, got a scalar."
        )
    lam = couplings["lam"]
    phi2 = phi * phi
    if convention == "hopping":
        hopping = phi * _shifted_sum(phi)
        density = -2.0 * couplings["kappa"] * hopping + phi2 + lam * (phi2 - 1.0) ** 2
        return jnp.sum(density)
    kinetic = sum((jnp.roll(phi, -1, axis) - phi) ** 2 for axis in range(phi.ndim))
    density = kinetic + couplings["m2"] * phi2
    if convention == "half":
        density = 0.5 * density
    return jnp.sum(density + lam * phi2 * phi2)


class ConventionChange(NamedTuple):
    r"""What `convert_convention` returns: the same theory in another convention.

    - `couplings`: the target convention's couplings, a dict (`m2`, `lam` or
      `kappa`, `lam`) to pass on as `**couplings`.
    - `field_scale`: $c$ with $\phi_\text{target} = c\,\phi_\text{source}$.
    - `action_offset`: $s$ with $S_\text{target}[c\,\phi] =
      S_\text{source}[\phi] + V s$ ($V$ the number of sites), a constant.

    So the normalised densities agree up to the Jacobian of the rescaling:
    $p_\text{target}(c\,\phi)\, c^V = p_\text{source}(\phi)$.
    """

    couplings: dict[str, jax.Array]
    field_scale: jax.Array
    action_offset: jax.Array


def _require(owner: str, ok, message: str) -> None:
    """Raises where `ok` is concretely false; traced values are checked at run time."""
    ok = jnp.asarray(ok)
    if isinstance(ok, jax.core.Tracer):
        return
    if not bool(np.all(np.asarray(ok))):
        raise ValueError(f"{owner}: {message}")


def _to_bare(owner, convention, couplings, ndim):
    """(bare couplings, c with phi_bare = c phi, s with S_bare = S + V s)."""
    lam = couplings["lam"]
    zero = jnp.zeros_like(lam)
    if convention == "bare":
        return dict(couplings), jnp.ones_like(lam), zero
    if convention == "half":
        bare = {"m2": couplings["m2"], "lam": 4.0 * lam}
        return bare, jnp.full_like(lam, 1.0 / np.sqrt(2.0)), zero
    kappa = couplings["kappa"]
    _require(owner, kappa > 0, f"kappa must be positive; got {kappa}.")
    bare = {"m2": (1.0 - 2.0 * lam) / kappa - 2.0 * ndim, "lam": lam / kappa**2}
    return bare, jnp.sqrt(kappa), -lam


def _from_bare(owner, convention, bare, ndim):
    """(target couplings, c with phi = c phi_bare, s with S = S_bare + V s)."""
    m2, lam = bare["m2"], bare["lam"]
    zero = jnp.zeros_like(lam)
    if convention == "bare":
        return dict(bare), jnp.ones_like(lam), zero
    if convention == "half":
        return {"m2": m2, "lam": lam / 4.0}, jnp.full_like(lam, np.sqrt(2.0)), zero
    # kappa solves 2 lam kappa^2 + (2d + m2) kappa - 1 = 0; the positive root,
    # written without the cancellation of (-b + sqrt(b^2 + 8 lam)) / (4 lam).
    b = 2.0 * ndim + m2
    denominator = b + jnp.sqrt(b**2 + 8.0 * lam)
    _require(
        owner,
        (lam >= 0) & (denominator > 0),
        f"the theory with m2={m2} and lam={lam} in {ndim} dimensions has no "
        "hopping form: kappa = 2 / (2d + m2 + sqrt((2d + m2)^2 + 8 lam)) must be "
        "positive, which needs lam > 0, or lam = 0 and 2d + m2 > 0.",
    )
    kappa = 2.0 / denominator
    hopping_lam = lam * kappa**2
    return {"kappa": kappa, "lam": hopping_lam}, 1.0 / jnp.sqrt(kappa), hopping_lam


def convert_convention(
    source: str,
    target: str,
    *,
    ndim: int,
    m2: ArrayLike | None = None,
    lam: ArrayLike | None = None,
    kappa: ArrayLike | None = None,
) -> ConventionChange:
    r"""The couplings and field rescaling that express one theory in another convention.

    With $d$ = `ndim` and the bare couplings $(m^2_b, \lambda_b)$:

    - bare → half: $\phi_h = \sqrt2\,\phi_b$, $m^2_h = m^2_b$,
      $\lambda_h = \lambda_b / 4$;
    - hopping → bare: $\phi_b = \sqrt\kappa\,\phi$,
      $m^2_b = (1 - 2\lambda)/\kappa - 2d$, $\lambda_b = \lambda/\kappa^2$, and
      $S_\text{hopping} = S_\text{bare} + \lambda V$;
    - bare → hopping: the inverse, with $\kappa$ the positive root of
      $2\lambda_b\kappa^2 + (2d + m^2_b)\kappa - 1 = 0$ and
      $\lambda = \lambda_b\kappa^2$ (so $\kappa = 1/(2d + m^2_b)$ for the free
      theory);

    other pairs compose these. The action changes by a constant only, so the
    normalised densities are equal up to the Jacobian $c^V$ of the field
    rescaling (see `ConventionChange`).

    Args:
        source: the convention the couplings are given in.
        target: the convention to express them in.
        ndim: the lattice dimension $d$.
        m2: the source's mass squared ("bare" and "half").
        lam: the source's quartic coupling.
        kappa: the source's hopping parameter ("hopping").

    Returns:
        A `ConventionChange`: the target's couplings, the field scale and the
        action offset per site.

    Raises:
        ValueError: for a missing coupling, one of another convention, or a
            theory without a hopping form (kappa would not be positive).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import convert_convention, phi4_action
        >>> change = convert_convention("bare", "half", ndim=2, m2=-4.0, lam=8.0)
        >>> {k: float(v) for k, v in change.couplings.items()}
        {'m2': -4.0, 'lam': 2.0}
        >>> phi = jnp.linspace(-1.0, 1.0, 16).reshape(4, 4)
        >>> bare = phi4_action(phi, convention="bare", m2=-4.0, lam=8.0)
        >>> half = phi4_action(change.field_scale * phi, convention="half",
        ...                    **change.couplings)
        >>> bool(jnp.isclose(bare, half))
        True
    """
    owner = "convert_convention"
    couplings = couplings_of(owner, source, m2=m2, lam=lam, kappa=kappa)
    check_convention(owner, target)
    if isinstance(ndim, bool) or not isinstance(ndim, int | np.integer) or ndim < 1:
        raise ValueError(
            f"{owner}: ndim must be the lattice dimension, a positive int; got "
            f"{ndim!r}."
        )
    bare, to_scale, to_offset = _to_bare(owner, source, couplings, int(ndim))
    out, from_scale, from_offset = _from_bare(owner, target, bare, int(ndim))
    return ConventionChange(out, to_scale * from_scale, to_offset + from_offset)
