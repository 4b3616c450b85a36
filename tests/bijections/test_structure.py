"""Composites agree with the layers they are made of."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flowrox.bijections import (
    Affine,
    Chain,
    Invert,
    Permute,
    Reshape,
    Reverse,
    Scan,
    SinhArcsinh,
    Vmap,
)
from tests.helpers import ConditionalAffine


def _layer(key):
    keys = jax.random.split(key, 3)
    return Chain(
        [
            Affine(
                jax.random.normal(keys[0], (3,)),
                jnp.exp(jax.random.normal(keys[1], (3,))),
            ),
            SinhArcsinh(0.3 * jax.random.normal(keys[2], (3,)), 1.2),
            Reverse((3,)),
        ]
    )


def _unstack(stacked, index):
    return jax.tree.map(
        lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, stacked
    )


def test_scan_equals_the_unrolled_chain_in_both_directions():
    keys = jax.random.split(jax.random.key(0), 5)
    stacked = eqx.filter_vmap(_layer)(keys)
    scan = Scan(stacked)
    chain = Chain([_unstack(stacked, i) for i in range(5)])
    x = jnp.array([0.3, -1.2, 2.0])
    for direction in ("transform_and_log_det", "inverse_and_log_det"):
        scanned = getattr(scan, direction)(x)
        unrolled = getattr(chain, direction)(x)
        np.testing.assert_allclose(scanned[0], unrolled[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scanned[1], unrolled[1], rtol=1e-5, atol=1e-5)
    # The unstacked layers are the ones built one by one from the same keys.
    np.testing.assert_allclose(
        chain.transform(x), Chain([_layer(k) for k in keys]).transform(x), rtol=1e-6
    )


def test_scan_passes_the_condition_to_every_layer():
    stacked = eqx.filter_vmap(lambda k: ConditionalAffine(k, 2, 3))(
        jax.random.split(jax.random.key(1), 4)
    )
    condition = jnp.array([1.0, -0.5, 0.2])
    x = jnp.array([0.7, -0.1])
    unrolled = Chain([_unstack(stacked, i) for i in range(4)])
    np.testing.assert_allclose(
        Scan(stacked).transform(x, condition),
        unrolled.transform(x, condition),
        rtol=1e-5,
    )


def test_vmap_applies_the_bijection_to_each_slice():
    stacked = eqx.filter_vmap(lambda k: Affine(jax.random.normal(k, (2,)), 2.0))(
        jax.random.split(jax.random.key(2), 3)
    )
    x = jnp.arange(6.0).reshape(3, 2)
    y, log_det = Vmap(stacked).transform_and_log_det(x)
    for i in range(3):
        np.testing.assert_allclose(y[i], _unstack(stacked, i).transform(x[i]))
    np.testing.assert_allclose(log_det, 6 * np.log(2.0), rtol=1e-6)

    shared = Affine(jnp.array([1.0, -1.0]), 3.0)
    y_shared = Vmap(shared, axis_size=3).transform(x)
    np.testing.assert_allclose(y_shared, jax.vmap(shared.transform)(x))


def test_permute_reverse_and_invert_semantics():
    x = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    permutation = jnp.array([[5, 4, 3], [2, 1, 0]])
    np.testing.assert_array_equal(Permute(permutation).transform(x), jnp.flip(x))
    np.testing.assert_array_equal(Reverse((2, 3)).transform(x), x[::-1, ::-1])
    affine = Affine(jnp.ones((2, 3)), 2.0)
    np.testing.assert_allclose(Invert(affine).transform(x), affine.inverse(x))


def test_reshape_can_reshape_the_condition_too():
    inner = ConditionalAffine(jax.random.key(3), 6, 4)
    outer = Reshape(inner, (2, 3), cond_shape=(2, 2))
    x = jnp.arange(6.0).reshape(2, 3)
    condition = jnp.array([[0.1, 0.2], [0.3, 0.4]])
    y, log_det = outer.transform_and_log_det(x, condition)
    expected_y, expected_log_det = inner.transform_and_log_det(
        x.ravel(), condition.ravel()
    )
    np.testing.assert_allclose(y, expected_y.reshape(2, 3))
    np.testing.assert_allclose(log_det, expected_log_det)
