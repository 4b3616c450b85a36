"""phi4_model: its potential is the action, and NUTS, independence Metropolis
and NeuTra-preconditioned NUTS all run on it and agree with exact answers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_value
from numpyro.infer.reparam import NeuTraReparam
from numpyro.infer.util import potential_energy
from numpyro.optim import Adam

from flowrox import Flow
from flowrox.bijections import Reshape
from flowrox.infer import AutoFlowGuide, IndependentMetropolis
from flowrox.lattice import (
    FreeField,
    FreeFieldScaling,
    magnetization,
    phi4_action,
    phi4_model,
    susceptibility,
    two_point,
    two_point_susceptibility,
)


def _vector_flow(shape, m2, convention):
    """The exact free-field flow over the flattened field, as samplers want it."""
    size = int(np.prod(shape))
    scaling = FreeFieldScaling(shape, m2, convention=convention)
    return Flow(
        dist.Normal(jnp.zeros(size), 1.0).to_event(1), Reshape(scaling, (size,))
    )


@pytest.mark.parametrize(
    "couplings",
    [
        {"convention": "bare", "m2": -4.0, "lam": 8.0},
        {"convention": "half", "m2": 0.5, "lam": 0.1},
        {"convention": "hopping", "kappa": 0.2, "lam": 0.02},
    ],
)
def test_the_potential_energy_is_the_action(couplings):
    phi = jax.random.normal(jax.random.key(0), (3, 4))
    energy = potential_energy(phi4_model, ((3, 4),), couplings, {"phi": phi})
    np.testing.assert_allclose(energy, phi4_action(phi, **couplings), rtol=1e-6)


def test_the_model_refuses_a_missing_coupling():
    with pytest.raises(ValueError, match="phi4_model: the 'bare' convention needs"):
        potential_energy(
            phi4_model, ((2, 2),), {"convention": "bare", "m2": 1.0}, {"phi": 0}
        )


# A full MCMC run: with the slow tests, to keep the default run under 5 minutes.
@pytest.mark.slow
def test_independence_metropolis_with_the_exact_flow_accepts_every_move():
    shape, m2 = (4, 4), 0.5
    model = functools.partial(phi4_model, shape, convention="bare", m2=m2, lam=0.0)
    kernel = IndependentMetropolis(
        _vector_flow(shape, m2, "bare"), model=model, defensive=0.0
    )
    mcmc = MCMC(kernel, num_warmup=0, num_samples=30, progress_bar=False)
    mcmc.run(jax.random.key(0), extra_fields=("accept_prob",))
    np.testing.assert_allclose(mcmc.get_extra_fields()["accept_prob"], 1.0, atol=1e-4)
    assert mcmc.get_samples()["phi"].shape == (30, *shape)


def _exact_neutra(model, shape, m2, convention):
    """A guide whose flow is the free theory, centred at zero, and its NeuTra."""
    guide = AutoFlowGuide(
        model,
        flow_fn=lambda key, dim: _vector_flow(shape, m2, convention),
        init_loc_fn=init_to_value(values={"phi": jnp.zeros(shape)}),
    )
    svi = SVI(model, guide, Adam(1e-3), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0)))
    return guide, params, NeuTraReparam(guide, params)


# A full MCMC run: with the slow tests, to keep the default run under 5 minutes.
@pytest.mark.slow
def test_neutra_with_the_exact_flow_makes_the_geometry_a_standard_normal():
    shape, m2 = (3, 3), 0.8
    model = functools.partial(phi4_model, shape, convention="half", m2=m2, lam=0.0)
    _, _, neutra = _exact_neutra(model, shape, m2, "half")
    reparameterised = neutra.reparam(model)
    zs = jax.random.normal(jax.random.key(1), (3, 9))
    energies = [
        potential_energy(reparameterised, (), {}, {"auto_shared_latent": z}) for z in zs
    ]
    # potential(z) = S(f(z)) - log|det f'| = |z|^2 / 2 + (V/2) log 2 pi - log Z,
    # the standard normal's potential up to one constant.
    constants = np.array(energies) - 0.5 * np.sum(np.asarray(zs) ** 2, axis=1)
    log_z = FreeField(shape, m2, convention="half").log_normalizer
    np.testing.assert_allclose(
        constants, 0.5 * 9 * np.log(2 * np.pi) - log_z, rtol=1e-5, atol=1e-4
    )


@pytest.mark.slow
def test_nuts_on_the_free_model_reproduces_the_exact_moments():
    shape, m2 = (3, 3), 0.5
    mcmc = MCMC(NUTS(phi4_model), num_warmup=300, num_samples=3000, progress_bar=False)
    mcmc.run(jax.random.key(0), shape, convention="bare", m2=m2, lam=0.0)
    phi = mcmc.get_samples()["phi"]
    field = FreeField(shape, m2, convention="bare")
    estimate = two_point(phi)
    z = (estimate.value - np.asarray(field.propagator())) / estimate.error
    assert np.abs(z).max() < 4.5, z
    chi = susceptibility(phi)
    assert abs(chi.value - 1 / (2 * m2)) < 4 * chi.error


@pytest.mark.slow
def test_nuts_imh_and_neutra_agree_on_an_interacting_theory():
    # One model, three samplers, the same observables. The proposal of IMH
    # and the NeuTra flow are the free theory of a nearby mass (not exact for
    # lam > 0), so their chains are correct but correlated.
    shape = (4, 4)
    couplings = {"convention": "bare", "m2": 0.5, "lam": 0.3}
    model = functools.partial(phi4_model, shape, **couplings)
    chains = {}
    nuts = MCMC(NUTS(model), num_warmup=300, num_samples=3000, progress_bar=False)
    nuts.run(jax.random.key(0))
    chains["nuts"] = nuts.get_samples()["phi"]
    imh = MCMC(
        IndependentMetropolis(_vector_flow(shape, 1.0, "bare"), model=model),
        num_warmup=300,
        num_samples=6000,
        progress_bar=False,
    )
    imh.run(jax.random.key(1))
    chains["imh"] = imh.get_samples()["phi"]
    _, _, neutra = _exact_neutra(model, shape, 1.0, "bare")
    preconditioned = MCMC(
        NUTS(neutra.reparam(model)),
        num_warmup=300,
        num_samples=2000,
        progress_bar=False,
    )
    preconditioned.run(jax.random.key(2))
    latent = preconditioned.get_samples()["auto_shared_latent"]
    chains["neutra"] = neutra.transform_sample(latent)["phi"]
    estimates = {
        name: (magnetization(phi, absolute=True), two_point_susceptibility(phi))
        for name, phi in chains.items()
    }
    reference = estimates["nuts"]
    for name in ("imh", "neutra"):
        for mine, theirs in zip(estimates[name], reference, strict=True):
            combined = np.hypot(mine.error, theirs.error)
            assert abs(mine.value - theirs.value) < 4 * combined, (name, mine, theirs)
