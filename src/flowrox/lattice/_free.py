r"""The free theory ($\lambda = 0$) exactly: a distribution and a bijection.

The free action is a quadratic form diagonal in momentum space,
$S = \frac{1}{2}\sum_p \lambda_p |\tilde\phi_p|^2$ (unitary Fourier transform),
with the precision eigenvalues

$$\lambda_p = a\,(\hat p^2 + m^2), \qquad
\hat p^2 = \sum_\mu 4 \sin^2(p_\mu / 2), \quad p_\mu = 2\pi k_\mu / L_\mu,$$

and $a = 2$ ("bare"), $1$ ("half"), $2\kappa = 2/(2d + m^2)$ ("hopping", whose
free theory of mass $m^2$ has $\kappa = 1/(2d + m^2)$).
"""

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from .._numerics import as_float_array
from .._tree import buffer
from ..bijections import AbstractBijection
from ._actions import check_convention, phi4_action


def lattice_shape(owner: str, shape) -> tuple[int, ...]:
    """`shape` as a tuple of positive ints, or a `ValueError`."""
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError:
        raise ValueError(
            f"{owner}: shape must be the lattice shape, a tuple of ints such as "
            f"(8, 8); got {shape!r}."
        ) from None
    if not shape or any(n < 1 for n in shape):
        raise ValueError(
            f"{owner}: shape must have at least one axis, each of size >= 1; got "
            f"{shape}."
        )
    return shape


def free_mass(owner: str, m2) -> jax.Array:
    """The free theory's `m2`: a positive scalar (checked where concrete)."""
    m2 = as_float_array(m2)
    if m2.shape != ():
        raise ValueError(f"{owner}: m2 must be a scalar; got shape {m2.shape}.")
    if not isinstance(m2, jax.core.Tracer) and not float(m2) > 0:
        raise ValueError(
            f"{owner}: the free theory needs m2 > 0 (for m2 <= 0 the zero mode "
            f"is not normalisable); got m2={float(m2)}. An interacting theory "
            "with m2 < 0 is sampled with phi4_model."
        )
    return m2


def precision_spectrum(shape: tuple[int, ...], m2, convention: str) -> jax.Array:
    """$\\lambda_p$ on the full `fftn` momentum grid, of shape `shape`."""
    grids = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    p_hat2 = sum(4.0 * np.sin(np.pi * k) ** 2 for k in grids)
    a = {"bare": 2.0, "half": 1.0}.get(convention)
    if a is None:  # hopping: 2 kappa with kappa = 1 / (2d + m2)
        a = 2.0 / (2.0 * len(shape) + m2)
    return a * (jnp.asarray(p_hat2, dtype=m2.dtype) + m2)


