"""Training loops: maximum likelihood, reverse KL and priors over functions.

All three loops (`fit_to_data`, `fit_to_density`, `fit_function_prior`) train
the same leaves (`trainable_filter`), build the same default optimizer
(`default_optimizer`), take their steps through one compiled step
(`compile_step`) and stop with the same error on a NaN or infinite loss.
"""

from ._core import compile_step as compile_step
from ._core import default_optimizer as default_optimizer
from ._core import shard_batch as shard_batch
from ._core import sticking_the_landing as sticking_the_landing
from ._core import trainable_filter as trainable_filter
from ._data import fit_to_data as fit_to_data
from ._density import fit_to_density as fit_to_density
from ._function_prior import FunctionPrior as FunctionPrior
from ._function_prior import fit_function_prior as fit_function_prior
from ._function_prior import function_prior_loss as function_prior_loss

__all__ = [
    "FunctionPrior",
    "compile_step",
    "default_optimizer",
    "fit_function_prior",
    "fit_to_data",
    "fit_to_density",
    "function_prior_loss",
    "shard_batch",
    "sticking_the_landing",
    "trainable_filter",
]
