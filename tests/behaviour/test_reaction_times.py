"""reaction_times(): the decision rule on hand-built readout sequences, a hand-built recurrent model, the bundled
BLT network, and the speed-accuracy trade-off."""
import math

import pytest
import torch
from torch import nn

from insilico import InsilicoError, UnitError
from insilico.behaviour import decide, reaction_times
from insilico.behaviour.reaction_times import ReactionTimeResult


def test_the_decision_rule_on_hand_built_readout_sequences():
    p = torch.tensor([[[0.5, 0.5], [0.8, 0.2], [0.95, 0.05]],    # confident at step 2
                      [[0.1, 0.9], [0.5, 0.5], [0.5, 0.5]],      # confident at once, then unsure
                      [[0.6, 0.4], [0.4, 0.6], [0.55, 0.45]]])   # never confident
    rt, choice, decided = decide(p, 0.9, "confidence")
    assert rt.tolist() == [2, 0, 2] and choice.tolist() == [0, 1, 0] and decided.tolist() == [True, True, False]
    h = -(p * p.log()).sum(-1)  # entropy in nats
    rt, choice, decided = decide(p, float(h[0, 1]), "entropy")
    assert rt.tolist() == [1, 0, 2] and decided.tolist() == [True, True, False]
    with pytest.raises(InsilicoError, match="criterion must be one of"):
        decide(p, 0.5, "margin")


class Accumulator(nn.Module):
    """A 'recurrent' network whose readout is called once per step on evidence that grows linearly: logits at step t
    are (t + 1) * w x, so the confidence of every image rises step by step, computable by hand."""

    def __init__(self, timesteps=4):
        super().__init__()
        self.timesteps = timesteps
        self.readout = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.readout.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))

    def forward(self, x):
        v = x.flatten(1)[:, :2]
        return [self.readout(v * (t + 1)) for t in range(self.timesteps)][-1]


def test_a_hand_built_recurrent_readout_answers_when_its_confidence_crosses():
    x = torch.zeros(3, 1, 1, 2)
    x[0, 0, 0] = torch.tensor([0.6, 0.4])   # margin 0.4 per step: logit gap 0.4 (t + 1)
    x[1, 0, 0] = torch.tensor([0.3, 0.7])   # gap 0.8 (t + 1), for class 1
    x[2, 0, 0] = torch.tensor([0.5, 0.5])   # no evidence at all
    res = reaction_times(Accumulator(), x, labels=[0, 1, 0], threshold=0.8, thresholds=[0.6, 0.8, 0.95],
                         progress=False)
    gap = torch.tensor([0.4, -0.8, 0.0])[:, None] * torch.arange(1, 5)  # logit 0 - logit 1 per step
    expected = torch.stack([torch.sigmoid(gap), torch.sigmoid(-gap)], -1)
    assert torch.allclose(res.probabilities, expected.double(), atol=1e-6)
    # confidence sigmoid(gap) >= 0.8 first when |gap| >= log 4 = 1.386: image 0 at step 3 (gap 1.6), image 1 at step 1
    assert res.rt.tolist() == [3, 1, 3] and res.decided.tolist() == [True, True, False]
    assert res.choice.tolist()[:2] == [0, 1]
    assert res.settings["readout"] == "readout" and res.probabilities.shape == (3, 4, 2)
    # the trade-off: a higher threshold answers no sooner (by construction of the first crossing)
    assert (res.mean_rt.diff() >= 0).all()
    assert res.trials("acc").rt == [3.0, 1.0, 3.0]


def test_a_labelled_folder_gives_the_trade_off_its_accuracies(tmp_path):
    """Without labels=, a folder's classes are the truth (matched to model.classes by name), as in confusion();
    before, they were dropped and every accuracy was NaN."""
    import numpy as np
    skimage = pytest.importorskip("skimage.io")
    for name, pixel in [("a/0.png", (153, 102)), ("b/1.png", (76, 178)), ("b/2.png", (178, 76))]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        skimage.imsave(tmp_path / name, np.array(pixel, np.uint8).reshape(1, 2), check_contrast=False)
    model = Accumulator()
    model.classes = ["a", "b"]
    res = reaction_times(model, str(tmp_path), threshold=0.6, thresholds=[0.6], progress=False)
    assert res.labels.tolist() == [0, 1, 1] and res.classes == ["a", "b"]
    assert res.choice.tolist() == [0, 1, 0] and res.accuracy.tolist() == [pytest.approx(2 / 3)]
    model.classes = ["b", "a"]                     # matched by name, not by the folder's order
    res = reaction_times(model, str(tmp_path), threshold=0.6, thresholds=[0.6], progress=False)
    assert res.labels.tolist() == [1, 0, 0] and res.accuracy.tolist() == [pytest.approx(1 / 3)]


def test_the_bundled_blt_network_and_the_speed_accuracy_trade_off(tmp_path):
    from insilico import models
    from insilico.models import photos

    net = models.load("blt")
    x, y = photos.held_out(per_class=1)
    res = reaction_times(net, x, y, threshold=0.5, batch_size=8, progress=False)
    assert res.probabilities.shape == (16, net.timesteps, 16) and res.rt.shape == (16,)
    assert torch.allclose(res.probabilities.sum(-1), torch.ones(16, net.timesteps, dtype=torch.float64))
    last = net.eval()(x).softmax(-1).double()
    assert torch.allclose(res.probabilities[:, -1], last, atol=1e-5)  # the last step's readout is the model's output
    assert (res.mean_rt.diff() >= 0).all() and len(res.thresholds) == 10
    entropy = reaction_times(net, x, y, threshold=1.0, criterion="entropy", batch_size=8, progress=False)
    assert (entropy.mean_rt.diff() >= 0).all()  # thresholds from log K down to 0: later and later
    res.save(tmp_path / "rt.pt")
    back = ReactionTimeResult.load(tmp_path / "rt.pt")
    assert torch.equal(back.rt, res.rt) and torch.equal(back.probabilities, res.probabilities)
    assert res.plot().axes and res.trials().classes


def test_refusals():
    x = torch.rand(2, 1, 1, 2)
    with pytest.raises(InsilicoError, match=r"confidence threshold lies in \(0, 1\]"):
        reaction_times(Accumulator(), x, threshold=1.5, progress=False)
    with pytest.raises(InsilicoError, match="entropy threshold"):
        reaction_times(Accumulator(), x, threshold=-1, criterion="entropy", progress=False)
    with pytest.raises(UnitError):
        reaction_times(Accumulator(), x, readout="nowhere", progress=False)
    with pytest.raises(InsilicoError, match="without labels"):
        reaction_times(Accumulator(), x, progress=False).trials()
    assert math.isnan(float(reaction_times(Accumulator(), x, progress=False).accuracy[0]))
