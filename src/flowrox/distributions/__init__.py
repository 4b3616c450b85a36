"""Flows as NumPyro distributions, and bijections as NumPyro transforms."""

from ._flow import Flow as Flow
from ._transform import BijectionTransform as BijectionTransform

__all__ = ["BijectionTransform", "Flow"]
