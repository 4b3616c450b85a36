"""Density fitting with the defaults: flowrox against flowjax on raw and
standardised 2-D data.

For three 2-D densities with closed-form log densities (a banana, x1 ~ N(0,
2^2), x2 | x1 ~ N(x1^2 / 4, 0.5^2); a ring of 8 Gaussians of sd 0.2 at radius
2; independent Student-t with 4 degrees of freedom and scales 1 and 3), each
builder is called with its defaults and fitted with its library's
fit_to_data defaults: flowrox's spline_flow, coupling_flow and
masked_autoregressive_flow against flowjax's coupling_flow and
masked_autoregressive_flow. Each is fitted on the raw data and on the data
standardised by hand (per-dimension mean and sd; its NLL is moved back to the
raw data's units). Prints, for each, the held-out NLL less the true density's
(nats; 0 is the truth, noise about 0.01), and the flowrox - flowjax difference
of each flowrox flow against the better flowjax default.

Run: pip install -e ".[bench]" && python benchmarks/bench_density.py [--quick]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from flowjax.distributions import Normal as FlowjaxNormal
from flowjax.flows import coupling_flow as flowjax_coupling_flow
from flowjax.flows import masked_autoregressive_flow as flowjax_maf
from flowjax.train import fit_to_data as flowjax_fit_to_data

from flowrox.flows import coupling_flow, masked_autoregressive_flow, spline_flow
from flowrox.train import fit_to_data


def _banana(key, n):
    first, second = jax.random.split(key)
    x1 = 2.0 * jax.random.normal(first, (n,))
    return jnp.stack([x1, x1**2 / 4 + 0.5 * jax.random.normal(second, (n,))], -1)


def _banana_log_prob(x):
    marginal = dist.Normal(0.0, 2.0).log_prob(x[:, 0])
    return marginal + dist.Normal(x[:, 0] ** 2 / 4, 0.5).log_prob(x[:, 1])


_ANGLES = 2 * jnp.pi * jnp.arange(8) / 8
_MEANS = 2.0 * jnp.stack([jnp.cos(_ANGLES), jnp.sin(_ANGLES)], -1)


def _ring(key, n):
    index_key, noise_key = jax.random.split(key)
    index = jax.random.randint(index_key, (n,), 0, 8)
    return _MEANS[index] + 0.2 * jax.random.normal(noise_key, (n, 2))


def _ring_log_prob(x):
    components = dist.Normal(_MEANS, 0.2).to_event(1).log_prob(x[:, None, :])
    return jax.scipy.special.logsumexp(components, -1) - jnp.log(8.0)


_STUDENT = dist.StudentT(4.0, jnp.zeros(2), jnp.array([1.0, 3.0])).to_event(1)

DENSITIES = {
    "banana": (_banana, _banana_log_prob),
    "ring": (_ring, _ring_log_prob),
    "student-t": (lambda key, n: _STUDENT.sample(key, (n,)), _STUDENT.log_prob),
}


def _flowrox(builder, quick):
    def fit(key, data):
        flow = builder(jax.random.key(3), 2)
        options = dict(max_epochs=3) if quick else {}
        flow, _ = fit_to_data(key, flow, data, progress=False, **options)
        return jax.jit(lambda x: flow.log_prob(x))

    return fit


def _flowjax(builder, quick):
    def fit(key, data):
        flow = builder(jax.random.key(3), base_dist=FlowjaxNormal(jnp.zeros(2)))
        options = dict(max_epochs=3) if quick else {}
        flow, _ = flowjax_fit_to_data(key, flow, data, show_progress=False, **options)
        return jax.jit(lambda x: flow.log_prob(x))

    return fit


def main(quick: bool) -> dict:
    n_train, n_held = (2000, 2000) if quick else (10_000, 5000)
    flows = {
        "flowrox spline_flow": _flowrox(spline_flow, quick),
        "flowrox coupling_flow": _flowrox(coupling_flow, quick),
        "flowrox masked_autoregressive_flow": _flowrox(
            masked_autoregressive_flow, quick
        ),
        "flowjax coupling_flow": _flowjax(flowjax_coupling_flow, quick),
        "flowjax masked_autoregressive_flow": _flowjax(flowjax_maf, quick),
    }
    gaps = {}
    for density, (sample, log_prob) in DENSITIES.items():
        data = sample(jax.random.key(0), n_train)
        held_out = sample(jax.random.key(1), n_held)
        truth = float(-jnp.mean(log_prob(held_out)))
        loc, scale = data.mean(0), data.std(0)
        for prepared in ("raw", "standardised"):
            for name, fit in flows.items():
                start = time.perf_counter()
                try:
                    if prepared == "raw":
                        fitted = fit(jax.random.key(2), data)
                        nll = float(-jnp.mean(fitted(held_out)))
                    else:
                        fitted = fit(jax.random.key(2), (data - loc) / scale)
                        nll = float(-jnp.mean(fitted((held_out - loc) / scale)))
                        nll += float(jnp.log(scale).sum())
                except FloatingPointError:  # the fit diverged: reported as nan
                    nll = float("nan")
                gap = nll - truth
                gaps[density, prepared, name] = gap
                seconds = time.perf_counter() - start
                print(
                    f"{density:10s} {prepared:12s} {name:36s} gap {gap:8.4f} "
                    f"({seconds:.0f} s)",
                    flush=True,
                )
    print("\nheld-out NLL - true NLL (nats), and flowrox - best flowjax default")
    names = list(flows)
    header = "| density | data | " + " | ".join(names) + " |"
    print(header)
    print("|" + "---|" * (len(names) + 2))
    for density in DENSITIES:
        for prepared in ("raw", "standardised"):
            row = [gaps[density, prepared, name] for name in names]
            peer = min((g for g in row[3:] if g == g), default=float("nan"))
            cells = [f"{g:.3f} ({g - peer:+.3f})" for g in row[:3]]
            cells += [f"{g:.3f}" for g in row[3:]]
            print(f"| {density} | {prepared} | " + " | ".join(cells) + " |")
    return gaps


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small data, 3 epochs"
    )
    main(parser.parse_args().quick)
