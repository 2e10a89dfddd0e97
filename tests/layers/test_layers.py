"""Architecture knowledge (insilico.layers): the one list of module kinds, output layouts, the centre rule,
model families, the layer chooser; and every former duplicate now reads it."""
from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn

import insilico
from insilico.errors import InsilicoError
from insilico.experiments.receptive_fields import locate, spatial_layers
from insilico.experiments.runs import after_nonlinearity, record_units
from insilico.layers import (FAMILIES, Family, at_centre, attention_modules, centre, centre_token, choose_layers,
                             family_of, is_activation, is_conv_linear, is_pass_through, layout_of, register)
from insilico.rsa import layer_units
from insilico.units import Unit


def tiny_vit():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                               mlp_dim=32).eval()
    vit.input_size = (3, 32, 32)
    return vit


@functools.lru_cache(maxsize=1)
def swin():
    """One swin_t for the module (28M parameters: built once; the tests only read it)."""
    torch.manual_seed(0)
    model = torchvision.models.swin_t().eval()
    model.input_size = (3, 32, 32)   # 8 x 8 patches: stages of 8, 4, 2, 1 positions
    return model


def tiny_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    torch.manual_seed(0)
    model = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=3).eval()
    model.input_size = (3, 16, 16)
    return model


def layouts(model, x):
    """{address: layout} of every module call of one pass, as the one rule reads it."""
    survey = insilico.Probe(model).survey(x)
    modules, family = dict(model.named_modules()), family_of(model)
    return {survey.address(c.module, c.step): layout_of(c.shape, modules[c.module], family)
            for c in survey if c.shape is not None}


#: One small model per registered family, with the layouts of a few of its layers (a new family needs one).
FAMILY_MODELS = {
    "vit": (tiny_vit, {"conv_proj": "map", "encoder.layers.encoder_layer_0": "tokens", "heads.head": "vector"}),
    "swin": (swin, {"features.0.0": "map", "features.1.0.mlp.1": "channels_last", "permute": "map"}),
    "convnext": (tiny_convnext, {"features.1.0.block.4": "channels_last", "features.1.0": "map"}),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_registered_family_is_found_and_reads_its_layouts(name):
    assert name in FAMILY_MODELS, f"add a small {name} model to FAMILY_MODELS"
    build, expected = FAMILY_MODELS[name]
    model = build()
    assert family_of(model).name == name
    seen = layouts(model, torch.rand((1,) + model.input_size))
    assert {layer: seen[layer] for layer in expected} == expected


class GELUTanh(nn.Module):        # timm's name: known by name, as the library is not imported
    def forward(self, x):
        return nn.functional.gelu(x, approximate="tanh")


# -- the one list of module kinds --------------------------------------------------------------------------------
def test_resnet18_activations_convs_and_norms_are_classified_by_the_one_list():
    net = torchvision.models.resnet18()
    modules = dict(net.named_modules())
    assert {n for n, m in modules.items() if is_activation(m)} == {n for n, m in modules.items() if type(m) is nn.ReLU}
    assert {n for n, m in modules.items() if is_conv_linear(m)} == \
        {n for n, m in modules.items() if type(m) in (nn.Conv2d, nn.Linear)}
    assert all(is_pass_through(m) for m in modules.values() if isinstance(m, nn.BatchNorm2d))
    chosen = choose_layers(net, (3, 32, 32), "activations", step="every")
    assert chosen[0] == "relu" and len(chosen) == 9 and all(type(modules[n]) is nn.ReLU for n in chosen)


def test_minialex_kinds_in_call_order():
    model = insilico.models.load("minialex")
    convs = ["features.0", "features.3", "features.6", "features.8", "features.10"]
    assert choose_layers(model, kind="conv") == convs
    assert choose_layers(model, kind="activations") == ["features.1", "features.4", "features.7", "features.9",
                                                       "features.11", "classifier.2", "classifier.5"]
    assert choose_layers(model, kind="local") == ["features.0", "features.2", "features.3", "features.5",
                                                  "features.6", "features.8", "features.10", "features.12"]
    assert layer_units(model, torch.rand((1,) + model.input_size)) == \
        choose_layers(model, kind="activations") + ["classifier.6"]                  # rsa: + the output
    # the probes' defaults (former first_conv / last_conv of the script kit)
    assert choose_layers(model, kind="conv", step="first")[0] == "features.0"
    assert choose_layers(model, kind="conv", step="every")[-1] == "features.10"


def test_foreign_activations_are_known_by_class_name_and_every_former_duplicate_agrees():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), GELUTanh(), nn.Conv2d(2, 2, 3), nn.Hardsigmoid(),
                        nn.Flatten(), nn.Linear(32, 3), nn.Dropout())
    x = torch.rand(1, 1, 8, 8)
    assert [str(u) for u in after_nonlinearity(net, ["0[1]", "3"], x)] == ["2[1]", "4"]   # experiments
    assert choose_layers(net, x, "activations") == ["2", "4"]                                # layer chooser
    assert layer_units(net, x) == ["2", "4", "6"]                                            # rsa: + the output
    assert not is_activation(nn.Softmax(dim=1)) and not is_activation(None)


