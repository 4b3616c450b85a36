"""The contract, checked for every exported bijection (see registry.py).

The tests of one registry case share a pytest-xdist group, so they run in one
worker and reuse each other's compiled functions.
"""

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


def _cases(names):
    return [pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in names]


def _build(name, seed=0):
    # Built under jit: one compilation instead of many eager dispatches.
    return eqx.filter_jit(REGISTRY[name])(jax.random.key(seed))


def _loss(parameters, static, x, condition):
    y, log_det = eqx.combine(parameters, static).transform_and_log_det(x, condition)
    return jnp.sum(y**2) + log_det


@eqx.filter_jit
def _evaluate(bijection, x, condition, *, autodiff: bool):
    """Everything the contract tests compare, in one compiled call."""
    y, forward_log_det = bijection.transform_and_log_det(x, condition)
    x_back, inverse_log_det = bijection.inverse_and_log_det(y, condition)
    out = {
        "y": y,
        "forward_log_det": forward_log_det,
        "x_back": x_back,
        "inverse_log_det": inverse_log_det,
        "transform": bijection.transform(x, condition),
        "inverse": bijection.inverse(y, condition),
    }
    if autodiff:
        out["autodiff_forward"] = autodiff_log_det(
            lambda v: bijection.transform(v, condition), x
        )
        out["autodiff_inverse"] = autodiff_log_det(
            lambda v: bijection.inverse(v, condition), y
        )
    else:
        parameters, static = eqx.partition(bijection, eqx.is_inexact_array)
        out["gradients"] = jax.grad(_loss)(parameters, static, x, condition)
    return out


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


def _check_round_trip(bijection, x, out, rtol):
    assert out["y"].shape == x.shape == tuple(bijection.shape)
    assert out["forward_log_det"].shape == out["inverse_log_det"].shape == ()
    np.testing.assert_allclose(out["x_back"], x, rtol=rtol, atol=1e-5)
    np.testing.assert_allclose(out["transform"], out["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["inverse"], out["x_back"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", _cases(NAMES))
def test_round_trip_and_log_det_against_autodiff_float64(name, x64):
    bijection, x, condition = _build(name, seed=1)
    assert x.dtype == jnp.float64
    out = _evaluate(bijection, x, condition, autodiff=True)
    _check_round_trip(bijection, x, out, rtol=1e-10)
    forward, inverse = out["forward_log_det"], out["inverse_log_det"]
    tolerance = {"rtol": 1e-10, "atol": 1e-10}
    np.testing.assert_allclose(forward, out["autodiff_forward"], **tolerance)
    np.testing.assert_allclose(inverse, out["autodiff_inverse"], **tolerance)
    np.testing.assert_allclose(inverse, -forward, **tolerance)


PARAMETER_FREE = {
    "Exp",
    "Identity",
    "Permute",
    "Reverse",
    "Sigmoid",
    "SoftPlus",
    "Tanh",
}


@pytest.mark.parametrize("name", _cases(NAMES))
def test_float32_round_trip_log_det_and_gradients(name):
    bijection, x, condition = _build(name, seed=1)
    assert x.dtype == jnp.float32
    out = _evaluate(bijection, x, condition, autodiff=False)
    _check_round_trip(bijection, x, out, rtol=1e-4)
    np.testing.assert_allclose(
        out["inverse_log_det"], -out["forward_log_det"], rtol=1e-4, atol=1e-4
    )
    gradients = jax.tree.leaves(out["gradients"])
    if name in PARAMETER_FREE:
        assert gradients == [], f"{name} should have no trainable leaves"
        return
    assert gradients, f"{name} has no trainable leaves"
    for gradient in gradients:
        assert jnp.all(jnp.isfinite(gradient))
        assert jnp.any(gradient != 0), f"a parameter of {name} gets no gradient"


# Option variants of one class share its batching code; one variant that adds
# parameters (learnable bounds) stands for them.
BATCHED_NAMES = [
    name
    for name in NAMES
    if not name.startswith("RationalQuadraticSpline-")
    or name == "RationalQuadraticSpline-learn-both"
]


@pytest.mark.parametrize("name", _cases(BATCHED_NAMES))
def test_jit_and_vmap_of_the_bijection_object(name):
    cases = [_build(name, seed) for seed in (1, 4, 5)]
    keys = jnp.stack([jax.random.key(seed) for seed in (1, 4, 5)])

    # A batch of bijections (built by filter_vmap over keys) applied to a batch
    # of inputs agrees with the bijections applied one by one, both ways.
    @eqx.filter_jit
    def batched(keys, xs, conditions):
        stacked = eqx.filter_vmap(lambda key: REGISTRY[name](key)[0])(keys)
        in_axes = (eqx.if_array(0), 0, None if conditions is None else 0)

        def one(bijection, x, condition):
            y, log_det = bijection.transform_and_log_det(x, condition)
            return y, log_det, bijection.inverse(y, condition)

        return eqx.filter_vmap(one, in_axes=in_axes)(stacked, xs, conditions)

    xs = jnp.stack([case[1] for case in cases])
    conditions = None if cases[0][2] is None else jnp.stack([c[2] for c in cases])
    ys, log_dets, xs_back = batched(keys, xs, conditions)
    for index, (one, one_x, one_condition) in enumerate(cases):
        out = _evaluate(one, one_x, one_condition, autodiff=False)
        np.testing.assert_allclose(ys[index], out["y"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            log_dets[index], out["forward_log_det"], rtol=1e-5, atol=1e-5
        )
    np.testing.assert_allclose(xs_back, xs, rtol=1e-4, atol=1e-5)
