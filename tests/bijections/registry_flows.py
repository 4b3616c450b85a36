"""Registry entries for coupling, autoregressive and linear layers.

Same format as registry.py. Conditioner networks are built with
`zero_init=False`, so the layers are far from the identity.
"""

import jax
import jax.numpy as jnp

from flowrox.bijections import (
    Affine,
    BlockNeuralAutoregressive,
    Coupling,
    Householder,
    LULinear,
    MaskedAutoregressive,
    RationalQuadraticSpline,
    TriangularAffine,
)
from tests.helpers import random_normal as _normal


def _coupling_spline(key):
    net_key, x_key = jax.random.split(key)
    layer = Coupling(
        RationalQuadraticSpline(-3.0, 3.0, 4),
        mask="alternating",
        shape=(5,),
        key=net_key,
        hidden=8,
        depth=1,
        zero_init=False,
    )
    return layer, 1.5 * _normal(x_key, (5,)), None


def _coupling_checkerboard(key):
    net_key, x_key = jax.random.split(key)
    layer = Coupling(
        Affine(),
        mask="checkerboard",
        shape=(3, 4),
        key=net_key,
        hidden=8,
        depth=1,
        activation=jnp.tanh,
        zero_init=False,
    )
    return layer, _normal(x_key, (3, 4)), None


def _coupling_conditional(key):
    net_key, x_key, c_key = jax.random.split(key, 3)
    layer = Coupling(
        Affine(),
        mask="half",
        shape=(3,),
        cond_shape=(2,),
        key=net_key,
        hidden=8,
        depth=1,
        activation=jnp.tanh,
        zero_init=False,
    )
    return layer, _normal(x_key, (3,)), _normal(c_key, (2,))


def _coupling_flipped(key):
    # The transformed half leads the event: the other split order.
    net_key, x_key = jax.random.split(key)
    layer = Coupling(
        Affine(),
        mask="half",
        flip=True,
        shape=(5,),
        key=net_key,
        hidden=8,
        depth=1,
        activation=jnp.tanh,
        zero_init=False,
    )
    return layer, _normal(x_key, (5,)), None


def _maf_spline(key):
    net_key, x_key = jax.random.split(key)
    layer = MaskedAutoregressive(
        RationalQuadraticSpline(-3.0, 3.0, 4),
        shape=(4,),
        key=net_key,
        hidden=8,
        depth=1,
        zero_init=False,
    )
    return layer, 1.5 * _normal(x_key, (4,)), None


def _iaf_conditional(key):
    net_key, x_key, c_key = jax.random.split(key, 3)
    layer = MaskedAutoregressive(
        Affine(),
        shape=(4,),
        key=net_key,
        hidden=8,
        depth=2,
        cond_shape=(2,),
        order="random",
        one_pass="transform",
        activation=jnp.tanh,
        zero_init=False,
    )
    return layer, _normal(x_key, (4,)), _normal(c_key, (2,))


def _triangular_affine(key):
    keys = jax.random.split(key, 4)
    layer = TriangularAffine(
        3,
        loc=_normal(keys[0], (3,)),
        off_diagonal=_normal(keys[1], (3, 3)),
        log_diagonal=_normal(keys[2], (3,), 0.3),
        lower=False,
    )
    return layer, _normal(keys[3], (3,)), None


def _lu_linear(key):
    keys = jax.random.split(key, 5)
    layer = LULinear(
        3,
        permutation=jnp.array([2, 0, 1]),
        loc=_normal(keys[0], (3,)),
        lower=_normal(keys[1], (3, 3), 0.5),
        upper=_normal(keys[2], (3, 3), 0.5),
        log_diagonal=_normal(keys[3], (3,), 0.3),
    )
    return layer, _normal(keys[4], (3,)), None


def _householder(key):
    vector_key, x_key = jax.random.split(key)
    layer = Householder(3, vectors=_normal(vector_key, (4, 3)))
    return layer, _normal(x_key, (3,)), None


def _bnaf(key):
    net_key, x_key = jax.random.split(key)
    layer = BlockNeuralAutoregressive(4, key=net_key, hidden=3, depth=2)
    return layer, 1.5 * _normal(x_key, (4,)), None


def _bnaf_conditional(key):
    net_key, x_key, c_key = jax.random.split(key, 3)
    layer = BlockNeuralAutoregressive(3, key=net_key, hidden=2, cond_shape=(2,))
    return layer, _normal(x_key, (3,)), _normal(c_key, (2,))


FLOW_CASES = {
    "BlockNeuralAutoregressive": _bnaf,
    "BlockNeuralAutoregressive-conditional": _bnaf_conditional,
    "Coupling": _coupling_spline,
    "Coupling-checkerboard": _coupling_checkerboard,
    "Coupling-conditional": _coupling_conditional,
    "Coupling-flipped": _coupling_flipped,
    "MaskedAutoregressive": _maf_spline,
    "MaskedAutoregressive-forward-conditional": _iaf_conditional,
    "TriangularAffine": _triangular_affine,
    "LULinear": _lu_linear,
    "Householder": _householder,
}
