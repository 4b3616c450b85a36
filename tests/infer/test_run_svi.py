"""run_svi: SVI.run's steps, and the best parameters back when training diverges."""

import re

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import optax_to_numpyro

from flowrox.infer import run_svi


def model():
    numpyro.sample("x", dist.Normal(1.0, 2.0).expand([3]).to_event(1))


def _svi(learning_rate):
    optimizer = optax_to_numpyro(optax.adam(learning_rate))
    return SVI(model, AutoNormal(model), optimizer, Trace_ELBO())


def _assert_same_params(got, expected):
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-7)


def test_a_run_that_converges_is_svi_run():
    svi = _svi(1e-2)
    expected = svi.run(jax.random.key(0), 300, progress_bar=False, stable_update=True)
    got = run_svi(svi, jax.random.key(0), 300)
    _assert_same_params(got.params, expected.params)
    np.testing.assert_allclose(got.losses, expected.losses, rtol=1e-6)


def test_a_diverged_run_returns_the_best_window_and_warns():
    # The step size jumps from 1e-2 to 1e3 after 200 steps: the guide's scale
    # and location are thrown far from the posterior and the loss explodes.
    svi = _svi(optax.piecewise_constant_schedule(1e-2, {200: 1e5}))
    with pytest.warns(UserWarning, match="run_svi: training diverged") as record:
        result = run_svi(svi, jax.random.key(0), 400, window=20)
    message = str(record[0].message)
    best_end = int(re.search(r"at best \(steps \d+-(\d+)\)", message).group(1))
    assert best_end <= 220
    # Exactly the parameters SVI.run has after the best window's last step.
    expected = svi.run(
        jax.random.key(0), best_end, progress_bar=False, stable_update=True
    )
    _assert_same_params(result.params, expected.params)
    assert result.losses.shape == (400,)
    final = svi.run(jax.random.key(0), 400, progress_bar=False, stable_update=True)
    loss = Trace_ELBO(num_particles=2000)
    key = jax.random.key(1)
    best_loss = float(loss.loss(key, result.params, model, svi.guide))
    with numpyro.validation_enabled(False):
        final_loss = float(loss.loss(key, final.params, model, svi.guide))
    # The model is normalised, so -ELBO is the KL from the guide to it.
    assert 0.0 <= best_loss < 5.0
    assert not final_loss < best_loss + 10.0  # NaN or far above the best


def test_a_run_with_no_finite_window_warns_and_returns_the_last_state():
    svi = _svi(1e-2)
    start = {"x_auto_loc": np.full(3, np.nan, np.float32)}
    with (
        numpyro.validation_enabled(False),
        pytest.warns(UserWarning, match="no window of the run had a finite mean"),
    ):
        result = run_svi(svi, jax.random.key(0), 20, init_params=start)
    assert np.isnan(result.params["x_auto_loc"]).all()


@pytest.mark.parametrize(
    ("steps", "window", "match"),
    [(0, None, "num_steps must be at least 1; got 0"), (10, 11, "window must be")],
)
def test_bad_arguments_are_refused(steps, window, match):
    with pytest.raises(ValueError, match=match):
        run_svi(_svi(1e-2), jax.random.key(0), steps, window=window)
