"""probes/four_elements.py runs the default grid (one variant per element beside the baseline) from one command."""
import csv
import importlib.util
from pathlib import Path

from insilico import lab

SCRIPT = Path(__file__).resolve().parents[2] / "probes" / "four_elements.py"


def test_the_default_grid_runs_end_to_end_from_one_command(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("probe_four_elements", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--steps", "1", "--batch", "4", "--out", str(tmp_path), "--quiet"]) == 0
    with open(tmp_path / "four_elements.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [v.name for v in lab.DEFAULT_GRID]
    grid = lab.DEFAULT_GRID  # one variant per element beside the baseline
    base = grid[0]
    assert {v.architecture for v in grid} - {base.architecture} and {v.rule for v in grid} - {base.rule}
    assert {v.objective for v in grid} - {base.objective} and any(v.blur != base.blur for v in grid)
    assert all(-1 <= float(r["human_it"]) <= 1 and 0 <= float(r["fraction_tuned"]) <= 1 for r in rows)
    assert float(rows[0]["kappa_vs_baseline"]) == 1.0 or rows[0]["kappa_vs_baseline"] == "nan"
    assert (tmp_path / "four_elements.png").exists() and (tmp_path / "four_elements.pt").exists()
    assert lab.StudyResult.load(tmp_path / "four_elements.pt").names == [r["variant"] for r in rows]
    assert "human-IT noise ceiling" in capsys.readouterr().out
