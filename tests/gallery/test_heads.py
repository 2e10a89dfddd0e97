"""The gallery on any architecture, issue 26 Deliver 2: attention heads as units, recurrent layers per time step,
and the acceptance builds (a ResNet's lesion panels name the folder's classes; a timm ViT's pages name heads and
the centre token).

Small and fast: a 2-block timm ViT at 32 px (8-px patches: a CLS token and a 4 x 4 grid, 3 heads), the bundled
BLT (64 px, 4 steps), a torchvision resnet18 at 32 px; 2 units per layer, 1-2 steps, on 12 crops of
scikit-image's photos in three class folders.
"""
import csv
import json
import re

import numpy as np
import pytest
import torch

import insilico
from insilico.gallery import GallerySettings, build, discover_layers
from insilico.gallery.stages import Work
from insilico.gallery.view import LayerView, attention_rows, time_course

pytestmark = pytest.mark.filterwarnings("ignore:the model ran no ReLU")
HEADS = "blocks.1.attn:heads"
SMALL = dict(units=2, steps=2, diverse=2, settle=1, stretch_steps=1, exemplars=3, per_class=1, lesion_per_class=2,
             orientations=4, phases=2, rf_images=1)
CLASSES = ("astronaut", "coffee", "chelsea")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder: 4 random 48-px crops of each of three scikit-image photos, one class folder per photo."""
    import skimage.data
    import skimage.io

    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        photo = getattr(skimage.data, name)()
        (root / name).mkdir()
        for i in range(4):
            y, x = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
            skimage.io.imsave(root / name / f"{i}.png", photo[y:y + 96:2, x:x + 96:2], check_contrast=False)
    return root


def tiny_timm_vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                          num_classes=4).eval()
    m.input_size = (3, 32, 32)
    return m


@pytest.fixture(scope="module")
def vit_site(tmp_path_factory, folder):
    root = tmp_path_factory.mktemp("vit") / "site"
    model = tiny_timm_vit()
    settings = GallerySettings(model="timm:vit_tiny_patch16_224", layers=[HEADS, "blocks.1"], stimuli=str(folder),
                               **SMALL)
    return root, model, settings, build(settings, root, model=model, progress=False)


def unit_json(root, layer, c, stage):
    return json.loads((root / "units" / layer / str(c) / f"{stage}.json").read_text())


def text(page) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))


def head_norms(model, x):
    """(N, heads, 16): each head's output norm at each patch query token, recorded with a Probe."""
    with insilico.Probe(model).record(HEADS) as rec:
        model(x)
    return rec[HEADS][:, :, 1:].norm(dim=-1)


def test_heads_are_units_ranked_by_their_output_norm(vit_site):
    root, model, settings, summary = vit_site
    assert summary["computed"] == {"features": 4, "exemplars": 4, "tuning": 2, "rf": 2, "lesion": 4}  # no RF/tuning
    slug = "blocks.1.attn_heads"
    assert not (root / "units" / slug / "0" / "tuning.json").exists()
    x = Work(model, settings, root, (3, 32, 32)).photos[0]
    x = x[list(range(len(x)))]
    best = head_norms(model, x).amax(-1)                           # (N, heads): the best patch query
    for h in (0, 1):
        ex = unit_json(root, slug, h, "exemplars")
        order = torch.argsort(best[:, h], descending=True, stable=True)[:3]
        assert ex["indices"] == order.tolist() and ex["rows"] == "attention"
        assert np.allclose(ex["activations"], best[order, h].numpy(), rtol=1e-4, atol=1e-5)
        for n, i in zip(ex["neurons"], ex["indices"]):            # the head at its best patch query (CLS is 0)
            head, token = map(int, re.search(r"\[(\d+),(\d+)\]", n).groups())
            assert head == h and 1 <= token <= 16
            assert float(head_norms(model, x[i:i + 1])[0, h, token - 1]) == pytest.approx(best[i, h].item(), 1e-4)
        assert all(0 <= s <= 1 for s in ex["prefix_share"]) and ex["second_query"] == 0
        feats = unit_json(root, slug, h, "features")
        assert feats["maximizing"] >= feats["top_exemplar"] == pytest.approx(ex["activations"][0])