def test_choose_layers_without_an_example_needs_input_size():
    with pytest.raises(InsilicoError, match="input_size"):
        choose_layers(nn.Sequential(nn.Conv2d(1, 1, 3)), kind="conv")
    with pytest.raises(InsilicoError, match="step must be"):
        choose_layers(nn.Sequential(nn.Conv2d(1, 1, 3)), (1, 8, 8), "conv", step="all")


def test_receptive_field_layers_are_the_local_kind():
    model = insilico.models.load("minialex")
    assert spatial_layers(model, 3, 64) == choose_layers(model, (3, 64, 64), "local", step="first")


# -- layouts ----------------------------------------------------------------------------------------------------
def test_vit_layouts_family_and_centre_patch():
    vit = tiny_vit()
    family = family_of(vit)
    assert family.name == "vit" and family.prefix() == 1
    seen = layouts(vit, torch.rand(1, 3, 32, 32))
    assert seen["conv_proj"] == "map" and seen["encoder.layers.encoder_layer_0"] == "tokens"
    assert seen["encoder.layers.encoder_layer_0.mlp.0"] == "tokens" and seen["heads.head"] == "vector"
    assert attention_modules(vit) == {"encoder.layers.encoder_layer_0.self_attention": "heads"}
    neuron, _ = locate(vit, "conv_proj[0]", 3, 32)
    token, _ = locate(vit, "encoder.layers.encoder_layer_0[:, 0]", 3, 32)
    assert neuron.key == "conv_proj[0,2,2]" and token.key == "encoder.layers.encoder_layer_0[11,0]"
    assert 1 + neuron.index[1] * 4 + neuron.index[2] == token.index[0]      # the same patch, after the CLS token


def test_swin_stages_are_channels_last_and_read_at_their_centre_position():
    model = swin()
    assert family_of(model).name == "swin"
    x = torch.rand(2, 3, 32, 32)
    seen = layouts(model, x[:1])
    assert seen["features.0.0"] == "map" and seen["permute"] == "map" and seen["avgpool"] == "map"
    for name in ("features.0.1", "features.0", "features.1", "features.1.0.attn", "features.1.0.mlp.1",
                 "features.2", "features.3.0", "norm"):
        assert seen[name] == "channels_last", name
    assert seen["head"] == "vector"
    assert set(attention_modules(model).values()) == {"windows"} and len(attention_modules(model)) == 12
    # the generic rule alone cannot see that a GELU inside a Swin block gives (H, W, C): the family says so
    assert layout_of((8, 8, 384), nn.GELU()) == "map"
    assert layout_of((8, 8, 384), nn.GELU(), family_of(model)) == "channels_last"
    assert layout_of((8, 8, 96), None, family_of(model)) == "channels_last"     # an op (the residual add)
    assert layout_of((8, 8, 96), None) == "map"
    add, _ = locate(model, "features.1.0/add", 3, 32)
    assert add.key == "features.1.0/add[4,4,:]"
    with pytest.raises(insilico.errors.UnitError, match="attends within windows"):
        record_units(model, x, ["features.1.0.attn:heads[0]"], progress=False)   # no one centre query: refused
    with insilico.Probe(model).record("features.1") as rec:
        model(x)
    full = rec["features.1"]                                                     # (2, 8, 8, 96)
    values, names = record_units(model, x, ["features.1[:, :, 3:5]"], progress=False)
    assert names == ["features.1[4,4,3]", "features.1[4,4,4]"]
    torch.testing.assert_close(values, full[:, 4, 4, 3:5])


def test_convnext_block_inner_layers_are_channels_last_and_the_block_a_map():
    model = tiny_convnext()
    assert family_of(model).name == "convnext"
    seen = layouts(model, torch.rand(1, 3, 16, 16))
    block = "features.1.0.block"
    assert [seen[f"{block}.{i}"] for i in range(7)] == ["map", "channels_last", "channels_last", "channels_last",
                                                        "channels_last", "channels_last", "map"]
    assert seen["features.1.0"] == "map" and seen["features.2.0"] == "map"   # a LayerNorm2d is channels-first


