"""`AutoFlowGuide`: any flowrox flow as a NumPyro autoguide."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.typing import ArrayLike
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform

from .._bayes import param_module
from ..bijections import AbstractBijection, Affine, Chain
from ..distributions import BijectionTransform, Flow
from ._guide_options import default_flow, flow_options
from ._supports import dependent_supports, warn_dependent_supports

#: The draws `AutoFlowGuide.median` and `.quantiles` estimate from by default:
#: the median of a normal marginal is then within about 0.0125 sd (one
#: standard error) of the guide's own.
QUANTILE_SAMPLES = 10_000


def _check_finite(owner: str, params: dict) -> None:
    """Refuse parameters with NaN or inf (a diverged SVI run) where they are
    concrete; traced parameters cannot be looked at and pass."""
    bad = []
    for name, value in params.items():
        leaves = jax.tree.leaves(value)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return
        if not all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves):
            bad.append(name)
    if bad:
        shown = ", ".join(sorted(bad)[:5]) + (", ..." if len(bad) > 5 else "")
        raise ValueError(
            f"AutoFlowGuide.{owner}: the parameters hold NaN or inf ({shown}): the "
            "SVI run diverged (see where result.losses stops being finite). Train "
            "again with svi.run(..., stable_update=True), which skips the steps "
            "whose loss or gradient is not finite, or with a smaller step size."
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
    `Predictive` and `sample_posterior` work as with NumPyro's own autoguides;
    `median` and `quantiles` are estimated from the guide's draws.
    The guide's draws carry their log density from the forward pass (see
    `Flow.sample_with_intermediates`), so SVI never inverts the flow: a flow
    whose inverse is slow (an IAF) or missing trains at the cost of sampling.

    It takes the keywords of NumPyro's `AutoIAFNormal` and `AutoBNAFNormal`,
    so either can be swapped for it in a script: `num_flows` is `layers`,
    `hidden_dims=[w] * d` is `hidden=w, depth=d`, `hidden_factors=[a] * d` is
    `depth=d` with width `a * dim` (BNAF's units per latent dimension), and
    `nonlinearity` (a function, or a `jax.example_libraries.stax` layer such as
    NumPyro's default `stax.Elu`) is the conditioner's activation. A keyword
    that cannot be honoured is refused with an error rather than ignored:
    unequal hidden widths, and any of the default
    flow's keywords together with `flow_fn`.

    The default flow is three inverse autoregressive affine layers (a MADE of
    one hidden layer, `max(dim, 8)` wide, ELU), sampled in one pass, the first
    in the latent vector's own order and the next reversed, as NumPyro's IAF
    orders them; for one latent dimension, one spline of 16 bins. It was chosen
    by measurement on NumPyro's example settings (`benchmarks/bench_guides.py`,
    reported in the inference docs).

    Args:
        model: the NumPyro model.
        flow_fn: `flow_fn(key, dim)` returning a `flowrox.Flow` with event shape
            `(dim,)` (e.g. `lambda k, d: bnaf_flow(k, d, one_pass="transform")`);
            default: the flow described above.
        prefix: the prefix of the param sites.
        init_loc_fn: NumPyro's per-site initialisation strategy; default
            `init_to_uniform`, as for NumPyro's autoguides (and NUTS).
        num_flows: NumPyro's name for `layers`.
        hidden_dims: NumPyro's `AutoIAFNormal` conditioner sizes, one per
            hidden layer, all equal: `[w] * d` is `hidden=w, depth=d`.
        skip_connections: NumPyro's `AutoIAFNormal` option: a masked linear
            path from the MADE's inputs to its outputs (default off, as in
            NumPyro; on Neal's funnel it raised the KL, see the inference docs).
        nonlinearity: the conditioner's activation: a function or a stax
            layer; default ELU (NumPyro's `stax.Elu`).
        hidden_factors: NumPyro's `AutoBNAFNormal` sizes, `[a] * d`: `d`
            hidden layers of `a * dim` units.
        layers: the default flow's number of layers (default 3).
        hidden: the default flow's conditioner width (default `max(dim, 8)`).
        depth: the default flow's number of hidden layers per conditioner
            (default 1).
        transformer: the default flow's elementwise transformer, a template of
            shape `()` (default `Affine()`; e.g.
            `RationalQuadraticSpline(-5.0, 5.0, 8)` for a spline IAF).
        init_scale: the initial scale of the affine map around the flow. The
            default 1 starts the guide as wide as the flow's base (as
            `AutoIAFNormal` starts): a wide start lets reverse-KL training find
            several modes.
        key: the key that builds the flow's initial weights.

    Raises:
        ValueError: from `get_posterior`, `get_transform` and
            `sample_posterior`, when the parameters hold NaN or inf (a diverged
            SVI run; train again with `svi.run(..., stable_update=True)`).

    Examples:
        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> from numpyro.infer import SVI, Trace_ELBO
        >>> from flowrox.infer import AutoFlowGuide
        >>> def model():
        ...     scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        ...     numpyro.sample("x", dist.Normal(0.0, scale), obs=1.5)
        ...     numpyro.sample("y", dist.Normal(0.0, 1.0))
        >>> guide = AutoFlowGuide(model, num_flows=2, hidden_dims=[8])
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
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_uniform,
        num_flows: int | None = None,
        hidden_dims: Sequence[int] | None = None,
        skip_connections: bool | None = None,
        nonlinearity: Callable | tuple | None = None,
        hidden_factors: Sequence[int] | None = None,
        layers: int | None = None,
        hidden: int | None = None,
        depth: int | None = None,
        transformer: AbstractBijection | None = None,
        init_scale: float = 1.0,
        key: jax.Array | None = None,
    ):
        if not init_scale > 0:
            raise ValueError(
                f"AutoFlowGuide: init_scale must be positive; got {init_scale!r}."
            )
        self._flow_fn = flow_fn
        self._options = flow_options(
            flow_fn_given=flow_fn is not None,
            layers=layers,
            num_flows=num_flows,
            hidden=hidden,
            depth=depth,
            hidden_dims=hidden_dims,
            hidden_factors=hidden_factors,
            skip_connections=skip_connections,
            nonlinearity=nonlinearity,
            transformer=transformer,
        )
        self.num_flows = self._options.layers
        self._init_scale = float(init_scale)
        self._key = jax.random.key(0) if key is None else key
        self._flow = None
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        warn_dependent_supports(
            "AutoFlowGuide",
            dependent_supports(
                self.model,
                self.prototype_trace,
                self._unpack_latent,
                self._init_latent,
                args,
                kwargs,
            ),
        )
        self._flow = self._build_flow(int(self.latent_dim))

    def _build_flow(self, dim: int) -> Flow:
        if self._flow_fn is None:
            return default_flow(self._key, dim, self._options)
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
        _check_finite("get_posterior", params)
        return handlers.substitute(self._get_posterior, params)()

    def get_transform(self, params: dict) -> BijectionTransform:
        """The learned map from the base to the unconstrained latent vector."""
        _check_finite("get_transform", params)
        return BijectionTransform(handlers.substitute(self._bijection, params)())

    def sample_posterior(self, rng_key, params, *args, sample_shape=(), **kwargs):
        """Draws of the model's latent sites, as for NumPyro's autoguides."""
        _check_finite("sample_posterior", params)
        return super().sample_posterior(
            rng_key, params, *args, sample_shape=sample_shape, **kwargs
        )

    def quantiles(
        self,
        params: dict,
        quantiles: ArrayLike,
        *,
        rng_key: jax.Array | None = None,
        num_samples: int = QUANTILE_SAMPLES,
    ) -> dict:
        """The posterior quantiles of every latent site, in its constrained space.

        A flow has no closed-form marginal quantiles, so they are estimated
        elementwise from `num_samples` draws of `sample_posterior`: the same
        key gives the same estimates (the default key is
        `jax.random.key(0)`), and their Monte-Carlo error shrinks as one over
        the square root of `num_samples` (for the median of a normal marginal,
        0.0125 sd at the default 10,000 draws). NumPyro's signature,
        `quantiles(params, quantiles)`, with the key and the draw count as
        keywords.

        Args:
            params: the guide's parameters (`svi.get_params(state)`).
            quantiles: the levels, in [0, 1], e.g. `[0.05, 0.5, 0.95]`.
            rng_key: the key of the draws (default `jax.random.key(0)`).
            num_samples: how many draws the estimates come from.

        Returns:
            A dict from each latent site to its quantiles, of shape
            `(*jnp.shape(quantiles), *site_shape)`.

        Examples:
            >>> import jax
            >>> import numpyro
            >>> import numpyro.distributions as dist
            >>> from numpyro.infer import SVI, Trace_ELBO
            >>> from flowrox.infer import AutoFlowGuide
            >>> def model():
            ...     numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
            >>> guide = AutoFlowGuide(model)
            >>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
            >>> params = svi.get_params(svi.init(jax.random.key(0)))
            >>> guide.quantiles(params, [0.1, 0.9])["scale"].shape
            (2,)
        """
        levels = jnp.asarray(quantiles, dtype=float)
        if not bool(jnp.all((levels >= 0.0) & (levels <= 1.0))):
            raise ValueError(
                "AutoFlowGuide.quantiles expected levels in [0, 1], e.g. "
                f"[0.05, 0.5, 0.95]; got {np.asarray(quantiles).tolist()}."
            )
        if int(num_samples) < 1:
            raise ValueError(
                "AutoFlowGuide.quantiles: num_samples must be at least 1; got "
                f"{num_samples}."
            )
        rng_key = jax.random.key(0) if rng_key is None else rng_key
        draws = self.sample_posterior(rng_key, params, sample_shape=(int(num_samples),))
        return {
            name: jnp.quantile(value, levels, axis=0) for name, value in draws.items()
        }

    def median(
        self,
        params: dict,
        *,
        rng_key: jax.Array | None = None,
        num_samples: int = QUANTILE_SAMPLES,
    ) -> dict:
        """The posterior median of every latent site, in its constrained space.

        Estimated elementwise from the guide's draws, as `quantiles` does
        (default: 10,000 draws with `jax.random.key(0)`). NumPyro's
        signature, `median(params)`, with the key and the draw count as
        keywords; the result seeds `init_to_value` as NumPyro's does.

        Args:
            params: the guide's parameters (`svi.get_params(state)`).
            rng_key: the key of the draws (default `jax.random.key(0)`).
            num_samples: how many draws the estimate comes from.

        Returns:
            A dict from each latent site to its median, of the site's shape.
        """
        return self.quantiles(params, 0.5, rng_key=rng_key, num_samples=num_samples)
