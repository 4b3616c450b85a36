"""ConditionedINR and MLPField: conditioning modes, identity at init, both z paths."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.nn import (
    SIREN,
    AffineModulation,
    ConcatConditioner,
    ConditionedINR,
    HyperLinear,
    MLPField,
)
from tests.nn.test_features import jit_build, traced_shape
from tests.nn.test_siren import fit_sine_family

KEY = jax.random.key(0)
CONDITIONERS = [AffineModulation, ConcatConditioner, HyperLinear]


def _inputs(shape, cond_shape):
    # Test inputs from NumPy: nothing to compile.
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    return x, rng.normal(size=cond_shape).astype(np.float32)


@pytest.mark.parametrize("mode", ["feature", "input"])
def test_shape_contracts(mode):
    for inner_class in (SIREN, MLPField):
        inner = eqx.filter_eval_shape(lambda c=inner_class: c(2, 8, 3, 2, key=KEY))
        for conditioner in CONDITIONERS if mode == "feature" else [AffineModulation]:
            field = eqx.filter_eval_shape(
                lambda inner=inner, conditioner=conditioner: ConditionedINR(
                    inner, conditioner, cond_dim=4, key=KEY, mode=mode
                )
            )
            for leading in [(), (5,), (2, 3)]:
                x = jnp.ones((*leading, 2))
                for z in [jnp.ones(4), jnp.ones((*leading, 4))]:
                    assert traced_shape(field, x, z) == (*leading, 3)


def test_film_feature_mode_is_exactly_the_inner_field_at_init():
    x, z = _inputs((2, 5, 2), (2, 5, 3))

    def run():
        outputs = []
        for inner_class in (SIREN, MLPField):
            inner = inner_class(2, 16, 2, 3, key=KEY)
            field = ConditionedINR(inner, cond_dim=3, key=jax.random.key(1))
            outputs.append((field, field(x, z), field(x, z[0, 0]), inner(x)))
        return outputs

    for field, per_sample, shared, inner in jit_build(run):
        assert [type(c) for c in field.conditioners] == [AffineModulation] * 3
        assert all(c.num_features == 16 for c in field.conditioners)
        np.testing.assert_array_equal(per_sample, inner)
        np.testing.assert_array_equal(shared, inner)


def _perturbed(field, scale=0.3):
    # Not the initial conditioner weights, so that the context matters; a fixed
    # pseudo-random pattern is cheaper to compile than random draws.
    def perturb(leaf):
        pattern = jnp.sin(1.7 * jnp.arange(leaf.size) + 0.3).reshape(leaf.shape)
        return leaf + scale * pattern

    conditioners = jax.tree.map(perturb, eqx.filter(field.conditioners, eqx.is_array))
    conditioners = eqx.combine(conditioners, field.conditioners)
    return eqx.tree_at(lambda f: f.conditioners, field, conditioners)


def test_every_conditioner_follows_each_hidden_layer():
    x, z = _inputs((6, 1), (2,))

    def run():
        results = []
        for conditioner in CONDITIONERS:
            inner = SIREN(1, 8, 2, 2, key=KEY, first_omega=3.0)
            field = ConditionedINR(inner, conditioner, cond_dim=2, key=KEY)
            field = _perturbed(field)
            h = x
            for layer, c in zip(inner.layers, field.conditioners, strict=True):
                h = c(layer(h), z)
            explicit = h @ inner.readout.weight.T + inner.readout.bias
            per_sample = field(x, jnp.broadcast_to(z, (6, 2)))
            results.append((field, field(x, z), per_sample, explicit, field(x, -z)))
        return results

    for conditioner, (field, shared, per_sample, expected, other) in zip(
        CONDITIONERS, jit_build(run), strict=True
    ):
        assert [type(c) for c in field.conditioners] == [conditioner, conditioner]
        np.testing.assert_allclose(shared, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(per_sample, shared, rtol=1e-5, atol=1e-6)
        assert np.max(np.abs(np.asarray(other) - np.asarray(shared))) > 1e-3


def test_input_mode_concatenates_the_context():
    x, z = _inputs((4, 2), (4, 3))

    def run():
        results = []
        for inner_class in (SIREN, MLPField):
            inner = inner_class(2, 16, 1, 2, key=KEY)
            field = ConditionedINR(inner, cond_dim=3, key=KEY, mode="input")
            z_shared = jnp.broadcast_to(z[0], (4, 3))
            outputs = (
                field(x, z),
                field.inner(jnp.concatenate([x, z], -1)),
                field(x, z[0]),
                field.inner(jnp.concatenate([x, z_shared], -1)),
            )
            results.append((inner, field, outputs))
        return results

    for inner, field, outputs in jit_build(run):
        first = field.inner.layers[0]
        assert type(first) is type(inner.layers[0])
        assert first.in_features == 5 and field.in_features == 2
        assert field.conditioners == ()
        np.testing.assert_array_equal(outputs[0], outputs[1])
        np.testing.assert_array_equal(outputs[2], outputs[3])
        if isinstance(inner, SIREN):  # rebuilt with SIREN's bound for fan-in 5
            assert field.inner.weight_bounds()[0] == 1 / 5
            assert 0.18 < float(jnp.max(jnp.abs(first.weight))) <= 0.2


def test_conditioner_options_reach_every_conditioner():
    inner = eqx.filter_eval_shape(lambda: SIREN(2, 8, 1, 3, key=KEY))
    field = eqx.filter_eval_shape(
        lambda: ConditionedINR(inner, cond_dim=2, key=KEY, gamma_activation="exp")
    )
    assert [c.gamma_activation for c in field.conditioners] == ["exp"] * 3
    hyper = eqx.filter_eval_shape(
        lambda: ConditionedINR(inner, HyperLinear, cond_dim=2, key=KEY, init_scale=0)
    )
    assert [(c.in_features, c.out_features) for c in hyper.conditioners] == [(8, 8)] * 3


def test_bad_arguments_and_inputs():
    inner = eqx.filter_eval_shape(lambda: SIREN(2, 8, 1, 2, key=KEY))
    with pytest.raises(ValueError, match=r"mode must be one of \['feature', 'input'\]"):
        ConditionedINR(inner, cond_dim=2, key=KEY, mode="hidden")
    with pytest.raises(ValueError, match="mode='feature' only"):
        ConditionedINR(inner, cond_dim=2, key=KEY, mode="input", gamma_activation="exp")
    with pytest.raises(TypeError, match="must be an AbstractField"):
        ConditionedINR(
            eqx.filter_eval_shape(lambda: eqx.nn.MLP(2, 1, 8, 2, key=KEY)),
            cond_dim=2,
            key=KEY,
        )
    field = eqx.filter_eval_shape(lambda: ConditionedINR(inner, cond_dim=4, key=KEY))
    with pytest.raises(ValueError, match=r"last axis 2 \(in_features\), got shape"):
        traced_shape(field, jnp.ones((10, 3)), jnp.ones(4))
    with pytest.raises(
        ValueError, match=r"z of shape \(4,\).*\(10, 4\).*got \(10, 3\)"
    ):
        traced_shape(field, jnp.ones((10, 2)), jnp.ones((10, 3)))
    with pytest.raises(ValueError, match="depth of at least 1"):
        MLPField(2, 8, 1, 0, key=KEY)


@pytest.mark.slow
def test_film_conditioned_siren_fits_the_sine_family():
    inner = SIREN(1, 32, 1, 3, key=KEY, first_omega=10.0)
    field = ConditionedINR(inner, cond_dim=1, key=jax.random.key(1))
    assert fit_sine_family(field) < 0.01
