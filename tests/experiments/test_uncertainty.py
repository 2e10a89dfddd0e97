"""Every experiment result carries its uncertainty (issue 28): lesion intervals, reliability, floor/ceiling,
random-order bands, microstimulation's a-priori class and permutation test, RSA's set of best layers.

Each test is built so that what it asserts holds by construction (hand-set weights, identical models).
"""
import numpy as np
import pytest
import torch
from torch import nn

from insilico import rsa
from insilico.errors import InsilicoError, SavedFileError
from insilico.experiments import LesionResult, cumulative_lesion, lesion_sweep, microstimulation
from insilico.statistics import rng_for, sign_flip_p, spearman_brown
from insilico.pixels import raw


def _halves_net():
    """2 classes from x = (s, b), s = +-1 the class, b = +-1 a nuisance. Hidden 0, 1 carry s, hidden 2, 3 carry b
    weakly; a third output (class 2) is never chosen. Lesioning hidden 0, 1 leaves b: exactly half of each class
    right, i.e. chance."""
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[10.0, 0], [-10, 0], [0, 1], [0, -1]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0, 1.0, 0, 0.1], [1, 0, 0.1, 0], [0, 0, 0, 0]]))
        net[2].bias.copy_(torch.tensor([0, 0, -100.0]))
    s = torch.tensor([1.0, -1.0]).repeat_interleave(20)
    b = torch.tensor([1.0, -1.0]).repeat(20)
    x = torch.stack([s, b], 1)
    y = (s > 0).long()                      # class 1 where s > 0, class 0 where s < 0
    x = torch.cat([x, torch.tensor([[1.0, 1], [1, -1]] * 5)])
    y = torch.cat([y, torch.full((10,), 2)])  # class 2: predicted as class 1, never right (floor)
    return net, raw(x), y


def test_lesioning_nothing_gives_zero_with_an_interval_of_zero_width():
    net, x, y = _halves_net()
    res = lesion_sweep(net, "1", x, y, groups=[[]], n_boot=200, progress=False)
    np.testing.assert_array_equal(res.effect_interval[0, :2], 0.0)
    assert not res.nonzero.any() and not res.dissociable.any()


def test_a_lesion_down_to_chance_is_minus_one_and_floor_and_ceiling_are_flagged():
    net, x, y = _halves_net()
    res = lesion_sweep(net, "1", x, y, groups=[[0, 1], [2, 3]], n_boot=500, progress=False)
    np.testing.assert_array_equal(res.baseline_class, [1.0, 1.0, 0.0])
    assert float(res.chance) == pytest.approx(1 / 3)
    np.testing.assert_array_equal(res.at_ceiling, [True, True, False])
    np.testing.assert_array_equal(res.at_floor, [False, False, True])
    # (acc - baseline) / (baseline - chance) with acc = 1/2: chance for these two classes is 1/2 of each class
    np.testing.assert_allclose(res.normalised_effect[0, :2], (0.5 - 1.0) / (1.0 - 1 / 3))
    assert np.isnan(res.normalised_effect[:, 2]).all()          # at floor: no drop can show
    assert res.nonzero[0, :2].all()                            # 20 images per class: half right in every resample?
    assert not res.dissociable.any()                           # ...but classes at ceiling or floor are no claim
    np.testing.assert_array_equal(res.effect[1], 0.0)           # the nuisance units change nothing
    lo, hi = res.effect_interval[1, :2, 0], res.effect_interval[1, :2, 1]
    assert np.all(lo < 0) and np.all(hi > 0) and not res.nonzero[1].any()  # none of 20 changed: others still may


