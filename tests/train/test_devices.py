"""Data-parallel training loops on 2 forced CPU devices."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]


@pytest.mark.slow
def test_two_devices_give_the_one_device_results():
    # XLA_FLAGS must be set before jax starts, so the check runs in its own
    # process; it asserts internally and prints a last line on success.
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "train" / "_two_devices.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip().endswith("two devices agree with one")
