"""How long each tutorial notebook takes to run top to bottom (reported here, never asserted in tests/).

    python benchmarks/bench_notebooks.py [--threads 2]

Prints one line per notebook in notebooks/: its wall time in seconds, executed as
``tests/contract/test_notebooks.py`` executes it (nbclient, a fresh python3 kernel, an empty folder).
"""
import argparse
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def run(path: Path) -> float:
    """Seconds to execute the notebook at ``path`` in a fresh kernel."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        client = nbclient.NotebookClient(notebook, timeout=None, kernel_name="python3",
                                         resources={"metadata": {"path": folder}})
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the kernels")
    args = parser.parse_args()
    if args.threads:
        import os

        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    total = 0.0
    for path in NOTEBOOKS:
        seconds = run(path)
        total += seconds
        print(f"{path.stem:40s} {seconds:7.1f} s")
    print(f"{'all notebooks':40s} {total:7.1f} s")


if __name__ == "__main__":
    main()
