"""The convolutions made Bayesian with `flowrox.bayesian`: priors, sites, posteriors.

The regression below is linear in its weights: a periodic 3-tap `PhysicsConv`
of one channel of each field plus a `PointwiseLinearConv` (no bias) of the
other, observed with Gaussian noise under Normal priors. Its posterior over the
five weights is Gaussian in closed form, from a design matrix written out
from the periodic formula (not from the layers).
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
from numpyro.infer.autoguide import AutoMultivariateNormal
from numpyro.infer.util import log_density

import flowrox
from flowrox.nn import (
    FNO,
    PhysicsConv,
    PhysicsConvTranspose,
    PointwiseLinearConv,
    SpectralConv,
)
from tests.nn.test_physics_conv import filled

N_FIELDS, NODES, ALPHA, NOISE = 3, 12, 1.0, 0.3


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_FIELDS, 2, NODES))
    stencil = np.array([0.5, -1.0, 0.3])  # taps at n - 1, n, n + 1
    y = sum(w * np.roll(x[:, 0], 1 - j, axis=-1) for j, w in enumerate(stencil))
    y = y + 0.2 + 0.7 * x[:, 1] + NOISE * rng.normal(size=(N_FIELDS, NODES))
    return x, y


X, Y = _data()


class Regression(eqx.Module):
    """`conv(x[0]) + pointwise(x[1])` for one field `x` of two channels."""

    conv: PhysicsConv
    pointwise: PointwiseLinearConv

    def __call__(self, x):
        return (self.conv(x[:1]) + self.pointwise(x[1:]))[0]


def _regression():
    key = jax.random.key(0)
    return flowrox.bayesian(
        Regression(
            PhysicsConv(1, 1, 1, 3, key=key, boundary_mode="periodic"),
            PointwiseLinearConv(1, 1, 1, use_bias=False, key=key),
        ),
        dist.Normal(0.0, ALPHA),
    )


@eqx.filter_jit
def _predict(net, x):
    return jax.vmap(net)(x)


def _model(net):
    net = flowrox.sample_module("net", net)
    numpyro.sample("y", dist.Normal(_predict(net, X), NOISE).to_event(2), obs=Y)


def _exact():
    """Mean and covariance of (w_{n-1}, w_n, w_{n+1}, bias, pointwise weight)."""
    rows = [
        [x[0, (n - 1) % NODES], x[0, n], x[0, (n + 1) % NODES], 1.0, x[1, n]]
        for x in X
        for n in range(NODES)
    ]
    features = np.array(rows)
    precision = features.T @ features / NOISE**2 + np.eye(5) / ALPHA**2
    covariance = np.linalg.inv(precision)
    return covariance @ features.T @ Y.ravel() / NOISE**2, covariance


def _flat(weights: dict) -> np.ndarray:
    """The sites' values as (..., 5) in `_exact`'s order."""
    parts = ["net/conv.weight", "net/conv.bias", "net/pointwise.weight"]
    lead = np.shape(weights[parts[1]])[:-2]
    return np.concatenate(
        [np.reshape(weights[name], (*lead, -1)) for name in parts], axis=-1
    )


def test_the_log_joint_is_the_closed_form_posterior_up_to_a_constant(x64):
    # At any two weight values the model's log joint differs as the Gaussian
    # posterior's log density does: the priors and the likelihood reach the
    # layers' leaves through sample_module as the formula says.
    mean, covariance = _exact()
    precision = np.linalg.inv(covariance)
    draws = np.random.default_rng(1).normal(size=(2, 5)) * 0.3 + mean
    names = ["net/conv.weight", "net/conv.bias", "net/pointwise.weight"]

    def values(theta):
        parts = np.split(theta, [3, 4])
        shapes = [(1, 1, 3), (1, 1), (1, 1, 1)]
        return {
            n: np.reshape(p, s) for n, p, s in zip(names, parts, shapes, strict=True)
        }

    @jax.jit
    def log_joints(draws):
        return [log_density(_model, (_regression(),), {}, values(t))[0] for t in draws]

    first, second = log_joints(draws)

    def log_posterior(theta):
        return -0.5 * (theta - mean) @ precision @ (theta - mean)

    np.testing.assert_allclose(
        first - second, log_posterior(draws[0]) - log_posterior(draws[1]), rtol=1e-8
    )


@pytest.mark.slow
def test_svi_with_a_multivariate_normal_guide_finds_the_closed_form_posterior():
    net = _regression()
    guide = AutoMultivariateNormal(_model)
    schedule = optax.exponential_decay(0.05, 1000, 0.02)
    svi = SVI(_model, guide, optax.adam(schedule), Trace_ELBO(num_particles=4))
    result = svi.run(jax.random.key(1), 1000, net, progress_bar=False)
    posterior = guide.get_posterior(result.params)
    # The guide's latent vector, unpacked by site, in _exact's order.
    order = _flat(guide._unpack_latent(jnp.arange(5.0))).astype(int)
    mean, covariance = _exact()
    sd = np.sqrt(np.diag(covariance))
    np.testing.assert_array_less(
        np.abs(np.asarray(posterior.mean)[order] - mean), 0.15 * sd
    )
    fitted = np.asarray(posterior.covariance_matrix)[np.ix_(order, order)]
    np.testing.assert_allclose(fitted, covariance, atol=0.08 * sd.max() ** 2)


@pytest.mark.slow
def test_nuts_finds_the_closed_form_posterior():
    mcmc = MCMC(NUTS(_model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(2), _regression())
    draws = _flat({name: np.asarray(v) for name, v in mcmc.get_samples().items()})
    mean, covariance = _exact()
    sd = np.sqrt(np.diag(covariance))
    ess = np.asarray(effective_sample_size(draws[None]))
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(ess))
    # Sample sds and correlations from about 2000 effective draws: errors of
    # about 2% and 0.02, bounded at five times that.
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)
    np.testing.assert_allclose(
        np.corrcoef(draws.T), covariance / np.outer(sd, sd), atol=0.1
    )


def test_init_matched_priors_have_each_layers_initial_scale():
    # Uniform on +-1/sqrt(fan-in) has sd 1/sqrt(3 fan-in); the spectral weights
    # are Normal with sd 1/(C_in C_out). init_matched reads the scale off the
    # initial values: within a few per cent for layers of this size.
    @eqx.filter_jit
    def build(key):
        return {
            "conv": PhysicsConv(
                2, 8, 16, 3, groups=2, key=key, boundary_mode="neumann"
            ),
            "transpose": PhysicsConvTranspose(
                2, 8, 16, 3, groups=2, key=key, boundary_mode="dirichlet"
            ),
            "pointwise": PointwiseLinearConv(1, 32, 16, key=key, zero_bias_init=True),
            "spectral": SpectralConv(2, 4, 6, 5, key=key),
        }

    layers = build(jax.random.key(3))
    expected = {
        "conv.weight": 1 / np.sqrt(3 * 4 * 9),
        "transpose.weight": 1 / np.sqrt(3 * 4 * 9),
        "pointwise.weight": 1 / np.sqrt(3 * 32),
        "pointwise.bias": 1e-2,  # zero at init: init_matched's zero_scale
        "spectral.weights_real": 1 / 24,
        "spectral.weights_imag": 1 / 24,
    }
    bayesian = flowrox.bayesian(layers, flowrox.priors.init_matched())
    scales = {
        f"{name}.{leaf}": float(np.unique(getattr(layer, leaf).prior.scale)[0])
        for name, layer in bayesian.items()
        for leaf in ("weight", "weights_real", "weights_imag", "bias")
        if isinstance(getattr(layer, leaf, None), flowrox.RandomLeaf)
    }
    assert set(expected) <= set(scales)
    for path, scale in expected.items():
        np.testing.assert_allclose(scales[path], scale, rtol=0.06, err_msg=path)


def test_a_bayesian_fno_samples_one_site_per_leaf_named_by_its_path():
    fno = filled(
        lambda: FNO(1, 1, 1, hidden_channels=4, num_modes=3, num_blocks=2, key=_key()),
        4,
    )
    net = flowrox.bayesian(fno, dist.Normal(0.0, 0.5))

    def model():
        out = flowrox.sample_module("fno", net)(jnp.ones((1, 16)))
        numpyro.deterministic("out", out)

    @jax.jit
    def draw(key):
        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace()
        return {name: site["value"] for name, site in trace.items()}

    values = draw(jax.random.key(5))
    names = ["lifting.weight", "lifting.bias"]
    for i in range(2):
        names += [
            f"blocks.{i}.spectral_conv.weights_real",
            f"blocks.{i}.spectral_conv.weights_imag",
            f"blocks.{i}.bypass_conv.weight",
            f"blocks.{i}.bypass_conv.bias",
        ]
    sites = [f"fno/{name}" for name in [*names, "projection.weight", "projection.bias"]]
    assert sorted(values) == sorted([*sites, "out"])
    # The sampled network computes with the drawn values: the FNO with those
    # leaves put in, in pytree order, gives the same output.
    treedef = jax.tree.structure(eqx.filter(fno, eqx.is_array))
    drawn = eqx.combine(
        jax.tree.unflatten(treedef, [values[name] for name in sites]),
        eqx.filter(fno, eqx.is_array, inverse=True),
    )
    np.testing.assert_allclose(
        values["out"], eqx.filter_jit(drawn)(jnp.ones((1, 16))), rtol=1e-5, atol=1e-6
    )


def _key():
    return jax.random.key(0)


class StackedBlocks(eqx.Module):
    """A user's stack of periodic conv blocks: built by filter_vmap, run by scan."""

    blocks: PhysicsConv = flowrox.stacked()

    def __init__(self, key, n_blocks=3):
        def make(key):
            return PhysicsConv(1, 2, 2, 3, key=key, boundary_mode="periodic")

        self.blocks = eqx.filter_vmap(make)(jax.random.split(key, n_blocks))

    def __call__(self, x):
        parameters, static = eqx.partition(self.blocks, eqx.is_array)

        def step(h, block_parameters):
            return jnp.tanh(eqx.combine(block_parameters, static)(h)), None

        return jax.lax.scan(step, x, parameters)[0]


def test_stacked_conv_blocks_get_one_site_per_leaf_in_a_plate():
    net = flowrox.bayesian(
        filled(lambda: StackedBlocks(jax.random.key(6)), 6), dist.Normal(0.0, 1.0)
    )
    sites = {}

    def model():
        out = flowrox.sample_module("net", net)(jnp.ones((2, 8)))
        numpyro.deterministic("out", out)

    def run():
        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 7)).get_trace()
        sites.update(trace)
        return trace["out"]["value"]

    # Traced, not compiled: the sites' shapes and plates are what is read.
    assert jax.eval_shape(run).shape == (2, 8)
    for leaf, shape in (("weight", (3, 2, 2, 3)), ("bias", (3, 2, 1))):
        site = sites[f"net/blocks.{leaf}"]
        assert site["value"].shape == shape
        frames = [(frame.name, frame.size) for frame in site["cond_indep_stack"]]
        assert frames == [("net/layers", 3)]
        assert site["fn"].event_shape == shape[1:]