def _rare_net():
    """2 classes from x = (s, r): s = +-1 the class; a class-1 image with r = 1 looks like class 0 (s = -0.1) and is
    right only through hidden 2 (= r). Lesioning hidden 2 makes exactly those images wrong."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[10.0, 0], [-10, 0], [0, 1]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0, 1.0, 0], [1, 0, 5]]))
        net[2].bias.zero_()
    return net


def _rare_set(per_class: int, rare: int):
    x = torch.tensor([[-1.0, 0]] * per_class + [[1.0, 0]] * (per_class - rare) + [[-0.1, 1]] * rare)
    return raw(x), torch.arange(2).repeat_interleave(per_class)


def test_a_lesion_interval_covers_the_effect_a_larger_sample_shows_when_no_image_of_the_small_one_changed():
    net = _rare_net()
    big = lesion_sweep(net, "1", *_rare_set(160, 10), groups=[[2]], progress=False)
    assert big.effect[0, 1] == pytest.approx(-10 / 160)         # 1 in 16 class-1 images needs hidden 2
    small = lesion_sweep(net, "1", *_rare_set(16, 0), groups=[[2]], progress=False)
    assert small.effect[0, 1] == 0.0                              # none of the 16 drawn needs it
    lo, hi = small.effect_interval[0, 1]
    assert lo < big.effect[0, 1] < hi                             # a percentile bootstrap gave [0, 0] here
    assert small.p_value[0, 1] == 1.0 and not small.nonzero[0, 1]


def test_a_matrix_of_null_entries_marks_none_dissociable():
    from insilico.experiments.lesions import lesion_uncertainty
    g = np.random.default_rng(0)
    groups, per = 300, 30                                         # 600 entries, each with no effect
    y = np.repeat(np.arange(2), per)
    base = np.tile(np.arange(per) % 3 > 0, 2)                     # 2/3 right at baseline
    correct = base[None] ^ (g.random((groups, 2 * per)) < np.where(base, 0.1, 0.2))  # as many gained as lost
    arrays = dict(groups=np.arange(groups).astype(str), classes=np.array(["a", "b"]), chance=np.array(0.5),
                  labels=y, correct=correct, baseline_correct=base, baseline_class=np.array([2 / 3, 2 / 3]),
                  class_accuracy=np.stack([correct[:, y == k].mean(1) for k in range(2)], 1),
                  **lesion_uncertainty(correct, base, y, 2))
    res = LesionResult(arrays, {})
    assert res.nonzero.sum() > 0 and (res.p_value < 0.05).sum() > 0   # single tests: some chance "effects"
    assert not res.dissociable.any() and np.nanmin(res.q_value) > 0.05  # the matrix read as a family: none


def test_with_the_intact_models_decisions_as_labels_a_drop_is_dissociable():
    net, x, _ = _halves_net()
    res = lesion_sweep(net, "1", x, "decision", groups=[[0, 1], [2, 3]], progress=False)
    assert res.at_ceiling[:2].all()                               # agreement with itself: 1.0 by construction
    np.testing.assert_array_equal(res.effect[0, :2], -0.5)        # half of every class's decisions change
    assert res.dissociable[0, :2].all() and not res.dissociable[1].any()


def test_lesion_noise_estimates_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(60, 5)
    y = torch.arange(60) % 3
    state, np_state = torch.get_rng_state(), np.random.get_state()
    a = lesion_sweep(net, "1", raw(x), y, n_boot=200, seed=1, progress=False)
    assert torch.equal(state, torch.get_rng_state()) and np.array_equal(np_state[1], np.random.get_state()[1])
    b = lesion_sweep(net, "1", raw(x), y, n_boot=200, seed=1, progress=False)
    c = lesion_sweep(net, "1", raw(x), y, n_boot=200, seed=2, progress=False)
    np.testing.assert_array_equal(a.effect_interval, b.effect_interval)
    assert float(a.split_half_r) == float(b.split_half_r)
    np.testing.assert_array_equal(a.effect_interval, c.effect_interval)  # closed form: no resampling
    assert float(a.reliability) == pytest.approx(spearman_brown(float(a.split_half_r)))
    lo, hi = a.effect_interval[..., 0], a.effect_interval[..., 1]
    assert np.all(lo <= a.effect + 1e-12) and np.all(a.effect <= hi + 1e-12)  # paired: the estimate is inside


def test_joined_sweeps_equal_the_whole_and_old_files_are_refused(tmp_path):
    net, x, y = _halves_net()
    groups = [[0], [1], [2], [3]]
    whole = lesion_sweep(net, "1", x, y, groups=groups, n_boot=100, progress=False)
    joined = LesionResult.concat([lesion_sweep(net, "1", x, y, groups=g, n_boot=100, progress=False)
                                  for g in (groups[:2], groups[2:])])
    np.testing.assert_array_equal(joined.effect_interval, whole.effect_interval)
    assert float(joined.split_half_r) == pytest.approx(float(whole.split_half_r), nan_ok=True)
    whole.save(tmp_path / "sweep.pt")
    back = LesionResult.load(tmp_path / "sweep.pt")
    np.testing.assert_array_equal(back.effect_interval, whole.effect_interval)
    np.testing.assert_array_equal(back.dissociable, whole.dissociable)
    assert back.chance.shape == () and float(back.reliability) == pytest.approx(float(whole.reliability), nan_ok=True)
    exported = whole.export(tmp_path / "sweep")
    assert LesionResult.load(exported[0]).correct.shape == (4, 50)
    assert "0 q" in exported[-1].read_text()                    # the matrix's q-values travel with it
    blob = torch.load(tmp_path / "sweep.pt", weights_only=True)   # a file of an older insilico: no intervals
    arrays = blob["result"]["fields"]["arrays"]
    arrays["__dict__"] = [kv for kv in arrays["__dict__"] if kv[0] != "effect_interval"]
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(SavedFileError, match=r"older insilico.*run the experiment again"):
        LesionResult.load(tmp_path / "old.pt")
    assert whole.plot() is not None


def test_cumulative_lesion_has_several_seeded_random_orders():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    x = torch.randn(45, 5)
    with torch.no_grad():
        y = net(x).argmax(1)
    a = cumulative_lesion(net, "1", raw(x), y, n_points=4, n_random=5, seed=4, progress=False)
    b = cumulative_lesion(net, "1", raw(x), y, n_points=4, n_random=5, seed=4, progress=False)
    c = cumulative_lesion(net, "1", raw(x), y, n_points=4, n_random=5, seed=5, progress=False)
    assert a.random_orders.shape == (5, 12) and len({tuple(o) for o in a.random_orders}) == 5
    np.testing.assert_array_equal(a.random_orders, b.random_orders)
    np.testing.assert_array_equal(a.accuracy_random_all, b.accuracy_random_all)
    assert not np.array_equal(a.random_orders, c.random_orders)
    assert a.accuracy_random_all.shape == (5, 4)
    np.testing.assert_allclose(a.accuracy_random, a.accuracy_random_all.mean(0))
    band = a.accuracy_random_band
    assert np.all(band[:, 0] <= a.accuracy_random + 1e-12) and np.all(a.accuracy_random <= band[:, 1] + 1e-12)
    assert a.accuracy_random[0] == a.accuracy_most[0] == 1.0 and a.accuracy_random[-1] == a.accuracy_most[-1]
    assert a.plot() is not None
    below = (a.accuracy_random_all <= a.accuracy_most[None] + 1e-12).sum(0)   # random orders at or below "most"
    np.testing.assert_allclose(a.p_most, (1 + below) / 6)
    assert a.p_most[0] == a.p_most[-1] == a.p_least[0] == a.p_least[-1] == 1.0  # same channels lesioned: no effect


def test_the_default_random_orders_can_reach_p_005():
    net = nn.Sequential(nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 2)).eval()
    with torch.no_grad():                        # class 1 is read while any of hidden 0-9 is on (redundant copies)
        net[0].weight.copy_(torch.eye(40))
        net[0].bias.zero_()
        net[2].weight.zero_()
        net[2].weight[1, :10] = 1.0
        net[2].bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.zeros(8, 40)
    x[:4, :10] = 1.0
    y = torch.tensor([1] * 4 + [0] * 4)
    res = cumulative_lesion(net, "1", raw(x), y, n_points=5, progress=False)
    # no single lesion matters, so the ranking is the stable order 0, 1, ...: the first 10 lesioned are 0-9
    assert res.accuracy_random_all.shape[0] == 19 and list(res.n_lesioned[:2]) == [0, 10]
    assert res.accuracy_most[1] == 0.5 and np.all(res.accuracy_random_all[:, 1] == 1.0)  # random: C(40, 10) orders
    assert res.p_most[1] == pytest.approx(1 / 20)   # below every random order: the floor, 0.05 (10 orders: 0.09)


def _wired(readout: list[int]):
    """x = one-hot of 3 classes; hidden k = x_k (so hidden 1 prefers class 1); hidden k drives output readout[k]."""
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.eye(3)[readout].T)
        net[2].bias.zero_()
    y = torch.arange(3).repeat(10)
    return net, raw(torch.eye(3)[y]), y


def test_microstimulation_predicts_the_sites_preferred_class_a_priori():
    net, x, y = _wired([0, 1, 2])                # hidden 1 prefers class 1 and drives class 1
    res = microstimulation(net, "1[1]", x, strengths=[0, 2, 8], labels=y, progress=False)
    assert res.target_class == 1 and res.settings["target_chosen"].startswith("preferred")
    assert int(np.nanargmax(res.site_tuning)) == 1
    trials = res.held_out
    assert 0 < trials.sum() < 30 and res.settings["n_trials"] == int(trials.sum())
    assert res.p_value[0] == 1.0                         # no current: no effect, p = 1 by construction
    assert res.p_value[-1] <= 3 / 1001                   # every trial moves towards class 1: near the floor 1/1001
    assert list(res.target_rank) == [3, 1, 1]            # no current: a tie with every class is no rise
    assert np.all(res.target_shift_interval[1:, 0] > 0)
    same = microstimulation(net, "1[1]", x, strengths=[0, 2, 8], labels=y, progress=False)
    np.testing.assert_array_equal(same.p_value, res.p_value)
    np.testing.assert_array_equal(same.held_out, res.held_out)


def test_microstimulation_does_not_pick_the_class_that_rises_after_the_fact():
    net, x, y = _wired([0, 2, 1])                # hidden 1 prefers class 1 but drives class 2
    res = microstimulation(net, "1[1]", x, strengths=[0, 4], labels=y, progress=False)
    assert res.target_class == 1                         # chosen from the tuning, not from the outcome
    assert int(np.argmax(res.shift[-1])) == 2 and res.target_rank[-1] > 1
    assert res.p_value[-1] == 1.0                        # the target falls on every trial: the smallest mean possible
    with torch.no_grad():
        net[0].weight[1].zero_()                         # hidden 1 is silent: no preferred class to predict
    with pytest.raises(InsilicoError, match="no preferred class.*target="):
        microstimulation(net, "1[1]", x, strengths=[0, 4], labels=y, progress=False)


def test_the_predicted_class_never_sees_the_trials():
    net, x, y = _wired([0, 1, 2])                # hidden 1 prefers class 1
    res = microstimulation(net, "1[1]", x, strengths=[0, 2], labels=y, progress=False)
    trials = torch.as_tensor(res.held_out)
    leaked = torch.eye(3)[y]                     # the stimuli of _wired
    leaked[trials & (y == 2), 1] = 50.0          # on the trials only, class 2 now drives the site far more
    again = microstimulation(net, "1[1]", raw(leaked), strengths=[0, 2], labels=y, progress=False)
    np.testing.assert_array_equal(again.held_out, res.held_out)  # the halves depend on the labels and seed alone
    assert again.target_class == res.target_class == 1
    np.testing.assert_array_equal(again.site_tuning, res.site_tuning)


def test_a_drift_that_lifts_another_class_more_is_not_specific_to_the_target():
    net, x, y = _wired([0, 1, 2])                # hidden 1 prefers class 1, drives class 1 and class 2 more
    with torch.no_grad():
        net[2].weight[:, 1] = torch.tensor([-3.0, 1.0, 1.5])
    res = microstimulation(net, "1[1]", x, strengths=[0, 0.2], labels=y, progress=False)
    assert res.target_class == 1 and res.shift[-1, 1] > 0 and res.target_rank[-1] == 2
    assert res.p_value[-1] < 0.05                        # the target's probability does rise ...
    assert res.specificity_p[-1] > 0.5                   # ... but class 2 rises more on every trial: no specificity
    assert res.specificity_p[0] == 1.0 and "specificity_p" in res.table()
    net, x, y = _wired([0, 1, 2])
    ok = microstimulation(net, "1[1]", x, strengths=[0, 8], labels=y, progress=False)
    assert ok.specificity_p[-1] <= 3 / 1001              # the site's class rises above each other class on each trial


def test_microstimulation_scales_the_current_per_neuron():
    g = torch.Generator().manual_seed(0)
    spread = torch.linspace(0.05, 0.45, 16).reshape(1, 1, 4, 4)
    x = (0.5 + spread * (2 * torch.rand(40, 1, 4, 4, generator=g) - 1)).clamp(0, 1)
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    res = microstimulation(net, "0[0]", x, strengths=[0, 1], scale="std", target=0, progress=False)
    np.testing.assert_allclose(res.neuron_scale, x.std(0).reshape(-1).numpy(), rtol=1e-5)
    assert res.settings["unit_scale"] == pytest.approx(float(res.neuron_scale.mean()))
    assert "per neuron" in res.settings["current"] and res.held_out.all()


def test_permutation_p_floor_and_the_rsa_best_set():
    rng = rng_for(0, "test")
    assert sign_flip_p(np.zeros((1, 10)), 50, rng).tolist() == [1.0]
    g = torch.Generator().manual_seed(0)
    truth = rsa.rdm(torch.rand(16, 4, generator=g, dtype=torch.float64))
    noise = rsa.rdm(torch.rand(16, 4, generator=g, dtype=torch.float64))
    res = rsa.bootstrap({"a": truth, "copy": truth, "noise": noise}, truth, n_boot=100, progress=False)
    assert res.names[res.best] in ("a", "copy") and sorted(res.best_set()) == ["a", "copy"]


def test_the_rsa_best_set_is_corrected_for_testing_every_model_against_the_best():
    """Each other model is worse than the best on all but 19 of 999 paired resamples (one-sided p = 0.02 < 0.025):
    alone it leaves the set; three of them together do not (Holm: 3 x 0.02 > 0.025), and a clearly worse one does."""
    from insilico.rsa.bootstrap import BootstrapResult

    d = np.r_[np.full(19, -0.01), np.full(980, 0.05)]                # best - model, 19 at or below 0

    def result(n_tied, clear=False):
        cols = [np.full(999, 0.5)] + [0.5 - np.roll(d, k) for k in range(n_tied)] + ([np.full(999, 0.1)] if clear else [])
        names = ["best"] + [f"m{k}" for k in range(n_tied)] + (["worse"] if clear else [])
        est = np.array([c.mean() for c in cols]); est[0] = 1.0
        return BootstrapResult(names, est, np.stack(cols, 1), np.zeros((len(cols), 2)), np.zeros(len(cols)),
                               "spearman", "stimuli", 0.95)

    assert result(1).best_set() == ["best"]
    assert result(3).best_set() == ["best", "m0", "m1", "m2"]
    assert result(3, clear=True).best_set() == ["best", "m0", "m1", "m2"]  # p 1/1000 x 4 = 0.004: the worse one leaves
