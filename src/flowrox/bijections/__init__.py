"""Bijections: the contract and the building blocks of flows.

Every bijection acts on one unbatched event of its `shape` and returns the
output with the scalar log|det| of its Jacobian. See `AbstractBijection`.
"""

from ._analytic import CubicConjugation as CubicConjugation
from ._analytic import CubicRational as CubicRational
from ._analytic import SinhConjugation as SinhConjugation
from ._autoregressive import MaskedAutoregressive as MaskedAutoregressive
from ._base import AbstractBijection as AbstractBijection
from ._block_neural import BlockNeuralAutoregressive as BlockNeuralAutoregressive
from ._bounded_affine import BoundedAffine as BoundedAffine
from ._chain import Chain as Chain
from ._chain import Invert as Invert
from ._continuous import ContinuousFlow as ContinuousFlow
from ._coupling import Coupling as Coupling
from ._coupling import coupling_mask as coupling_mask
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
from ._linear import Householder as Householder
from ._linear import LULinear as LULinear
from ._linear import TriangularAffine as TriangularAffine
from ._modulation import Modulated as Modulated
from ._numerical_inverse import NumericalInverse as NumericalInverse
from ._rays import RadialConditional as RadialConditional
from ._rays import RayTransform as RayTransform
from ._rays import angle_fourier_features as angle_fourier_features
from ._rezende_mohamed import Planar as Planar
from ._rezende_mohamed import Radial as Radial
from ._scan import Scan as Scan
from ._scan import Vmap as Vmap
from ._splines import RationalQuadraticSpline as RationalQuadraticSpline
from ._standardize import Standardized as Standardized
from ._structure import Permute as Permute
from ._structure import Reshape as Reshape
from ._structure import Reverse as Reverse

__all__ = [
    "AbstractBijection",
    "AbstractElementwise",
    "Affine",
    "BlockNeuralAutoregressive",
    "BoundedAffine",
    "Chain",
    "ContinuousFlow",
    "Coupling",
    "CubicConjugation",
    "CubicRational",
    "Exp",
    "Householder",
    "Identity",
    "Invert",
    "LULinear",
    "MaskedAutoregressive",
    "Modulated",
    "NumericalInverse",
    "Permute",
    "Planar",
    "Power",
    "Radial",
    "RadialConditional",
    "RationalQuadraticSpline",
    "RayTransform",
    "Reshape",
    "Reverse",
    "Scale",
    "Scan",
    "Shift",
    "Sigmoid",
    "SinhArcsinh",
    "SinhConjugation",
    "SoftPlus",
    "Standardized",
    "Tanh",
    "TriangularAffine",
    "Vmap",
    "angle_fourier_features",
    "coupling_mask",
]
