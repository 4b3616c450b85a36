"""ConvVF: its one-pass divergence against the autodiff trace (any channel
count), its velocity against ConvSym's convolution, the identity at
initialisation, exact D4 and Z2 equivariance of the flow, the round trip and
log-det of the solved map against autodiff, conditioning, the seed's examples,
and (slow) training on the free theory and sampling phi^4 against NUTS."""

import functools
from functools import partial

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC, NUTS

from flowrox import Flow
from flowrox.bijections import ContinuousFlow, Reshape
from flowrox.infer import IndependentMetropolis, importance_diagnostics
from flowrox.lattice import (
    ConvSym,
    ConvVF,
    DampedFourierFeatures,
    DampedPolynomialFeatures,
    FourierFeatures,
    FreeField,
    PolynomialFeatures,
    magnetization,
    phi4_action,
    phi4_model,
    two_point_susceptibility,
)
from flowrox.nn import FourierTimeEmbedding, GaussianTimeEmbedding, jacobian_trace
from flowrox.train import fit_to_density, trainable_filter

# Small, and slow in time (two frequencies), so that a few solver steps are
# accurate.
SMALL = dict(
    features=(partial(FourierFeatures, 3), partial(PolynomialFeatures, (1, 3))),
    features_reduced=3,
    time_kernel=FourierTimeEmbedding(2),
    time_kernel_reduced=3,
)


def _randomised(module, key, scale=0.5):
    """`module` with noise added to every trainable leaf (so kernels are not zero)."""
    parameters, static = eqx.partition(module, trainable_filter(module))
    leaves, treedef = jax.tree.flatten(parameters)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def _field(channel_shape=(), lattice=(5, 5), kernel=(3, 3), scale=0.5, **options):
    options = {**SMALL, **options}
    field = ConvVF.build(
        kernel, channel_shape, key=jax.random.key(0), lattice_shape=lattice, **options
    )
    return _randomised(field, jax.random.key(1), scale)


@eqx.filter_jit
def _divergences(field, phi, t):
    """The field's divergence both ways, the autodiff trace, and the sum of
    the centre coupling over every output channel (right for one channel)."""
    velocity, trace = jacobian_trace(lambda x: field(t, x), phi)
    both = field.velocity_and_divergence(t, phi)
    superposition = field.feature_weight / field.feature_weight.shape[1]
    centre = superposition.T @ field.kernel(t)[field.conv.center_orbit]  # (C K, C)
    x = phi.reshape(*field.lattice_shape, field.channels)
    slopes = jnp.concatenate(
        [f.value_and_derivative(x)[1] for f in field.features], axis=-1
    ).reshape(*field.lattice_shape, -1)
    summed = jnp.sum(slopes * centre.sum(-1))
    return velocity, trace, field.divergence(t, phi), both, summed


@pytest.mark.parametrize("channel_shape", [(), (2,)])
def test_the_divergence_is_the_trace_of_the_jacobian(channel_shape, x64):
    field = _field(channel_shape, use_bias=True)
    phi = jax.random.normal(jax.random.key(2), field.shape)
    velocity, trace, divergence, both, summed = _divergences(field, phi, 0.3)
    np.testing.assert_allclose(divergence, trace, rtol=1e-12)
    np.testing.assert_allclose(both[1], trace, rtol=1e-12)
    np.testing.assert_allclose(both[0], velocity, rtol=1e-14)
    assert abs(float(trace)) > 1e-3  # a divergence that could be wrong
    # Summing the centre coupling over every output channel gives the trace
    # for one channel only: with two, the channels' cross couplings enter.
    if channel_shape == ():
        np.testing.assert_allclose(summed, trace, rtol=1e-12)
    else:
        assert abs(float(summed - trace)) > 1e-3 * abs(float(trace))


