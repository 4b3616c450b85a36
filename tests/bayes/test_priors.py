"""`priors.fan_in`: each leaf's prior scale against the rule it states."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import flowrox


class _StackedMLP(eqx.Module):
    layers: eqx.nn.Linear = flowrox.stacked()

    def __init__(self, width, depth, *, key):
        def make(k):
            return eqx.nn.Linear(width, width, key=k)

        self.layers = eqx.filter_vmap(make)(jax.random.split(key, depth))


def _site_scales(module, name="net"):
    """The scale of every sample site `sample_module` registers for `module`."""
    trace = numpyro.handlers.trace(
        numpyro.handlers.seed(lambda: flowrox.sample_module(name, module), 0)
    ).get_trace()
    return {
        site[len(name) + 1 :]: np.asarray(entry["fn"].base_dist.scale)
        for site, entry in trace.items()
        if entry["type"] == "sample"
    }


def test_fan_in_scales_an_mlps_weights_by_their_fan_in_and_fixes_its_biases():
    mlp = eqx.nn.MLP(3, 2, width_size=16, depth=2, key=jax.random.key(0))
    c, c_b = 1.7, 0.4
    scales = _site_scales(
        flowrox.bayesian(mlp, flowrox.priors.fan_in(c, bias_scale=c_b))
    )
    fan_ins = {"layers.0": 3, "layers.1": 16, "layers.2": 16}
    assert set(scales) == {
        f"{layer}.{leaf}" for layer in fan_ins for leaf in ("weight", "bias")
    }
    for layer, fan_in in fan_ins.items():
        weight = mlp.layers[int(layer[-1])].weight
        assert scales[f"{layer}.weight"].shape == weight.shape
        np.testing.assert_allclose(
            scales[f"{layer}.weight"], c / math.sqrt(fan_in), rtol=1e-6
        )
        np.testing.assert_allclose(scales[f"{layer}.bias"], c_b, rtol=1e-6)


def test_fan_in_reads_a_convolution_kernel_as_out_in_and_kernel_axes():
    # equinox's kernels are (out, in / groups, *kernel): the fan-in of a unit is
    # in / groups * prod(kernel), and the bias, (out, 1, 1), is a bias.
    conv = eqx.nn.Conv2d(6, 4, (3, 5), groups=2, key=jax.random.key(1))
    assert conv.weight.shape == (4, 3, 3, 5) and conv.bias.shape == (4, 1, 1)
    scales = _site_scales(flowrox.bayesian(conv, flowrox.priors.fan_in()))
    np.testing.assert_allclose(scales["weight"], 2.0 / math.sqrt(3 * 3 * 5), rtol=1e-6)
    np.testing.assert_allclose(scales["bias"], 1.0)
    assert scales["bias"].shape == (4, 1, 1)


def test_fan_in_with_n_stacked_leaves_the_layer_axis_out_of_the_fan_in():
    deep = _StackedMLP(8, 5, key=jax.random.key(2))
    assert deep.layers.weight.shape == (5, 8, 8)
    scales = _site_scales(flowrox.bayesian(deep, flowrox.priors.fan_in(n_stacked=1)))
    np.testing.assert_allclose(scales["layers.weight"], 2.0 / math.sqrt(8), rtol=1e-6)
    np.testing.assert_allclose(scales["layers.bias"], 1.0)
    # The same layer unstacked gets the same prior.
    single = flowrox.priors.fan_in()("weight", deep.layers.weight[0])
    np.testing.assert_allclose(single.scale, scales["layers.weight"][0], rtol=1e-6)


def test_fan_in_draws_have_the_stated_standard_deviation():
    linear = eqx.nn.Linear(50, 200, key=jax.random.key(3))
    drawn = flowrox.sample_module(
        "l",
        flowrox.bayesian(linear, flowrox.priors.fan_in(1.5, bias_scale=0.3)),
        rng_key=jax.random.key(4),
    )
    # 10,000 weights and 200 biases: sds within 3% and 15% (about 3 standard errors).
    np.testing.assert_allclose(jnp.std(drawn.weight), 1.5 / math.sqrt(50), rtol=0.03)
    np.testing.assert_allclose(jnp.std(drawn.bias), 0.3, rtol=0.15)


def test_fan_in_keeps_the_leaf_dtype_and_centres_at_zero(x64):
    weight = jnp.ones((3, 4), dtype=jnp.float64)
    prior = flowrox.priors.fan_in()("weight", weight)
    assert prior.scale.dtype == jnp.float64 and prior.loc.dtype == jnp.float64
    np.testing.assert_array_equal(prior.loc, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight_scale": 0.0}, r"weight_scale must be positive; got 0.0"),
        ({"bias_scale": -1.0}, r"bias_scale must be positive; got -1.0"),
        ({"n_stacked": -1}, r"n_stacked must be a non-negative integer .* got -1"),
        ({"n_stacked": 1.0}, r"n_stacked must be a non-negative integer .* got 1.0"),
    ],
)
def test_fan_in_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flowrox.priors.fan_in(**kwargs)


def test_fan_in_refuses_a_leaf_with_fewer_axes_than_the_stacked_ones():
    prior = flowrox.priors.fan_in(n_stacked=2)
    with pytest.raises(
        ValueError, match=r"'layers.0.bias' has shape \(4,\), fewer axes"
    ):
        prior("layers.0.bias", jnp.zeros(4))
