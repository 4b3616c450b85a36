"""Draws docs/images/splines.png: the RationalQuadraticSpline options side by side.

Run: pip install -e ".[notebooks]" && python docs/scripts/plot_splines.py
"""

import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from flowrox.bijections import RationalQuadraticSpline

OUT = pathlib.Path(__file__).parents[1] / "images" / "splines.png"


def _random(key, **options):
    template = RationalQuadraticSpline(-2.0, 2.0, 6, **options)
    shape = template.identity_parameters().shape
    return template.with_parameters(0.6 * jax.random.normal(key, shape))


def main() -> None:
    x = jnp.linspace(-4.0, 4.0, 801)
    panels = {
        "standard: linear tails\nwith the boundary slopes": _random(jax.random.key(0)),
        "identity_boundary_slopes": _random(
            jax.random.key(0), identity_boundary_slopes=True
        ),
        "learn_upper_bound (scale e^s)": _random(
            jax.random.key(1), learn_upper_bound=True
        ),
        "circular (period 4; knots before the shift)": _random(
            jax.random.key(2), circular=True
        ),
    }
    figure, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for axis, (title, spline) in zip(axes, panels.items(), strict=True):
        y, log_derivative = jax.vmap(spline.forward_elementwise)(x)
        knots_x, knots_y, _, _ = spline._features()
        axis.plot(x, y, label="y = spline(x)")
        axis.plot(x, jnp.exp(log_derivative), "--", label="dy/dx")
        axis.plot(knots_x[0], knots_y[0], "o", markersize=4, label="knots")
        axis.axvspan(float(knots_x[0, 0]), float(knots_x[0, -1]), alpha=0.08)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("x")
    axes[0].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
