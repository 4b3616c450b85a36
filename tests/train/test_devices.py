"""Data-parallel training loops on 2 forced CPU devices."""

import pathlib

import pytest

from tests.helpers import run_on_two_devices


@pytest.mark.slow
def test_two_devices_give_the_one_device_results():
    run_on_two_devices(pathlib.Path(__file__).parent / "_two_devices.py")
