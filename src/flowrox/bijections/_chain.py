"""Composition and inversion: `Chain` and `Invert`."""

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp

from ._base import AbstractBijection


def common_cond_shape(owner: str, bijections) -> tuple[int, ...] | None:
    """The one `cond_shape` shared by the conditional bijections, or None."""
    shapes = {tuple(b.cond_shape) for b in bijections if b.cond_shape is not None}
    if len(shapes) > 1:
        raise ValueError(
            f"{owner}: the conditional layers expect conditions of different shapes "
            f"{sorted(shapes)}; all conditional layers must share one cond_shape."
        )
    return shapes.pop() if shapes else None


def composed_images(layers: Sequence[AbstractBijection]) -> tuple:
    """The `known_images` of applying `layers` in order: each set the first
    layer knows, followed through every layer for as long as each knows it."""
    pairs = []
    for domain, image in layers[0].known_images:
        for layer in layers[1:]:
            image = layer.image(image)
            if image is None:
                break
        if image is not None:
            pairs.append((domain, image))
    return tuple(pairs)


def condition_for(bijection: AbstractBijection, condition):
    """The condition a layer of a composite receives: only conditional layers get it."""
    return None if bijection.cond_shape is None else condition


class Chain(AbstractBijection):
    r"""The composition $f_n \circ \dots \circ f_1$ of a list of bijections.

    `transform` applies the layers in list order, `inverse` in reverse order; the
    log-dets add. A condition is passed to the conditional layers only, which must
    share one `cond_shape`. For many layers of one kind, prefer `Scan`, whose
    compile time does not grow with depth. The sets it maps onto each other
    (`known_images`) follow the layers': `Chain([Affine(), Exp()])` maps the
    reals onto the positive reals, `Chain([Exp(), Affine()])` is not known
    to.

    Args:
        bijections: the layers, all of one event shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Affine, Chain, Exp
        >>> chain = Chain([Affine(1.0, 2.0), Exp()])
        >>> round(float(chain.transform(jnp.array(0.0))), 4)  # exp(1 + 2 * 0)
        2.7183
    """

    bijections: tuple[AbstractBijection, ...]
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijections: Sequence[AbstractBijection]):
        bijections = tuple(bijections)
        if not bijections:
            raise ValueError("Chain needs at least one bijection; got an empty list.")
        for index, bijection in enumerate(bijections):
            if not isinstance(bijection, AbstractBijection):
                raise TypeError(
                    f"Chain: element {index} is a {type(bijection).__name__}, "
                    "expected a flowrox bijection."
                )
        shapes = [tuple(b.shape) for b in bijections]
        if len(set(shapes)) > 1:
            raise ValueError(
                f"Chain: all layers must share one event shape; got shapes {shapes}. "
                "Wrap a layer in Reshape(...) to change how it sees the event."
            )
        self.bijections = bijections
        self.shape = shapes[0]
        self.cond_shape = common_cond_shape("Chain", bijections)

    @property
    def known_images(self) -> tuple:
        return composed_images(self.bijections)

    def transform_and_log_det(self, x, condition=None):
        log_det = jnp.zeros((), x.dtype)
        for bijection in self.bijections:
            x, layer_log_det = bijection.transform_and_log_det(
                x, condition_for(bijection, condition)
            )
            log_det = log_det + layer_log_det
        return x, log_det

    def inverse_and_log_det(self, y, condition=None):
        log_det = jnp.zeros((), y.dtype)
        for bijection in reversed(self.bijections):
            y, layer_log_det = bijection.inverse_and_log_det(
                y, condition_for(bijection, condition)
            )
            log_det = log_det + layer_log_det
        return y, log_det


class Invert(AbstractBijection):
    """Swaps the two directions of a bijection.

    Useful to make the fast direction of a layer the one that is needed most,
    e.g. an autoregressive layer whose inverse is sequential. Its
    `known_images` are the bijection's, read backwards (`Invert(Exp())` maps
    the positive reals onto the reals).

    Args:
        bijection: the bijection to invert.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import Exp, Invert
        >>> Invert(Exp()).transform(jnp.array(1.0)).item()  # log(1)
        0.0
    """

    bijection: AbstractBijection
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection):
        self.bijection = bijection
        self.shape = tuple(bijection.shape)
        self.cond_shape = bijection.cond_shape

    @property
    def known_images(self) -> tuple:
        return tuple((image, domain) for domain, image in self.bijection.known_images)

    def transform_and_log_det(self, x, condition=None):
        return self.bijection.inverse_and_log_det(x, condition)

    def inverse_and_log_det(self, y, condition=None):
        return self.bijection.transform_and_log_det(y, condition)
