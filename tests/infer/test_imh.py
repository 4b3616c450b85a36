"""IndependentMetropolis: exact proposals accept everything; a wrong proposal
still gives the target's moments."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, SVI, Trace_ELBO

from flowrox import BijectionTransform, Flow
from flowrox.bijections import Affine, Chain, SinhArcsinh
from flowrox.infer import AutoFlowGuide, IndependentMetropolis
from flowrox.infer._target import draw

TARGET = dist.MultivariateNormal(
    jnp.array([1.0, -2.0]), jnp.array([[1.0, 0.6], [0.6, 2.0]])
)


def _potential(x):
    return -TARGET.log_prob(x)


def test_the_exact_target_as_proposal_accepts_every_move():
    kernel = IndependentMetropolis(TARGET, potential_fn=_potential)
    mcmc = MCMC(
        kernel,
        num_warmup=10,
        num_samples=300,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), extra_fields=("accept_prob", "accepted"))
    fields = mcmc.get_extra_fields()
    np.testing.assert_allclose(fields["accept_prob"], 1.0, rtol=1e-6)
    assert bool(fields["accepted"].all())
    assert mcmc.get_samples().shape == (600, 2)


def test_a_slightly_wrong_gaussian_proposal_gives_the_target_moments():
    # A proposal with the wrong mean and scale: accepts some moves, and the
    # chain still has the target's mean and covariance.
    proposal = Flow(
        dist.Normal(0.0, 1.0), Affine(jnp.array([1.3, -1.6]), jnp.array([1.4, 1.8]))
    )
    kernel = IndependentMetropolis(proposal, potential_fn=_potential)
    mcmc = MCMC(kernel, num_warmup=500, num_samples=20_000, progress_bar=False)
    mcmc.run(jax.random.key(1), extra_fields=("accept_prob",))
    samples = mcmc.get_samples()
    accept = float(mcmc.get_extra_fields()["accept_prob"].mean())
    assert 0.3 < accept < 0.95, accept
    ess = effective_sample_size(np.asarray(samples)[None])
    assert np.all(ess > 2000), ess
    # Monte-Carlo error: 4 standard errors of the mean, with the chain's ESS.
    sd = jnp.sqrt(jnp.diag(TARGET.covariance_matrix))
    np.testing.assert_array_less(
        jnp.abs(samples.mean(0) - TARGET.mean), 4 * sd / jnp.sqrt(ess)
    )
    np.testing.assert_allclose(jnp.cov(samples.T), TARGET.covariance_matrix, atol=0.1)


def _model():
    rate = numpyro.sample("rate", dist.Gamma(3.0, 2.0))
    numpyro.sample("mu", dist.Normal(rate, 1.0))


@pytest.mark.slow
def test_a_trained_guide_proposes_for_a_model_with_a_constrained_site():
    # rate ~ Gamma(3, 2), mu | rate ~ N(rate, 1): E rate = E mu = 1.5,
    # var rate = 0.75, var mu = 1 + 0.75.
    guide = AutoFlowGuide(_model)
    schedule = optax.cosine_decay_schedule(1e-2, 2000, 0.05)
    svi = SVI(_model, guide, optax.adam(schedule), Trace_ELBO(num_particles=8))
    result = svi.run(jax.random.key(0), 2000, progress_bar=False)
    kernel = IndependentMetropolis(guide, model=_model, params=result.params)
    mcmc = MCMC(
        kernel,
        num_warmup=200,
        num_samples=10_000,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), extra_fields=("accept_prob",))
    samples = mcmc.get_samples()
    assert float(mcmc.get_extra_fields()["accept_prob"].mean()) > 0.8
    assert np.all(samples["rate"] > 0)
    for name, mean, variance in (("rate", 1.5, 0.75), ("mu", 1.5, 1.75)):
        values = np.asarray(samples[name])
        # The defensive mixture keeps the chain from sticking in the tails: the
        # squared deviations are nearly independent too (without it, one run
        # held a tail draw for 188 steps and this ESS fell to 183).
        squares = (values - values.mean()) ** 2
        assert effective_sample_size(squares[None]) > 5000
        # 20k nearly independent draws: standard error of the mean <= 0.01,
        # of the variance about 1.5%.
        np.testing.assert_allclose(values.mean(), mean, atol=0.04)
        np.testing.assert_allclose(values.var(), variance, rtol=0.06)


def _wide_chain(defensive):
    # Target N(0, 3^2), proposal N(0, 1): p/q grows without bound in the tails.
    proposal = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1), jnp.ones(1)))
    target = dist.Normal(0.0, 3.0)
    kernel = IndependentMetropolis(
        proposal,
        potential_fn=lambda x: -target.log_prob(x).sum(),
        defensive=defensive,
        defensive_widen=4.0,
    )
    mcmc = MCMC(kernel, num_warmup=100, num_samples=20_000, progress_bar=False)
    mcmc.run(jax.random.key(2))
    x = np.asarray(mcmc.get_samples())[:, 0]
    return x, effective_sample_size(x[None] ** 2)


@pytest.mark.slow
def test_a_defensive_mixture_unsticks_a_proposal_lighter_than_its_target():
    x, ess = _wide_chain(0.2)
    # The widened base (sd 4) covers the target: the weights are bounded and
    # the chain mixes; the second moment is right within 4 standard errors.
    assert ess > 2000, ess
    np.testing.assert_allclose(np.mean(x**2), 9.0, atol=4 * 9 * np.sqrt(2 / ess))
    _, ess_alone = _wide_chain(0.0)
    # From N(0, 1) alone the chain sits on its widest draws for long stretches.
    assert ess_alone < ess / 10, (ess_alone, ess)


def test_the_defensive_proposal_has_the_mixture_density():
    # Identity flow: the proposal is 0.7 N(0, 1) + 0.3 N(0, 2.5^2), exactly.
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1), jnp.ones(1)))
    kernel = IndependentMetropolis(
        flow, potential_fn=_potential, defensive=0.3, defensive_widen=2.5
    )
    proposal = kernel._proposal.distribution
    x = jnp.linspace(-8.0, 8.0, 33)[:, None]
    expected = jnp.logaddexp(
        jnp.log(0.7) + dist.Normal(0.0, 1.0).log_prob(x[:, 0]),
        jnp.log(0.3) + dist.Normal(0.0, 2.5).log_prob(x[:, 0]),
    )
    np.testing.assert_allclose(proposal.log_prob(x), expected, rtol=1e-5)
    draws = proposal.sample(jax.random.key(0), (200_000,))[:, 0]
    # Variance 0.7 + 0.3 * 6.25 = 2.575.
    np.testing.assert_allclose(draws.var(), 2.575, rtol=0.02)


@pytest.mark.parametrize("form", ["flow", "transformed"])
def test_the_defensive_density_of_a_flow_over_a_shifted_base(form):
    # The widened component stretches the base about its mean m: for base
    # N(m, s^2) it is N(m, (w s)^2), then the flow's map applies.
    mean, sd, fraction, widen = jnp.array([0.5, -1.0]), jnp.array([1.0, 2.0]), 0.3, 3.0
    base = dist.Normal(mean, sd).to_event(1)
    bijection = Chain(
        [
            Affine(jnp.array([1.0, 2.0]), jnp.array([0.5, 1.5])),
            SinhArcsinh(jnp.full(2, 0.3), 1.2),
        ]
    )
    flow = Flow(base, bijection)
    if form == "transformed":
        flow = dist.TransformedDistribution(base, BijectionTransform(bijection))
    kernel = IndependentMetropolis(
        flow, potential_fn=_potential, defensive=fraction, defensive_widen=widen
    )
    proposal = kernel._proposal.distribution
    y = jax.random.normal(jax.random.key(0), (40, 2)) * 3.0
    x, inverse_log_det = jax.vmap(bijection.inverse_and_log_det)(y)
    expected = inverse_log_det + jnp.logaddexp(
        jnp.log(1 - fraction) + dist.Normal(mean, sd).log_prob(x).sum(-1),
        jnp.log(fraction) + dist.Normal(mean, widen * sd).log_prob(x).sum(-1),
    )
    np.testing.assert_allclose(proposal.log_prob(y), expected, rtol=1e-5)
    # The densities of the kernel's draws, from one pass, are the same function.
    value, log_q = draw(proposal, jax.random.key(1), (40,))
    x, inverse_log_det = jax.vmap(bijection.inverse_and_log_det)(value)
    expected = inverse_log_det + jnp.logaddexp(
        jnp.log(1 - fraction) + dist.Normal(mean, sd).log_prob(x).sum(-1),
        jnp.log(fraction) + dist.Normal(mean, widen * sd).log_prob(x).sum(-1),
    )
    np.testing.assert_allclose(log_q, expected, rtol=1e-4, atol=1e-4)
    # The base draws: mean m, variance (0.7 + 0.3 * 9) s^2 = 3.4 s^2.
    base_draws = jax.vmap(bijection.inverse)(
        proposal.sample(jax.random.key(2), (200_000,))
    )
    np.testing.assert_allclose(base_draws.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(base_draws.var(0), 3.4 * sd**2, rtol=0.02)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="exactly one target"):
        IndependentMetropolis(TARGET)
    with pytest.raises(TypeError, match="must be a flow"):
        IndependentMetropolis(lambda x: x, potential_fn=_potential)
    with pytest.raises(ValueError, match=r"params=svi_result\.params"):
        IndependentMetropolis(AutoFlowGuide(_model), model=_model)
    with pytest.raises(ValueError, match="no base distribution"):
        IndependentMetropolis(TARGET, potential_fn=_potential, defensive=0.1)
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2), jnp.ones(2)))
    with pytest.raises(ValueError, match=r"defensive must be in \[0, 1\)"):
        IndependentMetropolis(flow, potential_fn=_potential, defensive=1.0)
    with pytest.raises(ValueError, match="at least 1"):
        IndependentMetropolis(flow, potential_fn=_potential, defensive_widen=0.5)
