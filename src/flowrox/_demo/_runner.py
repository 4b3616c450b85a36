"""The list of steps, the request checks and the runner."""

import textwrap
import time

from ._emulator import _emulator_step
from ._lattice import _lattice_step
from ._report import Settings, Step, StepResult
from ._tour import (
    _bayesian_module_step,
    _field_prior_step,
    _fit_step,
    _flow_step,
    _guide_step,
    _matplotlib_figure,
    _prior_step,
)

STEPS: tuple[Step, ...] = (
    Step(
        "flow",
        "A flow: stacked affine layers applied with Scan",
        "build a flow, sample it, check log_prob against the exact density",
        _flow_step,
    ),
    Step(
        "prior",
        "The flow as the prior of a NumPyro model, sampled with NUTS",
        "NUTS on a model with the flow as prior, against the exact posterior",
        _prior_step,
    ),
    Step(
        "bayesian",
        "A Bayesian module: priors on an equinox Linear layer's weights",
        "bayesian() and sample_module() on eqx.nn.Linear, against the exact posterior",
        _bayesian_module_step,
    ),
    Step(
        "fit",
        "Fitting a spline flow to data with fit_to_data",
        "fit a spline flow to a ring of Gaussians; held-out NLL gap to the truth "
        "(--image draws it)",
        _fit_step,
    ),
    Step(
        "guide",
        "A flow guide, NeuTra NUTS and diagnostics on Neal's funnel",
        "train AutoFlowGuide by SVI, its importance diagnostics, NeuTra against "
        "plain NUTS",
        _guide_step,
    ),
    Step(
        "field",
        "A neural field prior: NIF with latent inference",
        "fit_function_prior trains a HyperSIREN prior over functions; NUTS over "
        "its latent",
        _field_prior_step,
    ),
    Step(
        "emulator",
        "A Bayesian PDE emulator: priors on a SpectralConv's weights",
        "NUTS over a spectral convolution emulating the heat equation; its 90% "
        "bands on held-out exact solutions",
        _emulator_step,
    ),
    Step(
        "lattice",
        "Lattice phi^4: a ConvVF flow's IMH chain against NUTS on one model",
        "train a small ConvVF continuous flow on phi^4 (4x4); its independence "
        "Metropolis chain and NUTS on phi4_model, <|M|> and chi_2",
        _lattice_step,
    ),
)


def describe_steps(width: int = 79) -> str:
    """One entry per step: its number, `--step` name and what it does."""
    name_width = max(len(step.name) for step in STEPS)
    return "\n".join(
        textwrap.fill(
            step.summary,
            width,
            initial_indent=f"  {i}. {step.name:{name_width}s}  ",
            subsequent_indent=" " * (name_width + 7),
        )
        for i, step in enumerate(STEPS, start=1)
    )


def check_request(steps: list[str] | None, image: str | None) -> None:
    """Refuses unknown steps, and an image that no step or no matplotlib draws.

    Raises:
        ValueError: a step name not in `STEPS`, or an image without the step
            that draws it.
        MatplotlibMissingError: an image asked for without matplotlib.
    """
    known = [step.name for step in STEPS]
    unknown = sorted(set(steps or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown demo steps {unknown}; the steps are {known}")
    if image is None:
        return
    if steps is not None and "fit" not in steps:
        raise ValueError(
            f"an image was asked for, but it is drawn by the step 'fit', which "
            f"is not among the steps {steps}; add 'fit' or drop the image"
        )
    _matplotlib_figure()  # fail now, not after the steps before the image


def run_demo(
    *,
    num_samples: int = 2000,
    seed: int = 0,
    image: str | None = None,
    steps: list[str] | None = None,
) -> dict[str, StepResult]:
    """Runs the chosen steps (all by default) and prints each with its verdicts.

    Returns:
        The `StepResult` of each step run, by step name.
    """
    check_request(steps, image)
    settings = Settings(num_samples, seed, image)
    results, seconds = {}, {}
    start = time.perf_counter()
    for number, step in enumerate(STEPS, start=1):
        if steps is not None and step.name not in steps:
            continue
        print(f"\n== {number}. {step.title}")
        step_start = time.perf_counter()
        results[step.name] = step.run(settings)
        seconds[step.name] = time.perf_counter() - step_start
        print("   verdict:")
        for verdict in results[step.name].verdicts:
            print(f"   - {verdict.line()}")
    verdicts = [v for result in results.values() for v in result.verdicts]
    good = sum(verdict.good for verdict in verdicts)
    print(
        f"\n== Summary: {good} of {len(verdicts)} verdicts good, "
        f"{time.perf_counter() - start:.0f} s in all"
    )
    for name, result in results.items():
        step_good = sum(verdict.good for verdict in result.verdicts)
        print(
            f"   {name:10s} {seconds[name]:6.1f} s   "
            f"{step_good} of {len(result.verdicts)} good"
        )
    return results
