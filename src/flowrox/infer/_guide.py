"""`AutoFlowGuide`: any flowrox flow as a NumPyro autoguide."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_median

from .._bayes import param_module
from ..bijections import AbstractBijection, Affine, Chain, RationalQuadraticSpline
from ..distributions import BijectionTransform, Flow
from ..flows import coupling_flow, spline_flow


def _default_flow(
    key, dim: int, *, layers: int, hidden: int, transformer: AbstractBijection | None
) -> Flow:
    if dim == 1:
        # One element: no coupling to make; a spline with many bins is a
        # flexible 1-D map on its own.
        bijection = RationalQuadraticSpline(-5.0, 5.0, 16, shape=(1,))
        return Flow(dist.Normal(0.0, 1.0), bijection)
    if transformer is None:
        return spline_flow(key, dim, layers=layers, hidden=hidden, invert=False)
    return coupling_flow(
        key, dim, layers=layers, hidden=hidden, transformer=transformer
    )


class AutoFlowGuide(AutoContinuous):
    r"""A NumPyro autoguide whose posterior is any flowrox flow.

    Over the model's unconstrained latent vector $u$ (all latent sites
    flattened; constrained sites go through NumPyro's `biject_to` transforms,
    as for every `AutoContinuous` guide), the guide is
    $u = \mathrm{loc} + \mathrm{scale} \odot f(z)$, $z \sim$ the flow's base,
    with $f$ the flow's bijection. `loc` starts at the `init_loc_fn` point and
    `scale` at `init_scale`; a new coupling or autoregressive flow is the
    identity, so the guide starts as $N(\mathrm{loc}, \mathrm{scale}^2)$ about
    the initial point. The flow's trainable leaves are `numpyro.param` sites
    named `{prefix}_flow/{path}` (see `flowrox.param_module`), plus
    `{prefix}_loc` and `{prefix}_scale`.

    `get_transform(params)` returns the learned map (a `BijectionTransform`)
    and `get_posterior(params)` the learned distribution (a `flowrox.Flow` over
    the same map, on the real vectors), so `numpyro.infer.reparam.NeuTraReparam`,
    `Predictive` and `sample_posterior` work as with NumPyro's own autoguides.
    The guide's draws carry their log density from the forward pass (see
    `Flow.sample_with_intermediates`), so SVI never inverts the flow: a flow
    whose inverse is slow (an IAF) or missing trains at the cost of sampling.

    Args:
        model: the NumPyro model.
        flow_fn: `flow_fn(key, dim)` returning a `flowrox.Flow` with event shape
            `(dim,)` (e.g. `lambda k, d: bnaf_flow(k, d, one_pass="transform")`).
            Default: a rational-quadratic spline coupling flow (`spline_flow`),
            or `coupling_flow` with `transformer` when one is given; for a
            single latent dimension, one spline of 16 bins.
        layers: the default flow's number of layers.
        hidden: the default flow's conditioner width.
        transformer: the default flow's elementwise transformer (e.g.
            `Affine()`); default: rational-quadratic splines.
        init_loc_fn: NumPyro's per-site initialisation strategy (default: the
            prior median, as for NUTS).
        init_scale: the initial scale of the affine map around the flow. The
            default 1 starts the guide as wide as the flow's base (as
            `AutoIAFNormal` starts): a wide start lets reverse-KL training find
            several modes (on NumPyro's dual moon, from 3 with 256 particles it
            keeps both moons; from 0.1 it settles on one).
        prefix: the prefix of the param sites.
        key: the key that builds the flow's initial weights.

    Examples:
        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> from numpyro.infer import SVI, Trace_ELBO
        >>> from flowrox.infer import AutoFlowGuide
        >>> def model():
        ...     scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        ...     numpyro.sample("x", dist.Normal(0.0, scale), obs=1.5)
        >>> guide = AutoFlowGuide(model, layers=2, hidden=8)
        >>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
        >>> result = svi.run(jax.random.key(0), 200, progress_bar=False)
        >>> samples = guide.sample_posterior(
        ...     jax.random.key(1), result.params, sample_shape=(100,)
        ... )
        >>> bool((samples["scale"] > 0).all())
        True
    """

    def __init__(
        self,
        model: Callable,
        flow_fn: Callable[[jax.Array, int], Flow] | None = None,
        *,
        layers: int = 4,
        hidden: int = 32,
        transformer: AbstractBijection | None = None,
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 1.0,
        prefix: str = "auto",
        key: jax.Array | None = None,
    ):
        if not init_scale > 0:
            raise ValueError(
                f"AutoFlowGuide: init_scale must be positive; got {init_scale!r}."
            )
        self._flow_fn = flow_fn
        self._layers, self._hidden = int(layers), int(hidden)
        self._transformer = transformer
        self._init_scale = float(init_scale)
        self._key = jax.random.key(0) if key is None else key
        self._flow = None
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self._flow = self._build_flow(int(self.latent_dim))

    def _build_flow(self, dim: int) -> Flow:
        if self._flow_fn is None:
            return _default_flow(
                self._key,
                dim,
                layers=self._layers,
                hidden=self._hidden,
                transformer=self._transformer,
            )
        flow = self._flow_fn(self._key, dim)
        if not isinstance(flow, Flow):
            raise TypeError(
                "AutoFlowGuide: flow_fn(key, dim) must return a flowrox.Flow; got "
                f"{type(flow).__name__}."
            )
        if tuple(flow.event_shape) != (dim,) or flow.batch_shape != ():
            raise ValueError(
                f"AutoFlowGuide: the model has {dim} unconstrained latent "
                f"dimensions, so flow_fn(key, {dim}) must return a flow with "
                f"event shape ({dim},) and no batch shape; got event shape "
                f"{tuple(flow.event_shape)} and batch shape {tuple(flow.batch_shape)}."
            )
        if flow.bijection.cond_shape is not None:
            raise ValueError(
                "AutoFlowGuide: the flow must be unconditional; flow_fn returned "
                f"a flow with cond_shape {flow.bijection.cond_shape}."
            )
        return flow

    @property
    def flow(self) -> Flow:
        """The flow at its initial weights (built when the guide first runs)."""
        if self._flow is None:
            raise RuntimeError(
                "AutoFlowGuide.flow: the guide has not run yet; call it once (SVI "
                "does) so that it can see the model's latent dimension."
            )
        return self._flow

    def get_base_dist(self):
        return self.flow.base_dist

    def _bijection(self) -> Chain:
        # One bijection for the whole map z -> loc + scale * f(z): NeuTra and
        # NumPyro's ComposeTransform then run the flow once per evaluation.
        flow = param_module(f"{self.prefix}_flow", self.flow)
        loc = numpyro.param(f"{self.prefix}_loc", self._init_latent)
        scale = numpyro.param(
            f"{self.prefix}_scale",
            jnp.full(self.latent_dim, self._init_scale),
            constraint=constraints.softplus_positive,
        )
        affine = eqx.tree_at(lambda a: a.log_scale, Affine(loc), jnp.log(scale))
        return Chain([flow.bijection, affine])

    def _get_posterior(self) -> Flow:
        # A Flow's draws carry their density from the forward pass, so the
        # guide's log density under SVI never inverts the flow.
        return Flow(
            self.get_base_dist(), self._bijection(), support=constraints.real_vector
        )

    def get_posterior(self, params: dict) -> Flow:
        """The learned distribution of the unconstrained latent vector: a
        `flowrox.Flow` with the flow's base, over `get_transform`'s map."""
        return handlers.substitute(self._get_posterior, params)()

    def get_transform(self, params: dict) -> BijectionTransform:
        """The learned map from the base to the unconstrained latent vector."""
        return BijectionTransform(handlers.substitute(self._bijection, params)())
