"""The lab for the four elements: feedback alignment, the objectives' losses, training, the resumable study."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from insilico.errors import InsilicoError, JobMismatchError
from insilico.lab import Variant, feedback_alignment, objectives, study, train_variant
from insilico.lab import training

TINY = dict(architecture="b", size=16, timesteps=1)


# -- feedback alignment -------------------------------------------------------------------
def test_feedback_alignment_sends_the_error_down_through_the_fixed_random_matrix():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 3))
    w = layer[0].weight.detach().clone()
    feedback_alignment(layer, seed=5)
    b = layer[0].feedback
    assert b.shape == w.shape and not torch.allclose(b, w) and not b.requires_grad
    x = torch.randn(6, 4, requires_grad=True)
    g = torch.randn(6, 3)
    y = layer(x)
    assert torch.allclose(y, x @ w.T + layer[0].bias)  # the forward pass is the layer's own
    y.backward(g)
    assert torch.allclose(x.grad, g @ b, atol=1e-6)                     # grad_input = grad_output @ B ...
    assert not torch.allclose(x.grad, g @ w, atol=1e-3)                 # ... not @ W
    assert torch.allclose(layer[0].weight.grad, g.T @ x.detach(), atol=1e-6)  # the weights' own gradient
    assert torch.allclose(layer[0].bias.grad, g.sum(0), atol=1e-6)
    assert list(layer.state_dict()) == ["0.weight", "0.bias", "0.feedback"]  # addresses unchanged


def test_feedback_alignment_in_a_convolution_uses_the_random_kernel_below_and_the_true_gradient_for_the_weights():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1)
    ref = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1)
    ref.load_state_dict(conv.state_dict())
    net = feedback_alignment(torch.nn.Sequential(conv), seed=2)
    x = torch.randn(2, 2, 7, 7, requires_grad=True)
    g = torch.randn(2, 3, 4, 4)
    net(x).backward(g)
    expected = torch.nn.grad.conv2d_input(x.shape, net[0].feedback, g, stride=2, padding=1)
    assert torch.allclose(x.grad, expected, atol=1e-5)
    x2 = x.detach().clone().requires_grad_(True)
    ref(x2).backward(g)
    assert not torch.allclose(x.grad, x2.grad, atol=1e-3)
    assert torch.allclose(net[0].weight.grad, ref.weight.grad, atol=1e-5)


def test_the_feedback_matrix_depends_on_the_seed_and_the_address_only():
    def matrices(seed):
        torch.manual_seed(seed + 10)  # another init: the feedback matrices do not follow it
        net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
        return [m.feedback for m in feedback_alignment(net, seed=seed)]
    a, b, c = matrices(0), matrices(0), matrices(1)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])


def test_feedback_alignment_learns_a_separable_problem_above_chance():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=gen) * 3
    y = torch.randint(0, 4, (256,), generator=gen)
    x = centres[y] + torch.randn(256, 8, generator=gen)
    torch.manual_seed(0)
    net = feedback_alignment(torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)))
    first = net[0].weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    acc = float((net(x).argmax(1) == y).float().mean())
    assert acc > 0.8  # chance is 0.25
    assert not torch.allclose(net[0].weight, first)  # the hidden layer learned through the random feedback


def test_feedback_alignment_weights_differ_from_backprop_from_the_same_seed():
    bp, _ = train_variant(Variant(**TINY), steps=3, batch=8, seed=3, progress=False)
    bp2, _ = train_variant(Variant(**TINY), steps=3, batch=8, seed=3, progress=False)
    fa, history = train_variant(Variant(**TINY, rule="feedback_alignment"), steps=3, batch=8, seed=3, progress=False)
    name = "layers.0.bottom_up.weight"
    assert torch.equal(bp.state_dict()[name], bp2.state_dict()[name])  # seeded: the same run twice is the same
    assert (bp.state_dict()[name] - fa.state_dict()[name]).abs().max() > 1e-6
    assert "layers.0.bottom_up.feedback" in fa.state_dict() and len(history["loss"]) == 3


# -- the objectives, by hand --------------------------------------------------------------
def test_classification_loss_is_the_cross_entropy_weighted_per_step():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # 1 sample, 2 steps, 2 classes
    label = torch.tensor([1])
    ce = [math.log(1 + math.exp(2.0)), math.log(1 + math.exp(-1.0))]
    assert objectives.classification(logits, label, [0.5, 1.5]).item() == pytest.approx(0.5 * ce[0] + 1.5 * ce[1])
    assert objectives.classification(logits[:, 0], label).item() == pytest.approx(ce[0])


def test_autoencoding_and_sparse_losses_by_hand():
    images = torch.zeros(1, 3, 32, 32)
    images[..., :16, :] = 1.0  # top half white: the 16-px target is 1 on the top 8 rows
    recon = torch.full((1, 3, 16, 16), 0.5)
    assert objectives.autoencoding(recon, images).item() == pytest.approx(0.25)
    code = torch.tensor([[1.0, -3.0]])
    assert objectives.sparse(recon, images, code, 0.1).item() == pytest.approx(0.25 + 0.1 * 2.0)


def test_slowness_loss_by_hand():
    z0 = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    z1 = torch.tensor([[0.0, 3.0], [2.0, 3.0]])
    # dimension 0: values 0, 2, 0, 2 -> z = -1, 1, -1, 1; dimension 1: 1, 1, 3, 3 -> z = -1, -1, 1, 1
    # differences: dim 0: 0, 0; dim 1: 2, 2 -> mean square 2; correlation of the dims: 0
    assert objectives.slowness(z0, z1, eps=0.0).item() == pytest.approx(2.0)
    same = objectives.slowness(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]), 0.0)
    assert same.item() == pytest.approx(1.0)  # no change, but perfectly correlated dimensions: penalty 1


def test_contrastive_loss_by_hand():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    u = [v / v.norm() for v in torch.cat([z0, z1])]
    total = 0.0
    for k in range(6):
        partner = (k + 3) % 6
        others = [math.exp(float(u[k] @ u[j]) / 0.5) for j in range(6) if j != k]
        total += -math.log(math.exp(float(u[k] @ u[partner]) / 0.5) / sum(others))
    assert objectives.contrastive(z0, z1, temperature=0.5).item() == pytest.approx(total / 6, rel=1e-5)


@pytest.mark.parametrize("objective", ["autoencoding", "sparse", "slowness", "contrastive"])
def test_every_objective_trains_and_is_scored_by_a_linear_probe(objective):
    variant = Variant(**TINY, objective=objective)
    model, history = train_variant(variant, steps=2, batch=8, progress=False)
    assert len(history["loss"]) == 2 and all(math.isfinite(v) for v in history["loss"])
    acc = training.accuracy(model, variant, per_class=2, probe_per_class=4)
    assert acc["readout"] is None and 0 <= acc["probe"] <= 1 and acc["n_test"] == 32


# -- options ------------------------------------------------------------------------------
def test_a_variant_refuses_bad_options_naming_them():
    with pytest.raises(InsilicoError, match="rule='feedback'.*feedback_alignment"):
        Variant(rule="feedback")
    with pytest.raises(InsilicoError, match="size=32"):
        Variant(size=32)  # minialex needs 64 px
    with pytest.raises(InsilicoError, match="class_weights"):
        Variant(class_weights=(1.0, 2.0))
    with pytest.raises(InsilicoError, match="did you mean 'blur'"):
        Variant(blurr=1.0)


@pytest.mark.parametrize("architecture", ["minialex", "bl"])
def test_width_scales_every_layer_and_width_one_keeps_the_bundled_shapes(architecture):
    from insilico import models
    from insilico.lab import build

    bundled = models.load("minialex" if architecture == "minialex" else "bl").state_dict()
    default = build(Variant(architecture=architecture))
    assert {k: v.shape for k, v in default.state_dict().items()} == {k: v.shape for k, v in bundled.items()}
    default.load_state_dict(bundled)  # the shipped weights still load into the default width
    half = build(Variant(architecture=architecture, width=0.5))
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    expected = [max(1, round(c / 2)) for c in convs(default)]
    assert convs(half) == expected
    assert tuple(half.eval()(torch.rand(2, 3, 64, 64)).shape) == (2, 16)
    assert Variant(architecture=architecture, width=0.5).name.endswith("width0.5")
    with pytest.raises(InsilicoError, match="width=0: the width factor must be a positive number"):
        Variant(architecture=architecture, width=0)


def test_depth_adds_blt_layers_and_is_refused_where_it_cannot_apply():
    from insilico.lab import build

    deep = build(Variant(architecture="bl", depth=4)).eval()
    assert [layer.bottom_up.out_channels for layer in deep.layers] == [32, 64, 128, 256]
    assert tuple(deep(torch.rand(2, 3, 64, 64)).shape) == (2, 16) and deep.layers[2].lateral is not None
    shallow = build(Variant(architecture="bt", depth=1, size=16, timesteps=2)).eval()
    assert len(shallow.layers) == 1 and shallow.layers[0].top_down is None  # nothing above the only layer
    assert tuple(shallow(torch.rand(2, 3, 16, 16)).shape) == (2, 16)
    assert Variant(architecture="bl", depth=4).name == "bl+depth4" and Variant().settings()["depth"] is None
    with pytest.raises(InsilicoError, match="minialex has its own 5 convolutions"):
        Variant(depth=4)
    with pytest.raises(InsilicoError, match="multiple of 32, or fewer layers"):
        Variant(architecture="bl", depth=4, size=48)


# -- the study ----------------------------------------------------------------------------
def test_the_study_resumes_from_its_folder_and_refuses_another_grid(tmp_path, monkeypatch):
    calls = []
    real = training.train_variant

    def counted(variant, **kwargs):
        calls.append(variant.name)
        return real(variant, **kwargs)

    monkeypatch.setattr(training, "train_variant", counted)
    grid = [Variant(**TINY), Variant(**TINY, rule="feedback_alignment")]
    first = study(grid, out=tmp_path, steps=2, batch=8, progress=False)
    assert calls == [v.name for v in grid]
    assert first.names == calls and len(first.table()) == 2
    assert set(first.human_it[0]) == set(first.monkey_it[0]) and len(first.human_it[0]) >= 2  # per layer
    assert 0 < first.ceiling["lower"] < first.ceiling["upper"] < 1
    assert sorted(first.ranking()) == sorted(calls)
    again = study(grid, out=tmp_path, steps=2, batch=8, progress=False)
    assert calls == [v.name for v in grid]  # read from the folder: no training
    assert again.human_it == first.human_it and again.accuracy == first.accuracy
    with pytest.raises(JobMismatchError, match="grid"):
        study(grid[:1] + [Variant(**TINY, blur=1.0)], out=tmp_path, steps=2, batch=8, progress=False)
    with pytest.raises(JobMismatchError, match="steps"):
        study(grid, out=tmp_path, steps=3, batch=8, progress=False)
    fig = first.plot()
    assert len(fig.axes) == 2


# -- input statistics ---------------------------------------------------------------------
def test_input_statistics_change_the_training_images_as_named():
    from insilico.lab import inputs
    from insilico.seeding import generator

    x, y = inputs.crops(Variant(class_weights=(0,) * 15 + (1,)), 8, generator(0))
    assert y.tolist() == [15] * 8  # only the class with weight
    plain = inputs.degrade(Variant(), x, generator(1))
    low = inputs.degrade(Variant(contrast=0.5), x, generator(1))
    mean = plain.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(low, mean + 0.5 * (plain - mean), atol=1e-6)
    blurred = inputs.degrade(Variant(blur=2.0), x, generator(1))
    assert blurred.diff(dim=-1).abs().mean() < 0.5 * plain.diff(dim=-1).abs().mean()  # less fine structure
    small = inputs.degrade(Variant(architecture="b", size=32), x, generator(1))
    assert torch.allclose(small, F.avg_pool2d(plain, 2), atol=1e-6)  # area resize of the same image


def test_hand_made_shards_share_the_grid(tmp_path, monkeypatch):
    from insilico import Job

    calls = []
    real = training.train_variant
    monkeypatch.setattr(training, "train_variant", lambda v, **kw: (calls.append(v.name), real(v, **kw))[1])
    grid = [Variant(**TINY), Variant(**TINY, objective="contrastive")]
    assert study(grid, out=Job(tmp_path, shard=(0, 2)), steps=1, batch=4, progress=False) is None  # 1 missing
    assert calls == [grid[0].name]
    done = study(grid, out=Job(tmp_path, shard=(1, 2)), steps=1, batch=4, progress=False)
    assert calls == [v.name for v in grid] and done.names == calls


def test_an_observer_classifies_with_the_probe_that_scored_it():
    from insilico.lab import inputs, observer
    from insilico.models import photos

    variant = Variant(**TINY, objective="autoencoding")
    model, _ = train_variant(variant, steps=1, batch=4, progress=False)
    scores = training.accuracy(model, variant, per_class=4, probe_per_class=4)
    x, y = photos.held_out(per_class=4, seed=training.EVAL_SEED)
    with torch.no_grad():
        guess = observer(model, variant, scores)(inputs.resize(x, variant.size)).argmax(1)
    assert float((guess == y).float().mean()) == pytest.approx(scores["probe"])
    assert observer(model, Variant(**TINY), scores) is model  # a classifier is its own observer


def test_a_silent_layer_gets_no_similarity_and_is_never_the_best():
    from insilico.lab.study import StudyResult, brain_similarity

    variant = Variant(**TINY)
    model, _ = train_variant(variant, steps=1, batch=4, progress=False)
    with torch.no_grad():  # layer 2 silent: every image gives the same (zero) responses
        model.layers[2].bottom_up.weight.zero_()
        model.layers[2].bottom_up.bias.fill_(-1.0)
    scores = brain_similarity(model, variant)
    assert math.isnan(scores["human_it"]["layers.2.act"]) and "constant" in scores["undefined"]["layers.2.act"]
    assert not math.isnan(scores["human_it"]["layers.1.act"])
    result = StudyResult(["a", "b"], [{}, {}], [{}, {}], [{"x": float("nan"), "y": 0.1}, {"x": float("nan")}],
                         [{"x": 0.2}, {"x": 0.1}], {"lower": 0.3, "upper": 0.6}, [{}, {}])
    assert result.best()[0] == ("y", 0.1) and result.best()[1][0] is None and result.ranking() == ["a", "b"]


def test_the_study_keeps_behaviour_and_tuning_and_measures_them_for_a_part_kept_without(tmp_path):
    from insilico.behaviour import error_consistency
    from insilico.lab.study import behaviour_of
    from insilico.sharding import load_part, save_part

    grid = [Variant(**TINY), Variant(**TINY, blur=1.0)]
    first = study(grid, out=tmp_path, steps=2, batch=8, progress=False)
    rows = first.table()
    assert [r["kappa_first"] for r in rows][0] == 1.0 and len(first.behaviour) == 2
    assert rows[1]["kappa_first"] == pytest.approx(float(first.kappa[1, 0])) == pytest.approx(float(first.kappa[0, 1]))
    a, b = (lab_trials(first, k) for k in (0, 1))
    assert float(first.kappa[0, 1]) == pytest.approx(error_consistency(a, b, n_boot=0).value, abs=1e-12)
    model = training.observer(*_trained(grid[1]))
    assert behaviour_of(model, grid[1])["predicted"] == first.behaviour[1]["predicted"]  # the crops of accuracy()
    chunk = tmp_path / "chunk-00000001-00000002.pt"
    part = load_part(chunk)
    save_part(chunk, {k: v for k, v in part.items() if k not in ("behaviour", "tuning")})  # an older study's part
    again = study(grid, out=tmp_path, steps=2, batch=8, progress=False)
    assert again.behaviour[1]["predicted"] == first.behaviour[1]["predicted"]
    assert again.tuning[1]["layer"] == first.tuning[1]["layer"] and torch.equal(again.kappa, first.kappa)
    assert again.tuning[1]["fraction_tuned"] == pytest.approx(first.tuning[1]["fraction_tuned"])


def lab_trials(result, k):
    from insilico.behaviour import Trials

    b = result.behaviour[k]
    return Trials.from_predictions([f"crop{i}" for i in range(len(b["truth"]))], b["truth"], b["predicted"])


def _trained(variant):
    model, _ = train_variant(variant, steps=2, batch=8, progress=False)
    return model, variant, training.accuracy(model, variant)
