"""Bijections: the contract and the building blocks of flows.

Every bijection acts on one unbatched event of its `shape` and returns the
output with the scalar log|det| of its Jacobian. See `AbstractBijection`.
"""

from ._base import AbstractBijection as AbstractBijection
from ._chain import Chain as Chain
from ._chain import Invert as Invert
from ._elementwise import AbstractElementwise as AbstractElementwise
from ._elementwise import Affine as Affine
from ._elementwise import Exp as Exp
from ._elementwise import Identity as Identity
from ._elementwise import Power as Power
from ._elementwise import Scale as Scale
from ._elementwise import Shift as Shift
from ._elementwise import Sigmoid as Sigmoid
from ._elementwise import SinhArcsinh as SinhArcsinh
from ._elementwise import SoftPlus as SoftPlus
from ._elementwise import Tanh as Tanh
from ._scan import Scan as Scan
from ._scan import Vmap as Vmap
from ._splines import RationalQuadraticSpline as RationalQuadraticSpline
from ._structure import Permute as Permute
from ._structure import Reshape as Reshape
from ._structure import Reverse as Reverse

__all__ = [
    "AbstractBijection",
    "AbstractElementwise",
    "Affine",
    "Chain",
    "Exp",
    "Identity",
    "Invert",
    "Permute",
    "Power",
    "RationalQuadraticSpline",
    "Reshape",
    "Reverse",
    "Scale",
    "Scan",
    "Shift",
    "Sigmoid",
    "SinhArcsinh",
    "SoftPlus",
    "Tanh",
    "Vmap",
]
