r"""`ConvVF`: a symmetric convolutional vector field with a one-pass divergence.

The field of a continuous flow on a lattice with $C$ channels,

$$v_c(t, \phi)(x) = b_c(t) + \sum_{\delta, r} K_{rc}(t, \delta)\, g_r(x + \delta),
\qquad g_r(x) = \sum_{c', k} S_{r, c'k}\, f_k(\phi_{c'}(x)),$$

is a periodic convolution (`ConvSym`, its kernel shared over the orbits of the
lattice's symmetry group) of a learned superposition $S$ of site-wise features
$f_k$ (`FourierFeatures`, `PolynomialFeatures`, ...), with a kernel $K(t)$
linear in a time embedding. The features of a site depend on that site only,
so the Jacobian's diagonal comes from the centre tap alone:

$$\nabla\cdot v = \sum_x \sum_{c, k} A_{ck, c}\, f_k'(\phi_c(x)), \qquad
A = S^\top K(t, 0),$$

the coupling of feature $(c, k)$ to the *same* channel $c$. (Summing $A_{ck,
c'}$ over every output channel $c'$ instead, as bijx does, is right only for
$C = 1$.)
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._numerics import as_float_array
from .._tree import buffer
from ..nn import AbstractTimeEmbedding, AbstractVectorField, FourierTimeEmbedding
from ._conv_sym import ConvSym, _check_symmetry, _kernel_shape, kernel_orbits
from ._features import AbstractSiteFeatures, FourierFeatures, PolynomialFeatures

#: The seed's default feature maps: 49 Fourier features and the field itself.
DEFAULT_FEATURES = (partial(FourierFeatures, 49), partial(PolynomialFeatures, (1,)))


def _orthogonal(key, shape):
    return jax.nn.initializers.orthogonal()(key, shape, jnp.result_type(float))


def _channel_shape(channel_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in channel_shape)
    except TypeError:
        raise ValueError(
            "ConvVF: channel_shape must be a tuple of ints: () for a scalar field "
            f"(no channel axis), (C,) for C channels; got {channel_shape!r}."
        ) from None
    if any(n < 1 for n in shape):
        raise ValueError(f"ConvVF: channel sizes must be >= 1; got {shape}.")
    return shape


def _optional_size(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"ConvVF: {name} must be a positive int or None (no reduction); got "
            f"{value!r}."
        )
    return value


class ConvVF(AbstractVectorField):
    r"""A D4-symmetric convolutional vector field with an exact one-pass divergence.

    On a field $\phi$ with $C$ channels,

    $$v_c(t, \phi)(x) = b_c(t) + \sum_{\delta, r} K_{rc}(t, \delta)\,
    g_r(x + \delta), \qquad g_r(x) = \sum_{c', k} S_{r, c'k}\,
    f_k(\phi_{c'}(x)):$$

    site-wise features $f_k$ (`FourierFeatures`, `PolynomialFeatures`, ...),
    a learned superposition $S$ of them, and a periodic `ConvSym` convolution
    whose kernel is shared over the orbits of the lattice's symmetry group.
    The features of a site depend on that site only, so `divergence` is
    exact in one site-wise pass,
    $\nabla\cdot v = \sum_x \sum_{c,k} A_{ck,c}\, f_k'(\phi_c(x))$ with
    $A = S^\top K(t, 0)$ (the centre tap's coupling of feature $(c, k)$ to the
    same channel $c$), for any number of channels. Build it with
    `ConvVF.build` and integrate it with `flowrox.bijections.ContinuousFlow(
    field, shape=field.shape, divergence="field")`.

    The kernel $K(t) = W e(t)$ and the bias $b(t) = B e(t)$ are linear in the
    (optionally reduced) time embedding $e(t)$, and $W$ and $B$ start at zero,
    so a new field is zero and its flow is exactly the identity. With a
    condition (`cond_shape`, e.g. the coupling $\lambda$), $e$ is the outer
    product of the time embedding with an embedding of the condition: the
    kernel is then a function of $(t, \lambda)$ and one flow serves a range
    of couplings.

    Symmetries: with `symmetry="hyperoctahedral"` and an odd kernel the field
    commutes with the lattice's translations, rotations and reflections; with
    odd features and no bias it also commutes with $\phi \to -\phi$
    (`z2_equivariant`). So then does the flow.

    The field is local, so it acts on any lattice at least as large as its
    kernel: `lattice_shape` (needed by `ContinuousFlow`) can be set at build
    time or later with `with_lattice`, e.g. to reuse a field trained on a
    small lattice on a larger one.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.bijections import ContinuousFlow
        >>> from flowrox.lattice import ConvVF
        >>> field = ConvVF.build((3, 3), key=jax.random.key(0), lattice_shape=(6, 6))
        >>> phi = jax.random.normal(jax.random.key(1), (6, 6))
        >>> velocity, divergence = field.velocity_and_divergence(0.5, phi)
        >>> velocity.shape, float(divergence)  # a new field is zero
        ((6, 6), 0.0)
        >>> flow = ContinuousFlow(field, shape=field.shape, divergence="field")
        >>> bool(jnp.all(flow.transform(phi) == phi))
        True
    """

    features: tuple[AbstractSiteFeatures, ...]
    feature_weight: jax.Array | None
    time_embedding: AbstractTimeEmbedding
    time_weight: jax.Array | None
    condition_embedding: AbstractTimeEmbedding | None
    kernel_weight: jax.Array
    bias_weight: jax.Array | None
    conv: ConvSym = buffer()
    lattice_shape: tuple[int, ...] | None = eqx.field(static=True)
    channel_shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        *,
        features: Sequence[AbstractSiteFeatures],
        feature_weight: jax.Array | None,
        time_embedding: AbstractTimeEmbedding,
        time_weight: jax.Array | None,
        conv: ConvSym,
        kernel_weight: jax.Array,
        bias_weight: jax.Array | None = None,
        channel_shape: Sequence[int] = (),
        lattice_shape: Sequence[int] | None = None,
        cond_shape: Sequence[int] | None = None,
        condition_embedding: AbstractTimeEmbedding | None = None,
    ):
        self.features = tuple(features)
        self.feature_weight = feature_weight
        self.time_embedding = time_embedding
        self.time_weight = time_weight
        self.condition_embedding = condition_embedding
        self.conv = conv
        self.kernel_weight = kernel_weight
        self.bias_weight = bias_weight
        self.channel_shape = _channel_shape(channel_shape)
        self.lattice_shape = (
            None if lattice_shape is None else tuple(int(n) for n in lattice_shape)
        )
        self.cond_shape = None if cond_shape is None else tuple(cond_shape)

    def __check_init__(self):
        channels = math.prod(self.channel_shape)
        if not self.features or not all(
            isinstance(f, AbstractSiteFeatures) for f in self.features
        ):
            raise TypeError(
                "ConvVF: features must be a non-empty sequence of site-wise feature "
                "maps (FourierFeatures, PolynomialFeatures, ...); got "
                f"{[type(f).__name__ for f in self.features]}."
            )
        wrong = [
            f.input_channels for f in self.features if f.input_channels != channels
        ]
        if wrong:
            raise ValueError(
                f"ConvVF: the field has {channels} channel(s) (channel_shape="
                f"{self.channel_shape}) but feature maps were built for "
                f"{wrong}; build them with input_channels={channels}."
            )
        conv = self.conv
        if (conv.in_channels, conv.out_channels) != (
            conv.n_orbits * channels,
            channels,
        ):
            raise ValueError(
                f"ConvVF: conv must convolve the {conv.n_orbits} orbit maps of each of "
                f"the {channels} channel(s): ConvSym({conv.n_orbits * channels}, "
                f"{channels}, {conv.kernel_shape}, ...); got ConvSym("
                f"{conv.in_channels}, {conv.out_channels}, ...). ConvVF.build "
                "makes it."
            )
        shape = self.kernel_weight.shape
        if len(shape) != 4 or shape[0] != conv.n_orbits or shape[2] != channels:
            raise ValueError(
                "ConvVF: kernel_weight must have shape (n_orbits, features read, "
                f"channels, embedding) = ({conv.n_orbits}, R, {channels}, E); got "
                f"{self.kernel_weight.shape}."
            )
        if self.lattice_shape is not None:
            _check_lattice(self.lattice_shape, self.conv.kernel_shape)

    # -- shapes ------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """The event shape, `lattice_shape + channel_shape`."""
        if self.lattice_shape is None:
            raise ValueError(
                "ConvVF: this field was built without a lattice shape, which a "
                "ContinuousFlow needs. Give it one: field.with_lattice((8, 8)), or "
                "ConvVF.build(..., lattice_shape=(8, 8))."
            )
        return self.lattice_shape + self.channel_shape

    @property
    def channels(self) -> int:
        """$C$, the number of channels (1 for a scalar field)."""
        return math.prod(self.channel_shape)

    @property
    def n_features(self) -> int:
        """The number of features per channel, over all feature maps."""
        return sum(f.count for f in self.features)

    @property
    def z2_equivariant(self) -> bool:
        r"""Whether $v(t, -\phi) = -v(t, \phi)$: odd features and no bias."""
        return self.bias_weight is None and all(f.odd for f in self.features)

    def with_lattice(self, lattice_shape: Sequence[int]) -> "ConvVF":
        """The same field on a lattice of `lattice_shape` (same parameters).

        Args:
            lattice_shape: the lattice, at least as large as the kernel.

        Returns:
            A copy of the field whose `shape` is `lattice_shape + channel_shape`.
        """
        lattice_shape = tuple(int(n) for n in lattice_shape)
        _check_lattice(lattice_shape, self.conv.kernel_shape)
        return dataclasses.replace(self, lattice_shape=lattice_shape)

    # -- the field -----------------------------------------------------------------

    def _embedding(self, t, condition) -> jax.Array:
        e = self.time_embedding(t)
        if self.time_weight is not None:
            e = (self.time_weight.astype(e.dtype) / self.time_weight.shape[1]) @ e
        if self.cond_shape is None:
            return e
        condition = as_float_array(condition)
        if self.condition_embedding is None:
            c = jnp.concatenate(
                [jnp.ones(1, e.dtype), condition.ravel().astype(e.dtype)]
            )
        else:
            c = self.condition_embedding(condition.reshape(()))
        return jnp.outer(e, c.astype(e.dtype)).ravel()

    def _superposition(self, dtype) -> jax.Array | None:
        if self.feature_weight is None:
            return None
        return self.feature_weight.astype(dtype) / self.feature_weight.shape[1]

    def _site_features(self, phi, derivative: bool):
        """Each feature map's features `(*lattice, C, K_m)` and, if asked, their
        derivatives (kept apart: concatenating them would copy them)."""
        x = phi.reshape(*phi.shape[: phi.ndim - len(self.channel_shape)], self.channels)
        if derivative:
            pairs = [f.value_and_derivative(x) for f in self.features]
            return [v for v, _ in pairs], [d for _, d in pairs]
        return [f(x) for f in self.features], None

    def _blocks(self, array: jax.Array) -> list[jax.Array]:
        """`array`, of leading axes `(C, K)`, split along `K` by feature map."""
        ends = np.cumsum([f.count for f in self.features])[:-1]
        return jnp.split(array, ends, axis=1)

    def _mixing(self, embedding) -> jax.Array:
        """$M_{foc} = \\sum_r S_{rf} K_{orc}(t)$, from feature $f$ to orbit $o$ and
        channel $c$."""
        kernel = self.kernel_weight.astype(embedding.dtype) @ embedding
        superposition = self._superposition(embedding.dtype)
        if superposition is None:
            return jnp.swapaxes(kernel, 0, 1)
        return jnp.einsum("rf,orc->foc", superposition, kernel)

    def _velocity(self, phi, values, embedding):
        # The convolution of S f with K(t), contracted first and convolved
        # after: h_o = f M_o at every site (one small matmul), then v(x) = sum
        # over taps delta of h_{orbit(delta)}(x + delta), which is `conv`
        # (ConvSym over the orbit maps h) with the kernel that sends orbit o's
        # map to the taps of orbit o. A convolution over the few orbit maps,
        # instead of one over all the superposed features.
        mixing = self._mixing(embedding)
        channels = self.channels
        blocks = self._blocks(
            mixing.reshape(channels, self.n_features, *mixing.shape[1:])
        )
        contracted = sum(
            jnp.einsum("...ck,ckoz->...oz", value, block)
            for value, block in zip(values, blocks, strict=True)
        )
        lattice = contracted.shape[:-2]
        selector = np.einsum(
            "po,cz->pocz", np.eye(self.conv.n_orbits), np.eye(channels)
        ).reshape(self.conv.n_orbits, -1, channels)
        velocity = self.conv(
            contracted.reshape(*lattice, -1), jnp.asarray(selector, phi.dtype)
        )
        if self.bias_weight is not None:
            velocity = velocity + self.bias_weight.astype(phi.dtype) @ embedding
        return velocity.reshape(phi.shape)

    def _divergence(self, phi, slopes, embedding):
        # Feature (c, k) feeds channel c' through the centre tap's
        # M[(c, k), centre, c']; the divergence wants the same channel, c' = c.
        centre = self._mixing(embedding)[:, self.conv.center_orbit, :]
        channels = self.channels
        same_channel = jnp.einsum(
            "ckc->ck", centre.reshape(channels, self.n_features, channels)
        )
        blocks = self._blocks(same_channel.astype(phi.dtype))
        return sum(
            jnp.sum(slope * block) for slope, block in zip(slopes, blocks, strict=True)
        )

    def kernel(self, t: ArrayLike, condition: ArrayLike | None = None) -> jax.Array:
        """The orbit kernel $K(t)$ at time `t`, shape `(n_orbits, R, C)`: the
        field is `ConvSym(R, C, kernel_shape)` with this kernel applied to the
        $R$ superposed features.

        Args:
            t: the time.
            condition: the condition, for a conditional field.
        """
        embedding = self._event_embedding("kernel", t, condition)
        return self.kernel_weight.astype(embedding.dtype) @ embedding

    def _event(self, owner: str, t, phi, condition):
        phi = as_float_array(phi)
        ndim = len(self.conv.kernel_shape) + len(self.channel_shape)
        if self.lattice_shape is not None:
            good = phi.shape == self.shape
        else:
            good = phi.ndim == ndim and phi.shape[ndim - len(self.channel_shape) :] == (
                self.channel_shape
            )
        if not good:
            expected = (
                self.shape
                if self.lattice_shape is not None
                else f"(*lattice, *{self.channel_shape}) with "
                f"{len(self.conv.kernel_shape)} lattice axes"
            )
            raise ValueError(
                f"ConvVF.{owner}: expected one field of shape {expected}, got "
                f"{phi.shape}. For a batch use velocity_and_divergence, or "
                "jax.vmap."
            )
        return phi, self._event_embedding(owner, t, condition).astype(phi.dtype)

    def _event_embedding(self, owner: str, t, condition) -> jax.Array:
        if (condition is None) != (self.cond_shape is None):
            raise ValueError(
                f"ConvVF.{owner}: the field has cond_shape={self.cond_shape}, so it "
                + (
                    "takes no condition; drop it."
                    if self.cond_shape is None
                    else f"needs a condition of shape {self.cond_shape}."
                )
            )
        if condition is not None and jnp.shape(condition) != self.cond_shape:
            raise ValueError(
                f"ConvVF.{owner}: expected a condition of shape {self.cond_shape}, "
                f"got {jnp.shape(condition)}."
            )
        return self._embedding(t, condition)

    def __call__(self, t, x, condition=None):
        phi, embedding = self._event("__call__", t, x, condition)
        values, _ = self._site_features(phi, derivative=False)
        return self._velocity(phi, values, embedding)

    def divergence(self, t, x, condition=None):
        phi, embedding = self._event("divergence", t, x, condition)
        _, slopes = self._site_features(phi, derivative=True)
        return self._divergence(phi, slopes, embedding)

    def velocity_and_divergence(
        self, t: ArrayLike, phi: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[jax.Array, jax.Array]:
        r"""The velocity and its exact divergence, sharing one feature pass.

        Accepts leading batch axes: `phi` of shape `(*batch, *lattice,
        *channel_shape)` gives a velocity of that shape and a divergence of
        shape `batch`. (bijx's `ConvVF` returns the same velocity with
        $-\nabla\cdot v$, the rate of change of the log-density, second.)

        Args:
            t: the time, a scalar.
            phi: one field or a batch of fields.
            condition: the condition, of shape `cond_shape` (shared by the
                batch) or `(*batch, *cond_shape)`; `None` if unconditional.

        Returns:
            `(velocity, divergence)`.
        """
        phi = as_float_array(phi)
        ndim = len(self.conv.kernel_shape) + len(self.channel_shape)
        if phi.ndim < ndim:
            raise ValueError(
                f"ConvVF.velocity_and_divergence: expected fields with "
                f"{len(self.conv.kernel_shape)} lattice axes and channel_shape "
                f"{self.channel_shape}, got shape {phi.shape}."
            )
        batch = phi.shape[: phi.ndim - ndim]

        def one(event, condition):
            event, embedding = self._event(
                "velocity_and_divergence", t, event, condition
            )
            values, slopes = self._site_features(event, derivative=True)
            return (
                self._velocity(event, values, embedding),
                self._divergence(event, slopes, embedding),
            )

        if not batch:
            return one(phi, condition)
        events = phi.reshape(-1, *phi.shape[len(batch) :])
        if condition is None:
            velocity, divergence = jax.vmap(lambda e: one(e, None))(events)
        else:
            condition = jnp.broadcast_to(
                as_float_array(condition), batch + self.cond_shape
            ).reshape(-1, *self.cond_shape)
            velocity, divergence = jax.vmap(one)(events, condition)
        return velocity.reshape(phi.shape), divergence.reshape(batch)

    # -- construction --------------------------------------------------------------

    @classmethod
    def build(
        cls,
        kernel_shape: Sequence[int],
        channel_shape: Sequence[int] = (),
        *,
        symmetry: str = "hyperoctahedral",
        use_bias: bool = False,
        time_kernel: AbstractTimeEmbedding = FourierTimeEmbedding(10),  # noqa: B008
        time_kernel_reduced: int | None = 20,
        features: Sequence[Callable[..., AbstractSiteFeatures]] = DEFAULT_FEATURES,
        features_reduced: int | None = 20,
        key: jax.Array,
        lattice_shape: Sequence[int] | None = None,
        cond_shape: Sequence[int] | None = None,
        condition_embedding: AbstractTimeEmbedding | None = None,
    ) -> "ConvVF":
        r"""Builds a `ConvVF` with bijx's default architecture.

        The defaults are bijx's: a D4-symmetric kernel, no bias, 21 Fourier
        time features reduced to 20 learned combinations, 49 Fourier features
        of the field and the field itself, reduced to 20 combinations. The
        reductions are orthogonal matrices at first, applied divided by their
        input size (as bijx does); the kernel and bias start at zero.

        Args:
            kernel_shape: the kernel's size along each lattice axis, e.g.
                `(3, 3)`; its length is the lattice dimension.
            channel_shape: `()` for a scalar field, `(C,)` for $C$ channels
                (the field then has a trailing channel axis).
            symmetry: `"hyperoctahedral"` (D4 in 2-D) or `"translation"`.
            use_bias: add a time-dependent bias per channel (breaks
                $\phi \to -\phi$).
            time_kernel: the time embedding (default `FourierTimeEmbedding(10)`,
                21 features, bijx's `KernelFourier(21)`).
            time_kernel_reduced: the number of learned combinations of the
                time features, or `None` to use them as they are.
            features: factories of feature maps, each called as
                `factory(C, key=key)`, e.g. `partial(FourierFeatures, 49)`.
            features_reduced: the number of learned combinations of the
                features that the convolution reads, or `None` for all of them.
            key: the random key.
            lattice_shape: the lattice (optional here; see `with_lattice`).
            cond_shape: the shape of a condition (e.g. `()` for a coupling
                $\lambda$), or `None` for an unconditional field.
            condition_embedding: for a scalar condition, an embedding of it
                (any `flowrox.nn` time embedding on the condition's range,
                e.g. `GaussianTimeEmbedding(8, t0=lam_min, t1=lam_max)`);
                default: the kernel is affine in the condition, features
                $(1, c_1, \dots)$.

        Returns:
            The field, zero until trained.

        Examples:
            >>> from functools import partial
            >>> import jax
            >>> from flowrox.lattice import ConvVF, FourierFeatures, PolynomialFeatures
            >>> field = ConvVF.build(
            ...     kernel_shape=(3, 3),
            ...     channel_shape=(),
            ...     features=(
            ...         partial(FourierFeatures, 49),
            ...         partial(PolynomialFeatures, (1,)),
            ...     ),
            ...     key=jax.random.key(0),
            ... )
            >>> field.kernel_weight.shape  # orbits, reduced features, channels, time
            (3, 20, 1, 20)
        """
        kernel_shape = _kernel_shape("ConvVF.build", kernel_shape)
        symmetry = _check_symmetry("ConvVF.build", symmetry)
        channel_shape = _channel_shape(channel_shape)
        channels = math.prod(channel_shape)
        time_kernel_reduced = _optional_size("time_kernel_reduced", time_kernel_reduced)
        features_reduced = _optional_size("features_reduced", features_reduced)
        if not isinstance(time_kernel, AbstractTimeEmbedding):
            raise TypeError(
                "ConvVF.build: time_kernel must be a flowrox.nn time embedding (e.g. "
                f"FourierTimeEmbedding(10)); got {type(time_kernel).__name__}."
            )
        features = tuple(features)
        if not features:
            raise ValueError(
                "ConvVF.build: features must name at least one feature map, e.g. "
                "(partial(FourierFeatures, 49), partial(PolynomialFeatures, (1,)))."
            )
        if cond_shape is not None:
            cond_shape = tuple(int(n) for n in cond_shape)
        if condition_embedding is not None:
            if cond_shape is None or math.prod(cond_shape) != 1:
                raise ValueError(
                    "ConvVF.build: condition_embedding embeds a scalar condition, so "
                    f"cond_shape must be () or (1,); got cond_shape={cond_shape}."
                )
            if not isinstance(condition_embedding, AbstractTimeEmbedding):
                raise TypeError(
                    "ConvVF.build: condition_embedding must be a flowrox.nn time "
                    "embedding over the condition's range (e.g. "
                    "GaussianTimeEmbedding(8, t0=lam_min, t1=lam_max)); got "
                    f"{type(condition_embedding).__name__}."
                )
        keys = iter(jax.random.split(key, len(features) + 2))
        maps = []
        for factory in features:
            feature_map = factory(channels, key=next(keys))
            if not isinstance(feature_map, AbstractSiteFeatures):
                raise TypeError(
                    "ConvVF.build: every entry of features must build a site-wise "
                    "feature map when called as factory(channels, key=key), e.g. "
                    f"partial(FourierFeatures, 49); got {type(feature_map).__name__}."
                )
            maps.append(feature_map)
        n_features = channels * sum(f.count for f in maps)
        feature_key, time_key = next(keys), next(keys)
        feature_weight = None
        conv_in = n_features
        if features_reduced is not None:
            feature_weight = _orthogonal(feature_key, (features_reduced, n_features))
            conv_in = features_reduced
        time_weight = None
        embedding_size = time_kernel.size
        if time_kernel_reduced is not None:
            time_weight = _orthogonal(time_key, (time_kernel_reduced, time_kernel.size))
            embedding_size = time_kernel_reduced
        if cond_shape is not None:
            embedding_size *= (
                1 + math.prod(cond_shape)
                if condition_embedding is None
                else condition_embedding.size
            )
        n_orbits = int(kernel_orbits(kernel_shape, symmetry).max()) + 1
        # The convolution runs over the orbit maps h_o (see _velocity); the
        # layer's own weight is never used.
        conv = ConvSym(
            n_orbits * channels,
            channels,
            kernel_shape,
            symmetry=symmetry,
            use_bias=False,
            zero_init=True,
            key=key,
        )
        return cls(
            features=maps,
            feature_weight=feature_weight,
            time_embedding=time_kernel,
            time_weight=time_weight,
            conv=conv,
            kernel_weight=jnp.zeros((conv.n_orbits, conv_in, channels, embedding_size)),
            bias_weight=jnp.zeros((channels, embedding_size)) if use_bias else None,
            channel_shape=channel_shape,
            lattice_shape=lattice_shape,
            cond_shape=cond_shape,
            condition_embedding=condition_embedding,
        )


def _check_lattice(lattice_shape, kernel_shape) -> None:
    if len(lattice_shape) != len(kernel_shape) or any(
        n < k for n, k in zip(lattice_shape, kernel_shape, strict=True)
    ):
        raise ValueError(
            f"ConvVF: the lattice {tuple(lattice_shape)} must have one axis per "
            f"kernel axis, each at least as large as the kernel {kernel_shape}."
        )
