"""The training core: the compiled step, the default optimizer, the finiteness
check and the sticking-the-landing estimator, against exact answers."""

import jax
import jax.numpy as jnp
import jax.scipy.stats as stats
import numpy as np
import optax
import pytest

from flowrox.train import compile_step, default_optimizer, sticking_the_landing
from flowrox.train._core import check_finite, check_finite_rows, run_steps


def test_the_step_equals_optax_by_hand_and_is_traced_once():
    traces = []

    def loss(parameters, static, batch):
        traces.append(1)  # runs when traced, not when the compiled step runs
        return jnp.sum(static["scale"] * (parameters["w"] - batch) ** 2)

    static = {"scale": jnp.array([1.0, 3.0])}
    optimizer = optax.adam(0.1)
    step = compile_step(loss, static, optimizer)
    parameters = reference = {"w": jnp.zeros(2)}
    state = reference_state = optimizer.init(parameters)
    batches = jax.random.normal(jax.random.key(0), (6, 2))
    for batch in batches:
        parameters, state, value = step(parameters, state, batch)
        expected, gradients = jax.value_and_grad(
            lambda p, batch=batch: loss(p, static, batch)
        )(reference)
        updates, reference_state = optimizer.update(gradients, reference_state)
        reference = optax.apply_updates(reference, updates)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        np.testing.assert_allclose(parameters["w"], reference["w"], rtol=1e-6)
    # One trace for the compiled step; the reference traced the loss per batch.
    assert len(traces) == 1 + len(batches)


def test_the_default_optimizer_is_clipped_adam_with_an_optional_schedule():
    # The first gradient's norm, 50, is clipped to 10.
    gradients = [
        jnp.array([30.0, -40.0]),
        jnp.array([0.5, 2.0]),
        jnp.array([-3.0, 1.0]),
    ]

    def run(optimizer):
        parameters = jnp.zeros(2)
        state = optimizer.init(parameters)
        out = []
        for gradient in gradients:
            updates, state = optimizer.update(gradient, state, parameters)
            out.append(updates)
        return out

    constant = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(0.01))
    schedule = optax.warmup_cosine_decay_schedule(0.0, 0.01, 2, 20)
    scheduled = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))
    for mine, theirs in [
        (default_optimizer(0.01), constant),
        (default_optimizer(0.01, steps=20), scheduled),
    ]:
        for a, b in zip(run(mine), run(theirs), strict=True):
            np.testing.assert_array_equal(a, b)
    # The schedule starts at zero: the first step does not move.
    np.testing.assert_array_equal(run(default_optimizer(0.01, steps=20))[0], 0.0)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_loss_names_the_loop_the_step_and_the_remedies(loss):
    kept = {"w": jnp.ones(2)}
    with pytest.raises(FloatingPointError) as raised:
        check_finite(
            loss,
            7,
            "a_loop",
            inputs="the data",
            remedy="Try X.",
            parameters=kept,
            losses=[1.0] * 7,
            rebuild=lambda parameters: ("flow", parameters),
        )
    message = str(raised.value)
    assert message.startswith(f"a_loop: the loss became {loss} at step 7. ")
    assert "Lower the learning rate" in message
    assert "check the data for infinite values" in message
    assert "The parameters of step 6, the last with a finite loss, are kept" in message
    assert "read error.flow" in message
    assert message.endswith("Try X.")
    # The error keeps what it was given.
    error = raised.value
    assert error.step == 7 and error.losses == [1.0] * 7
    assert error.parameters is kept and error.flow == ("flow", kept)
    check_finite(1.5, 7, "a_loop", inputs="the data")  # finite: no error
    # Without a loop result, the parameters; without inputs, no check to name.
    with pytest.raises(FloatingPointError, match=r"read error\.parameters") as raised:
        check_finite(loss, 0, "a_loop")
    assert "No step had a finite loss" in str(raised.value)
    assert "check" not in str(raised.value) and raised.value.flow is None


def test_run_steps_keeps_the_parameters_of_the_last_finite_loss():
    # The loss is the parameter itself, which each step doubles: 1, 2, 4, inf.
    def step(parameters, state, batch):
        del batch
        loss = jnp.where(parameters > 4.0, jnp.inf, parameters)
        return 2.0 * parameters, state, loss

    with pytest.raises(FloatingPointError, match=r"at step 3\. .* step 2") as raised:
        run_steps(step, jnp.array(1.0), None, range(6), owner="doubling")
    assert float(raised.value.parameters) == 4.0
    assert raised.value.losses == [1.0, 2.0, 4.0]
    parameters, _, losses = run_steps(step, jnp.array(1.0), None, range(2), owner="o")
    assert float(parameters) == 4.0 and losses == [1.0, 2.0]


def test_finite_rows_are_checked_with_the_first_bad_row_named():
    check_finite_rows("f", "data", jnp.ones((3, 2)))  # finite: no error
    check_finite_rows("f", "data", jnp.arange(3))  # integers: nothing to check
    with pytest.raises(ValueError, match=r"f: data holds nan at row 1 \(rows"):
        check_finite_rows("f", "data", jnp.array([0.0, jnp.nan, jnp.nan]))
    lattice = jnp.zeros((4, 2, 3)).at[2, 1, 0].set(jnp.inf).at[3, 0, 0].set(jnp.nan)
    with pytest.raises(
        ValueError,
        match=r"f: data holds inf at row 2, element \(1, 0\) \(rows holding NaN "
        r"or inf: 2 of 4\)",
    ):
        check_finite_rows("f", "data", lattice)


def test_sticking_the_landing_keeps_the_path_gradient_only():
    # x = mu + s eps, q = N(mu, s): log q(x) = log N(eps) - log s, whose total
    # gradient is (0, -1/s); its path part, (x - mu) / s^2 * (1, eps) taken
    # with a minus sign, is (-eps / s, -eps^2 / s).
    mu, s, eps = 0.3, 1.7, jnp.array(0.8)

    def draw(parameters, eps):
        return parameters[0] + parameters[1] * eps

    def log_q(parameters, x):
        return stats.norm.logpdf(x, parameters[0], parameters[1])

    def estimate(parameters):
        return sticking_the_landing(draw, log_q, parameters, eps)[1]

    parameters = jnp.array([mu, s])
    x, value = sticking_the_landing(draw, log_q, parameters, eps)
    np.testing.assert_allclose(x, mu + s * eps, rtol=1e-6)
    np.testing.assert_allclose(value, log_q(parameters, x), rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(estimate)(parameters), [-eps / s, -(eps**2) / s], rtol=1e-5
    )
    full = jax.grad(lambda p: log_q(p, draw(p, eps)))(parameters)
    np.testing.assert_allclose(full, [0.0, -1.0 / s], atol=1e-6)
