"""The closed loop (insilico/design/closed_loop.py): rounds add what the brain answered, refit, resume, refuse."""
import pytest
import torch
from torch import nn

from insilico.data.simulated import SimulatedBrain
from insilico.design.closed_loop import ClosedLoopResult, closed_loop, shrinkage
from insilico.encoding import fit_predictor
from insilico.errors import InsilicoError, JobMismatchError

STEPS = dict(steps=4, restarts=1)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1),
                         nn.ReLU()).eval()


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return nn.functional.interpolate(low, size=16, mode="bilinear", align_corners=False).clamp(0, 1)


class Fits:
    """fit(images, responses): a predictor from another network, counting the stimuli of every call."""

    def __init__(self):
        self.net, self.calls = _net(1), []

    def __call__(self, images, responses):
        self.calls.append((len(images), responses.clone()))
        return fit_predictor(self.net, images, responses, layers=["1"], reduce="mean", progress=False)


class NoiseFree(nn.Module):
    """A brain without ``respond``: the loop records ``brain(images)`` itself."""

    def __init__(self, brain):
        super().__init__()
        self.brain, self.targets = brain, brain.targets

    def forward(self, x):
        return self.brain(x)


@pytest.fixture(scope="module")
def experiment():
    images = _images(60)
    brain = SimulatedBrain(_net(0), "3", n_neurons=3, channels=2, rf_sigma=1.0, threshold=0.0,
                           calibration=images, seed=1)
    return brain, images, brain.respond(images, repetitions=2, seed=0)


def test_each_round_adds_the_designs_and_the_brains_recorded_responses_and_refits(experiment):
    brain, images, responses = experiment
    fits = Fits()
    loop = closed_loop(fits, brain, images, responses, rounds=3, seed=0, progress=False, **STEPS)
    per_round = 3 * 2  # 3 targets x 2 modes
    assert [n for n, _ in fits.calls] == [60, 60 + per_round, 60 + 2 * per_round]
    assert isinstance(loop, ClosedLoopResult) and len(loop) == 3 * per_round
    assert loop.rounds.tolist() == [0] * per_round + [1] * per_round + [2] * per_round
    assert loop.modes[:per_round] == ["stretch"] * 3 + ["one_hot"] * 3
    assert loop.responses.shape == (2, 3 * per_round, 3)  # as many repetitions as the natural responses
    # round 2 was fitted on the natural responses plus exactly what the brain answered in rounds 0 and 1
    fitted = fits.calls[2][1]
    torch.testing.assert_close(fitted[:, :60], responses)
    torch.testing.assert_close(fitted[:, 60:], loop.responses[:, :2 * per_round])
    # the recorded responses are Poisson draws of the brain's rates to the images shown
    assert torch.equal(loop.responses, loop.responses.round()) and (loop.responses >= 0).all()
    # the refit changed the predictor: round 1 predicts round 1's images otherwise than round 0's predictor did
    first = Fits()
    p0 = first(images, responses)
    with torch.no_grad():
        assert not torch.allclose(p0(loop.images[loop.rounds == 1]), loop.predicted[loop.rounds == 1])
        torch.testing.assert_close(p0(loop.images[loop.rounds == 0]), loop.predicted[loop.rounds == 0])
        torch.testing.assert_close(loop.predictor(loop.images[loop.rounds == 2]), loop.predicted[loop.rounds == 2])


def test_each_round_reports_predicted_and_measured_success_and_the_gap(experiment):
    brain, images, responses = experiment
    loop = closed_loop(Fits(), brain, images, responses, rounds=2, progress=False, **STEPS)
    rows = loop.table()
    assert [(r["round"], r["mode"]) for r in rows] == [(0, "stretch"), (0, "one_hot"), (1, "stretch"), (1, "one_hot")]
    for row in rows:
        assert row["gap_beyond"] == pytest.approx(row["predicted_beyond"] - row["measured_beyond"])
        assert row["gap_one_hot"] == pytest.approx(row["predicted_one_hot"] - row["measured_one_hot"])
        for key in ("predicted_beyond", "measured_beyond", "predicted_one_hot", "measured_one_hot"):
            assert 0.0 <= row[key] <= 1.0 and row[key] * 3 == pytest.approx(round(row[key] * 3))  # counts of 3
    assert "best_beyond" in rows[0] and "best_one_hot" in rows[1]
    # the measured fraction is the brain's: recomputed by hand for round 0's stretch images
    stretch = (loop.rounds == 0) & torch.as_tensor([m == "stretch" for m in loop.modes])
    with torch.no_grad():
        own = brain(loop.images[stretch]).gather(1, loop.targets[stretch][:, None])[:, 0]
        natural_max = brain(images).amax(0)[loop.targets[stretch]]
    assert rows[0]["measured_beyond"] == pytest.approx(float((own > natural_max).float().mean()))


