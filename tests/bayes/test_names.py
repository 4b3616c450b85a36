"""Site names come from pytree paths: golden, stable across processes and edits."""

import io
import os
import subprocess
import sys
import textwrap
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import flowrox
from flowrox import Flow
from flowrox.bijections import Affine, Chain
from tests.helpers import NetworkShift

GOLDEN_SITES = [
    "flow/bijection.bijections.0.loc",
    "flow/bijection.bijections.0.log_scale",
    "flow/bijection.bijections.1.network.layers.0.weight",
    "flow/bijection.bijections.1.network.layers.0.bias",
    "flow/bijection.bijections.1.network.layers.1.weight",
    "flow/bijection.bijections.1.network.layers.1.bias",
    "flow/bijection.bijections.2.loc",
    "flow/bijection.bijections.2.log_scale",
]


def _nested_flow():
    """An MLP inside a Chain inside a Flow (with two sibling Affines)."""
    bijection = Chain(
        [
            Affine(jnp.zeros(2)),
            NetworkShift(jax.random.key(0), 2, 3),
            Affine(jnp.zeros(2)),
        ]
    )
    return Flow(dist.Normal(0.0, 1.0), bijection, condition=jnp.ones(3))


def _site_names(module, name="flow"):
    def model():
        sampled = flowrox.sample_module(name, module)
        # Calling the sampled module many times registers nothing more.
        for _ in range(3):
            numpyro.deterministic(f"{name}_draw_{_}", jnp.zeros(()))
            if isinstance(sampled, Flow):
                sampled.log_prob(jnp.zeros(2))

    trace = handlers.trace(handlers.seed(model, 0)).get_trace()
    return [site for site, message in trace.items() if message["type"] == "sample"]


def test_site_names_of_a_nested_module_match_the_golden_list():
    bayesian_flow = flowrox.bayesian(_nested_flow(), dist.Normal(0.0, 1.0))
    assert _site_names(bayesian_flow) == GOLDEN_SITES


@pytest.mark.slow
def test_site_names_are_identical_across_processes_and_hash_seeds():
    script = textwrap.dedent(
        """
        import numpyro.distributions as dist
        import flowrox
        from tests.bayes.test_names import _nested_flow, _site_names
        flow = flowrox.bayesian(_nested_flow(), dist.Normal(0.0, 1.0))
        print("\\n".join(_site_names(flow)))
        """
    )
    outputs = []
    for seed in ("0", "4242"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.append(result.stdout.split())
    assert outputs[0] == outputs[1] == GOLDEN_SITES


def _tree_at(module):
    def where(flow):
        return flow.bijection.bijections[0].loc

    if isinstance(where(module), flowrox.RandomLeaf):
        return eqx.tree_at(lambda flow: where(flow).value, module, jnp.ones(2))
    return eqx.tree_at(where, module, jnp.ones(2))


def _through_filter_vmap(module):
    return eqx.filter_vmap(lambda m, x: m, in_axes=(None, 0), out_axes=None)(
        module, jnp.arange(3.0)
    )


def _through_serialisation(module):
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, module)
    buffer.seek(0)
    like = jax.tree.map(lambda leaf: leaf * 0 if eqx.is_array(leaf) else leaf, module)
    return eqx.tree_deserialise_leaves(buffer, like)


@pytest.mark.parametrize(
    "edit",
    [
        _tree_at,
        lambda m: jax.tree.map(
            lambda leaf: leaf * 1.0 if eqx.is_inexact_array(leaf) else leaf, m
        ),
        lambda m: eqx.filter_jit(lambda module: module)(m),
        _through_filter_vmap,
        _through_serialisation,
    ],
    ids=["tree_at", "tree_map", "filter_jit", "filter_vmap", "serialisation"],
)
def test_names_survive_edits_transformations_and_serialisation(edit):
    edited = edit(_nested_flow())
    assert _site_names(flowrox.bayesian(edited, dist.Normal(0.0, 1.0))) == GOLDEN_SITES
    # Editing the module after making it Bayesian keeps the names too.
    edited_bayesian = edit(flowrox.bayesian(_nested_flow(), dist.Normal(0.0, 1.0)))
    assert _site_names(edited_bayesian) == GOLDEN_SITES


def test_sibling_instances_of_one_class_get_distinct_names():
    chain = Chain([Affine(jnp.zeros(2)), Affine(jnp.zeros(2))])
    names = _site_names(flowrox.bayesian(chain, dist.Normal(0.0, 1.0)), name="c")
    assert names == [
        "c/bijections.0.loc",
        "c/bijections.0.log_scale",
        "c/bijections.1.loc",
        "c/bijections.1.log_scale",
    ]


