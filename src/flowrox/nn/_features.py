r"""Random Fourier features, fixed (RBF) and generated from a context.

For frequencies $\omega_1, \dots, \omega_n$, phases $b$ and a lengthscale
$\ell$, the feature map is

$$\phi(x) = \sqrt{1/n}\,\bigl[\cos(\Omega x / \ell + b),\;
\sin(\Omega x / \ell + b)\bigr] \in \mathbb{R}^{2n}.$$

Since $\cos a \cos a' + \sin a \sin a' = \cos(a - a')$, the phases cancel in
$\phi(x)^\top \phi(x') = \frac1n \sum_i \cos(\omega_i^\top (x - x') / \ell)$,
which for $\omega_i \sim \mathcal{N}(0, I)$ is an unbiased estimate of the RBF
kernel $\exp(-\lVert x - x' \rVert^2 / (2 \ell^2))$ (Bochner's theorem;
Rahimi & Recht, 2007) with error $O(1/\sqrt{n})$.
"""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.typing import ArrayLike

from .._bayes import bayesian
from .._tree import buffer
from ._shared import (
    apply_linear,
    check_context,
    check_width,
    map_rows,
    refuse_scope_name,
)


def _fourier_map(arguments: jax.Array, num_features: int) -> jax.Array:
    scale = math.sqrt(1.0 / num_features)
    return scale * jnp.concatenate([jnp.cos(arguments), jnp.sin(arguments)], -1)