def test_keeping_the_best_image_never_loses_ground_on_a_noise_free_brain(experiment):
    """With the brain's own (noise-free) answers, each target keeps its best image over a growing set:
    the fraction beyond the natural maximum can only rise from round to round."""
    brain, images, _ = experiment
    clean = NoiseFree(brain)
    with torch.no_grad():
        responses = brain(images)
    loop = closed_loop(Fits(), clean, images, responses, rounds=3, progress=False, **STEPS)
    assert loop.responses.shape[0] == 1
    for mode, key in (("stretch", "best_beyond"), ("one_hot", "best_one_hot")):
        best = [entry[mode][key] for entry in loop.report]
        assert best == sorted(best), best
        assert best[0] >= loop.report[0][mode]["measured_beyond" if mode == "stretch" else "measured_one_hot"]


def test_a_rerun_into_out_computes_only_missing_rounds_and_refuses_another_loop(experiment, tmp_path):
    brain, images, responses = experiment
    fits = Fits()
    first = closed_loop(fits, brain, images, responses, rounds=2, progress=False, out=tmp_path, **STEPS)
    assert len(fits.calls) == 2
    again = Fits()
    second = closed_loop(again, brain, images, responses, rounds=3, progress=False, out=tmp_path, **STEPS)
    assert [n for n, _ in again.calls] == [60, 60 + 12]  # the first fit (checked) and round 2's; rounds 0-1 read
    assert torch.equal(second.images[:12], first.images) and torch.equal(second.responses[:, :12], first.responses)
    assert second.report[:2] == first.report
    with pytest.raises(JobMismatchError, match="steps"):
        closed_loop(Fits(), brain, images, responses, rounds=3, progress=False, out=tmp_path, steps=5, restarts=1)
    with pytest.raises(JobMismatchError):
        closed_loop(Fits(), brain, images, responses * 2, rounds=3, progress=False, out=tmp_path, **STEPS)
    other = Fits()
    other.net = _net(2)  # another first predictor: the loop cannot be the one in the folder
    with pytest.raises(JobMismatchError, match="first_predictor"):
        closed_loop(other, brain, images, responses, rounds=3, progress=False, out=tmp_path, **STEPS)


@pytest.mark.parametrize("bad, match", [(dict(rounds=0), "rounds"), (dict(modes="stretch"), "modes"),
                                        (dict(modes=("stretch", "silence")), "modes"),
                                        (dict(candidates=0), "candidates"),
                                        (dict(init="best", candidates=61), "candidates <= the number of stimuli")])
def test_bad_settings_are_refused_before_any_fit(experiment, bad, match):
    brain, images, responses = experiment
    fits = Fits()
    with pytest.raises(InsilicoError, match=match):
        closed_loop(fits, brain, images, responses, progress=False, **{**STEPS, **bad})
    with pytest.raises(InsilicoError, match="do not match"):
        closed_loop(fits, brain, images, responses[:, :10], progress=False, **STEPS)
    assert fits.calls == []


def test_best_starts_climb_from_each_targets_best_estimated_images(experiment):
    """init="best": candidate c of a round starts from each target's c-th best image shown so far, ranked by the
    recorded means shrunk toward that round's predictor (refitted here by hand on the same stimuli); designs
    weighed by the predictor's error on earlier designs, as the loop predicted them when it designed them."""
    brain, images, responses = experiment
    budget = 0.5
    loop = closed_loop(Fits(), brain, images, responses, rounds=2, candidates=2, modes=("stretch",),
                       progress=False, init="best", budget=budget, parameterization="pixel", transforms=None,
                       steps=4, restarts=1, lr=0.05, confirm=None)
    seen_images, seen, recordings = images, responses.mean(0), responses
    for r in range(2):
        predictor = Fits()(seen_images, recordings)
        predicted = predictor(seen_images).detach()
        weight = shrinkage(responses, predicted[:len(images)]).expand(len(seen), -1).clone()
        before = loop.rounds < r
        if r:
            weight[len(images):] = shrinkage(loop.responses[:, before], loop.predicted[before])
            assert not torch.allclose(weight[len(images)], weight[0])  # two groups, two weights
        ranked = (predicted + weight * (seen - predicted)).argsort(0, descending=True)
        for c in range(2):
            designed = loop.images[(loop.rounds == r)][3 * c:3 * c + 3]
            distance = (designed - seen_images[ranked[c]]).flatten(1).norm(dim=1)
            assert (distance <= budget + 1e-4).all(), (r, c, distance)
        shown = loop.rounds == r
        seen_images = torch.cat([seen_images, loop.images[shown]])
        seen = torch.cat([seen, loop.responses[:, shown].mean(0)])
        recordings = torch.cat([recordings, loop.responses[:, shown]], 1)