def test_sampled_module_called_twice_registers_each_site_once():
    net = flowrox.bayesian(
        eqx.nn.MLP(2, 1, 4, 1, key=jax.random.key(0)), dist.Normal(0, 1)
    )

    def model():
        f = flowrox.sample_module("net", net)
        first = f(jnp.ones(2))
        second = f(jnp.zeros(2))
        numpyro.deterministic("both", jnp.concatenate([first, second]))

    trace = handlers.trace(handlers.seed(model, 1)).get_trace()
    samples = [s for s, m in trace.items() if m["type"] == "sample"]
    assert len(samples) == len(set(samples)) == 4


def test_the_same_name_twice_in_one_model_names_both_paths():
    first = flowrox.bayesian(
        eqx.nn.Linear(2, 1, key=jax.random.key(0)), dist.Normal(0, 1)
    )
    second = flowrox.bayesian(
        eqx.nn.MLP(2, 1, 4, 1, key=jax.random.key(1)), dist.Normal(0, 1)
    )

    def model():
        flowrox.sample_module("net", first)
        flowrox.sample_module("net", second)

    with pytest.raises(
        ValueError,
        match=r"name 'net' is already used.*'net/weight' \(path 'weight'\).*"
        r"'net/layers.0.weight' \(path 'layers.0.weight'\)",
    ):
        handlers.trace(handlers.seed(model, 0)).get_trace()


def test_prior_that_cannot_broadcast_names_the_path_and_both_shapes():
    linear = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"prior for 'weight' has batch shape \(4,\).*leaf's shape \(2, 3\)",
    ):
        flowrox.bayesian(linear, {"weight": dist.Normal(jnp.zeros(4), 1.0)})


def test_no_random_leaves_warns_and_outside_a_model_needs_a_key():
    linear = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    with pytest.warns(UserWarning, match=r"no random leaves"):
        flowrox.sample_module("linear", linear)
    bayesian_linear = flowrox.bayesian(linear, dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match=r"outside a NumPyro model.*rng_key"):
        flowrox.sample_module("linear", bayesian_linear)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = flowrox.sample_module(
            "linear", bayesian_linear, rng_key=jax.random.key(2)
        )
    assert drawn.weight.shape == (2, 3)
    assert not jnp.allclose(drawn.weight, linear.weight)


def test_sample_module_inside_a_data_plate_is_refused():
    linear = flowrox.bayesian(
        eqx.nn.Linear(2, 1, key=jax.random.key(0)), dist.Normal(0, 1)
    )

    def model():
        with numpyro.plate("data", 3):
            flowrox.sample_module("linear", linear)

    with pytest.raises(ValueError, match=r"inside the plate\(s\) \['data'\]"):
        handlers.trace(handlers.seed(model, 0)).get_trace()


@pytest.mark.parametrize(
    "call",
    [
        lambda module: module(jnp.ones(3)),  # x @ weight.T inside Linear
        lambda module: module.weight + 1.0,
        lambda module: jnp.ones((2, 3)) * module.weight,
        lambda module: module.weight @ jnp.ones(3),
        lambda module: jnp.ones(2) @ module.weight,
        lambda module: jnp.asarray(module.weight),
        lambda module: jnp.tanh(module.weight),  # through __jax_array__
        lambda module: jax.nn.relu(module.weight),
        lambda module: jnp.shape(module.weight),
        lambda module: module.weight[0],
        lambda module: module.weight < 0.0,
        lambda module: module.weight.T,  # an array attribute: AttributeError
        lambda module: jax.jit(lambda m: m(jnp.ones(3)))(module),
    ],
)
def test_a_bayesian_module_used_before_sampling_says_to_sample_it(call):
    linear = flowrox.bayesian(
        eqx.nn.Linear(3, 2, key=jax.random.key(0)), dist.Normal(0.0, 1.0)
    )
    with pytest.raises(
        (TypeError, AttributeError), match=r"random marker made by flowrox.bayesian"
    ):
        call(linear)
    with pytest.raises(
        (TypeError, AttributeError), match=r"flowrox.sample_module\(name, module\)"
    ):
        call(linear)
    # The module the bridge returns computes as the plain module does.
    sampled = flowrox.sample_module("linear", linear, rng_key=jax.random.key(1))
    assert sampled(jnp.ones(3)).shape == (2,)