class RBFFourierFeatures(eqx.Module):
    r"""Random Fourier features of the RBF kernel: fixed frequencies, learned $\ell$.

    $\phi(x) = \sqrt{1/n}\,[\cos(\Omega x / \ell), \sin(\Omega x / \ell)]$ with
    the rows of $\Omega$ drawn once from $\mathcal{N}(0, I)$ (so the effective
    frequencies $\Omega / \ell$ are $\mathcal{N}(0, \ell^{-2} I)$), and
    $\phi(x)^\top \phi(x') \approx \exp(-\lVert x - x' \rVert^2 / (2\ell^2))$.
    The frequencies are a buffer (`flowrox.buffer`): `flowrox.train`'s
    `trainable_filter` leaves them out of training, and `flowrox.bayesian` and
    `param_module` skip them, unless selected explicitly with `where=` (e.g.
    for a prior over the frequencies themselves). The lengthscale is stored as
    `log_lengthscale`, a trainable leaf that can be given a prior.

    Args:
        in_features: the input width.
        num_features: the number of frequencies $n$; the output has $2n$ features.
        key: the key for the frequencies.
        lengthscale: the initial lengthscale $\ell > 0$.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import RBFFourierFeatures
        >>> features = RBFFourierFeatures(2, 64, key=jax.random.key(0))
        >>> phi = features(jnp.zeros((5, 2)))
        >>> phi.shape, round(float(phi[0] @ phi[0]), 4)  # k(x, x) = 1 exactly
        ((5, 128), 1.0)
    """

    frequencies: jax.Array = buffer()
    log_lengthscale: jax.Array
    in_features: int = eqx.field(static=True)
    num_features: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        num_features: int,
        *,
        key: jax.Array,
        lengthscale: float = 1.0,
    ):
        if lengthscale <= 0:
            raise ValueError(
                f"RBFFourierFeatures: expected lengthscale > 0, got {lengthscale}."
            )
        self.frequencies = jax.random.normal(key, (num_features, in_features))
        self.log_lengthscale = jnp.log(jnp.asarray(lengthscale, dtype=float))
        self.in_features, self.num_features = int(in_features), int(num_features)

    @classmethod
    def init(
        cls,
        in_features: int,
        n_features: int,
        *,
        lengthscale: float = 1.0,
        key: jax.Array | None = None,
    ) -> "RBFFourierFeatures":
        r"""The features with pyrox's priors (pyrox's `RBFFourierFeatures.init`).

        pyrox names the number of frequencies `n_features`, and samples the
        frequencies and the lengthscale in every call: $\Omega \sim
        \mathcal{N}(0, 1)$, $\ell \sim \text{LogNormal}(\log
        \text{lengthscale}, 1)$. Here the same priors are declared on the
        leaves, with `flowrox.bayesian`: `frequencies` (a buffer, selected
        explicitly) and `log_lengthscale` ($\mathcal{N}(\log
        \text{lengthscale}, 1)$, the same prior on $\ell$). Inside a model,
        `flowrox.sample_module("rff", features)` draws them (sites
        `rff/frequencies`, `rff/log_lengthscale`) and returns features to call.
        `key` (default `jax.random.key(0)`) sets only the initial values. For
        fixed frequencies and a learned lengthscale, call the constructor.

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> import flowrox
            >>> from flowrox.nn import RBFFourierFeatures
            >>> prior = RBFFourierFeatures.init(2, 16, lengthscale=0.5)
            >>> rff = flowrox.sample_module("rff", prior, rng_key=jax.random.key(1))
            >>> rff(jnp.zeros((5, 2))).shape
            (5, 32)
        """
        if not lengthscale > 0:
            raise ValueError(
                f"RBFFourierFeatures.init: expected lengthscale > 0, got {lengthscale}."
            )
        features = cls(
            in_features,
            n_features,
            key=jax.random.key(0) if key is None else key,
            lengthscale=lengthscale,
        )
        priors = {
            "frequencies": dist.Normal(0.0, 1.0),
            "log_lengthscale": dist.Normal(math.log(lengthscale), 1.0),
        }
        return bayesian(
            features, priors, where=lambda m: (m.frequencies, m.log_lengthscale)
        )

    @property
    def out_features(self) -> int:
        """The output width, `2 * num_features`."""
        return 2 * self.num_features

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Features `(..., 2 * num_features)` of `x` of shape `(..., in_features)`."""
        x = check_width("RBFFourierFeatures", "x", x, self.in_features, "in_features")
        arguments = x @ self.frequencies.T / jnp.exp(self.log_lengthscale)
        return _fourier_map(arguments, self.num_features)


class RandomKitchenSinks(eqx.Module):
    """Random Fourier features of the RBF kernel plus a trainable linear readout.

    $y = \\phi(x) \\beta + c$: `RBFFourierFeatures` (fixed frequencies, learned
    lengthscale) then an `eqx.nn.Linear` readout. With a Normal prior on the
    readout (`flowrox.bayesian(sinks, prior, where=lambda m: m.readout)`) this
    is a finite-rank approximation of a Gaussian process with an RBF kernel.

    Args:
        in_features: the input width.
        num_features: the number of frequencies ($2n$ features feed the readout).
        out_features: the output width.
        key: the key for the frequencies and the readout.
        lengthscale: the initial RBF lengthscale.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import RandomKitchenSinks
        >>> sinks = RandomKitchenSinks(1, 32, 3, key=jax.random.key(0))
        >>> sinks(jnp.zeros((10, 1))).shape
        (10, 3)
    """

    features: RBFFourierFeatures
    readout: eqx.nn.Linear

    def __init__(
        self,
        in_features: int,
        num_features: int,
        out_features: int,
        *,
        key: jax.Array,
        lengthscale: float = 1.0,
    ):
        feature_key, readout_key = jax.random.split(key)
        self.features = RBFFourierFeatures(
            in_features, num_features, key=feature_key, lengthscale=lengthscale
        )
        self.readout = eqx.nn.Linear(2 * num_features, out_features, key=readout_key)

    @classmethod
    def init(cls, rff: RBFFourierFeatures, out_features: int) -> "RandomKitchenSinks":
        r"""Sinks around given features, as pyrox's `RandomKitchenSinks.init` builds.

        pyrox's readout starts at zero, with $\mathcal{N}(0, 1)$ priors on its
        weight and bias: here `flowrox.bayesian` declares them on `readout`
        (sites `{name}/readout.weight`, `{name}/readout.bias`); `rff` is kept as
        it is, with its own priors if it has any (`RBFFourierFeatures.init`).

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> import flowrox
            >>> from flowrox.nn import RandomKitchenSinks, RBFFourierFeatures
            >>> prior = RandomKitchenSinks.init(RBFFourierFeatures.init(1, 32), 3)
            >>> sinks = flowrox.sample_module("rks", prior, rng_key=jax.random.key(0))
            >>> sinks(jnp.zeros((10, 1))).shape
            (10, 3)
        """
        if not isinstance(rff, RBFFourierFeatures):
            raise TypeError(
                "RandomKitchenSinks.init: expected RBFFourierFeatures (from "
                "RBFFourierFeatures.init or its constructor), got "
                f"{type(rff).__name__}."
            )
        key = jax.random.key(0)  # only shapes are built: nothing is drawn
        skeleton = eqx.filter_eval_shape(
            cls, rff.in_features, rff.num_features, out_features, key=key
        )
        linear = eqx.filter_eval_shape(
            eqx.nn.Linear, 2 * rff.num_features, out_features, key=key
        )
        dtype = jnp.result_type(float)
        readout = eqx.tree_at(
            lambda layer: (layer.weight, layer.bias),
            linear,
            (
                jnp.zeros((out_features, 2 * rff.num_features), dtype),
                jnp.zeros(out_features, dtype),
            ),
        )
        sinks = eqx.tree_at(lambda m: (m.features, m.readout), skeleton, (rff, readout))
        return bayesian(sinks, dist.Normal(0.0, 1.0), where=lambda m: m.readout)

    @property
    def in_features(self) -> int:
        """The input width."""
        return self.features.in_features

    @property
    def out_features(self) -> int:
        """The output width."""
        return self.readout.out_features

    def __call__(self, x: ArrayLike) -> jax.Array:
        """`(..., in_features)` to `(..., out_features)`."""
        return apply_linear(self.readout, self.features(x))


@eqx.filter_jit
def _calibrated_parameter_net(
    cond_dim: int,
    size: int,
    in_features: int,
    num_features: int,
    *,
    key: jax.Array,
    width: int,
    depth: int,
    lengthscale: float,
    init_scale: float,
) -> eqx.nn.MLP:
    """An MLP whose output at init is an RBF draw, nearly whatever the context.

    One compiled program: run eagerly, every random draw of a new shape would be
    compiled on its own.
    """
    net_key, frequency_key, phase_key = jax.random.split(key, 3)
    net = eqx.nn.MLP(cond_dim, size, width, depth, activation=jnp.tanh, key=net_key)
    last = net.layers[-1]
    frequencies = jax.random.normal(frequency_key, (num_features * in_features,))
    phases = jax.random.uniform(phase_key, (num_features,), maxval=2 * jnp.pi)
    log_lengthscale = jnp.log(jnp.asarray([lengthscale], dtype=frequencies.dtype))
    bias = jnp.concatenate([frequencies, phases, log_lengthscale])
    return eqx.tree_at(
        lambda n: (n.layers[-1].weight, n.layers[-1].bias),
        net,
        (init_scale * last.weight, bias),
    )


_FREQUENCY_LAYOUTS = ("features_by_inputs", "inputs_by_features")


class HyperFourierFeatures(eqx.Module):
    r"""Fourier features whose frequencies, phases and lengthscale come from z.

    A parameter network maps one context vector `(cond_dim,)` to a flat vector of
    `parameter_size = in_features * num_features + num_features + 1` entries:
    the frequencies $\Omega(z)$ (`(num_features, in_features)`, row-major), the
    phases $b(z)$ and $\log \ell(z)$. Then
    $\phi(x; z) = \sqrt{1/n}\,[\cos(\Omega(z) x / \ell(z) + b(z)),
    \sin(\Omega(z) x / \ell(z) + b(z))]$.

    With `z` one vector (shared path) the parameter network runs once and the
    features are reused for every row of `x`; with one row of `z` per row of `x`
    (per-sample path) each row gets its own frequencies. The parameter network
    is applied row by row (vmapped), so any module mapping `(cond_dim,)` to
    `(parameter_size,)` works (an `eqx.nn.MLP`, a Bayesian network sampled with
    `flowrox.sample_module`, ...). It is never called at construction, so a
    wrong output size surfaces at the first call, as a `ValueError`.

    The default parameter network is an MLP (`width`, `depth`, tanh) whose last
    layer is calibrated: its bias holds frequencies drawn from
    $\mathcal{N}(0, I)$, phases from $U(0, 2\pi)$ and $\log$ `lengthscale`, and
    its weights are multiplied by `init_scale`; so at initialisation the layer
    is close to `RBFFourierFeatures` (exactly so, for every z, when
    `init_scale=0`).

    Args:
        in_features: the input width.
        num_features: the number of frequencies $n$; the output has $2n$ features.
        cond_dim: the context width.
        key: the key for the default parameter network.
        parameter_net: a module mapping `(cond_dim,)` to `(parameter_size,)`;
            default: the calibrated MLP described above.
        width: the hidden width of the default parameter network.
        depth: the number of hidden layers of the default parameter network.
        lengthscale: the lengthscale the default parameter network starts at.
        init_scale: the factor on the default network's last weights.
        frequency_layout: how the first `in_features * num_features` outputs
            hold the frequencies: `"features_by_inputs"`, row-major
            `(num_features, in_features)`, or `"inputs_by_features"`, row-major
            `(in_features, num_features)` (pyrox's layout, in which the
            projection is $\Omega(z)^\top x$). The two agree for
            `in_features=1`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import HyperFourierFeatures
        >>> features = HyperFourierFeatures(1, 16, 3, key=jax.random.key(0))
        >>> features(jnp.ones((5, 1)), jnp.ones((5, 3))).shape  # a context per row
        (5, 32)
    """

    parameter_net: Callable
    in_features: int = eqx.field(static=True)
    num_features: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    frequency_layout: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        num_features: int,
        cond_dim: int,
        *,
        key: jax.Array,
        parameter_net: Callable | None = None,
        width: int = 32,
        depth: int = 1,
        lengthscale: float = 1.0,
        init_scale: float = 0.1,
        frequency_layout: str = "features_by_inputs",
    ):
        if frequency_layout not in _FREQUENCY_LAYOUTS:
            raise ValueError(
                "HyperFourierFeatures: frequency_layout must be one of "
                f"{list(_FREQUENCY_LAYOUTS)}; got {frequency_layout!r}."
            )
        self.frequency_layout = frequency_layout
        self.in_features, self.num_features = int(in_features), int(num_features)
        self.cond_dim = int(cond_dim)
        if parameter_net is None:
            if lengthscale <= 0:
                raise ValueError(
                    "HyperFourierFeatures: expected lengthscale > 0, got "
                    f"{lengthscale}."
                )
            parameter_net = _calibrated_parameter_net(
                self.cond_dim,
                self.parameter_size,
                self.in_features,
                self.num_features,
                key=key,
                width=width,
                depth=depth,
                lengthscale=lengthscale,
                init_scale=init_scale,
            )
        self.parameter_net = parameter_net

    @classmethod
    def init(
        cls,
        *,
        parameter_net: Callable,
        in_features: int,
        n_features: int,
        cond_dim: int,
        pyrox_name: str | None = None,
    ) -> "HyperFourierFeatures":
        """Builds the features from pyrox's arguments (`HyperFourierFeatures.init`).

        pyrox's `n_features` is `num_features`, and its parameter network lays
        the frequencies out as `(in_features, n_features)`:
        `HyperFourierFeatures.init(parameter_net=net, in_features=D,
        n_features=n, cond_dim=K)` is `HyperFourierFeatures(D, n, K, key=...,
        parameter_net=net, frequency_layout="inputs_by_features")`, so a network
        trained for pyrox gives the same features. `net` must map `(cond_dim,)`
        to `(D * n + n + 1,)`; it is not called here, so a wrong size surfaces
        at the first call. `pyrox_name` is refused unless it is None.

        Examples:
            >>> import equinox as eqx
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import HyperFourierFeatures
            >>> net = eqx.nn.MLP(2, 1 * 16 + 16 + 1, 32, 2, key=jax.random.key(0))
            >>> features = HyperFourierFeatures.init(
            ...     parameter_net=net, in_features=1, n_features=16, cond_dim=2
            ... )
            >>> features(jnp.ones((5, 1)), jnp.ones(2)).shape
            (5, 32)
        """
        refuse_scope_name("HyperFourierFeatures.init", pyrox_name)
        return cls(
            in_features,
            n_features,
            cond_dim,
            # Unused: the constructor draws only for its default network.
            key=jax.random.key(0),
            parameter_net=parameter_net,
            frequency_layout="inputs_by_features",
        )

    @property
    def parameter_size(self) -> int:
        """The parameter network's output size: `in * n + n + 1`."""
        return self.in_features * self.num_features + self.num_features + 1

    @property
    def out_features(self) -> int:
        """The output width, `2 * num_features`."""
        return 2 * self.num_features

    def fourier_parameters(
        self, z: ArrayLike
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The generated frequencies, phases and lengthscale for contexts `z`.

        Args:
            z: contexts of shape `(..., cond_dim)`.

        Returns:
            `(frequencies, phases, lengthscale)` of shapes
            `(..., num_features, in_features)`, `(..., num_features)` and `(...)`.
        """
        z = check_width("HyperFourierFeatures", "z", z, self.cond_dim, "cond_dim")
        flat = map_rows(self.parameter_net, z)
        if flat.shape != (*z.shape[:-1], self.parameter_size):
            raise ValueError(
                "HyperFourierFeatures: the parameter network should map a context "
                f"of shape ({self.cond_dim},) to ({self.parameter_size},) = "
                "in_features * num_features + num_features + 1 = "
                f"{self.in_features} * {self.num_features} + {self.num_features} "
                f"+ 1, got {flat.shape[z.ndim - 1 :]}. Give it that output size."
            )
        split = self.in_features * self.num_features
        if self.frequency_layout == "features_by_inputs":
            frequencies = flat[..., :split].reshape(
                *z.shape[:-1], self.num_features, self.in_features
            )
        else:
            frequencies = jnp.swapaxes(
                flat[..., :split].reshape(
                    *z.shape[:-1], self.in_features, self.num_features
                ),
                -1,
                -2,
            )
        phases = flat[..., split:-1]
        return frequencies, phases, jnp.exp(flat[..., -1])

    def __call__(self, x: ArrayLike, z: ArrayLike) -> jax.Array:
        """Features `(..., 2 * num_features)` of `x` `(..., in_features)` given `z`.

        Args:
            x: inputs of shape `(..., in_features)`.
            z: one context `(cond_dim,)` for all rows, or one per row,
                `(..., cond_dim)` with the leading shape of `x`.
        """
        x = check_width("HyperFourierFeatures", "x", x, self.in_features, "in_features")
        z, shared = check_context("HyperFourierFeatures", x, z, self.cond_dim)
        frequencies, phases, lengthscale = self.fourier_parameters(z)
        if shared:
            projected = x @ frequencies.T
        else:
            projected = jnp.einsum("...ni,...i->...n", frequencies, x)
        arguments = projected / lengthscale[..., None] + phases
        return _fourier_map(arguments, self.num_features)


class ConditionedRFFNet(eqx.Module):
    """`HyperFourierFeatures` followed by a trainable linear readout.

    $y(x; z) = \\phi(x; z) \\beta + c$: the conditional counterpart of
    `RandomKitchenSinks`, with the features generated from the context.

    Args:
        in_features: the input width.
        num_features: the number of frequencies ($2n$ features feed the readout).
        out_features: the output width.
        cond_dim: the context width.
        key: the key for the features' parameter network and the readout.
        **feature_options: passed to `HyperFourierFeatures` (`parameter_net`,
            `width`, `depth`, `lengthscale`, `init_scale`).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import ConditionedRFFNet
        >>> net = ConditionedRFFNet(1, 16, 2, cond_dim=4, key=jax.random.key(0))
        >>> net(jnp.zeros((10, 1)), jnp.zeros((10, 4))).shape
        (10, 2)
    """

    features: HyperFourierFeatures
    readout: eqx.nn.Linear

    def __init__(
        self,
        in_features: int,
        num_features: int,
        out_features: int,
        cond_dim: int,
        *,
        key: jax.Array,
        **feature_options: Any,
    ):
        feature_key, readout_key = jax.random.split(key)
        self.features = HyperFourierFeatures(
            in_features, num_features, cond_dim, key=feature_key, **feature_options
        )
        self.readout = eqx.nn.Linear(2 * num_features, out_features, key=readout_key)

    @property
    def in_features(self) -> int:
        """The input width."""
        return self.features.in_features

    @classmethod
    def init(
        cls,
        *,
        feat: HyperFourierFeatures,
        out_features: int,
        key: jax.Array,
        pyrox_name: str | None = None,
    ) -> "ConditionedRFFNet":
        """The net around given features, as pyrox's `ConditionedRFFNet.init` builds.

        pyrox passes the features as `feat`; they become `features` here, kept as
        they are, and the readout is `eqx.nn.Linear(2 * num_features,
        out_features, key=key)`, as in pyrox. `pyrox_name` is refused unless it
        is None.

        Examples:
            >>> import equinox as eqx
            >>> import jax
            >>> import jax.numpy as jnp
            >>> from flowrox.nn import ConditionedRFFNet, HyperFourierFeatures
            >>> key = jax.random.key(0)
            >>> net = eqx.nn.MLP(4, 1 * 32 + 32 + 1, 32, 2, key=key)
            >>> feat = HyperFourierFeatures.init(
            ...     parameter_net=net, in_features=1, n_features=32, cond_dim=4
            ... )
            >>> rff_net = ConditionedRFFNet.init(feat=feat, out_features=1, key=key)
            >>> y = rff_net(jnp.zeros((10, 1)), jnp.zeros(4))
            >>> bool(eqx.tree_equal(rff_net.features, feat)), y.shape
            (True, (10, 1))
        """
        refuse_scope_name("ConditionedRFFNet.init", pyrox_name)
        if not isinstance(feat, HyperFourierFeatures):
            raise TypeError(
                "ConditionedRFFNet.init: expected feat to be HyperFourierFeatures "
                f"(e.g. from HyperFourierFeatures.init), got {type(feat).__name__}."
            )
        readout = eqx.nn.Linear(2 * feat.num_features, out_features, key=key)
        # The structure only: the features and the readout replace its leaves.
        skeleton = eqx.filter_eval_shape(
            lambda: cls(
                feat.in_features,
                feat.num_features,
                out_features,
                feat.cond_dim,
                key=key,
                parameter_net=feat.parameter_net,
            )
        )
        return eqx.tree_at(lambda m: (m.features, m.readout), skeleton, (feat, readout))

    @property
    def cond_dim(self) -> int:
        """The context width."""
        return self.features.cond_dim

    @property
    def out_features(self) -> int:
        """The output width."""
        return self.readout.out_features

    def __call__(self, x: ArrayLike, z: ArrayLike) -> jax.Array:
        """`(..., in_features)` to `(..., out_features)`; `z` shared or per row."""
        return apply_linear(self.readout, self.features(x, z))
