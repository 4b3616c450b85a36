"""fit_to_density: exact optima, the step's loss, sticking the landing, NaN handling."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

from flowrox import Flow
from flowrox.bijections import Affine
from flowrox.train import fit_to_density
from tests.helpers import ConditionalAffine


def test_fit_to_density_reaches_the_exact_gaussian_with_stick_the_landing():
    target = dist.MultivariateNormal(
        jnp.array([1.0, -1.0]), jnp.array([[1.0, 0.0], [0.0, 0.25]])
    )
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    trained, losses = fit_to_density(
        jax.random.key(0),
        flow,
        target.log_prob,
        learning_rate=0.03,
        steps=600,
        stick_the_landing=True,
        progress=False,
    )
    np.testing.assert_allclose(trained.bijection.loc, [1.0, -1.0], atol=0.02)
    np.testing.assert_allclose(trained.bijection.scale, [1.0, 0.5], rtol=0.02)
    # At the optimum the reverse KL (loss + log Z, log Z = 0 here) vanishes.
    assert abs(np.mean(losses[-50:])) < 5e-3


def test_nan_loss_stops_with_an_error_naming_the_step():
    flow = Flow(dist.Normal(0.0, 1.0), Affine(0.0, 1.0))
    with pytest.raises(
        FloatingPointError,
        match=r"fit_to_density: the loss became nan at step 0\. .*check the log "
        r"density \(at the flow's draws\).*No step had a finite loss; the initial "
        r"parameters are kept on the error.*read error\.flow",
    ) as raised:
        fit_to_density(jax.random.key(0), flow, jnp.log, steps=5, progress=False)
    assert raised.value.step == 0 and raised.value.losses == []
    assert float(raised.value.flow.bijection.loc) == 0.0


def test_a_nan_loss_mid_training_keeps_the_last_finite_flow():
    # The target is NaN beyond x = 1.5 and pulls the flow towards 3: once a
    # draw crosses, the loss is NaN.
    def log_density(x):
        return jnp.where(x > 1.5, jnp.nan, -0.5 * (x - 3.0) ** 2)

    flow = Flow(dist.Normal(0.0, 1.0), Affine(-3.0, 0.1))
    with pytest.raises(FloatingPointError, match=r"loss became nan at step") as raised:
        fit_to_density(
            jax.random.key(0),
            flow,
            log_density,
            learning_rate=0.1,
            steps=300,
            batch_size=16,
            progress=False,
        )
    error = raised.value
    assert error.step > 1 and len(error.losses) == error.step
    assert np.all(np.isfinite(error.losses))
    assert f"The parameters of step {error.step - 1}, the last with" in str(error)
    # The kept flow is the one whose loss was the last finite one: rebuild
    # that step's key (one split per step) and score the flow's draws.
    key = jax.random.key(0)
    for _ in range(error.step):
        key, step_key = jax.random.split(key)
    x, log_q = error.flow.sample_and_log_prob(step_key, (16,))
    np.testing.assert_allclose(
        jnp.mean(log_q - log_density(x)), error.losses[-1], rtol=1e-5
    )
    assert -3.0 < float(error.flow.bijection.loc) < 1.5  # moved towards 3


def test_a_conditional_flow_without_a_condition_is_refused():
    flow = Flow(dist.Normal(0.0, 1.0), ConditionalAffine(jax.random.key(1), 2, 3))
    with pytest.raises(
        ValueError,
        match=r"fit_to_density: the flow is conditional .*shape \(3,\)\) but holds "
        r"no condition\. .*flow\.with_condition\(c\)",
    ):
        fit_to_density(jax.random.key(0), flow, lambda x: -jnp.sum(x**2), steps=2)


@pytest.mark.parametrize("stick_the_landing", [False, True])
@pytest.mark.parametrize("conditional", [False, True])
def test_the_loss_is_the_reverse_kl_estimate_of_the_flows_own_draws(
    stick_the_landing, conditional
):
    # With a zero learning rate the reported losses are the estimates of the
    # untouched flow: the mean of log q - log p over its draws from each step's
    # key, computed here by Flow.sample_and_log_prob.
    if conditional:
        bijection = ConditionalAffine(jax.random.key(1), 2, 3)
        flow = Flow(dist.Normal(0.0, 1.0), bijection, condition=jnp.ones(3))
    else:
        flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.array([0.5, -1.0]), 2.0))
    target = dist.Normal(jnp.array([1.0, 0.0]), 0.7).to_event(1)
    key = jax.random.key(2)
    _, losses = fit_to_density(
        key,
        flow,
        target.log_prob,
        optimizer=optax.sgd(0.0),
        steps=3,
        batch_size=64,
        stick_the_landing=stick_the_landing,
        progress=False,
    )
    expected = []
    for _ in range(3):
        key, step_key = jax.random.split(key)
        x, log_q = flow.sample_and_log_prob(step_key, (64,))
        expected.append(float(jnp.mean(log_q - target.log_prob(x))))
    np.testing.assert_allclose(losses, expected, rtol=1e-5)


def test_sticking_the_landing_stands_still_at_the_optimum():
    # q = p exactly: the path-derivative gradient is zero for every draw, while
    # the full gradient keeps the score term's noise (2 mean(eps) for loc).
    target = dist.Normal(1.0, 0.5)
    flow = Flow(dist.Normal(0.0, 1.0), Affine(1.0, 0.5))
    moved = {}
    for stick_the_landing in (False, True):
        trained, losses = fit_to_density(
            jax.random.key(0),
            flow,
            target.log_prob,
            optimizer=optax.sgd(0.1),
            steps=20,
            batch_size=256,
            stick_the_landing=stick_the_landing,
            progress=False,
        )
        moved[stick_the_landing] = abs(float(trained.bijection.loc) - 1.0)
        np.testing.assert_allclose(losses[0], 0.0, atol=1e-5)  # KL(p || p) = 0
    assert moved[True] < 1e-5, moved
    assert moved[False] > 1e-3, moved


def test_the_step_is_traced_once():
    traces = []

    def log_density(x):
        traces.append(1)  # runs when traced, not when the compiled step runs
        return -0.5 * jnp.sum(x**2)

    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    fit_to_density(jax.random.key(0), flow, log_density, steps=5, progress=False)
    assert len(traces) == 1


def test_a_one_device_mesh_gives_the_plain_result():
    target = dist.Normal(jnp.array([1.0, -1.0]), 0.5).to_event(1)
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    options = dict(steps=10, batch_size=32, learning_rate=0.05, progress=False)
    plain, plain_losses = fit_to_density(
        jax.random.key(0), flow, target.log_prob, **options
    )
    mesh = jax.make_mesh((1,), ("data",))
    meshed, meshed_losses = fit_to_density(
        jax.random.key(0), flow, target.log_prob, mesh=mesh, **options
    )
    np.testing.assert_allclose(meshed.bijection.loc, plain.bijection.loc, rtol=1e-6)
    np.testing.assert_allclose(meshed_losses, plain_losses, rtol=1e-6)
    with pytest.raises(TypeError, match=r"expected a jax.sharding.Mesh, got str"):
        fit_to_density(jax.random.key(0), flow, target.log_prob, mesh="data")
    with pytest.raises(ValueError, match=r"mesh has axes \('data',\); got axis='x'"):
        fit_to_density(
            jax.random.key(0), flow, target.log_prob, mesh=mesh, data_axis="x"
        )