@pytest.mark.parametrize(
    ("kernel", "lattice", "symmetry"),
    [
        ((3, 3), (5, 4), "hyperoctahedral"),
        ((4, 4), (4, 4), "hyperoctahedral"),
        ((3, 3, 3), (3, 4, 3), "translation"),
    ],
)
def test_the_velocity_is_conv_sym_applied_to_the_superposed_features(
    kernel, lattice, symmetry
):
    field = _field((2,), lattice, kernel, symmetry=symmetry)
    conv = ConvSym(
        3, 2, kernel, symmetry=symmetry, use_bias=False, key=jax.random.key(0)
    )

    @eqx.filter_jit
    def both(field, phi, t):
        features = jnp.concatenate([f(phi) for f in field.features], axis=-1)
        superposition = field.feature_weight / field.feature_weight.shape[1]
        superposed = features.reshape(*lattice, -1) @ superposition.T
        return field(t, phi), conv(superposed, field.kernel(t))

    phi = jax.random.normal(jax.random.key(3), field.shape)
    velocity, expected = both(field, phi, 0.7)
    assert float(jnp.abs(expected).max()) > 1e-2
    np.testing.assert_allclose(velocity, expected, rtol=2e-5, atol=2e-6)


def _odd_flow(scale=0.3):
    field = _field(lattice=(4, 4), scale=scale)
    return ContinuousFlow(
        field, shape=field.shape, solver=diffrax.Tsit5(), steps=32, divergence="field"
    )


def _symmetry_images(phi):
    return [
        -phi,
        jnp.rot90(phi),
        jnp.rot90(phi, 2),
        phi[::-1],
        phi.T,
        jnp.roll(phi, (1, 2), axis=(0, 1)),
    ]


@eqx.filter_jit
def _solved(flow, phi):
    """The flow on `phi` and its symmetry images, back, and the autodiff
    log-det of the solved map (compiled once for every flow of this build)."""
    ys, log_dets = jax.vmap(flow.transform_and_log_det)(
        jnp.stack([phi, *_symmetry_images(phi)])
    )
    x, inverse_log_det = flow.inverse_and_log_det(ys[0])
    jacobian = jax.jacfwd(lambda v: flow.transform(v.reshape(phi.shape)).ravel())(
        phi.ravel()
    )
    return ys, log_dets, x, inverse_log_det, jnp.linalg.slogdet(jacobian)[1]


def test_the_flow_is_exactly_d4_z2_and_translation_equivariant(x64):
    flow = _odd_flow()
    assert flow.vector_field.z2_equivariant
    phi = jax.random.normal(jax.random.key(4), (4, 4))
    ys, log_dets, *_ = _solved(flow, phi)
    y = ys[0]
    assert float(jnp.abs(y - phi).max()) > 1e-2  # the flow does something
    for image, expected in zip(ys[1:], _symmetry_images(y), strict=True):
        np.testing.assert_allclose(image, expected, atol=1e-13)
    np.testing.assert_allclose(log_dets, log_dets[0], atol=1e-12)


def test_the_round_trip_and_the_log_det_of_the_solved_map(x64):
    phi = jax.random.normal(jax.random.key(5), (4, 4))
    ys, log_dets, x, inverse_log_det, autodiff = _solved(_odd_flow(), phi)
    assert abs(float(log_dets[0])) > 0.1
    # The gaps are the solver's error, which 32 Tsit5 steps make small.
    np.testing.assert_allclose(x, phi, atol=1e-7)
    np.testing.assert_allclose(log_dets[0], autodiff, atol=1e-7)
    np.testing.assert_allclose(inverse_log_det, -log_dets[0], atol=1e-7)
    # A new field is zero: its flow is exactly the identity.
    ys, log_dets, x, inverse_log_det, autodiff = _solved(_odd_flow(scale=0.0), phi)
    np.testing.assert_array_equal(ys[0], phi)
    np.testing.assert_array_equal(x, phi)
    assert float(log_dets[0]) == 0.0 == float(inverse_log_det)


def test_a_bias_or_an_even_feature_breaks_z2(x64):
    phi = jax.random.normal(jax.random.key(4), (4, 4))
    odd_gap = eqx.filter_jit(lambda field: field(0.3, -phi) + field(0.3, phi))
    for options in [
        {"use_bias": True},
        {"features": (partial(PolynomialFeatures, (1, 2)),), "features_reduced": 2},
    ]:
        field = _field(lattice=(4, 4), **options)
        assert not field.z2_equivariant
        assert float(jnp.abs(odd_gap(field)).max()) > 1e-3


