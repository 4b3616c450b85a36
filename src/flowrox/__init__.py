"""flowrox: normalizing flows and neural modules as first-class NumPyro citizens."""

import importlib.metadata

from . import bijections as bijections
from . import distributions as distributions
from .distributions import BijectionTransform as BijectionTransform
from .distributions import Flow as Flow

__version__ = importlib.metadata.version("flowrox")

__all__ = ["BijectionTransform", "Flow", "bijections", "distributions"]
