"""The tool contract for recording, experiments, RSA, attribution and the gallery (issue 15, inputs 1, 2, 9).

Every tool runs the model in :func:`insilico.session.session`: inside, every
module is in eval mode (BatchNorm statistics never move, dropout is off);
afterwards every module has its *own* ``training`` flag back and every
parameter its own ``requires_grad`` (a frozen BatchNorm inside a training
model stays frozen). Every tool that takes a stimulus set refuses an empty one
with a StimulusError before any forward pass. The tools with their defaults are checked by
tests/contract/test_contract.py over the library's registry; this file keeps option variants and the session's own
cases.
"""
import pytest
import torch
from torch import nn

import insilico
from insilico import Probe, StimulusError, experiments
from insilico.attribution.exemplars import project_exemplars
from insilico.gallery import discover_layers


def mixed_model():
    """Conv, a frozen BatchNorm (eval), ReLU as in the issue; then a training BatchNorm and dropout, a classifier.

    The second BatchNorm is in train mode: a tool that forgot eval would move its statistics.
    """
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    m.train()
    m[1].eval()
    m[0].weight.requires_grad_(False)  # a frozen parameter stays frozen, the others trainable
    return m


def state(m):
    modes = [mod.training for mod in m.modules()]
    flags = [p.requires_grad for p in m.parameters()]
    buffers = [b.clone() for b in m.buffers()]
    return modes, flags, buffers


def x8(n=6):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def labels(n=6):
    return torch.arange(n) % 3


#: Option variants of registered tools, and helpers that run a model. The tools themselves (each with its
#: defaults) are checked for the same promises by tests/contract/test_contract.py, over the library's registry.
TOOLS = {
    "receptive_field": lambda m: experiments.receptive_field(m, "2[0,3,3]", size=(3, 8, 8)),
    "lesion_sweep_mean": lambda m: experiments.lesion_sweep(m, "2", x8(), labels(), groups=[[0, 1]], mode="mean",
                                                            progress=False),
    "microstimulation": lambda m: experiments.microstimulation(m, "2[0]", x8(), strengths=[0, 1], scale="std",
                                                               progress=False),
    "project_exemplars": lambda m: project_exemplars(m, x8(), "2[0,3,3]", k=2, crop=True, progress=False),
    "discover_layers": lambda m: discover_layers(m, (3, 8, 8)),
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tool_keeps_every_module_mode_flag_and_batchnorm_statistics(tool):
    m = mixed_model()
    modes, flags, buffers = state(m)
    TOOLS[tool](m)
    after_modes, after_flags, after_buffers = state(m)
    assert m.training and not m[1].training and m[4].training  # the check, and the training BN
    assert after_modes == modes
    assert after_flags == flags
    for before, after in zip(buffers, after_buffers):
        assert torch.equal(before, after)  # running statistics (and num_batches_tracked) never move


def test_tool_restores_modes_after_an_exception_inside():
    m = mixed_model()
    modes, flags, _ = state(m)
    with pytest.raises(insilico.UnitError):
        experiments.lesion_sweep(m, "2", x8(), labels(), groups=[[99]], progress=False)  # channel out of range
    assert state(m)[:2] == (modes, flags)


def test_mean_lesion_on_a_training_model_is_deterministic_and_leaves_batchnorm_alone():
    """Input 2: means are computed in eval mode (no dropout, BN statistics fixed), the same on every call."""
    m = mixed_model()
    _, _, buffers = state(m)
    probe = Probe(m)
    x = x8(16)
    with insilico.session.session(m):
        expected = m[:6](x)[:, 1].mean(0)  # channel 1 of '5' over x, in eval mode
    seen = []
    for _ in range(3):
        with probe.lesion("5[1]", mode="mean", reference=x), probe.record("5") as rec:
            with insilico.session.session(m):
                m(x[:4])
        seen.append(rec["5"][:, 1])
    for value in seen:
        assert torch.allclose(value, expected.expand_as(value), atol=1e-6)
    assert m.training and m[6].training and not m[1].training
    for before, after in zip(buffers, state(m)[2]):
        assert torch.equal(before, after)


EMPTY = torch.rand(0, 3, 8, 8)
#: Option variants (the registered tools refuse an empty batch in tests/contract/test_contract.py::test_empty).
EMPTY_TOOLS = {
    "microstimulation_std": lambda m: experiments.microstimulation(m, "2[0]", EMPTY, strengths=[0, 1], scale="std",
                                                                   progress=False),
    "lesion_sweep_labels": lambda m: experiments.lesion_sweep(m, "2", EMPTY, torch.zeros(0), progress=False),
    "connection_lesions": lambda m: experiments.connection_lesions(m, EMPTY, torch.zeros(0), connections={"x": ["3"]},
                                                                   progress=False),
}


@pytest.mark.parametrize("tool", sorted(EMPTY_TOOLS))
def test_empty_stimulus_set_is_a_stimulus_error_naming_the_fix(tool):
    """Input 9: 0 stimuli fail at once with an insilico error, not inside torch.cat."""
    m = mixed_model()
    with pytest.raises(StimulusError, match="empty"):
        EMPTY_TOOLS[tool](m)
    assert all(not mod._forward_hooks for mod in m.modules())  # nothing left attached
