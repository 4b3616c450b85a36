"""Neural network modules: conditioners and autoregressive networks."""

from ._conditioners import AbstractConditioner as AbstractConditioner
from ._conditioners import AffineModulation as AffineModulation
from ._conditioners import ConcatConditioner as ConcatConditioner
from ._conditioners import FiLM as FiLM
from ._conditioners import HyperLinear as HyperLinear
from ._made import MADE as MADE

__all__ = [
    "MADE",
    "AbstractConditioner",
    "AffineModulation",
    "ConcatConditioner",
    "FiLM",
    "HyperLinear",
]
