"""The contract, checked for every exported bijection (see registry.py)."""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowrox.bijections as bijections_module
from flowrox.bijections import AbstractBijection
from tests.bijections.registry import REGISTRY
from tests.helpers import autodiff_log_det

NAMES = sorted(REGISTRY)


def _build(name, seed=0):
    # Built under jit: one compilation instead of many eager dispatches.
    return eqx.filter_jit(REGISTRY[name])(jax.random.key(seed))


@jax.jit
def _evaluate(bijection, x, condition):
    """Everything the contract tests compare, in one compiled call."""
    y, forward_log_det = bijection.transform_and_log_det(x, condition)
    x_back, inverse_log_det = bijection.inverse_and_log_det(y, condition)
    return {
        "y": y,
        "forward_log_det": forward_log_det,
        "x_back": x_back,
        "inverse_log_det": inverse_log_det,
        "transform": bijection.transform(x, condition),
        "inverse": bijection.inverse(y, condition),
        "autodiff_forward": autodiff_log_det(
            lambda v: bijection.transform(v, condition), x
        ),
        "autodiff_inverse": autodiff_log_det(
            lambda v: bijection.inverse(v, condition), y
        ),
    }


def test_registry_covers_every_exported_bijection():
    exported = {
        name
        for name in bijections_module.__all__
        if inspect.isclass(obj := getattr(bijections_module, name))
        and issubclass(obj, AbstractBijection)
        and not inspect.isabstract(obj)
    }
    covered = {name.split("-")[0] for name in REGISTRY}
    assert exported - covered == set(), "exported bijections missing from REGISTRY"
    assert covered - exported == set(), "registry names that are not exported"


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name):
    bijection, x, condition = _build(name)
    out = _evaluate(bijection, x, condition)
    assert out["y"].shape == x.shape == tuple(bijection.shape)
    assert out["forward_log_det"].shape == out["inverse_log_det"].shape == ()
    np.testing.assert_allclose(out["x_back"], x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["transform"], out["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["inverse"], out["x_back"], rtol=1e-6, atol=1e-6)


def _check_log_dets(name, rtol, atol):
    bijection, x, condition = _build(name, seed=1)
    out = _evaluate(bijection, x, condition)
    forward, inverse = out["forward_log_det"], out["inverse_log_det"]
    np.testing.assert_allclose(forward, out["autodiff_forward"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(inverse, out["autodiff_inverse"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(inverse, -forward, rtol=rtol, atol=atol)
    return x


@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autodiff_jacobian_float64(name, x64):
    x = _check_log_dets(name, rtol=1e-10, atol=1e-10)
    assert x.dtype == jnp.float64


@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autodiff_jacobian_float32(name):
    x = _check_log_dets(name, rtol=1e-4, atol=1e-4)
    assert x.dtype == jnp.float32


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_vmap_of_the_bijection_object(name):
    keys = jax.random.split(jax.random.key(2), 3)
    cases = [eqx.filter_jit(REGISTRY[name])(key) for key in keys]
    bijection, x, condition = cases[0]

    @jax.jit
    def forward(bijection, x, condition):
        return bijection.transform_and_log_det(x, condition)

    eager = bijection.transform_and_log_det(x, condition)
    jitted = forward(bijection, x, condition)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # A batch of bijections (built by filter_vmap over keys) applied to a batch
    # of inputs agrees with the bijections applied one by one.
    @eqx.filter_jit
    def batched(keys, xs, conditions):
        stacked = eqx.filter_vmap(lambda key: REGISTRY[name](key)[0])(keys)
        in_axes = (eqx.if_array(0), 0, None if conditions is None else 0)
        return eqx.filter_vmap(
            lambda b, v, c: b.transform_and_log_det(v, c), in_axes=in_axes
        )(stacked, xs, conditions)

    xs = jnp.stack([case[1] for case in cases])
    conditions = None if condition is None else jnp.stack([c[2] for c in cases])
    batched_y, batched_log_det = batched(keys, xs, conditions)
    for index, (one, one_x, one_condition) in enumerate(cases):
        out = _evaluate(one, one_x, one_condition)
        np.testing.assert_allclose(batched_y[index], out["y"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            batched_log_det[index], out["forward_log_det"], rtol=1e-5, atol=1e-5
        )

    # One bijection vmapped over a batch of inputs (inverse direction too).
    @jax.jit
    def round_trip(bijection, xs, condition):
        ys = jax.vmap(lambda v: bijection.transform(v, condition))(xs)
        return jax.vmap(lambda v: bijection.inverse(v, condition))(ys)

    xs_back = round_trip(bijection, xs, condition)
    np.testing.assert_allclose(xs_back, xs, rtol=1e-4, atol=1e-5)


PARAMETER_FREE = {
    "Exp",
    "Identity",
    "Permute",
    "Reverse",
    "Sigmoid",
    "SoftPlus",
    "Tanh",
}


@pytest.mark.parametrize("name", sorted(PARAMETER_FREE))
def test_parameter_free_bijections_have_no_trainable_leaves(name):
    bijection = _build(name)[0]
    assert jax.tree.leaves(eqx.filter(bijection, eqx.is_inexact_array)) == []


@pytest.mark.parametrize("name", sorted(set(NAMES) - PARAMETER_FREE))
def test_gradients_reach_every_parameter(name):
    bijection, x, condition = _build(name, seed=3)
    parameters, static = eqx.partition(bijection, eqx.is_inexact_array)

    def loss(parameters):
        layer = eqx.combine(parameters, static)
        y, log_det = layer.transform_and_log_det(x, condition)
        return jnp.sum(y**2) + log_det

    gradients = jax.tree.leaves(jax.jit(jax.grad(loss))(parameters))
    assert gradients, f"{name} has no trainable leaves"
    for gradient in gradients:
        assert jnp.all(jnp.isfinite(gradient))
        assert jnp.any(gradient != 0)
