import json
import subprocess
import sys

import pytest

from insilico.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "insilico", *args], capture_output=True, text=True, timeout=600)


def test_help_of_every_subcommand():
    for command in ([], ["demo"], ["models"]):
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