def test_a_convnext_activation_takes_the_layout_of_the_layer_before_it():
    """timm's small ConvNeXts (atto .. nano: conv_mlp) run the block's MLP as 1x1 convolutions on (C, H, W); its
    activation was read as channels-last because activations in torchvision's block are, so reduce="mean" pooled
    (2, 320, 4, 4) into (2, 4) (over channels and rows) without a word. Now an activation reads the layer before it."""
    timm = pytest.importorskip("timm")
    x = torch.rand(2, 3, 32, 32)
    for conv_mlp, expected in ((True, "map"), (False, "channels_last")):
        torch.manual_seed(0)
        model = timm.create_model("convnext_atto", pretrained=False, num_classes=3, conv_mlp=conv_mlp).eval()
        act = "stages.1.blocks.0.mlp.act"
        assert family_of(model).name == "convnext" and layouts(model, x[:1])[act] == expected
        probe = insilico.Probe(model)
        with probe.record(act) as rec:
            model(x)
        pooled = probe.record_stimuli(x, [act], reduce="mean", progress=False)[act]
        torch.testing.assert_close(pooled, rec[act].mean((2, 3) if conv_mlp else (1, 2)))


def test_hugging_face_and_timm_convnext_v2_layers_read_the_axis_their_norms_say():
    """Hugging Face's ConvNeXt (v1, v2) was generic: its block's activation and GRN, (H, W, C), were read as maps,
    and the channels-first LayerNorms (data_format) of its stem and downsampling as channels-last; timm's GRN says
    its channel axis (channel_dim). All silent: reduce pooled the wrong axes."""
    transformers = pytest.importorskip("transformers")
    timm = pytest.importorskip("timm")
    x = torch.rand(1, 3, 32, 32)
    small = dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    v2 = transformers.ConvNextV2Model(transformers.ConvNextV2Config(**small)).eval()
    seen, layer = layouts(v2, x), "encoder.stages.1.layers.0"
    assert family_of(v2).name == "convnext"
    assert {k: seen[k] for k in ("embeddings.layernorm", "encoder.stages.1.downsampling_layer.0")} == \
        {"embeddings.layernorm": "map", "encoder.stages.1.downsampling_layer.0": "map"}
    assert [seen[f"{layer}.{m}"] for m in ("layernorm", "pwconv1", "act", "grn", "pwconv2")] == ["channels_last"] * 5
    v1 = transformers.ConvNextModel(transformers.ConvNextConfig(**small)).eval()
    assert layouts(v1, x)[f"{layer}.act"] == "channels_last"
    for conv_mlp, expected in ((True, "map"), (False, "channels_last")):
        torch.manual_seed(0)
        model = timm.create_model("convnextv2_atto", pretrained=False, num_classes=3, conv_mlp=conv_mlp).eval()
        seen = layouts(model, x)
        assert [seen[f"stages.1.blocks.0.mlp.{m}"] for m in ("act", "grn")] == [expected] * 2


@pytest.mark.parametrize("name", ["Dinov2WithRegisters", "DeiT"])
def test_hugging_face_vits_with_more_than_a_cls_token_pool_and_centre_on_their_patches(name):
    """Hugging Face's DINOv2 with registers (CLS + 4 registers) and DeiT (CLS + distillation token) were generic:
    their 16 patches + 5 (or 2) prefix tokens are no square (+1), so reduce="mean" pooled the prefix tokens with the
    patches and "center" read the sequence's middle (token 10, patch (1, 1)) -- silently."""
    transformers = pytest.importorskip("transformers")
    config = getattr(transformers, f"{name}Config")(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=64, image_size=32, patch_size=8,
                                                     **({"num_register_tokens": 4} if "Registers" in name else {}))
    torch.manual_seed(0)
    model = getattr(transformers, f"{name}Model")(config).eval()
    prefix = 5 if "Registers" in name else 2
    layer, x = "encoder.layer.0" if "Registers" in name else "layers.0", torch.rand(2, 3, 32, 32)
    probe = insilico.Probe(model)
    with probe.record(layer) as rec:
        model(x)
    full = rec[layer]
    assert family_of(model).name == "vit" and full.shape[1] == prefix + 16
    pooled = probe.record_stimuli(x, [layer], reduce="mean", progress=False)[layer]
    torch.testing.assert_close(pooled, full[:, prefix:].mean(1))
    centre = probe.record_stimuli(x, [layer], reduce="center", progress=False)[layer]
    torch.testing.assert_close(centre, full[:, prefix + 2 * 4 + 2])


