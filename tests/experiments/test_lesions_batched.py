"""lesion_sweep serving many units at once: channel groups by size, the probes script's --group-size, the
per-unit probability effects the gallery reads, and the normalised effect's intervals (issues 26 and 28)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from insilico.errors import InsilicoError
from insilico.experiments import lesion_sweep
from insilico.pixels import raw

PROBES = Path(__file__).resolve().parents[2] / "probes"


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)).eval()


def test_an_int_groups_lesions_consecutive_runs_of_channels():
    net, x, y = small_net(), torch.rand(30, 6), torch.randint(0, 3, (30,))
    by_size = lesion_sweep(net, "1", raw(x), y, groups=3, n_boot=0, progress=False)
    listed = lesion_sweep(net, "1", raw(x), y, groups=[[0, 1, 2], [3, 4, 5], [6]], n_boot=0, progress=False)
    assert list(by_size.groups) == ["0,1,2", "3,4,5", "6"]
    np.testing.assert_array_equal(by_size.class_accuracy, listed.class_accuracy)
    with pytest.raises(InsilicoError, match="at least 1"):
        lesion_sweep(net, "1", raw(x), y, groups=0, n_boot=0, progress=False)


def test_the_probes_script_lesions_groups_of_channels(tmp_path):
    spec = importlib.util.spec_from_file_location("probe_lesions", PROBES / "lesions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--model", "insilico.models.minialex:MiniAlexNet", "--out", str(tmp_path), "--quiet",
                           "--units", "features.0", "--per-class", "1", "--group-size", "16", "--points", "0"])
    rows = (tmp_path / "lesions.csv").read_text().splitlines()
    assert len(rows) == 2 + 3  # JSON header, column names, 48 channels in runs of 16
    assert summary["most_important"] in ("0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                                         ",".join(map(str, range(16, 32))), ",".join(map(str, range(32, 48))))
