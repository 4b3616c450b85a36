r"""The package's one root finder: increasing maps, solved with implicit gradients.

`find_root` solves $F(x; \theta) = y$ for $x$, where $F$ is elementwise and
increasing in every element, or lower triangular on vectors,
$F_i(x_1, \dots, x_i)$, increasing in $x_i$ (then the elements are solved one
at a time, in order). Each scalar equation is solved in three stages:

1. *Bracket*: from the given $[\ell, h]$, while the root lies outside, the
   bracket moves past the end nearest to it and doubles its width.
2. *Bisect* until the bracket is narrower than `tolerance` (relative to the
   root's magnitude, absolute near zero).
3. *Newton*, safeguarded: a step is taken only when it stays inside the bracket
   and either halves the step before it or is at most half the bracket wide;
   otherwise the bracket is bisected. The bracket shrinks with every evaluation,
   so Newton can neither leave it nor cycle in it (as it does around the
   inflection of $x + \kappa\tanh x$ for $\kappa$ near $-1$).

Every loop is a `jax.lax` loop with a bounded trip count, so the solver runs
under `jit` and `vmap`. Where no bracket is found, the root is NaN.

Gradients never go through the iterations. By the implicit function theorem,
the tangent of the root solves

$$\frac{\partial F}{\partial x}\,dx = dy - \frac{\partial F}{\partial\theta}\,d\theta$$

at the root: a division by $F'(x)$ for an elementwise map, a triangular solve
for a triangular one. The bracket only locates the root, so it gets no
gradient.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class RootFinder(NamedTuple):
    """The step budgets and the tolerance of `find_root`.

    Attributes:
        max_expansion_steps: the most steps that move the bracket towards the
            root (each doubles its width).
        max_bisection_steps: the most bisection steps.
        tolerance: bisection stops once every bracket is narrower than
            `tolerance * (1 + |low| + |high|)`.
        newton_steps: the number of safeguarded Newton steps after bisection.
    """

    max_expansion_steps: int = 64
    max_bisection_steps: int = 64
    tolerance: float = 1e-5
    newton_steps: int = 4


def _slope_by_autodiff(f: Callable, x: jax.Array) -> jax.Array:
    """f'(x) elementwise, for an elementwise (diagonal-Jacobian) f."""
    return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]


def _search(f, slope, y, low, high, finder: RootFinder):
    """Solves f(x) = y elementwise for increasing elementwise f, from the first
    bracket [low, high]; `slope(x)` is f'(x). No gradients."""
    low, high = jnp.broadcast_to(low, y.shape), jnp.broadcast_to(high, y.shape)
    # A bracket that rounds to one point must still be able to grow.
    resolution = jnp.finfo(y.dtype).eps

    def not_bracketed(state):
        step, _, _, f_low, f_high = state
        outside = (f_low > y) | (f_high < y)
        return (step < finder.max_expansion_steps) & jnp.any(outside)

    def expand(state):
        step, low, high, f_low, f_high = state
        width = jnp.maximum(
            high - low, resolution * (1.0 + jnp.abs(low) + jnp.abs(high))
        )
        go_down, go_up = f_low > y, f_high < y
        new_low = jnp.where(go_down, low - 2.0 * width, jnp.where(go_up, high, low))
        new_high = jnp.where(go_up, high + 2.0 * width, jnp.where(go_down, low, high))
        new_f_low = jnp.where(go_down, f(new_low), jnp.where(go_up, f_high, f_low))
        new_f_high = jnp.where(go_up, f(new_high), jnp.where(go_down, f_low, f_high))
        return step + 1, new_low, new_high, new_f_low, new_f_high

    state = (0, low, high, f(low), f(high))
    _, low, high, f_low, f_high = jax.lax.while_loop(not_bracketed, expand, state)
    bracketed = (f_low <= y) & (f_high >= y)

    def too_wide(state):
        step, low, high = state
        wide = high - low > finder.tolerance * (1.0 + jnp.abs(low) + jnp.abs(high))
        return (step < finder.max_bisection_steps) & jnp.any(wide)

    def bisect(state):
        step, low, high = state
        middle = low + 0.5 * (high - low)
        below = f(middle) < y
        return step + 1, jnp.where(below, middle, low), jnp.where(below, high, middle)

    _, low, high = jax.lax.while_loop(too_wide, bisect, (0, low, high))

    def newton(_, state):
        x, low, high, last_step = state
        residual = f(x) - y
        low = jnp.where(residual < 0, x, low)
        high = jnp.where(residual > 0, x, high)
        step = residual / slope(x)
        candidate = x - step
        # In any cycle some step spans the whole bracket without halving the
        # one before, so this test breaks cycles; a converged step (rounding
        # noise, far smaller than the bracket) is kept rather than bisected.
        shrinking = (2.0 * jnp.abs(step) <= jnp.abs(last_step)) | (
            2.0 * jnp.abs(step) <= high - low
        )
        use_newton = (candidate >= low) & (candidate <= high) & shrinking
        new_x = jnp.where(use_newton, candidate, 0.5 * (low + high))
        new_x = jnp.where(residual == 0, x, new_x)
        return new_x, low, high, new_x - x

    x = low + 0.5 * (high - low)
    state = (x, low, high, high - low)
    x = jax.lax.fori_loop(0, finder.newton_steps, newton, state)[0]
    # No bracket means y lies outside the range reached: say so with NaN rather
    # than return a wrong finite value.
    return jnp.where(bracketed, x, jnp.nan)


