"""`Flow`: a normalizing flow that is a NumPyro distribution."""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from ..bijections import AbstractBijection
from ._batching import leading_shape, map_bijection


class _KeyedDistribution(Distribution):
    """Registers subclasses as pytrees with attribute-name keys.

    NumPyro's own registration orders children through a set, so their position
    (and any name derived from a pytree path) can change with `PYTHONHASHSEED`.
    Subclasses define `_flatten_with_keys`, `tree_flatten` and `tree_unflatten`.
    """

    def __init_subclass__(cls, **kwargs):
        # Skips Distribution.__init_subclass__ on purpose: one registration only.
        super(Distribution, cls).__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(
            cls, cls._flatten_with_keys, cls.tree_unflatten, cls.tree_flatten
        )


def _is_scalar_leaf(leaf) -> bool:
    return isinstance(leaf, bool | int | float | complex | np.generic)


class _Frozen:
    """A pytree without array leaves held as static data, compared by value.

    A base such as `dist.Normal(0.0, 1.0)` has only Python-number leaves. Kept in
    the treedef, its numbers are compile-time constants (XLA folds `(x - 0) / 1`)
    and two flows with equal bases share one compiled function.
    """

    __slots__ = ("_hash", "leaves", "treedef", "value")

    def __init__(self, tree):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.leaves = tuple(leaves)
        self.value = tree  # distributions are immutable: share the one object
        self._hash = hash((self.treedef, self.leaves))

    @staticmethod
    def possible(tree) -> bool:
        return all(_is_scalar_leaf(leaf) for leaf in jax.tree.leaves(tree))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (
            isinstance(other, _Frozen)
            and self.treedef == other.treedef
            and self.leaves == other.leaves
        )


def _is_key(key) -> bool:
    """A typed key (`jax.random.key`) or a raw one (`jax.random.PRNGKey`)."""
    if not hasattr(key, "dtype") or not hasattr(key, "shape"):
        return False
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return True
    return key.dtype == jnp.uint32 and tuple(key.shape[-1:]) == (2,)


def _base_with_event_shape(base_dist: Distribution, shape: tuple[int, ...]):
    """The base distribution with event shape `shape`, expanding a scalar base."""
    if tuple(base_dist.event_shape) == shape:
        return base_dist
    if base_dist.event_shape == ():
        try:
            batch = tuple(np.broadcast_shapes(tuple(base_dist.batch_shape), shape))
        except ValueError:
            batch = None
        if batch is not None and batch[len(batch) - len(shape) :] == shape:
            return base_dist.expand(batch).to_event(len(shape))
    raise ValueError(
        f"Flow: the base distribution has event shape {tuple(base_dist.event_shape)} "
        f"and batch shape {tuple(base_dist.batch_shape)}, but the bijection acts on "
        f"events of shape {shape}. Give a base with event shape {shape}, e.g. "
        f"dist.Normal(0, 1).expand({shape}).to_event({len(shape)}), or a scalar "
        "base (event shape ()), which is expanded for you."
    )


def _element_set(support) -> constraints.Constraint | None:
    """The set of one element's values under a support (unwrapping
    `independent`), or None when the support is not elementwise."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if not isinstance(support, constraints.Constraint) or support.event_dim:
        return None
    return support


def _flow_support(
    base_dist: Distribution,
    bijection: AbstractBijection,
    support: constraints.Constraint | None,
) -> constraints.Constraint:
    """The support of the flow's samples, with as many event dims as its events."""
    n_event = len(bijection.shape)
    if support is None:
        element = _element_set(base_dist.support)
        image = None if element is None else bijection.image(element)
        support = constraints.real if image is None else image
    if not isinstance(support, constraints.Constraint):
        raise TypeError(
            "Flow expected support= to be a NumPyro constraint, e.g. "
            f"constraints.positive; got {type(support).__name__}."
        )
    if support.event_dim > n_event:
        raise ValueError(
            f"Flow: support= has event dim {support.event_dim}, but the flow's "
            f"events have shape {tuple(bijection.shape)} ({n_event} dims). Give "
            "a constraint of at most as many event dims, e.g. "
            "constraints.positive, which applies to every element."
        )
    if support.event_dim < n_event:
        support = constraints.independent(support, n_event - support.event_dim)
    return support


