"""`run_svi`: `SVI.run` that never hands back a diverged guide."""

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import SVI
from numpyro.infer.svi import SVIRunResult


def _default_window(num_steps: int) -> int:
    # Fifty windows over the run: long enough that a window's mean loss is not
    # one particle's noise, short enough to keep parameters close to the best.
    return max(1, num_steps // 50)


def _default_tolerance(best: float) -> float:
    return max(10.0, 0.1 * abs(best))


def run_svi(
    svi: SVI,
    rng_key: jax.Array,
    num_steps: int,
    *args: Any,
    init_params: dict | None = None,
    window: int | None = None,
    tolerance: float | None = None,
    stable_update: bool = True,
    **kwargs: Any,
) -> SVIRunResult:
    r"""`svi.run(rng_key, num_steps, ...)`, keeping the best parameters when
    training diverges.

    The steps are those of `SVI.run(progress_bar=False)` (one `lax.scan`, the
    same keys), grouped into windows of `window` steps. After each window its
    mean loss is compared with the best so far, and the state at the end of the
    best window is kept. When the run ends with a last window whose mean loss is
    not finite, or is more than `tolerance` above the best window's, training
    diverged (one bad particle can drive a flow's parameters to where it is no
    longer invertible in float32, and the loss then climbs for thousands of
    steps without an error): the best window's parameters and state are
    returned, with a `UserWarning` naming both windows. Otherwise the result is
    what `SVI.run` returns.

    With `stable_update=True` (the default here; NumPyro's is `False`) a step
    whose loss or update is not finite is skipped, as `SVI.stable_update` does.

    Args:
        svi: a `numpyro.infer.SVI` object.
        rng_key: the key, as for `SVI.run`.
        num_steps: the number of steps.
        *args: the model's and guide's positional arguments.
        init_params: initial parameter values, as for `SVI.run`.
        window: the number of steps whose mean loss is one comparison; default
            `max(1, num_steps // 50)`.
        tolerance: how far (in the loss's units, nats for an ELBO) the last
            window's mean may rise above the best before the run counts as
            diverged; default `max(10, 0.1 * |best|)`.
        stable_update: skip steps whose loss or update is not finite.
        **kwargs: the model's and guide's keyword arguments.

    Returns:
        `SVIRunResult(params, state, losses)`, as `SVI.run` returns; `losses`
        holds every step's loss, the diverged ones included.

    Examples:
        >>> import jax
        >>> import numpyro
        >>> import numpyro.distributions as dist
        >>> from numpyro.infer import SVI, Trace_ELBO
        >>> from flowrox.infer import AutoFlowGuide, run_svi
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(1.0, 2.0))
        ...     numpyro.sample("y", dist.Normal(0.0, 1.0))
        >>> guide = AutoFlowGuide(model, num_flows=1)
        >>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
        >>> result = run_svi(svi, jax.random.key(0), 500)
        >>> result.losses.shape
        (500,)
    """
    num_steps = int(num_steps)
    if num_steps < 1:
        raise ValueError(f"run_svi: num_steps must be at least 1; got {num_steps}.")
    window = _default_window(num_steps) if window is None else int(window)
    if not 1 <= window <= num_steps:
        raise ValueError(
            f"run_svi: window must be between 1 and num_steps={num_steps}; got "
            f"{window}. Leave it out for num_steps // 50."
        )
    update = svi.stable_update if stable_update else svi.update

    def step(carry, index):
        state, best_state, best_mean, window_sum = carry
        state, loss = update(state, *args, **kwargs)
        window_sum = window_sum + loss
        closes = (index + 1) % window == 0
        mean = window_sum / window
        better = closes & (mean < best_mean)
        # cond rather than where: the state holds a typed PRNG key.
        best_state = jax.lax.cond(better, lambda: state, lambda: best_state)
        best_mean = jnp.where(better, mean, best_mean)
        window_sum = jnp.where(closes, 0.0, window_sum)
        return (state, best_state, best_mean, window_sum), loss

    state = svi.init(rng_key, *args, init_params=init_params, **kwargs)
    zero = jnp.zeros((), jnp.result_type(float))
    start = (state, state, zero + jnp.inf, zero)
    (state, best_state, _, _), losses = jax.lax.scan(step, start, jnp.arange(num_steps))

    losses_host = np.asarray(losses, np.float64)
    full = (num_steps // window) * window
    means = losses_host[:full].reshape(-1, window).mean(axis=1)
    finite = np.isfinite(means)
    if not finite.any():
        warnings.warn(
            "run_svi: no window of the run had a finite mean loss; returning the "
            "last state. Check the model's initial values (init_loc_fn) and try "
            "a smaller step size.",
            UserWarning,
            stacklevel=2,
        )
        return SVIRunResult(svi.get_params(state), state, losses)
    best_index = int(np.argmin(np.where(finite, means, np.inf)))
    best = float(means[best_index])
    last = float(np.mean(losses_host[-window:]))
    tolerance = _default_tolerance(best) if tolerance is None else float(tolerance)
    if np.isfinite(last) and last <= best + tolerance:
        return SVIRunResult(svi.get_params(state), state, losses)
    warnings.warn(
        f"run_svi: training diverged: the last window's mean loss is {last:.6g} "
        f"(steps {num_steps - window + 1}-{num_steps}), against {best:.6g} at "
        f"best (steps {best_index * window + 1}-{(best_index + 1) * window}); "
        "returning the parameters and state at the end of the best window. To "
        "train on from there, pass a smaller step size or clip the gradients (e.g. "
        "optax.chain(optax.clip_by_global_norm(10.0), optax.adam(lr))), and "
        "init_params=result.params.",
        UserWarning,
        stacklevel=2,
    )
    return SVIRunResult(svi.get_params(best_state), best_state, losses)
