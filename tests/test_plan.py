"""One forward plan per call (insilico.plan) and the batched evaluate loops (insilico.evaluate).

Acceptance of issue 24 item 1: ``orientation_tuning`` runs at most 2 forward passes besides its stimuli
(gratings and the blank), counted by a model whose forward counts its calls and batch items; ``pgd``
builds one Probe and enters the session once per call. The plan's answers (shapes, call counts, stop
point, FLOPs) are checked against what a recording and the arithmetic say.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import insilico
import insilico.probe
import insilico.session
from insilico import evaluate
from insilico.design.adversarial import pgd
from insilico.errors import InsilicoError, StimulusError, UnitError
from insilico.experiments import orientation_tuning
from insilico.plan import Plan


class Counting(nn.Module):
    """A small conv net whose forward counts its calls and the batch items it was given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.input_size = (3, 16, 16)
        self.calls = self.items = 0

    def forward(self, x):
        self.calls += 1
        self.items += x.shape[0]
        return self.net(x)


@pytest.mark.parametrize("budget", [None, 1e9])
def test_orientation_tuning_runs_at_most_two_passes_besides_its_stimuli(budget):
    model = Counting()
    kwargs = {} if budget is not None else dict(orientations=range(0, 180, 30), sfs=[1, 2, 4, 6], phases=[0, 180],
                                                natural=torch.rand(5, 3, 16, 16))  # natural images: stimuli too
    result = orientation_tuning(model, "net.0", budget=budget, batch_size=32, progress=False, **kwargs)
    stimuli = len(result.settings["orientations"]) * len(result.settings["sfs"]) * len(result.settings["phases"]) + 1
    batches = -(-stimuli // 32)
    if budget is None:
        stimuli, batches = stimuli + 5, batches + 1
    assert result.settings["tuned_units"] == ["net.2"]  # the conv moved onto its ReLU: the plan's one survey
    assert model.items - stimuli <= 2 and model.calls - batches <= 2, (model.calls, batches, model.items, stimuli)
    assert model.calls - batches == 1  # today: the plan's survey of the blank, nothing else
    if budget is not None:
        assert result.settings["grid"]["rule"] == "budget"
        assert result.settings["grid"]["flops_per_stimulus"] == 2 * 6 * 16 * 16 * 3 * 5 * 5  # up to the ReLU


def test_pgd_builds_one_probe_and_enters_the_session_once(monkeypatch):
    probes, sessions = [], []
    probe_init, session_init = insilico.probe.Probe.__init__, insilico.session.Session.__init__

    def count_probe(self, *args, **kwargs):
        probes.append(self)
        probe_init(self, *args, **kwargs)

    def count_session(self, *args, **kwargs):
        sessions.append(self)
        session_init(self, *args, **kwargs)

    monkeypatch.setattr(insilico.probe.Probe, "__init__", count_probe)
    monkeypatch.setattr(insilico.session.Session, "__init__", count_session)  # one Session per session() entered
    model = Counting()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = pgd(model, images, eps=[0.01, 0.05], steps=2, restarts=2, progress=False)  # labels predicted too
    assert tuple(result.images.shape) == (2, 3, 3, 16, 16)
    assert (len(probes), len(sessions)) == (1, 1)
    probes.clear(), sessions.clear()
    pgd(model, images, eps=0.05, steps=2, target="net.2[1]", batch_size=2, progress=False)  # two chunks
    assert (len(probes), len(sessions)) == (1, 1)


def test_plan_answers_match_a_recording_and_the_arithmetic():
    model = Counting()
    x = torch.rand(1, 3, 16, 16)
    plan = Plan(model, x, flops=True)
    with plan.probe.record("net.3", "net.7") as rec:
        model(x)
    assert plan.shape("net.3") == tuple(rec["net.3"].shape[1:]) == (8, 14, 14)
    assert plan.shape("net.3[2, 1:4]") == (3, 14) and plan.count("net.3") == 1
    assert plan.stop(["net.0", "net.3[1]"]) == ("net.3", 0)
    assert plan.stop(["net.3", ""]) is None  # the model's own output: nothing to stop after
    conv1, conv2 = 2 * 6 * 16 * 16 * 3 * 25, 2 * 8 * 14 * 14 * 6 * 9
    assert plan.flops(["net.0"]) == conv1 and plan.flops(["net.2", "net.4"]) == conv1 + conv2
    assert plan.flops([""]) == conv1 + conv2 + 2 * 8 * 4
    model.calls = 0
    plan.shape("net.4"), plan.stop(["net.4"]), plan.flops(["net.7"])
    assert model.calls == 0  # one survey, made once, read for every question
    with pytest.raises(UnitError, match="never happened"):
        plan.stop(["net.3@2"])
    with pytest.raises(InsilicoError, match="no example"):
        Plan(model).shape("net.3")
    later = Plan(model, x)  # made without FLOPs: asked for them, it surveys again, once
    later.shape("net.3"), later.flops(["net.0"]), later.flops(["net.4"])
    assert model.calls == 2 and later.flops(["net.0"]) == conv1


def test_plan_session_is_entered_once_and_nested_uses_only_switch_grad():
    model = Counting().train()
    plan = Plan(model)
    with torch.no_grad(), plan.session(grad=True) as outer:
        assert not model.training and torch.is_grad_enabled()
        with plan.session() as inner:
            assert inner is outer and not torch.is_grad_enabled() and not model.training
        assert torch.is_grad_enabled()
    assert model.training and model.net[0].weight.requires_grad


def test_a_recurrent_module_gets_the_stop_point_of_its_last_needed_call():
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            for _ in range(3):
                x = torch.tanh(self.cell(x))
            return self.head(x)

    plan = Plan(Loop(), torch.rand(1, 4))
    assert plan.count("cell") == 3 and plan.stop(["cell@1"]) == ("cell", 1) and plan.stop(["cell"]) == ("cell", 2)
    with plan.probe.record("cell@1", stop=True) as rec:
        rec.stop_after(plan.stop(["cell@1"]))
        assert rec.forward(torch.rand(5, 4)) is None  # stopped: the head never ran
    assert rec["cell@1"].shape == (5, 4)


def test_evaluate_loops_equal_a_plain_pass_and_keep_lesions_of_the_plans_probe():
    model = Counting()
    x = torch.rand(7, 3, 16, 16)
    with torch.no_grad():
        expected = model.eval()(x)
    out = evaluate.predict(model, x, batch_size=3)
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)
    plan = Plan(model, x[:1])
    conv, relu = evaluate.responses(model, x, ["net.3[1]", "net.4"], batch_size=4, plan=plan)
    assert conv.shape == (7, 14, 14) and relu.shape == (7, 8, 14, 14)
    assert torch.allclose(relu[:, 1], conv.clamp_min(0), atol=1e-6)
    with plan.probe.lesion("net.6"):
        lesioned = evaluate.predict(model, x, plan=plan)
    assert torch.allclose(lesioned, model.net[7].bias.detach().expand(7, 4), atol=1e-6)
    with pytest.raises(StimulusError, match="empty"):
        evaluate.predict(model, x[:0])
    double = Counting().double()
    assert evaluate.predict(double, x.double(), batch_size=4).dtype == torch.float64


def test_a_plan_learns_the_stop_point_once_and_later_reads_skip_the_layers_above():
    model = Counting()
    above = []
    model.net[7].register_forward_hook(lambda *args: above.append(1))  # the user's own hook on the last layer
    plan = Plan(model)  # no example: the first read learns where its passes stop
    first = plan.read(["net.3"], torch.rand(2, 3, 16, 16))[0]
    assert first.shape == (2, 8, 14, 14) and len(above) == 1  # the learning pass ran the whole model
    for _ in range(3):
        plan.read(["net.3"], torch.rand(2, 3, 16, 16))
    assert len(above) == 1 and plan.probe.hooks() == []  # later passes end after net.3; nothing left attached
    with plan.record("net.3", "") as rec:  # the model's own output: learned as "no stop", passes run plainly
        assert rec.forward(torch.rand(1, 3, 16, 16)) is not None
    plan.learn(rec)
    assert plan.record("net.3", "").stop is False
    plan.probe.remove()
