"""How long each tutorial notebook takes to run top to bottom (reported here, never asserted in tests/).

    python benchmarks/bench_notebooks.py [--threads 2]

Prints one line per notebook in notebooks/: its wall time in seconds, executed as
``tests/contract/test_notebooks.py`` and ``notebooks/execute.py`` execute it (the same function:
nbclient, a fresh python3 kernel, an empty folder, a fixed seed). Nothing is written to the notebooks.
"""
import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

_NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_execute", _NOTEBOOKS / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)


def run(path: Path) -> float:
    """Seconds to execute the notebook at ``path`` in a fresh kernel."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        execute.execute(path, folder)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the kernels")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    total = 0.0
    for path in execute.notebooks():
        seconds = run(path)
        total += seconds
        print(f"{path.stem:40s} {seconds:7.1f} s")
    print(f"{'all notebooks':40s} {total:7.1f} s")


if __name__ == "__main__":
    main()
