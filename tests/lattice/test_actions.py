"""phi4_action in its three conventions and convert_convention, against the
textbook forms of the action and exact identities."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.lattice import FreeField, convert_convention, phi4_action

SHAPES = [(5,), (4, 3), (3, 2, 4)]


def _albergo(phi, m2, lam):
    """Albergo et al.'s form: sum_x [sum_mu phi(x)(2 phi(x) - phi(x+mu) -
    phi(x-mu)) + m2 phi^2 + lam phi^4], written with numpy rolls."""
    phi = np.asarray(phi)
    kinetic = sum(
        phi * (2 * phi - np.roll(phi, -1, mu) - np.roll(phi, 1, mu))
        for mu in range(phi.ndim)
    )
    return np.sum(kinetic + m2 * phi**2 + lam * phi**4)


def _hopping(phi, kappa, lam):
    """-kappa sum_x sum_mu phi(x) (phi(x+mu) + phi(x-mu)) + phi^2 + lam (phi^2-1)^2."""
    phi = np.asarray(phi)
    neighbours = sum(
        np.roll(phi, -1, mu) + np.roll(phi, 1, mu) for mu in range(phi.ndim)
    )
    return np.sum(-kappa * phi * neighbours + phi**2 + lam * (phi**2 - 1) ** 2)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_three_conventions_equal_their_textbook_forms(shape, x64):
    phi = jax.random.normal(jax.random.key(len(shape)), shape)
    m2, lam, kappa = -1.3, 0.7, 0.21
    bare = phi4_action(phi, convention="bare", m2=m2, lam=lam)
    half = phi4_action(phi, convention="half", m2=m2, lam=lam)
    hopping = phi4_action(phi, convention="hopping", kappa=kappa, lam=lam)
    np.testing.assert_allclose(bare, _albergo(phi, m2, lam), rtol=1e-12)
    # half: 1/2 on the kinetic and mass terms only.
    np.testing.assert_allclose(
        half,
        _albergo(phi, m2, 0.0) / 2 + lam * np.sum(np.asarray(phi) ** 4),
        rtol=1e-12,
    )
    np.testing.assert_allclose(hopping, _hopping(phi, kappa, lam), rtol=1e-12)


PAIRS = list(itertools.product(["bare", "half", "hopping"], repeat=2))
SOURCE_COUPLINGS = {
    "bare": {"m2": -4.0, "lam": 8.0},
    "half": {"m2": -4.0, "lam": 2.0},
    "hopping": {"kappa": 0.18, "lam": 0.03},
}


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_converted_theories_differ_by_a_constant_action(source, target, x64):
    # S_target(c phi) - S_source(phi) is the same constant V s on every field,
    # so the normalised densities agree up to the Jacobian c^V.
    shape = (4, 3)
    couplings = SOURCE_COUPLINGS[source]
    change = convert_convention(source, target, ndim=2, **couplings)
    assert sorted(change.couplings) == sorted(SOURCE_COUPLINGS[target])
    for seed in range(3):
        phi = 1.5 * jax.random.normal(jax.random.key(seed), shape)
        s_source = phi4_action(phi, convention=source, **couplings)
        s_target = phi4_action(
            change.field_scale * phi, convention=target, **change.couplings
        )
        np.testing.assert_allclose(
            s_target - s_source, 12 * change.action_offset, rtol=1e-9, atol=1e-9
        )
    back = convert_convention(target, source, ndim=2, **change.couplings)
    for name, value in couplings.items():
        np.testing.assert_allclose(back.couplings[name], value, rtol=1e-12)
    np.testing.assert_allclose(back.field_scale * change.field_scale, 1.0, rtol=1e-12)
    np.testing.assert_allclose(back.action_offset, -change.action_offset, atol=1e-12)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_converted_free_theories_have_equal_normalised_densities(source, target, x64):
    # For lam = 0 both sides are normalised (FreeField): p_t(c phi) c^V = p_s(phi).
    shape, m2 = (3, 4), 0.7
    source_field = FreeField(shape, m2, convention=source)
    target_field = FreeField(shape, m2, convention=target)
    source_couplings = (
        {"m2": m2, "lam": 0.0}
        if source != "hopping"
        else {"kappa": 1 / (4 + m2), "lam": 0.0}
    )
    change = convert_convention(source, target, ndim=2, **source_couplings)
    phi = source_field.sample(jax.random.key(0), (5,))
    scale = change.field_scale
    np.testing.assert_allclose(
        target_field.log_prob(scale * phi) + 12 * jnp.log(scale),
        source_field.log_prob(phi),
        rtol=1e-10,
    )


def test_the_free_theory_has_kappa_one_over_2d_plus_m2(x64):
    for ndim in (1, 2, 4):
        change = convert_convention("bare", "hopping", ndim=ndim, m2=0.5, lam=0.0)
        np.testing.assert_allclose(change.couplings["kappa"], 1 / (2 * ndim + 0.5))
        np.testing.assert_allclose(change.couplings["lam"], 0.0)


def test_couplings_may_be_traced():
    phi = jax.random.normal(jax.random.key(0), (4, 4))

    def action(lam):
        return phi4_action(phi, convention="bare", m2=-4.0, lam=lam)

    np.testing.assert_allclose(
        jax.jit(jax.grad(action))(1.0), jnp.sum(phi**4), rtol=1e-5
    )
    kappas = jax.vmap(
        lambda lam: convert_convention(
            "bare", "hopping", ndim=2, m2=-4.0, lam=lam
        ).couplings["kappa"]
    )(jnp.array([6.0, 8.0]))
    assert kappas.shape == (2,) and bool(jnp.all(kappas > 0))


def test_missing_wrong_and_foreign_couplings_are_refused():
    phi = jnp.zeros((4, 4))
    with pytest.raises(ValueError, match="'bare' convention needs m2 and lam; lam"):
        phi4_action(phi, convention="bare", m2=1.0)
    with pytest.raises(ValueError, match="'hopping' convention needs kappa and lam"):
        phi4_action(phi, convention="hopping", lam=1.0)
    with pytest.raises(ValueError, match="takes m2 and lam, not kappa"):
        phi4_action(phi, convention="half", m2=1.0, lam=1.0, kappa=0.1)
    with pytest.raises(ValueError, match="one of 'bare', 'half' or 'hopping'; got 'ba"):
        phi4_action(phi, convention="ba", m2=1.0, lam=1.0)
    with pytest.raises(TypeError, match="convention"):
        phi4_action(phi, m2=1.0, lam=1.0)  # no default convention
    with pytest.raises(ValueError, match="got a scalar"):
        phi4_action(1.0, convention="bare", m2=1.0, lam=1.0)
    with pytest.raises(ValueError, match="no hopping form"):
        convert_convention("bare", "hopping", ndim=2, m2=-5.0, lam=0.0)
    with pytest.raises(ValueError, match="kappa must be positive"):
        convert_convention("hopping", "bare", ndim=2, kappa=-0.1, lam=0.0)
    with pytest.raises(ValueError, match="ndim must be the lattice dimension"):
        convert_convention("bare", "half", ndim=0, m2=1.0, lam=1.0)
    with pytest.raises(ValueError, match="convert_convention: convention must be"):
        convert_convention("bare", "Half", ndim=2, m2=1.0, lam=1.0)
