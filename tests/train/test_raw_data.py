"""fit_to_data on raw data: the standardising layer, its log-det, the spline
interval warning, and fits of data far from unit scale against the truth."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flowjax import distributions as peer_distributions
from flowjax import flows as peer_flows
from flowjax import train as peer_train

from flowrox import Flow
from flowrox.bijections import Identity, RationalQuadraticSpline, Standardized
from flowrox.flows import coupling_flow, spline_flow
from flowrox.train import fit_to_data
from tests.helpers import ConditionalAffine


def _banana(key, n):
    # x1 ~ N(0, 2^2), x2 | x1 ~ N(x1^2 / 4, 0.5^2): x2 reaches about 16.
    first, second = jax.random.split(key)
    x1 = 2.0 * jax.random.normal(first, (n,))
    x2 = x1**2 / 4 + 0.5 * jax.random.normal(second, (n,))
    return jnp.stack([x1, x2], -1)


def _banana_log_prob(x):
    marginal = dist.Normal(0.0, 2.0).log_prob(x[:, 0])
    return marginal + dist.Normal(x[:, 0] ** 2 / 4, 0.5).log_prob(x[:, 1])


MIXTURE = dist.MixtureSameFamily(
    dist.Categorical(jnp.array([0.3, 0.7])),
    dist.Normal(jnp.array([-2.0, 1.5]), jnp.array([0.5, 1.0])),
)


def _train_part(key, data, val_fraction=0.1):
    # The training rows fit_to_data uses (it splits with the first subkey).
    n = data.shape[0]
    n_val = max(1, round(n * val_fraction))
    order = jax.random.permutation(jax.random.split(key)[0], n)
    return data[order[n_val:]]


def test_the_standardising_layer_gives_the_data_gaussian_exactly():
    # An identity flow has nothing to train: the fitted flow is the Gaussian
    # with the training part's mean and sd, whose density (affine log-det
    # included) is known in closed form.
    data = jnp.array([100.0, -3.0]) + jnp.array([1e-3, 1e3]) * jax.random.normal(
        jax.random.key(0), (500, 2)
    )
    flow = Flow(dist.Normal(0.0, 1.0), Identity((2,)))
    key = jax.random.key(1)
    fitted, _ = fit_to_data(key, flow, data, steps=1, progress=False)
    assert isinstance(fitted.bijection, Standardized)
    train = _train_part(key, data)
    np.testing.assert_allclose(fitted.bijection.loc, train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(fitted.bijection.scale, train.std(0), rtol=1e-4)
    gaussian = dist.Normal(train.mean(0), train.std(0)).to_event(1)
    np.testing.assert_allclose(
        fitted.log_prob(data[:5]), gaussian.log_prob(data[:5]), rtol=1e-4
    )
    # Fitting again trains the flow inside; it is not standardised twice.
    refitted, _ = fit_to_data(key, fitted, data, steps=1, progress=False)
    assert isinstance(refitted.bijection.bijection, Identity)
    unchanged, _ = fit_to_data(key, flow, data, steps=1, standardize=False)
    assert isinstance(unchanged.bijection, Identity)


def test_conditions_are_standardised_before_the_bijection_sees_them():
    inner = ConditionalAffine(jax.random.key(0), 1, 2)
    conditions = jnp.array([50.0, -0.01]) + jnp.array(
        [10.0, 0.001]
    ) * jax.random.normal(jax.random.key(1), (400, 2))
    data = jax.random.normal(jax.random.key(2), (400, 1))
    flow = Flow(dist.Normal(0.0, 1.0), inner, condition=jnp.zeros(2))
    key = jax.random.key(3)
    fitted, _ = fit_to_data(key, flow, data, condition=conditions, steps=1)
    train_c = _train_part(key, conditions)
    bijection = fitted.bijection
    np.testing.assert_allclose(bijection.cond_loc, train_c.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bijection.cond_scale, train_c.std(0), rtol=1e-4)
    x, c = jnp.array([0.3]), conditions[0]
    standardised = (c - bijection.cond_loc) / bijection.cond_scale
    y, log_det = bijection.bijection.transform_and_log_det(x, standardised)
    expected = bijection.loc + bijection.scale * y
    np.testing.assert_allclose(bijection.transform(x, c), expected, rtol=1e-6)
    np.testing.assert_allclose(
        bijection.transform_and_log_det(x, c)[1],
        log_det + jnp.log(bijection.scale).sum(),
        rtol=1e-6,
    )


def test_a_long_tailed_element_is_widened_into_the_spline_interval():
    data = _banana(jax.random.key(0), 4000)
    flow = spline_flow(jax.random.key(1), 2, layers=1, hidden=4)
    key = jax.random.key(2)
    fitted, _ = fit_to_data(key, flow, data, steps=1, progress=False)
    train = _train_part(key, data)
    standardised = (train - fitted.bijection.loc) / fitted.bijection.scale
    # All but 0.01% of each element's training values lie inside [-5, 5]:
    # x1 (Gaussian) keeps its sd, x2 (x1^2 / 4, a long right tail) is widened.
    outside = jnp.mean(jnp.abs(standardised) > 5.0 + 1e-5, axis=0)
    assert float(outside.max()) <= 1e-4 + 1.0 / train.shape[0]
    np.testing.assert_allclose(fitted.bijection.scale[0], train[:, 0].std(), rtol=1e-4)
    assert float(fitted.bijection.scale[1]) > 1.3 * float(train[:, 1].std())


def test_the_warning_names_bound_and_standardisation_when_values_fall_outside():
    data = _banana(jax.random.key(0), 2000)  # x2 beyond 5 for about 3%
    flow = spline_flow(jax.random.key(1), 2, layers=1, hidden=4)
    with pytest.warns(UserWarning, match=r"outside the splines' interval.*bound="):
        fit_to_data(
            jax.random.key(2), flow, data, steps=1, standardize=False, progress=False
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_to_data(jax.random.key(2), flow, data, steps=1, progress=False)
        fit_to_data(jax.random.key(2), flow, data / 4.0, steps=1, standardize=False)
    # A spline that learns its bounds is not held to its initial interval.
    learned = Flow(
        dist.Normal(0.0, 1.0),
        RationalQuadraticSpline(
            -1.0, 1.0, 4, shape=(2,), learn_lower_bound=True, learn_upper_bound=True
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_to_data(jax.random.key(2), learned, data, steps=1, standardize=False)


@pytest.mark.parametrize(
    ("offset", "scale"),
    [
        pytest.param(100.0, 1.0, marks=pytest.mark.slow),
        pytest.param(0.0, 1e-3, marks=pytest.mark.slow),
        pytest.param(0.0, 1e3, marks=pytest.mark.slow),
    ],
    ids=["offset-100", "scale-1e-3", "scale-1e3"],
)
def test_data_far_from_unit_scale_fit_as_well_as_the_truth_allows(offset, scale):
    # The mixture moved to another location or scale: the density of the
    # moved data is the mixture's, less log(scale).
    data = offset + scale * MIXTURE.sample(jax.random.key(0), (3000,))
    held_out = offset + scale * MIXTURE.sample(jax.random.key(1), (3000,))
    truth = float(-MIXTURE.log_prob((held_out - offset) / scale).mean())
    truth += float(np.log(scale))
    flow = spline_flow(jax.random.key(2), (), layers=4)
    fitted, _ = fit_to_data(jax.random.key(3), flow, data, progress=False)
    nll = float(-fitted.log_prob(held_out).mean())
    print(f"held-out NLL {nll:.4f}, true density {truth:.4f}")
    assert truth - 0.05 < nll < truth + 0.05, (nll, truth)


@pytest.mark.slow
def test_the_raw_banana_reaches_the_true_density_with_the_defaults():
    data, held_out = (
        _banana(jax.random.key(0), 10_000),
        _banana(jax.random.key(1), 5000),
    )
    truth = float(-_banana_log_prob(held_out).mean())
    fitted, _ = fit_to_data(
        jax.random.key(2), spline_flow(jax.random.key(3), 2), data, progress=False
    )
    nll = float(-jax.jit(fitted.log_prob)(held_out).mean())
    print(f"held-out NLL {nll:.4f}, true density {truth:.4f}")
    # Measured gap: 0.009 nats (without standardisation: 0.52).
    assert truth - 0.03 < nll < truth + 0.05, (nll, truth)


@pytest.mark.slow
def test_the_raw_banana_fit_is_no_worse_than_flowjax_defaults():
    data, held_out = (
        _banana(jax.random.key(0), 10_000),
        _banana(jax.random.key(1), 5000),
    )
    fitted, _ = fit_to_data(
        jax.random.key(2), spline_flow(jax.random.key(3), 2), data, progress=False
    )
    nll = float(-jax.jit(fitted.log_prob)(held_out).mean())
    base = peer_distributions.Normal(jnp.zeros(2))
    peer = peer_flows.coupling_flow(jax.random.key(3), base_dist=base)
    peer, _ = peer_train.fit_to_data(jax.random.key(2), peer, data, show_progress=False)
    peer_nll = float(-peer.log_prob(held_out).mean())
    print(f"flowrox {nll:.4f}, flowjax {peer_nll:.4f}")
    # Measured with XLA's default pipeline: flowrox 0.009, flowjax 0.010 nats
    # above the truth. Under the tests' XLA flags (conftest.py) rounding takes
    # both trainings down other paths: flowrox 0.017, flowjax 0.010. That
    # 0.01-nat spread between equally good fits is the bound: no worse than the
    # peer by more than its own training noise.
    assert nll < peer_nll + 0.01, (nll, peer_nll)


_RING_ANGLES = 2 * jnp.pi * jnp.arange(8) / 8
_RING_MEANS = 2.0 * jnp.stack([jnp.cos(_RING_ANGLES), jnp.sin(_RING_ANGLES)], -1)


def _ring(key, n):
    index_key, noise_key = jax.random.split(key)
    index = jax.random.randint(index_key, (n,), 0, 8)
    return _RING_MEANS[index] + 0.2 * jax.random.normal(noise_key, (n, 2))


def _ring_log_prob(x):
    components = dist.Normal(_RING_MEANS, 0.2).to_event(1).log_prob(x[:, None, :])
    return jax.scipy.special.logsumexp(components, -1) - jnp.log(8.0)


@pytest.mark.slow
def test_the_affine_coupling_flow_fits_a_ring_with_the_defaults():
    # With an unbounded affine log-scale this fit turned NaN at step 287: a
    # point in the tails grew through the eight layers until it overflowed.
    # coupling_flow's BoundedAffine keeps each layer's scale within e^(+-3).
    data, held_out = _ring(jax.random.key(0), 10_000), _ring(jax.random.key(1), 5000)
    fitted, _ = fit_to_data(
        jax.random.key(2), coupling_flow(jax.random.key(3), 2), data, progress=False
    )
    gap = float(
        -jax.jit(fitted.log_prob)(held_out).mean() + _ring_log_prob(held_out).mean()
    )
    print(f"held-out gap {gap:.4f} nats")
    # Measured: 0.18 nats (flowjax's default coupling_flow: 0.69, bench_density).
    assert 0.0 < gap < 0.3
