"""Execute the tutorials and store them with their outputs, so they read where code is browsed.

    python notebooks/execute.py                 # every notebooks/*.ipynb, in place
    python notebooks/execute.py 03_activation_maximization.ipynb ...

Each notebook runs top to bottom in a fresh ``python3`` kernel (nbclient), in an empty
working folder, importing ``insilico`` from this checkout, with a fixed seed (``torch``,
``numpy`` and ``random`` seeded with :data:`SEED` and ``PYTHONHASHSEED=0`` before the first
cell, silently: execution counts start at 1) and small figures (PNG at :data:`DPI` dpi).
Long text outputs are trimmed to :data:`MAX_LINES` lines. The stored notebook records, per
code cell, a hash of the source its outputs came from (``metadata["insilico"]["source"]``):
``tests/contract/test_notebooks.py`` fails when a cell's source was edited after its outputs
were stored, and names this command. That test and ``benchmarks/bench_notebooks.py`` execute
through :func:`execute` too, so the test runs what the stored outputs show.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
SEED = 0
DPI = 64
MAX_LINES = 30
MAX_BYTES = 1_000_000  # a stored notebook stays under this size (its figures are small PNGs)

#: Run silently in the kernel before the first cell: a fixed seed, small PNG figures.
SETUP = f"""
import random, warnings
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets: not the tutorial's
random.seed({SEED})
try:
    import numpy; numpy.random.seed({SEED})
except ImportError:
    pass
try:
    import torch; torch.manual_seed({SEED})
except ImportError:
    pass
get_ipython().run_line_magic("config", "InlineBackend.figure_formats = ['png']")
get_ipython().run_line_magic("config", "InlineBackend.rc = {{'figure.dpi': {DPI}, 'savefig.dpi': {DPI}}}")
"""


def notebooks() -> list[Path]:
    """Every tutorial in ``notebooks/``, in name order (a new notebook is picked up by being there)."""
    return sorted(HERE.glob("*.ipynb"))


def source_hash(source: str) -> str:
    """A short hash of a cell's source: what the stored outputs are checked against."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class _SeededClient(nbclient.NotebookClient):
    """A NotebookClient that runs :data:`SETUP` silently once the kernel is up."""

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        msg_id = client.execute(SETUP, silent=True, store_history=False)
        reply = await self.async_wait_for_reply(msg_id)
        if reply is None or reply["content"]["status"] != "ok":
            raise RuntimeError(f"the notebook setup failed in the kernel: {reply and reply['content']}")
        return client


def execute(path: Path, folder: str | Path | None = None) -> nbformat.NotebookNode:
    """The notebook at ``path`` executed top to bottom (raises nbclient's CellExecutionError on a failure).

    ``folder`` is the kernel's working folder (default: a temporary empty one). Nothing is written to ``path``.
    """
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        client = _SeededClient(notebook, timeout=None, kernel_name="python3", record_timing=False,
                               coalesce_streams=True,
                               resources={"metadata": {"path": str(folder or scratch)}})
        paths = [str(HERE.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        environment = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join(paths)}  # this checkout
        client.execute(env=environment)
    return notebook


def trim(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Long text outputs cut to :data:`MAX_LINES` lines; each code cell's source hash recorded."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata["insilico"] = {"source": source_hash(cell.source)}
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = _cut(output.text)
            elif "text/plain" in output.get("data", {}):
                output.data["text/plain"] = _cut(output.data["text/plain"])
    return notebook


def _cut(text: str) -> str:
    lines = text.splitlines(keepends=True)
    if len(lines) <= MAX_LINES:
        return text
    keep = MAX_LINES - 5
    return "".join(lines[:keep]) + f"... ({len(lines) - keep - 4} lines trimmed by notebooks/execute.py)\n" + \
        "".join(lines[-4:])


def store(path: Path) -> int:
    """Execute the notebook at ``path`` and write it back with its (trimmed) outputs; its size in bytes."""
    notebook = trim(execute(path))
    text = nbformat.writes(notebook) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise SystemExit(f"{path.name} would be {len(text.encode()):,} bytes with its outputs (limit {MAX_BYTES:,}): "
                         f"make its figures smaller or fewer")
    path.write_text(text)
    return len(text.encode())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook file names in notebooks/ (default: all)")
    args = parser.parse_args(argv)
    paths = [HERE / name for name in args.names] or notebooks()
    for path in paths:
        size = store(path)
        print(f"{path.name:48s} {size / 1e3:7.0f} kB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
