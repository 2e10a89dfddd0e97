"""One options vocabulary (issue 24): the options base, Job, and every tool's options object.

Every options object refuses an unknown name with its close matches and a bad value when built; a tool's
keyword overrides are its object's fields (the one-line call equals the call with the object); the run's
folder, share and start-over travel in ``out=`` (a folder or a Job), and the former per-tool names
(``shard=``, ``overwrite=``, ``pairs_per_chunk=``) are refused, never silently taken.
"""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import insilico
from insilico import InsilicoError, Job
from insilico.options import Options
from insilico.synthesis import SynthesisOptions

#: Every public options object of the library (insilico.<Name>).
OPTION_CLASSES = ["SynthesisOptions", "MaximizeOptions", "MetamerOptions", "ControversialOptions",
                  "PopulationControlOptions", "AttackOptions", "TuningOptions", "GradientOptions", "FitOptions"]


def test_every_options_class_is_public_frozen_and_an_options():
    from insilico.gallery.features import VisualizeOptions

    for cls in [getattr(insilico, name) for name in OPTION_CLASSES] + [VisualizeOptions]:
        assert issubclass(cls, Options) and dataclasses.is_dataclass(cls)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(), cls.fields()[0], None)


@pytest.mark.parametrize("name", OPTION_CLASSES)
def test_an_unknown_name_is_refused_with_its_close_matches_when_built_replaced_or_passed(name):
    cls = getattr(insilico, name)
    first = cls.fields()[0]
    misspelt = first[:-1] + ("x" if first[-1] != "x" else "y")
    with pytest.raises(InsilicoError, match=f"{name}\\(\\) got an unknown option '{misspelt}': did you mean "
                                            f"'{first}'"):
        cls(**{misspelt: 1})
    with pytest.raises(InsilicoError, match=f"{name}.replace got an unknown option"):
        cls().replace(**{misspelt: 1})
    with pytest.raises(InsilicoError, match=f"tool\\(\\) got an unknown option '{misspelt}'"):
        cls.from_kwargs("tool", {}, None, **{misspelt: 1})


def test_a_bad_value_is_refused_when_the_object_is_built_and_when_replaced():
    with pytest.raises(InsilicoError, match="eps must be > 0"):
        insilico.AttackOptions(eps=-1)
    with pytest.raises(InsilicoError, match="loss must be one of"):
        insilico.AttackOptions().replace(loss="hinge")
    with pytest.raises(InsilicoError, match="step_size must be > 0 .* one per eps"):
        insilico.AttackOptions(eps=[0.1, 0.2], step_size=[0.01])
    with pytest.raises(InsilicoError, match="constraint must be"):
        insilico.MetamerOptions(constraint="clip")
    with pytest.raises(InsilicoError, match="steps must be at least 0"):  # the engine's rule, in a tool's object
        insilico.MaximizeOptions(steps=-1)
    with pytest.raises(InsilicoError, match="stop_at is a score"):
        insilico.ControversialOptions(stop_at=1.5)
    with pytest.raises(InsilicoError, match="phase_reduce must be one of"):
        insilico.TuningOptions(phase_reduce="median")
    with pytest.raises(InsilicoError, match="n_steps must be an int >= 1"):
        insilico.GradientOptions(n_steps=0)
    with pytest.raises(InsilicoError, match="held_out is a fraction"):
        insilico.FitOptions(held_out=1)


def test_a_tools_options_take_a_shared_synthesis_options_and_refuse_another_kind():
    shared = SynthesisOptions(steps=7, lr=0.2)
    mine = insilico.MaximizeOptions.from_kwargs("maximize", {"transforms": "default"}, shared, negative=True)
    assert (mine.steps, mine.lr, mine.negative, mine.transforms) == (7, 0.2, True, None)  # taken as it is
    assert mine.base(SynthesisOptions) == shared.replace(progress=True)
    with pytest.raises(InsilicoError, match=r"metamer\(options=...\) takes a MetamerOptions or SynthesisOptions, not MaximizeOptions"):
        insilico.MetamerOptions.from_kwargs("metamer", {}, mine)


