"""AutoFlowGuide.median and .quantiles against NumPyro's exact ones for the
same Gaussian in the unconstrained space."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax.scipy.special import logit
from jax.scipy.stats import norm
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal

from flowrox.infer import AutoFlowGuide

LOC = jnp.array([0.3, -0.5, 1.0, 2.0])
SCALE = jnp.array([0.5, 1.2, 0.7, 2.0])
LEVELS = [0.1, 0.5, 0.9]
#: Each site's map from its constrained values back to the unconstrained ones.
UNCONSTRAIN = {"scale": jnp.log, "p": logit, "z": lambda z: z}


def model():
    numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    numpyro.sample("p", dist.Beta(2.0, 3.0))
    numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))


def _params(guide):
    svi = SVI(model, guide, optax.adam(0.0), Trace_ELBO())
    return dict(svi.get_params(svi.init(jax.random.key(0))))


@pytest.fixture(scope="module")
def guides():
    # A new flow is the identity, so with these parameters the guide is
    # N(LOC, SCALE^2) over the unconstrained latent vector, exactly as
    # AutoDiagonalNormal is with the same two vectors.
    guide = AutoFlowGuide(model)
    params = _params(guide) | {"auto_loc": LOC, "auto_scale": SCALE}
    reference = AutoDiagonalNormal(model)
    _params(reference)
    return guide, params, reference, {"auto_loc": LOC, "auto_scale": SCALE}


@pytest.mark.slow
def test_quantiles_and_median_are_the_guides_own_in_the_constrained_space(guides):
    guide, params, reference, reference_params = guides
    estimated = guide.quantiles(params, LEVELS)
    exact = reference.quantiles(reference_params, LEVELS)
    assert set(estimated) == set(exact) == {"scale", "p", "z"}
    # In the unconstrained space each element is normal: the estimate of its
    # q-quantile from n draws has standard error sqrt(q (1 - q) / n) / phi(z_q)
    # in units of its sd. Within four of them.
    levels = np.array(LEVELS)
    standard_error = np.sqrt(levels * (1 - levels) / 10_000) / norm.pdf(
        norm.ppf(levels)
    )
    site_sd = {
        name: np.asarray(guide._unpack_latent(SCALE)[name]) for name in UNCONSTRAIN
    }
    for name, unconstrain in UNCONSTRAIN.items():
        assert estimated[name].shape == exact[name].shape
        error = (unconstrain(estimated[name]) - unconstrain(exact[name])) / site_sd[
            name
        ]
        bound = 4 * standard_error.reshape((-1,) + (1,) * (error.ndim - 1))
        assert np.all(np.abs(error) < bound), (name, error)
    # The constrained quantiles are those of the sites' own supports.
    assert np.all(estimated["scale"] > 0)
    assert np.all((estimated["p"] > 0) & (estimated["p"] < 1))
    # The median is the 0.5 quantile from the same draws (the same default key).
    median = guide.median(params)
    for name, value in median.items():
        np.testing.assert_array_equal(value, estimated[name][1])
    np.testing.assert_allclose(
        median["scale"], np.exp(guide._unpack_latent(LOC)["scale"]), rtol=0.02
    )


@pytest.mark.slow
def test_the_key_and_the_draw_count_are_keywords(guides):
    guide, params, _, _ = guides
    first = guide.median(params, rng_key=jax.random.key(1), num_samples=500)
    again = guide.median(params, rng_key=jax.random.key(1), num_samples=500)
    other = guide.median(params, rng_key=jax.random.key(2), num_samples=500)
    np.testing.assert_array_equal(first["z"], again["z"])
    assert not np.array_equal(first["z"], other["z"])
    assert guide.quantiles(params, 0.25, num_samples=500)["z"].shape == (2,)


def test_levels_outside_the_unit_interval_are_refused():
    # Checked before the guide draws, so no parameters are needed.
    guide, params = AutoFlowGuide(model), {}
    with pytest.raises(ValueError, match=r"levels in \[0, 1\].*got \[0\.5, 1\.5\]"):
        guide.quantiles(params, [0.5, 1.5])
    with pytest.raises(ValueError, match="num_samples must be at least 1; got 0"):
        guide.median(params, num_samples=0)