def _half_grid(spectrum: jax.Array) -> jax.Array:
    """The part of a spectrum on the `rfftn` grid (the last axis halved)."""
    return spectrum[..., : spectrum.shape[-1] // 2 + 1]


def _scale_in_momentum_space(x: jax.Array, factor: jax.Array, ndim: int) -> jax.Array:
    """$F^{-1} \\mathrm{diag}(\\text{factor}) F x$ over the last `ndim` axes, F unitary.

    The factor is even in $p$, so the result is real and `rfftn` suffices.
    """
    axes = tuple(range(x.ndim - ndim, x.ndim))
    shape = x.shape[x.ndim - ndim :]
    spectrum = jnp.fft.rfftn(x, axes=axes, norm="ortho") * _half_grid(factor)
    return jnp.fft.irfftn(spectrum, s=shape, axes=axes, norm="ortho")


class FreeField(Distribution):
    r"""The free lattice field ($\lambda = 0$) as a NumPyro distribution.

    The density $e^{-S[\phi]}/Z$ of the free action in the given convention on
    a periodic lattice of `shape`, a Gaussian with zero mean that is diagonal
    in momentum space (see `flowrox.lattice`): `log_prob` is $-S - \log Z$ with
    the exact $\log Z = \frac12\sum_p \log(2\pi/\lambda_p)$, `sample` draws
    white noise and scales it by $\lambda_p^{-1/2}$ with one FFT pair
    (reparameterised), and `propagator` gives the exact two-point function.

    Args:
        shape: the lattice shape $(L_1, \dots, L_d)$, the event shape.
        m2: the mass squared, positive.
        convention: `"bare"`, `"half"` or `"hopping"` (then the field is in
            hopping normalisation with $\kappa = 1/(2d + m^2)$).
        validate_args: NumPyro's argument validation.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.lattice import FreeField
        >>> field = FreeField((4, 4), 0.5, convention="half")
        >>> phi = field.sample(jax.random.key(0), (3,))
        >>> phi.shape, field.log_prob(phi).shape
        ((3, 4, 4), (3,))
        >>> round(float(field.propagator().sum()), 4)  # 1 / (a m2), a = 1
        2.0
    """

    arg_constraints: ClassVar[dict] = {"m2": constraints.positive}
    reparametrized_params: ClassVar[list[str]] = ["m2"]
    pytree_data_fields = ("m2",)
    pytree_aux_fields = ("lattice_shape", "convention")

    def __init__(
        self,
        shape: Sequence[int],
        m2: ArrayLike,
        *,
        convention: str,
        validate_args: bool | None = None,
    ):
        self.lattice_shape = lattice_shape("FreeField", shape)
        self.convention = check_convention("FreeField", convention)
        self.m2 = free_mass("FreeField", m2)
        super().__init__(
            batch_shape=(), event_shape=self.lattice_shape, validate_args=validate_args
        )

    @constraints.dependent_property(is_discrete=False)
    def support(self):
        return constraints.independent(constraints.real, len(self.lattice_shape))

    @property
    def has_rsample(self) -> bool:
        return True

    def spectrum(self) -> jax.Array:
        """The precision eigenvalues $\\lambda_p$ on the `fftn` momentum grid."""
        return precision_spectrum(self.lattice_shape, self.m2, self.convention)

    @property
    def log_normalizer(self) -> jax.Array:
        r"""$\log Z = \log\int e^{-S[\phi]}\,d\phi
        = \frac12\sum_p\log(2\pi/\lambda_p)$."""
        return 0.5 * jnp.sum(jnp.log(2.0 * jnp.pi / self.spectrum()))

    def propagator(self) -> jax.Array:
        r"""The exact $G(x) = \langle\phi(0)\,\phi(x)\rangle = \frac1V\sum_p
        e^{ipx}/\lambda_p$, of the lattice shape."""
        return jnp.fft.ifftn(1.0 / self.spectrum()).real

    @property
    def mean(self) -> jax.Array:
        return jnp.zeros(self.lattice_shape, self.m2.dtype)

    @property
    def variance(self) -> jax.Array:
        return jnp.full(self.lattice_shape, self.propagator().ravel()[0])

    def sample(self, key, sample_shape=()) -> jax.Array:
        noise = jax.random.normal(
            key, tuple(sample_shape) + self.lattice_shape, self.m2.dtype
        )
        scale = jax.lax.rsqrt(self.spectrum())
        return _scale_in_momentum_space(noise, scale, len(self.lattice_shape))

    def rsample(self, key, sample_shape=()) -> jax.Array:
        return self.sample(key, sample_shape)

    def action(self, phi: ArrayLike) -> jax.Array:
        """The free action $S[\\phi]$ of one configuration or a batch of them."""
        phi = as_float_array(phi)
        ndim = len(self.lattice_shape)
        if phi.shape[phi.ndim - ndim :] != self.lattice_shape:
            raise ValueError(
                f"FreeField: expected configurations of shape {self.lattice_shape} "
                f"(with any leading batch axes), got {phi.shape}."
            )
        couplings = {"lam": 0.0}
        if self.convention == "hopping":
            couplings["kappa"] = 1.0 / (2.0 * ndim + self.m2)
        else:
            couplings["m2"] = self.m2
        batch = phi.shape[: phi.ndim - ndim]
        flat = phi.reshape((math.prod(batch), *self.lattice_shape))
        actions = jax.vmap(
            lambda one: phi4_action(one, convention=self.convention, **couplings)
        )(flat)
        return actions.reshape(batch)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        return -self.action(value) - self.log_normalizer


class FreeFieldScaling(AbstractBijection):
    r"""The exact map from white noise to the free field: an FFT scaling.

    $\phi = F^{-1}\,\mathrm{diag}(\lambda_p^{-1/2})\,F z$ with $F$ the unitary
    Fourier transform over the lattice and $\lambda_p$ the free theory's
    precision eigenvalues (see `flowrox.lattice`), so a standard normal $z$
    gives $\phi \sim$ `FreeField(shape, m2, convention=...)` exactly. The
    log-det is the constant $-\frac12\sum_p\log\lambda_p$. Periodic boundaries.
    The mass is a buffer (`flowrox.buffer()`): training leaves it fixed.

    Args:
        shape: the lattice shape, the event shape of the bijection.
        m2: the mass squared, positive.
        convention: `"bare"`, `"half"` or `"hopping"`.

    Examples:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow
        >>> from flowrox.lattice import FreeField, FreeFieldScaling
        >>> scaling = FreeFieldScaling((4, 4), 0.5, convention="bare")
        >>> flow = Flow(dist.Normal(0.0, 1.0), scaling)
        >>> phi = flow.sample(jax.random.key(0))
        >>> exact = FreeField((4, 4), 0.5, convention="bare")
        >>> bool(abs(flow.log_prob(phi) - exact.log_prob(phi)) < 1e-4)
        True
    """

    m2: jax.Array = buffer()
    shape: tuple[int, ...] = eqx.field(static=True)
    convention: str = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def __init__(self, shape: Sequence[int], m2: ArrayLike, *, convention: str):
        self.shape = lattice_shape("FreeFieldScaling", shape)
        self.convention = check_convention("FreeFieldScaling", convention)
        self.m2 = free_mass("FreeFieldScaling", m2)

    def _log_scale(self) -> jax.Array:
        return -0.5 * jnp.log(precision_spectrum(self.shape, self.m2, self.convention))

    def transform_and_log_det(self, x, condition=None):
        del condition
        log_scale = self._log_scale()
        y = _scale_in_momentum_space(x, jnp.exp(log_scale), len(self.shape))
        return y, jnp.sum(log_scale)

    def inverse_and_log_det(self, y, condition=None):
        del condition
        log_scale = self._log_scale()
        x = _scale_in_momentum_space(y, jnp.exp(-log_scale), len(self.shape))
        return x, -jnp.sum(log_scale)
