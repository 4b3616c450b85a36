"""Vector fields of continuous flows and the time embeddings, against closed
forms and autodiff."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrox.nn import (
    AbstractTimeEmbedding,
    AbstractVectorField,
    ConcatSquashLinear,
    FourierTimeEmbedding,
    GaussianTimeEmbedding,
    LinearHatTimeEmbedding,
    MLPVectorField,
    ReducedTimeEmbedding,
    jacobian_trace,
)
from tests.bijections.registry_continuous import randomized

TIMES = jnp.linspace(-0.1, 1.3, 15)


def _autodiff_trace(function, x):
    jacobian = jax.jacobian(lambda v: function(v.reshape(x.shape)).ravel())(x.ravel())
    return jnp.trace(jacobian)


def test_jacobian_trace_of_a_nonlinear_map_of_a_matrix_event():
    weight = jax.random.normal(jax.random.key(0), (6, 6))

    def function(x):
        return jnp.tanh(weight @ x.ravel()).reshape(2, 3) * x

    x = jax.random.normal(jax.random.key(1), (2, 3))
    value, trace = jax.jit(jacobian_trace, static_argnums=0)(function, x)
    np.testing.assert_allclose(value, function(x), rtol=1e-6)
    np.testing.assert_allclose(trace, _autodiff_trace(function, x), rtol=1e-5)


def _random_field(key, **options):
    field = MLPVectorField(3, width=6, depth=2, key=key, **options)
    return randomized(field, jax.random.fold_in(key, 1), scale=0.7)


def test_a_new_mlp_field_is_zero_everywhere():
    field = MLPVectorField(
        (2, 2), width=8, depth=2, cond_shape=3, key=jax.random.key(0)
    )
    x = jax.random.normal(jax.random.key(1), (2, 2))
    velocity = field(0.3, x, jnp.ones(3))
    assert velocity.shape == (2, 2)
    assert np.all(np.asarray(velocity) == 0.0)
    assert field.divergence(0.3, x, jnp.ones(3)) == 0.0


@eqx.filter_jit
def _field_and_manual(field, t, x, condition):
    context = jnp.concatenate([jnp.atleast_1d(t), condition])
    h = x
    for index, layer in enumerate(field.layers):
        gate = jax.nn.sigmoid(layer.gate_weight @ context + layer.gate_bias)
        h = (layer.weight @ h + layer.bias) * gate + layer.shift_weight @ context
        if index < len(field.layers) - 1:
            h = jnp.tanh(h)
    return field(t, x, condition), h


def test_mlp_field_is_the_concat_squash_formula_and_sees_time_and_condition():
    field = _random_field(jax.random.key(2), cond_shape=(2,))
    x = jax.random.normal(jax.random.key(3), (3,))
    condition = jnp.array([0.5, -1.0])
    value, manual = _field_and_manual(field, 0.4, x, condition)
    np.testing.assert_allclose(value, manual, rtol=1e-5, atol=1e-6)
    later, _ = _field_and_manual(field, 0.9, x, condition)
    other, _ = _field_and_manual(field, 0.4, x, -condition)
    assert jnp.max(jnp.abs(later - value)) > 1e-2
    assert jnp.max(jnp.abs(other - value)) > 1e-2


def test_default_divergence_is_the_trace_of_the_jacobian():
    field = _random_field(jax.random.key(4), time_embedding=FourierTimeEmbedding(2))
    x = jax.random.normal(jax.random.key(5), (3,))
    divergence = eqx.filter_jit(lambda f, v: f.divergence(0.7, v))(field, x)
    expected = _autodiff_trace(lambda v: field(0.7, v), x)
    np.testing.assert_allclose(divergence, expected, rtol=1e-5)


def test_mlp_field_checks_its_inputs():
    field = MLPVectorField(3, width=4, depth=1, cond_shape=(2,), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected x of shape \(3,\), got \(4,\)"):
        field(0.0, jnp.ones(4), jnp.ones(2))
    with pytest.raises(ValueError, match="cond_shape=\\(2,\\) but got condition=None"):
        field(0.0, jnp.ones(3))
    with pytest.raises(
        ValueError,
        match=r"depth \(the number of hidden layers\) must be a whole number",
    ):
        MLPVectorField(3, depth=-1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="shape must be a positive int"):
        MLPVectorField((3, 0), key=jax.random.key(0))
    with pytest.raises(TypeError, match="time_embedding must be a time embedding"):
        MLPVectorField(3, time_embedding=jnp.sin, key=jax.random.key(0))


def test_concat_squash_layer_with_zero_start_outputs_zero():
    layer = ConcatSquashLinear(3, 5, 2, key=jax.random.key(0), zero=True)
    assert np.all(np.asarray(layer(jnp.ones(3), jnp.ones(2))) == 0.0)
    assert jnp.all(layer.gate_weight != 0)


def test_a_user_field_gets_the_autodiff_divergence_unless_it_gives_its_own():
    class Linear(AbstractVectorField):
        matrix: jax.Array
        shape: tuple = eqx.field(static=True, default=(3,))
        cond_shape: None = eqx.field(static=True, default=None)

        def __call__(self, t, x, condition=None):
            return t * (self.matrix @ x)

    field = Linear(jax.random.normal(jax.random.key(0), (3, 3)))
    divergence = field.divergence(0.5, jnp.ones(3))
    np.testing.assert_allclose(divergence, 0.5 * jnp.trace(field.matrix), rtol=1e-6)


def _features(embedding):
    return jax.jit(jax.vmap(embedding))(TIMES)


def test_fourier_embedding_is_sines_cosines_and_one():
    embedding = FourierTimeEmbedding(3, t0=-0.5, t1=1.5)
    u = (TIMES - embedding.t0) / (embedding.t1 - embedding.t0)
    k = jnp.arange(1, 4)
    expected = jnp.concatenate(
        [
            jnp.sin(2 * jnp.pi * k * u[:, None]),
            jnp.cos(2 * jnp.pi * k * u[:, None]),
            jnp.ones((len(TIMES), 1)),
        ],
        axis=1,
    )
    assert embedding.size == 7
    np.testing.assert_allclose(_features(embedding), expected, atol=2e-6)


def test_gaussian_embedding_is_bumps_whose_width_is_learned():
    embedding = GaussianTimeEmbedding(4)
    centres = jnp.linspace(0.0, 1.0, 4)
    np.testing.assert_allclose(embedding.width, 1 / 3, rtol=1e-6)
    expected = jnp.exp(-0.5 * ((TIMES[:, None] - centres) * 3) ** 2)
    np.testing.assert_allclose(_features(embedding), expected, rtol=1e-5)
    gradient = jax.grad(lambda e: e(0.2).sum())(embedding).log_width
    # d/dlog w exp(-d^2 / 2w^2) = (d/w)^2 exp(...)
    distance = (0.2 - centres) * 3
    np.testing.assert_allclose(
        gradient, distance**2 * jnp.exp(-0.5 * distance**2), rtol=1e-5
    )


def test_linear_hats_interpolate_linearly_and_clip_outside():
    embedding = LinearHatTimeEmbedding(5, t0=0.0, t1=2.0)
    features = _features(embedding)
    np.testing.assert_allclose(features.sum(1), 1.0, rtol=1e-6)
    knot_values = jnp.array([0.3, -1.0, 2.0, 0.5, 4.0])
    interpolated = features @ knot_values
    knots = jnp.linspace(0.0, 2.0, 5)
    np.testing.assert_allclose(
        interpolated, np.interp(TIMES, knots, knot_values), rtol=1e-5, atol=1e-6
    )
    assert int((features > 0).sum(1).max()) <= 2


def test_reduced_embedding_is_a_learned_linear_map_of_the_features():
    inner = FourierTimeEmbedding(4)
    embedding = ReducedTimeEmbedding(inner, 3, key=jax.random.key(0))
    assert isinstance(embedding, AbstractTimeEmbedding)
    assert embedding.weight.shape == (3, 9)
    expected = _features(inner) @ embedding.weight.T
    np.testing.assert_allclose(_features(embedding), expected, rtol=1e-5, atol=1e-6)


def test_time_embeddings_refuse_bad_arguments():
    with pytest.raises(ValueError, match="expected a scalar time, got shape"):
        FourierTimeEmbedding(2)(jnp.ones(2))
    with pytest.raises(
        ValueError, match="n_bumps must be a whole number of at least 2"
    ):
        GaussianTimeEmbedding(1)
    with pytest.raises(ValueError, match="expected an interval t0 < t1"):
        LinearHatTimeEmbedding(3, t0=1.0, t1=1.0)
    with pytest.raises(ValueError, match="width must be positive"):
        GaussianTimeEmbedding(3, width=0.0)
    with pytest.raises(TypeError, match="expected a time embedding"):
        ReducedTimeEmbedding(jnp.sin, 3, key=jax.random.key(0))
