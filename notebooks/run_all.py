"""Executes every notebook in this folder, as CI does: `python notebooks/run_all.py`.

Sets FLOWROX_QUICK=1 (unless already set), so each notebook uses its reduced
step counts, and fails on the first cell that raises. Outputs are not saved.
"""

import os
import pathlib
import sys
import time

import nbclient
import nbformat

HERE = pathlib.Path(__file__).parent


def main() -> int:
    os.environ.setdefault("FLOWROX_QUICK", "1")
    notebooks = sorted(HERE.glob("*.ipynb"))
    if not notebooks:
        print("no notebooks found")
        return 1
    for path in notebooks:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(HERE)}},
        )
        client.execute()
        print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s")
    print(f"all {len(notebooks)} notebooks executed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
