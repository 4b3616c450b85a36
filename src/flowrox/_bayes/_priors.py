"""Priors for module leaves: isotropic, fan-in scaled, init-matched, heavy-tailed,
shrinkage."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ._markers import AbstractPrior


def normal(scale: float = 1.0, *, loc: float = 0.0) -> dist.Distribution:
    """An isotropic Normal prior, the same for every chosen leaf.

    Examples:
        >>> from flowrox import priors
        >>> priors.normal(0.5).scale
        0.5
    """
    return dist.Normal(loc, scale)


def laplace(scale: float = 1.0) -> dist.Distribution:
    """A Laplace prior (sparsity-favouring, the Bayesian lasso), centred at zero."""
    return dist.Laplace(0.0, scale)


def student_t(df: float = 3.0, scale: float = 1.0) -> dist.Distribution:
    """A Student-t prior: heavier tails than a Normal, centred at zero."""
    return dist.StudentT(df, 0.0, scale)


def fan_in(
    weight_scale: float = 2.0, *, bias_scale: float = 1.0, n_stacked: int = 0
) -> Callable[[str, jax.Array], dist.Distribution]:
    r"""Normal priors scaled by each weight's fan-in: the usual prior for networks.

    A weight of shape $(\text{out}, \text{in}, k_1, \dots)$ (equinox's layout
    for `Linear` and for convolutions, whose kernels are $(\text{out},
    \text{in} / \text{groups}, k_1, \dots)$) gets
    $\mathcal{N}(0, c^2 / \text{fan-in})$ with
    $\text{fan-in} = \text{in} \cdot k_1 \cdots$, the product of all its axes
    but the first; a bias (a leaf named `bias`, or any leaf of fewer than two
    axes) gets $\mathcal{N}(0, c_b^2)$. Each unit's pre-activation then has a
    prior variance near $c^2 \overline{h^2} + c_b^2$ whatever the layer's width,
    so the prior over functions keeps its scale as the network widens (the
    Gaussian-process limit of Neal's priors) and suits inputs and targets of
    order one.

    The defaults, $c = 2$ and $c_b = 1$, come from NUTS (one chain, 300
    warm-up and 300 draws, a HalfNormal(1) noise) with tanh MLPs. On 40 points
    of $\sin 2x + \mathcal{N}(0, 0.1^2)$ on $[-3, -1] \cup [1, 3]$ and an
    `eqx.nn.MLP(1, 1, 16, depth=2)`, over three data sets: $c = 1$ cannot
    reach the target (noise 0.18-0.31), $c = 2$ finds the noise (0.10-0.14,
    against sample sds of 0.095-0.115) with a band 12-15 times wider in the gap
    than at the points, and $c = 2.5$ and $3$ fit as well but diverge more
    often (20 and 79 divergent transitions of 1500 against 2, with a 20-point
    $\sin x$ regression and a 30-point one with a gap, which every $c$ from 1
    to 3 fits). `init_matched()`, whose scales are $1/\sqrt{3\,\text{fan-in}}$
    ($c \approx 0.58$, biases included), explains the 40 points as noise
    (0.60). `python tests/bayes/test_bnn_recipe.py --sweep` prints the table.

    Args:
        weight_scale: $c$, the weights' prior sd times $\sqrt{\text{fan-in}}$.
        bias_scale: $c_b$, the biases' prior sd.
        n_stacked: how many leading axes of every leaf count layers (1 for the
            leaves under a `Scan` or a `flowrox.stacked()` field); they are left
            out of the fan-in. A shape cannot tell them apart from a kernel's
            axes, so give them here, and use `bayesian(..., where=...)` to
            reach only the stacked part of a module.

    Returns:
        A callable `(path, leaf) -> Normal` for `flowrox.bayesian`.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import flowrox
        >>> linear = eqx.nn.Linear(16, 4, key=jax.random.key(0))
        >>> prior = flowrox.priors.fan_in()
        >>> float(prior("layers.1.weight", linear.weight).scale[0, 0])  # 2 / sqrt(16)
        0.5
        >>> float(prior("layers.1.bias", linear.bias).scale[0])
        1.0
    """
    for label, value in (("weight_scale", weight_scale), ("bias_scale", bias_scale)):
        if not value > 0:
            raise ValueError(
                f"priors.fan_in: {label} must be positive; got {value}. It is a "
                "prior standard deviation (times sqrt(fan-in) for weights)."
            )
    if not (isinstance(n_stacked, int) and n_stacked >= 0):
        raise ValueError(
            "priors.fan_in: n_stacked must be a non-negative integer (the number "
            f"of leading layer axes); got {n_stacked!r}."
        )

    def prior(path: str, leaf: jax.Array) -> dist.Distribution:
        shape = tuple(leaf.shape)
        if len(shape) < n_stacked:
            raise ValueError(
                f"priors.fan_in: the leaf '{path}' has shape {shape}, fewer axes "
                f"than the n_stacked={n_stacked} layer axes every leaf should "
                "lead with. Pass n_stacked only for stacked layers, and select "
                "them with bayesian(..., where=...)."
            )
        unit = shape[n_stacked:]
        if path.rsplit(".", 1)[-1] == "bias" or len(unit) < 2:
            scale = bias_scale
        else:
            scale = weight_scale / math.sqrt(math.prod(unit[1:]))
        return dist.Normal(
            jnp.zeros_like(leaf), jnp.full(shape, scale, dtype=jnp.result_type(leaf))
        )

    return prior


def init_matched(
    *, centred_on_init: bool = False, zero_scale: float = 1e-2
) -> Callable[[str, jax.Array], dist.Distribution]:
    r"""A per-leaf Normal whose scale is the leaf's initialisation scale.

    For each leaf the scale is its root mean square, $\sqrt{\overline{w^2}}$: for
    equinox's `Linear` (uniform on $\pm 1/\sqrt{\text{fan-in}}$) that is the init
    standard deviation $1/\sqrt{3\,\text{fan-in}}$, so the prior predictive of
    the network matches a freshly initialised one. Leaves initialised at zero
    (e.g. the last layer of an identity-initialised flow) get `zero_scale`.

    It suits priors that should stay close to a layer's start, centred on it
    with `centred_on_init=True` (a flow's identity, a pretrained network). For
    a network that must fit data, use `fan_in()`: these scales are too small
    for a network to reach a target of order one (on a 40-point regression a
    two-layer tanh MLP explains the data as noise), and a zero-initialised leaf
    is pinned near zero.

    Args:
        centred_on_init: centre each prior on the leaf's current value (e.g. the
            identity initialisation of a flow) instead of zero.
        zero_scale: the scale for leaves whose values are all zero.

    Returns:
        A callable `(path, leaf) -> Normal` for `flowrox.bayesian`.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import flowrox
        >>> linear = eqx.nn.Linear(300, 10, key=jax.random.key(0))
        >>> prior = flowrox.priors.init_matched()("weight", linear.weight)
        >>> round(float(prior.scale[0, 0]), 3)  # 1 / sqrt(3 * 300)
        0.033
    """

    def prior(path: str, leaf: jax.Array) -> dist.Distribution:
        del path
        rms = jnp.sqrt(jnp.mean(jnp.square(leaf)))
        scale = jnp.where(rms > 0, rms, zero_scale)
        loc = leaf if centred_on_init else jnp.zeros_like(leaf)
        return dist.Normal(loc, jnp.broadcast_to(scale, leaf.shape))

    return prior


class Horseshoe(AbstractPrior):
    r"""Hierarchical shrinkage: a global scale per layer and local scales per weight.

    For a leaf $w$ (per layer, when stacked):
    $\tau \sim \mathrm{HalfCauchy}(\tau_0)$,
    $\lambda_i \sim \mathrm{HalfCauchy}(1)$,
    $w_i = \tau \lambda_i z_i$ with $z_i \sim \mathcal{N}(0, 1)$ — the
    non-centred form, which NUTS samples without funnels. Sites:
    `{site}/global_scale`, `{site}/local_scale`, `{site}/unscaled`, and the
    weight itself as a deterministic site `{site}`.

    Args:
        global_scale: $\tau_0$, the scale of the global half-Cauchy.

    Examples:
        >>> import equinox as eqx
        >>> import jax
        >>> import flowrox
        >>> layer = flowrox.bayesian(
        ...     eqx.nn.Linear(4, 2, key=jax.random.key(0)),
        ...     {"weight": flowrox.priors.Horseshoe(0.1)},
        ... )
        >>> drawn = flowrox.sample_module("l", layer, rng_key=jax.random.key(1))
        >>> drawn.weight.shape
        (2, 4)
    """

    global_scale: float

    def __init__(self, global_scale: float = 1.0):
        self.global_scale = global_scale

    def sample(self, site: str, shape: tuple[int, ...], n_stacked: int) -> jax.Array:
        n_event = len(shape) - n_stacked
        event_shape = shape[n_stacked:]
        tau = numpyro.sample(f"{site}/global_scale", dist.HalfCauchy(self.global_scale))
        local = numpyro.sample(
            f"{site}/local_scale",
            dist.HalfCauchy(1.0).expand(shape).to_event(n_event),
        )
        unscaled = numpyro.sample(
            f"{site}/unscaled", dist.Normal(0.0, 1.0).expand(shape).to_event(n_event)
        )
        tau = jnp.reshape(tau, jnp.shape(tau) + (1,) * len(event_shape))
        return numpyro.deterministic(site, tau * local * unscaled)
