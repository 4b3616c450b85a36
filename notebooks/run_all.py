"""Executes the notebooks in this folder.

`python notebooks/run_all.py` runs every notebook as CI does: with
FLOWROX_QUICK=1 (unless already set), so each notebook uses its reduced step
counts; it fails on the first cell that raises and saves nothing.

`python notebooks/run_all.py --save [NAME ...]` runs the named notebooks (all
when none are named) at their full settings and stores the outputs, plots
included, in the notebook files: these are the outputs the documentation site
shows.
"""

import argparse
import os
import pathlib
import sys
import time

import nbclient
import nbformat

HERE = pathlib.Path(__file__).parent


def _selected(names: list[str]) -> list[pathlib.Path]:
    notebooks = sorted(HERE.glob("*.ipynb"))
    if not names:
        return notebooks
    by_name = {path.stem: path for path in notebooks}
    missing = [name for name in names if pathlib.Path(name).stem not in by_name]
    if missing:
        raise SystemExit(
            f"run_all.py: no notebook named {', '.join(missing)} in {HERE}; "
            f"the notebooks are {', '.join(sorted(by_name))}."
        )
    return [by_name[pathlib.Path(name).stem] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--save",
        action="store_true",
        help="run at full settings and store the outputs in the notebooks",
    )
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    arguments = parser.parse_args(argv)
    if arguments.save:
        os.environ.pop("FLOWROX_QUICK", None)
    else:
        os.environ.setdefault("FLOWROX_QUICK", "1")
    notebooks = _selected(arguments.names)
    if not notebooks:
        print("no notebooks found")
        return 1
    for path in notebooks:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=3600 if arguments.save else 900,
            kernel_name="python3",
            resources={"metadata": {"path": str(HERE)}},
        )
        client.execute()
        if arguments.save:
            nbformat.write(notebook, path)
        print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s")
    print(f"all {len(notebooks)} notebooks executed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
