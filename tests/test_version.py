"""The distribution name: another distribution that owns the import name ``insilico`` is named at import."""
import configparser
import subprocess
import sys
from pathlib import Path

from insilico import _version

ROOT = Path(__file__).resolve().parents[1]


class _Dist:
    def __init__(self, summary, version="0.1.2"):
        self.metadata, self.version = {"Summary": summary}, version


def test_a_foreign_insilico_distribution_is_named_with_the_fix():
    chembl = _Dist("Tools for ChEMBL in-silico target prediction")
    msg = _version.shadowing_distribution(lambda name: chembl if name == "insilico" else None)
    assert "'insilico' 0.1.2" in msg and "ChEMBL" in msg and "pip uninstall insilico insilico-ephys" in msg
    ours = _Dist("In-silico electrophysiology for PyTorch: record, lesion, stimulate", "0.1.0")
    assert _version.shadowing_distribution(lambda name: ours) is None  # this library under its former name
    assert _version.shadowing_distribution(lambda name: None) is None


def test_import_warns_when_the_chembl_package_is_installed(tmp_path):
    # a fake installed distribution "insilico" (its metadata only), found first on sys.path
    info = tmp_path / "insilico-0.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: insilico\nVersion: 0.1.2\n"
                                   "Summary: ChEMBL target prediction\n")
    # the fake first on sys.path (a checkout's own stale insilico.egg-info must not answer for it)
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(tmp_path)!r}); import insilico"
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "ChEMBL target prediction" in done.stderr


def test_setup_cfg_names_the_distribution_and_its_zoo_extras():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["name"] == _version.DISTRIBUTION
    extras = {k: v.split() for k, v in cfg["options.extras_require"].items()}
    for extra in ("torchvision", "timm", "open_clip", "hf", "zoo", "test"):
        assert extra in extras, extra
    zoo = " ".join(extras["zoo"])
    assert all(p in zoo for p in ("torchvision", "timm", "open_clip_torch", "transformers"))
    assert all(p in " ".join(extras["test"]) for p in ("timm", "open_clip_torch", "transformers"))


def test_the_readme_table_of_extras_names_every_extra_of_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    readme = (ROOT / "README.md").read_text()
    table = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| `[")}
    assert {f"`[{extra}]`" for extra in cfg["options.extras_require"]} == table
