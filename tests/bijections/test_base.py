"""Bad input to bijections raises errors that say what was expected and got."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.bijections import (
    AbstractBijection,
    Affine,
    Chain,
    Exp,
    Invert,
    Permute,
    Power,
    Reshape,
    Scale,
    Scan,
    SinhArcsinh,
    Tanh,
    Vmap,
)
from flowrox.bijections._base import missing_inverse
from tests.helpers import ConditionalAffine


class _CubeWithoutInverse(AbstractBijection):
    """y = x + x^3: monotone, with no closed-form inverse offered here."""

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def transform_and_log_det(self, x, condition=None):
        return x + x**3, jnp.sum(jnp.log1p(3 * x**2))

    def inverse_and_log_det(self, y, condition=None):
        raise missing_inverse(self)


def test_wrong_input_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"expected x of shape \(3,\), got \(4,\)"):
        Affine(jnp.zeros(3)).transform(jnp.zeros(4))
    with pytest.raises(ValueError, match=r"expected y of shape \(3,\), got \(2, 3\)"):
        Affine(jnp.zeros(3)).inverse(jnp.zeros((2, 3)))


def test_missing_condition_for_conditional_bijection():
    bijection = ConditionalAffine(jax.random.key(0), 3, 2)
    with pytest.raises(
        ValueError, match=r"expected a condition of shape \(2,\), got None"
    ):
        bijection.transform(jnp.zeros(3))


def test_condition_given_to_unconditional_bijection():
    with pytest.raises(ValueError, match=r"unconditional .* condition of shape \(2,\)"):
        Affine(jnp.zeros(3)).transform(jnp.zeros(3), jnp.zeros(2))


def test_wrong_condition_shape():
    bijection = ConditionalAffine(jax.random.key(0), 3, 2)
    with pytest.raises(ValueError, match=r"condition of shape \(2,\), got \(5,\)"):
        bijection.inverse(jnp.zeros(3), jnp.zeros(5))


def test_composites_check_shapes_at_their_own_level():
    chain = Chain([Affine(jnp.zeros(3)), ConditionalAffine(jax.random.key(0), 3, 2)])
    assert chain.cond_shape == (2,)
    with pytest.raises(ValueError, match=r"Chain is conditional"):
        chain.transform(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"Chain.transform_and_log_det expected x"):
        chain.transform(jnp.zeros(2), jnp.zeros(2))


def test_missing_inverse_names_the_remedy():
    bijection = _CubeWithoutInverse(shape=(2,))
    assert bijection.transform(jnp.ones(2)).tolist() == [2.0, 2.0]
    with pytest.raises(NotImplementedError, match=r"no closed-form inverse.*Invert"):
        bijection.inverse(jnp.ones(2))
    # Inverting it makes the missing direction the forward one, with the same advice.
    with pytest.raises(NotImplementedError, match=r"_CubeWithoutInverse has no"):
        Invert(bijection).transform(jnp.ones(2))


def test_integer_inputs_are_promoted_to_float():
    y = Affine(jnp.zeros(2), 2.0).transform(jnp.array([1, 2]))
    assert jnp.issubdtype(y.dtype, jnp.floating)
    assert y.tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Affine(0.0, -1.0), r"Affine: scale must be positive"),
        (lambda: Scale(jnp.array([1.0, 0.0])), r"Scale: scale must be positive"),
        (lambda: Power(-2.0), r"Power: exponent must be positive"),
        (lambda: SinhArcsinh(0.0, 0.0), r"tailweight must be positive"),
        (
            lambda: Affine(jnp.zeros(3), jnp.ones(2)),
            r"parameter shapes \[\(3,\), \(2,\)\] do not broadcast",
        ),
        (
            lambda: Affine(jnp.zeros(3), shape=(2,)),
            r"shape \(3,\) does not broadcast to the event shape \(2,\)",
        ),
        (lambda: Permute(jnp.array([0, 0, 1])), r"each of 0, ..., size - 1"),
        (lambda: Permute(jnp.array([0.0, 1.0])), r"integer permutation"),
        (lambda: Chain([]), r"at least one bijection"),
        (
            lambda: Chain([Affine(jnp.zeros(2)), Exp((3,))]),
            r"shapes \[\(2,\), \(3,\)\]",
        ),
        (
            lambda: Chain(
                [
                    ConditionalAffine(jax.random.key(0), 2, 1),
                    ConditionalAffine(jax.random.key(1), 2, 3),
                ]
            ),
            r"conditions of different shapes",
        ),
        (lambda: Reshape(Exp((6,)), (2, 2)), r"\(2, 2\) has 4 elements"),
        (
            lambda: Scan(
                Chain(
                    [
                        Affine(jnp.zeros((2, 3))),
                        Reshape(Affine(jnp.zeros(6)), (2, 3)),
                    ]
                )
            ),
            r"same leading layer axis",
        ),
        (lambda: Scan(Exp((2,))), r"no array leaves to stack"),
        (lambda: Vmap(Exp((2,)), axis_size=0), r"axis_size must be >= 1"),
    ],
)
def test_construction_errors(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_traced_negative_scale_is_caught_at_run_time():
    @jax.jit
    def log_det(scale):
        return Affine(0.0, scale).transform_and_log_det(jnp.array(1.0))[1]

    assert np.isclose(log_det(2.0), np.log(2.0))
    with pytest.raises(Exception, match=r"scale must be positive"):
        jax.block_until_ready(log_det(-2.0))


@pytest.mark.parametrize(
    ("bijection", "value", "match"),
    [
        (Exp(), -1.0, r"Exp.inverse got an input outside its domain y > 0"),
        (Tanh(), 1.5, r"Tanh.inverse got an input outside its domain -1 < y < 1"),
        (Power(2.0), -1.0, r"Power.transform got an input outside its domain x >= 0"),
    ],
)
def test_values_outside_the_domain_raise_instead_of_nan(bijection, value, match):
    call = bijection.inverse if "inverse" in match else bijection.transform
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(jax.jit(lambda v: call(v))(jnp.array(value)))
