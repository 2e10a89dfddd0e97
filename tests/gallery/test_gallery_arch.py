"""The gallery on any architecture (issue 26, Deliver 2): token layers read at the centre patch token,
channels-last stages at the centre position, and lesion panels on the user's labelled folder.

Small and fast: a tiny torchvision ViT (32 px, 8 px patches: a CLS token and a 4 x 4 patch grid, 32 features,
2 layers) and a tiny ZooModel-like wrapper around a net with a channels-last stage, each built into a site with
two units per layer and a few steps, on 8 PNGs in two class folders.
"""
import csv
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from insilico.gallery import GallerySettings, build, discover_layers
from insilico.gallery.pages import rf_box_at
from insilico.gallery.stages import _lesion_measure

TOKENS = "encoder.layers.encoder_layer_0"
SMALL = dict(units=2, steps=2, diverse=2, settle=1, stretch_steps=1, exemplars=3, per_class=1, lesion_per_class=2,
             orientations=4, phases=2, rf_images=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 random PNGs (40 x 40) in two class folders, ``cat`` and ``dog``."""
    import skimage.io

    root = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir()
        for i in range(4):
            skimage.io.imsave(root / name / f"{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                              check_contrast=False)
    return root


def tiny_vit() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                             mlp_dim=64, num_classes=2)
    with torch.no_grad():
        nn.init.normal_(m.heads.head.weight, std=0.01)
        m.heads.head.bias.copy_(torch.tensor([0.0, 5.0]))   # the "cat" logit is large: silencing it lowers cat
    m.input_size = (3, 32, 32)
    m.classes = ["dog", "cat"]   # the model's order is not the folders' (cat, dog): matched by name
    return m.eval()


class ChannelsLast(nn.Module):
    """A patch embedding, then a channels-last stage (N, H, W, C): LayerNorm and Linear on the last axis."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.mix(self.norm(self.embed(x).permute(0, 2, 3, 1)))
        return self.head(torch.relu(y).mean((1, 2)))


class ZooLike(nn.Module):
    """The shape of a :class:`insilico.models.zoo.ZooModel`: the network under ``net``, ``input_size``, classes
    the folders do not name."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = ChannelsLast()
        self.input_size = (3, 16, 16)
        self.classes = ["x", "y", "z"]

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def vit_site(tmp_path_factory, folder):
    root = tmp_path_factory.mktemp("vit") / "site"
    settings = GallerySettings(name="tiny vit", layers=[TOKENS, "heads.head"], stimuli=str(folder), **SMALL)
    return root, build(settings, root, model=tiny_vit(), progress=False)


def unit_json(root, layer, c, stage):
    return json.loads((root / "units" / layer / str(c) / f"{stage}.json").read_text())


def text(page) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))


@pytest.mark.filterwarnings("ignore:the model ran no ReLU")
def test_token_layer_pages_state_the_centre_token_and_read_it(vit_site):
    root, summary = vit_site
    assert summary["computed"] == {"features": 4, "exemplars": 4, "tuning": 2, "rf": 2, "lesion": 4}
    assert sorted(p.name for p in (root / "units" / TOKENS).glob("*.html")) == ["0.html", "1.html"]
    layer_page = text(root / "layers" / f"{TOKENS}.html")
    assert "feature d at the centre patch token" in layer_page and "CLS" in layer_page
    assert "feature d at the centre patch token" in text(root / "units" / TOKENS / "1.html")
    centre = 1 + (4 // 2) * 4 + 4 // 2   # after the CLS token, row 2, column 2 of the 4 x 4 grid
    for c in (0, 1):
        assert unit_json(root, TOKENS, c, "rf")["neuron"] == f"{TOKENS}[{centre},{c}]"
        assert unit_json(root, TOKENS, c, "tuning")["unit"] == f"{TOKENS}[{centre},{c}]"
        tokens = [int(re.search(r"\[(\d+),", n).group(1)) for n in unit_json(root, TOKENS, c, "exemplars")["neurons"]]
        assert all(1 <= t <= 16 for t in tokens), tokens   # patch tokens only, never the CLS token 0
        feats = unit_json(root, TOKENS, c, "features")
        assert feats["maximizing"] >= feats["top_exemplar"]   # the stretched exemplar by construction
    rf = unit_json(root, TOKENS, 0, "rf")
    assert rf["stride"] == [8.0, 8.0]   # patches of 8 px
    y0, y1, x0, x1 = rf["box"]   # token 1 + 4 + 3: the patch at row 1, column 3 (the centre is row 2, column 2)
    assert rf_box_at(rf, f"{TOKENS}[8,0]", clip=False) == (y0 - 8, y1 - 8, x0 + 8, x1 + 8)
    assert rf_box_at(rf, f"{TOKENS}[0,0]") is None   # the CLS token has no place on the image
    with open(root / "units.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["layer"] == TOKENS]
    assert [r["unit"] for r in rows] == ["0", "1"] and all(r["rf_size"] for r in rows)


@pytest.mark.filterwarnings("ignore:the model ran no ReLU")
def test_lesion_panels_name_the_folders_classes_matched_by_name(vit_site):
    root, _ = vit_site
    cat = unit_json(root, "heads.head", 1, "lesion")   # output 1 is "cat" in the model's order
    assert cat["measure"] == "true class" and cat["n_stimuli"] == 4 and sorted(cat["classes"]) == ["cat", "dog"]
    change = dict(zip(cat["classes"], cat["probability_change"]))
    assert change["cat"] < 0 < change["dog"]   # the cat logit (+5) silenced: cat loses, dog gains
    page = text(root / "units" / "heads.head" / "1.html")
    assert "per class of the images' labels" in page and " cat " in page and " dog " in page


@pytest.mark.filterwarnings("ignore:the model ran no ReLU")
def test_channels_last_stage_and_classes_the_model_does_not_name(tmp_path, folder):
    root = tmp_path / "site"
    settings = GallerySettings(layers=["net.mix", "net.embed"], stimuli=str(folder), **SMALL)
    summary = build(settings, root, model=ZooLike(), progress=False)
    assert summary["computed"] == {"features": 4, "exemplars": 4, "tuning": 4, "rf": 4, "lesion": 4}
    for stage in ("rf", "tuning"):   # (H, W, C) at the centre of its 4 x 4 map
        assert unit_json(root, "net.mix", 1, stage)["neuron" if stage == "rf" else "unit"] == "net.mix[2,2,1]"
    rf = unit_json(root, "net.mix", 1, "rf")
    y0, y1, x0, x1 = rf["box"]   # (H, W, C): [0, 3, 1] is row 0, column 3 of the 4 x 4 map, 4 px per position
    assert rf_box_at(rf, "net.mix[0,3,1]", clip=False) == (y0 - 8, y1 - 8, x0 + 4, x1 + 4)
    assert "channels-last" in text(root / "layers" / "net.mix.html")
    lesion = unit_json(root, "net.mix", 0, "lesion")
    assert lesion["measure"] == "decision" and lesion["classes"] == ["cat", "dog"]
    assert "the class the intact model chose" in text(root / "units" / "net.mix" / "0.html")


def test_lesion_per_output_without_labels():
    """Files without labels: one bar per output (the largest |changes| where there are many outputs)."""
    from types import SimpleNamespace

    measure = _lesion_measure(nn.Identity(), 40, None, None)
    change = np.zeros((2, 40))                      # a LesionResult's output_effect: (units, outputs)
    change[0, 7], change[1, 30] = -0.5, 0.25
    shown = measure["effects"](SimpleNamespace(output_effect=change))
    assert measure["measure"] == "outputs" and measure["most"] == 32 and measure["labels"] == "decision"
    assert len(shown[0]["classes"]) == 32 and "7" in shown[0]["classes"] and "30" in shown[1]["classes"]
    assert dict(zip(shown[0]["classes"], shown[0]["probability_change"]))["7"] == -0.5


def test_discover_layers_keeps_token_layers():
    layers = discover_layers(tiny_vit())
    assert "conv_proj" in layers and "heads.head" in layers
    assert any(name.startswith("encoder.layers") for name in layers)


def test_attention_parts_are_refused_naming_the_layer(tmp_path):
    from insilico.errors import InsilicoError

    part = f"{TOKENS}.self_attention:weights"
    settings = GallerySettings(layers=[part], units=1, steps=1)
    with pytest.raises(InsilicoError, match=r"self_attention:weights is an attention part .*self_attention:heads"):
        build(settings, tmp_path / "site", model=tiny_vit(), progress=False)
