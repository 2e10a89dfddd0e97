import json
import subprocess
import sys

import pytest

from insilico.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "insilico", *args], capture_output=True, text=True, timeout=600)


def test_help_of_every_subcommand():
    for command in ([], ["demo"], ["models"], ["gallery", "build"]):
        out = run(*command, "--help")
        assert out.returncode == 0 and "usage: insilico" in out.stdout


def test_models_lists_the_bundled_cnn(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("minialex") and "held-out accuracy" in listing


def test_unknown_model_is_one_line_and_exit_2():
    out = run("demo", "--model", "alexnett", "--out", "unused")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no bundled model named 'alexnett'" in lines[0] and "minialex" in lines[0]


def test_demo_records_lesions_and_stimulates(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    lesion = summary["lesion"]
    assert lesion["accuracy_intact"] > 3 * (1 / 16)
    assert lesion["accuracy_half_lesioned"] < lesion["accuracy_intact"]
    assert 0 < summary["stimulate"]["decisions_changed"] <= 1
    assert len(summary["record"]["osi"]) == 48 and summary["record"]["tuned"] > 10


# ---------------------------------------------------------------------------------------
# The tool subcommands
# ---------------------------------------------------------------------------------------
SUBCOMMANDS = ["record", "maximize", "gradient-map", "deconv", "metamer", "adversarial", "controversial", "gallery",
               "models", "demo"]


def test_every_subcommand_has_help():
    from insilico.cli import build_parser

    parser = build_parser()
    for command in SUBCOMMANDS + ["gallery build"]:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*command.split(), "--help"])
        assert done.value.code == 0


def test_help_of_python_dash_m():
    out = run("maximize", "--help")
    assert out.returncode == 0 and "--units" in out.stdout and "--steps" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["maximize", "--model", "nomodel", "--units", "features.0[0]"], "no bundled model named 'nomodel'"),
    (["maximize", "--units", "feature.0[0]"], "has no module 'feature.0'"),
    (["maximize", "--units", "features.0[99]"], "index 99 is out of range"),
    (["maximize", "--model", "no/such/file.py:net", "--units", "0"], "does not exist"),
    (["gallery", "build", "--model", "nomodel", "--units", "1"], "no bundled model named 'nomodel'"),
])
def test_bad_model_or_unit_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("insilico: error:")


def _png(path, size):
    import numpy as np
    import skimage.io

    skimage.io.imsave(path, (np.random.default_rng(0).random((size, size, 3)) * 255).astype("uint8"),
                      check_contrast=False)
    return str(path)


def test_gradient_map_checks_image_files(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    for image, message in [(str(bad), "cannot read image"), (_png(tmp_path / "big.png", 80), "is 80x80")]:
        assert main(["gradient-map", "--unit", "[1]", "--images", image, "--out", str(tmp_path / "g")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]


def test_deconv_writes_maps_and_manifest(tmp_path):
    image = _png(tmp_path / "a.png", 64)
    assert main(["deconv", "--unit", "features.10[3]", "--images", image, "--out", str(tmp_path / "d"),
                 "--quiet"]) == 0
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["settings"]["method"] == "deconv"
    assert (tmp_path / "d" / manifest["outputs"][0]["map"]).stat().st_size > 1000


def test_maximize_writes_pngs_and_manifest_and_resumes(tmp_path, capsys):
    out = tmp_path / "max"
    args = ["maximize", "--units", "classifier.6[1]", "features.0[2]", "--steps", "3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["image"] for e in manifest["outputs"]] == ["classifier.6[1]", "features.0[2]"]
    files = {e["file"]: (out / e["file"]).stat().st_mtime_ns for e in manifest["outputs"]}
    assert all(name.endswith(".png") for name in files) and len(files) == 2
    capsys.readouterr()
    assert main(args) == 0                                    # a rerun finds everything done
    assert "0 computed, 2 already" in capsys.readouterr().out
    assert {f: (out / f).stat().st_mtime_ns for f in files} == files


def test_record_writes_recording_png_and_manifest(tmp_path):
    out = tmp_path / "rec"
    assert main(["record", "--units", "features.0", "classifier.6", "--per-class", "1", "--reduce", "mean",
                 "--out", str(out), "--quiet"]) == 2          # mean needs maps: classifier.6 has none
    assert main(["record", "--units", "features.0[3]", "classifier.6", "--per-class", "1",
                 "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_stimuli"] == 16 and manifest["outputs"][1]["shape"] == [16, 16]
    assert all((out / e["file"]).exists() for e in manifest["outputs"])


def test_metamer_writes_pngs_and_a_validity_manifest(tmp_path):
    assert main(["metamer", "--layer", "features.0", "--per-class", "1", "--steps", "3", "--out", str(tmp_path),
                 "--quiet"]) == 0
    outputs = json.loads((tmp_path / "manifest.json").read_text())["outputs"]
    assert len(outputs) == 16 and all((tmp_path / e["file"]).exists() for e in outputs)
    assert all(0 <= e["relative_error"] and isinstance(e["valid"], bool) for e in outputs)


def test_adversarial_reports_success_per_eps(tmp_path):
    assert main(["adversarial", "--per-class", "1", "--eps", "2", "16", "--steps", "5", "--out", str(tmp_path),
                 "--quiet"]) == 0
    outputs = json.loads((tmp_path / "manifest.json").read_text())["outputs"]
    assert len(outputs) == 32 and all((tmp_path / e["file"]).exists() for e in outputs)
    rate = {eps: sum(e["success"] for e in outputs if e["eps"] == eps) for eps in (2 / 255, 16 / 255)}
    assert rate[16 / 255] >= rate[2 / 255] and rate[16 / 255] >= 12  # a larger ball flips more


def test_controversial_scores_and_bad_pairs(tmp_path, capsys):
    assert main(["controversial", "--pairs", "brick,gravel", "--steps", "5", "--out", str(tmp_path), "--quiet"]) == 0
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["outputs"]
    assert 0 <= entry["score"] <= 1 and (tmp_path / entry["file"]).exists()
    assert main(["controversial", "--pairs", "brick", "--out", str(tmp_path)]) == 2
    assert "i,j" in capsys.readouterr().err
