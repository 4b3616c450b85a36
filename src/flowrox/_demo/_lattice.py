"""The tour's lattice step: a ConvVF flow for phi^4, its independence-Metropolis
chain against NUTS on one NumPyro model."""

from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from numpyro.infer import MCMC, NUTS

from ..bijections import Chain, ContinuousFlow, Reshape
from ..distributions import Flow
from ..infer import IndependentMetropolis, importance_diagnostics
from ..lattice import (
    ConvVF,
    FourierFeatures,
    FreeFieldScaling,
    PolynomialFeatures,
    magnetization,
    phi4_action,
    phi4_model,
    two_point_susceptibility,
)
from ..nn import FourierTimeEmbedding
from ..train import fit_to_density
from ._report import Settings, StepResult, Verdict, _show

LATTICE = (4, 4)
COUPLINGS = {"convention": "bare", "m2": -4.0, "lam": 8.0}
TRAINING_STEPS = 150


def _flow(seed: int) -> Flow:
    """White noise -> a free field of unit mass -> a small ConvVF flow."""
    field = ConvVF.build(
        (3, 3),
        key=jax.random.key(seed),
        lattice_shape=LATTICE,
        features=(partial(FourierFeatures, 8), partial(PolynomialFeatures, (1,))),
        features_reduced=None,
        time_kernel=FourierTimeEmbedding(1),
        time_kernel_reduced=None,
    )
    layers = [
        FreeFieldScaling(LATTICE, 1.0, convention="bare"),
        ContinuousFlow(
            field, shape=LATTICE, solver=diffrax.Tsit5(), steps=8, divergence="field"
        ),
    ]
    return Flow(dist.Normal(jnp.zeros(LATTICE), 1.0).to_event(2), Chain(layers))


def _flattened(flow: Flow) -> Flow:
    """The same flow over the flattened field, as the samplers want it."""
    size = LATTICE[0] * LATTICE[1]
    base = dist.Normal(jnp.zeros(size), 1.0).to_event(1)
    return Flow(base, Reshape(flow.bijection, (size,)))


def _agreement(name: str, mine, theirs) -> Verdict:
    combined = float(jnp.hypot(mine.error, theirs.error))
    gap = abs(mine.value - theirs.value) / combined
    return Verdict(
        f"{name}: IMH {mine.value:.4f}, NUTS {theirs.value:.4f}, {gap:.1f} combined "
        "standard errors apart",
        gap < 4.0,
        "< 4",
        "the two chains disagree; rerun with more --samples or another --seed, "
        "and if it persists report it",
    )


def _lattice_step(settings: Settings) -> StepResult:
    seed, n = settings.seed, settings.num_samples
    model = partial(phi4_model, LATTICE, **COUPLINGS)
    _show("model: phi4_model((4, 4), convention='bare', m2=-4, lam=8)")
    _show("flow: Normal -> FreeFieldScaling(m2=1) -> ContinuousFlow(ConvVF)")
    _show(f"      trained by fit_to_density on -S for {TRAINING_STEPS} steps")
    flow, losses = fit_to_density(
        jax.random.key(seed + 30),
        _flow(seed + 31),
        lambda phi: -phi4_action(phi, **COUPLINGS),
        optimizer=optax.adam(
            optax.cosine_decay_schedule(1e-2, TRAINING_STEPS), b1=0.8, b2=0.9
        ),
        steps=TRAINING_STEPS,
        batch_size=64,
        progress=False,
    )
    proposal = _flattened(flow)
    diagnostics = importance_diagnostics(
        proposal,
        lambda x: -phi4_action(x.reshape(LATTICE), **COUPLINGS),
        jax.random.key(seed + 32),
        1024,
    )
    _show(
        f"final loss {losses[-1]:+.3f}; importance ESS {diagnostics.ess:.2f} of "
        "1024 draws"
    )
    imh = MCMC(
        IndependentMetropolis(proposal, model=model),
        num_warmup=100,
        num_samples=n,
        progress_bar=False,
    )
    imh.run(jax.random.key(seed + 33), extra_fields=("accept_prob",))
    acceptance = float(imh.get_extra_fields()["accept_prob"].mean())
    nuts = MCMC(NUTS(model), num_warmup=300, num_samples=n, progress_bar=False)
    nuts.run(jax.random.key(seed + 34))
    _show(f"{n} draws each; errors account for autocorrelation:")
    _show("sampler   <|M|>              chi_2              ESS(|M|)")
    estimates = {}
    for name, mcmc in (("IMH", imh), ("NUTS", nuts)):
        phi = mcmc.get_samples()["phi"]
        absolute = magnetization(phi, absolute=True)
        chi = two_point_susceptibility(phi)
        estimates[name] = (absolute, chi)
        _show(
            f"{name:8s} {absolute.value:.4f} +- {absolute.error:.4f}   "
            f"{chi.value:.4f} +- {chi.error:.4f}   {absolute.ess:8.0f}"
        )
    _show(f"IMH acceptance {acceptance:.2f}")
    verdicts = [
        Verdict(
            f"IMH acceptance {acceptance:.2f}",
            acceptance >= 0.6,
            ">= 0.6",
            "the flow is too rough a proposal; train it longer (more "
            "fit_to_density steps) or with more solver steps, see docs/lattice.md",
        ),
        _agreement("<|M|>", estimates["IMH"][0], estimates["NUTS"][0]),
        _agreement("chi_2", estimates["IMH"][1], estimates["NUTS"][1]),
    ]
    numbers = {
        "acceptance": acceptance,
        "ess_fraction": float(diagnostics.ess),
        "abs_magnetization": {k: float(v[0].value) for k, v in estimates.items()},
        "chi_2": {k: float(v[1].value) for k, v in estimates.items()},
    }
    return StepResult(numbers, verdicts)
