"""Eight schools, centred: AutoFlowGuide then NeuTra NUTS against a long
non-centred NUTS reference."""

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
from flowrox.infer import AutoFlowGuide, StickingTheLandingELBO

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
            key, dim, layers=4, hidden=64, one_pass="forward"
        )

    guide = AutoFlowGuide(centred, flow_fn, init_scale=1.0)
    schedule = optax.cosine_decay_schedule(3e-3, 5000, 0.05)
    # Sticking the landing: near the optimum its gradient noise vanishes, so
    # the guide settles instead of jittering. (Trace_ELBO with these keys: 2
    # divergences in the NeuTra chain below, 3 at target_accept_prob 0.95.)
    svi = SVI(centred, guide, optax.adam(schedule), StickingTheLandingELBO(8))
    result = svi.run(jax.random.key(1), 5000, progress_bar=False)

    neutra = NeuTraReparam(guide, result.params)
    mcmc = MCMC(
        NUTS(neutra.reparam(centred), target_accept_prob=0.99),
        num_warmup=500,
        num_samples=4000,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), extra_fields=("diverging",))
    # Measured: 0 divergent transitions in 4000 with these keys, and 0 for
    # each of SVI keys 0-5 in one session; 1 here, and 0 to 2 for keys 0-2, in
    # an earlier one on another machine; with 64 particles, 3 for one key of
    # four. Those located sat in the funnel's neck, log tau < -1, which the
    # flow under-covers. Plain NUTS on this model has hundreds.
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    print("divergences", divergences)
    assert divergences <= 2
    got = _summary(neutra.transform_sample(mcmc.get_samples()["auto_shared_latent"]))
    # Measured against the reference: mu 0.02 sd and log tau 0.03 sd off
    # (log tau 0.03 to 0.14 sd across SVI keys 0-5): the chain under-visits the
    # neck (its 1% quantile of log tau is -1.9 to -3.0, the reference's -3.3).
    # The aim is 0.1 sd; the bound for log tau is 0.15 sd until the flow covers
    # the neck.
    for name, bound in (("mu", 0.1), ("log_tau", 0.15)):
        sd = expected[name].std()
        print(name, got[name].mean(), expected[name].mean(), sd)
        assert abs(got[name].mean() - expected[name].mean()) < bound * sd, name
