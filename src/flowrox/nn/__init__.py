"""Neural network modules: conditioners and autoregressive networks."""

from ._bayesian import BayesianAffineModulation as BayesianAffineModulation
from ._bayesian import BayesianConcatConditioner as BayesianConcatConditioner
from ._bayesian import BayesianHyperLinear as BayesianHyperLinear
from ._bayesian_fields import BayesianHyperSIREN as BayesianHyperSIREN
from ._bayesian_fields import BayesianSIREN as BayesianSIREN
from ._conditioners import AbstractConditioner as AbstractConditioner
from ._conditioners import AffineModulation as AffineModulation
from ._conditioners import ConcatConditioner as ConcatConditioner
from ._conditioners import FiLM as FiLM
from ._conditioners import HyperLinear as HyperLinear
from ._features import ConditionedRFFNet as ConditionedRFFNet
from ._features import HyperFourierFeatures as HyperFourierFeatures
from ._features import RandomKitchenSinks as RandomKitchenSinks
from ._features import RBFFourierFeatures as RBFFourierFeatures
from ._fields import AbstractField as AbstractField
from ._fields import ConditionedINR as ConditionedINR
from ._fields import DenseLayer as DenseLayer
from ._fields import MLPField as MLPField
from ._made import MADE as MADE
from ._siren import SIREN as SIREN
from ._siren import HyperSIREN as HyperSIREN
from ._siren import SineLayer as SineLayer
from ._siren import siren_bounds as siren_bounds

__all__ = [
    "MADE",
    "SIREN",
    "AbstractConditioner",
    "AbstractField",
    "AffineModulation",
    "BayesianAffineModulation",
    "BayesianConcatConditioner",
    "BayesianHyperLinear",
    "BayesianHyperSIREN",
    "BayesianSIREN",
    "ConcatConditioner",
    "ConditionedINR",
    "ConditionedRFFNet",
    "DenseLayer",
    "FiLM",
    "HyperFourierFeatures",
    "HyperLinear",
    "HyperSIREN",
    "MLPField",
    "RBFFourierFeatures",
    "RandomKitchenSinks",
    "SineLayer",
    "siren_bounds",
]

#: Names that moved to `flowrox.train`, the layer above nn that holds the loops.
_MOVED_TO_TRAIN = ("FunctionPrior", "fit_function_prior", "function_prior_loss")


def __getattr__(name: str):
    if name in _MOVED_TO_TRAIN:
        raise AttributeError(
            f"flowrox.nn.{name} has moved to flowrox.train.{name}, next to the "
            f"other training loops; import it with `from flowrox.train import "
            f"{name}`."
        )
    raise AttributeError(f"module 'flowrox.nn' has no attribute {name!r}")
