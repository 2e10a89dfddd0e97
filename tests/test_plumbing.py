"""The plumbing every tool stands on: session, survey, truncated records, hook safety, layer chooser, results."""
import collections
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from conftest import Partly, Recurrent, no_insilico_hooks
import insilico
from insilico import InsilicoError, Probe, StimulusError, UnitError
from insilico.layers import choose_layers
from insilico.pixels import check_images, raw
from insilico.results import Result
from insilico.session import session


def frozen_bn_model():
    """Fine-tuning with a frozen BatchNorm: the root trains, the BN is in eval with frozen weights."""
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                      nn.Linear(8 * 6 * 6, 4))
    m.train()
    m[1].eval()
    m[1].weight.requires_grad_(False)
    return m


def flags(model):
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


# -- session -----------------------------------------------------------------------------
def test_session_restores_each_modules_own_flags_also_after_an_exception():
    m = frozen_bn_model()
    before = flags(m)
    stats = m[1].running_mean.clone()
    with pytest.raises(RuntimeError, match="boom"):
        with session(m):
            assert not any(mod.training for mod in m.modules())
            assert not any(p.requires_grad for p in m.parameters())
            m(torch.rand(2, 3, 8, 8))
            raise RuntimeError("boom")
    assert flags(m) == before and m[1].training is False and m.training is True
    assert torch.equal(m[1].running_mean, stats)


def test_session_enables_input_gradients_under_no_grad_and_keeps_dtype():
    m = frozen_bn_model().double()
    with torch.no_grad(), session(m, grad=True) as s:
        assert s.dtype == torch.float64
        x = s.inputs(torch.rand(2, 3, 8, 8)).requires_grad_()
        assert x.dtype == torch.float64
        m(x).sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float64
    assert all(p.grad is None for p in m.parameters())
    with session(m) as s:  # grad=False: no graph at all
        assert not m(s.inputs(torch.rand(1, 3, 8, 8))).requires_grad


def test_session_takes_several_models_and_rejects_non_modules():
    a, b = frozen_bn_model(), nn.Sequential(nn.Linear(2, 2)).train()
    with session(a, b):
        assert not a.training and not b.training
    assert a.training and b.training and not a[1].training
    with pytest.raises(InsilicoError, match="nn.Module"):
        with session(lambda x: x):
            pass


# -- a hook never breaks the user's forward ----------------------------------------------
class WithLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.loss = Sum()

    def forward(self, x):
        return self.loss(self.fc(x))


class Sum(nn.Module):
    def forward(self, x):
        return x.sum()


def test_zero_dim_outputs_are_recorded_one_value_per_pass():
    m = WithLoss()
    x1, x2 = torch.rand(4, 3), torch.rand(5, 3)
    with Probe(m).record("loss") as rec:
        a, b = m(x1), m(x2)
    assert torch.equal(rec["loss"], torch.stack([a, b]).detach())


@dataclasses.dataclass
class Out:
    features: torch.Tensor
    size: int


class ImageList:  # like torchvision's: an object holding tensors
    def __init__(self, tensors, sizes):
        self.tensors, self.image_sizes = tensors, sizes


class Structured(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.kind = kind

    def forward(self, x):
        y = self.fc(x)
        if self.kind == "dataclass":
            return Out(y, 3)
        if self.kind == "object":
            return ImageList(y, [3])
        return collections.OrderedDict(features=y)


@pytest.mark.parametrize("kind", ["dataclass", "object", "ordered"])
def test_structured_outputs_are_copied_not_referenced(kind):
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Structured(kind)

        def forward(self, x):
            out = self.inner(x)
            feats = out["features"] if kind == "ordered" else getattr(out, "features", None)
            feats = feats if feats is not None else out.tensors
            return torch.relu_(feats)  # in place, after recording

    m = Outer()
    x = torch.randn(6, 3, requires_grad=True)
    with Probe(m).record("inner") as rec:
        m(x)
    value = rec["inner"]
    expected = m.inner.fc(x).detach()
    assert type(value) is type(m.inner(x))
    tensor = value["features"] if kind == "ordered" else getattr(value, "features", None)
    tensor = tensor if tensor is not None else value.tensors
    assert torch.equal(tensor, expected) and (tensor < 0).any()  # the in-place ReLU did not reach it
    assert not tensor.requires_grad


# -- edits are validated where they are written ------------------------------------------
def test_a_lesion_on_a_step_that_never_happens_fails():
    net = Recurrent(steps=4)
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(UnitError, match=r"steps 0\.\.3"):
        with Probe(net).lesion("lateral@7"):
            net(x)
    with pytest.raises(UnitError, match="never act"):
        with Probe(net).stimulate("conv", add=1.0, steps=[5]):
            net(x)
    assert no_insilico_hooks(net)
    with Probe(net).lesion("lateral@3"):  # a step that happens is fine
        net(x)


# -- survey, truncated records, layer chooser -------------------------------------------
def test_survey_logs_calls_shapes_and_steps():
    net = Recurrent(steps=3)
    survey = Probe(net).survey(torch.rand(1, 1, 6, 6))
    assert survey.count("conv") == 3 and survey.address("conv") == "conv@2" and survey.address("readout") == "readout"
    assert survey.shape("conv@1[2]") == (6, 6) and survey.shape("readout") == (2,)
    assert [c.step for c in survey if c.module == "lateral"] == [0, 1, 2]
    assert "conv@2" in survey.table()
    with pytest.raises(UnitError, match="3 times"):
        survey.shape("conv")
    with pytest.raises(UnitError, match=r"no module 'comv'\. Did you mean 'conv'.*Probe\(model\)\.names\(\)"):
        survey.shape("comv")  # a misspelt path: its close matches and how to list the paths (Unit.resolve)
    assert no_insilico_hooks(net)


def test_survey_says_a_module_that_exists_did_not_run():
    survey = Probe(Partly()).survey(torch.rand(1, 2))
    with pytest.raises(UnitError, match="'unused' was never called.*'unused' is a module of the model that did not run"):
        survey.shape("unused")


def test_survey_lets_the_models_own_error_through_unless_asked_to_keep_it():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(RuntimeError, match="channels"):
        Probe(m).survey(torch.rand(1, 1, 8, 8))
    tail = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5, 2))
    survey = Probe(tail).survey(torch.rand(1, 1, 8, 8), strict=False)
    assert isinstance(survey.error, RuntimeError) and survey.modules() == ["0", "1", "2"]
    assert no_insilico_hooks(m) and no_insilico_hooks(tail)


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)
        self.calls = collections.Counter()

    def forward(self, x):
        for name in "abc":
            self.calls[name] += 1
            x = getattr(self, name)(x)
        return x


