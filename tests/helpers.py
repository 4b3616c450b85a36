"""Test-only bijections and checks shared by the test modules."""

import os
import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp

from flowrox.bijections import AbstractBijection


class ConditionalAffine(AbstractBijection):
    """y = x * exp(tanh(A c)) + B c: a small conditional bijection for the tests."""

    scale_weight: jax.Array
    shift_weight: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, key, dim: int, cond_dim: int):
        scale_key, shift_key = jax.random.split(key)
        self.scale_weight = 0.5 * jax.random.normal(scale_key, (dim, cond_dim))
        self.shift_weight = jax.random.normal(shift_key, (dim, cond_dim))
        self.shape = (dim,)
        self.cond_shape = (cond_dim,)

    def _parameters(self, condition):
        return jnp.tanh(self.scale_weight @ condition), self.shift_weight @ condition

    def transform_and_log_det(self, x, condition=None):
        log_scale, shift = self._parameters(condition)
        return x * jnp.exp(log_scale) + shift, jnp.sum(log_scale)

    def inverse_and_log_det(self, y, condition=None):
        log_scale, shift = self._parameters(condition)
        return (y - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale)


def autodiff_log_det(function, x):
    """log|det J| of `function` at `x`, from the dense autodiff Jacobian."""
    shape = x.shape

    def flat_function(flat):
        return function(flat.reshape(shape)).ravel()

    jacobian = jax.jacobian(flat_function)(x.ravel())
    # A singular Jacobian gives -inf, which no finite log-det matches.
    return jnp.linalg.slogdet(jacobian)[1]


class NetworkShift(AbstractBijection):
    """y = x + network(condition): a conditional bijection holding an MLP."""

    network: eqx.nn.MLP
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, key, dim: int, cond_dim: int, width: int = 4):
        self.network = eqx.nn.MLP(cond_dim, dim, width, depth=1, key=key)
        self.shape = (dim,)
        self.cond_shape = (cond_dim,)

    def transform_and_log_det(self, x, condition=None):
        return x + self.network(condition), jnp.zeros((), x.dtype)

    def inverse_and_log_det(self, y, condition=None):
        return y - self.network(condition), jnp.zeros((), y.dtype)


def random_normal(key, shape, scale=1.0):
    """Random real parameters or inputs for the registry factories."""
    return scale * jax.random.normal(key, shape)


def random_positive(key, shape, spread=0.5):
    """Random positive parameters for the registry factories."""
    return jnp.exp(spread * jax.random.normal(key, shape))


ROOT = pathlib.Path(__file__).parents[1]


def run_on_two_devices(script: pathlib.Path) -> None:
    """Runs `script` in its own process with 2 forced CPU devices.

    XLA_FLAGS must be set before jax starts, so a multi-device check runs in a
    process of its own; the script asserts internally and prints
    "two devices agree with one" as its last line on success.
    """
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    completed = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip().endswith("two devices agree with one")
