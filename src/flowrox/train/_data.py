"""`fit_to_data`: maximum likelihood on samples, with minibatches and early stopping."""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from numpyro.distributions import constraints
from tqdm.auto import tqdm

from ..bijections import RationalQuadraticSpline, Standardized
from ..distributions import Flow
from ._core import (
    batch_sharding,
    check_finite,
    check_finite_rows,
    compile_loss,
    compile_step,
    default_optimizer,
    replicate,
    trainable_filter,
)


def _log_prob(flow: Flow, x, condition):
    if condition is None:
        return flow.log_prob(x)
    return Flow(flow.base_dist, flow.bijection, condition=condition).log_prob(x)


def _negative_log_likelihood(parameters, static, batch):
    x, condition = batch
    return -jnp.mean(_log_prob(eqx.combine(parameters, static), x, condition))


def _gathered_negative_log_likelihood(parameters, static, batch):
    # One device: the minibatch is gathered inside the compiled step.
    x, condition, indices = batch
    condition = None if condition is None else condition[indices]
    return _negative_log_likelihood(parameters, static, (x[indices], condition))


#: The share of an element's held-out values outside the flow's spline interval
#: above which `fit_to_data` warns.
WARN_SHARE = 1e-2

#: The share of an element's standardised training values that may lie
#: outside the flow's spline interval; the scale is widened beyond it.
TAIL_SHARE = 1e-4


def _is_spline(leaf) -> bool:
    return isinstance(leaf, RationalQuadraticSpline)


def spline_interval(flow: Flow) -> tuple[float, float] | None:
    """The narrowest interval of the flow's fixed-bound splines, or None.

    A spline with fixed bounds $[x_0, x_f] = [y_0, y_f]$ maps each tail into
    itself (`(xf, inf)` onto `(yf, inf)`), so a value beyond the interval of
    the layer that first meets the data stays in the tail through every
    layer, and lands in the base's tail. Circular splines and splines that
    learn their bounds are left out.
    """
    splines = [
        leaf
        for leaf in jax.tree.leaves(flow.bijection, is_leaf=_is_spline)
        if _is_spline(leaf)
        and not (leaf.circular or leaf.learn_lower_bound or leaf.learn_upper_bound)
    ]
    if not splines:
        return None
    lower = max(float(jnp.max(jnp.maximum(s.x0, s.y0))) for s in splines)
    upper = min(float(jnp.min(jnp.minimum(s.xf, s.yf))) for s in splines)
    return lower, upper