class Lookup(nn.Module):
    """A predictor that knows each image by its (constant) pixel value: image value v -> (v * 100, 50)."""

    def forward(self, x):
        v = x.mean((1, 2, 3))
        return torch.stack([v * 100, torch.full_like(v, 50.0)], 1)


def test_a_design_the_predictor_overrates_is_weighed_by_its_error_on_designs_not_on_natural_images():
    from insilico.design.closed_loop import _best_starts

    values = torch.linspace(0.0, 0.5, 40)
    stimuli = values[:, None, None, None].expand(40, 3, 4, 4).clone()
    g = torch.Generator().manual_seed(0)
    truth = torch.stack([values * 100, torch.full_like(values, 50.0)], 1)
    responses = truth + torch.randn(4, 40, 2, generator=g)  # the predictor is exact on the natural stimuli
    design = torch.full((1, 3, 4, 4), 0.9)  # it predicts 90, and predicted 90 when designing it; the brain gave 5
    earlier = [{"images": design, "responses": torch.tensor([[[5.0, 50.0]]]).expand(4, 1, 2) +
                torch.randn(4, 1, 2, generator=g), "predicted": torch.tensor([[90.0, 50.0]])}]
    starts = _best_starts(Lookup(), stimuli, responses, earlier, ("stretch",), 2, 1.0)["stretch"]
    assert starts.shape == (2, 2, 3, 4, 4)
    # target 0: the recording rules the design (the predictor erred by 85 there): the two best natural stimuli
    torch.testing.assert_close(starts[:, 0, 0, 0, 0], values[[39, 38]])


def test_shrinkage_weighs_a_recording_by_its_noise_against_the_predictors_error():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(400, 2, generator=g) * 10
    noisy = truth + torch.randn(16, 400, 2, generator=g) * torch.tensor([0.1, 8.0])  # a quiet and a noisy target
    exact = shrinkage(noisy, truth)  # a predictor without error: trust it (weight at its floor)
    assert exact.max() < 0.02
    rough = truth + torch.randn(400, 2, generator=g) * 2.0  # a predictor with error variance 4
    weight = shrinkage(noisy, rough)
    # the recording's mean has variance 0.01 / 16 (quiet) and 64 / 16 (noisy): v / (v + s) with v = 4
    torch.testing.assert_close(weight, torch.tensor([4 / (4 + 0.01 / 16), 4 / (4 + 4.0)]), atol=0.06, rtol=0)
    assert torch.equal(shrinkage(noisy[0], rough), torch.ones(2))  # one recording: nothing to weigh it by


def test_candidates_are_all_shown_each_from_its_own_seed(experiment):
    brain, images, responses = experiment
    fits = Fits()
    loop = closed_loop(fits, brain, images, responses, rounds=2, candidates=2, modes=("stretch",), progress=False,
                       **STEPS)
    assert [n for n, _ in fits.calls] == [60, 66]  # 3 targets x 2 candidates shown in round 0
    assert loop.targets.tolist() == [0, 1, 2, 0, 1, 2] * 2 and loop.modes == ["stretch"] * 12
    first, second = loop.images[:3], loop.images[3:6]
    assert not torch.allclose(first, second)  # another seed, another image
    single = closed_loop(Fits(), brain, images, responses, rounds=1, modes=("stretch",), progress=False, **STEPS)
    torch.testing.assert_close(single.images, first)  # the first candidate is the plain design


def _recorded_rank(loop, rows, mode, responses, recorded=None):
    """Per row, the score a choice ranks it by, from recorded means only (the natural recordings standardise)."""
    from insilico.objectives.control import control_score
    recorded = loop.responses.mean(0) if recorded is None else recorded
    if mode == "stretch":
        return recorded[rows, loop.targets[rows]]
    natural = responses.mean(0)
    return control_score(recorded[rows], loop.targets[rows], natural.mean(0), natural.std(0))


def test_the_retest_reshows_each_targets_top_images_and_picks_on_all_their_recordings(experiment):
    brain, images, responses = experiment
    loop = closed_loop(Fits(), brain, images, responses, rounds=2, candidates=2, confirm=(5, 3), progress=False,
                       **STEPS)
    # 3 targets x 2 modes, 4 images each (2 rounds x 2 candidates): the top 3 of each re-shown 5 times
    assert loop.confirm_responses.shape == (5, 18, 3) and len(loop.confirmed) == 18
    assert loop.confirmation["presentations"] == 90 and loop.confirmation["repetitions"] == 5
    assert torch.equal(loop.confirm_responses, loop.confirm_responses.round())  # Poisson counts of the brain
    pooled = loop.responses.mean(0).clone()
    pooled[loop.confirmed] = torch.cat([loop.responses[:, loop.confirmed], loop.confirm_responses]).mean(0)
    for mode in ("stretch", "one_hot"):
        numbers = loop.confirmation[mode]
        key = "beyond" if mode == "stretch" else "one_hot"
        assert numbers[f"best_{key}"] == loop.report[-1][mode][f"best_{key}"]  # the unconfirmed choice, as reported
        assert numbers["targets"] == [0, 1, 2]
        for k, pick in zip(numbers["targets"], numbers["picks"]):
            rows = torch.as_tensor([i for i, m in enumerate(loop.modes) if m == mode and int(loop.targets[i]) == k])
            top = rows[_recorded_rank(loop, rows, mode, responses).argsort(descending=True, stable=True)[:3]]
            assert set(top.tolist()) <= set(loop.confirmed.tolist())  # the top 3 by the rounds' recordings
            assert pick == int(top[_recorded_rank(loop, top, mode, responses, pooled).argmax()])


