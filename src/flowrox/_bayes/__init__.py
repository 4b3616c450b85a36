"""The NumPyro bridge for modules: priors on leaves, sample and param sites."""

from ._markers import AbstractPrior as AbstractPrior
from ._markers import RandomLeaf as RandomLeaf
from ._markers import bayesian as bayesian
from ._markers import deterministic as deterministic
from ._posterior import init_to_module as init_to_module
from ._posterior import posterior_modules as posterior_modules
from ._priors import Horseshoe as Horseshoe
from ._priors import fan_in as fan_in
from ._priors import init_matched as init_matched
from ._priors import laplace as laplace
from ._priors import normal as normal
from ._priors import student_t as student_t
from ._sample import param_module as param_module
from ._sample import sample_module as sample_module