def test_job_takes_a_folder_a_share_and_start_over_and_refuses_the_rest(tmp_path):
    assert Job.of(None) is None and Job.of(tmp_path) == Job(tmp_path)
    job = Job(tmp_path, shard=(1, 3), overwrite=True)
    assert Job.of(job) is job and job.shard == (1, 3)
    with pytest.raises(InsilicoError, match="rank < world"):
        Job(tmp_path, shard=(3, 3))
    with pytest.raises(InsilicoError, match=r"shard must be \(rank, world\)"):
        Job(tmp_path, shard="0/2")
    with pytest.raises(InsilicoError, match="out must be a folder or an insilico.Job"):
        Job.of(3)
    with pytest.raises(InsilicoError, match="overwrite must be True or False"):
        Job(tmp_path, overwrite="yes")


def _conv():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_keyword_overrides_equal_the_options_object():
    model, x = _conv(), torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    by_keywords = insilico.pgd(model, x, eps=0.1, steps=3, restarts=2, progress=False)
    by_object = insilico.pgd(model, x, options=insilico.AttackOptions(eps=0.1, steps=3, restarts=2), progress=False)
    assert torch.equal(by_keywords.images, by_object.images)
    on_top = insilico.pgd(model, x, options=insilico.AttackOptions(eps=0.3, steps=3), eps=0.1, restarts=2,
                          progress=False)
    assert torch.equal(on_top.images, by_keywords.images)
    a = insilico.maximize(model, "0[1]", size=(3, 6, 6), steps=2, negative=True, progress=False)
    b = insilico.maximize(model, "0[1]", size=(3, 6, 6), progress=False,
                          options=insilico.MaximizeOptions(steps=2, negative=True, transforms="default"))
    assert torch.equal(a.images, b.images) and a.settings["maximize"]["negative"] is True


def test_the_former_per_tool_names_are_refused_not_taken(tmp_path):
    model, x = _conv(), torch.rand(2, 3, 6, 6)
    with pytest.raises(InsilicoError, match="pgd\\(\\) got an unknown option 'shard'"):
        insilico.pgd(model, x, out=tmp_path, shard=(0, 2), progress=False)
    with pytest.raises(InsilicoError, match="maximize\\(\\) got an unknown option 'overwrite'"):
        insilico.maximize(model, "0[0]", size=(3, 6, 6), steps=1, out=tmp_path, overwrite=True, progress=False)
    with pytest.raises(InsilicoError, match="pairs_per_chunk= is now batch_size="):
        insilico.controversial([model, _conv()], [(0, 1)], size=(3, 6, 6), steps=1, pairs_per_chunk=2)
    with pytest.raises(TypeError, match="overwrite"):
        insilico.Probe(model).record_stimuli(x, ["0"], out=tmp_path, overwrite=True, progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_job_share_and_start_over_reach_the_chunks(tmp_path):
    model, x = _conv(), torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    kw = dict(eps=0.1, steps=2, batch_size=2, progress=False)
    assert insilico.pgd(model, x, out=Job(tmp_path, shard=(1, 2)), **kw) is None  # waits for share 0
    assert sorted(p.name for p in tmp_path.glob("chunk-*.pt")) == ["chunk-00000002-00000004.pt"]
    whole = insilico.pgd(model, x, out=Job(tmp_path, shard=(0, 2)), **kw)
    assert torch.equal(whole.images, insilico.pgd(model, x, **kw).images)
    with pytest.raises(insilico.errors.JobMismatchError, match="setting steps"):
        insilico.pgd(model, x, out=tmp_path, **dict(kw, steps=3))
    again = insilico.pgd(model, x, out=Job(tmp_path, overwrite=True), **dict(kw, steps=3))
    assert torch.equal(again.images, insilico.pgd(model, x, **dict(kw, steps=3)).images)


def test_no_tool_takes_the_former_run_level_names():
    tools = [insilico.maximize, insilico.metamer, insilico.pgd, insilico.controversial, insilico.population_control,
             insilico.Probe.record_stimuli.__wrapped__ if hasattr(insilico.Probe.record_stimuli, "__wrapped__")
             else insilico.recording.record_stimuli, insilico.gallery.build, insilico.sharding.map_chunks]
    for tool in tools:
        names = set(inspect.signature(tool).parameters)
        assert not names & {"shard", "overwrite", "pairs_per_chunk"}, (tool.__name__, names)
