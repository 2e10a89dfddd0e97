"""probes/four_elements.py (a thin call of `insilico lab study`) runs the default grid from one command; the lab's
command line trains one variant, refuses bad variants before writing anything, and its shards merge."""
import csv
import importlib.util
import json
from pathlib import Path

import pytest

from insilico import lab
from insilico.cli import main

SCRIPT = Path(__file__).resolve().parents[2] / "probes" / "four_elements.py"


def test_the_default_grid_runs_end_to_end_from_one_command(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("probe_four_elements", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--steps", "1", "--batch", "4", "--out", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    with open(tmp_path / "study.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [v.name for v in lab.DEFAULT_GRID]
    grid = lab.DEFAULT_GRID  # one variant per element beside the baseline
    base = grid[0]
    assert {v.architecture for v in grid} - {base.architecture} and {v.rule for v in grid} - {base.rule}
    assert {v.objective for v in grid} - {base.objective} and any(v.blur != base.blur for v in grid)
    assert all(-1 <= float(r["human_it"]) <= 1 and 0 <= float(r["fraction_tuned"]) <= 1 for r in rows)
    assert float(rows[0]["kappa_first"]) == 1.0 or rows[0]["kappa_first"] == "nan"
    assert (tmp_path / "study.png").exists() and (tmp_path / "study.pt").exists()
    result = lab.StudyResult.load(tmp_path / "study.pt")
    assert result.names == [r["variant"] for r in rows] and tuple(result.kappa.shape) == (5, 5)
    assert json.loads((tmp_path / "manifest.json").read_text())["variants"] == result.names
    assert "human-IT noise ceiling" in capsys.readouterr().out


def test_lab_train_is_a_study_of_one_variant_read_back_by_trained(tmp_path, capsys):
    args = ["lab", "train", "--variant", "architecture=b,size=16,timesteps=1,width=0.5,objective=sparse",
            "--steps", "1", "--batch", "4", "--out", str(tmp_path), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    name = "b+width0.5+timesteps1+size16+sparse"
    assert name in capsys.readouterr().out
    observer = lab.trained(tmp_path / "parts")[name]
    assert observer[0].layers[0].bottom_up.out_channels == 16  # width 0.5 of 32
    assert lab.StudyResult.load(tmp_path / "study.pt").names == [name]


@pytest.mark.parametrize("variant, message", [
    ("architecture=bx", "Variant(architecture='bx') is not an architecture"),
    ("blurr=2", "did you mean 'blur'"),
    ("width=0", "width=0: the width factor must be a positive number"),
    ("architecture", "'architecture' is not key=value"),
])
def test_a_bad_variant_is_one_line_exit_2_and_writes_nothing(variant, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["lab", "train", "--variant", variant, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()


def test_a_grid_file_of_variants_and_its_shards_merge(tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{"architecture": "b", "size": 16, "timesteps": 1},
                                {"architecture": "b", "size": 16, "timesteps": 1, "blur": 1.0}]))
    out = tmp_path / "out"
    common = ["lab", "study", "--grid", str(grid), "--steps", "1", "--batch", "4", "--out", str(out), "--quiet",
              "--device", "cpu"]
    assert main([*common, "--shard", "0/2"]) == 0 and not (out / "study.pt").exists()
    assert main([*common, "--shard", "1/2"]) == 0
    assert main(["merge", str(out), "--quiet"]) == 0
    assert lab.StudyResult.load(out / "study.pt").names == ["b+timesteps1+size16", "b+timesteps1+blur1.0+size16"]


def test_lab_help_and_a_malformed_variant_answer_without_importing_torch():
    import subprocess
    import sys

    code = """
import contextlib, io, sys
from insilico.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
    codes = [main(["lab", "--help"]), main(["lab", "study", "--help"]), main(["lab", "train", "--help"]),
             main(["lab", "train", "--variant", "blur", "--out", "o"]), main(["lab", "study", "--grid", "no.json",
                                                                             "--out", "o"])]
assert codes == [0, 0, 0, 2, 2], codes
assert "'blur' is not key=value" in err.getvalue() and "no such file: 'no.json'" in err.getvalue()
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
