"""Code written for pyrox's conditioning layers runs on flowrox with only its
import line changed (`from pyrox.nn import ...` -> `from flowrox.nn import ...`).

Each example of pyrox's conditioning page is run as the page shows it, only the
import changed: the docstring examples through `doctest` (so their printed
shapes are checked), the end-to-end example with `exec`. The numbers the page
states (parameter counts, the conditioners' placement, the Fourier features'
formula, the priors of the Bayesian forms) are checked against the built
modules.
"""

import doctest
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import flowrox
from flowrox.nn import (
    SIREN,
    AffineModulation,
    BayesianAffineModulation,
    BayesianConcatConditioner,
    BayesianHyperLinear,
    ConcatConditioner,
    ConditionedINR,
    ConditionedRFFNet,
    FiLM,
    HyperFourierFeatures,
    HyperLinear,
    HyperSIREN,
    RandomKitchenSinks,
    RBFFourierFeatures,
)

IMPORT = (
    "from flowrox.nn import (SIREN, AffineModulation, ConcatConditioner, "
    "ConditionedINR, ConditionedRFFNet, HyperFourierFeatures, HyperLinear)"
)

# The page's docstring examples, as it shows them; the first line of each is
# the import, the one line that changes.
DOCTEST_EXAMPLES = {
    "ConcatConditioner": """
>>> import jax.random as jr, jax.numpy as jnp
>>> layer = ConcatConditioner.init(num_features=8, cond_dim=4, key=jr.key(0))
>>> y = layer(jnp.ones((5, 8)), jnp.ones((5, 4)))
>>> y.shape
(5, 8)
""",
    "AffineModulation": """
>>> import jax.random as jr, jax.numpy as jnp
>>> film = AffineModulation.init(num_features=8, cond_dim=4, key=jr.key(0))
>>> y = film(jnp.ones((5, 8)), jnp.ones((5, 4)))
>>> y.shape
(5, 8)
""",
    "HyperLinear": """
>>> import jax.random as jr, jax.numpy as jnp
>>> hyper = HyperLinear.init(
...     target_in=4, target_out=8, cond_dim=3, key=jr.key(0)
... )
>>> y_shared = hyper(jnp.ones((6, 4)), jnp.ones((3,)))
>>> y_persample = hyper(jnp.ones((6, 4)), jnp.ones((6, 3)))
>>> (y_shared.shape, y_persample.shape)
((6, 8), (6, 8))
""",
    "HyperFourierFeatures": """
>>> import jax.random as jr, jax.numpy as jnp
>>> import equinox as eqx
>>> key = jr.key(0)
>>> # Parameter net: (cond_dim=2,) -> (1*16 + 16 + 1 = 33,)
>>> pnet = eqx.nn.MLP(in_size=2, out_size=33, width_size=32, depth=2, key=key)
>>> hff = HyperFourierFeatures.init(
...     parameter_net=pnet, in_features=1, n_features=16, cond_dim=2,
... )
>>> y = hff(jnp.ones((5, 1)), jnp.ones((2,)))
>>> y.shape
(5, 32)
""",
    "ConditionedRFFNet": """
>>> import jax.random as jr, jax.numpy as jnp
>>> import equinox as eqx
>>> key = jr.key(0)
>>> pnet = eqx.nn.MLP(
...     in_size=4, out_size=1 * 32 + 32 + 1, width_size=32, depth=2, key=key,
... )
>>> feat = HyperFourierFeatures.init(
...     parameter_net=pnet, in_features=1, n_features=32, cond_dim=4,
... )
>>> net = ConditionedRFFNet.init(feat=feat, out_features=1, key=key)
>>> y = net(jnp.zeros((10, 1)), jnp.zeros((10, 4)))
>>> y.shape
(10, 1)
""",
    "ConditionedINR": """
>>> import jax.random as jr, jax.numpy as jnp
>>> from flowrox.nn import SIREN
>>> key = jr.key(0)
>>> inner = SIREN.init(2, 32, 1, depth=4, key=key)
>>> wrapped = ConditionedINR.init(
...     inner, conditioner_cls=AffineModulation, cond_dim=4, key=key
... )
>>> y = wrapped(jnp.zeros((10, 2)), jnp.zeros((10, 4)))
>>> y.shape
(10, 1)
""",
}