class Liar(nn.Module):
    """A brain whose recordings rank images against its truth: it records ``10 - brain(images)``."""

    def __init__(self, brain):
        super().__init__()
        self.brain, self.targets = brain, brain.targets

    def forward(self, x):
        return self.brain(x)

    def respond(self, images, repetitions=4, seed=0):
        with torch.no_grad():
            return (10 - self.brain(images))[None].expand(repetitions, -1, -1).clone()


def test_the_pick_is_the_recorded_choice_never_the_truths(experiment):
    brain, images, _ = experiment
    liar = Liar(brain)
    loop = closed_loop(Fits(), liar, images, liar.respond(images, 2), rounds=2, candidates=2, modes=("stretch",),
                       confirm=(3, 4), progress=False, **STEPS)
    numbers = loop.confirmation["stretch"]
    with torch.no_grad():
        truth = brain(loop.images)
    picks = torch.as_tensor(numbers["picks"])
    for k, pick in zip(numbers["targets"], numbers["picks"]):
        rows = (loop.targets == k).nonzero()[:, 0]
        assert pick == int(rows[truth[rows, k].argmin()])  # recorded best = true worst
    natural_max = truth.new_tensor(brain(images).amax(0).tolist())
    won = truth[picks, torch.as_tensor(numbers["targets"])] > natural_max[numbers["targets"]]
    assert numbers["confirmed_beyond"] == pytest.approx(float(won.float().mean()))


def test_no_retest_leaves_the_rounds_alone_and_a_single_image_is_not_reshown(experiment):
    brain, images, responses = experiment
    plain = closed_loop(Fits(), brain, images, responses, rounds=2, confirm=None, progress=False, **STEPS)
    retested = closed_loop(Fits(), brain, images, responses, rounds=2, confirm=(4, 2), progress=False, **STEPS)
    assert plain.confirmation == {} and len(plain.confirmed) == 0
    assert torch.equal(plain.images, retested.images) and torch.equal(plain.responses, retested.responses)
    assert retested.confirmation["presentations"] == 4 * 12  # 3 targets x 2 modes x 2 images, 4 times
    single = closed_loop(Fits(), brain, images, responses, rounds=1, confirm=(4, 2), progress=False, **STEPS)
    assert single.confirmation["presentations"] == 0 and single.confirm_responses.shape == (4, 0, 3)
    for mode, key in (("stretch", "beyond"), ("one_hot", "one_hot")):  # nothing to choose from: the one image
        assert single.confirmation[mode][f"confirmed_{key}"] == single.confirmation[mode][f"best_{key}"]


def test_a_rerun_into_out_keeps_the_retest_and_refuses_another(experiment, tmp_path):
    brain, images, responses = experiment
    first = closed_loop(Fits(), brain, images, responses, rounds=2, confirm=(3, 2), progress=False, out=tmp_path,
                        **STEPS)
    again = Fits()
    second = closed_loop(again, brain, images, responses, rounds=2, confirm=(3, 2), progress=True, out=tmp_path,
                         **STEPS)  # progress is the display, not the job
    assert len(again.calls) == 1  # the first fit only (checked): both rounds read back
    assert second.confirmation == first.confirmation
    assert torch.equal(second.confirm_responses, first.confirm_responses)
    with pytest.raises(JobMismatchError, match="confirm"):
        closed_loop(Fits(), brain, images, responses, rounds=2, confirm=(3, 4), progress=False, out=tmp_path, **STEPS)


@pytest.mark.parametrize("confirm", [16, (0, 4), (16, 0), (16, 4, 1), (16.0, 4), (True, 4)])
def test_a_bad_retest_is_refused_before_any_fit(experiment, confirm):
    brain, images, responses = experiment
    fits = Fits()
    with pytest.raises(InsilicoError, match="confirm"):
        closed_loop(fits, brain, images, responses, confirm=confirm, progress=False, **STEPS)
    assert fits.calls == []
