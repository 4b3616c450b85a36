"""Data-parallel training on a lattice target with 2 forced CPU devices."""

import pathlib

import pytest

from tests.helpers import run_on_two_devices


@pytest.mark.slow
def test_a_lattice_flow_trains_data_parallel_as_on_one_device():
    run_on_two_devices(pathlib.Path(__file__).parent / "_two_devices.py")
