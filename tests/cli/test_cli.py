import json
import math
import re
import subprocess
import sys

import pytest

import insilico

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


def test_every_subcommand_accepts_quiet():
    """The README: --quiet means the same in every subcommand, so none refuses it."""
    import argparse

    from insilico.cli.main import build_parser

    def leaves(parser, path=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, parser
        for action in subs:
            for name, child in action.choices.items():
                yield from leaves(child, (*path, name))

    found = dict(leaves(build_parser()))
    assert ("models",) in found and ("tools",) in found and ("gallery", "build") in found
    assert [p for p, parser in found.items() if "--quiet" not in parser._option_string_actions] == []
    assert main(["models", "--quiet"]) == 0


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


@pytest.mark.parametrize("size", ["1", "32"])
def test_a_size_the_model_cannot_take_is_one_line_exit_2_and_writes_nothing(size, tmp_path, capsys):
    """Issue 23 fault 14: minialex (64 px, fixed) at --size 1 (too small for its convolutions) or 32 (not its
    size): one line naming --size and the model's own error, no traceback, no --out folder."""
    out = tmp_path / "out"
    assert main(["maximize", "--units", "classifier.6[0]", "--steps", "1", "--size", size, "--out", str(out),
                 "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insilico: error: the model failed on images of shape "
                                                   f"(1, 3, {size}, {size})")
    assert "check --size=" in lines[0] and not out.exists()


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


def test_record_reduce_per_unit_as_record_stimuli_takes_it(tmp_path, capsys):
    """``--reduce unit=how,...`` is record_stimuli's dict (``none`` keeps a unit whole, ``*`` a default where
    meaningful); commas inside an address's brackets belong to the address. Before: one value for all units."""
    from insilico.cli.options import reductions

    assert reductions("features.0[1,2]=mean, *=max,classifier.6=none") == \
        {"features.0[1,2]": "mean", "*": "max", "classifier.6": None}
    out = tmp_path / "rec"
    assert main(["record", "--units", "features.0", "classifier.6", "--per-class", "1", "--reduce",
                 "features.0=max,classifier.6=none", "--out", str(out), "--quiet"]) == 0
    shapes = [e["shape"] for e in json.loads((out / "manifest.json").read_text())["outputs"]]
    assert shapes == [[16, 48], [16, 16]]                      # 48 channels pooled; 16 logits whole
    assert main(["record", "--units", "features.0", "classifier.6", "--per-class", "1", "--reduce", "*=mean",
                 "--out", str(tmp_path / "star"), "--quiet"]) == 0
    rec = insilico.load(tmp_path / "star" / "recording")
    assert rec.meta["reduce"] == {"features.0": "mean", "classifier.6": None}
    capsys.readouterr()
    assert main(["record", "--units", "features.0", "--per-class", "1", "--reduce", "features.3=mean",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "reduce names 'features.3', which is not among the recorded units" in capsys.readouterr().err


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


# ---------------------------------------------------------------------------------------
# Options are checked while parsing: at once, before torch or a model, one line, exit 2, nothing written
# ---------------------------------------------------------------------------------------
BAD_OPTIONS = [
    (["maximize", "--units", "features.0[0]", "--steps", "-1"], "--steps: must be an integer >= 1"),
    (["maximize", "--units", "features.0[0]", "--steps", "0"], "--steps: must be an integer >= 1"),
    (["maximize", "--units", "features.0[0]", "--steps", "2.5"], "--steps: must be an integer >= 1"),
    (["maximize", "--units", "features.0[0]", "--lr", "0"], "--lr: must be a number > 0"),
    (["maximize", "--units", "features.0[0]", "--lr", "nan"], "--lr: must be a number > 0"),
    (["maximize", "--units", "features.0[0]", "--diversity", "-0.5"], "--diversity: must be a number >= 0"),
    (["maximize", "--units", "features.0[0]", "--lr", "1e99"], "--lr: must be a number > 0 and <= 1e+06"),
    (["maximize", "--units", "features.0[0]", "--diversity", "1e99"], "--diversity: must be a number >= 0 and <="),
    (["adversarial", "--eps", "1e99"], "--eps: must be a number > 0 and <= 1e+06"),
    (["maximize", "--units", "features.0[0]", "--size", "0"], "--size: must be an integer >= 1"),
    (["maximize", "--units", "features.0[0]", "--images-per-unit", "0"], "--images-per-unit: must be"),
    (["maximize", "--units", "features.0[0]", "--batch-size", "-4"], "--batch-size: must be an integer >= 1"),
    (["maximize", "--units", "features.0[0]", "--seed", "-1"], "--seed: must be an integer >= 0"),
    (["maximize", "--units", "features.0[0]", "--shard", "2/2"], "--shard: must be R/W with 0 <= R < W"),
    (["maximize", "--units", "features.0[0]", "--device", "gpu"], "--device: must be auto, cpu, cuda"),
    (["maximize", "--units", "features.0[0]", "--step", "3"], "unrecognized arguments: --step"),  # no prefixes
    (["metamer", "--layer", "features.0", "--steps", "0"], "--steps: must be an integer >= 1"),
    (["metamer", "--layer", "features.0", "--per-class", "0"], "--per-class: must be an integer >= 1"),
    (["metamer", "--layer", "features.0", "--images", "no/such.png"], "--images: no such file"),
    (["adversarial", "--eps", "8", "-2"], "--eps: must be a number > 0"),
    (["adversarial", "--norm", "l3"], "--norm: invalid choice: 'l3'"),
    (["adversarial", "--steps", "-3"], "--steps: must be an integer >= 1"),
    (["controversial", "--pairs", "brick"], "--pairs: a class pair is written i,j"),
    (["controversial", "--pairs", "brick,gravel", "--images-per-pair", "0"], "--images-per-pair: must be"),
    (["record", "--units", "features.0", "--stimuli", "noise"], "--stimuli: must be photos, gratings, natural"),
    (["record", "--units", "features.0", "--reduce", "median"], "--reduce: must be mean, max, center"),
    (["record", "--units", "features.0", "--reduce", "features.0=median"], "--reduce: 'features.0=median': "),
    (["record", "--units", "features.0", "--reduce", "features.0=mean,,"], "--reduce: must be mean, max, center"),
    (["gradient-map", "--unit", "[1]", "--images", "x.png", "--method", "gradcam++"], "--method: invalid choice"),
    (["gallery", "build", "--steps", "-1"], "--steps: must be an integer >= 1"),
    (["gallery", "build", "--unit-range", "4:2"], "--unit-range: must be START:STOP with 0 <= START < STOP"),
    (["gallery", "build", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["gallery", "build", "--weights", "no/such.pt"], "--weights: no such file: 'no/such.pt' (or 'random' for random"),
    (["record", "--units", "features.0", "--weights", "none"], "--weights: no such file: 'none' (or 'random'"),
    (["demo", "--seed", "x"], "--seed: must be an integer >= 0"),
]


@pytest.mark.parametrize("args, message", BAD_OPTIONS, ids=[" ".join(a[-2:]) for a, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.png").write_bytes(b"")
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("insilico: error: ")
    assert message in err and f"see `insilico {' '.join(args[:2] if args[0] == 'gallery' else args[:1])} --help`" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_help_and_bad_options_import_no_torch():
    """--help of every subcommand and a bad option answer from argparse alone: torch is never imported."""
    code = """
import contextlib, io, sys
from insilico.cli import main
calls = [[], ["maximize"], ["metamer"], ["adversarial"], ["controversial"], ["record"], ["gradient-map"], ["tools"],
         ["deconv"], ["demo"], ["models"], ["merge"], ["gallery"], ["gallery", "build"]]
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
    codes = [main([*c, "--help"]) for c in calls]
    codes.append(main(["maximize", "--units", "features.0[0]", "--steps", "-1", "--out", "o"]))
    codes.append(main(["gradient-map", "--unit", "[1]", "--images", "a.png", "--method", "nope", "--out", "o"]))
assert codes == [0] * len(calls) + [2, 2], codes
assert out.getvalue().count("usage: insilico") == len(calls)
print("torch" in sys.modules, "insilico.probe" in sys.modules)
"""
    done = _fresh_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"


def test_help_shows_the_defaults_the_library_uses():
    import inspect

    from insilico.attribution.gradients import METHODS
    from insilico.cli import build_parser
    from insilico.design.adversarial import AttackOptions
    from insilico.design.controversial import CONTROVERSIAL_DEFAULTS, controversial
    from insilico.design.maximize import MAXIMIZE_DEFAULTS, MaximizeOptions, maximize
    from insilico.design.metamers import METAMER_DEFAULTS
    from insilico.gallery import GallerySettings
    from insilico.synthesis.optimizers import NORMS

    def default(function, name):
        return inspect.signature(function).parameters[name].default

    parser = build_parser()
    m = parser.parse_args(["maximize", "--units", "u", "--out", "o"])
    maximize_options = MaximizeOptions(**MAXIMIZE_DEFAULTS)
    assert (m.steps, m.lr, m.images_per_unit, m.diversity) == (
        maximize_options.steps, maximize_options.lr, default(maximize, "images_per_unit"), maximize_options.diversity)
    assert parser.parse_args(["metamer", "--layer", "l", "--out", "o"]).steps == METAMER_DEFAULTS["steps"]
    a = parser.parse_args(["adversarial", "--out", "o"])
    assert (a.steps, a.norm) == (AttackOptions().steps, AttackOptions().norm)
    c = parser.parse_args(["controversial", "--pairs", "1,2", "--out", "o"])
    assert (c.steps, c.images_per_pair) == (CONTROVERSIAL_DEFAULTS["steps"], default(controversial, "seeds"))
    subcommands = parser._subparsers._group_actions[0].choices
    def choices(command, dest):
        return next(a.choices for a in subcommands[command]._actions if a.dest == dest)

    assert tuple(choices("gradient-map", "method")) == tuple(choices("deconv", "method")) == METHODS
    assert sorted(choices("adversarial", "norm")) == sorted(set(NORMS.values()))
    # the printed help: the gallery's defaults are GallerySettings' (once, 16 where it was 24)
    gallery = subcommands["gallery"]._subparsers._group_actions[0].choices["build"].format_help()
    gallery = " ".join(gallery.split())
    s = GallerySettings()
    for option, value in [("--steps", s.steps), ("--exemplars", s.exemplars), ("--batch-size", s.chunk),
                          ("--seed", s.seed), ("--model", s.model)]:
        assert re.search(rf"{option} \S+ .*?\(default: the definition's, else {value}\)", gallery), option
    help_text = " ".join(subcommands["maximize"].format_help().split())
    assert f"(default {maximize_options.steps})" in help_text and "%(default)" not in help_text


def test_the_library_refuses_bad_numbers_too():
    import copy

    import torch

    import insilico
    from insilico import Probe, controversial, maximize, metamer
    from insilico.errors import InsilicoError
    from insilico.gallery import GallerySettings

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    net(torch.rand(1, 3, 8, 8))
    with pytest.raises(InsilicoError, match="steps must be at least 1"):
        maximize(net, "1[0]", size=8, steps=0, progress=False)
    with pytest.raises(InsilicoError, match="steps must be at least 0"):
        maximize(net, "1[0]", size=8, steps=-1, progress=False)
    with pytest.raises(InsilicoError, match="lr must be a positive finite number"):
        maximize(net, "1[0]", size=8, steps=2, lr=float("nan"), progress=False)
    with pytest.raises(InsilicoError, match=r"lr must be .*at most 1e\+06"):  # not torch's raw overflow error
        maximize(net, "1[0]", size=8, steps=2, lr=1e99, progress=False)
    with pytest.raises(InsilicoError, match="eps must be > 0 and <= 1e"):  # not NaN images blamed on the input
        insilico.pgd(net, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), eps=1e99, steps=1, progress=False)
    with pytest.raises(InsilicoError, match="steps must be at least 0"):
        metamer(net, "1", torch.rand(1, 3, 8, 8), steps=-5, progress=False)
    with pytest.raises(InsilicoError, match="steps must be >= 1"):
        controversial([net, copy.deepcopy(net)], [(0, 1)], size=(3, 8, 8), steps=0, progress=False)
    with pytest.raises(InsilicoError, match="batch_size must be at least 1"):
        Probe(net).record_stimuli(torch.rand(2, 3, 8, 8), ["1"], batch_size=0, progress=False)
    for bad in ({"steps": 0}, {"lr": -0.1}, {"diversity": float("nan")}, {"chunk": 0}):
        with pytest.raises(InsilicoError, match="gallery setting"):
            GallerySettings.from_dict(bad)


# ---------------------------------------------------------------------------------------
# Every JSON file insilico writes is strict JSON
# ---------------------------------------------------------------------------------------
def _refuse(constant):
    raise AssertionError(f"{constant} is not JSON")


def strict_json_files(folder) -> int:
    """Parse every .json file under ``folder`` as a strict reader (a browser's JSON.parse) does; returns how many."""
    from pathlib import Path

    files = sorted(Path(folder).rglob("*.json"))
    for file in files:
        json.loads(file.read_text(), parse_constant=_refuse)
    return len(files)


def test_the_json_writer_is_strict(tmp_path):
    import math

    import numpy as np
    import torch

    from insilico.errors import InsilicoError
    from insilico.jsonfiles import to_json, write_json

    data = {"nan": math.nan, "inf": -math.inf, "np": np.float32(0.5), "npnan": np.float64("nan"),
            "int": np.int64(3), "bool": np.bool_(True), "tensor": torch.tensor([1.0, float("nan")]),
            "scalar": torch.tensor(2), "tuple": (1, 2), 7: "int key", "path": tmp_path / "a"}
    write_json(tmp_path / "d.json", data)
    back = json.loads((tmp_path / "d.json").read_text(), parse_constant=_refuse)
    assert back == {"nan": None, "inf": None, "np": 0.5, "npnan": None, "int": 3, "bool": True,
                    "tensor": [1.0, None], "scalar": 2, "tuple": [1, 2], "7": "int key", "path": str(tmp_path / "a")}
    with pytest.raises(InsilicoError, match=r"bad\.json: \$\.x\[1\] is a object"):
        write_json(tmp_path / "bad.json", {"x": [1, object()]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]   # nothing written, no temporary left
    assert to_json([math.inf], indent=None) == "[null]"


def test_demo_json_is_strict(tmp_path):
    from insilico.demo import run_demo

    summary = run_demo(out=tmp_path, progress=False)
    assert strict_json_files(tmp_path) == 1
    osi = json.loads((tmp_path / "demo.json").read_text())["record"]["osi"]
    assert [v is None for v in osi] == [not math.isfinite(v) for v in summary["record"]["osi"]]


def test_outputs_of_the_commands_are_strict_json(tmp_path):
    out = tmp_path / "max"
    assert main(["maximize", "--units", "features.0[2]", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    assert strict_json_files(out) >= 3               # manifest.json, command.json, parts/job.json
    assert main(["record", "--units", "features.0[3]", "--per-class", "1", "--out", str(tmp_path / "rec"),
                 "--quiet"]) == 0
    assert strict_json_files(tmp_path / "rec") >= 3  # manifest.json, command.json, recording/meta.json
    assert main(["deconv", "--unit", "features.10[3]", "--images", _png(tmp_path / "a.png", 64),
                 "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert strict_json_files(tmp_path / "d") == 2    # manifest.json, the maps' sidecar


def test_a_gallery_site_is_strict_json(site):
    root, _ = site
    assert strict_json_files(root) > 10


# ------------------------------------------------------------------ insilico merge: command.json is data (issue 23)
NET_PY = """import torch
def net():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU())
    m.input_size = (3, 8, 8)
    return m
"""


@pytest.fixture(scope="module")
def sharded_spec_run(tmp_path_factory):
    """A `maximize` run of a user's model file (a --model spec) as 2 hand-made shards: 2 units, 1 step."""
    root = tmp_path_factory.mktemp("merge")
    (root / "net.py").write_text(NET_PY)
    args = ["maximize", "--model", f"{root / 'net.py'}:net", "--units", "0[0]", "0[1]", "--steps", "1",
            "--batch-size", "1", "--quiet", "--out", str(root / "run")]
    for rank in ("0/2", "1/2"):
        assert main(args + ["--shard", rank]) == 0
    for written in [*(root / "run").glob("*.png"), root / "run" / "manifest.json"]:
        written.unlink()  # what merge writes
    return root


def _copy(run_dir, dst, edit):
    import shutil

    shutil.copytree(run_dir, dst)
    saved = dst / "command.json"
    argv = json.loads(saved.read_text())["argv"]
    edit(argv)
    saved.write_text(json.dumps({"argv": argv}))
    return dst


def test_merge_never_imports_a_model_file_named_by_command_json(sharded_spec_run, tmp_path, capsys):
    flag = tmp_path / "PWNED"
    evil = tmp_path / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(flag)!r}).touch()\ndef net():\n    raise SystemExit('evil')\n")
    folder = _copy(sharded_spec_run / "run", tmp_path / "o", lambda a: a.__setitem__(a.index("--model") + 1,
                                                                                      f"{evil}:net"))
    capsys.readouterr()
    assert main(["merge", str(folder)]) == 2
    err = capsys.readouterr().err
    assert not flag.exists(), "insilico merge executed a Python file named in command.json"
    assert "command.json names a model spec that imports code" in err and f"--model {evil}:net" in err
    assert not (folder / "manifest.json").exists()


def test_merge_loads_a_model_spec_only_when_given_again(sharded_spec_run, tmp_path, capsys):
    folder = _copy(sharded_spec_run / "run", tmp_path / "o", lambda a: None)
    spec = f"{sharded_spec_run / 'net.py'}:net"
    assert main(["merge", str(folder)]) == 2 and "pass it again" in capsys.readouterr().err
    assert main(["merge", str(folder), "--model", spec]) == 0  # the user's own word: loaded, outputs written
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["outputs"]) == 2 and all((folder / e["file"]).exists() for e in manifest["outputs"])
    assert manifest["settings"]["model"] == spec and manifest["settings"]["out"] == str(folder)


def test_merge_runs_only_a_command_that_scales_out(tmp_path, capsys):
    (tmp_path / "command.json").write_text(json.dumps({"argv": ["demo", "--out", str(tmp_path / "x")]}))
    assert main(["merge", str(tmp_path)]) == 2
    assert "'demo', a command that does not scale out" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["command.json"]


def test_merge_writes_only_into_the_folder_given(sharded_spec_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    folder = _copy(sharded_spec_run / "run", tmp_path / "o", lambda a: a.__setitem__(a.index("--out") + 1,
                                                                                      str(elsewhere)))
    assert main(["merge", str(folder), "--model", f"{sharded_spec_run / 'net.py'}:net"]) == 0
    assert not elsewhere.exists() and (folder / "manifest.json").exists()


def test_record_reduce_help_says_what_it_does_for_each_layout():
    """``--reduce`` pools by the layout rule (insilico.layout.pool), not only conv maps: its help names them."""
    from insilico.cli import build_parser
    from insilico.layout import POOLS

    record = build_parser()._subparsers._group_actions[0].choices["record"]
    reduce = next(a for a in record._actions if a.dest == "reduce")
    assert [reduce.type(how) for how in POOLS] == list(POOLS)
    said = " ".join(reduce.help.split())
    for layout in ("map (C, H, W)", "channels-last stage (H, W, C", "token layer (T, D", "CLS and registers dropped",
                   "vector is refused"):
        assert layout in said, layout


def test_every_subcommand_that_reads_images_can_fit_them_as_the_stimulus_reader_does(tmp_path):
    """An --images error says "pass --resize": every subcommand with --images has it, and it fits the files as
    `record --stimuli` does (cover the model's input_size, crop the centre), never squashing them."""
    import argparse

    import numpy as np
    import skimage.io
    import torch

    from insilico.cli.main import build_parser
    from insilico.cli.options import read_images
    from insilico.errors import StimulusError
    from insilico.stimuli.files import fit_image, read_image

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    readers = [name for name, p in sub.choices.items() if "--images" in p._option_string_actions]
    assert {"gradient-map", "deconv", "metamer", "adversarial"} <= set(readers)
    assert [name for name in readers if "--resize" not in sub.choices[name]._option_string_actions] == []
    wide = np.zeros((16, 32, 3), np.uint8)
    wide[:, 8:24] = 255  # white centre, black sides: a centre crop is all white, a squash is not
    skimage.io.imsave(tmp_path / "wide.png", wide, check_contrast=False)
    net = torch.nn.Conv2d(3, 2, 3)
    net.input_size = (3, 16, 16)
    with pytest.raises(StimulusError, match="is 16x32; the model takes 16x16: resize it, or pass --resize"):
        read_images([str(tmp_path / "wide.png")], net)
    fitted = read_images([str(tmp_path / "wide.png")], net, resize=True)
    assert fitted.shape == (1, 3, 16, 16) and float(fitted.min()) == 1.0
    assert torch.equal(fitted[0], fit_image(read_image(tmp_path / "wide.png"), (16, 16)))
