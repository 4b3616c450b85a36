"""flowrox: normalizing flows and neural modules as first-class NumPyro citizens."""

import importlib.metadata

from . import bijections as bijections
from . import distributions as distributions
from . import flows as flows
from . import infer as infer
from . import nn as nn
from . import priors as priors
from . import train as train
from ._bayes import RandomLeaf as RandomLeaf
from ._bayes import bayesian as bayesian
from ._bayes import deterministic as deterministic
from ._bayes import init_to_module as init_to_module
from ._bayes import param_module as param_module
from ._bayes import posterior_modules as posterior_modules
from ._bayes import sample_module as sample_module
from ._tree import buffer as buffer
from ._tree import stacked as stacked
from .distributions import BijectionTransform as BijectionTransform
from .distributions import Flow as Flow

try:
    __version__ = importlib.metadata.version("flowrox")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path
    __version__ = "0+unknown"

__all__ = [
    "BijectionTransform",
    "Flow",
    "RandomLeaf",
    "bayesian",
    "bijections",
    "buffer",
    "deterministic",
    "distributions",
    "flows",
    "infer",
    "init_to_module",
    "nn",
    "param_module",
    "posterior_modules",
    "priors",
    "sample_module",
    "stacked",
    "train",
]