def _search_in_order(function, parameters, y, low, high, finder: RootFinder):
    """Solves F(x) = y for a lower-triangular F on vectors, one element at a
    time in order: with x_{<i} solved, F_i is increasing in x_i alone."""

    def solve_element(i, x):
        def f(value):
            return function(x.at[i].set(value), parameters)[i]

        def slope(value):
            return _slope_by_autodiff(f, value)

        root = _search(f, slope, y[i], low[i], high[i], finder)
        return x.at[i].set(root)

    return jax.lax.fori_loop(0, y.shape[0], solve_element, jnp.zeros_like(y))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _root(function, slope, triangular, finder, parameters, y, low, high):
    if triangular:
        return _search_in_order(function, parameters, y, low, high, finder)

    def f(x):
        return function(x, parameters)

    if slope is None:
        slope_of_f = functools.partial(_slope_by_autodiff, f)
    else:

        def slope_of_f(x):
            return slope(x, parameters)

    return _search(f, slope_of_f, y, low, high, finder)


@_root.defjvp
def _root_jvp(function, slope, triangular, finder, primals, tangents):
    parameters, y, low, high = primals
    d_parameters, d_y, _, _ = tangents
    x = _root(function, slope, triangular, finder, parameters, y, low, high)
    _, explicit = jax.jvp(
        lambda parameters: function(x, parameters), (parameters,), (d_parameters,)
    )
    if triangular:
        jacobian = jax.jacfwd(lambda value: function(value, parameters))(x)
        return x, jax.scipy.linalg.solve_triangular(
            jacobian, d_y - explicit, lower=True
        )
    if slope is None:
        derivative = _slope_by_autodiff(lambda value: function(value, parameters), x)
    else:
        derivative = slope(x, parameters)
    return x, (d_y - explicit) / derivative


def find_root(
    function: Callable[[jax.Array, Any], jax.Array],
    parameters: Any,
    y: jax.Array,
    *,
    low: jax.Array,
    high: jax.Array,
    finder: RootFinder | None = None,
    slope: Callable[..., jax.Array] | None = None,
    triangular: bool = False,
) -> jax.Array:
    r"""The root $x$ of $F(x; \theta) = y$, with implicit-function gradients.

    Args:
        function: $F$, called as `function(x, parameters)`: elementwise and
            increasing in every element, or (with `triangular=True`) lower
            triangular on vectors and increasing in $x_i$. It must close over
            no traced values: everything it differentiates goes in
            `parameters`.
        parameters: $\theta$, a pytree; the root is differentiable in it and
            in `y`.
        y: the target, of the shape of $x$.
        low: the first bracket's lower ends (broadcast to `y`).
        high: the first bracket's upper ends (broadcast to `y`).
        finder: the step budgets and the tolerance (default `RootFinder()`).
        slope: $\partial F/\partial x$, called as `slope(x, parameters)`,
            for a form more accurate than autodiff's (elementwise maps only;
            by default it comes from `jax.jvp`).
        triangular: $F$ is lower triangular on a vector instead of elementwise.

    Returns:
        The root, of the shape of `y`; NaN where no bracket was found.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections._root_finding import find_root
        >>> def cube(x, power):
        ...     return x**power
        >>> y = jnp.array([8.0, -27.0])
        >>> root = find_root(cube, 3.0, y, low=y - 1.0, high=y + 1.0)
        >>> print(*[round(value, 5) for value in root.tolist()])
        2.0 -3.0
        >>> slope = jax.grad(lambda y: find_root(cube, 3.0, y, low=0.0, high=9.0))
        >>> round(float(slope(8.0)), 5)  # d cbrt(y)/dy = 1 / (3 y^(2/3))
        0.08333
    """
    y = jnp.asarray(y)
    if triangular and slope is not None:
        raise ValueError(
            "find_root: slope applies to elementwise maps; a triangular map's "
            "Jacobian comes from autodiff. Pass slope=None with triangular=True."
        )
    if triangular and y.ndim != 1:
        raise ValueError(
            f"find_root: a triangular map acts on vectors; got y of shape {y.shape}."
        )
    low = jnp.broadcast_to(jnp.asarray(low, y.dtype), y.shape)
    high = jnp.broadcast_to(jnp.asarray(high, y.dtype), y.shape)
    finder = RootFinder() if finder is None else finder
    return _root(function, slope, bool(triangular), finder, parameters, y, low, high)
