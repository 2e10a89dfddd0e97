"""Every probes/ script runs end-to-end on the bundled models (small settings) and writes its files."""
import csv
import importlib.util
import json
from pathlib import Path

import pytest

from insilico import models

PROBES = Path(__file__).resolve().parents[2] / "probes"


def model_arg(name):
    """The bundled name once its weights ship; until then its architecture through a model spec."""
    if name in models.available():
        return name
    return "insilico.models.minialex:MiniAlexNet" if name == "minialex" else "insilico.models.blt:BLTNet"


def run(script, argv):
    spec = importlib.util.spec_from_file_location(f"probe_{script}", PROBES / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def common(tmp_path, model):
    return ["--model", model_arg(model), "--out", str(tmp_path), "--device", "auto", "--quiet"]


def test_tuning_script(tmp_path):
    summary = run("tuning", common(tmp_path, "minialex") + ["--orientations", "12", "--phases", "2",
                                                           "--sfs", "4,8,16,24", "--fov", "8"])
    for name in ("tuning.npz", "tuning.csv", "tuning_curves.png", "tuning_curves.svg", "tuning_population.png",
                 "tuning_sf.svg", "tuning_settings.json"):
        assert (tmp_path / name).exists(), name
    with open(tmp_path / "tuning.csv") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    # conv1 is tuned after its ReLU; tuned units report a preferred orientation, the others none
    assert len(rows) == 48 and summary["units"] == 48 and rows[3]["units"] == "features.1[3,15,15]"
    tuned = [r for r in rows if r["tuned"] == "True"]
    assert tuned and all(0.0 <= float(r["preferred_orientation"]) < 180.0 for r in tuned)
    assert all(r["preferred_orientation"] == "nan" for r in rows if r["tuned"] == "False")
    header = json.loads((tmp_path / "tuning.csv").read_text().splitlines()[0][2:])
    assert header["units"] == ["features.0"] and header["fov"] == 8.0
    assert 0.0 <= summary["fraction_tuned"] <= 1.0


def test_receptive_fields_script(tmp_path):
    summary = run("receptive_fields", common(tmp_path, "minialex") + [
        "--units", "features.0", "features.3", "--methods", "theoretical", "gradient", "sparse_noise",
        "--n-images", "2", "--frames", "200", "--dots", "16", "--dot-size", "4"])
    for name in ("rf_sizes.npz", "rf_sizes.csv", "rf_sizes.png", "rf_sizes.svg", "rf_maps.png"):
        assert (tmp_path / name).exists(), name
    assert summary["size_theoretical (features.0)"] == 9.0
    assert summary["size_theoretical (features.3)"] == 29.0


def test_lesions_script(tmp_path):
    summary = run("lesions", common(tmp_path, "minialex") + ["--units", "features.0", "--per-class", "1",
                                                            "--points", "3"])
    for name in ("lesions.npz", "lesions.csv", "lesions_dissociation.csv", "lesions_dissociation.png",
                 "lesions_settings.json", "cumulative.npz", "cumulative.csv", "lesions_cumulative.svg"):
        assert (tmp_path / name).exists(), name
    assert 0.0 <= summary["baseline_accuracy"] <= 1.0 and summary["layer"] == "features.0"
    rows = (tmp_path / "lesions.csv").read_text().splitlines()
    assert len(rows) == 2 + 48  # JSON header, column names, one row per channel


def test_microstimulation_script(tmp_path):
    summary = run("microstimulation", common(tmp_path, "minialex") + [
        "--units", "features.10[3]", "--strengths", "0,4,16", "--per-class", "1"])
    assert (tmp_path / "microstimulation.npz").exists() and (tmp_path / "microstimulation.png").exists()
    assert len(summary["target_choice_rate"]) == 3


def test_dynamics_script(tmp_path):
    summary = run("dynamics", common(tmp_path, "blt") + ["--per-class", "1"])
    for name in ("time_courses.npz", "time_courses.csv", "time_courses.png", "connection_lesions.npz",
                 "connection_lesions.csv", "connection_lesions.svg"):
        assert (tmp_path / name).exists(), name
    assert set(summary) == {"intact", "no lateral", "no top-down", "no lateral + top-down"}
    assert all(len(v) == 4 for v in summary.values())


@pytest.mark.parametrize("script", ["tuning", "receptive_fields", "lesions", "microstimulation", "dynamics"])
def test_help(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(script, ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--model" in out and "--out" in out and "--device" in out