def test_a_batch_on_another_lattice_gives_every_event_its_own_divergence():
    field = _field(lattice=(4, 4)).with_lattice((5, 6))  # the same parameters
    assert field.shape == (5, 6)
    phi = jax.random.normal(jax.random.key(6), (2, 3, 5, 6))

    @eqx.filter_jit
    def both(field, phi):
        return field.velocity_and_divergence(0.4, phi), field.velocity_and_divergence(
            0.4, phi[1, 2]
        )

    (velocity, divergence), (one_velocity, one_divergence) = both(field, phi)
    assert velocity.shape == phi.shape and divergence.shape == (2, 3)
    np.testing.assert_allclose(velocity[1, 2], one_velocity, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(divergence[1, 2], one_divergence, rtol=1e-6)


def test_a_conditional_field_and_flow_depend_on_the_coupling(x64):
    embedding = GaussianTimeEmbedding(4, t0=4.0, t1=10.0)
    fields = {
        "affine": _field(lattice=(4, 4), cond_shape=()),
        "embedded": _field(
            lattice=(4, 4), cond_shape=(), condition_embedding=embedding
        ),
    }
    phi = jax.random.normal(jax.random.key(7), (4, 4))
    lam = jnp.array([5.0, 8.0])

    @eqx.filter_jit
    def evaluate(field):
        velocities = jax.vmap(lambda c: field(0.3, phi, c))(lam)
        trace = jacobian_trace(lambda x: field(0.3, x, lam[0]), phi)[1]
        return velocities, trace, field.divergence(0.3, phi, lam[0])

    for field in fields.values():
        velocities, trace, divergence = evaluate(field)
        assert float(jnp.abs(velocities[0] - velocities[1]).max()) > 1e-3
        np.testing.assert_allclose(divergence, trace, rtol=1e-12)
    flow = ContinuousFlow(
        fields["affine"], shape=(4, 4), cond_shape=(), steps=2, divergence="field"
    )
    base = dist.Normal(jnp.zeros((4, 4)), 1.0).to_event(2)
    log_probs = eqx.filter_jit(lambda f: f.log_prob(phi))(
        Flow(base, flow, condition=lam)
    )
    assert log_probs.shape == (2,) and float(log_probs[0] - log_probs[1]) != 0.0


def test_the_seed_examples_run_with_key_for_rngs():
    rngs = jax.random.key(0)  # flax's rngs= becomes key=
    t, phi = 0.5, jax.random.normal(jax.random.key(1), (6, 6))
    cnf = ConvVF.build(
        kernel_shape=(3, 3),
        channel_shape=(),
        features=(
            partial(FourierFeatures, 49),
            partial(PolynomialFeatures, (1,)),
        ),
        key=rngs,
    )
    velocity, div = cnf.velocity_and_divergence(t, phi)
    assert velocity.shape == (6, 6) and div.shape == ()
    assert not jnp.any(velocity) and float(div) == 0.0  # a new field is zero
    cnf = ConvVF.build(
        kernel_shape=(3, 3),
        channel_shape=(1,),  # scalar field
        features_reduced=16,
        key=rngs,
    )
    velocity, div = cnf.velocity_and_divergence(t, phi[..., None])
    assert velocity.shape == (6, 6, 1) and cnf.feature_weight.shape == (16, 50)
    assert cnf.kernel_weight.shape == (3, 16, 1, 20)


def test_feature_slopes_are_the_diagonal_of_their_jacobians(x64):
    phi = jnp.array([[-1.3, 0.4], [0.9, 2.1]])  # two sites, two channels
    key = jax.random.key(9)
    maps = [
        FourierFeatures(3, 2, key=key),
        PolynomialFeatures((0, 1, 2, 3), 2),
        DampedFourierFeatures(3, 2, key=key, decay_length=1.5),
        DampedPolynomialFeatures((1, 3), 2, decay_length=1.5),
    ]

    @eqx.filter_jit
    def evaluate(maps):
        return [
            (*f.value_and_derivative(phi), f(phi), jax.jacobian(f)(phi)) for f in maps
        ]

    for value, slope, direct, jacobian in evaluate(maps):
        diagonal = jnp.einsum("scksc->sck", jacobian)  # jacobian: (2, 2, K, 2, 2)
        np.testing.assert_allclose(value, direct)
        np.testing.assert_allclose(slope, diagonal, rtol=1e-12)
        off = jacobian.sum((3, 4)) - diagonal
        np.testing.assert_allclose(off, 0.0, atol=1e-15)  # site- and channel-wise


def test_fourier_features_in_float32_match_jnp_sin():
    features = FourierFeatures(1, key=jax.random.key(0))
    features = eqx.tree_at(lambda f: f.frequency, features, jnp.ones((1, 1)))
    phi = jnp.linspace(-1e5, 1e5, 200_001, dtype=jnp.float32)[:, None]
    huge = jnp.array([[1e30], [-3e38]], dtype=jnp.float32)

    @eqx.filter_jit
    def evaluate(features):
        value, slope = features.value_and_derivative(phi)
        return value, slope, features(-phi), features(huge)

    value, slope, negated, at_huge = evaluate(features)
    np.testing.assert_allclose(value[:, 0, 0], np.sin(np.float64(phi[:, 0])), atol=2e-7)
    np.testing.assert_allclose(slope[:, 0, 0], np.cos(np.float64(phi[:, 0])), atol=2e-7)
    # Odd exactly, so an odd field stays Z2-equivariant in float32 too.
    np.testing.assert_array_equal(negated, -value)
    assert bool(jnp.all(jnp.abs(at_huge) <= 1.0))


def test_misuse_is_refused_with_the_remedy():
    field = ConvVF.build((3, 3), key=jax.random.key(0), **SMALL)
    with pytest.raises(ValueError, match=r"without a lattice shape.*with_lattice"):
        ContinuousFlow(field, shape=(4, 4), divergence="field")
    with pytest.raises(ValueError, match=r"expected one field of shape \(4, 4\)"):
        field.with_lattice((4, 4))(0.1, jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"at least as large as the kernel"):
        field.with_lattice((2, 4))
    with pytest.raises(ValueError, match=r"needs a condition of shape \(\)"):
        ConvVF.build((3, 3), key=jax.random.key(0), cond_shape=(), **SMALL)(
            0.1, jnp.zeros((4, 4))
        )
    with pytest.raises(ValueError, match=r"feature maps were built for \[1\]"):
        ConvVF(
            features=[FourierFeatures(2, 1, key=jax.random.key(0))],
            feature_weight=None,
            time_embedding=field.time_embedding,
            time_weight=None,
            conv=ConvSym(6, 2, (3, 3), key=jax.random.key(0)),
            kernel_weight=jnp.zeros((3, 2, 2, 21)),
            channel_shape=(2,),
        )
    with pytest.raises(ValueError, match=r"conv must convolve the 3 orbit maps"):
        ConvVF(
            features=[FourierFeatures(2, 1, key=jax.random.key(0))],
            feature_weight=None,
            time_embedding=field.time_embedding,
            time_weight=None,
            conv=ConvSym(2, 1, (3, 3), key=jax.random.key(0)),
            kernel_weight=jnp.zeros((3, 2, 1, 21)),
        )
    with pytest.raises(TypeError, match=r"factory\(channels, key=key\)"):
        ConvVF.build((3, 3), key=jax.random.key(0), features=(lambda c, key: c,))
    with pytest.raises(ValueError, match=r"cond_shape must be \(\) or \(1,\)"):
        ConvVF.build(
            (3, 3),
            key=jax.random.key(0),
            cond_shape=(2,),
            condition_embedding=GaussianTimeEmbedding(3),
        )
    with pytest.raises(ValueError, match=r"powers must be a non-empty sequence"):
        PolynomialFeatures((1, -2))


# -- slow: training ---------------------------------------------------------------


def _train_conv_vf(log_density, lattice, steps, *, ode_steps, key=0, **options):
    """A ConvVF flow fitted by reverse KL (Adam b1 0.8, b2 0.9, cosine decay).

    The time embedding is smooth (few frequencies) and the solver's steps
    enough to resolve the field: reverse KL exploits a solver too coarse for
    its field, driving the computed log-density below the true one.
    """
    field = ConvVF.build(
        (3, 3),
        key=jax.random.key(key),
        lattice_shape=lattice,
        features_reduced=None,
        time_kernel_reduced=None,
        **options,
    )
    bijection = ContinuousFlow(
        field,
        shape=field.shape,
        solver=diffrax.Tsit5(),
        steps=ode_steps,
        divergence="field",
    )
    flow = Flow(dist.Normal(jnp.zeros(lattice), 1.0).to_event(len(lattice)), bijection)
    schedule = optax.cosine_decay_schedule(1e-2, steps)
    flow, _ = fit_to_density(
        jax.random.key(key + 1),
        flow,
        log_density,
        optimizer=optax.adam(schedule, b1=0.8, b2=0.9),
        steps=steps,
        batch_size=64,
        progress=False,
    )
    return flow


def _flattened(flow, lattice):
    size = int(np.prod(lattice))
    base = dist.Normal(jnp.zeros(size), 1.0).to_event(1)
    return Flow(base, Reshape(flow.bijection, (size,)))


@pytest.mark.slow
def test_a_conv_vf_flow_trained_on_the_free_theory_reaches_ess_095():
    # A 3x3 kernel spans the free theory's spectrum 2 (p^2 + m^2) at m^2 = 4
    # to within an importance ESS of about 0.99 (a least-squares fit of its
    # log in the kernel's three cosines).
    lattice, m2 = (6, 6), 4.0
    free = FreeField(lattice, m2, convention="bare")
    flow = _train_conv_vf(
        free.log_prob,
        lattice,
        250,
        ode_steps=6,
        features=(partial(FourierFeatures, 4), partial(PolynomialFeatures, (1,))),
        time_kernel=FourierTimeEmbedding(1),
    )
    result = importance_diagnostics(
        _flattened(flow, lattice),
        lambda x: free.log_prob(x.reshape(lattice)),
        jax.random.key(3),
        1024,
    )
    assert result.ess >= 0.95, result


@pytest.mark.slow
def test_flow_imh_and_nuts_agree_on_phi4():
    lattice = (4, 4)
    couplings = {"convention": "bare", "m2": -4.0, "lam": 8.0}
    model = functools.partial(phi4_model, lattice, **couplings)
    flow = _train_conv_vf(
        lambda phi: -phi4_action(phi, **couplings),
        lattice,
        400,
        ode_steps=20,
        features=(partial(FourierFeatures, 16), partial(PolynomialFeatures, (1,))),
        time_kernel=FourierTimeEmbedding(2),
    )
    imh = MCMC(
        IndependentMetropolis(_flattened(flow, lattice), model=model),
        num_warmup=100,
        num_samples=3000,
        progress_bar=False,
    )
    imh.run(jax.random.key(4), extra_fields=("accept_prob",))
    nuts = MCMC(NUTS(model), num_warmup=300, num_samples=3000, progress_bar=False)
    nuts.run(jax.random.key(5))
    assert float(imh.get_extra_fields()["accept_prob"].mean()) > 0.5
    estimates = {
        name: (magnetization(phi, absolute=True), two_point_susceptibility(phi))
        for name, phi in (
            ("imh", imh.get_samples()["phi"]),
            ("nuts", nuts.get_samples()["phi"]),
        )
    }
    for mine, theirs in zip(estimates["imh"], estimates["nuts"], strict=True):
        combined = np.hypot(mine.error, theirs.error)
        assert abs(mine.value - theirs.value) < 4 * combined, (mine, theirs)
