"""The command line and the demo tour."""

import re
import struct
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from flowrox._cli import build_parser, main
from flowrox._demo import (
    STEPS,
    MatplotlibMissingError,
    Verdict,
    run_demo,
    save_samples_figure,
)

# What numbers printed straight from jax or numpy look like: reprs, and the
# comma-free brackets of an array's str.
NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?"
ARRAY_REPR = re.compile(
    rf"[Aa]rray\(|dtype=|np\.\w+\(|\[\s*{NUMBER}(\s+{NUMBER})+\s*\]"
)
VERDICT = re.compile(r"^   - .+: (good \(.+\)|missed the target \(.+\); .+)$")


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "flowrox", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in result.stdout
    for step in STEPS:
        assert f". {step.name} " in result.stdout


def test_demo_help_lists_every_step(capsys):
    with pytest.raises(SystemExit, match="0"):
        build_parser().parse_args(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    for number, step in enumerate(STEPS, start=1):
        assert f"{number}. {step.name} {' '.join(step.summary.split())}" in text
    assert "--step NAME" in text and "--image PATH" in text


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_verdict_lines_give_the_target_and_on_a_miss_the_advice():
    good = Verdict("gap +0.017 nats", True, "< 0.05", "train longer")
    assert good.line() == "gap +0.017 nats: good (< 0.05)"
    missed = Verdict("16 divergences", False, "at most 10", "see docs/inference.md")
    assert missed.line() == (
        "16 divergences: missed the target (at most 10); see docs/inference.md"
    )


def test_one_step_prints_its_heading_numbers_and_verdicts(capsys):
    results = run_demo(steps=["flow"])
    output = capsys.readouterr().out
    assert list(results) == ["flow"]
    assert f"== 1. {STEPS[0].title}" in output
    assert "== 2." not in output
    verdicts = [line for line in output.splitlines() if line.startswith("   - ")]
    assert len(verdicts) == len(results["flow"].verdicts) == 1
    assert all(VERDICT.match(line) for line in verdicts), verdicts
    assert results["flow"].numbers["density_error"] < 1e-4
    assert "good (< 1e-4" in output
    assert not ARRAY_REPR.search(output), output
    assert "== Summary: 1 of 1 verdicts good" in output


def test_the_array_pattern_catches_what_jax_and_numpy_print():
    values = [
        jnp.float32(0.1),
        jnp.array([1.0, 2.0]),
        np.array([1505.0, 1.0]),
        np.array([1505.0, 1545.0]),
        np.float32(0.25),
    ]
    for value in values:
        assert ARRAY_REPR.search(f"ESS {value!r}"), repr(value)
        if np.ndim(value):
            assert ARRAY_REPR.search(f"ESS {value}"), str(value)
    assert not ARRAY_REPR.search("z = [+0.499, +4.463]   ESS 1505 [exact 3] (2,)")


def test_unknown_steps_and_an_image_without_its_step_are_refused(capsys, tmp_path):
    with pytest.raises(ValueError, match=r"unknown demo steps \['gauge'\]"):
        run_demo(steps=["flow", "gauge"])
    with pytest.raises(SystemExit):
        main(["demo", "--step", "gauge"])  # argparse's choices
    image = str(tmp_path / "ring.png")
    assert main(["demo", "--step", "flow", "--image", image]) == 2
    assert "drawn by the step 'fit'" in capsys.readouterr().err
    assert not (tmp_path / "ring.png").exists()


def test_the_image_has_axes_titles_and_its_stated_size(tmp_path):
    draws = np.random.default_rng(0).normal(size=(200, 2))
    path = tmp_path / "ring.png"
    save_samples_figure(path, draws, draws + 0.1, title="t", fitted_title="flow")
    assert _png_size(path) == (1000, 480)


def test_without_matplotlib_the_demo_says_what_to_install(
    monkeypatch, capsys, tmp_path
):
    # A None entry in sys.modules makes `import` raise ImportError.
    for name in ["matplotlib", "matplotlib.figure"]:
        monkeypatch.setitem(sys.modules, name, None)
    path = tmp_path / "ring.png"
    with pytest.raises(MatplotlibMissingError, match=r'pip install "flowrox\['):
        save_samples_figure(
            path, np.zeros((2, 2)), np.zeros((2, 2)), title="", fitted_title=""
        )
    # The command line says so before it runs any step.
    assert main(["demo", "--image", str(path)]) == 2
    captured = capsys.readouterr()
    assert 'pip install "flowrox[notebooks]"' in captured.err
    assert "==" not in captured.out
    assert not path.exists()


@pytest.mark.slow
def test_demo_meets_every_target(capsys, tmp_path):
    image = tmp_path / "ring.png"
    results = run_demo(num_samples=1000, seed=1, image=str(image))
    output = capsys.readouterr().out
    assert list(results) == [step.name for step in STEPS]
    for number, step in enumerate(STEPS, start=1):
        assert f"\n== {number}. {step.title}\n" in output
    verdict_lines = [line for line in output.splitlines() if line.startswith("   - ")]
    n_verdicts = sum(len(result.verdicts) for result in results.values())
    assert len(verdict_lines) == n_verdicts
    assert all(VERDICT.match(line) for line in verdict_lines), verdict_lines
    missed = [v.line() for r in results.values() for v in r.verdicts if not v.good]
    assert not missed, missed
    assert not ARRAY_REPR.search(output), output
    assert _png_size(image) == (1000, 480)
    # The verdicts' numbers, against the exact answers they were measured on.
    assert results["flow"].numbers["density_error"] < 1e-4
    assert results["prior"].numbers["divergences"] == 0
    assert max(results["prior"].numbers["mean_errors_in_se"]) < 4.0
    assert results["bayesian"].numbers["sites"] == ["linear/bias", "linear/weight"]
    assert max(results["bayesian"].numbers["mean_errors_in_se"]) < 4.0
    assert results["fit"].numbers["nll_gap"] < 0.05
    guide = results["guide"].numbers
    assert guide["NeuTra NUTS"]["ess_y"] > guide["plain NUTS"]["ess_y"]
    assert results["field"].numbers["predictive_coverage"] >= 0.9
    emulator = results["emulator"].numbers
    assert emulator["modes 0-4"]["coverage"] >= 0.85
    assert 0.85 <= emulator["modes 0-4"]["noisy_coverage"] <= 0.95
    assert emulator["width_ratio"] > 3.0
    assert results["lattice"].numbers["acceptance"] >= 0.6
