"""The import graph of flowrox is a DAG in the layer order of docs/architecture.md.

Every module's imports are read from its source (AST), so an import hidden
inside a function counts as much as one at the top. The test fails on an
import that goes up the layer order, into another subpackage's private module
or name, or that sits inside a function (a hidden cycle), naming the line.
"""

import ast
import pathlib
import re

SOURCE = pathlib.Path(__file__).parents[1] / "src" / "flowrox"
DOCS = pathlib.Path(__file__).parents[1] / "docs" / "architecture.md"

#: Bottom to top; a module may import from its own layer or any layer below.
LAYERS = (
    ("_tree", "_numerics"),
    ("_bayes", "priors"),
    ("nn",),
    ("bijections",),
    ("distributions",),
    ("flows", "train"),
    ("infer", "lattice"),
    ("_demo", "_cli", "__main__", "__init__"),
)
LAYER_OF = {part: depth for depth, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> list[pathlib.Path]:
    return sorted(SOURCE.rglob("*.py"))


def _is_package(path: pathlib.Path) -> bool:
    return path.name == "__init__.py"


def _top(name: str) -> str:
    """The part of the package a dotted flowrox name belongs to."""
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _subpackage(name: str) -> str | None:
    top = _top(name)
    return top if (SOURCE / top).is_dir() else None


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: pathlib.Path, importer: str):
    """Yields `(line, target, names, inside_function)` for every flowrox import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    function_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if inner is not node and hasattr(inner, "lineno"):
                    function_lines.add(inner.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "flowrox":
                    yield node.lineno, alias.name, (), node.lineno in function_lines
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(importer, _is_package(path), node)
            if target.split(".")[0] == "flowrox":
                names = tuple(alias.name for alias in node.names)
                yield node.lineno, target, names, node.lineno in function_lines


def _violations(path: pathlib.Path, importer: str | None = None) -> list[str]:
    importer = _module_name(path) if importer is None else importer
    where = importer.replace(".", "/") + ".py"
    own_layer = LAYER_OF[_top(importer)]
    own_package = _subpackage(importer)
    found = []
    for line, target, names, inside_function in _imports(path, importer):
        targets = [target]
        folder = SOURCE.parent / target.replace(".", "/")
        if folder.is_dir():
            # `from flowrox import nn` / `from . import _made`: the names are modules.
            for name in names:
                module = folder / name
                if module.is_dir() or module.with_suffix(".py").exists():
                    targets.append(f"{target}.{name}")
        for full in targets:
            if full == "flowrox":
                continue
            layer = LAYER_OF.get(_top(full))
            if layer is None:
                found.append(f"{where}:{line}: imports {full}, which has no layer")
            elif layer > own_layer:
                found.append(
                    f"{where}:{line}: imports {full} (layer {layer}, "
                    f"{'/'.join(LAYERS[layer])}) from layer {own_layer} "
                    f"({'/'.join(LAYERS[own_layer])}): imports must go down"
                )
            package = _subpackage(full)
            private = [p for p in full.split(".")[2:] if p.startswith("_")]
            if package is not None and package != own_package and private:
                found.append(
                    f"{where}:{line}: imports {full}, a private module of "
                    f"flowrox.{package}; import its public name from "
                    f"flowrox.{package} instead"
                )
        package = _subpackage(target)
        if package is not None and package != own_package:
            hidden = [name for name in names if name.startswith("_")]
            if hidden:
                found.append(
                    f"{where}:{line}: imports the private name(s) {hidden} from "
                    f"{target}; make them public there or move them down a layer"
                )
        if inside_function:
            found.append(
                f"{where}:{line}: imports {target} inside a function (a hidden "
                "cycle); import it at the top of the module"
            )
    return found


def test_every_module_has_a_layer():
    unplaced = [
        _module_name(path)
        for path in _modules()
        if _top(_module_name(path)) not in LAYER_OF
    ]
    assert not unplaced, f"add these to LAYERS (and docs/architecture.md): {unplaced}"


def test_imports_go_down_the_layers_and_only_to_public_names():
    found = [violation for path in _modules() for violation in _violations(path)]
    assert not found, "\n".join(found)


def test_the_checker_catches_an_upward_a_private_and_a_hidden_import(tmp_path):
    # The checker itself, on a module written to break each rule once.
    bad = tmp_path / "_probe.py"
    bad.write_text(
        "from ..bijections import Affine\n"
        "from ..distributions._flow import Flow\n"
        "from .._bayes import _markers\n"
        "def f():\n"
        "    from .. import _tree\n"
    )
    found = _violations(bad, importer="flowrox.nn._probe")
    assert any("imports flowrox.bijections (layer 3" in v for v in found), found
    assert any("private module of flowrox.distributions" in v for v in found), found
    assert any("private module of flowrox._bayes" in v for v in found), found
    assert any(":5: imports flowrox inside a function" in v for v in found), found


def test_the_docs_draw_the_same_layers():
    text = DOCS.read_text()
    block = re.search(r"```text\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md needs the layer diagram in a ```text block"
    rows = [row.split("#")[0].strip() for row in block.group(1).splitlines()]
    drawn = [tuple(row.replace(",", " ").split()) for row in rows if row]
    # The diagram lists the layers top to bottom.
    assert tuple(reversed(drawn)) == LAYERS
