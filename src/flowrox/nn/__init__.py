"""Neural network modules: conditioners and autoregressive networks."""

from ._made import MADE as MADE

__all__ = ["MADE"]
