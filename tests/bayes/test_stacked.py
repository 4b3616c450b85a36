"""A user's own stacked module (a `flowrox.stacked()` field) is first-class.

The module below is equinox's scan-over-layers idiom, written as a user would:
the layers are built with `eqx.filter_vmap` and applied with `jax.lax.scan`,
and nothing of flowrox's own classes is involved. Declaring the field
`flowrox.stacked()` gives it what `Scan` gets: one site per leaf, inside a plate
over the layer axis, named after the module that holds the field.

The network is linear in its weights, `f(x) = sum_l (W_l x + b_l)`, so with
normal priors and noise the posterior over every weight is Gaussian in closed
form (its mean and covariance from the stacked design matrix).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoLaplaceApproximation
from numpyro.infer.util import log_density

import flowrox
from flowrox.bijections import Affine, Scan

N_LAYERS, IN, ALPHA, NOISE = 3, 2, 0.8, 0.3


class SummedLayers(eqx.Module):
    """`f(x) = sum_l layer_l(x)`, the layers stacked and run by `lax.scan`."""

    layers: eqx.nn.Linear = flowrox.stacked()

    def __init__(self, key):
        keys = jax.random.split(key, N_LAYERS)
        self.layers = eqx.filter_vmap(lambda k: eqx.nn.Linear(IN, 1, key=k))(keys)

    def __call__(self, x):
        parameters, static = eqx.partition(self.layers, eqx.is_array)

        def step(total, layer_parameters):
            layer = eqx.combine(layer_parameters, static)
            return total + layer(x)[0], None

        return jax.lax.scan(step, jnp.zeros(()), parameters)[0]


class UnrolledLayers(eqx.Module):
    """The same network with the layers in a list (no stacking)."""

    layers: list

    def __call__(self, x):
        return sum(layer(x)[0] for layer in self.layers)


X = jax.random.normal(jax.random.key(0), (15, IN))
Y = (
    X @ jnp.array([0.9, -0.6])
    + 0.4
    + NOISE * jax.random.normal(jax.random.key(1), (15,))
)
NET = flowrox.bayesian(SummedLayers(jax.random.key(2)), dist.Normal(0.0, ALPHA))


def _model(module=NET):
    net = flowrox.sample_module("net", module)
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(jax.vmap(net)(X), NOISE), obs=Y)


def _exact():
    """Posterior mean and covariance of (W_1, ..., W_L, b_1, ..., b_L)."""
    features = jnp.concatenate(
        [jnp.tile(X, (1, N_LAYERS)), jnp.ones((X.shape[0], N_LAYERS))], axis=1
    )
    precision = features.T @ features / NOISE**2 + jnp.eye(features.shape[1]) / ALPHA**2
    covariance = jnp.linalg.inv(precision)
    return covariance @ features.T @ Y / NOISE**2, covariance


def _flat(weights, biases):
    """(..., L, 1, IN) and (..., L, 1) -> (..., L*IN + L), in _exact's order."""
    lead = weights.shape[:-3]
    return np.concatenate(
        [np.reshape(weights, (*lead, -1)), np.reshape(biases, (*lead, -1))], axis=-1
    )


def test_a_stacked_field_gets_one_site_per_leaf_in_a_plate_named_after_its_module():
    trace = numpyro.handlers.trace(numpyro.handlers.seed(_model, 0)).get_trace()
    sites = {
        name: site
        for name, site in trace.items()
        if name.startswith("net/") and site["type"] == "sample"
    }
    assert sorted(sites) == ["net/layers.bias", "net/layers.weight"]
    assert trace["net/layers"]["type"] == "plate"
    for site in sites.values():
        frames = [(f.name, f.size, f.dim) for f in site["cond_indep_stack"]]
        assert frames == [("net/layers", N_LAYERS, -1)]
    # Each layer's prior is its own: the plate holds the layer axis, the event
    # holds the layer's shape.
    weight = sites["net/layers.weight"]
    assert weight["value"].shape == (N_LAYERS, 1, IN)
    assert weight["fn"].batch_shape == (N_LAYERS,)
    assert weight["fn"].event_shape == (1, IN)


def test_the_same_names_and_plates_as_scan():
    # Scan of stacked Affine layers inside a user module: the user field and the
    # Scan each open a plate named after their owner.
    class Holder(eqx.Module):
        flow: Scan

    keys = jax.random.split(jax.random.key(3), N_LAYERS)
    holder = flowrox.bayesian(
        Holder(
            Scan(eqx.filter_vmap(lambda k: Affine(jax.random.normal(k, (2,))))(keys))
        ),
        dist.Normal(0.0, 1.0),
    )
    trace = numpyro.handlers.trace(
        numpyro.handlers.seed(lambda: flowrox.sample_module("h", holder), 0)
    ).get_trace()
    frames = [
        (f.name, f.size) for f in trace["h/flow.bijection.loc"]["cond_indep_stack"]
    ]
    assert frames == [("h/flow/layers", N_LAYERS)]


def test_the_log_joint_equals_the_unrolled_networks():
    weights = jax.random.normal(jax.random.key(4), (N_LAYERS, 1, IN))
    biases = jax.random.normal(jax.random.key(5), (N_LAYERS, 1))
    stacked_log_joint, _ = log_density(
        _model, (), {}, {"net/layers.weight": weights, "net/layers.bias": biases}
    )
    unrolled = flowrox.bayesian(
        UnrolledLayers(
            [
                eqx.nn.Linear(IN, 1, key=k)
                for k in jax.random.split(jax.random.key(2), 3)
            ]
        ),
        dist.Normal(0.0, ALPHA),
    )
    values = {}
    for i in range(N_LAYERS):
        values[f"net/layers.{i}.weight"] = weights[i]
        values[f"net/layers.{i}.bias"] = biases[i]
    unrolled_log_joint, _ = log_density(_model, (unrolled,), {}, values)
    np.testing.assert_allclose(stacked_log_joint, unrolled_log_joint, rtol=1e-6)


def test_svi_laplace_matches_the_closed_form_posterior():
    # The posterior is Gaussian, so the Laplace approximation at the MAP is exact.
    guide = AutoLaplaceApproximation(_model)
    svi = SVI(_model, guide, optax.adam(0.03), Trace_ELBO())
    result = svi.run(jax.random.key(6), 3000, progress_bar=False)
    posterior = guide.get_posterior(result.params)
    mean, covariance = _exact()
    # The guide's latent vector holds the sites in order: weight, then bias.
    np.testing.assert_allclose(posterior.mean, mean, atol=2e-3)
    np.testing.assert_allclose(posterior.covariance_matrix, covariance, atol=2e-3)


@pytest.mark.slow
def test_nuts_posterior_matches_the_closed_form():
    mcmc = MCMC(NUTS(_model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(8))
    samples = mcmc.get_samples()
    draws = _flat(
        np.asarray(samples["net/layers.weight"]), np.asarray(samples["net/layers.bias"])
    )
    mean, covariance = _exact()
    sd = np.sqrt(np.diag(np.asarray(covariance)))
    ess = np.asarray(effective_sample_size(draws[None]))
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(ess))
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)
