"""Flow as a NumPyro distribution, against exact answers."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.util import log_density

from flowrox import Flow, param_module
from flowrox.bijections import (
    AbstractBijection,
    Affine,
    Chain,
    Exp,
    Identity,
    Invert,
    NumericalInverse,
    Permute,
    Power,
    Reshape,
    Reverse,
    Scale,
    Scan,
    Sigmoid,
    SinhArcsinh,
    SoftPlus,
    Standardized,
    Tanh,
    Vmap,
)
from flowrox.flows import masked_autoregressive_flow, spline_flow
from tests.helpers import ConditionalAffine, autodiff_log_det


def _nonlinear_flow(key):
    keys = jax.random.split(key, 3)
    bijection = Chain(
        [
            Affine(jax.random.normal(keys[0], (3,)), jnp.array([0.5, 1.0, 2.0])),
            SinhArcsinh(0.4 * jax.random.normal(keys[1], (3,)), 1.3),
            Permute(jax.random.permutation(keys[2], 3)),
        ]
    )
    return Flow(dist.Normal(0.0, 1.0), bijection)


@pytest.mark.slow
def test_log_prob_equals_the_manual_change_of_variables(x64):
    flow = _nonlinear_flow(jax.random.key(0))
    ys = jax.random.normal(jax.random.key(1), (4, 3)) * 2.0
    expected = []
    for y in ys:
        x = flow.bijection.inverse(y)
        log_det = autodiff_log_det(flow.bijection.inverse, y)
        expected.append(jnp.sum(dist.Normal(0.0, 1.0).log_prob(x)) + log_det)
    np.testing.assert_allclose(flow.log_prob(ys), jnp.stack(expected), rtol=1e-10)


def test_affine_flow_equals_numpyro_normal_and_multivariate_normal():
    loc, scale = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.5, 2.0, 1.5])
    flow = Flow(dist.Normal(0.0, 1.0), Affine(loc, scale))
    ys = jax.random.normal(jax.random.key(2), (7, 3)) * 3.0
    normal = dist.Normal(loc, scale).to_event(1)
    mvn = dist.MultivariateNormal(loc, covariance_matrix=jnp.diag(scale**2))
    np.testing.assert_allclose(flow.log_prob(ys), normal.log_prob(ys), rtol=1e-5)
    np.testing.assert_allclose(flow.log_prob(ys), mvn.log_prob(ys), rtol=1e-5)


def test_shapes_follow_the_base_batch_shape():
    base = dist.Normal(jnp.zeros((4, 2)), 1.0).to_event(1)
    flow = Flow(base, Affine(jnp.zeros(2), 2.0))
    assert flow.batch_shape == (4,)
    assert flow.event_shape == (2,)
    samples = flow.sample(jax.random.key(0), (5,))
    assert samples.shape == (5, 4, 2)
    assert flow.log_prob(samples).shape == (5, 4)
    assert flow.log_prob(jnp.zeros(2)).shape == (4,)


def test_a_batch_of_conditions_is_a_batch_of_distributions():
    bijection = ConditionalAffine(jax.random.key(0), 3, 2)
    conditions = jax.random.normal(jax.random.key(1), (5, 2))
    flow = Flow(dist.Normal(0.0, 1.0), bijection, condition=conditions)
    assert flow.batch_shape == (5,)
    assert flow.sample(jax.random.key(2), (4,)).shape == (4, 5, 3)
    ys = jax.random.normal(jax.random.key(3), (5, 3))
    single = [
        Flow(dist.Normal(0.0, 1.0), bijection, condition=c).log_prob(y)
        for c, y in zip(conditions, ys, strict=True)
    ]
    np.testing.assert_allclose(flow.log_prob(ys), jnp.stack(single), rtol=1e-5)
    # The same point broadcast against every condition.
    assert flow.log_prob(ys[0]).shape == (5,)


def test_gradients_flow_into_the_condition():
    bijection = ConditionalAffine(jax.random.key(0), 3, 2)
    y = jnp.array([0.3, -1.0, 2.0])

    def flow_log_prob(condition):
        return Flow(dist.Normal(0.0, 1.0), bijection, condition=condition).log_prob(y)

    def exact_log_prob(condition):
        # y = x exp(tanh(A c)) + B c with x ~ N(0, I) is N(B c, exp(tanh(A c))^2).
        scale = jnp.exp(jnp.tanh(bijection.scale_weight @ condition))
        loc = bijection.shift_weight @ condition
        return dist.Normal(loc, scale).to_event(1).log_prob(y)

    condition = jnp.array([0.4, -0.7])
    gradient = jax.grad(flow_log_prob)(condition)
    np.testing.assert_allclose(gradient, jax.grad(exact_log_prob)(condition), rtol=1e-4)
    assert jnp.all(gradient != 0)


def test_sample_and_log_prob_is_consistent_with_log_prob():
    flow = _nonlinear_flow(jax.random.key(4))
    y, log_prob = flow.sample_and_log_prob(jax.random.key(5), (6,))
    assert y.shape == (6, 3) and log_prob.shape == (6,)
    np.testing.assert_allclose(log_prob, flow.log_prob(y), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, flow.sample(jax.random.key(5), (6,)), rtol=1e-6)


def test_samples_are_reparameterised():
    def mean_of_samples(loc):
        flow = Flow(dist.Normal(0.0, 1.0), Affine(loc, 2.0))
        assert flow.has_rsample
        return jnp.mean(flow.rsample(jax.random.key(0), (100,)))

    gradient = jax.grad(mean_of_samples)(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(gradient, [0.5, 0.5], rtol=1e-6)


def test_flow_is_a_pytree_that_trains_with_optax_to_the_exact_mle():
    data = jnp.array([1.0, -2.0]) + jnp.array([0.5, 2.0]) * jax.random.normal(
        jax.random.key(0), (400, 2)
    )
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2), 1.0))
    parameters, static = eqx.partition(flow, eqx.is_inexact_array)
    optimizer = optax.adam(0.05)

    @jax.jit
    def step(parameters, state):
        def loss(parameters):
            return -jnp.mean(eqx.combine(parameters, static).log_prob(data))

        value, gradient = jax.value_and_grad(loss)(parameters)
        updates, state = optimizer.update(gradient, state)
        return optax.apply_updates(parameters, updates), state, value

    state = optimizer.init(parameters)
    for _ in range(600):
        parameters, state, _ = step(parameters, state)
    trained = eqx.combine(parameters, static)
    # The Gaussian MLE is the sample mean and the (biased) sample std.
    np.testing.assert_allclose(trained.bijection.loc, data.mean(0), atol=5e-3)
    np.testing.assert_allclose(trained.bijection.scale, data.std(0), rtol=5e-3)
    paths = [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(flow)
    ]
    assert ".bijection.loc" in paths and ".bijection.log_scale" in paths


# A conjugate model: z ~ N(m, s^2) per dimension (through a flow), y_i ~ N(z, sigma^2).
PRIOR_LOC, PRIOR_SCALE, NOISE = jnp.array([1.0, -1.0]), jnp.array([2.0, 0.5]), 0.8
OBSERVED = jnp.array([[0.3, 1.1], [1.5, 0.2], [0.9, -0.4], [2.2, 0.8], [1.1, 0.5]])


def _prior_flow():
    # Affine then Reverse: z = reverse(m' + s' x), so m', s' are reversed m, s.
    bijection = Chain([Affine(PRIOR_LOC[::-1], PRIOR_SCALE[::-1]), Reverse((2,))])
    return Flow(dist.Normal(0.0, 1.0), bijection)


def _conjugate_model(observed=OBSERVED):
    z = numpyro.sample("z", _prior_flow())
    with numpyro.plate("data", observed.shape[0]):
        numpyro.sample("y", dist.Normal(z, NOISE).to_event(1), obs=observed)


def _exact_posterior():
    precision = 1 / PRIOR_SCALE**2 + OBSERVED.shape[0] / NOISE**2
    mean = (PRIOR_LOC / PRIOR_SCALE**2 + OBSERVED.sum(0) / NOISE**2) / precision
    return mean, 1 / precision


@pytest.mark.slow
def test_nuts_with_a_flow_prior_recovers_the_conjugate_posterior():
    mcmc = MCMC(
        NUTS(_conjugate_model), num_warmup=500, num_samples=2000, progress_bar=False
    )
    mcmc.run(jax.random.key(0))
    z = mcmc.get_samples()["z"]
    mean, variance = _exact_posterior()
    ess = effective_sample_size(np.asarray(z)[None])
    mean_error = np.sqrt(variance / ess)
    variance_error = variance * np.sqrt(2 / ess)
    assert np.all(np.abs(z.mean(0) - mean) < 4 * mean_error)
    assert np.all(np.abs(z.var(0) - variance) < 4 * variance_error)


def test_svi_with_a_flow_guide_of_param_sites_reaches_the_exact_posterior():
    def guide(observed=OBSERVED):
        del observed
        loc = numpyro.param("loc", jnp.zeros(2))
        scale = numpyro.param(
            "scale", jnp.ones(2), constraint=dist.constraints.positive
        )
        numpyro.sample("z", Flow(dist.Normal(0.0, 1.0), Affine(loc, scale)))

    schedule = optax.exponential_decay(0.05, transition_steps=1500, decay_rate=0.05)
    svi = SVI(
        _conjugate_model, guide, optax.adam(schedule), Trace_ELBO(num_particles=32)
    )
    result = svi.run(jax.random.key(1), 3000, progress_bar=False)
    mean, variance = _exact_posterior()
    sd = np.sqrt(variance)
    assert np.all(np.abs(result.params["loc"] - mean) < 0.05 * sd)
    np.testing.assert_allclose(result.params["scale"], sd, rtol=0.05)


def test_predictive_and_vmap_over_flows():
    prior = Predictive(_conjugate_model, num_samples=4000)(
        jax.random.key(2), observed=OBSERVED
    )
    np.testing.assert_allclose(prior["z"].mean(0), PRIOR_LOC, atol=0.1)
    np.testing.assert_allclose(prior["z"].std(0), PRIOR_SCALE, rtol=0.05)

    locs = jnp.arange(3.0)
    log_probs = jax.vmap(
        lambda loc: Flow(dist.Normal(0.0, 1.0), Affine(loc, 1.0)).log_prob(
            jnp.array(0.0)
        )
    )(locs)
    np.testing.assert_allclose(
        log_probs, dist.Normal(locs, 1.0).log_prob(0.0), rtol=1e-6
    )


def test_nuts_on_a_flow_after_exp_recovers_the_log_normal_mean():
    # Flow(Normal(0, 1), Exp()) is LogNormal(0, 1): its support is read from
    # Exp, so NUTS moves on the positive reals through NumPyro's transform.
    def model():
        numpyro.sample("z", Flow(dist.Normal(0.0, 1.0), Exp()))

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(3))
    z = np.asarray(mcmc.get_samples()["z"])
    assert np.all(z > 0)
    # Within four Monte-Carlo standard errors of the exact mean exp(1/2) and
    # of the exact mean of log z, 0 (sd exp(1/2) sqrt(e - 1) and 1).
    for values, exact, sd in [
        (z, np.exp(0.5), np.exp(0.5) * np.sqrt(np.e - 1.0)),
        (np.log(z), 0.0, 1.0),
    ]:
        ess = float(effective_sample_size(values[None]))
        assert abs(values.mean() - exact) < 4 * sd / np.sqrt(ess), (values.mean(), ess)


def _stacked(make, n=3):
    return Scan(eqx.filter_vmap(make)(jax.random.split(jax.random.key(0), n)))


def _independent(constraint, n):
    return constraints.independent(constraint, n)


@pytest.mark.parametrize(
    ("base", "bijection", "support"),
    [
        (dist.Normal(0.0, 1.0), Exp(), constraints.positive),
        (dist.Normal(0.0, 1.0), SoftPlus((2,)), _independent(constraints.positive, 1)),
        (dist.Normal(0.0, 1.0), Sigmoid(), constraints.unit_interval),
        (
            dist.Normal(0.0, 1.0),
            Tanh((3,)),
            _independent(constraints.interval(-1, 1), 1),
        ),
        (
            dist.Normal(0.0, 1.0),
            Affine(jnp.zeros(2)),
            _independent(constraints.real, 1),
        ),
        # Composites follow their layers.
        (dist.Normal(0.0, 1.0), Chain([Affine(1.0, 2.0), Exp()]), constraints.positive),
        (dist.Normal(0.0, 1.0), Chain([Exp(), Affine(1.0, 2.0)]), constraints.real),
        (dist.Normal(0.0, 1.0), Chain([Exp(), Scale(2.0)]), constraints.positive),
        (
            dist.Normal(0.0, 1.0),
            Chain([Sigmoid(), Power(2.0)]),
            constraints.unit_interval,
        ),
        (
            dist.Normal(0.0, 1.0),
            Chain(
                [
                    Exp((2,)),
                    _stacked(lambda k: Power(jnp.exp(jax.random.normal(k, (2,))))),
                ]
            ),
            _independent(constraints.positive, 1),
        ),
        (
            dist.Normal(0.0, 1.0),
            _stacked(
                lambda k: Chain(
                    [Affine(jax.random.normal(k, (2,))), Exp((2,)), Invert(Exp((2,)))]
                )
            ),
            _independent(constraints.real, 1),
        ),
        (
            dist.Normal(0.0, 1.0),
            Reshape(Exp((4,)), (2, 2)),
            _independent(constraints.positive, 2),
        ),
        (
            dist.Normal(0.0, 1.0),
            Vmap(Sigmoid((2,)), axis_size=3),
            _independent(constraints.unit_interval, 2),
        ),
        (
            dist.Normal(0.0, 1.0),
            Chain([Tanh((2,)), Reverse((2,)), Permute(jnp.array([1, 0]))]),
            _independent(constraints.interval(-1, 1), 1),
        ),
        # Inverses read the map backwards; a base off the reals goes through.
        (dist.LogNormal(0.0, 1.0), Invert(Exp()), constraints.real),
        (dist.Uniform(0.0, 1.0), Invert(Sigmoid()), constraints.real),
        (
            dist.Uniform(0.0, 1.0),
            Power(3.0, shape=(2,)),
            _independent(constraints.unit_interval, 1),
        ),
        (dist.Exponential(1.0), Identity(), constraints.positive),
        # Wrappers: a numerical inverse keeps the forward map's images; a
        # standardisation keeps the reals and leaves the rest unknown.
        (
            dist.Normal(0.0, 1.0),
            NumericalInverse(SoftPlus((2,))),
            _independent(constraints.positive, 1),
        ),
        (
            dist.Normal(0.0, 1.0),
            Standardized(Affine(jnp.zeros(2)), 3.0, 2.0),
            _independent(constraints.real, 1),
        ),
        (
            dist.Normal(0.0, 1.0),
            Standardized(Exp((2,)), 3.0, 2.0),
            _independent(constraints.real, 1),
        ),
        # Not known: the real arrays.
        (dist.LogNormal(0.0, 1.0), Exp(), constraints.real),
        (dist.Uniform(0.0, 1.0), Affine(1.0, 2.0), constraints.real),
    ],
)
def test_the_support_follows_the_bijection(base, bijection, support):
    flow = Flow(base, bijection)
    assert flow.support.event_dim == len(flow.event_shape)
    assert flow.support == support and support == flow.support
    assert type(flow.support) is type(support)


@pytest.mark.parametrize(
    ("base", "bijection"),
    [
        (dist.Normal(0.0, 1.0), Tanh((3,))),
        (dist.Normal(0.0, 1.0), Chain([Sigmoid((2,)), Power(2.0, shape=(2,))])),
        (dist.LogNormal(0.0, 1.0), Invert(Exp())),
    ],
)
def test_draws_lie_in_the_support_and_numpyros_transform_onto_it_inverts_them(
    base, bijection
):
    flow = Flow(base, bijection)
    draws = flow.sample(jax.random.key(0), (200,))
    assert bool(jnp.all(flow.support(draws)))
    transform = dist.transforms.biject_to(flow.support)
    np.testing.assert_allclose(
        transform(transform.inv(draws)), draws, rtol=1e-4, atol=1e-6
    )


def test_support_overrides_and_gets_the_event_dims_of_the_flow():
    flow = Flow(
        dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)), support=constraints.positive
    )
    assert flow.support == constraints.independent(constraints.positive, 1)
    vector = Flow(dist.Normal(0.0, 1.0), Exp((2,)), support=constraints.real_vector)
    assert vector.support == constraints.real_vector
    with pytest.raises(
        ValueError, match=r"support= has event dim 1, but .* shape \(\) \(0 dims\)"
    ):
        Flow(dist.Normal(0.0, 1.0), Exp(), support=constraints.real_vector)
    with pytest.raises(
        TypeError, match=r"support= to be a NumPyro constraint.* got str"
    ):
        Flow(dist.Normal(0.0, 1.0), Exp(), support="positive")


def test_a_conditional_flow_without_a_condition_says_how_to_give_one():
    bijection = ConditionalAffine(jax.random.key(0), 2, 3)
    flow = Flow(dist.Normal(0.0, 1.0), bijection)
    assert flow.condition is None and flow.batch_shape == ()
    message = (
        r"conditional .* shape \(3,\)\) but holds no condition.*"
        r"flow\.with_condition\(c\)"
    )
    with pytest.raises(ValueError, match=r"Flow\.log_prob: the flow is " + message):
        flow.log_prob(jnp.zeros(2))
    with pytest.raises(ValueError, match=r"Flow\.sample: the flow is " + message):
        flow.sample(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"condition=c"):
        flow.sample_and_log_prob(jax.random.key(0))
    with pytest.raises(ValueError, match=message):
        numpyro.handlers.seed(lambda: numpyro.sample("x", flow), 0)()
    # Given one, it is the flow of that context.
    c = jnp.array([0.5, -1.0, 2.0])
    y = jnp.array([0.3, 0.1])
    np.testing.assert_allclose(
        flow.with_condition(c).log_prob(y),
        Flow(dist.Normal(0.0, 1.0), bijection, condition=c).log_prob(y),
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: Flow(
                dist.Normal(jnp.zeros(3), 1.0).to_event(1), Affine(jnp.zeros(2))
            ),
            r"event shape \(3,\) .* events of shape \(2,\)",
        ),
        (
            lambda: Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)), jnp.zeros(3)),
            r"unconditional .* condition of shape \(3,\)",
        ),
        (
            lambda: Flow(
                dist.Normal(0.0, 1.0),
                ConditionalAffine(jax.random.key(0), 2, 3),
                condition=jnp.zeros((4, 2)),
            ),
            r"trailing dims are \(3,\), got shape \(4, 2\)",
        ),
        (lambda: Flow(dist.Normal(0.0, 1.0), "not a bijection"), r"flowrox bijection"),
    ],
)
def test_flow_construction_errors(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_log_prob_of_a_value_with_the_wrong_event_shape():
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    with pytest.raises(
        ValueError, match=r"trailing dims are \(2,\), got shape \(5, 3\)"
    ):
        flow.log_prob(jnp.zeros((5, 3)))


def test_pytree_keys_and_static_scalar_bases():
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    paths = [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(flow)
    ]
    # A base of Python numbers is static data: only the bijection's arrays remain.
    assert paths == [".bijection.loc", ".bijection.log_scale"]
    # A base with array parameters keeps them as (trainable) leaves.
    array_base = Flow(dist.Normal(jnp.zeros(2), 1.0).to_event(1), Affine(jnp.zeros(2)))
    array_paths = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_leaves_with_path(array_base)
    ]
    assert any(path.startswith(".base_dist") for path in array_paths)

    traces = []

    @jax.jit
    def log_prob(flow, y):
        traces.append(1)
        return flow.log_prob(y)

    y = jnp.ones(2)
    first = log_prob(flow, y)
    second_flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.ones(2)))
    second = log_prob(second_flow, y)
    assert len(traces) == 1, "equal bases must share one compiled function"
    np.testing.assert_allclose(
        first, dist.Normal(0.0, 1.0).log_prob(y).sum(), rtol=1e-6
    )
    np.testing.assert_allclose(
        second, dist.Normal(1.0, 1.0).log_prob(y).sum(), rtol=1e-6
    )
    log_prob(Flow(dist.Normal(0.0, 2.0), Affine(jnp.ones(2))), y)
    assert len(traces) == 2, "a different base must not reuse the compiled function"


# The sample-with-intermediates hook: a draw's density from its forward pass.


class _ForwardOnlyAffine(AbstractBijection):
    """y = loc + exp(log_scale) x, with no inverse (as a flow sampled one way)."""

    loc: jax.Array
    log_scale: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, dim: int):
        self.loc = jnp.zeros(dim)
        self.log_scale = jnp.zeros(dim)
        self.shape = (dim,)
        self.cond_shape = None

    def transform_and_log_det(self, x, condition=None):
        return self.loc + jnp.exp(self.log_scale) * x, jnp.sum(self.log_scale)

    def inverse_and_log_det(self, y, condition=None):
        raise NotImplementedError("_ForwardOnlyAffine has no inverse.")


class _TwoPassFlow(Flow):
    """A flow whose draws carry no intermediates: NumPyro inverts each draw."""

    def sample_with_intermediates(self, key, sample_shape=()):
        return self.sample(key, sample_shape), []


def _two_pass(flow: Flow) -> _TwoPassFlow:
    return _TwoPassFlow(flow.base_dist, flow.bijection, flow.condition)


def _perturbed(flow, key, scale=0.3):
    # Away from the identity that a freshly built flow is.
    parameters, static = eqx.partition(flow, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(parameters)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


Y_OBSERVED = jnp.array([1.0])


def _normal_model():
    # z ~ N(0, 1), y ~ N(z, 1), y = 1: the posterior is N(1/2, 1/2).
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    numpyro.sample("y", dist.Normal(z, 1.0).to_event(1), obs=Y_OBSERVED)


def _flow_guide(flow):
    def guide():
        numpyro.sample("z", param_module("q", flow))

    return guide


def test_a_flow_without_an_inverse_is_an_svi_guide_reaching_the_posterior():
    flow = Flow(dist.Normal(0.0, 1.0), _ForwardOnlyAffine(1))
    with pytest.raises(NotImplementedError, match="no inverse"):
        flow.log_prob(jnp.zeros(1))
    schedule = optax.cosine_decay_schedule(0.05, 1000, 0.01)
    svi = SVI(_normal_model, _flow_guide(flow), optax.adam(schedule), Trace_ELBO(64))
    result = svi.run(jax.random.key(0), 1000, progress_bar=False)
    assert bool(jnp.all(jnp.isfinite(result.losses)))
    assert float(result.losses[-50:].mean()) < float(result.losses[:10].mean())
    # The guide's family holds the posterior N(1/2, 1/2). Trace_ELBO's gradient
    # noise stays finite there (the posterior's score at the draw); over keys
    # 0-4 the fits were within 0.016 in loc and 1.3% in scale.
    np.testing.assert_allclose(result.params["q/bijection.loc"], [0.5], atol=0.05)
    np.testing.assert_allclose(
        jnp.exp(result.params["q/bijection.log_scale"]), [np.sqrt(0.5)], rtol=0.03
    )
    # At the posterior the loss is -log p(y) = -log N(1; 0, 2), draw by draw.
    evidence = float(dist.Normal(0.0, np.sqrt(2.0)).log_prob(1.0))
    np.testing.assert_allclose(result.losses[-50:].mean(), -evidence, atol=0.005)


def test_log_density_of_a_seeded_model_with_a_flow_prior_without_an_inverse():
    bijection = eqx.tree_at(
        lambda b: (b.loc, b.log_scale),
        _ForwardOnlyAffine(2),
        (jnp.array([0.5, -1.0]), jnp.log(jnp.array([2.0, 0.5]))),
    )

    def model():
        with numpyro.plate("copies", 3):
            z = numpyro.sample("z", Flow(dist.Normal(0.0, 1.0), bijection))
        numpyro.sample("y", dist.Normal(z, 1.0).to_event(2), obs=jnp.ones((3, 2)))

    seeded = numpyro.handlers.seed(model, jax.random.key(0))
    log_joint, trace = log_density(seeded, (), {}, {})
    z = trace["z"]["value"]
    assert z.shape == (3, 2)
    prior = dist.Normal(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.5]))
    expected = prior.log_prob(z).sum() + dist.Normal(z, 1.0).log_prob(1.0).sum()
    np.testing.assert_allclose(log_joint, expected, rtol=1e-6)


def _iaf(key):
    return masked_autoregressive_flow(key, 3, layers=2, hidden=8, one_pass="transform")


def _spline_coupling(key):
    return spline_flow(key, 3, layers=2, hidden=8, invert=False)


FLOW_BUILDERS = [
    pytest.param(_iaf, id="affine-iaf"),
    pytest.param(_spline_coupling, id="spline-coupling"),
]


def _guide_model():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with numpyro.plate("data", 4):
        numpyro.sample("y", dist.Normal(z, 0.5).to_event(1), obs=jnp.ones((4, 3)))


@pytest.mark.slow  # 12-15 s a flow, in float64
@pytest.mark.parametrize("build", FLOW_BUILDERS)
def test_the_hook_gives_the_two_pass_log_density_loss_and_gradient(build, x64):
    flow = _perturbed(build(jax.random.key(0)), jax.random.key(1))
    two_pass = _two_pass(flow)

    def prior_model(flow):
        def model():
            with numpyro.plate("copies", 5):
                numpyro.sample("z", flow)

        return numpyro.handlers.seed(model, jax.random.key(2))

    hooked, hooked_trace = log_density(prior_model(flow), (), {}, {})
    inverted, inverted_trace = log_density(prior_model(two_pass), (), {}, {})
    assert hooked_trace["z"]["intermediates"]
    assert not inverted_trace["z"]["intermediates"]
    np.testing.assert_array_equal(
        hooked_trace["z"]["value"], inverted_trace["z"]["value"]
    )
    np.testing.assert_allclose(hooked, inverted, rtol=1e-10)

    guide = numpyro.handlers.seed(_flow_guide(flow), jax.random.key(3))
    params = {
        name: site["value"]
        for name, site in numpyro.handlers.trace(guide).get_trace().items()
        if site["type"] == "param"
    }

    def loss(params, flow):
        elbo = Trace_ELBO(num_particles=4)
        return elbo.loss(jax.random.key(3), params, _guide_model, _flow_guide(flow))

    hooked_loss, hooked_grad = jax.value_and_grad(loss)(params, flow)
    inverted_loss, inverted_grad = jax.value_and_grad(loss)(params, two_pass)
    np.testing.assert_allclose(hooked_loss, inverted_loss, rtol=1e-10)
    for name in params:
        np.testing.assert_allclose(
            hooked_grad[name], inverted_grad[name], rtol=1e-7, atol=1e-10
        )


@pytest.mark.parametrize(
    "build",
    [
        FLOW_BUILDERS[0],
        pytest.param(_spline_coupling, id="spline-coupling", marks=pytest.mark.slow),
        pytest.param(_nonlinear_flow, id="nonlinear"),
    ],
)
def test_log_prob_with_intermediates_equals_log_prob_without(build):
    flow = _perturbed(build(jax.random.key(4)), jax.random.key(5))
    y, intermediates = flow.sample_with_intermediates(jax.random.key(6), (7,))
    assert y.shape == (7, 3)
    np.testing.assert_allclose(
        flow.log_prob(y, intermediates), flow.log_prob(y), rtol=1e-4, atol=1e-4
    )
    # sample_and_log_prob is the same computation; sample draws the same point.
    y_again, log_prob = flow.sample_and_log_prob(jax.random.key(6), (7,))
    np.testing.assert_array_equal(y_again, y)
    np.testing.assert_array_equal(log_prob, intermediates[0])
    np.testing.assert_allclose(flow.sample(jax.random.key(6), (7,)), y, rtol=1e-6)
    # Under jit (XLA may reorder float32 sums), and under vmap over keys.
    jitted = jax.jit(flow.sample_with_intermediates, static_argnums=1)
    y_jit, (log_prob_jit,) = jitted(jax.random.key(6), (7,))
    np.testing.assert_allclose(y_jit, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_prob_jit, log_prob, rtol=1e-5, atol=1e-4)
    keys = jax.random.split(jax.random.key(7), 5)
    ys, (log_probs,) = jax.vmap(flow.sample_with_intermediates)(keys)
    assert ys.shape == (5, 3) and log_probs.shape == (5,)
    np.testing.assert_allclose(log_probs, flow.log_prob(ys), rtol=1e-4, atol=1e-4)


def test_intermediates_with_a_batch_of_conditions():
    bijection = ConditionalAffine(jax.random.key(0), 3, 2)
    conditions = jax.random.normal(jax.random.key(1), (5, 2))
    flow = Flow(dist.Normal(0.0, 1.0), bijection, condition=conditions)
    y, (log_prob,) = flow.sample_with_intermediates(jax.random.key(2), (4,))
    assert y.shape == (4, 5, 3) and log_prob.shape == (4, 5)
    np.testing.assert_allclose(log_prob, flow.log_prob(y), rtol=1e-5, atol=1e-5)


def _batched_flow():
    # Batch shape (1,): expanding it to (4,) makes an interstitial dim.
    base = dist.Normal(jnp.zeros((1, 2)), 1.0).to_event(1)
    return Flow(base, Affine(jnp.array([1.0, -1.0]), jnp.array([0.5, 2.0])))


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda f: f.expand((3, 1)), id="expand"),
        pytest.param(lambda f: f.expand((4,)), id="expand-interstitial"),
        pytest.param(lambda f: f.expand_by((2,)).to_event(1), id="expand_by-to_event"),
    ],
)
def test_numpyro_wrappers_forward_the_intermediates(wrap):
    wrapped = wrap(_batched_flow())
    y, intermediates = wrapped.sample_with_intermediates(jax.random.key(0), (6,))
    assert intermediates, "the wrapper dropped the flow's intermediates"
    np.testing.assert_allclose(
        wrapped.log_prob(y, intermediates), wrapped.log_prob(y), rtol=1e-6
    )


def test_a_masked_flow_drops_the_intermediates_and_inverts():
    # MaskedDistribution (Distribution.mask, handlers.mask) forwards none, as
    # Flow.sample_with_intermediates documents.
    flow = _batched_flow().expand((4,))
    mask = jnp.array([True, False, True, True])
    masked = flow.mask(mask)
    y, intermediates = masked.sample_with_intermediates(jax.random.key(0), (3,))
    assert intermediates == []
    np.testing.assert_allclose(
        masked.log_prob(y), jnp.where(mask, flow.log_prob(y), 0.0), rtol=1e-6
    )
    assert flow.mask(True) is flow


def test_log_prob_rejects_foreign_intermediates():
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    y = jnp.zeros(2)
    with pytest.raises(ValueError, match="list holding one array"):
        flow.log_prob(y, [y, y])
    # An empty list, as NumPyro records at observed sites, runs the inverse.
    np.testing.assert_allclose(flow.log_prob(y, []), flow.log_prob(y), rtol=1e-6)


def test_sample_with_a_shape_where_the_key_goes_says_how_to_call_it():
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    with pytest.raises(TypeError, match=r"expected a random key .* got \(5,\)"):
        flow.sample((5,))
    with pytest.raises(TypeError, match=r"flow.sample\(jax.random.key\(0\), \(5,\)\)"):
        flow.sample_and_log_prob(5)
    # Typed and raw keys both draw.
    assert flow.sample(jax.random.key(0), (3,)).shape == (3, 2)
    assert flow.sample(jax.random.PRNGKey(0), (3,)).shape == (3, 2)
