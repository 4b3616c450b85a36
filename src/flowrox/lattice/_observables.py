r"""Observables of a batch of lattice configurations, with honest error bars.

Every observable is a smooth function $f(\bar y)$ of sample means of
per-configuration quantities $y_i$ (the magnetisation, its square, the
correlator of each configuration, ...). Its error comes from the delta
method: the linearised series $u_i = \nabla f(\bar y)\cdot(y_i - \bar y)$
has variance $\sigma_u^2$, and

- for a Markov chain (NUTS, independence Metropolis), the error is
  $\sqrt{\sigma_u^2 / n_\text{eff}}$ with $n_\text{eff}$ the effective sample
  size of $u$ from NumPyro's `effective_sample_size`, so autocorrelation
  widens it;
- for independent flow draws with importance weights $w_i = e^{-S}/q$
  (`log_weights`), the means are self-normalised, $\bar y = \sum_i \pi_i y_i$
  with $\pi_i = w_i / \sum_j w_j$, and the error is
  $\sqrt{\sum_i \pi_i^2 u_i^2}$; $n_\text{eff} = 1/\sum_i\pi_i^2$.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.diagnostics import effective_sample_size

from .._numerics import as_float_array


class Estimate(NamedTuple):
    """An observable's value, its standard error and the effective sample size.

    - `value`: the estimate (a scalar or an array, e.g. $G_c(x)$ per $x$).
    - `error`: its standard error, of the same shape; it accounts for the
      chain's autocorrelation, or for the importance weights.
    - `ess`: the effective sample size behind each entry.
    """

    value: np.ndarray
    error: np.ndarray
    ess: np.ndarray

    def __str__(self) -> str:
        if np.ndim(self.value) == 0:
            value, error, ess = float(self.value), float(self.error), float(self.ess)
            return f"{value:.6g} ± {error:.2g} (ESS {ess:.0f})"
        return repr(self)


def _configurations(owner: str, phi: ArrayLike) -> jax.Array:
    phi = as_float_array(phi)
    if phi.ndim < 2:
        raise ValueError(
            f"{owner}: expected a batch of configurations of shape (n, L_1, ..., "
            f"L_d), the draws in the order they were made; got shape {phi.shape}. "
            "One configuration is a batch of one: phi[None]."
        )
    if phi.shape[0] < 4:
        raise ValueError(
            f"{owner}: an error estimate needs at least 4 configurations; got "
            f"{phi.shape[0]}."
        )
    return phi


def _estimate(
    owner: str,
    function: Callable,
    per_sample,
    log_weights: ArrayLike | None,
    chains: int,
) -> Estimate:
    """`function` of the (weighted) means of `per_sample`, with its error."""
    n = jax.tree.leaves(per_sample)[0].shape[0]
    if log_weights is None:
        chains = int(chains)
        if chains < 1 or n % chains or n // chains < 2:
            raise ValueError(
                f"{owner}: chains={chains} must divide the {n} configurations into "
                "chains of at least 2 draws each (as MCMC.get_samples() "
                "concatenates them)."
            )
        means = jax.tree.map(lambda y: jnp.mean(y, axis=0), per_sample)
        probabilities = None
    else:
        if chains != 1:
            raise ValueError(
                f"{owner}: importance weights are for independent flow draws; "
                f"got log_weights with chains={chains}. Pass chains=1."
            )
        log_weights = as_float_array(log_weights)
        if log_weights.shape != (n,):
            raise ValueError(
                f"{owner}: expected log_weights of shape ({n},), one per "
                f"configuration, got {log_weights.shape}."
            )
        if not bool(jnp.all(jnp.isfinite(log_weights))):
            raise ValueError(
                f"{owner}: log_weights hold NaN or infinite values; every draw "
                "needs a finite log weight -S(phi) - log q(phi)."
            )
        probabilities = jax.nn.softmax(log_weights)
        means = jax.tree.map(
            lambda y: jnp.tensordot(probabilities, y, axes=1), per_sample
        )
    value, linear = jax.linearize(function, means)
    deltas = jax.tree.map(lambda y, m: y - m, per_sample, means)
    series = np.asarray(jax.vmap(linear)(deltas), dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    if probabilities is not None:
        p = np.asarray(probabilities, dtype=np.float64)
        p = p.reshape((n,) + (1,) * (series.ndim - 1))
        error = np.asarray(np.sqrt(np.sum(p**2 * series**2, axis=0)))
        ess = np.full(value.shape, 1.0 / np.sum(p**2))
        return Estimate(value, error, ess)
    variance = np.var(series, axis=0, ddof=1)
    # A constant series (e.g. G_c of a constant field) has no autocorrelation.
    constant = variance == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = effective_sample_size(series.reshape((chains, n // chains, *value.shape)))
    ess = np.where(constant, float(n), ess)
    error = np.where(constant, 0.0, np.sqrt(variance / ess))
    return Estimate(value, np.asarray(error), np.asarray(ess, dtype=np.float64))


def _lattice_axes(phi: jax.Array) -> tuple[int, ...]:
    return tuple(range(1, phi.ndim))


def _magnetizations(phi: jax.Array) -> jax.Array:
    return jnp.mean(phi, axis=_lattice_axes(phi))


def magnetization(
    phi: ArrayLike,
    *,
    absolute: bool = False,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""$\langle M\rangle$ or $\langle|M|\rangle$, with $M = \frac1V\sum_x\phi(x)$.

    In the broken phase $\langle M\rangle = 0$ by symmetry on a finite lattice,
    and $\langle |M| \rangle$ is the order parameter.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in the order they
            were drawn (the error uses the chain's autocorrelation).
        absolute: estimate $\langle|M|\rangle$ instead of $\langle M\rangle$.
        log_weights: for independent flow draws, their log importance weights
            $-S(\phi_i) - \log q(\phi_i)$ (up to a constant).
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate`.

    Examples:
        >>> import jax
        >>> from flowrox.lattice import FreeField, magnetization
        >>> phi = FreeField((4, 4), 1.0, convention="half").sample(
        ...     jax.random.key(0), (2000,))
        >>> estimate = magnetization(phi, absolute=True)
        >>> exact = (2 / 3.14159 / 16) ** 0.5  # sqrt(2/pi) sigma_M, sigma_M^2 = 1/V
        >>> bool(abs(estimate.value - exact) < 4 * estimate.error)
        True
    """
    phi = _configurations("magnetization", phi)
    m = _magnetizations(phi)
    return _estimate(
        "magnetization",
        lambda mean: mean,
        jnp.abs(m) if absolute else m,
        log_weights,
        chains,
    )


