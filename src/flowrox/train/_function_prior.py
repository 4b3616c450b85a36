r"""A conditional neural field trained as a prior over functions.

A decoder $f(x, z)$ (a `HyperSIREN`, a `ConditionedINR`, any conditional field)
and the standard normal $z \sim \mathcal N(0, I)$ define a prior over functions.
`fit_function_prior` trains the decoder on a family of functions as a
variational auto-encoder: with an encoder $q(z \mid y_n)$ for each function's
values, it maximises the evidence lower bound of the generative model

$$z_n \sim \mathcal N(0, I), \qquad
y_{n} \mid z_n \sim \mathcal N\big(f(x, z_n), \sigma^2 I\big),$$

so the latent codes of the training functions are spread as the prior says, and
every draw of $z$ decodes to a member of the family. The trained decoder then
serves in a NumPyro model, `z ~ N(0, I); y ~ N(decoder(x, z), noise)`, where
NUTS or SVI infers $z$ for a new function from a few points.
"""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from jax.typing import ArrayLike

from ._core import compile_step, default_optimizer, run_steps, trainable_filter

__all__ = ["FunctionPrior", "fit_function_prior", "function_prior_loss"]


class FunctionPrior(NamedTuple):
    """What `fit_function_prior` returns.

    - `decoder`: the trained conditional field $f(x, z)$; with
      $z \\sim \\mathcal N(0, I)$ it is the prior over functions.
    - `encoder`: the trained encoder, mapping one function's flattened values
      `(n_points * out_features,)` to the location and log scale of
      $q(z \\mid y)$, concatenated.
    - `losses`: the negative ELBO per function (nats) at every step, one-sample
      estimates on the step's minibatch.
    """

    decoder: Callable
    encoder: Callable
    losses: jax.Array

    def encode(self, y: ArrayLike) -> dist.Distribution:
        """The encoder's approximate posterior $q(z \\mid y)$ for the values `y`.

        Args:
            y: one function's values on the training inputs,
                `(n_points, out_features)`, or a batch `(n, n_points, out_features)`.

        Returns:
            A diagonal Normal over `z` with event shape `(cond_dim,)` (batch
            shape `(n,)` for a batch).
        """
        y = jnp.asarray(y)
        flat = y.reshape(*y.shape[:-2], -1)
        loc, log_scale = _split(_map_encoder(self.encoder, flat))
        return dist.Normal(loc, jnp.exp(log_scale)).to_event(1)