# The page's end-to-end example, in its two parts, as it shows them (its import
# line changed).
END_TO_END_FILM = """
import jax.random as jr
import jax.numpy as jnp
from flowrox.nn import SIREN, AffineModulation, ConditionedINR, HyperSIREN
key = jr.key(0)
# 1) FiLM-modulate every hidden layer of a SIREN
inner = SIREN.init(2, 32, 1, depth=4, key=key)
wrapped = ConditionedINR.init(
    inner, conditioner_cls=AffineModulation, cond_dim=4, key=key
)
y = wrapped(jnp.ones((10, 2)), jnp.ones((10, 4))) # (10, 1)
"""

END_TO_END_NIF = """
# 2) Full NIF stack — ParameterNet → per-layer HyperLinear → ShapeNet (SIREN)
import equinox as eqx
class IdentityNet(eqx.Module):
    def __call__(self, mu): return mu
nif = HyperSIREN(
    in_features=2, hidden_features=32, out_features=1,
    depth=5, cond_dim=3, parameter_net=IdentityNet(), key=key,
)
y = nif(jnp.ones((10, 2)), jnp.ones((3,))) # (10, 1)
"""

KEY = jax.random.key(0)


def count(module) -> int:
    """The number of trainable scalars of a module (the sizes of its leaves)."""
    leaves = jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array))
    return sum(leaf.size for leaf in leaves)