class Flow(_KeyedDistribution):
    r"""A normalizing flow as a NumPyro distribution: $y = f(z)$, $z \sim$ base.

    The density is $\log p(y) = \log p_\text{base}(f^{-1}(y)) +
    \log|\det \partial f^{-1}/\partial y|$, computed in one pass of the
    bijection's `inverse_and_log_det`. A draw's own density needs no inverse:
    `sample_with_intermediates` (NumPyro's hook, which its `sample` primitive,
    `log_density` and ELBOs use) returns it from the forward pass, so a flow
    whose bijection has only a forward pass still serves as a guide. Sampling
    is reparameterised (when the base is), so gradients flow from samples into
    the bijection's parameters and into the condition; the condition is never
    wrapped in `stop_gradient`.

    - event shape: the bijection's `shape`;
    - batch shape: the broadcast of the base's batch shape and the leading dims of
      a batched condition (one distribution per context);
    - support: the set the bijection maps the base's support onto, where the
      bijection declares it (`AbstractBijection.image`): after `Exp` or
      `SoftPlus` the positive reals, after `Sigmoid` the unit interval, after
      `Tanh` (-1, 1), composed through `Chain`, `Scan`, `Invert`, `Reshape`
      and `Vmap`; the real arrays where it is not declared. NUTS and the
      autoguides transform the site onto it.

    A conditional bijection with no condition makes a flow that holds none
    (what the builders of `flowrox.flows` return for `cond_dim=...`): its
    `log_prob` and `sample` raise until `with_condition(c)` gives it one.

    A `Flow` is a pytree whose inexact array leaves are the trainable parameters
    (`eqx.partition(flow, eqx.is_inexact_array)` splits them off for optax).

    Args:
        base_dist: a NumPyro distribution with event shape `bijection.shape`, or a
            scalar distribution (event shape `()`), which is expanded to it.
        bijection: a flowrox bijection.
        condition: the context of a conditional bijection: one condition of shape
            `cond_shape`, a batch `(*batch, *cond_shape)`, or `None` (give it
            later with `with_condition`).
        support: the constraint of the flow's samples, overriding the one read
            from the bijection (see above); an elementwise constraint such as
            `constraints.positive` applies to every element of the event.
        validate_args: NumPyro's argument validation flag.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flowrox import Flow
        >>> from flowrox.bijections import Affine
        >>> flow = Flow(dist.Normal(0.0, 1.0), Affine(jnp.array([1.0, 2.0]), 3.0))
        >>> flow.batch_shape, flow.event_shape
        ((), (2,))
        >>> flow.sample(jax.random.key(0), (5,)).shape
        (5, 2)
        >>> reference = dist.Normal(jnp.array([1.0, 2.0]), 3.0).to_event(1)
        >>> y = jnp.array([0.5, -1.0])
        >>> bool(jnp.allclose(flow.log_prob(y), reference.log_prob(y)))
        True
        >>> y, intermediates = flow.sample_with_intermediates(jax.random.key(1))
        >>> bool(jnp.allclose(flow.log_prob(y, intermediates), flow.log_prob(y)))
        True

        The support follows the bijection:

        >>> from flowrox.bijections import Exp
        >>> Flow(dist.Normal(0.0, 1.0), Exp()).support
        Positive(lower_bound=0.0)
    """

    arg_constraints: ClassVar[dict] = {}
    # Children in a fixed order; the base and support become static data when
    # they hold no arrays (see _Frozen).
    _children: ClassVar[tuple[str, ...]] = (
        "base_dist",
        "bijection",
        "condition",
        "_support",
    )
    _freezable: ClassVar[tuple[str, ...]] = ("base_dist", "_support")
    _aux: ClassVar[tuple[str, ...]] = ("_batch_shape", "_event_shape", "_validate_args")

    def __init__(
        self,
        base_dist: Distribution,
        bijection: AbstractBijection,
        condition: ArrayLike | None = None,
        *,
        support: constraints.Constraint | None = None,
        validate_args: bool | None = None,
    ):
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(
                f"Flow expected a flowrox bijection, got {type(bijection).__name__}. "
                "Build one from flowrox.bijections, or wrap a NumPyro transform in "
                "dist.TransformedDistribution instead."
            )
        if not isinstance(base_dist, Distribution):
            raise TypeError(
                "Flow expected a NumPyro distribution as base_dist, got "
                f"{type(base_dist).__name__}, e.g. numpyro.distributions.Normal(0, 1)."
            )
        shape = tuple(bijection.shape)
        base_dist = _base_with_event_shape(base_dist, shape)
        batch_shape = tuple(base_dist.batch_shape)
        if bijection.cond_shape is None:
            if condition is not None:
                raise ValueError(
                    "Flow: the bijection is unconditional (cond_shape=None) but a "
                    f"condition of shape {jnp.shape(condition)} was given. Pass "
                    "condition=None, or use a conditional bijection."
                )
        elif condition is not None:
            condition = jnp.asarray(condition)
            cond_batch = leading_shape(
                "Flow", condition, tuple(bijection.cond_shape), "a condition"
            )
            batch_shape = tuple(np.broadcast_shapes(batch_shape, cond_batch))
            if batch_shape != tuple(base_dist.batch_shape):
                base_dist = base_dist.expand(batch_shape)
        support = _flow_support(base_dist, bijection, support)
        self.base_dist = base_dist
        self.bijection = bijection
        self.condition = condition
        self._support = support
        super().__init__(batch_shape, shape, validate_args=validate_args)
        self._tree_data_cache = self._tree_data()

    def _tree_data(self):
        """Static data of the pytree, computed once per instance (flattening runs
        on every jit call, so it must be cheap)."""
        frozen = tuple(
            _Frozen(self.__dict__[name])
            if name in self._freezable and _Frozen.possible(self.__dict__[name])
            else None
            for name in self._children
        )
        return tuple(getattr(self, name) for name in self._aux), frozen

    def tree_flatten(self):
        tree_data = self.__dict__["_tree_data_cache"]
        children = tuple(
            None if static is not None else self.__dict__[name]
            for name, static in zip(self._children, tree_data[1], strict=True)
        )
        return children, tree_data

    def _flatten_with_keys(self):
        children, tree_data = self.tree_flatten()
        keys = (jax.tree_util.GetAttrKey(name) for name in self._children)
        return tuple(zip(keys, children, strict=True)), tree_data

    @classmethod
    def tree_unflatten(cls, tree_data, children):
        aux, frozen = tree_data
        new = cls.__new__(cls)
        for name, child, static in zip(cls._children, children, frozen, strict=True):
            new.__dict__[name] = child if static is None else static.value
        new.__dict__.update(zip(cls._aux, aux, strict=True))
        new.__dict__["_tree_data_cache"] = tree_data
        return new

    @property
    def support(self) -> constraints.Constraint:
        return self._support

    @property
    def has_rsample(self) -> bool:
        return self.base_dist.has_rsample

    def _check_condition(self, owner: str) -> None:
        """A conditional flow computes nothing without a condition."""
        if self.condition is None and self.bijection.cond_shape is not None:
            cond_shape = tuple(self.bijection.cond_shape)
            batched = (5, *cond_shape)
            raise ValueError(
                f"{owner}: the flow is conditional (its bijection takes conditions "
                f"of shape {cond_shape}) but holds no condition. Give it one: "
                f"flow.with_condition(c) with c of shape {cond_shape}, or a batch "
                f"such as {batched} for that many distributions (or "
                "Flow(base, bijection, condition=c)); to train it, pass one "
                "condition per sample as fit_to_data(..., condition=c)."
            )

    def _map(self, method: str, value):
        return map_bijection(
            method, self.bijection, value, self.condition, owner="Flow"
        )

    def with_condition(self, condition: ArrayLike) -> "Flow":
        """The same flow given another context (or a batch of contexts).

        The flow's base must not already carry a batch of earlier contexts:
        call it on a flow built with no context (as the builders in
        `flowrox.flows` return) or with one.

        Args:
            condition: shape `(*batch, *cond_shape)`.

        Returns:
            A `Flow` with batch shape `batch`.
        """
        if self.condition is not None and jnp.ndim(self.condition) > len(
            self.bijection.cond_shape
        ):
            raise ValueError(
                "Flow.with_condition: this flow already holds a batch of contexts "
                f"(condition shape {jnp.shape(self.condition)}); call with_condition "
                "on the flow built with a single context."
            )
        return Flow(self.base_dist, self.bijection, condition, support=self._support)

    def log_prob(
        self, value: ArrayLike, intermediates: list | None = None
    ) -> jax.Array:
        """Log density: `(*sample, *batch, *event)` -> `(*sample, *batch)`.

        Args:
            value: the points, of shape `(*sample, *batch, *event)`.
            intermediates: what `sample_with_intermediates` returned with
                `value`. Given, the log density it holds is returned and the
                bijection is not run; `None` (or `[]`, what NumPyro records
                at an observed or substituted site) runs `inverse_and_log_det`.
        """
        if intermediates:
            if len(intermediates) != 1:
                raise ValueError(
                    "Flow.log_prob expected the intermediates of "
                    "Flow.sample_with_intermediates (a list holding one array, "
                    f"the draws' log density); got a list of {len(intermediates)}. "
                    "Pass the list returned with the value, or none."
                )
            return intermediates[0]
        self._check_condition("Flow.log_prob")
        x, log_det = self._map("inverse_and_log_det", value)
        return self.base_dist.log_prob(x) + log_det

    def _base_draws(self, owner: str, key, sample_shape) -> jax.Array:
        """The base's draws, after checking that `key` is a random key and that a
        conditional flow holds a condition."""
        if not _is_key(key):
            raise TypeError(
                f"{owner} expected a random key as its first argument, got "
                f"{key!r}. The sample shape goes second: "
                "flow.sample(jax.random.key(0), (5,))."
            )
        self._check_condition(owner)
        return self.base_dist.sample(key, tuple(sample_shape))

    def sample(self, key, sample_shape=()) -> jax.Array:
        """Draws samples of shape `(*sample_shape, *batch_shape, *event_shape)`."""
        z = self._base_draws("Flow.sample", key, sample_shape)
        return self._map("transform_and_log_det", z)[0]

    def sample_with_intermediates(
        self, key, sample_shape=()
    ) -> tuple[jax.Array, list[jax.Array]]:
        r"""Draws samples, and as intermediates their log density.

        The log density comes from the forward pass that makes the draw,
        $\log p(y) = \log p_\text{base}(z) - \log|\det \partial f/\partial z|$,
        so `log_prob(y, intermediates)` needs no inverse. NumPyro's `sample`
        primitive records the intermediates at the site, and `log_density`,
        `Trace_ELBO` and the other ELBOs pass them back to `log_prob`: a flow
        guide costs one forward pass per draw, and a bijection whose inverse
        raises `NotImplementedError` can serve as a guide.

        Where NumPyro forwards them (numpyro 0.22): `numpyro.plate`, `expand`
        and `expand_by` (`ExpandedDistribution`) and `to_event`
        (`Independent`) keep them. A mask other than `True`
        (`Distribution.mask`, `numpyro.handlers.mask`: `MaskedDistribution`)
        drops them, so a masked site's density runs the inverse. Observed,
        substituted and replayed values come without intermediates and run
        the inverse too.

        Returns:
            `(y, [log_prob])` with shapes `(*sample_shape, *batch, *event)` and
            `(*sample_shape, *batch)`.
        """
        z = self._base_draws("Flow.sample_with_intermediates", key, sample_shape)
        base_log_prob = self.base_dist.log_prob(z)
        y, log_det = self._map("transform_and_log_det", z)
        return y, [base_log_prob - log_det]

    def sample_and_log_prob(self, key, sample_shape=()) -> tuple[jax.Array, jax.Array]:
        """Draws samples and their log density from one forward pass.

        Returns:
            `(y, log_prob)` with shapes `(*sample_shape, *batch, *event)` and
            `(*sample_shape, *batch)`: `sample_with_intermediates` unpacked.
        """
        y, (log_prob,) = self.sample_with_intermediates(key, sample_shape)
        return y, log_prob