def susceptibility(
    phi: ArrayLike,
    *,
    absolute: bool = False,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The susceptibility $\chi = V(\langle M^2\rangle - \langle M\rangle^2)$.

    With `absolute=True`, $\chi' = V(\langle M^2\rangle - \langle|M|\rangle^2)$,
    the form used in the broken phase, where $\langle M\rangle$ vanishes by
    symmetry. The first form equals `two_point_susceptibility` exactly.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        absolute: subtract $\langle|M|\rangle^2$ instead of $\langle M\rangle^2$.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate`.

    Examples:
        >>> import jax
        >>> from flowrox.lattice import FreeField, susceptibility
        >>> field = FreeField((4, 4), 1.0, convention="bare")
        >>> phi = field.sample(jax.random.key(0), (2000,))
        >>> estimate = susceptibility(phi)
        >>> bool(abs(estimate.value - 0.5) < 4 * estimate.error)  # 1 / (2 m2)
        True
    """
    phi = _configurations("susceptibility", phi)
    volume = np.prod(phi.shape[1:])
    m = _magnetizations(phi)
    first = jnp.abs(m) if absolute else m
    return _estimate(
        "susceptibility",
        lambda means: volume * (means[1] - means[0] ** 2),
        (first, m * m),
        log_weights,
        chains,
    )


def _cyclic_correlation(a: jax.Array, b: jax.Array, ndim: int) -> jax.Array:
    r"""$\frac1V\sum_y a(y)\,b(y + x)$ over the last `ndim` axes, periodic."""
    axes = tuple(range(a.ndim - ndim, a.ndim))
    shape = a.shape[a.ndim - ndim :]
    product = jnp.conj(jnp.fft.rfftn(a, axes=axes)) * jnp.fft.rfftn(b, axes=axes)
    return jnp.fft.irfftn(product, s=shape, axes=axes) / np.prod(shape)


def _two_point_parts(phi: jax.Array):
    """Per configuration: its cyclic autocorrelation and the field itself."""
    ndim = phi.ndim - 1
    return _cyclic_correlation(phi, phi, ndim), phi


def _connected(means) -> jax.Array:
    correlation, field = means
    return correlation - _cyclic_correlation(field, field, field.ndim)


def two_point(
    phi: ArrayLike,
    *,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The connected two-point function $G_c(x)$, averaged over translations.

    $$G_c(x) = \frac1V\sum_y\big[\langle\phi(y)\,\phi(y+x)\rangle -
    \langle\phi(y)\rangle\langle\phi(y+x)\rangle\big],$$

    periodic, computed with FFTs. $G_c(0)$ is the connected
    $\langle\phi^2\rangle$.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate` whose value has the lattice shape.

    Examples:
        >>> import jax
        >>> from flowrox.lattice import FreeField, two_point
        >>> field = FreeField((4, 4), 1.0, convention="half")
        >>> estimate = two_point(field.sample(jax.random.key(0), (2000,)))
        >>> estimate.value.shape
        (4, 4)
        >>> z = (estimate.value - field.propagator()) / estimate.error
        >>> bool(abs(z).max() < 5)
        True
    """
    phi = _configurations("two_point", phi)
    return _estimate(
        "two_point", _connected, _two_point_parts(phi), log_weights, chains
    )


def two_point_susceptibility(
    phi: ArrayLike,
    *,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""$\chi_2 = \sum_x G_c(x)$, the two-point susceptibility.

    It equals $V(\langle M^2\rangle - \langle M\rangle^2)$ (`susceptibility`)
    identically; Albergo et al. (2021) report it for $\phi^4$ on $L = 8$.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate`.

    Examples:
        >>> import jax
        >>> from flowrox.lattice import FreeField, two_point_susceptibility
        >>> field = FreeField((4, 4), 1.0, convention="half")
        >>> estimate = two_point_susceptibility(
        ...     field.sample(jax.random.key(0), (2000,)))
        >>> bool(abs(estimate.value - 1.0) < 4 * estimate.error)  # 1 / m2
        True
    """
    phi = _configurations("two_point_susceptibility", phi)
    return _estimate(
        "two_point_susceptibility",
        lambda means: jnp.sum(_connected(means)),
        _two_point_parts(phi),
        log_weights,
        chains,
    )


def _time_axis(owner: str, phi: jax.Array, axis: int) -> int:
    ndim = phi.ndim - 1
    if not isinstance(axis, int | np.integer) or not -ndim <= axis < ndim:
        raise ValueError(
            f"{owner}: axis must be a lattice axis, an int in [{-ndim}, {ndim}) for "
            f"configurations of shape {phi.shape[1:]}; got {axis!r}."
        )
    return int(axis) % ndim


def _correlator_of(means, axis: int) -> jax.Array:
    connected = _connected(means)
    space = tuple(a for a in range(connected.ndim) if a != axis)
    return jnp.sum(connected, axis=space) if space else connected


def _effective_masses(correlator: jax.Array) -> jax.Array:
    ratio = (jnp.roll(correlator, 1) + jnp.roll(correlator, -1)) / (2 * correlator)
    return jnp.arccosh(ratio)


def time_correlator(
    phi: ArrayLike,
    *,
    axis: int = 0,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The time-slice correlator $C(t) = \sum_{\vec x} G_c(t, \vec x)$.

    The zero-momentum projection of the connected two-point function along
    the time axis `axis` (lattice axis 0 by default). For a mass gap $m$ it
    falls as $\cosh(m(t - T/2))$ on a periodic lattice of extent $T$.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        axis: the lattice axis that is time (0 is the first lattice axis).
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate` of shape `(T,)`.

    Examples:
        >>> import jax
        >>> from flowrox.lattice import FreeField, time_correlator
        >>> field = FreeField((8, 4), 1.0, convention="half")
        >>> time_correlator(field.sample(jax.random.key(0), (500,))).value.shape
        (8,)
    """
    phi = _configurations("time_correlator", phi)
    axis = _time_axis("time_correlator", phi, axis)
    return _estimate(
        "time_correlator",
        lambda means: _correlator_of(means, axis),
        _two_point_parts(phi),
        log_weights,
        chains,
    )


def effective_mass(
    phi: ArrayLike,
    *,
    axis: int = 0,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The effective mass $m_\text{eff}(t) = \operatorname{arccosh}
    \frac{C(t-1) + C(t+1)}{2\,C(t)}$ of the time-slice correlator.

    Exact for a periodic $\cosh$: for the free theory $m_\text{eff}(t) =
    \operatorname{arccosh}(1 + m^2/2)$ at every $t \ne 0$ (the lattice
    dispersion at zero momentum; at $t = 0$ the propagator's contact term
    enters). Where the ratio falls below 1 (at $t = 0$, or from noise at large
    $t$) the effective mass is undefined and its entry is NaN, as is its
    error; use `pole_mass` for a plateau average, which refuses undefined
    entries.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        axis: the lattice axis that is time.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate` of shape `(T,)`, periodic in $t$.

    Examples:
        >>> import jax
        >>> import numpy as np
        >>> from flowrox.lattice import FreeField, effective_mass
        >>> field = FreeField((8, 4), 1.0, convention="bare")
        >>> estimate = effective_mass(field.sample(jax.random.key(0), (4000,)))
        >>> exact = np.arccosh(1.5)
        >>> bool(abs(estimate.value[1] - exact) < 4 * estimate.error[1])
        True
    """
    phi = _configurations("effective_mass", phi)
    axis = _time_axis("effective_mass", phi, axis)
    return _estimate(
        "effective_mass",
        lambda means: _effective_masses(_correlator_of(means, axis)),
        _two_point_parts(phi),
        log_weights,
        chains,
    )


def _pole_mass(owner, phi, axis, times, log_weights, chains, transform):
    phi = _configurations(owner, phi)
    axis = _time_axis(owner, phi, axis)
    extent = phi.shape[1 + axis]
    if times is None:
        times = range(1, max(extent // 2, 2))
    times = np.asarray(list(times), dtype=int)
    if times.size == 0 or np.any(times < 0) or np.any(times >= extent):
        raise ValueError(
            f"{owner}: times must be a non-empty list of time slices in [0, "
            f"{extent}); got {times.tolist()}."
        )

    def mass(means):
        return jnp.mean(_effective_masses(_correlator_of(means, axis))[times])

    def estimate(means):
        return transform(mass(means))

    # The effective masses alone first: name the slices where one is undefined.
    masses = _estimate(
        owner,
        lambda means: _effective_masses(_correlator_of(means, axis))[times],
        _two_point_parts(phi),
        log_weights,
        chains,
    ).value
    undefined = times[~np.isfinite(masses)]
    if undefined.size:
        raise ValueError(
            f"{owner}: the effective mass is undefined at t = {undefined.tolist()} "
            "((C(t-1) + C(t+1)) / 2C(t) < 1: the correlator is too noisy there). "
            "Average over earlier slices with times=..., or use more samples."
        )
    return _estimate(owner, estimate, _two_point_parts(phi), log_weights, chains)


def pole_mass(
    phi: ArrayLike,
    *,
    axis: int = 0,
    times: Sequence[int] | None = None,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The pole mass $m_p$: the effective mass averaged over a plateau.

    $m_p = \frac{1}{|\mathcal T|}\sum_{t\in\mathcal T} m_\text{eff}(t)$ over the
    slices `times` (default $1 \le t < T/2$, where the correlator falls),
    with the error of the average (the slices are correlated; the delta
    method accounts for it).

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        axis: the lattice axis that is time.
        times: the time slices to average over.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate`.

    Raises:
        ValueError: when the effective mass is undefined at a chosen slice.

    Examples:
        >>> import jax
        >>> import numpy as np
        >>> from flowrox.lattice import FreeField, pole_mass
        >>> field = FreeField((8, 4), 1.0, convention="bare")
        >>> estimate = pole_mass(field.sample(jax.random.key(0), (4000,)))
        >>> bool(abs(estimate.value - np.arccosh(1.5)) < 4 * estimate.error)
        True
    """
    return _pole_mass(
        "pole_mass", phi, axis, times, log_weights, chains, lambda mass: mass
    )


def correlation_length(
    phi: ArrayLike,
    *,
    axis: int = 0,
    times: Sequence[int] | None = None,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The correlation length $\xi = 1/m_p$, from `pole_mass`.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        axis: the lattice axis that is time.
        times: the time slices the pole mass averages over.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate`.

    Examples:
        >>> import jax
        >>> import numpy as np
        >>> from flowrox.lattice import FreeField, correlation_length
        >>> field = FreeField((8, 4), 1.0, convention="bare")
        >>> estimate = correlation_length(field.sample(jax.random.key(0), (4000,)))
        >>> bool(abs(estimate.value - 1 / np.arccosh(1.5)) < 4 * estimate.error)
        True
    """
    return _pole_mass(
        "correlation_length",
        phi,
        axis,
        times,
        log_weights,
        chains,
        lambda mass: 1.0 / mass,
    )


def binder_cumulant(
    phi: ArrayLike,
    *,
    log_weights: ArrayLike | None = None,
    chains: int = 1,
) -> Estimate:
    r"""The Binder cumulant $U = 1 - \langle M^4\rangle / (3\langle M^2\rangle^2)$.

    $U = 0$ for a Gaussian magnetisation (the symmetric phase in the
    infinite volume) and $U \to 2/3$ deep in the broken phase.

    Args:
        phi: configurations of shape `(n, L_1, ..., L_d)`, in draw order.
        log_weights: log importance weights of independent flow draws.
        chains: the number of equally long chains concatenated in `phi`.

    Returns:
        An `Estimate`.

    Examples:
        >>> import jax
        >>> from flowrox.lattice import FreeField, binder_cumulant
        >>> field = FreeField((4, 4), 1.0, convention="half")
        >>> estimate = binder_cumulant(field.sample(jax.random.key(0), (4000,)))
        >>> bool(abs(estimate.value) < 4 * estimate.error)  # Gaussian: U = 0
        True
    """
    phi = _configurations("binder_cumulant", phi)
    m2 = _magnetizations(phi) ** 2
    return _estimate(
        "binder_cumulant",
        lambda means: 1.0 - means[1] / (3.0 * means[0] ** 2),
        (m2, m2 * m2),
        log_weights,
        chains,
    )
