"""The docs pages' code blocks run, in order, as written."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parents[1] / "docs"


# Pages whose blocks run in a few seconds; every other page with python blocks
# (NUTS and SVI to convergence, trained flows: 10-60 s each) runs with the slow
# tests. New pages are picked up without being listed, so none is left out.
FAST_PAGES = {"splines.md"}
# Pages whose python blocks show signatures rather than runnable code.
SIGNATURE_PAGES = {"index.md"}
PAGES = sorted(
    path.name
    for path in DOCS.glob("*.md")
    if "```python" in path.read_text() and path.name not in SIGNATURE_PAGES
)


@pytest.mark.parametrize(
    "page",
    [
        page if page in FAST_PAGES else pytest.param(page, marks=pytest.mark.slow)
        for page in PAGES
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
