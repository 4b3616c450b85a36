r"""`phi4_model`: the lattice theory as a NumPyro model, for every sampler."""

from collections.abc import Sequence

import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from ._actions import couplings_of, phi4_action
from ._free import lattice_shape


def phi4_model(
    shape: Sequence[int],
    *,
    convention: str,
    m2: ArrayLike | None = None,
    lam: ArrayLike | None = None,
    kappa: ArrayLike | None = None,
    name: str = "phi",
):
    r"""The $\phi^4$ theory on a periodic lattice as a NumPyro model.

    One sample site `name` holds the field, of the lattice `shape`, under a
    flat (improper) prior, and `numpyro.factor` adds $-S[\phi]$
    (`phi4_action` in the given convention). So the model's potential energy
    is exactly the action, and one model serves every sampler:

    - `MCMC(NUTS(phi4_model), ...)`, the reference (hybrid Monte Carlo);
    - `MCMC(IndependentMetropolis(flow, model=phi4_model), ...)` with a
      trained flow over the flattened field (`flowrox.infer`);
    - NUTS on `NeuTraReparam(guide).reparam(phi4_model)` with a trained
      `AutoFlowGuide`, the flow preconditioning the geometry.

    The model's arguments go through `MCMC.run(key, shape, convention=...,
    m2=..., lam=...)`, or bind them once with `functools.partial`.

    Args:
        shape: the lattice shape $(L_1, \dots, L_d)$.
        convention: `"bare"`, `"half"` or `"hopping"`.
        m2: the mass squared ("bare" and "half").
        lam: the quartic coupling.
        kappa: the hopping parameter ("hopping").
        name: the name of the field's sample site.

    Examples:
        >>> import jax
        >>> from numpyro.infer import MCMC, NUTS
        >>> from flowrox.lattice import phi4_model
        >>> mcmc = MCMC(NUTS(phi4_model), num_warmup=50, num_samples=50,
        ...             progress_bar=False)
        >>> mcmc.run(jax.random.key(0), (4, 4), convention="bare", m2=1.0, lam=0.5)
        >>> mcmc.get_samples()["phi"].shape
        (50, 4, 4)
    """
    shape = lattice_shape("phi4_model", shape)
    couplings = couplings_of("phi4_model", convention, m2=m2, lam=lam, kappa=kappa)
    flat = dist.ImproperUniform(constraints.real, (), event_shape=shape)
    phi = numpyro.sample(name, flat)
    numpyro.factor(
        f"{name}_action", -phi4_action(phi, convention=convention, **couplings)
    )
