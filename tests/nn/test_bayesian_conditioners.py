"""Bayesian conditioners: sites, features on the draws, an exact conjugate posterior."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import flowrox
from flowrox._bayes._markers import random_leaves
from flowrox.bijections import Modulated
from flowrox.nn import (
    AffineModulation,
    BayesianAffineModulation,
    BayesianConcatConditioner,
    BayesianHyperLinear,
    ConcatConditioner,
    HyperLinear,
)

K = 3


def _sites(name, make, *, abstract=False):
    """`[(site, value, distribution)]` of `sample_module(name, make())`, in order.

    The layer is built, sampled and traced inside one compiled call; with
    `abstract=True` only traced (values are shapes), which compiles nothing.
    """

    @eqx.filter_jit
    def run(key):
        module = make()
        seeded = handlers.seed(lambda: flowrox.sample_module(name, module), key)
        trace = handlers.trace(seeded).get_trace()
        return [
            (site, message["value"], message["fn"])
            for site, message in trace.items()
            if message["type"] == "sample"
        ]

    if abstract:
        return eqx.filter_eval_shape(run, jax.random.key(0))
    return run(jax.random.key(0))


def test_a_drawn_film_layer_keeps_its_log_det_and_is_a_bijection():
    z = jax.random.normal(jax.random.key(2), (5, K))
    h = jax.random.normal(jax.random.key(3), (5, 4))

    @eqx.filter_jit
    def outputs(key):
        film = BayesianAffineModulation(
            4, K, key=jax.random.key(0), gamma_activation="exp"
        )
        drawn = flowrox.sample_module("film", film, rng_key=key)
        bijection = Modulated(drawn)
        x_back = jax.vmap(bijection.inverse)(drawn(h, z), z)
        return drawn, drawn.log_det(z), x_back, drawn(h, z[0])

    drawn, log_det, x_back, shared = outputs(jax.random.key(1))
    assert type(drawn) is AffineModulation and drawn.gamma_activation == "exp"
    sites = _sites(
        "film",
        lambda: BayesianAffineModulation(4, K, key=jax.random.key(0)),
        abstract=True,
    )
    assert [site for site, *_ in sites] == [
        "film/generator.weight",
        "film/generator.bias",
    ]
    # The draw is no longer the identity layer; log_det = sum of raw gamma.
    weight, bias = np.asarray(drawn.generator.weight), np.asarray(drawn.generator.bias)
    assert np.all(weight != 0)
    raw = np.asarray(z) @ weight[:4].T + bias[:4]
    np.testing.assert_allclose(log_det, raw.sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_back, h, rtol=1e-4, atol=1e-5)
    assert shared.shape == (5, 4)


@pytest.mark.parametrize("hidden", [None, 4])
def test_hyper_linear_sites_are_the_generator_leaves_whatever_the_target_width(
    hidden,
):
    def sites(out_features):
        return _sites(
            "hyper",
            lambda: BayesianHyperLinear(
                2, out_features, K, key=jax.random.key(0), hidden=hidden
            ),
            abstract=True,
        )

    narrow, wide = sites(3), sites(24)
    if hidden is None:
        expected = ["hyper/generator.weight", "hyper/generator.bias"]
    else:
        expected = [
            f"hyper/generator.layers.{i}.{leaf}"
            for i in (0, 1)
            for leaf in ("weight", "bias")
        ]
    assert [site for site, *_ in narrow] == [site for site, *_ in wide] == expected
    # Only the generator's last layer follows the target: 3 * 2 + 3 vs 24 * 2 + 24.
    assert narrow[-1][1].shape == (9,) and wide[-1][1].shape == (72,)


def test_a_drawn_hyper_linear_keeps_both_paths_and_its_calibration():
    weight_bound, bias_bound = 0.05, 0.3
    z = jax.random.normal(jax.random.key(2), (6, K))
    h = jax.random.normal(jax.random.key(3), (6, 4))

    @eqx.filter_jit
    def outputs(key):
        hyper = BayesianHyperLinear(
            4,
            512,
            K,
            key=jax.random.key(0),
            weight_bound=weight_bound,
            bias_bound=bias_bound,
        )
        drawn = flowrox.sample_module("hyper", hyper, rng_key=key)
        repeated = jnp.broadcast_to(z[0], z.shape)
        return drawn, drawn(h, z), drawn(h, z[0]), drawn(h, repeated), drawn.weights(z)

    drawn, per_sample, shared, repeated, (weight, bias) = outputs(jax.random.key(1))
    assert type(drawn) is HyperLinear
    np.testing.assert_allclose(shared, repeated, rtol=1e-5, atol=1e-5)
    explicit = jnp.einsum("noi,ni->no", weight, h) + bias
    np.testing.assert_allclose(per_sample, explicit, rtol=1e-5, atol=1e-5)
    # The default prior draws generated weights with the calibrated spread.
    for values, bound in ((weight, weight_bound), (bias, bias_bound)):
        assert float(jnp.std(values)) == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_prior_options_set_the_site_distributions():
    layer = ConcatConditioner(2, K, key=jax.random.key(0))
    # Default: init-matched scales (each leaf's root mean square), centred at 0.
    sites = _sites(
        "concat", lambda: BayesianConcatConditioner(2, K, key=jax.random.key(0))
    )
    assert [site for site, *_ in sites] == [
        "concat/linear.weight",
        "concat/linear.bias",
    ]
    normal = sites[0][2].base_dist
    rms = np.sqrt(np.mean(np.asarray(layer.linear.weight) ** 2))
    np.testing.assert_allclose(normal.scale, rms, rtol=1e-6)
    np.testing.assert_array_equal(normal.loc, 0.0)
    # A scale, centred on the initial (identity) FiLM generator.
    sites = _sites(
        "film",
        lambda: BayesianAffineModulation(
            2, K, key=jax.random.key(0), prior_scale=0.3, centred_on_init=True
        ),
    )
    normal = sites[1][2].base_dist
    np.testing.assert_allclose(normal.scale, 0.3)
    np.testing.assert_array_equal(normal.loc, [0.0, 0.0, 0.0, 0.0])
    # Any prior of flowrox.bayesian.
    sites = _sites(
        "hyper",
        lambda: BayesianHyperLinear(
            2, 2, K, key=jax.random.key(0), prior={"generator.weight": dist.Laplace()}
        ),
        abstract=True,
    )
    assert [site for site, *_ in sites] == ["hyper/generator.weight"]
    with pytest.raises(ValueError, match=r"give either prior=\.\.\. or prior_scale"):
        BayesianHyperLinear(
            2, 2, K, key=jax.random.key(0), prior=dist.Normal(), prior_scale=1.0
        )


# A conjugate regression: with fixed inputs, both layers below are linear in
# their weights, so a Normal prior and a Normal likelihood with known noise give
# a Gaussian posterior in closed form.
NOISE, PRIOR_SCALE, N_DATA = 0.3, 0.7, 12


def _data():
    keys = jax.random.split(jax.random.key(7), 3)
    h = jax.random.normal(keys[0], (N_DATA, 1))
    z = jax.random.normal(keys[1], (N_DATA, 1))
    y = 0.5 + 1.5 * h[:, 0] - z[:, 0] + 0.8 * h[:, 0] * z[:, 0]
    return h, z, y + NOISE * jax.random.normal(keys[2], (N_DATA,))


def _model(layer, h, z, y):
    drawn = flowrox.sample_module("layer", layer)
    with numpyro.plate("data", N_DATA):
        numpyro.sample("y", dist.Normal(drawn(h, z)[:, 0], NOISE), obs=y)


def _concat(theta):
    # y = w_h h + w_z z + b: features (h, z, 1).
    return {"layer/linear.weight": theta[:2][None], "layer/linear.bias": theta[2:]}


def _film(theta):
    # Identity gamma: y = (a z + c) h + (d z + e), features (z h, h, z, 1) for
    # (a, c, d, e) = (weight[0, 0], bias[0], weight[1, 0], bias[1]).
    return {
        "layer/generator.weight": theta[jnp.array([0, 2])][:, None],
        "layer/generator.bias": theta[jnp.array([1, 3])],
    }


CONJUGATE = {
    "concat": (
        lambda: BayesianConcatConditioner(
            1, 1, key=jax.random.key(0), prior_scale=PRIOR_SCALE
        ),
        lambda h, z: np.stack([h, z, np.ones_like(h)], axis=1),
        _concat,
    ),
    "film": (
        lambda: BayesianAffineModulation(
            1,
            1,
            key=jax.random.key(0),
            prior_scale=PRIOR_SCALE,
            gamma_activation="identity",
        ),
        lambda h, z: np.stack([z * h, h, z, np.ones_like(h)], axis=1),
        _film,
    ),
}


def _closed_form(name, h, z, y):
    features = CONJUGATE[name][1](np.asarray(h[:, 0]), np.asarray(z[:, 0]))
    n = features.shape[1]
    precision = features.T @ features / NOISE**2 + np.eye(n) / PRIOR_SCALE**2
    covariance = np.linalg.inv(precision)
    return covariance @ features.T @ np.asarray(y) / NOISE**2, covariance


def test_the_log_joint_is_the_conjugate_gaussian_posterior(x64):
    h, z, y = _data()

    def log_joint(name):
        make, _, unflatten = CONJUGATE[name]
        layer = make()
        return lambda theta: log_density(
            _model, (layer, h, z, y), {}, unflatten(theta)
        )[0]

    @jax.jit
    def gradients_and_hessians():
        out = {}
        for name in CONJUGATE:
            theta = jnp.zeros(3 if name == "concat" else 4)
            function = log_joint(name)
            out[name] = jax.grad(function)(theta), jax.hessian(function)(theta)
        return out

    for name, (gradient, hessian) in gradients_and_hessians().items():
        assert gradient.dtype == jnp.float64
        mean, covariance = _closed_form(name, h, z, y)
        # The log joint is quadratic in the weights, with precision -hessian.
        np.testing.assert_allclose(-np.linalg.inv(hessian), covariance, rtol=1e-10)
        np.testing.assert_allclose(
            np.linalg.solve(-hessian, gradient), mean, rtol=1e-10, atol=1e-12
        )


@pytest.mark.slow
def test_nuts_recovers_the_conjugate_posterior_of_a_film_weight():
    h, z, y = _data()
    mean, covariance = _closed_form("film", h, z, y)
    mcmc = numpyro.infer.MCMC(
        numpyro.infer.NUTS(_model),
        num_warmup=1000,
        num_samples=4000,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), CONJUGATE["film"][0](), h, z, y)
    weight = np.asarray(mcmc.get_samples()["layer/generator.weight"])[:, 0, 0]
    sd = np.sqrt(covariance[0, 0])
    # About 3000 effective draws: the Monte Carlo error of the mean is ~sd / 55.
    assert abs(weight.mean() - mean[0]) < 0.15 * sd
    assert weight.std() == pytest.approx(sd, rel=0.1)


def moved_off_init(module, key, scale=0.5):
    """The module with every inexact leaf moved off its initial value, as by training.

    Each leaf gets `scale` times its root mean square of Gaussian noise (zero
    leaves, such as FiLM's initial generator weight, get `scale` itself).
    """
    parameters, static = eqx.partition(module, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(parameters)
    keys = jax.random.split(key, len(leaves))
    moved = []
    for k, leaf in zip(keys, leaves, strict=True):
        rms = jnp.sqrt(jnp.mean(leaf**2))
        size = scale * jnp.where(rms > 0, rms, 1.0)
        moved.append(leaf + size * jax.random.normal(k, leaf.shape, leaf.dtype))
    return eqx.combine(jax.tree.unflatten(treedef, moved), static)


def check_wrapped(wrapped, trained, name, built_sites):
    """The wrapped module is `trained` with priors centred on its values.

    Returns `{leaf path: prior}` for checks of the scales.
    """
    assert type(wrapped) is type(trained)
    # Nothing but the chosen leaves changed: the values are the trained ones.
    assert eqx.tree_equal(flowrox.deterministic(wrapped), trained)
    priors = {}
    for info, marker in random_leaves(wrapped):
        assert isinstance(marker.prior, dist.Normal), info.name
        np.testing.assert_array_equal(marker.prior.loc, marker.value)
        assert not np.allclose(marker.value, 0.0)
        priors[info.name] = marker.prior
    # The same sites as the form built from sizes.
    sites = _sites(name, lambda: wrapped, abstract=True)
    assert [site for site, *_ in sites] == built_sites
    return priors


def test_the_bayesian_conditioners_wrap_a_trained_layer():
    @eqx.filter_jit
    def build(key):
        keys = jax.random.split(key)
        trained = {
            "concat": ConcatConditioner(4, K, key=keys[0]),
            "film": AffineModulation(4, K, key=keys[0], gamma_activation="exp"),
            "hyper": HyperLinear(4, 4, K, key=keys[0], hidden=5),
        }
        trained = {
            name: moved_off_init(layer, keys[1]) for name, layer in trained.items()
        }
        wrapped = {
            "concat": BayesianConcatConditioner(
                trained["concat"], centred_on_init=True
            ),
            "film": BayesianAffineModulation(
                trained["film"], prior_scale=0.2, centred_on_init=True
            ),
            "hyper": BayesianHyperLinear(trained["hyper"], centred_on_init=True),
        }
        return trained, wrapped

    trained, wrapped = build(jax.random.key(0))
    priors = check_wrapped(
        wrapped["concat"],
        trained["concat"],
        "concat",
        ["concat/linear.weight", "concat/linear.bias"],
    )
    # Default scales: the root mean squares of the trained leaves.
    for leaf in ("weight", "bias"):
        value = np.asarray(getattr(trained["concat"].linear, leaf))
        np.testing.assert_allclose(
            priors[f"linear.{leaf}"].scale, np.sqrt(np.mean(value**2)), rtol=1e-6
        )
    priors = check_wrapped(
        wrapped["film"],
        trained["film"],
        "film",
        ["film/generator.weight", "film/generator.bias"],
    )
    for prior in priors.values():
        np.testing.assert_allclose(prior.scale, 0.2, rtol=1e-6)
    hyper_sites = [
        f"hyper/generator.layers.{i}.{leaf}"
        for i in (0, 1)
        for leaf in ("weight", "bias")
    ]
    priors = check_wrapped(wrapped["hyper"], trained["hyper"], "hyper", hyper_sites)
    # The last layer's scales: one per part (rows generating weight, bias).
    last = np.asarray(trained["hyper"].generator.layers[-1].weight)
    scale = np.asarray(priors["generator.layers.1.weight"].scale)
    for rows in (slice(0, 16), slice(16, 20)):
        np.testing.assert_allclose(
            scale[rows], np.sqrt(np.mean(last[rows] ** 2)), rtol=1e-5
        )


def test_wrapping_takes_the_module_alone():
    layer = HyperLinear(2, 2, K, key=jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"BayesianHyperLinear: got a HyperLinear to wrap and also cond_dim, "
        r"key, hidden; a given HyperLinear keeps its own",
    ):
        BayesianHyperLinear(layer, cond_dim=K, key=jax.random.key(1), hidden=4)
    with pytest.raises(
        TypeError,
        match=r"BayesianAffineModulation: expected a module of type "
        r"AffineModulation to wrap, or the sizes of a new one, got a module of "
        r"type HyperLinear",
    ):
        BayesianAffineModulation(layer)
    with pytest.raises(
        TypeError,
        match=r"BayesianConcatConditioner: building a new ConcatConditioner needs "
        r"cond_dim, key, got none",
    ):
        BayesianConcatConditioner(4)
