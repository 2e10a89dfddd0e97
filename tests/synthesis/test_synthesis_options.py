"""SynthesisOptions: the design tools' one options object (issue 24, "the design tools share an options object")."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

import insilico
from insilico.design.controversial import CONTROVERSIAL_DEFAULTS
from insilico.design.maximize import MAXIMIZE_DEFAULTS
from insilico.design.metamers import METAMER_DEFAULTS, MetamerSynthesis
from insilico.design.population_control import POPULATION_CONTROL_DEFAULTS
from insilico.errors import InsilicoError, JobMismatchError
from insilico.objectives import Channel
from insilico.synthesis import Synthesis, SynthesisOptions, Transforms


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3))


def test_an_unknown_option_is_refused_with_its_close_match_and_the_tool():
    net = tiny_net()
    with pytest.raises(InsilicoError, match=r"maximize\(\) got an unknown option 'stpes': did you mean 'steps'"):
        insilico.maximize(net, "2[0]", size=10, stpes=3, progress=False)
    with pytest.raises(InsilicoError, match=r"Synthesis\(\) got an unknown option 'lrr': did you mean 'lr'"):
        Synthesis(net, Channel("2", 0), n=1, size=10, lrr=0.1)
    with pytest.raises(InsilicoError, match=r"MetamerSynthesis\(\) got an unknown option 'optimiser'.*'optimizer'"):
        insilico.metamer(net, "0", torch.rand(1, 3, 8, 8), optimiser="adam", progress=False)
    with pytest.raises(InsilicoError, match=r"SynthesisOptions.replace got an unknown option 'jiter'.*'jitter'"):
        SynthesisOptions().replace(jiter=2)
    with pytest.raises(InsilicoError, match="takes a MaximizeOptions or SynthesisOptions, not dict"):
        insilico.maximize(net, "2[0]", size=10, options={"steps": 3}, progress=False)


@pytest.mark.parametrize("bad, message", [
    ({"steps": -1}, "steps must be at least 0"), ({"steps": 2.5}, "steps must be at least 0"),
    ({"lr": 0.0}, "lr must be a positive finite number"), ({"lr": float("inf")}, "lr must be a positive finite"),
    ({"optimizer": "adamw"}, "optimizer must be one of"), ({"schedule": "step"}, "schedule must be one of"),
    ({"parameterization": "wavelet"}, "parameterization must be one of"), ({"keep": "first"}, "keep must be one of"),
    ({"precision": "int8"}, "precision must be one of"), ({"compact": "gpu"}, "compact must be True, False or 'cpu'"),
    ({"tv": -1.0}, "tv must be a finite number >= 0"), ({"blur_every": -2}, "blur_every must be an int >= 0"),
    ({"jitter": 2.0}, r"jitter build transforms='default', but transforms=None"),
    ({"transforms": "lucid"}, "transforms must be a Transforms, 'default' or None"),
])
def test_construction_refuses_out_of_range_options_by_name(bad, message):
    with pytest.raises(InsilicoError, match=message):
        SynthesisOptions(**bad)  # when built, not when a tool first uses it


def test_construction_refuses_an_unknown_option_with_its_close_match():
    with pytest.raises(InsilicoError, match=r"SynthesisOptions\(\) got an unknown option 'stpes': did you mean 'steps'"):
        SynthesisOptions(stpes=4)
    assert list(inspect.signature(SynthesisOptions).parameters)[:2] == ["steps", "lr"]  # help() shows the fields


def test_one_options_object_equals_the_keywords_for_maximize_and_metamer():
    net = tiny_net()
    shared = SynthesisOptions(steps=5, lr=0.08, optimizer="adam", schedule="cosine", transforms="default", jitter=1.0)
    by_options = insilico.maximize(net, ["2[0]", "2[1]"], size=12, options=shared, seed=3, progress=False)
    by_keywords = insilico.maximize(net, ["2[0]", "2[1]"], size=12, steps=5, lr=0.08, schedule="cosine",
                                    jitter=1.0, seed=3, progress=False)  # MAXIMIZE_DEFAULTS: transforms="default"
    assert torch.equal(by_options.images, by_keywords.images)
    refs = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    pixels = shared.replace(transforms=None, jitter=None)  # metamers: no transforms
    m_options = insilico.metamer(net, "0", refs, options=pixels, threshold=None, progress=False)
    m_keywords = insilico.metamer(net, "0", refs, steps=5, lr=0.08, optimizer="adam", schedule="cosine",
                                  threshold=None, progress=False)
    assert torch.equal(m_options.images, m_keywords.images)
    assert m_options.settings["metamer"]["optimizer"] == "adam" and m_options.settings["parameterization"]["kind"] == "Pixel"
    # keywords on top of the shared object
    fewer = insilico.maximize(net, ["2[0]"], size=12, options=shared, steps=2, progress=False)
    assert fewer.settings["steps"] == 2 and shared.steps == 5


def test_each_tool_states_only_where_its_defaults_differ():
    base = SynthesisOptions()
    assert (base.steps, base.lr, base.optimizer, base.transforms, base.parameterization) == (512, 0.05, "adam", None,
                                                                                             None)
    assert SynthesisOptions(**MAXIMIZE_DEFAULTS).transforms == "default"
    metamer = SynthesisOptions(**METAMER_DEFAULTS)
    assert (metamer.steps, metamer.optimizer, metamer.lr) == (1000, "lbfgs", None)
    assert SynthesisOptions(**CONTROVERSIAL_DEFAULTS).steps == 300
    population = SynthesisOptions(**POPULATION_CONTROL_DEFAULTS)
    assert (population.steps, population.transforms) == (128, "default")
    # what the tools really use: the defaults reach the engine
    net = tiny_net()
    synth = MetamerSynthesis(net, "0", torch.rand(1, 3, 8, 8), progress=False)
    assert (synth.steps, synth.optimizer, synth.lr, synth.engine.optimizer_name) == (1000, "lbfgs", 1.0, "lbfgs")
    result = insilico.maximize(net, "2[0]", size=18, steps=1, progress=False)
    # maximize's default transforms at 18 px: pad 1 (18/18), jitter 18/28
    assert result.settings["transforms"]["pad"] == 1 and result.settings["transforms"]["jitter"] == pytest.approx(18 / 28)
    assert result.settings["param_options"]["decay"] == 1.5
    engine = Synthesis(net, Channel("2", 0), n=1, size=18, progress=False)
    assert engine.transforms == Transforms() and engine.param.spec()["kind"] == "Fourier"


def test_penalties_reach_the_engine_and_are_saved_for_resume():
    net = tiny_net()
    synth = Synthesis(net, Channel("2", 0), n=2, size=10, steps=3, tv=0.5, progress=False, seed=1)
    assert "TotalVariation" in repr(synth.objective)
    result = synth.run()
    assert result.settings["tv"] == 0.5
    resumed = Synthesis.resume(result, net, Channel("2", 0))
    assert resumed.options.tv == 0.5 and repr(resumed.objective) == repr(synth.objective)


def test_the_out_folder_identity_holds_every_option(tmp_path):
    net = tiny_net()
    insilico.maximize(net, "2[0]", size=10, steps=2, lr=0.05, out=tmp_path / "m", progress=False)
    insilico.maximize(net, "2[0]", size=10, options=SynthesisOptions(**MAXIMIZE_DEFAULTS, steps=2),
                      out=tmp_path / "m", progress=False)  # the same job, by options: accepted
    with pytest.raises(JobMismatchError, match="setting lr: 0.05 .folder. vs 0.1 .now."):
        insilico.maximize(net, "2[0]", size=10, steps=2, lr=0.1, out=tmp_path / "m", progress=False)
    with pytest.raises(JobMismatchError, match="setting tv"):
        insilico.maximize(net, "2[0]", size=10, steps=2, tv=0.1, out=tmp_path / "m", progress=False)
    refs = torch.rand(2, 3, 8, 8)
    insilico.metamer(net, "0", refs, steps=2, batch_size=1, out=tmp_path / "meta", progress=False)
    with pytest.raises(JobMismatchError, match="setting lr"):
        insilico.metamer(net, "0", refs, steps=2, lr=0.5, batch_size=1, out=tmp_path / "meta", progress=False)
    images = torch.rand(2, 3, 8, 8)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    insilico.pgd(classifier, images, steps=2, out=tmp_path / "pgd", progress=False)
    with pytest.raises(JobMismatchError, match="setting steps"):
        insilico.pgd(classifier, images, steps=3, out=tmp_path / "pgd", progress=False)


def test_options_are_a_frozen_value():
    options = SynthesisOptions(steps=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.steps = 9
    assert options.replace(lr=0.2) == SynthesisOptions(steps=8, lr=0.2) and options.lr == 0.05
    assert "progress" not in options.identity() and options.identity()["steps"] == 8


def test_a_resumed_metamer_keeps_its_engine_options():
    net = tiny_net()
    refs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    common = dict(optimizer="adam", tv=0.2, threshold=None, progress=False)
    part = insilico.metamer(net, "0", refs, steps=3, **common)
    resumed = insilico.metamer(net, resume=part, steps=2, progress=False)
    whole = insilico.metamer(net, "0", refs, steps=5, **common)
    assert resumed.settings["tv"] == 0.2
    assert torch.allclose(resumed.images, whole.images, atol=1e-6)
