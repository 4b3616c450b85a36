"""Neural network modules: conditioners and autoregressive networks."""

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
from ._fields import DenseLayer as DenseLayer
from ._fields import MLPField as MLPField
from ._made import MADE as MADE

__all__ = [
    "MADE",
    "AbstractConditioner",
    "AbstractField",
    "AffineModulation",
    "ConcatConditioner",
    "ConditionedRFFNet",
    "DenseLayer",
    "FiLM",
    "HyperFourierFeatures",
    "HyperLinear",
    "MLPField",
    "RBFFourierFeatures",
    "RandomKitchenSinks",
]
