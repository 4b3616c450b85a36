r"""`Modulated`: a FiLM layer in "exp" mode as a conditional elementwise bijection."""

import equinox as eqx

from ..nn import AffineModulation
from ._base import AbstractBijection


class Modulated(AbstractBijection):
    r"""$y = e^{r(c)} \odot x + \beta(c)$: FiLM, conditioned on $c$, inside a flow.

    Wraps an `AffineModulation` built with `gamma_activation="exp"`, whose scale
    $\gamma = e^{r}$ is positive for every condition. The condition is the
    modulation's context; the inverse is $x = (y - \beta(c)) / \gamma(c)$ and
    $\log|\det \partial y/\partial x| = \sum_i r_i(c)$. A fresh modulation is
    the identity, so a fresh `Modulated` layer is too.

    Args:
        modulation: the FiLM layer, with `gamma_activation="exp"`; its
            `num_features` is the event size and its `cond_dim` the condition
            size.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Modulated
        >>> from flowrox.nn import AffineModulation
        >>> film = AffineModulation(4, 2, key=jax.random.key(0), gamma_activation="exp")
        >>> bijection = Modulated(film)
        >>> bijection.shape, bijection.cond_shape
        ((4,), (2,))
        >>> y, log_det = bijection.transform_and_log_det(jnp.ones(4), jnp.ones(2))
        >>> y.tolist(), float(log_det)  # the identity at initialisation
        ([1.0, 1.0, 1.0, 1.0], 0.0)
    """

    modulation: AffineModulation
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, modulation: AffineModulation):
        if not isinstance(modulation, AffineModulation):
            raise TypeError(
                "Modulated: expected a flowrox.nn.AffineModulation, got a "
                f"{type(modulation).__name__}."
            )
        if modulation.gamma_activation != "exp":
            raise ValueError(
                "Modulated needs an AffineModulation with gamma_activation='exp' "
                "(gamma = exp(r): positive for every condition, log-det sum(r)); got "
                f"gamma_activation={modulation.gamma_activation!r}. Build it with "
                "AffineModulation(num_features, cond_dim, key=key, "
                "gamma_activation='exp')."
            )
        self.modulation = modulation
        self.shape = (modulation.num_features,)
        self.cond_shape = (modulation.cond_dim,)

    def transform_and_log_det(self, x, condition=None):
        gamma, beta = self.modulation.gamma_and_beta(condition)
        return gamma * x + beta, self.modulation.log_det(condition)

    def inverse_and_log_det(self, y, condition=None):
        gamma, beta = self.modulation.gamma_and_beta(condition)
        return (y - beta) / gamma, -self.modulation.log_det(condition)
