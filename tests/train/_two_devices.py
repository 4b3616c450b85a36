"""Run by test_devices.py in a fresh process with 2 forced CPU devices: the
data-parallel training loops must equal the one-device runs."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from flowrox.flows import spline_flow
from flowrox.train import fit_to_data, fit_to_density


def assert_same_leaves(one, two):
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def main():
    assert jax.device_count() == 2, jax.devices()
    mesh = jax.make_mesh((2,), ("data",))
    key = jax.random.key(0)
    data = jax.random.normal(key, (640, 2)) * jnp.array([1.0, 0.5]) + 1.0
    flow = spline_flow(jax.random.key(1), 2, layers=2, hidden=8)

    # 1. fit_to_data: data-parallel steps equal one-device steps.
    options = dict(steps=20, batch_size=64, patience=None, progress=False)
    one, _ = fit_to_data(jax.random.key(2), flow, data, **options)
    two, _ = fit_to_data(jax.random.key(2), flow, data, mesh=mesh, **options)
    assert_same_leaves(one, two)

    # 2. fit_to_density: each step's base draws split over the devices; the
    # same draws, losses and parameters as on one device, with and without
    # sticking the landing.
    target = dist.MultivariateNormal(
        jnp.array([1.0, -1.0]), jnp.array([[1.0, 0.3], [0.3, 0.5]])
    )
    options = dict(steps=20, batch_size=64, learning_rate=0.01, progress=False)
    for stick_the_landing in (False, True):
        run = dict(options, stick_the_landing=stick_the_landing)
        one, one_losses = fit_to_density(
            jax.random.key(3), flow, target.log_prob, **run
        )
        two, two_losses = fit_to_density(
            jax.random.key(3), flow, target.log_prob, mesh=mesh, **run
        )
        np.testing.assert_allclose(one_losses, two_losses, rtol=1e-4, atol=1e-5)
        assert_same_leaves(one, two)
    try:
        fit_to_density(
            jax.random.key(3), flow, target.log_prob, mesh=mesh, batch_size=63
        )
    except ValueError as error:
        assert "batch_size 63 is not a multiple of the 2 devices" in str(error)
    else:
        raise AssertionError("an odd batch on two devices was accepted")
    print("two devices agree with one")


if __name__ == "__main__":
    main()
