"""fit_to_data: exact optima, NaN handling, early stopping, frozen leaves."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from flowrox import Flow
from flowrox.bijections import Affine, Chain, Permute, RationalQuadraticSpline
from flowrox.train import fit_to_data
from tests.helpers import ConditionalAffine


def test_nan_loss_stops_with_an_error_naming_the_step():
    data = jnp.ones((100, 1)).at[3, 0].set(jnp.inf)
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1)))
    with pytest.raises(
        FloatingPointError, match=r"fit_to_data.*the loss became inf at step"
    ):
        fit_to_data(
            jax.random.key(1),
            flow,
            data,
            batch_size=100,
            val_fraction=0.5,
            progress=False,
        )


def test_early_stopping_returns_the_best_held_out_parameters():
    data = 0.5 + jax.random.normal(jax.random.key(0), (200, 1))
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1)))
    key = jax.random.key(3)
    trained, losses = fit_to_data(
        key,
        flow,
        data,
        learning_rate=0.5,
        batch_size=16,
        max_epochs=40,
        patience=5,
        progress=False,
        # Standardised, the affine flow starts at the optimum, so no epoch
        # would beat the initial parameters.
        standardize=False,
    )
    assert len(losses["val"]) < 40  # it stopped early
    # Rebuild the held-out split the loop used and score the returned flow on it.
    order = jax.random.permutation(jax.random.split(key)[0], 200)
    val = data[order[:20]]
    returned = float(-jnp.mean(trained.log_prob(val)))
    np.testing.assert_allclose(returned, min(losses["val"]), rtol=1e-5)
    assert returned < losses["val"][-1]  # the last epoch was worse: restored


def test_non_trainable_leaves_stay_fixed():
    spline = RationalQuadraticSpline(-3.0, 3.0, 4, shape=(2,))
    bijection = Chain([Affine(jnp.zeros(2)), Permute(jnp.array([1, 0])), spline])
    base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)  # array leaves: data, not trained
    flow = Flow(base, bijection)
    data = jnp.array([1.0, -1.0]) + 0.5 * jax.random.normal(jax.random.key(0), (300, 2))
    trained, _ = fit_to_data(
        jax.random.key(1), flow, data, max_epochs=3, progress=False
    )
    # The standardising wrapper's shifts and scales are buffers too.
    standardized = trained.bijection
    trained_bijection = standardized.bijection
    trained_spline = trained_bijection.bijections[2]
    for before, after in [
        (flow.base_dist.base_dist.loc, trained.base_dist.base_dist.loc),
        (spline.x0, trained_spline.x0),
        (spline.xf, trained_spline.xf),
        (
            bijection.bijections[1].permutation,
            trained_bijection.bijections[1].permutation,
        ),
    ]:
        np.testing.assert_array_equal(before, after)
    unfitted = fit_to_data(jax.random.key(1), flow, data, steps=0, progress=False)[0]
    np.testing.assert_array_equal(standardized.loc, unfitted.bijection.loc)
    np.testing.assert_array_equal(standardized.scale, unfitted.bijection.scale)
    assert not jnp.allclose(trained_bijection.bijections[0].loc, 0.0)
    assert not jnp.allclose(trained_spline.parameters, 0.0)


def test_a_one_device_mesh_gives_the_plain_result():
    data = 1.0 + jax.random.normal(jax.random.key(0), (200, 2))
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    options = dict(steps=12, batch_size=32, patience=None, progress=False)
    plain, plain_losses = fit_to_data(jax.random.key(1), flow, data, **options)
    mesh = jax.make_mesh((1,), ("data",))
    meshed, meshed_losses = fit_to_data(
        jax.random.key(1), flow, data, mesh=mesh, **options
    )
    np.testing.assert_allclose(
        meshed.bijection.bijection.loc, plain.bijection.bijection.loc, rtol=1e-6
    )
    np.testing.assert_allclose(meshed_losses["val"], plain_losses["val"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"mesh has axes \('data',\); got axis='x'"):
        fit_to_data(jax.random.key(1), flow, data, mesh=mesh, data_axis="x")


@pytest.mark.slow
def test_conditional_fit_learns_a_known_conditional_gaussian():
    # x | c ~ N(B c, 1). fit_to_data standardises data and conditions by
    # default, so in its coordinates the truth is x' | c' ~ N(a B' c' + b, a^2)
    # for constants a, b: ConditionalAffine (y = x exp(tanh(A c)) + B c) with
    # A = 0 followed by an Affine represents it exactly, and the NLL approaches
    # the truth's. (ConditionalAffine alone is exact only with
    # standardize=False: it has no constant scale or shift.)
    key_c, key_x = jax.random.split(jax.random.key(0))
    conditions = jax.random.normal(key_c, (3000, 2))
    means = conditions @ jnp.array([[1.0], [-0.5]])
    data = means + jax.random.normal(key_x, (3000, 1))
    bijection = Chain([ConditionalAffine(jax.random.key(1), 1, 2), Affine(jnp.zeros(1))])
    flow = Flow(dist.Normal(0.0, 1.0), bijection, condition=jnp.zeros(2))
    trained, _ = fit_to_data(
        jax.random.key(2),
        flow,
        data,
        condition=conditions,
        learning_rate=0.02,
        max_epochs=60,
        progress=False,
    )
    truth = -jnp.mean(dist.Normal(means[:, 0], 1.0).log_prob(data[:, 0]))
    fitted = -jnp.mean(
        Flow(dist.Normal(0.0, 1.0), trained.bijection, condition=conditions).log_prob(
            data
        )
    )
    assert abs(float(fitted - truth)) < 0.05


def test_fit_to_data_rejects_bad_shapes():
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    with pytest.raises(ValueError, match=r"expected data of shape \(n, \*\(2,\)\)"):
        fit_to_data(jax.random.key(0), flow, jnp.zeros((10, 3)), progress=False)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        fit_to_data(jax.random.key(0), flow, jnp.zeros((10, 2)), val_fraction=1.0)
    conditional = Flow(
        dist.Normal(0.0, 1.0),
        ConditionalAffine(jax.random.key(0), 2, 1),
        jnp.zeros((4, 1)),
    )
    with pytest.raises(ValueError, match=r"batch shape \(\)"):
        fit_to_data(jax.random.key(0), conditional, jnp.zeros((10, 2)))