def test_the_centre_of_a_vit_on_a_non_square_image_is_refused_not_guessed():
    """timm's ViT at 32 x 64 px: 1 CLS + a 4 x 8 patch grid. The centre rule read the sequence's middle (token 17,
    patch (2, 0): the left edge) as "the centre patch" without a word; the true centre is token 21. Pooling still
    drops the CLS token (the family says it)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(32, 64), patch_size=8, depth=1,
                              num_classes=3).eval()
    x, probe = torch.rand(2, 3, 32, 64), insilico.Probe(model)
    with pytest.raises(InsilicoError, match=r"32 patch tokens \(after 1 prefix token\) are no square grid"):
        probe.record_stimuli(x, ["blocks.0"], reduce="center", progress=False)
    with probe.record("blocks.0") as rec:
        model(x)
    pooled = probe.record_stimuli(x, ["blocks.0"], reduce="mean", progress=False)["blocks.0"]
    torch.testing.assert_close(pooled, rec["blocks.0"][:, 1:].mean(1))


def test_an_activation_after_a_channels_last_linear_is_channels_last_in_any_model():
    """timm's MaxViT (no family: generic) runs its attention blocks' MLP on (H, W, C): fc1 was read channels-last
    but the activation after it, (8, 8, 512), as a map of 8 channels -- reduce pooled the wrong axes, silently.
    An activation now reads the layer registered before it when that one acts on the last axis and gives as many
    features; a ReLU registered after a net's Linear head but applied to its conv maps stays a map."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("maxvit_nano_rw_256", pretrained=False, img_size=64, num_classes=3).eval()
    block = "stages.1.blocks.0.attn_block"
    seen = layouts(model, torch.rand(1, 3, 64, 64))
    assert family_of(model).name == "generic"
    assert [seen[f"{block}.{m}"] for m in ("norm2", "mlp.fc1", "mlp.act")] == ["channels_last"] * 3

    class SharedRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc, self.relu = nn.Conv2d(3, 4, 3), nn.Linear(4, 3), nn.ReLU()

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).mean((2, 3)))

    assert layouts(SharedRelu(), torch.rand(1, 3, 8, 8))["relu"] == "map"


def test_family_is_found_inside_a_wrapper_and_a_new_family_registers():
    wrapped = nn.Sequential(nn.Identity(), tiny_vit())
    assert family_of(wrapped).name == "vit" and family_of(wrapped).prefix() == 1

    class Registers(nn.Module):
        num_prefix_tokens = 5

    try:
        register(Family("registers", ("Registers",), prefix_tokens=lambda root: root.num_prefix_tokens))
        family = family_of(Registers())
        assert family.name == "registers" and family.prefix() == 5
        assert at_centre(Unit.parse("t"), (5 + 36, 8), None, family).index[0] == 5 + 3 * 6 + 3
    finally:
        FAMILIES.pop("registers", None)
    with pytest.raises(InsilicoError, match="class name"):
        register(Family("nameless"))


# -- the centre rule ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, layout, expected", [
    ((8, 7, 9), "map", {1: 3, 2: 4}),
    ((4, 6, 6), "map", {1: 3, 2: 3}),                   # even sides: the lower-right of the middle four
    ((6, 11), "map", {1: 5}),                           # a 1-d map (Conv1d)
    ((8, 8, 96), "channels_last", {0: 4, 1: 4}),
    ((17, 8), "tokens", {0: 11}),                       # CLS + 4 x 4 patches: the centre patch, not CLS
    ((16, 8), "tokens", {0: 10}),                       # no CLS
    ((2, 17, 8), "heads", {1: 11}),                     # attention part: the centre query token
    ((10,), "vector", {}),
])
def test_centre_rule_per_layout(shape, layout, expected):
    assert centre(shape, layout) == expected


def test_at_centre_per_layout():
    assert at_centre(Unit.parse("c[:, :, 2]"), (8, 8, 96), nn.Linear(4, 96)).key == "c[4,4,2]"  # channels-last
    assert at_centre(Unit.parse("c[2]"), (8, 8, 96), nn.Linear(4, 96)).key == "c[2,4,:]"        # row 2, as written
    assert at_centre(Unit.parse("c[2]"), (6, 11), nn.Conv1d(1, 6, 3)).key == "c[2,5]"           # 1-d map
    assert at_centre(Unit.parse("a:heads[1]"), (2, 17, 8)).key == "a:heads[1,11,:]"              # attention part
    assert centre_token(201, prefix=5) == 5 + 7 * 14 + 7


