"""The zoo test (issue 25, item 7): architectures of different families from torchvision, timm and Hugging Face
(random weights, 32-64 px images) through record, lesion, heads, gradient maps (Grad-CAM included, at a conv,
channels-last or token layer), maximize (2 steps) and orientation tuning (4 orientations), each against a hand
reference (tests/zoo_checks.py; the same harness runs the smallest model of every timm family in
benchmarks/bench_zoo.py).

Known faults outside the checks' reach are marked ``xfail(strict=True)`` with the reason, so that a fix shows
as an XPASS that fails the run until the mark is removed.
"""
from __future__ import annotations

import functools
import pathlib
import sys

import pytest
import torch

import insilico

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from zoo_checks import CHECKS, Subject, subject  # noqa: E402


def torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=10)
    torch.nn.init.normal_(model.heads.head.weight, std=0.1)  # torchvision starts the head at zero: no gradient
    return model


def torchvision_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10)


def torchvision(name, **kwargs):
    import torchvision

    return lambda: getattr(torchvision.models, name)(num_classes=10, **kwargs)


def timm(name, **kwargs):
    def build():
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)

    return build


def hf(config: str, model: str, **kwargs):
    def build():
        transformers = pytest.importorskip("transformers")
        cfg = getattr(transformers, config)(num_labels=10, **kwargs)
        return getattr(transformers, model)(cfg)

    return build


HF_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
              patch_size=8)

#: name -> (build, image side, layer, layout, attention module or None)
ZOO = {
    "torchvision:resnet18": (torchvision("resnet18"), 32, "layer2", "map", None),
    "torchvision:mobilenet_v3_small": (torchvision("mobilenet_v3_small"), 32, "features.3", "map", None),
    "torchvision:vit": (torchvision_vit, 32, "encoder.layers.encoder_layer_0", "tokens",
                        "encoder.layers.encoder_layer_1.self_attention"),
    "torchvision:swin": (torchvision_swin, 32, "features.1", "channels_last", "features.1.0.attn"),
    "timm:resnet10t": (timm("resnet10t"), 32, "layer2", "map", None),
    "timm:convnext_atto": (timm("convnext_atto"), 32, "stages.1", "map", None),
    "timm:regnetx_002": (timm("regnetx_002"), 32, "s2", "map", None),
    "timm:vit_tiny": (timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2), 32, "blocks.0", "tokens",
                      "blocks.1.attn"),
    "timm:mobilevit_xxs": (timm("mobilevit_xxs"), 64, "stages.3", "map", "stages.3.1.transformer.0.attn"),
    "timm:swin": (timm("swin_tiny_patch4_window7_224", img_size=32, window_size=4, embed_dim=16, depths=(2, 2),
                       num_heads=(2, 4)), 32, "layers.0", "channels_last", "layers.0.blocks.0.attn"),
    "hf:vit": (hf("ViTConfig", "ViTForImageClassification", **HF_VIT), 32, "vit.layers.0", "tokens",
               "vit.layers.1.attention"),
    "hf:dinov2": (hf("Dinov2Config", "Dinov2ForImageClassification", **HF_VIT), 32, "dinov2.encoder.layer.0",
                  "tokens", "dinov2.encoder.layer.1.attention"),
    "hf:convnext": (hf("ConvNextConfig", "ConvNextForImageClassification", hidden_sizes=[8, 16], depths=[1, 1],
                       num_stages=2, image_size=32), 32, "convnext.encoder.stages.1", "map", None),
}

#: (model, check) -> why it fails today (a fault outside the checks, for its owner to fix).
KNOWN: dict = {}  # (model, check) -> the known fault, marked xfail(strict=True) until fixed


@functools.lru_cache(maxsize=None)
def build(name: str) -> Subject:
    make, size, layer, layout, attention = ZOO[name]
    torch.manual_seed(0)
    return subject(name, make(), size, layer, layout, attention)


CASES = [pytest.param(name, check, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[name, check])]
                      if (name, check) in KNOWN else [], id=f"{name}-{check}")
         for name in ZOO for check in CHECKS]


@pytest.mark.parametrize("name, check", CASES)
def test_zoo(name, check):
    """Every check passes; attention parts may instead be refused with their reason (checked in check_heads)."""
    s = build(name)
    try:
        CHECKS[check](s)
    except insilico.UnitError:
        if check != "heads":
            raise


@pytest.mark.parametrize("name", list(ZOO))
def test_the_layer_has_the_layout_the_tools_read(name):
    """The layout written above is the one insilico reads (its family knowledge), and the layer runs once."""
    import insilico

    s = build(name)
    survey = insilico.Probe(s.model).survey(s.images(1))
    assert survey.count(s.layer) == 1
    assert insilico.layers.unit_layout(s.model, s.layer, survey.shape(s.layer)) == s.layout
