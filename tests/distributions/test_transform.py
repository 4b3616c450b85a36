"""BijectionTransform inside NumPyro's own transform machinery."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions.transforms import ComposeTransform, ExpTransform
from numpyro.infer import MCMC, NUTS
from numpyro.infer.reparam import TransformReparam

from flowrox import BijectionTransform, Flow
from flowrox.bijections import Affine, Chain, Exp, SinhArcsinh
from tests.helpers import ConditionalAffine


def _bijection():
    return Chain(
        [
            Affine(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.7])),
            SinhArcsinh(0.3, 1.4, shape=(2,)),
        ]
    )


@pytest.mark.slow
def test_transformed_distribution_matches_flow():
    bijection = _bijection()
    transform = BijectionTransform(bijection)
    assert transform.domain.event_dim == transform.codomain.event_dim == 1
    base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    transformed = dist.TransformedDistribution(base, transform)
    flow = Flow(dist.Normal(0.0, 1.0), bijection)
    ys = jax.random.normal(jax.random.key(0), (6, 2))
    np.testing.assert_allclose(transformed.log_prob(ys), flow.log_prob(ys), rtol=1e-5)

    # Samples carry their log-det as intermediates; NumPyro reuses it.
    y, intermediates = transformed.sample_with_intermediates(jax.random.key(1), (3,))
    np.testing.assert_allclose(
        transformed.log_prob(y, intermediates), flow.log_prob(y), rtol=1e-4, atol=1e-5
    )


def test_inverse_transform_and_composition_with_numpyro_transforms():
    bijection = _bijection()
    transform = BijectionTransform(bijection)
    x = jnp.array([[0.2, -0.3], [1.0, 2.0]])
    y = transform(x)
    np.testing.assert_allclose(transform.inv(y), x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        transform.inv.log_abs_det_jacobian(y, x),
        -transform.log_abs_det_jacobian(x, y),
        rtol=1e-5,
    )
    composed = ComposeTransform([transform, ExpTransform()])
    base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    numpyro_flow = dist.TransformedDistribution(base, composed)
    flowrox_flow = Flow(dist.Normal(0.0, 1.0), Chain([bijection, Exp((2,))]))
    values = jnp.exp(jax.random.normal(jax.random.key(2), (4, 2)))
    np.testing.assert_allclose(
        numpyro_flow.log_prob(values), flowrox_flow.log_prob(values), rtol=1e-5
    )


def test_batched_conditions_broadcast_against_inputs():
    bijection = ConditionalAffine(jax.random.key(0), 2, 3)
    conditions = jax.random.normal(jax.random.key(1), (5, 3))
    transform = BijectionTransform(bijection, conditions)
    assert transform.forward_shape((2,)) == (5, 2)
    y = transform(jnp.ones(2))
    assert y.shape == (5, 2)
    for c, row in zip(conditions, y, strict=True):
        np.testing.assert_allclose(row, bijection.transform(jnp.ones(2), c), rtol=1e-6)


@pytest.mark.slow
def test_transform_reparam_with_nuts_gives_the_conjugate_posterior():
    # y ~ N(1 + 2 x) through a BijectionTransform; NumPyro samples the base x.
    transform = BijectionTransform(Affine(jnp.array([1.0]), 2.0))
    observed = jnp.array([2.0, 3.0, 1.5])

    def model():
        with numpyro.handlers.reparam(config={"y": TransformReparam()}):
            y = numpyro.sample(
                "y",
                dist.TransformedDistribution(
                    dist.Normal(jnp.zeros(1), 1.0).to_event(1), transform
                ),
            )
        numpyro.sample(
            "obs", dist.Normal(y, 1.0).to_event(1).expand([3]), obs=observed[:, None]
        )

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(3))
    y = mcmc.get_samples()["y"][:, 0]
    precision = 1 / 4 + 3
    mean = (1 / 4 + observed.sum()) / precision
    assert "y_base" in mcmc.get_samples()
    np.testing.assert_allclose(y.mean(), mean, atol=0.05)
    np.testing.assert_allclose(y.var(), 1 / precision, rtol=0.15)


def test_condition_mismatch_raises():
    with pytest.raises(ValueError, match=r"expects no condition; got \(3,\)"):
        BijectionTransform(Affine(jnp.zeros(2)), jnp.zeros(3))
    with pytest.raises(
        ValueError, match=r"expects a condition of shape \(3,\); got None"
    ):
        BijectionTransform(ConditionalAffine(jax.random.key(0), 2, 3))


def test_forward_pass_runs_once_for_value_and_log_det(monkeypatch):
    # NeuTraReparam calls transform(x) and then log_abs_det_jacobian(x, y), and
    # ComposeTransform re-applies each part: the last call is remembered.
    calls = []
    original = SinhArcsinh.transform_and_log_det

    def counted(self, x, condition=None):
        calls.append(1)
        return original(self, x, condition)

    monkeypatch.setattr(SinhArcsinh, "transform_and_log_det", counted)
    bijection = _bijection()
    transform = BijectionTransform(bijection)
    x = jnp.array([[0.3, -1.2], [2.0, 0.1]])
    expected_y, expected_log_det = jax.vmap(bijection.transform_and_log_det)(x)
    for t in (transform, ComposeTransform([BijectionTransform(bijection)])):
        calls.clear()
        y = t(x)
        log_det = t.log_abs_det_jacobian(x, y)
        assert len(calls) == 1
        np.testing.assert_allclose(y, expected_y, rtol=1e-6)
        np.testing.assert_allclose(log_det, expected_log_det, rtol=1e-6)
    # A new input is computed afresh, not read from the memory.
    calls.clear()
    other = x + 1.0
    np.testing.assert_allclose(
        transform.log_abs_det_jacobian(other, None),
        jax.vmap(bijection.transform_and_log_det)(other)[1],
        rtol=1e-6,
    )
    assert len(calls) == 2
