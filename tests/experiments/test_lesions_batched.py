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


def conv_net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(6, 4)).eval()


def test_many_lesions_per_forward_pass_equal_one_lesion_at_a_time():
    """Groups batched along the batch axis (a per-sample gain of 0) give what zeroing the channels gives group by
    group (a hand-written hook), whatever the batch size (the chunking of groups and stimuli)."""
    net, x = conv_net(), torch.rand(10, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 4
    groups = [[0], [2, 3], [], [5], [0, 1, 2, 3, 4, 5]]
    results = [lesion_sweep(net, "1", x, y, groups=groups, n_boot=0, batch_size=b, progress=False) for b in (7, 256)]
    for g, group in enumerate(groups):
        hook = net[1].register_forward_hook(lambda m, i, o: o.index_fill(1, torch.tensor(group, dtype=torch.long), 0.0))
        with torch.no_grad():
            probability = torch.softmax(net(x).double(), 1)
        hook.remove()
        for res in results:
            np.testing.assert_allclose(res.label_probability[g], probability[torch.arange(10), y], atol=1e-6)
            np.testing.assert_allclose(res.mean_probability[g], probability.mean(0), atol=1e-6)
            np.testing.assert_array_equal(res.correct[g], (probability.argmax(1) == y).numpy())
    assert np.all(results[0].label_probability[2] == results[0].baseline_label_probability)  # the empty group


def test_decision_labels_score_agreement_with_the_intact_model():
    net, x = conv_net(), torch.rand(10, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    res = lesion_sweep(net, "1", x, "decision", groups=[[], [1]], n_boot=0, progress=False)
    with torch.no_grad():
        choice = net(x).argmax(1).numpy()
    np.testing.assert_array_equal(res.labels, choice)
    assert res.baseline == 1.0 and res.accuracy[0] == 1.0 and res.settings["labels"] == "decision"
    by = np.arange(10) % 2                                     # the user's two folders
    change = res.probability_change(by, 2)
    assert change.shape == (2, 2) and np.all(change[0] == 0)
    np.testing.assert_allclose(change[1, 1], (res.label_probability[1] - res.baseline_label_probability)[by == 1].mean())


def test_normalised_effect_has_a_bootstrap_interval_around_it():
    """#28: the normalised effect carries an interval from the effect's resamples (each over its own baseline);
    it contains the estimate, is [0, 0] for the intact model, and is NaN for a class at floor."""
    net = torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)).eval()
    with torch.no_grad():                                      # hidden i = input i; output k = hidden k
        net[0].weight.copy_(torch.eye(7, 6)), net[0].bias.zero_(), net[2].weight.copy_(torch.eye(3, 7))
        net[2].bias.zero_()
    x = torch.rand(90, 6, generator=torch.Generator().manual_seed(0))
    y = x[:, :3].argmax(1)
    y[::4] = (y[::4] + 1) % 3                                  # a quarter wrong: every class above chance
    x, y = x[y != 2], y[y != 2]                                # ... and class 2 has no stimuli: NaN baseline
    res = lesion_sweep(net, "1", raw(x), y, groups=[[], [0], [1]], n_boot=300, progress=False)
    ci, estimate = res.normalised_interval, res.normalised_effect
    assert ci.shape == (3, 3, 2)
    np.testing.assert_array_equal(ci[0, :2], 0.0)
    ok = np.isfinite(ci[..., 0])
    assert ok[:, :2].all() and ci[1, 0, 1] < 0                  # silencing output 0's input lowers class 0
    assert np.all(ci[..., 0][ok] <= estimate[ok] + 1e-12) and np.all(estimate[ok] <= ci[..., 1][ok] + 1e-12)
    floor = ~(res.baseline_class > float(res.chance))         # class 2: no stimuli, NaN baseline
    assert floor.tolist() == [False, False, True] and np.all(np.isnan(ci[:, floor]))
    assert np.isnan(res.p_value[:, 2]).all() and np.isnan(res.q_value[:, 2]).all()  # no stimuli: no test
    joined = type(res).concat([res, res])                      # kept through concatenation
    np.testing.assert_array_equal(joined.normalised_interval[:3], ci)


def test_labels_outside_the_outputs_are_refused_naming_the_count():
    net, x = small_net(), torch.rand(6, 6)
    with pytest.raises(InsilicoError, match="3 entries"):
        lesion_sweep(net, "1", raw(x), [0, 1, 2, 3, 0, 1], n_boot=0, progress=False)


def test_a_channel_out_of_range_is_refused_before_any_forward():
    from insilico.errors import UnitError

    net, x = small_net(), torch.rand(6, 6)
    with pytest.raises(UnitError, match=r"\[9\] of groups= are out of range for 1, which has 7 channels"):
        lesion_sweep(net, "1", raw(x), [0, 1, 2, 0, 1, 2], groups=[[1], [9]], n_boot=0, progress=False)
