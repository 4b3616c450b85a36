"""The command line and the demo tour."""

import subprocess
import sys

import pytest

from flowrox._cli import main
from flowrox._demo import run_demo


def test_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "flowrox", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in result.stdout


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_matches_the_exact_answers(capsys):
    results = run_demo(num_samples=1000, seed=1)
    output = capsys.readouterr().out
    assert "posterior" in output and "exact mean" in output
    assert results["density_error"] < 1e-4
    assert results["divergences"] == 0
    assert max(results["posterior_mean_errors_in_se"]) < 4.0
    assert max(results["regression_errors_in_se"]) < 4.0
    assert "linear/weight" in output
    neutra = results["neutra"]
    assert neutra["kl"] < 1.0
    assert neutra["NeuTra NUTS"]["ess_y"] > neutra["plain NUTS"]["ess_y"]
    assert results["nif_coverage"] >= 0.9
