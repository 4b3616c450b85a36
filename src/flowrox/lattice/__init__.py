r"""Lattice field theory: $\phi^4$ actions with explicit conventions, the free
theory exactly, observables with error bars, symmetric convolutions, the
`ConvVF` vector field of continuous flows, and the theory as a NumPyro model for
NUTS, independence Metropolis and NeuTra.

The three conventions of the $\phi^4$ action (`phi4_action`), each with its
own couplings:

- `"bare"` (`m2`, `lam`): $\sum_x [\sum_\mu (\phi_{x+\hat\mu} - \phi_x)^2
  + m^2\phi_x^2 + \lambda\phi_x^4]$;
- `"half"` (`m2`, `lam`): $\sum_x [\frac12\sum_\mu (\phi_{x+\hat\mu} -
  \phi_x)^2 + \frac12 m^2\phi_x^2 + \lambda\phi_x^4]$;
- `"hopping"` (`kappa`, `lam`): $\sum_x [-2\kappa\sum_\mu
  \phi_x\phi_{x+\hat\mu} + \phi_x^2 + \lambda(\phi_x^2 - 1)^2]$.
"""

from ._actions import ConventionChange as ConventionChange
from ._actions import convert_convention as convert_convention
from ._actions import phi4_action as phi4_action
from ._conv_sym import ConvSym as ConvSym
from ._conv_sym import kernel_orbits as kernel_orbits
from ._conv_vf import ConvVF as ConvVF
from ._features import AbstractSiteFeatures as AbstractSiteFeatures
from ._features import DampedFourierFeatures as DampedFourierFeatures
from ._features import DampedPolynomialFeatures as DampedPolynomialFeatures
from ._features import FourierFeatures as FourierFeatures
from ._features import PolynomialFeatures as PolynomialFeatures
from ._free import FreeField as FreeField
from ._free import FreeFieldScaling as FreeFieldScaling
from ._model import phi4_model as phi4_model
from ._observables import Estimate as Estimate
from ._observables import binder_cumulant as binder_cumulant
from ._observables import correlation_length as correlation_length
from ._observables import effective_mass as effective_mass
from ._observables import magnetization as magnetization
from ._observables import pole_mass as pole_mass
from ._observables import susceptibility as susceptibility
from ._observables import time_correlator as time_correlator
from ._observables import two_point as two_point
from ._observables import two_point_susceptibility as two_point_susceptibility

__all__ = [
    "AbstractSiteFeatures",
    "ConvSym",
    "ConvVF",
    "ConventionChange",
    "DampedFourierFeatures",
    "DampedPolynomialFeatures",
    "Estimate",
    "FourierFeatures",
    "FreeField",
    "FreeFieldScaling",
    "PolynomialFeatures",
    "binder_cumulant",
    "convert_convention",
    "correlation_length",
    "effective_mass",
    "kernel_orbits",
    "magnetization",
    "phi4_action",
    "phi4_model",
    "pole_mass",
    "susceptibility",
    "time_correlator",
    "two_point",
    "two_point_susceptibility",
]
