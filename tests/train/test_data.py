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


@pytest.mark.parametrize(
    ("data", "condition", "match"),
    [
        (
            jnp.ones((100, 2)).at[3, 1].set(jnp.inf),
            None,
            r"fit_to_data: data holds inf at row 3, column 1 \(rows holding NaN or "
            r"inf: 1 of 100\)\. Drop or impute those rows",
        ),
        (
            jnp.ones((100, 2)).at[7, 0].set(jnp.nan).at[50, 1].set(jnp.nan),
            None,
            r"data holds nan at row 7, column 0 \(rows holding NaN or inf: 2 of 100\)",
        ),
        (
            jnp.ones((100, 2)),
            jnp.zeros((100, 1)).at[42, 0].set(-jnp.inf),
            r"condition holds -inf at row 42, column 0 .*jnp\.isfinite\(condition\)",
        ),
    ],
    ids=["inf", "nan", "condition"],
)
def test_non_finite_data_is_refused_before_training_naming_the_row(
    data, condition, match
):
    if condition is None:
        flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    else:
        bijection = ConditionalAffine(jax.random.key(0), 2, 1)
        flow = Flow(dist.Normal(0.0, 1.0), bijection)
    with pytest.raises(ValueError, match=match):
        fit_to_data(jax.random.key(1), flow, data, condition=condition, progress=False)


def test_a_nan_loss_keeps_the_flow_of_the_last_finite_step_on_the_error():
    # Adam's steps are about the learning rate long: at 1e3 the log-scale
    # overflows within a few steps, and the loss becomes inf.
    data = jax.random.normal(jax.random.key(0), (100, 1))
    flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1)))
    key = jax.random.key(1)
    with pytest.raises(
        FloatingPointError,
        match=r"fit_to_data: the loss became (inf|nan) at step (\d+)\. Lower the "
        r"learning rate.*The parameters of step \d+, the last with a finite loss, "
        r"are kept on the error.*read error\.flow\.",
    ) as raised:
        fit_to_data(
            key,
            flow,
            data,
            learning_rate=1e3,
            batch_size=10,
            standardize=False,
            progress=False,
        )
    error = raised.value
    step = error.step
    assert step >= 1 and len(error.losses) == step
    assert np.all(np.isfinite(error.losses))
    kept = error.flow
    assert isinstance(kept, Flow)
    # The kept flow is the one whose minibatch loss was the last finite one:
    # rebuild the split and the shuffle of the first epoch (10 steps of 10).
    assert step < 9
    split_key, key = jax.random.split(key)
    train = data[jax.random.permutation(split_key, 100)[10:]]
    _, shuffle_key = jax.random.split(key)
    rows = jax.random.permutation(shuffle_key, 90)[(step - 1) * 10 : step * 10]
    np.testing.assert_allclose(
        -jnp.mean(kept.log_prob(train[rows])), error.losses[-1], rtol=1e-5
    )
    assert not np.allclose(kept.bijection.loc, 0.0)  # trained, not the start


def test_condition_errors_name_the_argument_its_shape_and_the_fix():
    data = jnp.zeros((100, 2))
    conditional = Flow(
        dist.Normal(0.0, 1.0), ConditionalAffine(jax.random.key(0), 2, 1)
    )
    cases = [
        (
            jnp.zeros(100),
            r"condition= has shape \(100,\); the flow's bijection takes conditions "
            r"of shape \(1,\), so with 100 data rows condition= must have shape "
            r"\(100, 1\)\. Add the context axis: condition=c\[:, None\]\.",
        ),
        (jnp.zeros((90, 1)), r"shape \(90, 1\).*\(100 data rows, 90 conditions\)"),
        (jnp.zeros((100, 3)), r"shape \(100, 3\).*build the flow with cond_dim=3"),
        (jnp.zeros((100, 1, 1)), r"Reshape it: condition=c\.reshape\(\(100, 1\)\)"),
        (
            None,
            r"the flow is conditional .* but no condition= was given\. Pass one "
            r"condition per data row: .*condition=c\) with c of shape \(100, 1\)",
        ),
    ]
    for condition, match in cases:
        with pytest.raises(ValueError, match=match):
            fit_to_data(
                jax.random.key(0),
                conditional,
                data,
                condition=condition,
                progress=False,
            )
    plain = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(2)))
    with pytest.raises(
        ValueError, match=r"unconditional .* condition= was given, of shape \(100, 1\)"
    ):
        fit_to_data(jax.random.key(0), plain, data, condition=jnp.zeros((100, 1)))


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
    bijection = Chain(
        [ConditionalAffine(jax.random.key(1), 1, 2), Affine(jnp.zeros(1))]
    )
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
