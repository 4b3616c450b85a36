"""Conditioners: shapes, both context paths, exact values, initialisation, errors."""

import ast
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import flowrox.nn
from flowrox import Flow
from flowrox.bijections import Modulated
from flowrox.nn import (
    AbstractConditioner,
    AffineModulation,
    ConcatConditioner,
    FiLM,
    HyperLinear,
)
from tests.helpers import autodiff_log_det

ACTIVATIONS = ["one_plus_tanh", "exp", "softplus", "identity"]
N, C, K = 5, 4, 3


def _randomised(module, key, scale=0.5):
    """The module with every inexact leaf redrawn (random, not initial, values)."""
    parameters, static = eqx.partition(module, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(parameters)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        scale * jax.random.normal(k, leaf.shape)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def _inputs(key, width=C, rows=(N,)):
    h_key, z_key = jax.random.split(key)
    return (
        jax.random.normal(h_key, (*rows, width)),
        jax.random.normal(z_key, (*rows, K)),
    )


LAYERS = {
    "concat": lambda key: ConcatConditioner(C, K, key=key),
    "film-one_plus_tanh": lambda key: _randomised(AffineModulation(C, K, key=key), key),
    "film-exp": lambda key: _randomised(
        AffineModulation(C, K, key=key, gamma_activation="exp"), key
    ),
    "hyper-linear": lambda key: HyperLinear(2, C, K, key=key, init_scale=1.0),
    "hyper-mlp": lambda key: HyperLinear(2, C, K, key=key, init_scale=1.0, hidden=6),
}


def _in_width(layer):
    return layer.in_features if isinstance(layer, HyperLinear) else layer.num_features


def test_shapes_and_the_shared_path_equals_the_per_sample_path():
    # Every layer is built and applied in one compiled call.
    @eqx.filter_jit
    def outputs(key):
        out = {}
        for name, make in LAYERS.items():
            layer = make(key)
            h, z = _inputs(jax.random.key(1), _in_width(layer), rows=(2, N))
            one_z = z[0, 0]
            out[name] = (
                layer,
                {
                    "per_sample": layer(h, z),
                    "shared": layer(h, one_z),
                    "repeated": layer(h, jnp.broadcast_to(one_z, z.shape)),
                    "point": layer(h[0, 0], one_z),
                    "point_per_sample": layer(h[1, 2], z[1, 2]),
                },
            )
        return out

    for name, (layer, out) in outputs(jax.random.key(0)).items():
        assert isinstance(layer, AbstractConditioner), name
        assert (layer.num_features, layer.cond_dim) == (C, K), name
        assert out["per_sample"].shape == out["shared"].shape == (2, N, C), name
        assert out["point"].shape == (C,), name
        tolerance = {"rtol": 1e-5, "atol": 1e-6, "err_msg": name}
        np.testing.assert_allclose(out["shared"], out["repeated"], **tolerance)
        np.testing.assert_allclose(out["point"], out["shared"][0, 0], **tolerance)
        np.testing.assert_allclose(
            out["point_per_sample"], out["per_sample"][1, 2], **tolerance
        )
        # Rows with different contexts get different outputs.
        assert not np.allclose(out["per_sample"], out["shared"], atol=1e-3), name


def test_concat_conditioner_is_a_linear_map_of_the_concatenation():
    h, z = _inputs(jax.random.key(1))

    @eqx.filter_jit
    def outputs(key):
        layer = ConcatConditioner(C, K, key=key)
        return layer.linear, layer(h, z), layer(h, z[0])

    linear, y, y_shared = outputs(jax.random.key(0))
    weight, bias = np.asarray(linear.weight), np.asarray(linear.bias)
    h, z = np.asarray(h), np.asarray(z)
    expected = np.concatenate([h, z], axis=-1) @ weight.T + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    shared = np.concatenate([h, np.broadcast_to(z[0], z.shape)], axis=-1)
    np.testing.assert_allclose(y_shared, shared @ weight.T + bias, rtol=1e-5, atol=1e-6)


GAMMAS = {
    "one_plus_tanh": lambda raw: 1.0 + np.tanh(raw),
    "exp": np.exp,
    "softplus": lambda raw: np.log1p(np.exp(raw)),
    "identity": lambda raw: raw,
}


def test_film_values_identity_at_init_and_gradients():
    h, z = _inputs(jax.random.key(1))
    target = jax.random.normal(jax.random.key(2), h.shape)

    @eqx.filter_jit
    def outputs(key):
        out = {}
        for activation in ACTIVATIONS:
            film = FiLM(C, K, key=key, gamma_activation=activation)
            gradient = jax.grad(lambda film: jnp.sum(film(h, z) * target))(film)
            random = _randomised(film, jax.random.key(3))
            log_det = random.log_det(z) if activation != "identity" else None
            out[activation] = {
                "init": (film(h, z), film.gamma_and_beta(z), gradient),
                "random": (random, random(h, z), log_det),
            }
        return out

    for activation, out in outputs(jax.random.key(0)).items():
        y, (gamma, beta), gradient = out["init"]
        assert y.shape == gamma.shape == beta.shape == (N, C)
        # Exactly the identity for every context at initialisation ...
        np.testing.assert_allclose(y, h, rtol=1e-6, atol=1e-6, err_msg=activation)
        np.testing.assert_allclose(gamma, 1.0, rtol=1e-6, err_msg=activation)
        np.testing.assert_array_equal(beta, 0.0)
        # ... while every generator weight gets a gradient.
        assert np.all(np.asarray(gradient.generator.weight) != 0), activation

        # With random parameters: y = gamma(r) h + beta, r and beta linear in z.
        film, y, log_det = out["random"]
        assert type(film) is AffineModulation
        weight, bias = (
            np.asarray(film.generator.weight),
            np.asarray(film.generator.bias),
        )
        raw_and_beta = np.asarray(z) @ weight.T + bias
        gamma = GAMMAS[activation](raw_and_beta[:, :C])
        expected = gamma * np.asarray(h) + raw_and_beta[:, C:]
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
        if log_det is not None:
            # log|det| of diag(gamma), from log(gamma) in closed form.
            np.testing.assert_allclose(
                log_det, np.log(gamma).sum(-1), rtol=1e-5, atol=1e-5
            )


def test_film_exp_log_det_equals_the_autodiff_jacobian_float64(x64):
    @eqx.filter_jit
    def compare(key):
        keys = jax.random.split(key, 3)
        film = AffineModulation(C, K, key=keys[0], gamma_activation="exp")
        film = _randomised(film, keys[1], scale=1.0)
        h, z = _inputs(keys[2])
        autodiff = jax.vmap(
            lambda h_row, z_row: autodiff_log_det(lambda v: film(v, z_row), h_row)
        )(h, z)
        return film.log_det(z), autodiff, film.log_det(z[0])

    log_det, autodiff, one = compare(jax.random.key(0))
    assert log_det.dtype == jnp.float64
    assert log_det.shape == (N,) and one.shape == ()
    np.testing.assert_allclose(log_det, autodiff, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(one, log_det[0], rtol=1e-12)


def test_film_log_det_with_identity_gamma_raises():
    def log_det():
        key = jax.random.key(0)
        film = AffineModulation(C, K, key=key, gamma_activation="identity")
        return film.log_det(jnp.ones(K))

    with pytest.raises(ValueError, match=r"log_det needs a positive gamma.*'exp'"):
        eqx.filter_eval_shape(log_det)


def test_modulated_is_a_film_layer_and_a_conditional_flow():
    key = jax.random.key(0)
    film = AffineModulation(C, K, key=key, gamma_activation="exp")
    film = _randomised(film, jax.random.key(1))
    h, z = _inputs(jax.random.key(2))

    @eqx.filter_jit
    def outputs(film, h, z):
        bijection = Modulated(film)
        y = jax.vmap(bijection.transform)(h, z)
        base = dist.Normal(jnp.zeros(C), 1.0).to_event(1)
        flow = Flow(base, bijection, condition=z)
        return y, film(h, z), flow.log_prob(y), film.gamma_and_beta(z)

    y, film_y, log_prob, (gamma, beta) = outputs(film, h, z)
    np.testing.assert_allclose(y, film_y, rtol=1e-6, atol=1e-6)
    # log p(y | c) of a standard Normal pushed through y = gamma x + beta.
    x = (np.asarray(y) - beta) / gamma
    expected = -0.5 * (x**2).sum(-1) - C * 0.5 * np.log(2 * np.pi)
    expected = expected - np.log(gamma).sum(-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)


def test_modulated_needs_exp_gamma():
    film = AffineModulation(C, K, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"gamma_activation='exp'.*'one_plus_tanh'"):
        Modulated(film)
    with pytest.raises(TypeError, match=r"expected a flowrox\.nn\.AffineModulation"):
        Modulated(ConcatConditioner(C, K, key=jax.random.key(0)))


def test_hyper_linear_applies_the_weights_it_generates():
    h, z = _inputs(jax.random.key(1), width=2)

    @eqx.filter_jit
    def outputs(key):
        out = {}
        for name, hidden in (("linear", None), ("mlp", 6)):
            hyper = HyperLinear(2, C, K, key=key, init_scale=1.0, hidden=hidden)
            weight, bias = hyper.weights(z)
            one_weight, one_bias = hyper.weights(z[0])
            out[name] = (
                (hyper, hyper(h, z), weight, bias),
                (
                    hyper(h, z[0]),
                    one_weight,
                    one_bias,
                ),
            )
        return out

    h, z = np.asarray(h), np.asarray(z)
    for name, ((hyper, per_sample, weight, bias), shared) in outputs(
        jax.random.key(0)
    ).items():
        assert (hyper.in_features, hyper.out_features, hyper.num_features) == (2, C, C)
        assert weight.shape == (N, C, 2) and bias.shape == (N, C)
        shared, one_weight, one_bias = map(np.asarray, shared)
        assert one_weight.shape == (C, 2) and one_bias.shape == (C,)
        weight, bias = np.asarray(weight), np.asarray(bias)
        explicit = np.stack([h[n] @ weight[n].T + bias[n] for n in range(N)])
        np.testing.assert_allclose(per_sample, explicit, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            shared, h @ one_weight.T + one_bias, rtol=1e-5, atol=1e-6
        )
        if name == "linear":
            # The linear generator's output, laid out as (weight rows, then bias).
            flat = z @ np.asarray(hyper.generator.weight).T
            flat = flat + np.asarray(hyper.generator.bias)
            np.testing.assert_allclose(
                weight, flat[:, : 2 * C].reshape(N, C, 2), rtol=1e-5, atol=1e-6
            )
            np.testing.assert_allclose(bias, flat[:, 2 * C :], rtol=1e-5, atol=1e-6)


def test_init_scale_shrinks_the_generated_weights():
    z = jax.random.normal(jax.random.key(1), (N, K))

    @eqx.filter_jit
    def generated(z):
        def weights(init_scale, **options):
            key = jax.random.key(0)
            hyper = HyperLinear(2, C, K, key=key, init_scale=init_scale, **options)
            return hyper.weights(z)

        return (
            weights(1.0),
            weights(0.01),
            weights(0.01, weight_bound=0.5),
            weights(0.01, bias_bound=0.5),
        )

    generated = generated(z)
    (full, full_bias), (small, small_bias) = generated[:2]
    (calibrated, calibrated_bias), (bias_only, bias_only_bias) = generated[2:]
    # Exactly proportional: the whole last generator layer is scaled.
    np.testing.assert_allclose(small, 0.01 * full, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(small_bias, 0.01 * full_bias, rtol=1e-5, atol=1e-9)
    assert float(jnp.std(small) / jnp.std(full)) == pytest.approx(0.01, rel=1e-4)
    # Calibrated: the context moves the weights by init_scale * bound times the
    # default generator's response (the same generator weights, same key).
    np.testing.assert_allclose(
        calibrated - calibrated[:1],
        0.01 * 0.5 * (full - full[:1]),
        rtol=1e-4,
        atol=1e-7,
    )
    # One part calibrated: the other keeps the init_scale rule.
    np.testing.assert_allclose(calibrated_bias, small_bias, rtol=1e-6)
    np.testing.assert_allclose(bias_only, small, rtol=1e-6)
    assert not np.allclose(bias_only_bias, small_bias)


def test_bound_calibration_gives_a_uniform_spread():
    weight_bound, bias_bound = 0.05, 0.3
    z = jax.random.normal(jax.random.key(1), (64, K))

    @eqx.filter_jit
    def calibrated(z):
        # 2048 generated weights and 512 generated biases per context.
        return {
            name: HyperLinear(
                4,
                512,
                K,
                key=jax.random.key(0),
                hidden=hidden,
                weight_bound=weight_bound,
                bias_bound=bias_bound,
            ).weights(z)
            for name, hidden in (("linear", None), ("mlp", 16))
        }

    for name, (weight, bias) in calibrated(z).items():
        for values, bound in ((weight, weight_bound), (bias, bias_bound)):
            # U(-b, b) has standard deviation b / sqrt(3).
            spread = float(jnp.std(values))
            assert spread == pytest.approx(bound / np.sqrt(3), rel=0.1), name
            assert abs(float(jnp.mean(values))) < 0.1 * bound


@pytest.mark.parametrize(
    ("layer", "h_shape", "message"),
    [
        (
            lambda: AffineModulation(C, K, key=jax.random.key(0)),
            (10, 8),
            r"AffineModulation: expected h with last axis 4 \(num_features\), "
            r"got shape \(10, 8\)",
        ),
        (
            lambda: ConcatConditioner(C, K, key=jax.random.key(0)),
            (8,),
            r"ConcatConditioner: expected h with last axis 4 \(num_features\), "
            r"got shape \(8,\)",
        ),
        (
            lambda: HyperLinear(2, C, K, key=jax.random.key(0)),
            (10, 4),
            r"HyperLinear: expected h with last axis 2 \(in_features\), "
            r"got shape \(10, 4\)",
        ),
    ],
)
def test_a_wrong_h_width_names_both_shapes(layer, h_shape, message):
    # Shapes are checked while tracing: nothing needs to be compiled.
    with pytest.raises(ValueError, match=message):
        eqx.filter_eval_shape(lambda: layer()(jnp.ones(h_shape), jnp.ones(K)))


@pytest.mark.parametrize("name", ["concat", "film-exp", "hyper-linear"])
def test_a_wrong_context_names_both_shapes(name):
    width = 2 if name.startswith("hyper") else C
    h = jnp.ones((10, width))

    def call(z):
        # Shapes are checked while tracing: nothing needs to be compiled.
        eqx.filter_eval_shape(lambda: LAYERS[name](jax.random.key(0))(h, z))

    wrong_width = r"expected z of shape \(3,\) or \(\.\.\., 3\) \(cond_dim 3\), "
    with pytest.raises(ValueError, match=wrong_width + r"got \(10, 2\)"):
        call(jnp.ones((10, 2)))
    with pytest.raises(ValueError, match=wrong_width + r"got \(\)"):
        call(jnp.ones(()))
    with pytest.raises(
        ValueError, match=rf"got \(5, 3\) for h of shape \(10, {width}\)"
    ):
        call(jnp.ones((5, 3)))


def test_gamma_activation_outside_the_set_lists_the_allowed_values():
    allowed = r"\['exp', 'identity', 'one_plus_tanh', 'softplus'\]; got 'relu'"
    with pytest.raises(ValueError, match=allowed):
        AffineModulation(4, 2, key=jax.random.key(0), gamma_activation="relu")


@pytest.mark.parametrize(
    ("arguments", "options", "message"),
    [
        (
            (2, 2, 2),
            {"weight_bound": 0.0},
            r"expected weight_bound > 0 or None, got 0\.0\. Pass the bound u",
        ),
        (
            (2, 2, 2),
            {"bias_bound": -1.0},
            r"expected bias_bound > 0 or None, got -1\.0\. .*bias_bound=None",
        ),
        (
            (2, 2, 2),
            {"init_scale": -0.1},
            r"expected init_scale >= 0, got -0\.1\. Pass a non-negative scale",
        ),
        (
            (2, 2, 2),
            {"hidden": 0},
            r"at least 1, got hidden=0\. Pass a positive int",
        ),
        (
            (0, 2.5, 2),
            {},
            r"at least 1, got in_features=0, out_features=2\.5\. Pass a positive",
        ),
    ],
)
def test_hyper_linear_rejects_bad_options(arguments, options, message):
    with pytest.raises(ValueError, match=r"HyperLinear: .*" + message):
        HyperLinear(*arguments, key=jax.random.key(0), **options)


def test_flowrox_nn_imports_nothing_from_flowrox_bijections():
    # flowrox.bijections.Modulated wraps AffineModulation: a module-level import
    # back from flowrox.nn would be a cycle that loads in one order only.
    package = pathlib.Path(flowrox.nn.__file__).parent
    imported = []
    for path in sorted(package.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                names = [alias.name for alias in node.names]
                imported.append((path.name, target, names))
    # The scan sees the package's own imports (it can fail) ...
    assert ("_bayesian.py", "..priors", ["init_matched"]) in imported
    # ... and none of them reaches flowrox.bijections.
    reaching = [
        entry
        for entry in imported
        if entry[1].startswith(("..bijections", "flowrox.bijections"))
        or (entry[1] in ("..", "flowrox") and "bijections" in entry[2])
    ]
    assert reaching == []
