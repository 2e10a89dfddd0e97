"""Every tutorial in notebooks/ runs top to bottom (its assert cells check the numbers) and is stored with
fresh outputs, so it reads where code is browsed.

``python notebooks/execute.py`` executes them in place (fixed seed, small PNG figures); these tests execute
each notebook once, through the same function, and check that its stored outputs come from its present
sources: every code cell executed in order, its source unchanged since (a hash kept in the cell's metadata),
and the same kinds of output as the run here (figures, printed text, results; never the printed numbers,
which vary with the CPU). No wall time is asserted (a loaded machine is slow, not wrong):
``benchmarks/bench_notebooks.py`` reports how long each notebook takes.
"""
import collections
import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

FOLDER = Path(__file__).resolve().parents[2] / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_execute", FOLDER / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

NOTEBOOKS = execute.notebooks()
FIX = "run `python notebooks/execute.py` to store fresh outputs"


def code_cells(notebook) -> list:
    return [c for c in notebook.cells if c.cell_type == "code"]


def kinds(cell) -> collections.Counter:
    """What a cell showed, without the text: each display's mime types; printed output (once, however split)."""
    shown = collections.Counter(f"{o.output_type}:{','.join(sorted(o.get('data', {})))}"
                                for o in cell.outputs if o.output_type != "stream")
    if any(o.output_type == "stream" and o.name == "stdout" for o in cell.outputs):
        shown["stdout"] = 1
    return shown


def test_there_are_at_least_five_tutorials():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_with_fresh_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = code_cells(notebook)
    assert code and any("assert" in c.source for c in code)
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}: {FIX}"
    stale = [i for i, c in enumerate(code)
             if c.metadata.get("insilico", {}).get("source") != execute.source_hash(c.source)]
    assert not stale, f"{path.name}: code cell(s) {stale} were edited after their outputs were stored: {FIX}"
    assert not any(o.output_type == "error" for c in code for o in c.outputs), f"{path.name} stored an error: {FIX}"
    assert any(c.outputs for c in code), f"{path.name} is stored without outputs: {FIX}"
    assert all(o.output_type != "display_data" or "image/png" in o.data for c in code for o in c.outputs
               if "<Figure" in o.get("data", {}).get("text/plain", "")), f"{path.name}: a figure stored without its PNG"
    assert path.stat().st_size < execute.MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_shows_what_is_stored(path, tmp_path):
    executed = execute.execute(path, tmp_path)  # raises CellExecutionError, with the cell and traceback, on a failure
    stored = code_cells(nbformat.read(path, as_version=4))
    for index, (now, then) in enumerate(zip(code_cells(executed), stored)):
        assert kinds(now) == kinds(then), f"{path.name}, code cell {index} shows {dict(kinds(now))} now, " \
                                          f"{dict(kinds(then))} stored: {FIX}"
