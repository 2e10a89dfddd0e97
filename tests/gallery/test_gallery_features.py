"""Gallery feature visualizations: best iterates, stretched exemplars, like-for-like values, the features stage."""
import json

import pytest
import torch

from insilico.gallery import GallerySettings
from insilico.gallery.features import best_neuron_values, neuron_values, stretch, visualize
from insilico.gallery.stages import Work, _maximizing, features
from insilico.objectives import Channel
from insilico.synthesis import Synthesis, Transforms
from insilico.units import Unit


def tiny_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3))
    net.input_size = (3, 12, 12)
    return net


def test_keep_best_returns_the_best_untransformed_iterate_and_resumes():
    net = tiny_net()
    synth = Synthesis(net, Channel("2", 1), n=3, size=(3, 12, 12), steps=10, lr=0.8, seed=1,
                      transforms=Transforms(jitter=2, rotate=10), transforms_until=5, keep="best", progress=False)
    result = synth.run()
    with torch.no_grad():
        value = net(result.images)[:, 1].mean((1, 2))
    settled = result.trace[5:]                      # steps without transforms: values of the images themselves
    assert torch.allclose(value, settled.max(0).values, atol=1e-5)
    assert bool((value >= settled[-1] - 1e-6).all())
    again = Synthesis.resume(result, net, Channel("2", 1), progress=False)
    assert (again.keep, again.transforms_until) == ("best", 5)
    assert torch.equal(again.best.score, synth.best.score)


def test_keep_last_is_the_default_and_keep_is_checked():
    net = tiny_net()
    synth = Synthesis(net, Channel("2", 1), n=2, size=(3, 12, 12), steps=3, progress=False)
    assert synth.keep == "last" and synth.transforms_until is None
    assert torch.equal(synth.run().images, synth.param().detach())
    with pytest.raises(Exception, match="keep must be"):
        Synthesis(net, Channel("2", 1), n=2, size=(3, 12, 12), keep="first")


def test_neuron_and_best_neuron_values_index_the_map():
    whole = torch.randn(3, 4, 5, 6)
    channels, positions = torch.tensor([0, 3, 2]), torch.tensor([0, 7, 29])
    assert torch.equal(neuron_values(whole, channels), whole[[0, 1, 2], [0, 3, 2], 2, 3])
    assert torch.equal(neuron_values(whole, channels, positions), whole[[0, 1, 2], [0, 3, 2], [0, 1, 4], [0, 1, 5]])
    assert torch.equal(best_neuron_values(whole, channels), whole[[0, 1, 2], [0, 3, 2]].flatten(1).amax(1))
    assert torch.equal(best_neuron_values(whole, channels, "min"), whole[[0, 1, 2], [0, 3, 2]].flatten(1).amin(1))
    flat = torch.randn(3, 5)
    assert torch.equal(best_neuron_values(flat, channels), flat[[0, 1, 2], [0, 3, 2]])


def test_stretched_exemplar_never_drops_below_the_exemplar_and_climbs():
    net = tiny_net()
    torch.manual_seed(2)
    photos = torch.rand(3, 3, 12, 12) * 0.8 + 0.1
    positions = [0, 45, 99]                                     # a corner, inside, the last neuron of a 10x10 map
    with torch.no_grad():
        start = net(photos).flatten(2)[[0, 1, 2], [0, 1, 2], positions]
    images = stretch(net, Unit.parse("2"), [0, 1, 2], photos, positions, steps=6, lr=0.05)
    with torch.no_grad():
        end = net(images).flatten(2)[[0, 1, 2], [0, 1, 2], positions]
    assert bool((end >= start - 1e-5).all()) and bool((end > start + 1e-3).any())


