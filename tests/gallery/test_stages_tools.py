"""A gallery stage is a call of a public tool (issue 26, item 3): on small models its records equal the tool's
results, so a fix in a tool is a fix in the gallery."""
import numpy as np
import pytest
import torch

from contract_tools import make_model
from insilico.experiments import lesion_sweep, receptive_field
from insilico.experiments.receptive_fields import gradient_fields
from insilico.gallery.settings import GallerySettings
from insilico.gallery.stages import Work, rf
from insilico.units import Unit


def same(record, value) -> bool:
    """A record's number (None for NaN) equals the tool's value."""
    if record is None or not np.isfinite(record):
        return not np.isfinite(value)
    return record == pytest.approx(value)


def work_for(net, tmp_path, **settings):
    return Work(net, GallerySettings(model="tiny", **settings), tmp_path, tuple(net.input_size))


@pytest.mark.parametrize("kind,layer", [("mixed", "2"), ("resnet18", "layer1")])
def test_the_rf_stage_is_receptive_field_gradient_per_unit(kind, layer, tmp_path):
    net, _ = make_model(kind)
    pages = rf(work_for(net, tmp_path, rf_images=6), layer, [0, 3, 5], batch=7)  # chunks cut across units
    for c, page in zip([0, 3, 5], pages):
        tool = receptive_field(net, f"{layer}[{c}]", method="gradient", n_images=6)
        assert page["neuron"] == tool.settings["neuron"] and page["n_images"] == 6
        assert same(page["size"], tool.size) and same(page["size_se"], tool.size_se)
        assert all(same(a, b) for a, b in zip(page["box"] + page["center"], list(tool.box) + list(tool.center)))
        assert (tmp_path / "units" / layer / str(c) / "rf.png").exists()


def test_the_rf_stage_takes_the_tools_adaptive_default(tmp_path):
    """rf_images None: the tool's own image count (64, doubled while the size's SE is above 10% of the size)."""
    net, _ = make_model("mixed")
    page, = rf(work_for(net, tmp_path, rf_images=None), "2", [1])
    tool = receptive_field(net, "2[1]", method="gradient")
    assert page["n_images"] == tool.settings["n_images"] >= 64
    assert same(page["size"], tool.size) and same(page["size_se"], tool.size_se)


def test_gradient_fields_batched_equal_one_at_a_time_and_the_maps_formula():
    """Any chunking of (unit, image) pairs gives each neuron the result of its own call; the running sums give
    what the stored maps give (RFResult.from_gradient_maps)."""
    from insilico import gradient_map, stimuli
    from insilico.experiments import RFResult

    net, _ = make_model("mixed")
    neurons = [Unit.parse(f"2[{c},6,6]") for c in range(4)] + [Unit.parse("5[2,4,4]")]
    together = gradient_fields(net, neurons, (3, 16, 16), n_images=5, batch_size=3)
    for neuron, found in zip(neurons, together):
        alone, = gradient_fields(net, [neuron], (3, 16, 16), n_images=5, batch_size=256)
        np.testing.assert_allclose(found.signed_map, alone.signed_map, rtol=1e-5, atol=1e-7)
        assert same(found.size, alone.size) and same(found.size_se, alone.size_se)
        noise = stimuli.white_noise(size=16, n=5, seed=0, channels=3).images
        maps = gradient_map(net, noise, neuron, progress=False).numpy()
        direct = RFResult.from_gradient_maps(maps, 0.1, {})
        np.testing.assert_allclose(found.map, direct.map, rtol=1e-5, atol=1e-7)
        assert same(found.size, direct.size) and same(found.size_se, direct.size_se)


def test_one_image_gives_a_size_without_standard_error():
    net, _ = make_model("mixed")
    found, = gradient_fields(net, [Unit.parse("0[0,6,6]")], (3, 16, 16), n_images=1)  # a conv: never silent
    assert np.isfinite(found.size) and np.isnan(found.size_se)