def test_a_stopping_record_skips_the_rest_of_the_forward_and_records_the_same_values():
    m = Counting()
    x = torch.rand(4, 3)
    with Probe(m).record("b") as full:
        m(x)
    with Probe(m).record("b", stop=True) as rec:
        assert rec.forward(x) is not None  # the first pass learns where to stop
        m.calls.clear()
        assert rec.forward(x) is None
        assert m.calls == {"a": 1, "b": 1}
    assert torch.equal(rec["b"][4:], full["b"])
    with Probe(m).record("b", stop=True) as rec:  # a tail that fails after the unit ran
        rec.forward(x)
        m.c = nn.Linear(5, 5)
        rec.forward(x)
    assert no_insilico_hooks(m)


def test_layer_kinds_in_call_order_with_recurrent_steps():
    net = Recurrent(steps=3)
    x = torch.rand(1, 1, 6, 6)
    assert choose_layers(net, x, "weights") == ["conv@2", "lateral@2", "readout"]
    assert choose_layers(net, x, "spatial", step="first") == ["conv@0", "lateral@0"]
    with pytest.raises(InsilicoError, match="layer kind"):
        choose_layers(net, x, "convs")


# -- the image gate and its door ---------------------------------------------------------
@pytest.mark.parametrize("bad, fix", [
    (torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8), r"images.float\(\) / 255"),
    (torch.rand(2, 3, 8, 8) * 255, "rescale"),
    (torch.full((2, 3, 8, 8), float("nan")), "nan_to_num"),
    (torch.rand(2, 8, 8), "unsqueeze"),
    (torch.rand(0, 3, 8, 8), "empty"),
])
def test_record_stimuli_passes_the_image_gate(bad, fix):
    m = nn.Sequential(nn.Conv2d(3, 2, 3))
    with pytest.raises(StimulusError, match=fix):
        Probe(m).record_stimuli(bad, "0", progress=False)
    assert no_insilico_hooks(m)


def test_non_image_stimuli_go_through_the_raw_door():
    m = nn.Sequential(nn.Embedding(10, 4))
    ids = torch.randint(0, 10, (6, 5))
    with pytest.raises(StimulusError, match="raw"):
        Probe(m).record_stimuli(ids, "0", progress=False)
    rec = Probe(m).record_stimuli(raw(ids), "0", progress=False)
    assert torch.equal(rec["0"], m(ids).detach())
    assert check_images(torch.rand(0, 3, 4, 4), empty=True).shape[0] == 0


# -- the result protocol -----------------------------------------------------------------
@dataclasses.dataclass
class Toy(Result):
    sample_fields = ("images", "labels", "scores")
    images: torch.Tensor
    labels: list
    scores: np.ndarray
    settings: dict = dataclasses.field(default_factory=dict)


def test_results_round_trip_with_weights_only_and_concatenate(tmp_path):
    a = Toy(torch.rand(2, 1, 3, 3, dtype=torch.float64), ["a", "b"], np.array([1.0, 2.0]), {"eps": (1, 2)})
    b = Toy(torch.rand(1, 1, 3, 3, dtype=torch.float64), ["c"], np.array([3.0]), {"eps": (1, 2)})
    a.save(tmp_path / "a.pt")
    loaded = Toy.load(tmp_path / "a.pt")
    assert torch.equal(loaded.images, a.images) and loaded.images.dtype == torch.float64
    assert loaded.labels == ["a", "b"] and loaded.settings == {"eps": (1, 2)}
    np.testing.assert_array_equal(loaded.scores, a.scores)
    assert loaded.versions["torch"] == torch.__version__
    both = Toy.concat([a, b])
    assert both.labels == ["a", "b", "c"] and both.images.shape[0] == 3 and both.scores.tolist() == [1.0, 2.0, 3.0]
    torch.save({"evil": nn.Linear(2, 2)}, tmp_path / "bad.pt")
    with pytest.raises(InsilicoError, match="not a result"):
        Toy.load(tmp_path / "bad.pt")


def test_a_part_of_a_single_tensor_output_is_an_error_not_a_batch_sample():
    m = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(UnitError, match=r"no parts: drop ':1'.*'0\[0\]'"):
        with Probe(m).record("0:1") as rec:
            m(torch.rand(3, 3, 8, 8))
        rec["0:1"]
    assert no_insilico_hooks(m)


def test_a_negative_lesion_step_says_how_to_name_the_last_call():
    with pytest.raises(UnitError, match=r"survey\(x\).count\('lateral'\)"):
        Probe(Recurrent()).lesion("lateral@-1")
