import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test in float64; the global default stays float32."""
    with jax.enable_x64(True):
        yield
