"""Priors for the leaves of modules, for use with `flowrox.bayesian`.

A prior is a NumPyro distribution (expanded to each leaf), a callable
`(path, leaf) -> distribution` such as `fan_in()` (the one for networks) or
`init_matched()`, or a multi-site prior such as `Horseshoe`.
"""

from ._bayes import AbstractPrior as AbstractPrior
from ._bayes import Horseshoe as Horseshoe
from ._bayes import fan_in as fan_in
from ._bayes import init_matched as init_matched
from ._bayes import laplace as laplace
from ._bayes import normal as normal
from ._bayes import student_t as student_t

__all__ = [
    "AbstractPrior",
    "Horseshoe",
    "fan_in",
    "init_matched",
    "laplace",
    "normal",
    "student_t",
]
