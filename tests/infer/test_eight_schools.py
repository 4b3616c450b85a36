"""Eight schools, centred: AutoFlowGuide (reverse KL, then forward KL) then
NeuTra NUTS against a long non-centred NUTS reference."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC, NUTS, SVI
from numpyro.infer.reparam import LocScaleReparam, NeuTraReparam

from flowrox.flows import masked_autoregressive_flow
from flowrox.infer import AutoFlowGuide, ForwardKL, StickingTheLandingELBO

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def centred():
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", 8):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, SIGMA), obs=Y)


def _summary(samples):
    return {"mu": np.asarray(samples["mu"]), "log_tau": np.log(samples["tau"])}


@pytest.mark.slow
def test_neutra_with_a_flow_guide_matches_the_non_centred_reference():
    # Reference: the non-centred parameterisation, where NUTS has no funnel.
    non_centred = numpyro.handlers.reparam(
        centred, config={"theta": LocScaleReparam(centered=0)}
    )
    reference = MCMC(
        NUTS(non_centred),
        num_warmup=1000,
        num_samples=10_000,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    reference.run(jax.random.key(0))
    expected = _summary(reference.get_samples())

    # An affine IAF: the funnel between tau and theta is a scale that depends
    # on earlier coordinates, which affine autoregressive layers model exactly.
    def flow_fn(key, dim):
        return masked_autoregressive_flow(
            key, dim, layers=4, hidden=64, one_pass="transform"
        )

    guide = AutoFlowGuide(centred, flow_fn, init_scale=1.0)
    schedule = optax.cosine_decay_schedule(3e-3, 5000, 0.05)
    # Sticking the landing: near the optimum its gradient noise vanishes, so
    # the guide settles instead of jittering.
    svi = SVI(centred, guide, optax.adam(schedule), StickingTheLandingELBO(8))
    result = svi.run(jax.random.key(1), 5000, progress_bar=False)
    # Reverse KL leaves the guide short of the funnel's neck (its 1% quantile
    # of log tau -1.39 against the posterior's -3.32; importance ESS 0.01),
    # where NeuTra's chain then rarely goes and diverges when it does. The
    # forward KL refines it towards covering the neck (1% quantile -2.26,
    # ESS 0.90). With 128 particles instead of 256, one run in twelve stuck in
    # the neck.
    svi = SVI(centred, guide, optax.adam(schedule), ForwardKL(256))
    result = svi.run(
        jax.random.key(101), 5000, progress_bar=False, init_params=result.params
    )

    neutra = NeuTraReparam(guide, result.params)
    mcmc = MCMC(
        NUTS(neutra.reparam(centred), target_accept_prob=0.99),
        num_warmup=500,
        num_samples=4000,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), extra_fields=("diverging",))
    # Measured over SVI keys 0-5 and NUTS keys 2 and 3 (with the guide's
    # init_to_median start): no divergent transitions in 11 of the 12 runs and
    # 1 in the twelfth (with the reverse-KL guide alone, 13 in one of them).
    # With the default init_to_uniform start and these keys: 1. Plain NUTS on
    # this model has hundreds. The bound is 0.1% of the transitions.
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    print("divergences", divergences)
    assert divergences <= 4
    got = _summary(neutra.transform_sample(mcmc.get_samples()["auto_shared_latent"]))
    # Measured against the reference over the same 12 runs: mu within 0.034 sd
    # and log tau within 0.089 sd (the reverse-KL guide alone: up to 0.106);
    # with these keys and the default start 0.002 and 0.020. The chain still
    # under-visits the neck a little: its 1% quantile of log tau is -2.2 to -3.2.
    for name in ("mu", "log_tau"):
        sd = expected[name].std()
        print(name, got[name].mean(), expected[name].mean(), sd)
        assert abs(got[name].mean() - expected[name].mean()) < 0.1 * sd, name