def test_head_pages_name_the_head_and_the_centre_token(vit_site):
    root, *_ = vit_site
    layer_page = text(root / "layers" / "blocks.1.attn_heads.html")
    assert "attention head h" in layer_page and "centre patch token" in layer_page and "CLS" in layer_page
    methods = layer_page.split("How each unit page is made")[1]
    assert "attention pattern" in methods and "deconvolution" not in methods
    unit_page = text(root / "units" / "blocks.1.attn_heads" / "1.html")
    assert "blocks.1.attn:heads[1]" in unit_page and "the head's attention over the image patches" in unit_page
    assert "deconvolution" not in unit_page.split("Top 3 exemplars")[1].split("Lesion")[0]
    assert "feature d at the centre patch token" in text(root / "layers" / "blocks.1.html")
    with open(root / "units.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["layer"] == HEADS]
    assert [r["unit"] for r in rows] == ["0", "1"] and all(r["max_activation"] for r in rows)


def test_head_lesion_is_the_probes_lesion_of_that_head(vit_site):
    """The lesion panel of head 1 is the change a Probe lesion of ``attn:heads[1]`` makes (the intact model's
    choice per folder class: a 4-way random model on three folders)."""
    root, model, settings, _ = vit_site
    d = unit_json(root, "blocks.1.attn_heads", 1, "lesion")
    assert d["measure"] == "decision" and d["classes"] == list(sorted(CLASSES))
    x, y, _ = Work(model, settings, root, (3, 32, 32)).lesion_set
    with torch.no_grad():
        base = torch.softmax(model(x), -1)
        with insilico.Probe(model).lesion(f"{HEADS}[1]"):
            lesioned = torch.softmax(model(x), -1)
    chosen = base.argmax(1)
    change = (lesioned - base)[torch.arange(len(x)), chosen]
    expected = [float(change[y == k].mean()) for k in range(3)]
    assert np.allclose(d["probability_change"], expected, atol=1e-5)


def test_attention_rows_draw_the_heads_attention_over_the_patches():
    model = tiny_timm_vit()
    view = LayerView.read(model, HEADS, (3, 17, 24))
    images = torch.ones(2, 3, 32, 32)
    drawn = attention_rows(model, images, HEADS, view, heads=[2, 0], queries=[6, 16])
    with insilico.Probe(model).record("blocks.1.attn:weights") as rec:
        model(images)
    w = rec["blocks.1.attn:weights"]
    for m, (h, q) in enumerate([(2, 6), (0, 16)]):
        for name, query in (("query", q), ("cls", 0)):
            a = w[m, h, query, 1:].view(4, 4)
            expected = 0.1 + 0.9 * a / a.max()
            shown = torch.from_numpy(drawn[name][m])[::8, ::8, 0]   # one pixel per 8-px patch
            assert torch.allclose(shown, expected, atol=1e-5)
        assert drawn["prefix_share"][m] == pytest.approx(float(w[m, h, q, 0]), abs=1e-6)
        assert drawn["peak"][m] == pytest.approx(float(w[m, h, q, 1:].max() / w[m, h, q, 1:].mean()), rel=1e-5)


def test_blt_layer_at_a_time_step_with_its_time_course(tmp_path):
    blt = insilico.models.load("blt")
    layer = "layers.1.lateral@1"
    settings = GallerySettings(model="blt", layers=[layer], **{**SMALL, "lesion_per_class": 1})
    build(settings, tmp_path / "site", model=blt, progress=False)
    slug = "layers.1.lateral_at1"
    for c in (0, 1):
        ex = unit_json(tmp_path / "site", slug, c, "exemplars")
        course = ex["time_course"]
        assert course["steps"] == [0, 1, 2, 3] and course["step"] == 1
        # the value at the layer's own step is the exemplar's activation, by construction
        assert np.allclose([row[1] for row in course["values"]], ex["activations"], rtol=1e-4, atol=1e-5)
        assert all(row[0] == 0 for row in course["values"])   # the lateral input of step 0 is the zero state
    page = text(tmp_path / "site" / "units" / slug / "1.html")
    assert "Time course" in page and "time step 1 of 0-3" in page


def test_time_course_reads_every_step_of_the_recording():
    blt = insilico.models.load("blt")
    x = torch.rand(2, 3, 64, 64)
    view = LayerView.read(blt, "layers.2.bottom_up@3", (128, 4, 4), calls=4)
    course = time_course(blt, x, "layers.2.bottom_up@3", view, [5, 9], [0, 10])
    with insilico.Probe(blt).record("layers.2.bottom_up") as rec:
        blt(x)
    steps = rec.steps("layers.2.bottom_up")
    assert torch.allclose(course[0], steps[0, :, 5, 0, 0]) and torch.allclose(course[1], steps[1, :, 9, 2, 2])


def test_resnet_on_an_image_folder_names_its_classes(tmp_path, folder):
    """The acceptance build at 32 px: lesion panels per class of the folder (a random 1000-way ResNet: the
    change of the intact model's choice), units.csv as today."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    model.input_size = (3, 32, 32)
    settings = GallerySettings(model="torchvision:resnet18", layers=["layer1", "layer4"], stimuli=str(folder),
                               **{**SMALL, "units": 1})
    summary = build(settings, tmp_path / "site", model=model, progress=False)
    assert summary["computed"] == {"features": 2, "exemplars": 2, "tuning": 2, "rf": 2, "lesion": 2}
    for layer in ("layer1", "layer4"):
        d = unit_json(tmp_path / "site", layer, 0, "lesion")
        assert d["classes"] == sorted(CLASSES) and d["measure"] == "decision" and d["n_stimuli"] == 6
        assert all(name in text(tmp_path / "site" / "units" / layer / "0.html") for name in CLASSES)
    with open(tmp_path / "site" / "units.csv") as f:
        assert [(r["layer"], r["unit"]) for r in csv.DictReader(f)] == [("layer1", "0"), ("layer4", "0")]


def test_windowed_and_weight_parts_are_refused_with_the_fix():
    from insilico.errors import InsilicoError

    with pytest.raises(InsilicoError, match=r"attn:weights is an attention part .*'blocks.1.attn:heads'"):
        LayerView.of("blocks.1.attn:weights", (3, 17, 17), "heads", 1)
    with pytest.raises(InsilicoError, match=r"attends within windows .*give the module's output 'layers.0.attn'"):
        LayerView.of("layers.0.attn:heads", (3, 4, 49, 8), "heads", None)


def test_discovered_layers_include_each_attention_modules_heads_after_its_layers():
    layers = discover_layers(tiny_timm_vit())
    assert layers[:5] == ["patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.attn:heads",
                          "blocks.0.mlp.fc1"]
    assert layers.count("blocks.1.attn:heads") == 1 and layers[-1] == "head"
    assert not any(":heads" in layer for layer in discover_layers(insilico.models.load("blt")))


def test_head_norm_objective_drives_a_head_by_the_value_its_page_shows():
    """HeadNorm (for insilico.maximize) reads the norm map the gallery ranks by; maximizing it raises it."""
    from insilico.gallery.view import HeadNorm
    from insilico.objectives import Objective

    model = tiny_timm_vit()
    view = LayerView.read(model, HEADS, (3, 17, 64))
    objective = Objective.stack([HeadNorm(HEADS, view, 0), HeadNorm(HEADS, view, 2, position=5)])
    x = torch.rand(2, 3, 32, 32)
    norms = head_norms(model, x)                                  # (N, heads, 16)
    assert torch.allclose(objective.evaluate(model, x), torch.stack([norms[0, 0, 10], norms[1, 2, 5]]), atol=1e-5)
    found = insilico.maximize(model, objective, steps=8, progress=False, seed=0)
    reached = objective.evaluate(model, found.images)
    random = Objective.stack([HeadNorm(HEADS, view, 0)] * 16).evaluate(model, torch.rand(16, 3, 32, 32))
    assert reached[0] > random.max()
