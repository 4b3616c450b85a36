"""The README's example runs as written, and its table lists everything public."""

import importlib
import inspect
import pathlib
import pkgutil
import re

import pytest

import flowrox

README = pathlib.Path(__file__).parents[1] / "README.md"
TABLE_HEADING = "## Everything public"
ROW = re.compile(r"^\| `(?P<name>\w+)` \| (?P<modules>[^|]+) \| (?P<what>[^|]*) \|$")


def _public_modules() -> list[str]:
    """flowrox and every module under it with no private part in its name."""

    def fail(name):
        raise ImportError(f"{name} cannot be imported, so its __all__ is unknown")

    names = ["flowrox"]
    walk = pkgutil.walk_packages(flowrox.__path__, prefix="flowrox.", onerror=fail)
    for module in walk:
        if not any(part.startswith("_") for part in module.name.split(".")):
            names.append(module.name)
    return names


def _public_names() -> set[tuple[str, str]]:
    pairs = set()
    for name in _public_modules():
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} is public but has no __all__"
        pairs |= {(entry, name) for entry in module.__all__}
    return pairs


def _table_rows() -> list[tuple[str, list[str], str]]:
    text = README.read_text()
    assert TABLE_HEADING in text, f"the README needs a {TABLE_HEADING!r} section"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            modules = re.findall(r"`([\w.]+)`", match["modules"])
            rows.append((match["name"], modules, match["what"].strip()))
    return rows


def _row_for(name: str, module: str) -> str:
    """The row to paste for a missing name, its line from the docstring."""
    summary = inspect.getdoc(getattr(importlib.import_module(module), name)) or ""
    return f"| `{name}` | `{module}` | {summary.split(chr(10))[0]} |"


def test_the_table_lists_every_public_name_once_and_nothing_else():
    rows = _table_rows()
    listed = [(name, module) for name, modules, _ in rows for module in modules]
    public = _public_names()
    missing = sorted(public - set(listed), key=lambda pair: (pair[1], pair[0]))
    assert not missing, "add these rows to the README's table:\n" + "\n".join(
        _row_for(name, module) for name, module in missing
    )
    gone = sorted(set(listed) - public)
    assert not gone, f"the README's table lists names no __all__ has: {gone}"
    repeated = sorted({pair for pair in listed if listed.count(pair) > 1})
    assert not repeated, f"listed twice in the README's table: {repeated}"
    assert all(what for _, _, what in rows), "every row says what the name is"


def test_the_table_check_finds_a_missing_name(monkeypatch):
    # The check itself: a name added to an __all__ and not to the table.
    monkeypatch.setattr(flowrox.priors, "__all__", [*flowrox.priors.__all__, "new"])
    monkeypatch.setattr(flowrox.priors, "new", lambda: None, raising=False)
    with pytest.raises(AssertionError, match=r"\| `new` \| `flowrox.priors` \|"):
        test_the_table_lists_every_public_name_once_and_nothing_else()


def test_the_readme_links_to_pages_and_headings_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([\w-]+))?\)", README.read_text())
    assert links, "the README links to no docs page"
    for page, anchor in links:
        path = README.parent / page
        assert path.is_file(), f"the README links to {page}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
            slugs = {
                re.sub(r"[^\w\s-]", "", h).strip().lower().replace(" ", "-")
                for h in headings
            }
            assert anchor in slugs, f"{page} has no heading for #{anchor}"


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
