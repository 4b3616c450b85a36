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
from tests.nn.test_features import jit_build, jit_call, traced_shape
from tests.nn.test_siren import fit_sine_family

KEY = jax.random.key(0)
CONDITIONERS = [AffineModulation, ConcatConditioner, HyperLinear]


@pytest.mark.parametrize("mode", ["feature", "input"])
def test_shape_contracts(mode):
    for inner in (SIREN(2, 8, 3, 2, key=KEY), MLPField(2, 8, 3, 2, key=KEY)):
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


@pytest.mark.parametrize("inner_class", [SIREN, MLPField])
def test_film_feature_mode_is_exactly_the_inner_field_at_init(inner_class):
    inner = jit_build(lambda: inner_class(2, 16, 2, 3, key=KEY))
    field = ConditionedINR(inner, cond_dim=3, key=jax.random.key(1))
    assert len(field.conditioners) == 3
    assert all(c.num_features == 16 for c in field.conditioners)
    x = jax.random.uniform(jax.random.key(2), (2, 5, 2), minval=-1.0)
    z = jax.random.normal(jax.random.key(3), (2, 5, 3))
    outputs = jit_call(lambda x, z: (field(x, z), field(x, z[0, 0]), inner(x)), x, z)
    np.testing.assert_array_equal(outputs[0], outputs[2])
    np.testing.assert_array_equal(outputs[1], outputs[2])


def _perturbed(field, scale=0.3):
    # Random (not initial) conditioner weights, so the context matters.
    leaves, treedef = jax.tree.flatten(eqx.filter(field.conditioners, eqx.is_array))
    keys = jax.random.split(jax.random.key(7), len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    conditioners = eqx.combine(jax.tree.unflatten(treedef, noisy), field.conditioners)
    return eqx.tree_at(lambda f: f.conditioners, field, conditioners)


@pytest.mark.parametrize("conditioner", CONDITIONERS, ids=lambda c: c.__name__)
def test_every_conditioner_follows_each_hidden_layer(conditioner):
    inner = jit_build(lambda: SIREN(1, 8, 2, 2, key=KEY, first_omega=3.0))
    field = _perturbed(ConditionedINR(inner, conditioner, cond_dim=2, key=KEY))
    assert [type(c) for c in field.conditioners] == [conditioner, conditioner]
    x = jax.random.uniform(jax.random.key(2), (6, 1), minval=-1.0)
    z = jax.random.normal(jax.random.key(3), (2,))

    def explicit(x, z):
        h = x
        for layer, c in zip(inner.layers, field.conditioners, strict=True):
            h = c(layer(h), z)
        return h @ inner.readout.weight.T + inner.readout.bias

    shared, per_sample, expected, other = jit_call(
        lambda x, z: (
            field(x, z),
            field(x, jnp.broadcast_to(z, (6, 2))),
            explicit(x, z),
            field(x, -z),
        ),
        x,
        z,
    )
    np.testing.assert_allclose(shared, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_sample, shared, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(np.asarray(other) - np.asarray(shared))) > 1e-3


@pytest.mark.parametrize("inner_class", [SIREN, MLPField])
def test_input_mode_concatenates_the_context(inner_class):
    inner = jit_build(lambda: inner_class(2, 16, 1, 2, key=KEY))
    field = ConditionedINR(inner, cond_dim=3, key=jax.random.key(1), mode="input")
    first = field.inner.layers[0]
    assert type(first) is type(inner.layers[0])
    assert first.in_features == 5 and field.in_features == 2
    assert field.conditioners == ()
    if inner_class is SIREN:  # rebuilt with SIREN's first-layer bound, 1 / fan-in
        assert field.inner.weight_bounds()[0] == 1 / 5
        assert 0.18 < float(jnp.max(jnp.abs(first.weight))) <= 0.2
    x = jax.random.uniform(jax.random.key(2), (4, 2), minval=-1.0)
    z = jax.random.normal(jax.random.key(3), (4, 3))
    outputs = jit_call(
        lambda x, z: (
            field(x, z),
            field.inner(jnp.concatenate([x, z], -1)),
            field(x, z[0]),
            field.inner(jnp.concatenate([x, jnp.broadcast_to(z[0], (4, 3))], -1)),
        ),
        x,
        z,
    )
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[2], outputs[3])


def test_conditioner_options_reach_every_conditioner():
    inner = eqx.filter_eval_shape(lambda: SIREN(2, 8, 1, 3, key=KEY))
    field = ConditionedINR(inner, cond_dim=2, key=KEY, gamma_activation="exp")
    assert [c.gamma_activation for c in field.conditioners] == ["exp"] * 3
    hyper = ConditionedINR(inner, HyperLinear, cond_dim=2, key=KEY, init_scale=0.0)
    assert [(c.in_features, c.out_features) for c in hyper.conditioners] == [(8, 8)] * 3


def test_bad_arguments_and_inputs():
    inner = SIREN(2, 8, 1, 2, key=KEY)
    with pytest.raises(ValueError, match=r"mode must be one of \['feature', 'input'\]"):
        ConditionedINR(inner, cond_dim=2, key=KEY, mode="hidden")
    with pytest.raises(ValueError, match="mode='feature' only"):
        ConditionedINR(inner, cond_dim=2, key=KEY, mode="input", gamma_activation="exp")
    with pytest.raises(TypeError, match="must be an AbstractField"):
        ConditionedINR(eqx.nn.MLP(2, 1, 8, 2, key=KEY), cond_dim=2, key=KEY)
    field = ConditionedINR(inner, cond_dim=4, key=KEY)
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
