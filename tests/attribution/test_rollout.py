"""Attention rollout (Abnar & Zuidema 2020) equals a hand computation: weights from each block's own attention
module called by hand on its recorded input, rollout in numpy, the CLS row over the patches upsampled."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import insilico
from insilico.errors import InsilicoError, UnitError


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                                hidden_dim=16, mlp_dim=32).eval()


def _inputs(model, x, names):
    probe = insilico.Probe(model)
    with torch.no_grad(), probe.record(*names) as rec:
        model(x)
    return [rec[n] for n in names]


def _hand_torchvision(vit, x):
    """(N, heads, T, T) per block: each MultiheadAttention called on its block's ln_1 output, asking for weights."""
    blocks = list(vit.encoder.layers)
    inputs = _inputs(vit, x, [f"encoder.layers.encoder_layer_{i}.ln_1" for i in range(len(blocks))])
    with torch.no_grad():
        return [b.self_attention(y, y, y, need_weights=True, average_attn_weights=False)[1].numpy()
                for b, y in zip(blocks, inputs)]


def _hand_rollout(weights, prefix, side, fuse=np.mean):
    """The paper's rollout in numpy: the CLS row of prod_l (fuse(A_l) + I) / rowsum, on the patch grid."""
    n, _, t, _ = weights[0].shape
    rollout = np.broadcast_to(np.eye(t), (n, t, t))
    for w in weights:
        a = fuse(w, axis=1) + np.eye(t)
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = a @ rollout
    return rollout[:, 0, prefix:].reshape(n, 1, side, side)


def _upsampled(grid, x):
    up = F.interpolate(torch.from_numpy(grid).float(), size=x.shape[2:], mode="bilinear", align_corners=False)
    return up.expand(-1, x.shape[1], -1, -1)


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_rollout_equals_the_hand_computation_on_a_torchvision_vit(vit, fusion):
    x = torch.rand(3, 3, 32, 32)
    weights = _hand_torchvision(vit, x)
    assert weights[0].shape == (3, 2, 17, 17)                   # CLS + 4 x 4 patches
    hand = _hand_rollout(weights, prefix=1, side=4, fuse={"mean": np.mean, "max": np.max}[fusion])
    maps = insilico.attention_rollout(vit, x, head_fusion=fusion)
    assert maps.shape == x.shape and maps.dtype == torch.float32
    torch.testing.assert_close(maps, _upsampled(hand, x), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(maps[0], maps[1])                 # one map per image


def test_blocks_picks_and_orders_the_blocks_rolled_out(vit):
    x = torch.rand(2, 3, 32, 32)
    weights = _hand_torchvision(vit, x)
    names = ["encoder.layers.encoder_layer_2.self_attention", "encoder.layers.encoder_layer_0.self_attention"]
    maps = insilico.attention_rollout(vit, x, blocks=names)     # multiplied in the model's order: 0, then 2
    torch.testing.assert_close(maps, _upsampled(_hand_rollout([weights[0], weights[2]], 1, 4), x),
                               rtol=1e-5, atol=1e-6)


def test_rollout_of_a_timm_vit_with_registers_drops_them():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, reg_tokens=2,
                              depth=2, num_classes=4).eval()
    x = torch.rand(2, 3, 32, 32)
    inputs = _inputs(model, x, ["blocks.0.norm1", "blocks.1.norm1"])
    weights = []
    for block, y in zip(model.blocks, inputs):
        attn = block.attn
        n, t, _ = y.shape
        with torch.no_grad():
            q, k, _ = attn.qkv(y).reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            weights.append(((attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)).softmax(-1).numpy())
    assert model.num_prefix_tokens == 3 and weights[0].shape[-1] == 3 + 16
    hand = _hand_rollout(weights, prefix=3, side=4)
    torch.testing.assert_close(insilico.attention_rollout(model, x), _upsampled(hand, x), rtol=1e-5, atol=1e-6)


class _HFImages(torch.nn.Module):
    """A Hugging Face ViTModel that takes images and returns its tokens."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, **options):
        out = self.model(pixel_values=x, **options)
        return out if options else out.last_hidden_state


def test_rollout_of_a_hugging_face_vit_equals_its_own_attentions_rolled_out():
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=8)
    config._attn_implementation = "eager"                      # it returns its attention weights
    torch.manual_seed(0)
    model = _HFImages(transformers.ViTModel(config)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        weights = [a.numpy() for a in model(x, output_attentions=True).attentions]
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    inner = "ViTSelfAttention" if "ViTSelfAttention" in kinds.values() else "ViTAttention"   # transformers 4 / 5
    blocks = [n for n, kind in kinds.items() if kind == inner]   # not a family insilico knows: named
    assert len(blocks) == 2
    maps = insilico.attention_rollout(model, x, blocks=blocks)
    torch.testing.assert_close(maps, _upsampled(_hand_rollout(weights, 1, 4), x), rtol=1e-5, atol=1e-6)


def test_rollout_refuses_what_it_cannot_read(vit):
    with pytest.raises(InsilicoError, match="head_fusion must be one of"):
        insilico.attention_rollout(vit, torch.rand(1, 3, 32, 32), head_fusion="sum")
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(UnitError, match="found no attention module.*blocks="):
        insilico.attention_rollout(conv, torch.rand(1, 3, 8, 8))
    with pytest.raises(UnitError, match="blocks= is empty"):
        insilico.attention_rollout(vit, torch.rand(1, 3, 32, 32), blocks=[])
    torch.manual_seed(0)
    swin = torchvision.models.swin_t().eval()
    with pytest.raises(UnitError, match="windows folded into the batch axis"):
        insilico.attention_rollout(swin, torch.rand(1, 3, 64, 64))
