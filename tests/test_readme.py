"""The README's example runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"


@pytest.mark.slow
def test_readme_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no python example"
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    samples = namespace["mcmc"].get_samples()["z"]
    assert samples.shape == (1000, 2)
    assert "z[0]" in capsys.readouterr().out


def test_readme_quick_start_commands():
    text = README.read_text()
    assert 'pip install -e ".[dev]" && python -m flowrox demo' in text
    assert 'pip install -e ".[dev]" && pytest' in text
