import os

import jax
import pytest
from jaxlib.version import __version__ as jaxlib_version


def pytest_configure(config):
    # Both test runs are dominated by XLA compile time. XLA's older
    # loop-emitting CPU fusion backend compiles much faster here: the default
    # run took 3.5 min with it instead of 6, and a sample of the slow tests 16%
    # less time (the flag exists from jaxlib 0.8 on; XLA rejects unknown flags).
    # The default run (`-m 'not slow'`) also skips the backend's optimisations,
    # with numerics unchanged up to rounding; the slow tests train for thousands
    # of steps and keep them. XLA reads the flags when the backend starts, after
    # this hook. FLOWROX_TEST_FULL_XLA=1 keeps XLA's default pipeline.
    default_run = config.option.markexpr.replace(" ", "") == "notslow"
    full = os.environ.get("FLOWROX_TEST_FULL_XLA", "") not in ("", "0")
    flags = os.environ.get("XLA_FLAGS", "")
    if full or "xla_backend_optimization_level" in flags:
        return
    cheap = []
    if tuple(int(part) for part in jaxlib_version.split(".")[:2]) >= (0, 8):
        cheap.append("--xla_cpu_use_fusion_emitters=false")
    if default_run:
        cheap += [
            "--xla_backend_optimization_level=0",
            "--xla_llvm_disable_expensive_passes=true",
        ]
    os.environ["XLA_FLAGS"] = " ".join([flags, *cheap]).strip()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # The docstring examples compile a flow each (2 s to 15 s apiece, about a
    # minute and a half of the default run): they run with the slow tests.
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def x64():
    """Runs a test in float64; the global default stays float32."""
    with jax.enable_x64(True):
        yield
