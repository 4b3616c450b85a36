"""Inference with flows: a flow guide for SVI (and NeuTra), a low-variance ELBO
for it and a mass-covering forward-KL loss to refine it, an independence
Metropolis kernel, and importance-sampling diagnostics."""

from ._diagnostics import ImportanceDiagnostics as ImportanceDiagnostics
from ._diagnostics import importance_diagnostics as importance_diagnostics
from ._elbo import ForwardKL as ForwardKL
from ._elbo import StickingTheLandingELBO as StickingTheLandingELBO
from ._guide import AutoFlowGuide as AutoFlowGuide
from ._imh import IMHState as IMHState
from ._imh import IndependentMetropolis as IndependentMetropolis
from ._run_svi import run_svi as run_svi

__all__ = [
    "AutoFlowGuide",
    "ForwardKL",
    "IMHState",
    "ImportanceDiagnostics",
    "IndependentMetropolis",
    "StickingTheLandingELBO",
    "importance_diagnostics",
    "run_svi",
]
