"""The NumPyro bridge for modules: priors on leaves, sample and param sites."""

from ._markers import AbstractPrior as AbstractPrior
from ._markers import RandomLeaf as RandomLeaf
from ._markers import bayesian as bayesian
from ._markers import deterministic as deterministic
from ._paths import buffer as buffer
from ._paths import render_path as render_path
from ._posterior import init_to_module as init_to_module
from ._posterior import posterior_modules as posterior_modules
from ._sample import param_module as param_module
from ._sample import sample_module as sample_module
