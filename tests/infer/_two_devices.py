"""Run by test_devices.py in a fresh process with 2 forced CPU devices: SVI on
sharded data and parallel chains must equal the one-device runs (the training
loops' check is tests/train/_two_devices.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import MCMC, SVI, Trace_ELBO

from flowrox.infer import AutoFlowGuide, IndependentMetropolis
from flowrox.train import shard_batch


def main():
    assert jax.device_count() == 2, jax.devices()
    mesh = jax.make_mesh((2,), ("data",))
    key = jax.random.key(0)
    data = jax.random.normal(key, (640, 2)) * jnp.array([1.0, 0.5]) + 1.0

    # 1. SVI with AutoFlowGuide on a sharded data batch.
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
        with numpyro.plate("rows", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)

    def run_svi(y):
        guide = AutoFlowGuide(model, layers=2, hidden=8)
        svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
        return svi.run(jax.random.key(3), 30, y, progress_bar=False)

    plain, sharded_data = run_svi(data), shard_batch(data, mesh)
    assert len(sharded_data.sharding.device_set) == 2
    sharded = run_svi(sharded_data)
    np.testing.assert_allclose(plain.losses, sharded.losses, rtol=1e-4)
    for name in plain.params:
        np.testing.assert_allclose(
            plain.params[name], sharded.params[name], rtol=1e-4, atol=1e-5
        )

    # 2. IndependentMetropolis chains on two devices equal sequential chains.
    target = dist.Normal(jnp.array([1.0, -1.0]), 0.8).to_event(1)
    proposal = dist.Normal(jnp.zeros(2), 1.0).to_event(1)

    def run_chains(method):
        kernel = IndependentMetropolis(
            proposal, potential_fn=lambda x: -target.log_prob(x)
        )
        mcmc = MCMC(
            kernel,
            num_warmup=50,
            num_samples=200,
            num_chains=2,
            chain_method=method,
            progress_bar=False,
        )
        mcmc.run(jax.random.key(4))
        return mcmc.get_samples(group_by_chain=True)

    np.testing.assert_allclose(
        run_chains("parallel"), run_chains("sequential"), rtol=1e-6, atol=1e-6
    )
    print("two devices agree with one")


if __name__ == "__main__":
    main()