def test_visualize_settles_and_reports_the_best_neuron():
    net = tiny_net()
    out = visualize(net, "2", [0, 2], (3, 12, 12), steps=6, diverse=2, settle=3, progress=False,
                    exemplars=torch.full((2, 3, 12, 12), 0.5), positions=[11, 55], stretch_steps=3)
    with torch.no_grad():
        maps = net(out["maximizing"])
        inhibit = net(out["inhibiting"])
    assert torch.allclose(out["maximizing_value"], maps[[0, 1], [0, 2]].flatten(1).amax(1), atol=1e-5)
    assert torch.allclose(out["inhibiting_value"], inhibit[[0, 1], [0, 2]].flatten(1).amin(1), atol=1e-5)
    assert tuple(out["stretched"].shape) == (2, 3, 12, 12) and out["stretched_value"].shape == (2,)


def test_maximizing_prefers_the_image_from_noise_when_it_reaches_the_exemplar():
    out = {"maximizing": torch.zeros(2, 1), "maximizing_value": torch.tensor([5.0, 1.0]),
           "stretched": torch.ones(2, 1), "stretched_value": torch.tensor([6.0, 3.0])}
    assert [k for k, _, _ in _maximizing(out, 0, 4.0)] == ["from noise", "stretched exemplar"]
    assert [k for k, _, _ in _maximizing(out, 1, 2.0)] == ["stretched exemplar", "from noise"]
    exemplar = torch.full((1,), 7.0)           # a stretch that measures below the exemplar falls back to it
    kind, image, value = _maximizing(out, 1, 3.5, exemplar)[0]
    assert (kind, value) == ("top exemplar", 3.5) and image is exemplar
    del out["stretched"]
    assert [k for k, _, _ in _maximizing(out, 1, 2.0)] == ["from noise"]


def test_features_stage_reaches_the_top_exemplar_and_writes_both_images(tmp_path):
    net = tiny_net()
    settings = GallerySettings(model="tiny", steps=3, settle=2, stretch_steps=3, diverse=2, per_class=1)
    work = Work(net, settings, tmp_path, net.input_size)
    pages = features(work, "2", [0, 1, 2])
    for c, page in enumerate(pages):
        assert page["maximizing"] >= page["top_exemplar"]
        assert page["other"]["kind"] != page["maximizing_kind"]
        if page["maximizing_kind"] == "stretched exemplar":      # only where the image from noise falls short
            assert page["other"]["value"] < page["top_exemplar"]
        folder = tmp_path / "units" / "2" / str(c)
        assert {p.name for p in folder.iterdir()} == {"max.png", "max-other.png", "diverse-1.png", "inhibit.png",
                                                      "matched.png"}
        json.dumps(page)


def test_the_image_at_matched_contrast_stays_within_the_best_photos_rms_contrast(tmp_path):
    """Each unit's image from noise under a contrast budget: its RMS contrast (pixel std over C, H, W) is at most
    that of the unit's best photo, which is the photo the headline compares it with (its std computed here)."""
    net = tiny_net()
    settings = GallerySettings(model="tiny", steps=4, settle=2, stretch_steps=1, diverse=2, per_class=2)
    work = Work(net, settings, tmp_path, net.input_size)
    pages = features(work, "2", [0, 1, 2])
    photos, top = work.photos[0], work.top_exemplars("2", [0, 1, 2])
    for page, found in zip(pages, top):
        best = photos[int(found.indices[0])].double()
        assert page["matched"]["photo_contrast"] == pytest.approx(float(best.std(unbiased=False)), rel=1e-6)
        assert page["matched"]["contrast"] <= page["matched"]["photo_contrast"] + 1e-6
        assert page["matched"]["value"] is not None


def test_a_per_image_contrast_budget_refuses_another_batch_size():
    from insilico.errors import InsilicoError
    from insilico.synthesis import ContrastBudget

    budget = ContrastBudget(torch.tensor([0.05, 0.2]))
    x = torch.rand(2, 3, 8, 8)
    assert (budget(x).flatten(1).std(1, unbiased=False) <= torch.tensor([0.05, 0.2]) + 1e-6).all()
    with pytest.raises(InsilicoError, match="2 per-image budgets but got 3 images"):
        budget(torch.rand(3, 3, 8, 8))


def test_settings_reject_negative_settle():
    with pytest.raises(Exception, match="settle"):
        GallerySettings(settle=-1).check()