def _split(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    half = out.shape[-1] // 2
    return out[..., :half], out[..., half:]


def _map_encoder(encoder: Callable, flat: jax.Array) -> jax.Array:
    if flat.ndim == 1:
        return encoder(flat)
    return jax.vmap(encoder)(flat)


def function_prior_loss(
    decoder: Callable,
    encoder: Callable,
    x: ArrayLike,
    y: ArrayLike,
    noise: float,
    key: jax.Array,
) -> jax.Array:
    r"""The negative ELBO per function, a one-sample reparameterised estimate.

    For each function $n$ of the batch, with $(\mu_n, \log s_n)$ = encoder($y_n$)
    and $z_n = \mu_n + s_n \epsilon_n$, $\epsilon_n \sim \mathcal N(0, I)$:

    $$-\log \mathcal N\big(y_n; f(x, z_n), \sigma^2 I\big)
    + \mathrm{KL}\big(\mathcal N(\mu_n, s_n^2) \,\|\, \mathcal N(0, I)\big),$$

    averaged over the batch (the Gaussian normaliser included, so it is the
    negative ELBO in nats).

    Args:
        decoder: the field, `decoder(x, z)` with `x` `(n_points, in_features)`
            and `z` `(cond_dim,)` giving `(n_points, out_features)`.
        encoder: maps `(n_points * out_features,)` to `(2 * cond_dim,)`.
        x: the shared inputs, `(n_points, in_features)`.
        y: the values, `(batch, n_points, out_features)`.
        noise: $\sigma$.
        key: the key for $\epsilon$.

    Returns:
        The mean negative ELBO over the batch, a scalar.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.train import function_prior_loss
        >>> def decoder(x, z):
        ...     return x * z
        >>> def encoder(y):  # q(z | y) = N(0, 1): no KL, and z drops out at x = 0
        ...     return jnp.zeros(2)
        >>> x, y = jnp.zeros((5, 1)), jnp.zeros((3, 5, 1))
        >>> loss = function_prior_loss(decoder, encoder, x, y, 1.0, jax.random.key(0))
        >>> round(float(loss), 4)  # 5 points of -log N(0; 0, 1) = log(2 pi) / 2
        4.5947
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    batch = y.shape[0]
    loc, log_scale = _split(jax.vmap(encoder)(y.reshape(batch, -1)))
    scale = jnp.exp(log_scale)
    z = loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
    fitted = jax.vmap(decoder, in_axes=(None, 0))(x, z)
    log_likelihood = dist.Normal(fitted, noise).log_prob(y).sum((-2, -1))
    kl = 0.5 * jnp.sum(loc**2 + scale**2 - 1.0 - 2.0 * log_scale, axis=-1)
    return jnp.mean(kl - log_likelihood)


def _check_data(decoder, x, y) -> tuple[jax.Array, jax.Array, int]:
    owner = "fit_function_prior"
    try:
        cond_dim = int(decoder.cond_dim)
    except AttributeError:
        raise TypeError(
            f"{owner}: expected a conditional field with a cond_dim (HyperSIREN, "
            f"ConditionedINR, ConditionedRFFNet, ...), got {type(decoder).__name__}. "
            "Its latent z has cond_dim entries."
        ) from None
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2:
        raise ValueError(
            f"{owner}: expected x of shape (n_points, in_features), shared by every "
            f"function, got {x.shape}."
        )
    if y.ndim != 3 or y.shape[1] != x.shape[0]:
        raise ValueError(
            f"{owner}: expected y of shape (n_functions, {x.shape[0]}, out_features) "
            f"(one row per point of x, whose shape is {x.shape}), got {y.shape}."
        )
    return x, y, cond_dim


def fit_function_prior(
    key: jax.Array,
    decoder: Callable,
    x: ArrayLike,
    y: ArrayLike,
    *,
    noise: float,
    steps: int = 2000,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    optimizer: optax.GradientTransformation | None = None,
    encoder: Callable | None = None,
    encoder_width: int = 64,
    progress: bool = False,
) -> FunctionPrior:
    r"""Trains a conditional field as the decoder of a prior over functions.

    Maximises the ELBO of $z_n \sim \mathcal N(0, I)$,
    $y_n \sim \mathcal N(f(x, z_n), \sigma^2 I)$ (see `function_prior_loss`)
    over the decoder $f$ and an encoder $q(z \mid y_n)$, on minibatches of
    `batch_size` functions drawn at random each step. One step is compiled
    once and reused; only trainable leaves change (see `trainable_filter`:
    buffers stay as they are). The KL term pulls the codes of the training functions
    towards $\mathcal N(0, I)$, so that draws from the prior decode to members
    of the family. Give many functions: the encoder and decoder generalise to
    functions never seen only as far as the training functions cover the
    family.

    Args:
        key: the random key (encoder, minibatches, reparameterisation).
        decoder: the field to train, `decoder(x, z)` with `x`
            `(n_points, in_features)` and `z` `(cond_dim,)`; it must have a
            `cond_dim` (the latent width), as `HyperSIREN` and `ConditionedINR`.
        x: the inputs, `(n_points, in_features)`, the same for every function.
        y: the values of the family's functions at `x`,
            `(n_functions, n_points, out_features)`.
        noise: $\sigma$, the decoder's resolution: functions closer than this
            are not told apart.
        steps: the number of optimizer steps.
        batch_size: functions per step.
        learning_rate: the peak learning rate of the default optimizer
            (`default_optimizer(learning_rate, steps=steps)`: Adam with gradient
            clipping, a linear warm-up over the first tenth of the steps, then
            cosine decay).
        optimizer: an optax optimizer instead of the default.
        encoder: a module mapping `(n_points * out_features,)` to
            `(2 * cond_dim,)` (location, then log scale); default: an MLP with
            two tanh hidden layers of width `encoder_width`.
        encoder_width: the default encoder's width.
        progress: show a tqdm progress bar with the current loss.

    Returns:
        A `FunctionPrior` with the trained decoder and encoder and the losses.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from flowrox.nn import SIREN, ConditionedINR
        >>> from flowrox.train import fit_function_prior
        >>> x = jnp.linspace(-1.0, 1.0, 16)[:, None]
        >>> slopes = jax.random.normal(jax.random.key(0), (64, 1, 1))
        >>> decoder = ConditionedINR(
        ...     SIREN(1, 8, 1, 1, key=jax.random.key(1), first_omega=1.0),
        ...     cond_dim=1,
        ...     key=jax.random.key(2),
        ...     mode="input",
        ... )
        >>> prior = fit_function_prior(
        ...     jax.random.key(3), decoder, x, slopes * x, noise=0.1, steps=100
        ... )
        >>> bool(prior.losses[-10:].mean() < prior.losses[:10].mean())
        True
    """
    x, y, cond_dim = _check_data(decoder, x, y)
    n_functions = y.shape[0]
    encoder_key, key = jax.random.split(key)
    if encoder is None:
        encoder = eqx.nn.MLP(
            y.shape[1] * y.shape[2],
            2 * cond_dim,
            encoder_width,
            2,
            activation=jnp.tanh,
            key=encoder_key,
        )
    if optimizer is None:
        optimizer = default_optimizer(learning_rate, steps=steps)
    modules = (decoder, encoder)
    parameters, static = eqx.partition(modules, trainable_filter(modules))

    def loss(parameters, static, batch):
        x, y, key = batch
        batch_key, noise_key = jax.random.split(key)
        rows = jax.random.randint(batch_key, (batch_size,), 0, n_functions)
        decoder, encoder = eqx.combine(parameters, static)
        return function_prior_loss(decoder, encoder, x, y[rows], noise, noise_key)

    parameters, _, losses = run_steps(
        compile_step(loss, static, optimizer),
        parameters,
        optimizer.init(parameters),
        # The family enters the compiled step as an argument, not a constant.
        ((x, y, step_key) for step_key in jax.random.split(key, steps)),
        owner="fit_function_prior",
        inputs="y",
        remedy="A larger noise= also steadies the fit.",
        progress=progress,
        total=steps,
    )
    decoder, encoder = eqx.combine(parameters, static)
    return FunctionPrior(decoder, encoder, jnp.asarray(losses))
