"""Top exemplars (streaming, exact argmax) and their projections cropped to the receptive field."""
import pytest
import torch
from torch import nn

import insilico
from insilico.errors import InsilicoError, UnitError
from insilico.attribution.exemplars import Exemplars, Projections, _Ranker, project_exemplars, receptive_boxes, top_exemplars

from conftest import no_insilico_hooks


def box_filter_net(padding=0):
    """Channel 0 sums a 3x3 window; channel 1 is minus that."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=padding, bias=False), nn.ReLU())
    with torch.no_grad():
        model[0].weight[0].fill_(1.0)
        model[0].weight[1].fill_(-1.0)
    return model.eval()


def deep_net():
    """conv3 -> relu -> maxpool2 -> conv3 -> relu: the receptive field of a conv2 neuron is 8 x 8."""
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.ReLU()).eval()


class LazyImages(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images_, self.reads = images, 0

    def __len__(self):
        return len(self.images_)

    def __getitem__(self, i):
        self.reads += 1
        return self.images_[i], 0


@pytest.fixture
def stimuli():
    return torch.rand(120, 1, 10, 10)


def brute_force(model, stimuli, k):
    with torch.no_grad():
        maps = model(stimuli)[:, 0]  # (N, 8, 8) window sums
    best = maps.flatten(1).max(dim=1)
    values, indices = best.values.topk(k)
    flat = best.indices[indices]
    return indices, values, torch.stack([flat // maps.shape[2], flat % maps.shape[2]], dim=1)


def test_true_argmax_stimuli_and_positions(stimuli):
    model = box_filter_net()
    indices, values, positions = brute_force(model, stimuli, 5)
    ex = top_exemplars(model, stimuli, "1[0]", k=5, batch_size=16, progress=False)
    assert isinstance(ex, Exemplars) and ex.unit == "1[0]" and ex.n_stimuli == 120
    assert ex.indices.tolist() == indices.tolist()
    assert torch.allclose(ex.activations, values)
    assert ex.positions.tolist() == positions.tolist()
    y, x = positions[0].tolist()
    assert ex.neurons[0] == f"1[0,{y},{x}]"
    window = stimuli[indices[0], 0, y : y + 3, x : x + 3].sum()
    assert torch.isclose(ex.activations[0], window)
    assert no_insilico_hooks(model)


def test_streaming_is_independent_of_batch_size_and_source(stimuli):
    model = box_filter_net()
    reference = top_exemplars(model, stimuli, "1[0]", k=7, batch_size=120, progress=False)
    for batch_size in (1, 13, 64):
        again = top_exemplars(model, stimuli, "1[0]", k=7, batch_size=batch_size, progress=False)
        assert again.indices.tolist() == reference.indices.tolist()
        assert again.positions.tolist() == reference.positions.tolist()
    lazy = LazyImages(stimuli)
    from_dataset = top_exemplars(model, lazy, "1[0]", k=7, batch_size=32, progress=False)
    assert from_dataset.indices.tolist() == reference.indices.tolist()
    assert lazy.reads == len(stimuli)  # one pass


def test_running_top_k_keeps_only_k_entries():
    ranker = _Ranker(insilico.Unit("x"), k=3)
    for start in range(0, 1000, 100):
        ranker.update(torch.arange(start, start + 100, dtype=torch.float32), start, whole=False)
        assert len(ranker.values) == 3
    assert ranker.indices.tolist() == [999, 998, 997]
    ties = _Ranker(insilico.Unit("x"), k=2)
    ties.update(torch.zeros(5), 0, whole=False)
    ties.update(torch.zeros(5), 5, whole=False)
    assert ties.indices.tolist() == [0, 1]  # ties go to the earlier stimulus


def test_many_units_in_one_pass(stimuli):
    model = box_filter_net()
    lazy = LazyImages(stimuli)
    both = top_exemplars(model, lazy, ["1[0]", "0[1,4,4]", "1[1]"], k=4, batch_size=50, progress=False)
    assert lazy.reads == len(stimuli)
    assert [e.unit for e in both] == ["1[0]", "0[1,4,4]", "1[1]"]
    for ex in both:
        alone = top_exemplars(model, stimuli, ex.unit, k=4, progress=False)
        assert alone.indices.tolist() == ex.indices.tolist()
    neuron = both[1]
    assert neuron.positions is None and neuron.neurons == ["0[1,4,4]"] * 4
    with torch.no_grad():
        want = model[0](stimuli)[:, 1, 4, 4].topk(4).indices
    assert neuron.indices.tolist() == want.tolist()


def test_from_a_recording_and_a_stimulus_set(stimuli):
    model = box_filter_net()
    reference = top_exemplars(model, stimuli, "1[0]", k=5, progress=False)
    rec = insilico.Probe(model).record_stimuli(stimuli, ["1", "0[0]"], batch_size=40, progress=False)
    from_whole = top_exemplars(None, rec, "1[0]", k=5, batch_size=17, progress=False)
    assert from_whole.indices.tolist() == reference.indices.tolist()
    assert from_whole.neurons == reference.neurons
    from_exact = top_exemplars(None, rec, "0[0]", k=5, progress=False)
    assert from_exact.indices.tolist() == reference.indices.tolist()  # ReLU keeps the positive maxima
    assert from_exact.neurons[0].startswith("0[0,")
    with pytest.raises(UnitError, match="not in this recording"):
        top_exemplars(None, rec, "0[1]", progress=False)

    class StimulusSet:
        images = stimuli
        params = [{"contrast": i} for i in range(len(stimuli))]

    ex = top_exemplars(model, StimulusSet(), "1[0]", k=5, progress=False)
    assert [p["contrast"] for p in ex.params] == reference.indices.tolist()


def test_recurrent_time_step(recurrent):
    images = torch.rand(40, 1, 8, 8)
    rec = insilico.Probe(recurrent).record_stimuli(images, "act@2[1]", progress=False)
    flat = rec["act@2[1]"].flatten(1)
    want = flat.max(dim=1).values.topk(3).indices
    ex = top_exemplars(recurrent, images, "act@2[1]", k=3, batch_size=7, progress=False)
    assert ex.indices.tolist() == want.tolist()
    assert ex.neurons[0].startswith("act@2[1,")
    proj = project_exemplars(recurrent, images, ex, method="gradient", progress=False)
    alone = insilico.gradient_map(recurrent, images[ex.indices[:1]], ex.neurons[0])
    assert torch.allclose(proj.maps[0][:1], alone, atol=1e-6)


def test_errors(stimuli):
    model = box_filter_net()
    with pytest.raises(InsilicoError, match="k must"):
        top_exemplars(model, stimuli, "1[0]", k=500, progress=False)
    with pytest.raises(UnitError, match="no module"):
        top_exemplars(model, stimuli, "9[0]", progress=False)
    with pytest.raises(InsilicoError, match="needs a model"):
        top_exemplars(None, stimuli, "1[0]", progress=False)


def test_projections_match_gradient_maps_and_crop_to_the_receptive_field():
    model = deep_net()
    stimuli = torch.rand(60, 1, 20, 20)
    proj = project_exemplars(model, stimuli, ["4[0]", "4[2]"], k=4, batch_size=5, progress=False)
    assert isinstance(proj, Projections) and proj.units == ["4[0]", "4[2]"]
    for ex, maps, crops, boxes in zip(proj.exemplars, proj.maps, proj.map_crops, proj.boxes):
        assert maps.shape == (4, 1, 20, 20) and crops.shape == (4, 1, 8, 8)
        alone = insilico.gradient_map(model, stimuli[ex.indices], ex.neurons, method="deconv")
        assert torch.allclose(maps, alone, atol=1e-6)
        for i, (y, x) in enumerate(ex.positions.tolist()):
            assert boxes[i].tolist() == [2 * y, 2 * x, 2 * y + 8, 2 * x + 8]  # stride 2, field 8
        assert torch.allclose(crops.abs().sum(), maps.abs().sum())  # nothing of the map lies outside
    assert proj.image_crops[0].shape == (4, 1, 8, 8)
    assert torch.equal(proj.image_crops[0][0], proj.images[0][0][:, 2 * y0(proj) : 2 * y0(proj) + 8, 2 * x0(proj) : 2 * x0(proj) + 8])


def y0(proj):
    return proj.exemplars[0].positions[0, 0].item()


def x0(proj):
    return proj.exemplars[0].positions[0, 1].item()


def test_crops_at_the_border_are_padded_to_full_size():
    model = box_filter_net(padding=1)
    stimuli = torch.zeros(4, 1, 6, 6)
    stimuli[0, 0, 0, 0] = 1.0  # corner: max at (0, 0), field clipped
    stimuli[1, 0, 3, 3] = 1.0
    ex = top_exemplars(model, stimuli, "1[0]", k=2, progress=False)
    proj = project_exemplars(model, stimuli, ex, method="gradient", progress=False)
    assert proj.map_crops[0].shape == (2, 1, 3, 3)
    boxes = proj.boxes[0].tolist()
    assert [-1, -1, 2, 2] in boxes and [1, 1, 4, 4] in boxes  # first max of the tied windows
    corner = boxes.index([-1, -1, 2, 2])
    assert proj.image_crops[0][corner, 0, 0].tolist() == [0.0, 0.0, 0.0]  # padding outside the image
    assert proj.image_crops[0][corner, 0, 1, 1] == 1.0


def test_receptive_boxes_of_empty_support_cover_the_image():
    boxes = receptive_boxes(torch.zeros(2, 3, 5, 7), [2])
    assert boxes.tolist() == [[0, 0, 5, 7], [0, 0, 5, 7]]


def test_lazy_exports():
    assert insilico.top_exemplars is top_exemplars and insilico.project_exemplars is project_exemplars


def test_a_float64_model_gives_float64_activations_and_images(stimuli):
    """Float64 in, float64 out (the tool contract): no silent cast to float32 on the way."""
    model = box_filter_net().double()
    x = stimuli[:20].double()
    ex = top_exemplars(model, x, "1[0]", k=3, batch_size=8, progress=False)
    assert ex.activations.dtype == torch.float64
    indices, values, _ = brute_force(model, x, 3)
    assert ex.indices.tolist() == indices.tolist() and torch.equal(ex.activations, values)
    proj = project_exemplars(model, x, ex, method="gradient", progress=False)
    assert {t.dtype for t in proj.images + proj.maps + proj.image_crops} == {torch.float64}
    assert torch.equal(proj.images[0], x[ex.indices])
    float32 = project_exemplars(box_filter_net(), stimuli[:20], "1[0]", k=3, progress=False)
    assert float32.exemplars[0].activations.dtype == float32.images[0].dtype == torch.float32


@pytest.mark.cuda
def test_follows_the_model_to_cuda(stimuli):
    model = box_filter_net().cuda()
    reference = top_exemplars(box_filter_net(), stimuli, "1[0]", k=4, progress=False)
    ex = top_exemplars(model, stimuli, "1[0]", k=4, batch_size=32, progress=False)
    assert ex.indices.tolist() == reference.indices.tolist() and ex.indices.device.type == "cpu"
    proj = project_exemplars(model, stimuli, ex, progress=False)
    assert proj.map_crops[0].shape == (4, 1, 3, 3)


def test_exemplars_and_projections_follow_the_result_protocol(tmp_path):
    from insilico.attribution.exemplars import Exemplars, Projections, project_exemplars, top_exemplars

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    x = torch.rand(10, 3, 8, 8)
    found = top_exemplars(net, x, ["1[0]", "1[2]"], k=3, progress=False)
    found[0].save(tmp_path / "ex.pt")
    back = Exemplars.load(tmp_path / "ex.pt")
    assert back.unit == found[0].unit and torch.equal(back.indices, found[0].indices)
    assert back.neurons == found[0].neurons and back.plot() is not None
    proj = project_exemplars(net, x, found, method="gradient", crop=True, progress=False)
    proj.save(tmp_path / "proj.pt")
    again = Projections.load(tmp_path / "proj.pt")
    assert again.units == proj.units and all(torch.equal(a, b) for a, b in zip(again.maps, proj.maps))
    halves = [project_exemplars(net, x, [e], method="gradient", crop=True, progress=False) for e in found]
    joined = Projections.concat(halves)
    assert joined.units == proj.units
    assert all(torch.allclose(a, b) for a, b in zip(joined.maps, proj.maps))


def test_a_token_layer_ranks_its_patch_tokens_and_places_the_max_on_the_patch_grid():
    """torchvision ViT, 16 px in 8 px patches: tokens (5, 16) = CLS, then a 2 x 2 grid. A CLS token that is
    always the largest must not win: the positions are the patches, as (row, column) of the grid."""
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                               mlp_dim=32).eval()
    with torch.no_grad():
        vit.class_token[0, 0, 3] = 100.0
    images = torch.rand(20, 3, 16, 16)
    with insilico.Probe(vit).record("encoder.dropout") as rec:
        vit(images)
    patches = rec["encoder.dropout"][:, 1:, 3]                       # (20, 4): the patch tokens' feature 3
    best, where = patches.max(dim=1)
    top = torch.argsort(best, descending=True, stable=True)[:4]
    ex = top_exemplars(vit, images, "encoder.dropout[:, 3]", k=4, progress=False)
    assert ex.indices.tolist() == top.tolist()
    torch.testing.assert_close(ex.activations, best[top])
    assert ex.positions.tolist() == [[int(w) // 2, int(w) % 2] for w in where[top]]
    assert ex.neurons == [f"encoder.dropout[{1 + int(w)},3]" for w in where[top]]
    assert top_exemplars(vit, images, "encoder.dropout[0, 3]", k=1, progress=False).activations[0] > 99  # as named
