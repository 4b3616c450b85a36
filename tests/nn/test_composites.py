"""Composites of nn modules with flows: an amortised flow guide (an embedding
network and a conditional flow) against the exact evidence; and the names that
moved from flowrox.nn to flowrox.train."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import flowrox
import flowrox.nn
from flowrox.bijections import RationalQuadraticSpline
from flowrox.flows import masked_autoregressive_flow


@pytest.mark.parametrize(
    "name", ["FunctionPrior", "fit_function_prior", "function_prior_loss"]
)
def test_the_moved_names_point_to_flowrox_train(name):
    with pytest.raises(AttributeError, match=rf"moved to flowrox\.train\.{name}"):
        getattr(flowrox.nn, name)
    assert name not in flowrox.nn.__all__
    with pytest.raises(AttributeError, match=r"has no attribute 'no_such_name'"):
        flowrox.nn.no_such_name  # noqa: B018


# The amortised guide's model: per group n, z_n ~ N(0, I_2) and J observations
# x_{n,j} ~ N(z_{n,1}^2 + z_{n,2}, s^2). The posterior of each z_n is a banana
# along z_2 = mean - z_1^2, symmetric in z_1 (two modes when the mean is large).
GROUP_SIZE, GROUP_NOISE = 8, 0.5


def banana_groups(x):
    with numpyro.plate("groups", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        mean = (z[:, 0] ** 2 + z[:, 1])[:, None]
        numpyro.sample("x", dist.Normal(mean, GROUP_NOISE).to_event(1), obs=x)


def simulate_groups(key, n):
    z_key, x_key = jax.random.split(key)
    z = jax.random.normal(z_key, (n, 2))
    noise = GROUP_NOISE * jax.random.normal(x_key, (n, GROUP_SIZE))
    return (z[:, 0] ** 2 + z[:, 1])[:, None] + noise


@jax.jit
def exact_log_evidence(x):
    # Given z_1, the shared z_2 ~ N(0, 1) makes x_n Gaussian with covariance
    # s^2 I + 1 1^T; z_1 is integrated on a fine grid.
    z1 = jnp.linspace(-8.0, 8.0, 4001)
    given_z1 = dist.LowRankMultivariateNormal(
        jnp.zeros(GROUP_SIZE),
        jnp.ones((GROUP_SIZE, 1)),
        jnp.full(GROUP_SIZE, GROUP_NOISE**2),
    )
    log_joint = given_z1.log_prob(x[:, None, :] - z1[:, None] ** 2)
    log_joint = log_joint + dist.Normal(0.0, 1.0).log_prob(z1)
    return jax.nn.logsumexp(log_joint, -1) + jnp.log(z1[1] - z1[0])


def summary(x):
    """Each group's mean and log standard deviation, the embedding's input."""
    return jnp.stack([x.mean(-1), jnp.log(x.std(-1))], -1)


@pytest.mark.slow
def test_amortised_flow_guide_beats_mean_field():
    n_groups, cond_dim = 128, 4
    x = simulate_groups(jax.random.key(0), n_groups)
    evidence = exact_log_evidence(x)
    # The reference itself, against importance sampling from the prior.
    z = jax.random.normal(jax.random.key(1), (400_000, 2))
    mean = z[:, 0] ** 2 + z[:, 1]
    log_weights = dist.Normal(mean[:, None], GROUP_NOISE).log_prob(x[0]).sum(-1)
    estimate = jax.nn.logsumexp(log_weights) - jnp.log(z.shape[0])
    assert abs(float(estimate - evidence[0])) < 0.05

    embedding = eqx.nn.MLP(
        2, cond_dim, 16, 1, activation=jnp.tanh, key=jax.random.key(2)
    )
    flow = masked_autoregressive_flow(
        jax.random.key(3),
        2,
        layers=3,
        hidden=16,
        cond_dim=cond_dim,
        transformer=RationalQuadraticSpline(-5.0, 5.0, 8),
    )

    def amortised_guide(x):
        embed = flowrox.param_module("embed", embedding)
        group_flow = flowrox.param_module("flow", flow)
        context = jax.vmap(embed)(summary(x))  # one context per group
        with numpyro.plate("groups", x.shape[0]):
            numpyro.sample("z", group_flow.with_condition(context))

    trace = numpyro.handlers.trace(numpyro.handlers.seed(amortised_guide, 0)).get_trace(
        x
    )
    assert trace["z"]["fn"].batch_shape == (n_groups,)
    assert trace["z"]["fn"].event_shape == (2,)
    params = {name for name, site in trace.items() if site["type"] == "param"}
    assert "embed/layers.0.weight" in params
    assert any(name.startswith("flow/bijection.") for name in params)

    steps = 2000
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, steps // 10, steps)
    elbos = {}
    for name, guide in [
        ("flow", amortised_guide),
        ("mean field", AutoNormal(banana_groups)),
    ]:
        svi = SVI(
            banana_groups, guide, optax.adam(schedule), Trace_ELBO(num_particles=4)
        )
        result = svi.run(jax.random.key(4), steps, x, progress_bar=False)
        # Fresh draws, many particles: not the training loss.
        estimator = Trace_ELBO(num_particles=500, vectorize_particles=True)
        elbos[name] = -float(
            estimator.loss(jax.random.key(5), result.params, banana_groups, guide, x)
        )
        if name == "flow":
            flow_params = result.params
    log_evidence = float(evidence.sum())
    # Per group: the flow guide's KL to the posterior, and the mean-field one's.
    flow_gap = (log_evidence - elbos["flow"]) / n_groups
    mean_field_gap = (log_evidence - elbos["mean field"]) / n_groups
    assert -0.02 < flow_gap < 0.15, flow_gap
    assert mean_field_gap > 1.0, mean_field_gap  # misses one of the two modes
    assert elbos["flow"] > elbos["mean field"] + 0.8 * n_groups
    # Amortised: on new groups, with no further training, the guide stays close.
    new = simulate_groups(jax.random.key(6), n_groups)
    new_elbo = -float(
        Trace_ELBO(num_particles=500, vectorize_particles=True).loss(
            jax.random.key(7), flow_params, banana_groups, amortised_guide, new
        )
    )
    assert (float(exact_log_evidence(new).sum()) - new_elbo) / n_groups < 0.2