@pytest.mark.parametrize("name", sorted(DOCTEST_EXAMPLES))
def test_the_docstring_examples_run_with_only_the_import_changed(name):
    text = f">>> {IMPORT}\n" + DOCTEST_EXAMPLES[name]
    test = doctest.DocTestParser().get_doctest(text, {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    output = []
    runner.run(test, out=output.append)
    assert runner.failures == 0, "".join(output)
    assert runner.tries == len(test.examples) > 3


def test_the_end_to_end_example_runs_and_gives_the_shapes_it_states():
    namespace = {}
    exec(compile(END_TO_END_FILM, "end_to_end_film", "exec"), namespace)
    assert namespace["y"].shape == (10, 1)
    # FiLM after each of the three sine layers, none after the readout; every
    # FiLM starts at the identity, so the wrapped SIREN is the SIREN.
    inner, wrapped = namespace["inner"], namespace["wrapped"]
    assert len(inner.layers) == 3
    assert [type(c) for c in wrapped.conditioners] == [AffineModulation] * 3
    assert [c.num_features for c in wrapped.conditioners] == [32] * 3
    np.testing.assert_array_equal(namespace["y"], inner(jnp.ones((10, 2))))

    exec(compile(END_TO_END_NIF, "end_to_end_nif", "exec"), namespace)
    nif = namespace["nif"]
    assert namespace["y"].shape == (10, 1)
    # Called as a function, HyperSIREN is flowrox's constructor: depth=5 counts
    # sine layers there, and one HyperLinear generates each layer's weights.
    assert len(nif.layers) == 5 and isinstance(nif.readout, HyperLinear)
    assert (nif.cond_dim, nif.latent_dim) == (3, 3)
    np.testing.assert_allclose(
        namespace["y"], _generated_siren(nif, jnp.ones((10, 2)), jnp.ones(3))
    )


def _generated_siren(nif, x, mu):
    """The NIF forward written out: each layer's (W, b) generated from mu."""
    h = x
    weights = nif.weights(mu)
    for (weight, bias), omega in zip(weights[:-1], nif.omegas, strict=True):
        h = jnp.sin(omega * (h @ weight.T + bias))
    weight, bias = weights[-1]
    return h @ weight.T + bias


def test_hyper_siren_init_counts_depth_and_cond_dim_as_pyrox():
    net = eqx.nn.MLP(6, 3, 8, 1, key=KEY)  # a context (6,) to a latent (3,)
    nif = HyperSIREN.init(2, 16, 1, depth=5, cond_dim=3, parameter_net=net, key=KEY)
    # pyrox: depth layers in all, one HyperLinear per layer, the readout included.
    assert len(nif.layers) + 1 == 5
    assert (nif.cond_dim, nif.latent_dim) == (6, 3)
    assert [g.cond_dim for g in (*nif.layers, nif.readout)] == [3] * 5
    z = jax.random.normal(jax.random.key(1), (6,))
    np.testing.assert_allclose(
        nif(jnp.ones((4, 2)), z), _generated_siren(nif, jnp.ones((4, 2)), z)
    )
    with pytest.raises(ValueError, match=r"context_dim=\.\.\."):
        HyperSIREN.init(
            2, 16, 1, depth=3, cond_dim=3, parameter_net=lambda mu: mu, key=KEY
        )
    with pytest.raises(ValueError, match="context_dim=6 or leave it out"):
        HyperSIREN.init(
            2, 16, 1, depth=3, cond_dim=3, parameter_net=net, key=KEY, context_dim=5
        )
    with pytest.raises(ValueError, match="at least 2"):
        HyperSIREN.init(2, 16, 1, depth=1, cond_dim=3, parameter_net=net, key=KEY)


def test_siren_init_counts_the_readout_in_depth():
    siren = SIREN.init(2, 8, 1, depth=4, key=KEY, first_omega=10.0)
    assert siren == SIREN(2, 8, 1, 3, key=KEY, first_omega=10.0)
    with pytest.raises(ValueError, match="depth=d builds d - 1 hidden layers"):
        SIREN.init(2, 8, 1, depth=1, key=KEY)


def test_the_stated_parameter_counts():
    C, C_in, K = 6, 4, 3
    # (C + K) * C + C for the concatenation, 2 C K + 2 C for FiLM.
    assert count(ConcatConditioner.init(C, K, key=KEY)) == (C + K) * C + C
    assert count(AffineModulation.init(C, K, key=KEY)) == 2 * C * K + 2 * C
    # K (C C_in + C) is the generator's weight; its bias adds C C_in + C.
    hyper = HyperLinear.init(target_in=C_in, target_out=C, cond_dim=K, key=KEY)
    assert hyper.generator.weight.size == K * (C * C_in + C)
    assert count(hyper) == K * (C * C_in + C) + (C * C_in + C)
    assert (hyper.in_features, hyper.out_features, hyper.num_features) == (C_in, C, C)


def test_the_conditioners_compute_what_the_page_states():
    C, C_in, K = 5, 3, 2
    keys = jax.random.split(jax.random.key(3), 4)
    h = jax.random.normal(keys[0], (7, C))
    z = jax.random.normal(keys[1], (7, K))
    concat = ConcatConditioner.init(C, K, key=KEY)
    expected = jnp.concatenate([h, z], -1) @ concat.linear.weight.T + concat.linear.bias
    np.testing.assert_allclose(concat(h, z), expected, rtol=1e-5, atol=1e-6)

    film = FiLM.init(C, K, key=KEY, gamma_activation="exp")
    film = eqx.tree_at(
        lambda m: m.generator.weight, film, jax.random.normal(keys[2], (2 * C, K))
    )
    gamma, beta = film.gamma_and_beta(z)
    np.testing.assert_allclose(film(h, z), gamma * h + beta, rtol=1e-6)
    # exp: log_det is the sum of the raw gamma outputs.
    raw = (z @ film.generator.weight.T + film.generator.bias)[:, :C]
    np.testing.assert_allclose(film.log_det(z), raw.sum(-1), rtol=1e-5, atol=1e-6)

    hyper = HyperLinear.init(target_in=C_in, target_out=C, cond_dim=K, key=KEY)
    x = jax.random.normal(keys[3], (7, C_in))
    flat = z[0] @ hyper.generator.weight.T + hyper.generator.bias
    weight, bias = flat[: C * C_in].reshape(C, C_in), flat[C * C_in :]
    shared = hyper(x, z[0])
    np.testing.assert_allclose(shared, x @ weight.T + bias, rtol=1e-5, atol=1e-6)
    per_sample = hyper(x, jnp.broadcast_to(z[0], (7, K)))
    np.testing.assert_allclose(per_sample, shared, rtol=1e-5, atol=1e-6)


def test_hyper_fourier_features_follow_the_formula_in_pyrox_layout():
    n, d, K = 5, 2, 3
    pnet = eqx.nn.MLP(K, d * n + n + 1, 8, 1, key=KEY)
    features = HyperFourierFeatures.init(
        parameter_net=pnet, in_features=d, n_features=n, cond_dim=K
    )
    x = jax.random.normal(jax.random.key(1), (4, d))
    z = jax.random.normal(jax.random.key(2), (4, K))

    def expected(x_row, z_row):
        flat = pnet(z_row)
        W = flat[: d * n].reshape(d, n)  # W(z) of shape (in_features, n_features)
        b, log_lengthscale = flat[d * n : d * n + n], flat[-1]
        argument = W.T @ x_row / jnp.exp(log_lengthscale) + b
        return math.sqrt(1 / n) * jnp.concatenate(
            [jnp.cos(argument), jnp.sin(argument)]
        )

    np.testing.assert_allclose(
        features(x, z), jax.vmap(expected)(x, z), rtol=1e-5, atol=1e-6
    )
    shared = jax.vmap(expected, in_axes=(0, None))(x, z[0])
    np.testing.assert_allclose(features(x, z[0]), shared, rtol=1e-5, atol=1e-6)

    net = ConditionedRFFNet.init(feat=features, out_features=2, key=KEY)
    readout = eqx.nn.Linear(2 * n, 2, key=KEY)  # the readout pyrox builds
    np.testing.assert_allclose(
        net(x, z), features(x, z) @ readout.weight.T + readout.bias, rtol=1e-5
    )
    with pytest.raises(TypeError, match="expected feat to be HyperFourierFeatures"):
        ConditionedRFFNet.init(feat=pnet, out_features=1, key=KEY)


def test_the_parameter_net_is_not_called_at_construction():
    calls = []

    def wrong_size(z):
        calls.append(z)
        return jnp.zeros(7)

    features = HyperFourierFeatures.init(
        parameter_net=wrong_size, in_features=1, n_features=16, cond_dim=2
    )
    assert calls == []
    with pytest.raises(ValueError, match=r"\(33,\).*got \(7,\)"):
        features(jnp.ones((5, 1)), jnp.ones(2))


def _prior_scales(module):
    model = lambda: flowrox.sample_module("m", module)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
    scales = {}
    for name, site in trace.items():
        base = site["fn"]
        while not isinstance(base, dist.Normal):
            base = base.base_dist
        scales[name] = (site["value"].shape, float(jnp.max(base.scale)))
    return scales


def test_bayesian_conditioners_put_normal_priors_on_the_generator_only():
    C, C_in, K = 4, 3, 2
    assert _prior_scales(BayesianConcatConditioner.init(C, K, prior_std=0.5)) == {
        "m/linear.weight": ((C, C + K), 0.5),
        "m/linear.bias": ((C,), 0.5),
    }
    film = BayesianAffineModulation.init(C, K, gamma_activation="exp")
    assert film.gamma_activation == "exp"
    assert _prior_scales(film) == {
        "m/generator.weight": ((2 * C, K), 1.0),
        "m/generator.bias": ((2 * C,), 1.0),
    }
    # The sites' size is the generator's, K (C C_in + C): not the target's.
    hyper = BayesianHyperLinear.init(target_in=C_in, target_out=C, cond_dim=K)
    assert _prior_scales(hyper) == {
        "m/generator.weight": ((C * C_in + C, K), 1.0),
        "m/generator.bias": ((C * C_in + C,), 1.0),
    }


def test_conditioned_inr_init_builds_any_conditioner_with_pyrox_options():
    inner = SIREN.init(2, 8, 1, depth=3, key=KEY)
    hyper = ConditionedINR.init(
        inner, conditioner_cls=HyperLinear, cond_dim=3, key=KEY, init_scale=0.5
    )
    assert [(c.in_features, c.out_features) for c in hyper.conditioners] == [(8, 8)] * 2
    assert hyper.conditioners[0] == HyperLinear.init(
        target_in=8,
        target_out=8,
        cond_dim=3,
        key=jax.random.split(KEY, 2)[0],
        init_scale=0.5,
    )
    bayesian = ConditionedINR.init(
        inner,
        conditioner_cls=BayesianAffineModulation,
        cond_dim=3,
        key=KEY,
        prior_std=0.2,
    )
    scales = _prior_scales(bayesian)
    assert sorted(scales) == [
        f"m/conditioners.{i}.generator.{leaf}"
        for i in (0, 1)
        for leaf in ("bias", "weight")
    ]
    assert {round(scale, 6) for _, scale in scales.values()} == {0.2}
    drawn = flowrox.sample_module("m", bayesian, rng_key=jax.random.key(1))
    assert drawn(jnp.ones((5, 2)), jnp.ones(3)).shape == (5, 1)


class PyroxStyleSiren(eqx.Module):
    """A network exposing its layers as pyrox's SIREN does: sine layers of
    different widths, then the linear readout, all in `layers`."""

    layers: list

    def __init__(self, key):
        keys = jax.random.split(key, 3)
        self.layers = [
            eqx.nn.Sequential(
                [eqx.nn.Linear(2, 8, key=keys[0]), eqx.nn.Lambda(jnp.sin)]
            ),
            eqx.nn.Sequential(
                [eqx.nn.Linear(8, 5, key=keys[1]), eqx.nn.Lambda(jnp.sin)]
            ),
            eqx.nn.Linear(5, 1, key=keys[2]),
        ]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_conditioned_inr_takes_any_network_that_exposes_its_layers():
    inner = PyroxStyleSiren(KEY)
    x = jax.random.normal(jax.random.key(1), (6, 2))
    z = jax.random.normal(jax.random.key(2), (6, 3))
    film = ConditionedINR.init(inner, conditioner_cls=FiLM, cond_dim=3, key=KEY)
    assert [c.num_features for c in film.conditioners] == [8, 5]
    assert (film.in_features, film.out_features) == (2, 1)
    np.testing.assert_allclose(film(x, z), jax.vmap(inner)(x), rtol=1e-6)

    concat = ConditionedINR(inner, ConcatConditioner, cond_dim=3, key=KEY)
    h = x
    for layer, conditioner in zip(inner.layers[:-1], concat.conditioners, strict=True):
        h = conditioner(jax.vmap(layer)(h), z)
    expected = jax.vmap(inner.layers[-1])(h)
    np.testing.assert_allclose(concat(x, z), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        concat(x, z[0]), concat(x, jnp.broadcast_to(z[0], (6, 3))), rtol=1e-5, atol=1e-6
    )


def test_input_mode_uses_the_conditioner_or_concatenates():
    x = jax.random.normal(jax.random.key(1), (6, 2))
    z = jax.random.normal(jax.random.key(2), (6, 3))
    mlp = eqx.nn.MLP(2, 1, 8, 2, key=KEY)
    # A conditioner passed with mode="input" acts on the input (pyrox's head).
    field = ConditionedINR.init(
        mlp, conditioner_cls=ConcatConditioner, cond_dim=3, key=KEY, mode="input"
    )
    (head,) = field.conditioners
    assert (head.num_features, head.cond_dim) == (2, 3)
    np.testing.assert_allclose(field(x, z), jax.vmap(mlp)(head(x, z)), rtol=1e-5)
    # The constructor uses one too, on a SIREN as on any callable.
    siren = SIREN(2, 8, 1, 2, key=KEY)
    with_head = ConditionedINR(siren, HyperLinear, cond_dim=3, key=KEY, mode="input")
    (head,) = with_head.conditioners
    assert (head.in_features, head.out_features) == (2, 2)
    np.testing.assert_allclose(with_head(x, z), siren(head(x, z)), rtol=1e-5)
    # Without one, the context is concatenated; a callable is used as it is.
    function = lambda point: jnp.tanh(point).sum(keepdims=True)
    concatenated = ConditionedINR(
        function, cond_dim=3, key=KEY, mode="input", in_features=2
    )
    np.testing.assert_allclose(
        concatenated(x, z), jnp.tanh(jnp.concatenate([x, z], -1)).sum(-1, keepdims=True)
    )
    with pytest.raises(TypeError, match=r"pass in_features=\.\.\. \(the width of x\)"):
        ConditionedINR(function, cond_dim=3, key=KEY, mode="input")
    with pytest.raises(ValueError, match="in_features=2 or leave it out"):
        ConditionedINR(
            mlp, ConcatConditioner, cond_dim=3, key=KEY, mode="input", in_features=3
        )


def test_pyrox_arguments_without_a_meaning_here_are_refused():
    inner = SIREN.init(2, 8, 1, depth=3, key=KEY)
    with pytest.raises(ValueError, match=r"flowrox.sample_module\('enc', module\)"):
        ConcatConditioner.init(4, 2, key=KEY, pyrox_name="enc")
    with pytest.raises(ValueError, match="pyrox_name='f'"):
        ConditionedINR.init(
            inner, conditioner_cls=FiLM, cond_dim=2, key=KEY, pyrox_name="f"
        )
    with pytest.raises(TypeError, match="expected conditioner_cls to be a conditioner"):
        ConditionedINR.init(
            inner, conditioner_cls=None, cond_dim=2, key=KEY, mode="input"
        )
    mlp = eqx.nn.MLP(2, 1, 8, 2, key=KEY)
    with pytest.raises(TypeError, match=r"flowrox\.nn\.MLPField"):
        ConditionedINR.init(mlp, conditioner_cls=FiLM, cond_dim=2, key=KEY)


def test_random_features_init_declare_pyrox_priors():
    rff = RBFFourierFeatures.init(2, 4, lengthscale=0.5)
    sinks = RandomKitchenSinks.init(rff, 3)
    assert np.all(np.asarray(sinks.readout.weight.value) == 0)
    assert np.all(np.asarray(sinks.readout.bias.value) == 0)
    model = lambda: flowrox.sample_module("rks", sinks)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
    locs_scales = {}
    for name, site in trace.items():
        base = site["fn"]
        while not isinstance(base, dist.Normal):
            base = base.base_dist
        locs_scales[name] = (float(jnp.max(base.loc)), float(jnp.max(base.scale)))
    assert locs_scales == {
        "rks/features.frequencies": (0.0, 1.0),
        "rks/features.log_lengthscale": (pytest.approx(math.log(0.5)), 1.0),
        "rks/readout.weight": (0.0, 1.0),
        "rks/readout.bias": (0.0, 1.0),
    }
    drawn = flowrox.sample_module("rks", sinks, rng_key=jax.random.key(1))
    assert drawn(jnp.zeros((5, 2))).shape == (5, 3)
