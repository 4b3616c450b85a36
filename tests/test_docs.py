"""The docs pages' code blocks run, in order, as written."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parents[1] / "docs"


@pytest.mark.parametrize(
    "page",
    [
        # bayesian.md runs NUTS and SVI to convergence: about 40 s.
        pytest.param("bayesian.md", marks=pytest.mark.slow),
        # flows.md trains a spline flow: about 12 s.
        pytest.param("flows.md", marks=pytest.mark.slow),
        pytest.param("choosing-a-flow.md", marks=pytest.mark.slow),
        "splines.md",
        pytest.param("inference.md", marks=pytest.mark.slow),
        # conditioners.md runs a BayesianSIREN under NUTS: about 40 s.
        pytest.param("conditioners.md", marks=pytest.mark.slow),
    ],
)
def test_docs_code_blocks_run(page, capsys):
    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, f"{page} has no python blocks"
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)
    capsys.readouterr()