def _finite_moments(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per element, the mean and sd of the finite values (a constant element
    gets scale 1; `fit_to_data` refuses data holding NaN or inf up front)."""
    finite = jnp.isfinite(values)
    count = jnp.maximum(finite.sum(0), 1)
    loc = jnp.where(finite, values, 0.0).sum(0) / count
    deviations = jnp.where(finite, values - loc, 0.0)
    scale = jnp.sqrt((deviations**2).sum(0) / count)
    usable = jnp.isfinite(scale) & (scale > 0)
    return loc, jnp.where(usable, scale, 1.0)


def _outside_share(values: jax.Array, interval) -> float:
    """The largest share, over elements, of the values outside the interval."""
    lower, upper = interval
    outside = (values < lower) | (values > upper)
    return float(jnp.max(jnp.mean(outside, axis=0)))


def _standardizing(
    flow: Flow, train_x: jax.Array, train_c: jax.Array | None
) -> Standardized:
    """The flow's bijection inside a `Standardized` fitted to the training data."""
    loc, scale = _finite_moments(train_x)
    interval = spline_interval(flow)
    if interval is not None:
        # Widen the scale of a long-tailed element so that its bulk (all but
        # TAIL_SHARE of its values) lies inside the splines' interval.
        half_width = 0.5 * (interval[1] - interval[0])
        centre = 0.5 * (interval[1] + interval[0])
        spread = jnp.abs(jnp.where(jnp.isfinite(train_x), train_x - loc, 0.0))
        tail = jnp.quantile(spread / scale, 1.0 - TAIL_SHARE, axis=0)
        scale = scale * jnp.maximum(1.0, tail / half_width)
        loc = loc - centre * scale
    cond_loc = cond_scale = None
    if flow.bijection.cond_shape is not None:
        cond_loc, cond_scale = _finite_moments(train_c)
    return Standardized(
        flow.bijection, loc, scale, cond_loc=cond_loc, cond_scale=cond_scale
    )


def _is_real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _warn_outside(flow: Flow, val_x: jax.Array) -> None:
    """Warns when many held-out values reach the flow's splines outside their
    interval (see `spline_interval`)."""
    interval = spline_interval(flow)
    if interval is None:
        return
    bijection = flow.bijection
    values = val_x
    if isinstance(bijection, Standardized):
        values = (val_x - bijection.loc) / bijection.scale
    share = _outside_share(values, interval)
    if share > WARN_SHARE:
        lower, upper = interval
        warnings.warn(
            f"fit_to_data: {100 * share:.1f}% of the held-out values of an element "
            f"lie outside the splines' interval [{lower:g}, {upper:g}] (after "
            "standardisation, if any). A spline maps each tail into itself, so "
            "these points stay in the tails and the fit is poor there. Pass "
            "standardize=True (the default) to fit_to_data, build the flow with "
            "a wider interval (e.g. spline_flow(..., bound=...)), or rescale "
            "the data.",
            UserWarning,
            stacklevel=3,
        )


def _checked_condition(flow: Flow, condition, n: int) -> jax.Array | None:
    """The per-sample conditions, after checking them against the flow: named
    as the user passed them, before any split."""
    cond_shape = flow.bijection.cond_shape
    if cond_shape is None:
        if condition is not None:
            raise ValueError(
                "fit_to_data: the flow is unconditional (its bijection's cond_shape "
                f"is None) but condition= was given, of shape {jnp.shape(condition)}. "
                "Drop condition=, or fit a conditional flow (e.g. "
                "spline_flow(key, dim, cond_dim=...))."
            )
        return None
    cond_shape = tuple(cond_shape)
    expected = (n, *cond_shape)
    if condition is None:
        raise ValueError(
            "fit_to_data: the flow is conditional (its bijection takes conditions "
            f"of shape {cond_shape}) but no condition= was given. Pass one "
            "condition per data row: fit_to_data(key, flow, data, condition=c) "
            f"with c of shape {expected}."
        )
    condition = jnp.asarray(condition)
    if condition.shape == expected:
        return condition
    if condition.shape == (n,) and cond_shape == (1,):
        fix = " Add the context axis: condition=c[:, None]."
    elif condition.ndim == 0 or condition.shape[0] != n:
        rows = "none" if condition.ndim == 0 else condition.shape[0]
        fix = f" Give one condition per data row ({n} data rows, {rows} conditions)."
    elif condition[0].size == math.prod(cond_shape):
        fix = f" Reshape it: condition=c.reshape({expected})."
    elif condition.ndim == 2 and len(cond_shape) == 1:
        fix = (
            f" Pass conditions of width {cond_shape[0]}, or build the flow with "
            f"cond_dim={condition.shape[1]}."
        )
    else:
        fix = ""
    raise ValueError(
        f"fit_to_data: condition= has shape {tuple(condition.shape)}; the flow's "
        f"bijection takes conditions of shape {cond_shape}, so with {n} data rows "
        f"condition= must have shape {expected}.{fix}"
    )


def fit_to_data(
    key: jax.Array,
    flow: Flow,
    data: jax.typing.ArrayLike,
    *,
    condition: jax.typing.ArrayLike | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    steps: int | None = None,
    max_epochs: int = 100,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    patience: int | None = 10,
    progress: bool = True,
    mesh: Mesh | None = None,
    data_axis: str | None = None,
    standardize: bool = True,
) -> tuple[Flow, dict[str, list[float]]]:
    r"""Fits a flow to samples by maximum likelihood, with minibatches.

    The data (and the conditions, row by row) are split into a training and a
    held-out part; every epoch shuffles the training part and takes one optimizer
    step per minibatch, then scores the held-out part. The parameters with the
    best held-out loss are returned; training stops early when the held-out loss
    has not improved for `patience` epochs. One step is compiled once and reused.
    Only trainable leaves change (see `trainable_filter`).

    Raw data need no hand preparation. With `standardize=True` (the default)
    the flow's bijection $f$ is first wrapped in a
    `flowrox.bijections.Standardized` fitted to the training part,
    $y = \mu + \sigma \odot f(x, (c - \mu_c) / \sigma_c)$, so $f$ sees data
    and conditions of unit scale, and the returned flow's `log_prob` (and every
    loss reported) is the density of the data in their own units, the affine
    map's log-det included. Per element, $\mu$ and $\sigma$ are the mean and
    sd of the finite training values (a constant element gets $\sigma = 1$);
    when the flow holds splines with fixed bounds (`spline_flow`), $\sigma$ of
    a long-tailed element is widened until all but 0.01% of its values lie
    inside the narrowest spline interval, because a spline maps each tail into
    itself and points beyond the interval stay in the base's tails. The
    conditions get the mean and sd of theirs. Nothing is added when the flow's
    bijection already is a `Standardized` (a flow returned by an earlier
    `fit_to_data`), or when the flow has a constrained `support` (a shift
    would move it). The shifts and scales are buffers: never trained.

    Whatever `standardize` says, a `UserWarning` names the remedies when more
    than 1% of the held-out values of an element reach the splines outside
    their interval (after the standardisation, if any).

    The data and conditions are checked before training: a row holding NaN
    or inf is refused, named. A loss that turns NaN or infinite while
    training stops the loop with a `FloatingPointError` that keeps the flow
    of the last step whose loss was finite, as `error.flow`.

    Args:
        key: the random key (split, shuffling).
        flow: the flow (batch shape `()`); a conditional flow holds no
            condition (as the builders return it) or one, which `condition`
            replaces.
        data: samples, shape `(n, *event_shape)`, all finite.
        condition: conditions per sample, shape `(n, *cond_shape)`, all
            finite: required for a conditional flow, refused for an
            unconditional one.
        optimizer: an optax optimizer (default: `default_optimizer`, Adam with
            gradient clipping at a constant `learning_rate`).
        learning_rate: the default optimizer's learning rate.
        steps: stop after this many optimizer steps (overrides `max_epochs`).
        max_epochs: the most epochs to run.
        batch_size: samples per step.
        val_fraction: the held-out fraction (0 < val_fraction < 1).
        patience: epochs without held-out improvement before stopping (None:
            never stop early).
        progress: show a tqdm progress bar with the current losses.
        mesh: a `jax.sharding.Mesh`: every minibatch is split over the devices
            of `data_axis` (data parallel) and the parameters are replicated;
            the result equals the one-device result up to rounding. The batch
            size must be a multiple of the axis size.
        data_axis: the mesh axis for the batch (default: the first).
        standardize: wrap the bijection in a `Standardized` fitted to the
            training data (see above); `False` trains the flow as given.

    Returns:
        `(trained_flow, losses)`, `losses["train"]` and `losses["val"]` holding
        one mean loss per epoch. With `standardize=True` the trained flow's
        bijection is the `Standardized` wrapper; the given bijection, trained,
        is its `.bijection`.

    Raises:
        ValueError: for data or conditions of the wrong shape, a missing or
            unexpected `condition`, or a row holding NaN or inf (named).
        FloatingPointError: when a loss turns NaN or infinite. Its `flow`
            attribute holds the flow of the last step whose loss was finite
            (`except FloatingPointError as error: flow = error.flow`), `step`
            the failing step and `losses` the finite step losses before it.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow
        >>> from flowrox.bijections import Affine
        >>> from flowrox.train import fit_to_data
        >>> data = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (2000, 1))
        >>> flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.zeros(1)))
        >>> fitted, losses = fit_to_data(
        ...     jax.random.key(1), flow, data, learning_rate=0.05, progress=False,
        ...     standardize=False,
        ... )
        >>> loc, scale = fitted.bijection.loc[0], fitted.bijection.scale[0]
        >>> bool(abs(loc - 3.0) < 0.3 and abs(scale - 2.0) < 0.2)
        True

        By default the data's mean and sd go into a fixed outer layer, and the
        flow itself learns unit-scale data:

        >>> fitted, _ = fit_to_data(jax.random.key(1), flow, data, progress=False)
        >>> type(fitted.bijection).__name__, fitted.bijection.loc.round(1).tolist()
        ('Standardized', [3.0])
        >>> bool(jnp.abs(fitted.bijection.bijection.loc).max() < 0.1)
        True
    """
    data = jnp.asarray(data)
    if flow.batch_shape != ():
        raise ValueError(
            "fit_to_data expects a flow with batch shape (); got "
            f"{flow.batch_shape}. Build it with one condition (or none) and pass "
            "the per-sample conditions as condition=."
        )
    n = data.shape[0]
    if data.shape[1:] != flow.event_shape:
        raise ValueError(
            f"fit_to_data expected data of shape (n, *{flow.event_shape}), got "
            f"{data.shape}."
        )
    condition = _checked_condition(flow, condition, n)
    check_finite_rows("fit_to_data", "data", data)
    if condition is not None:
        check_finite_rows("fit_to_data", "condition", condition)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"fit_to_data: val_fraction must be in (0, 1); got {val_fraction}."
        )
    n_val = max(1, round(n * val_fraction))
    n_train = n - n_val
    if n_train < 1:
        raise ValueError(f"fit_to_data: {n} samples leave none for training.")
    batch_size = min(batch_size, n_train)
    batches_per_epoch = max(1, n_train // batch_size)
    if steps is not None:
        max_epochs = math.ceil(steps / batches_per_epoch)
    shard = batch_sharding("fit_to_data", mesh, data_axis, batch_size)

    split_key, key = jax.random.split(key)
    order = jax.random.permutation(split_key, n)
    train_x, val_x = data[order[n_val:]], data[order[:n_val]]
    train_c = val_c = None
    if condition is not None:
        train_c, val_c = condition[order[n_val:]], condition[order[:n_val]]
    if (
        standardize
        and not isinstance(flow.bijection, Standardized)
        and _is_real(flow.support)
    ):
        flow = Flow(
            flow.base_dist,
            _standardizing(flow, train_x, train_c),
            flow.condition,
            support=flow.support,
        )
    _warn_outside(flow, val_x)

    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    parameters, static = eqx.partition(flow, trainable_filter(flow))
    parameters = replicate(parameters, shard)
    state = optimizer.init(parameters)

    if shard is None:
        gathered_step = compile_step(
            _gathered_negative_log_likelihood, static, optimizer
        )

        def train_step(parameters, state, indices):
            return gathered_step(parameters, state, (train_x, train_c, indices))

    else:
        sharded_step = compile_step(_negative_log_likelihood, static, optimizer)

        def train_step(parameters, state, indices):
            # The minibatch is placed split over the devices, and the compiled
            # step follows its sharding (XLA sums the gradients across devices).
            batch = (train_x[indices], None if train_c is None else train_c[indices])
            return sharded_step(parameters, state, jax.device_put(batch, shard))

    val_loss_fn = compile_loss(_negative_log_likelihood, static)

    def val_loss(parameters):
        return float(val_loss_fn(parameters, (val_x, val_c)))

    def rebuild(parameters):
        return eqx.combine(parameters, static)

    losses = {"train": [], "val": []}
    step_losses = []
    best_parameters, best_val = parameters, val_loss(parameters)
    # A step's loss is that of the parameters going in: on a loss that is not
    # finite, the parameters before that step are the last with a finite one.
    kept = parameters
    epochs_without_improvement = 0
    step = 0
    bar = tqdm(range(max_epochs), disable=not progress, desc="fit_to_data")
    for _ in bar:
        key, shuffle_key = jax.random.split(key)
        permutation = jax.random.permutation(shuffle_key, n_train)
        epoch_losses = []
        for batch in range(batches_per_epoch):
            if steps is not None and step >= steps:
                break
            indices = permutation[batch * batch_size : (batch + 1) * batch_size]
            updated, state, loss = train_step(parameters, state, indices)
            loss = float(loss)
            if not math.isfinite(loss):
                bar.close()
            check_finite(
                loss,
                step,
                "fit_to_data",
                parameters=kept,
                losses=step_losses,
                rebuild=rebuild,
            )
            kept, parameters = parameters, updated
            epoch_losses.append(loss)
            step_losses.append(loss)
            step += 1
        held_out = val_loss(parameters)
        if not math.isfinite(held_out):
            bar.close()
        check_finite(
            held_out,
            step,
            "fit_to_data (held-out loss)",
            parameters=kept,
            losses=step_losses,
            rebuild=rebuild,
        )
        losses["train"].append(float(np.mean(epoch_losses)))
        losses["val"].append(held_out)
        bar.set_postfix(train=f"{losses['train'][-1]:.4f}", val=f"{held_out:.4f}")
        if held_out < best_val:
            best_val, best_parameters = held_out, parameters
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        if patience is not None and epochs_without_improvement >= patience:
            break
        if steps is not None and step >= steps:
            break
    bar.close()
    return eqx.combine(best_parameters, static), losses
