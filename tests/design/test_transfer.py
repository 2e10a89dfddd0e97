"""rank_candidates: a pilot on the brain ranks candidate networks by what its recordings say transfers."""
import numpy as np
import pytest
import torch
from torch import nn

from insilico.data.simulated import SimulatedBrain
from insilico.design.transfer import rank_candidates
from insilico.encoding import Ensemble, fit_predictor
from insilico.errors import InsilicoError

PILOT = dict(steps=24, progress=False)


def net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                         nn.ReLU()).eval()


def smooth_images(n, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def brain_of(network, images, seed=1):
    return SimulatedBrain(network, "3", n_neurons=6, channels=2, rf_sigma=1.0, threshold=0.0,
                          calibration=images[:200], seed=seed)


def fit_on(network):
    return lambda images, responses: fit_predictor(network, images, responses, layers=["3"], progress=False)


@pytest.fixture(scope="module")
def setup():
    images = smooth_images(300)
    nets = {"own": net(0), "other": net(5)}
    brain = brain_of(nets["own"], images)
    return images, nets, brain, brain.respond(images, repetitions=4, seed=0)


def test_the_brains_own_network_ranks_first_and_alone_forms_the_ensemble(setup):
    images, nets, brain, responses = setup
    ranking = rank_candidates({"other": fit_on(nets["other"]), "own": fit_on(nets["own"])}, brain, images,
                              responses, top=1, **PILOT)
    assert ranking.order == ["own", "other"] and ranking.chosen == ["own"]
    own, other = ranking.rows
    assert own["recorded_beyond"] >= 0.8 and own["score"] == own["recorded_stretch"] > 1.5 * other["score"]
    assert ranking.ensemble is ranking.predictors["own"]
    # held-out r is the fitted predictor's, reported beside what transfers
    assert own["held_out_r"] == pytest.approx(float(np.median(ranking.predictors["own"].scores["r"])))
    # the pilot showed each target a stretch and a one-hot image and recorded 4 repetitions
    pilot = ranking.pilots["own"]
    assert pilot.responses.shape == (4, 12, 6) and sorted(set(pilot.modes)) == ["one_hot", "stretch"]


class SplitBrain(nn.Module):
    """Truth (``forward``) from one simulated brain, recordings (``respond``) from another: a brain whose
    truth and recordings disagree in a known way."""

    def __init__(self, truth, recorded):
        super().__init__()
        self.truth, self.recorded = truth, recorded

    def forward(self, images):
        return self.truth(images)

    def respond(self, images, repetitions=4, seed=0):
        return self.recorded.respond(images, repetitions, seed=seed)


def test_the_ranking_follows_the_recordings_not_the_truth(setup):
    images, nets, truth_brain, _ = setup
    recorded_brain = brain_of(nets["other"], images, seed=2)
    brain = SplitBrain(truth_brain, recorded_brain)
    recorded = recorded_brain.respond(images, repetitions=4, seed=0)
    candidates = {"truth's": fit_predictor(nets["own"], images, truth_brain.respond(images, 4, seed=0),
                                           layers=["3"], progress=False),
                  "recordings'": fit_predictor(nets["other"], images, recorded, layers=["3"], progress=False)}
    ranking = rank_candidates(candidates, brain, images, recorded, top=1, **PILOT)
    assert ranking.order == ["recordings'", "truth's"] and ranking.chosen == ["recordings'"]
    truths = ranking.rows[1]
    # the truth would have ranked the other way: the truth's network drives the truth, not the recordings
    assert truths["truth_beyond"] >= 0.8 and truths["truth_beyond"] > truths["recorded_beyond"] + 0.3
    assert ranking.predictors["truth's"] is candidates["truth's"]  # a fitted predictor is used as given


def test_the_ensemble_keeps_the_top_candidates_above_the_floor_and_refits_them(setup):
    images, nets, brain, responses = setup
    fits = {"own": fit_on(nets["own"]), "other": fit_on(nets["other"]), "third": fit_on(net(9))}
    ranking = rank_candidates(fits, brain, images, responses, top=2, floor=0.0, **PILOT)
    assert ranking.chosen == ranking.order[:2] and isinstance(ranking.ensemble, Ensemble)
    refit = ranking.fit(images[:200], responses[:, :200])
    assert isinstance(refit, Ensemble) and len(refit.members) == 2
    trunks = {"own": nets["own"], "other": nets["other"]}
    assert all(m.trunk is trunks[n] for n, m in zip(ranking.chosen, refit.members) if n in trunks)
    # a floor of 1 keeps only the candidates as good as the best
    strict = rank_candidates(fits, brain, images, responses, top=3, floor=1.0, **PILOT)
    best = strict.rows[0]["score"]
    assert strict.chosen == [row["name"] for row in strict.rows if row["score"] >= best]


@pytest.mark.parametrize("candidates, options, message", [
    ({}, {}, "non-empty dict"),
    ({"a": 3}, {}, "candidate 'a' is a int"),
    ({"a": nn.Identity()}, {"top": 0}, "top must be an integer >= 1"),
    ({"a": nn.Identity()}, {"floor": 1.5}, r"floor must be a number in \[0, 1\]"),
    ({"a": nn.Identity()}, {"modes": ("one_hot",)}, "the pilot scores the stretch designs"),
])
def test_bad_arguments_are_refused_before_the_pilot(setup, candidates, options, message):
    images, _, brain, responses = setup
    with pytest.raises(InsilicoError, match=message):
        rank_candidates(candidates, brain, images, responses, **options, **PILOT)


def test_the_probes_pool_excludes_the_different_brains_network_and_reads_other_seeds():
    import importlib.util
    from pathlib import Path

    from insilico.data.simulated import BRAINS

    path = Path(__file__).resolve().parents[2] / "probes" / "population_control.py"
    spec = importlib.util.spec_from_file_location("probe_population_control", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert BRAINS["different"][0] not in module.POOL and "minialex" in module.POOL
    assert module.pool_of(["b", "bl@seed1=w/bl.pt"]) == {"b": ("b", "DEFAULT"), "bl@seed1": ("bl", "w/bl.pt")}
    with pytest.raises(InsilicoError, match="--pool 'blt'"):
        module.pool_of(["blt"])