def test_the_lesion_stage_is_lesion_sweep_per_unit(tmp_path):
    """The bundled photos' rule on a model with one output per class: per class, the mean change of the true
    class's probability over its own stimuli, as lesion_sweep records it; each unit as if lesioned alone."""
    from insilico.gallery.stages import lesion

    net, _ = make_model("mixed")                       # 4 outputs
    work = work_for(net, tmp_path, lesion_per_class=1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 16, 16, generator=g), torch.arange(12) % 4
    net.classes = [f"c{k}" for k in range(4)]
    work.__dict__["lesion_set"] = (x, y, None)
    pages = lesion(work, "2", [1, 4, 6], batch=24)      # 2 lesions per forward pass
    for c, page in zip([1, 4, 6], pages):
        alone = lesion_sweep(net, "2", x, y, groups=[[c]], n_boot=0, progress=False)
        assert page["classes"] == ["c0", "c1", "c2", "c3"] and page["labelled"] and page["n_stimuli"] == 12
        np.testing.assert_allclose(page["probability_change"], alone.probability_effect[0], atol=1e-6)
        # and the sweep's own numbers: the softmax of the lesioned model's scores, by hand
        with torch.no_grad():
            base = torch.softmax(net.eval()(x).double(), 1)
            hook = net[2].register_forward_hook(lambda m, i, o: o.index_fill(1, torch.tensor([c]), 0.0))
            lesioned = torch.softmax(net(x).double(), 1)
            hook.remove()
        own = (lesioned - base)[torch.arange(12), y]
        np.testing.assert_allclose(page["probability_change"], [own[y == k].mean() for k in range(4)], atol=1e-6)


def test_the_features_images_are_maximize_s(tmp_path):
    """visualize is two calls of insilico.maximize: its diverse images are maximize's (d per unit, the diversity
    term within each unit's images, settled), its inhibiting images maximize(negative=True)'s, and a unit's
    images do not depend on the chunk it is in."""
    from insilico import maximize
    from insilico.gallery.features import visualize

    net, _ = make_model("mixed")
    knobs = dict(steps=4, settle=2, lr=0.1)
    out = visualize(net, "2", [1, 6], (3, 16, 16), diverse=2, diversity=0.5, seed=3, progress=False, **knobs)
    neurons = ["2[1,7,7]", "2[6,7,7]"]                 # the centre neuron of each channel (a 14 x 14 map)
    loop = dict(steps=4, lr=0.1, transforms_until=2, keep="best", seed=3, progress=False, size=(3, 16, 16))
    up = maximize(net, neurons, images_per_unit=2, diversity=0.5, diversity_layer="2", batch_size=4, **loop)
    down = maximize(net, neurons, negative=True, **loop)
    for u in range(2):
        mine = {tuple(img.flatten()[:8].tolist()) for img in out["diverse"][u]}
        assert mine == {tuple(img.flatten()[:8].tolist()) for img in up.images[2 * u:2 * u + 2]}
    torch.testing.assert_close(out["inhibiting"], down.images)
    alone = visualize(net, "2", [6], (3, 16, 16), diverse=2, diversity=0.5, seed=3, progress=False, **knobs)
    torch.testing.assert_close(alone["diverse"][0], out["diverse"][1], atol=1e-5, rtol=1e-4)


def test_a_stretched_exemplar_is_maximize_from_the_exemplar():
    from insilico import maximize
    from insilico.gallery.features import stretch

    net, _ = make_model("mixed")
    photos = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    images = stretch(net, Unit.parse("2"), [0, 5], photos, [15, 116], steps=3, lr=0.05)   # (1, 1) and (8, 4)
    tool = maximize(net, ["2[0,1,1]", "2[5,8,4]"], size=(3, 16, 16), init=photos, steps=3, lr=0.05, transforms=None,
                    keep="best", progress=False)
    torch.testing.assert_close(images, tool.images)
