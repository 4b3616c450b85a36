"""Neural network modules: conditioners, fields, convolutions, autoregressive nets."""

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
from ._conv_net import ConvNet as ConvNet
from ._features import ConditionedRFFNet as ConditionedRFFNet
from ._features import HyperFourierFeatures as HyperFourierFeatures
from ._features import RandomKitchenSinks as RandomKitchenSinks
from ._features import RBFFourierFeatures as RBFFourierFeatures
from ._fields import AbstractField as AbstractField
from ._fields import ConditionedINR as ConditionedINR
from ._fields import DenseLayer as DenseLayer
from ._fields import MLPField as MLPField
from ._fno import FNO as FNO
from ._fno import SpectralBlock as SpectralBlock
from ._made import MADE as MADE
from ._mlp_vector_field import ConcatSquashLinear as ConcatSquashLinear
from ._mlp_vector_field import MLPVectorField as MLPVectorField
from ._physics_conv import PhysicsConv as PhysicsConv
from ._physics_conv import PhysicsConvTranspose as PhysicsConvTranspose
from ._pointwise_conv import PointwiseLinearConv as PointwiseLinearConv
from ._resnet import ResBlock as ResBlock
from ._resnet import ResNet as ResNet
from ._siren import SIREN as SIREN
from ._siren import HyperSIREN as HyperSIREN
from ._siren import SineLayer as SineLayer
from ._siren import siren_bounds as siren_bounds
from ._spectral_conv import SpectralConv as SpectralConv
from ._time_embeddings import AbstractTimeEmbedding as AbstractTimeEmbedding
from ._time_embeddings import FourierTimeEmbedding as FourierTimeEmbedding
from ._time_embeddings import GaussianTimeEmbedding as GaussianTimeEmbedding
from ._time_embeddings import LinearHatTimeEmbedding as LinearHatTimeEmbedding
from ._time_embeddings import ReducedTimeEmbedding as ReducedTimeEmbedding
from ._vector_field import AbstractVectorField as AbstractVectorField
from ._vector_field import jacobian_trace as jacobian_trace

__all__ = [
    "FNO",
    "MADE",
    "SIREN",
    "AbstractConditioner",
    "AbstractField",
    "AbstractTimeEmbedding",
    "AbstractVectorField",
    "AffineModulation",
    "BayesianAffineModulation",
    "BayesianConcatConditioner",
    "BayesianHyperLinear",
    "BayesianHyperSIREN",
    "BayesianSIREN",
    "ConcatConditioner",
    "ConcatSquashLinear",
    "ConditionedINR",
    "ConditionedRFFNet",
    "ConvNet",
    "DenseLayer",
    "FiLM",
    "FourierTimeEmbedding",
    "GaussianTimeEmbedding",
    "HyperFourierFeatures",
    "HyperLinear",
    "HyperSIREN",
    "LinearHatTimeEmbedding",
    "MLPField",
    "MLPVectorField",
    "PhysicsConv",
    "PhysicsConvTranspose",
    "PointwiseLinearConv",
    "RBFFourierFeatures",
    "RandomKitchenSinks",
    "ReducedTimeEmbedding",
    "ResBlock",
    "ResNet",
    "SineLayer",
    "SpectralBlock",
    "SpectralConv",
    "jacobian_trace",
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