def test_the_chooser_keeps_the_layouts_asked_for_and_the_gallery_draws_maps_channels_last_and_vectors():
    from insilico.gallery.build import discover_layers

    vit, model = tiny_vit(), swin()
    assert choose_layers(vit, (3, 32, 32), "conv_linear", layouts=("map", "vector")) == ["conv_proj", "heads.head"]
    assert choose_layers(vit, (3, 32, 32), "activations", layouts=("tokens",)) == \
        ["encoder.layers.encoder_layer_0.mlp.1"]
    found = discover_layers(model, (3, 32, 32))   # Swin's channels-last Linears too (issue 26), not its attention
    assert found[0] == "features.0.0" and found[-1] == "head" and "features.1.0.mlp.0" in found
    assert "features.2.reduction" in found and not any(".attn" in name for name in found)
    shapes = insilico.Probe(model).survey(torch.rand(1, 3, 32, 32))
    assert {insilico.layers.unit_layout(model, name, shapes.shape(name)) for name in found} == {"map", "channels_last", "vector"}
    with pytest.raises(InsilicoError, match="layouts must be"):
        choose_layers(vit, (3, 32, 32), "conv", layouts=("grid",))
    with pytest.raises(InsilicoError, match="with a channels_last output"):
        choose_layers(vit, (3, 32, 32), "conv", layouts=("channels_last",))


def test_the_probes_center_reduction_is_the_map_centre_rule():
    # taps.py (probing, below insilico.layers) keeps its own reduce="center": it must agree with the one rule
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
    x = torch.rand(4, 1, 9, 10)
    with insilico.Probe(net).record("0", reduce="center") as rec:
        net(x)
    values, names = record_units(net, x, ["0"], progress=False)
    assert names == ["0[0,3,4]", "0[1,3,4]", "0[2,3,4]"]
    torch.testing.assert_close(rec["0"], values)


def test_a_predictor_pools_channels_last_and_token_layers_over_positions_not_channels():
    from insilico.encoding.predictor import _pool

    model, vit = swin(), tiny_vit()
    x = torch.rand(2, 3, 32, 32)
    with insilico.Probe(model).record("features.1") as rec:
        model(x)
    nhwc = rec["features.1"]                                                        # (2, 8, 8, 96)
    torch.testing.assert_close(_pool(nhwc, "mean", "features.1", model), nhwc.mean((1, 2)))
    torch.testing.assert_close(_pool(nhwc, "max", "features.1", model), nhwc.amax((1, 2)))
    assert _pool(nhwc, 2, "features.1", model).shape == (2, 96 * 4)
    block = "encoder.layers.encoder_layer_0"
    with insilico.Probe(vit).record(block) as rec:
        vit(x)
    tokens = rec[block]                                                             # (2, 17, 16)
    torch.testing.assert_close(_pool(tokens, "mean", block, vit), tokens[:, 1:].mean(1))   # the patches, not CLS


def test_a_model_group_reads_each_member_by_the_family_of_its_own_network():
    """A ModelGroup of a Swin and a ResNet: the ResNet's conv layers are maps (channels first), the Swin's stages
    channels-last, in the experiments' centre rule and in Grad-CAM's grid (family_at, not the group's family)."""
    from insilico.attribution.gradients import gradient_map
    from insilico.models.group import ModelGroup

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=4).eval()
    group = ModelGroup({"swin": swin(), "res": resnet})
    x = torch.rand(2, 3, 32, 32)
    assert family_of(group).name == "swin"   # the first network found: wrong for the ResNet member
    from insilico.layers.families import family_at

    assert family_at(group, "swin.features.1.0/add").name == "swin"     # an op unit: the family of its owner
    assert family_at(group, "res.layer1.0/add").name == "generic"
    values, names = record_units(group, x, ["res.layer1[3]", "swin.features.1[:, :, 3]"], progress=False)
    assert names == ["res.layer1[3,4,4]", "swin.features.1[4,4,3]"]   # (64, 8, 8) channels first; (8, 8, 96) last
    with insilico.Probe(resnet).record("layer1") as rec:
        resnet(x)
    torch.testing.assert_close(values[:, 0], rec["layer1"][:, 3, 4, 4])
    cams = {"res": gradient_map(group, x, "res.fc[3]", method="gradcam", layer="res.layer3"),
            "swin": gradient_map(group, x, "swin.head[3]", method="gradcam", layer="swin.features.5")}
    alone = {"res": gradient_map(resnet, x, "fc[3]", method="gradcam", layer="layer3"),
             "swin": gradient_map(swin(), x, "head[3]", method="gradcam", layer="features.5")}
    for name in cams:
        assert float(alone[name].abs().max()) > 0, name
        torch.testing.assert_close(cams[name], alone[name], rtol=1e-4, atol=1e-6)
