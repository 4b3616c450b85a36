"""FreeField and FreeFieldScaling against brute force: the dense Hessian of the
free action gives the Gaussian integral, the propagator and the covariance."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from flowrox import Flow
from flowrox.bijections import Reshape
from flowrox.infer import importance_diagnostics
from flowrox.lattice import FreeField, FreeFieldScaling, phi4_action
from flowrox.train import trainable_filter

CASES = [("bare", (3, 4), 0.7), ("half", (5,), 1.3), ("hopping", (2, 3, 2), 0.4)]


def _couplings(convention, shape, m2):
    if convention == "hopping":
        return {"kappa": 1.0 / (2 * len(shape) + m2), "lam": 0.0}
    return {"m2": m2, "lam": 0.0}


def _dense_precision(convention, shape, m2):
    """The Hessian of the free action: S = phi^T H phi / 2 exactly."""
    size = int(np.prod(shape))

    def action(flat):
        couplings = _couplings(convention, shape, m2)
        return phi4_action(flat.reshape(shape), convention=convention, **couplings)

    return np.asarray(jax.jit(jax.hessian(action))(jnp.zeros(size)))


def _dense_jacobian(function, x):
    return jax.jacobian(lambda flat: function(flat.reshape(x.shape)).ravel())(x.ravel())


@eqx.filter_jit
def _evaluate(field, scaling, key):
    """Everything the dense comparison needs, in one compiled call."""
    shape = field.event_shape
    size = int(np.prod(shape))
    phi = field.sample(key, (4,))
    noise = jax.random.normal(key, (4, *shape), phi.dtype)
    x = noise[0]
    y, log_det = scaling.transform_and_log_det(x)
    x_back, inverse_log_det = scaling.inverse_and_log_det(y)
    return {
        "log_z": field.log_normalizer,
        "propagator": field.propagator(),
        "variance": field.variance,
        "phi": phi,
        "log_prob": field.log_prob(phi),
        "transformed_noise": jax.vmap(scaling.transform)(noise),
        "jacobian": jax.jacobian(lambda z: scaling.transform(z.reshape(shape)).ravel())(
            jnp.zeros(size, phi.dtype)
        ),
        "x": x,
        "y": y,
        "x_back": x_back,
        "log_det": log_det,
        "inverse_log_det": inverse_log_det,
        # slogdet runs outside: XLA's CPU backend rejects an FFT whose result
        # feeds an LU decomposition in the same compiled function.
        "jacobian_at_x": _dense_jacobian(scaling.transform, x),
        "inverse_jacobian_at_y": _dense_jacobian(scaling.inverse, y),
    }


@pytest.mark.parametrize(("convention", "shape", "m2"), CASES)
def test_free_theory_equals_the_dense_gaussian_and_scaling_obeys_the_contract(
    convention, shape, m2, x64
):
    field = FreeField(shape, m2, convention=convention)
    scaling = FreeFieldScaling(shape, m2, convention=convention)
    out = _evaluate(field, scaling, jax.random.key(0))
    precision = _dense_precision(convention, shape, m2)
    size = precision.shape[0]
    # log Z = log int exp(-phi^T H phi / 2) = (V/2) log 2 pi - (1/2) log det H.
    brute_log_z = 0.5 * size * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(precision)[1]
    np.testing.assert_allclose(out["log_z"], brute_log_z, rtol=1e-12)
    covariance = np.linalg.inv(precision)
    np.testing.assert_allclose(
        out["propagator"].ravel(), covariance[0], rtol=1e-10, atol=1e-14
    )
    np.testing.assert_allclose(out["variance"], covariance[0, 0] * np.ones(shape))
    flat = np.asarray(out["phi"]).reshape(4, size)
    dense_log_prob = -0.5 * np.einsum("ni,ij,nj->n", flat, precision, flat)
    np.testing.assert_allclose(
        out["log_prob"], dense_log_prob - brute_log_z, rtol=1e-10
    )
    # The sampler is the scaling map applied to white noise, whose Jacobian A
    # satisfies A A^T = H^{-1}: the samples have exactly the free covariance.
    np.testing.assert_allclose(out["phi"], out["transformed_noise"], rtol=1e-12)
    jacobian = out["jacobian"]
    np.testing.assert_allclose(jacobian @ jacobian.T, covariance, atol=1e-12)
    # The bijection contract: round trip, log-det against autodiff, inverse.
    np.testing.assert_allclose(out["x_back"], out["x"], rtol=1e-12, atol=1e-12)
    autodiff = np.linalg.slogdet(out["jacobian_at_x"])[1]
    np.testing.assert_allclose(out["log_det"], autodiff, rtol=1e-12)
    autodiff_inverse = np.linalg.slogdet(out["inverse_jacobian_at_y"])[1]
    np.testing.assert_allclose(out["inverse_log_det"], autodiff_inverse, rtol=1e-12)
    np.testing.assert_allclose(out["inverse_log_det"], -out["log_det"], rtol=1e-12)


def test_scaling_float32_jit_vmap_and_a_fixed_mass():
    # A batch of scalings (built by filter_vmap over masses) on a batch of
    # fields agrees with each scaling built and applied alone.
    masses = jnp.array([0.5, 1.0, 2.0])
    xs = jax.random.normal(jax.random.key(2), (3, 4, 4))

    def build(m2):
        return FreeFieldScaling((4, 4), m2, convention="bare")

    @eqx.filter_jit
    def batched(masses, xs):
        scalings = eqx.filter_vmap(build)(masses)
        ys, log_dets = eqx.filter_vmap(lambda b, x: b.transform_and_log_det(x))(
            scalings, xs
        )
        return ys, log_dets, eqx.filter_vmap(lambda b, y: b.inverse(y))(scalings, ys)

    @eqx.filter_jit
    def one(scaling, x):
        return scaling.transform_and_log_det(x)

    ys, log_dets, xs_back = batched(masses, xs)
    for m2, x, y, log_det in zip([0.5, 1.0, 2.0], xs, ys, log_dets, strict=True):
        one_y, one_log_det = one(build(m2), x)
        np.testing.assert_allclose(y, one_y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(log_det, one_log_det, rtol=1e-6)
    np.testing.assert_allclose(xs_back, xs, atol=1e-5)
    # The mass is a buffer: a training loop leaves it alone.
    assert not any(jax.tree.leaves(trainable_filter(build(0.5))))


def test_the_exact_flow_has_importance_ess_one_and_the_exact_normaliser():
    shape, m2 = (4, 4), 0.5
    size = 16
    scaling = FreeFieldScaling(shape, m2, convention="half")
    flow = Flow(
        dist.Normal(jnp.zeros(size), 1.0).to_event(1), Reshape(scaling, (size,))
    )

    def log_density(x):
        return -phi4_action(x.reshape(shape), convention="half", m2=m2, lam=0.0)

    result = importance_diagnostics(flow, log_density, jax.random.key(0), 512)
    np.testing.assert_allclose(result.ess, 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        result.log_normalizer,
        FreeField(shape, m2, convention="half").log_normalizer,
        rtol=1e-5,
    )


def test_free_field_is_a_pytree_and_a_reparameterised_distribution():
    field = FreeField((4, 2), 0.5, convention="hopping")
    phi = field.sample(jax.random.key(0), (2,))
    log_prob = jax.jit(lambda d, x: d.log_prob(x))(field, phi)
    np.testing.assert_allclose(log_prob, field.log_prob(phi), rtol=1e-6)
    assert field.event_shape == (4, 2) and field.batch_shape == ()
    assert field.has_rsample and field.support.event_dim == 2

    def mean_square(m2):
        draws = FreeField((4, 2), m2, convention="bare").rsample(
            jax.random.key(1), (8,)
        )
        return jnp.mean(draws**2)

    assert jax.jit(jax.grad(mean_square))(0.5) < 0  # a heavier field is narrower


def test_bad_free_theories_are_refused():
    with pytest.raises(ValueError, match="needs m2 > 0"):
        FreeField((4, 4), 0.0, convention="bare")
    with pytest.raises(ValueError, match="needs m2 > 0"):
        FreeFieldScaling((4, 4), -1.0, convention="bare")
    with pytest.raises(ValueError, match="m2 must be a scalar"):
        FreeField((4, 4), jnp.ones(2), convention="bare")
    with pytest.raises(ValueError, match="convention must be one of"):
        FreeField((4, 4), 1.0, convention="full")
    with pytest.raises(ValueError, match="shape must be the lattice shape"):
        FreeField(4, 1.0, convention="bare")
    with pytest.raises(ValueError, match="expected configurations of shape"):
        FreeField((4, 4), 1.0, convention="bare").log_prob(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"expected x of shape \(4, 4\)"):
        FreeFieldScaling((4, 4), 1.0, convention="bare").transform(jnp.zeros(16))
