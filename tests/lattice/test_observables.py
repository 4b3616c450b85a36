"""Observables against the free theory's exact values, and their error bars
against the exact spread of iid and of autocorrelated samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.lattice import (
    FreeField,
    binder_cumulant,
    correlation_length,
    effective_mass,
    magnetization,
    pole_mass,
    susceptibility,
    time_correlator,
    two_point,
    two_point_susceptibility,
)

SHAPE, M2 = (8, 4), 0.6
FIELD = FreeField(SHAPE, M2, convention="bare")
VOLUME = 32
# Exact: chi = sum_x G(x) = 1 / lambda_0 = 1 / (2 m2); M ~ N(0, chi / V).
CHI = 1.0 / (2 * M2)
SIGMA_M = np.sqrt(CHI / VOLUME)
MASS = np.arccosh(1 + M2 / 2)  # the zero-momentum lattice dispersion


@pytest.fixture(scope="module")
def samples():
    return jax.jit(lambda key: FIELD.sample(key, (6000,)))(jax.random.key(0))


def _within(estimate, exact, sigmas=4.0):
    value, error = np.asarray(estimate.value), np.asarray(estimate.error)
    assert np.all(error > 0), error
    z = (value - exact) / error
    assert np.all(np.abs(z) < sigmas), z


# Thousands of exact free-field draws and every observable: a slow test.
@pytest.mark.slow
def test_observables_match_the_free_theory(samples):
    _within(magnetization(samples), 0.0)
    absolute = magnetization(samples, absolute=True)
    _within(absolute, SIGMA_M * np.sqrt(2 / np.pi))
    chi = susceptibility(samples)
    _within(chi, CHI)
    _within(susceptibility(samples, absolute=True), CHI * (1 - 2 / np.pi))
    _within(binder_cumulant(samples), 0.0)  # a Gaussian M has <M^4> = 3 <M^2>^2
    propagator = np.asarray(FIELD.propagator())
    _within(two_point(samples), propagator, sigmas=4.5)
    _within(time_correlator(samples), propagator.sum(axis=1))
    masses = effective_mass(samples)
    for t in (1, 2):
        assert abs(masses.value[t] - MASS) < 4 * masses.error[t]
    _within(pole_mass(samples), MASS)
    _within(pole_mass(samples, times=[1, 2, 3]), MASS)
    assert np.isnan(masses.value[0])  # the contact term at t = 0
    _within(correlation_length(samples), 1 / MASS)
    _within(time_correlator(samples, axis=1), propagator.sum(axis=0))
    # The two susceptibilities are one identity, sum_x G_c(x) = V var(M).
    chi_2 = two_point_susceptibility(samples)
    np.testing.assert_allclose(chi_2.value, chi.value, rtol=1e-4)
    np.testing.assert_allclose(chi_2.error, chi.error, rtol=1e-3)
    # For iid draws the error is the plain standard error.
    np.testing.assert_allclose(
        magnetization(samples).error, SIGMA_M / np.sqrt(6000), rtol=0.1
    )


def test_errors_widen_by_the_autocorrelation_of_a_chain(samples):
    # An AR(1) chain phi_i = rho phi_{i-1} + sqrt(1 - rho^2) xi_i has the free
    # field as its stationary law and an integrated autocorrelation time of
    # (1 + rho) / (1 - rho) for every linear observable.
    rho = 0.8

    def step(previous, xi):
        current = rho * previous + np.sqrt(1 - rho**2) * xi
        return current, current

    _, chain = jax.lax.scan(step, samples[0], samples[1:])
    n = chain.shape[0]
    estimate = magnetization(chain)
    expected = SIGMA_M * np.sqrt((1 + rho) / (1 - rho) / n)
    np.testing.assert_allclose(estimate.error, expected, rtol=0.2)
    np.testing.assert_allclose(estimate.ess, n * (1 - rho) / (1 + rho), rtol=0.2)
    # Two chains of half the length give about the same error.
    halves = magnetization(chain[: n - n % 2], chains=2)
    np.testing.assert_allclose(halves.error, expected, rtol=0.25)


def test_importance_weights_correct_draws_from_another_free_theory(samples):
    # Draws from the free theory at m2 = 0.6, weighted to the one at 0.8.
    target = FreeField(SHAPE, 0.8, convention="bare")
    log_weights = target.log_prob(samples) - FIELD.log_prob(samples)
    _within(susceptibility(samples, log_weights=log_weights), 1 / 1.6)
    weighted = two_point(samples, log_weights=log_weights)
    _within(weighted, np.asarray(target.propagator()), sigmas=4.5)
    assert 0 < float(weighted.ess.max()) < 6000
    # Equal weights give the unweighted estimate and, for iid draws, its error.
    uniform = susceptibility(samples, log_weights=jnp.zeros(6000))
    plain = susceptibility(samples)
    np.testing.assert_allclose(uniform.value, plain.value, rtol=1e-5)
    np.testing.assert_allclose(uniform.error, plain.error, rtol=0.1)
    np.testing.assert_allclose(uniform.ess, 6000, rtol=1e-4)


def test_a_constant_field_has_zero_error_and_an_undefined_mass_is_refused():
    constant = jnp.ones((10, 4, 4))
    estimate = magnetization(constant)
    assert float(estimate.value) == 1.0 and float(estimate.error) == 0.0
    assert str(estimate) == "1 ± 0 (ESS 10)"
    # A field that flips sign every time slice has C(t) alternating in sign:
    # (C(t-1) + C(t+1)) / 2C(t) = -1, so no effective mass exists.
    signs = jnp.array([1.0, -1.0] * 4)[:, None]
    amplitudes = jax.random.normal(jax.random.key(1), (50, 1, 1))
    alternating = amplitudes * signs * jnp.ones((50, 8, 4))
    assert np.all(np.isnan(effective_mass(alternating).value))
    with pytest.raises(ValueError, match=r"undefined at t = \[1, 2, 3\]"):
        pole_mass(alternating)
    with pytest.raises(ValueError, match=r"undefined at t = \[1, 2, 3\]"):
        correlation_length(alternating)


def test_bad_inputs_are_refused(samples):
    with pytest.raises(ValueError, match=r"shape \(n, L_1, ..., L_d\)"):
        magnetization(jnp.ones(5))
    with pytest.raises(ValueError, match="at least 4 configurations"):
        susceptibility(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"log_weights of shape \(6000,\)"):
        magnetization(samples, log_weights=jnp.zeros(5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        magnetization(samples, log_weights=jnp.full(6000, jnp.nan))
    with pytest.raises(ValueError, match="Pass chains=1"):
        magnetization(samples, log_weights=jnp.zeros(6000), chains=2)
    with pytest.raises(ValueError, match="chains=7 must divide the 6000"):
        magnetization(samples, chains=7)
    with pytest.raises(ValueError, match="axis must be a lattice axis"):
        time_correlator(samples, axis=2)
    with pytest.raises(ValueError, match=r"time slices in \[0, 8\)"):
        pole_mass(samples, times=[8])
