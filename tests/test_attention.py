"""Attention heads as units: ':heads' and ':weights' (insilico.attention)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import insilico
from insilico import UnitError

torchvision = pytest.importorskip("torchvision")

BLOCK = "encoder.layers.encoder_layer_3"
ATTN = f"{BLOCK}.self_attention"


def _clean(model) -> bool:
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return hooks == 0 and torch._C._len_torch_function_stack() == 0 and torch.backends.mha.get_fastpath_enabled()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=4,
                                                hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the classifier at zero
    return model


def _heads_by_hand(mha: nn.MultiheadAttention, y: torch.Tensor):
    """Per-head probabilities (N, H, L, L) and context (N, H, L, d) of a batch-first self-attention."""
    n, length, embed = y.shape
    heads = mha.num_heads
    q, k, v = F.linear(y, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(n, length, heads, embed // heads).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(embed // heads), dim=-1)
    return weights, weights @ v


def _block_by_hand(block, x, context):
    """The rest of a torchvision EncoderBlock given its input and per-head context (N, H, L, d)."""
    n, _, length, _ = context.shape
    attended = block.self_attention.out_proj(context.transpose(1, 2).reshape(n, length, -1))
    z = attended + x
    return z + block.mlp(block.ln_2(z))


def test_vit_heads_and_weights_equal_hand_computation(vit):
    x = torch.rand(3, 3, 32, 32)
    probe = insilico.Probe(vit)
    with probe.record(f"{ATTN}:heads", f"{ATTN}:weights", f"{ATTN}:heads[2]", f"{ATTN}:0",
                      "encoder.layers.encoder_layer_2") as rec:
        vit(x)
    block = vit.encoder.layers.encoder_layer_3
    with torch.no_grad():
        weights, context = _heads_by_hand(block.self_attention, block.ln_1(rec["encoder.layers.encoder_layer_2"]))
    heads = rec[f"{ATTN}:heads"]
    assert heads.shape == (3, 4, 17, 8) and rec[f"{ATTN}:weights"].shape == (3, 4, 17, 17)
    torch.testing.assert_close(rec[f"{ATTN}:weights"], weights)
    torch.testing.assert_close(rec[f"{ATTN}:weights"].sum(-1), torch.ones(3, 4, 17))
    torch.testing.assert_close(heads, context)
    torch.testing.assert_close(rec[f"{ATTN}:heads[2]"], context[:, 2])
    # heads reassembled are the tensor out_proj is applied to
    merged = heads.transpose(1, 2).reshape(3, 17, 32)
    torch.testing.assert_close(block.self_attention.out_proj(merged).detach(), rec[f"{ATTN}:0"])
    names = probe.names(x[:1], ops=True)
    assert names[names.index(f"{ATTN}:weights"):names.index(f"{ATTN}") + 1] == \
        [f"{ATTN}:weights", f"{ATTN}:heads", ATTN]
    assert f"{BLOCK}/add" in names and f"{BLOCK}/add#1" in names  # the two residual sums
    assert _clean(vit)


@pytest.mark.parametrize("head", [0, 3])
def test_lesioning_a_vit_head_equals_zeroing_it_by_hand(vit, head):
    x = torch.rand(2, 3, 32, 32)
    probe = insilico.Probe(vit)
    with probe.record("encoder.layers.encoder_layer_2") as rec:
        plain = vit(x)
    block_in = rec["encoder.layers.encoder_layer_2"]
    block = vit.encoder.layers.encoder_layer_3
    with torch.no_grad():
        _, context = _heads_by_hand(block.self_attention, block.ln_1(block_in))
        context[:, head] = 0
        expected = _block_by_hand(block, block_in, context)
        logits = vit.heads(vit.encoder.ln(expected)[:, 0])
    with probe.lesion(f"{ATTN}:heads[{head}]"), probe.record(BLOCK) as rec:
        lesioned = vit(x)
    torch.testing.assert_close(rec[BLOCK], expected)
    torch.testing.assert_close(lesioned, logits)
    assert not torch.allclose(lesioned, plain)
    assert _clean(vit)


def test_mean_lesion_and_stimulation_of_heads_and_weights(vit):
    x, reference = torch.rand(2, 3, 32, 32), torch.rand(6, 3, 32, 32)
    probe = insilico.Probe(vit)
    with probe.record(f"{ATTN}:heads") as rec:
        vit(reference)
    mean = rec[f"{ATTN}:heads"][:, 1].mean(0)
    with probe.lesion(f"{ATTN}:heads[1]", mode="mean", reference=reference), probe.record(f"{ATTN}:heads") as rec:
        vit(x)
    torch.testing.assert_close(rec[f"{ATTN}:heads"][:, 1], mean.expand(2, -1, -1))
    # uniform attention for head 0: its context is the mean of the values over tokens
    with probe.stimulate(f"{ATTN}:weights[0]", clamp=1 / 17), probe.record(f"{ATTN}:heads[0]") as rec:
        vit(x)
    context = rec[f"{ATTN}:heads[0]"]
    torch.testing.assert_close(context, context[:, :1].expand_as(context))
    assert _clean(vit)


def test_fast_path_cannot_bypass_the_probe():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True)
    model = nn.Sequential(layer).eval()
    x = torch.rand(3, 5, 16)
    probe = insilico.Probe(model)
    with torch.no_grad():  # the conditions of the fused fast path
        plain = model(x)
        with probe.record("0.self_attn:heads") as rec:
            assert not torch.backends.mha.get_fastpath_enabled()
            torch.testing.assert_close(model(x), plain, atol=1e-5, rtol=1e-5)
        weights, context = _heads_by_hand(layer.self_attn, x)
        torch.testing.assert_close(rec["0.self_attn:heads"], context)
        context[:, 1] = 0
        attended = layer.self_attn.out_proj(context.transpose(1, 2).reshape(3, 5, 16))
        z = layer.norm1(x + attended)
        expected = layer.norm2(z + layer.linear2(F.relu(layer.linear1(z))))
        with probe.lesion("0.self_attn:heads[1]"):
            torch.testing.assert_close(model(x), expected)
    assert _clean(model)


class SDPA(nn.Module):
    """Attention written with F.scaled_dot_product_attention in a module's own forward."""

    def __init__(self, dim=12, heads=3):
        super().__init__()
        self.qkv, self.heads = nn.Linear(dim, 3 * dim), heads

    def forward(self, x):
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return out.transpose(1, 2).reshape(n, length, dim)


def test_parts_of_a_module_calling_scaled_dot_product_attention():
    torch.manual_seed(0)
    model = nn.Sequential(SDPA())
    x = torch.rand(2, 6, 12)
    probe = insilico.Probe(model)
    plain = model(x).detach()
    with probe.record("0:heads", "0:weights", "0/scaled_dot_product_attention") as rec:
        torch.testing.assert_close(model(x).detach(), plain)
    torch.testing.assert_close(rec["0:heads"], rec["0/scaled_dot_product_attention"])
    weights = rec["0:weights"]
    assert weights.shape == (2, 3, 6, 6) and torch.equal(weights.triu(1), torch.zeros_like(weights))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6))
    names = probe.names(x, ops=True)
    assert names.index("0:weights") < names.index("0:heads") < names.index("0/scaled_dot_product_attention")
    with pytest.raises(UnitError, match="heads"):
        probe.record("0.qkv:heads")


def test_swin_window_attention_heads_as_op_units():
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=12, depths=[2], num_heads=[3],
                                               window_size=[4, 4], num_classes=5).eval()
    attn = "features.1.1.attn"  # the shifted-window block
    x = torch.rand(2, 3, 32, 32)
    probe = insilico.Probe(model)
    with probe.record(f"{attn}/linear", f"{attn}/softmax", f"{attn}/matmul#1") as rec:
        model(x)
    weights, context = rec[f"{attn}/softmax"], rec[f"{attn}/matmul#1"]
    windows = 2 * (8 // 4) ** 2  # batch x windows, folded into the first axis
    assert weights.shape == (windows, 3, 16, 16) and context.shape == (windows, 3, 16, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(windows, 3, 16))
    v = rec[f"{attn}/linear"].reshape(windows, 16, 3, 3, 4).permute(2, 0, 3, 1, 4)[2]
    torch.testing.assert_close(context, weights @ v)
    with probe.lesion(f"{attn}/matmul#1[1]"), probe.record(f"{attn}/matmul#1", "features.1.1") as rec2:
        model(x)
    assert float(rec2[f"{attn}/matmul#1"][:, 1].abs().max()) == 0.0
    torch.testing.assert_close(rec2[f"{attn}/matmul#1"][:, 0], context[:, 0])
    # the parts: the same tensors with the windows unfolded from the batch axis, (N, heads, windows, T, .)
    names = probe.names(x[:1], ops=True)
    assert names[names.index(f"{attn}/softmax"):names.index(f"{attn}/matmul#1") + 1] == \
        [f"{attn}/softmax", f"{attn}/dropout", f"{attn}:weights", f"{attn}:heads", f"{attn}/matmul#1"]
    with probe.record(f"{attn}:weights", f"{attn}:heads") as rec3:
        model(x)
    assert rec3[f"{attn}:weights"].shape == (2, 3, 4, 16, 16) and rec3[f"{attn}:heads"].shape == (2, 3, 4, 16, 4)
    torch.testing.assert_close(rec3[f"{attn}:weights"], weights.reshape(2, 4, 3, 16, 16).transpose(1, 2))
    torch.testing.assert_close(rec3[f"{attn}:heads"], context.reshape(2, 4, 3, 16, 4).transpose(1, 2))
    with probe.lesion(f"{attn}:heads[1]"), probe.record("features.1.1") as rec4:
        model(x)
    torch.testing.assert_close(rec4["features.1.1"], rec2["features.1.1"])
    assert _clean(model)


@pytest.mark.parametrize("config", [
    dict(),
    dict(batch_first=True, mask="bool", padding=True),
    dict(mask="float", average=False),
    dict(bias=False, add_bias_kv=True, add_zero_attn=True, padding=True),
    dict(kdim=6, vdim=5, batch_first=True),
    dict(unbatched=True, mask="bool"),
])
def test_written_out_attention_equals_torch(config):
    """Oracle: with parts watched, nn.MultiheadAttention gives torch's own outputs and weights."""
    torch.manual_seed(0)
    config = dict(config)
    mask, padding, average = config.pop("mask", None), config.pop("padding", False), config.pop("average", True)
    unbatched = config.pop("unbatched", False)
    mha = nn.MultiheadAttention(8, 2, **config).eval()
    model = nn.Sequential()
    model.add_module("attn", mha)
    length, source, n = 4, 5, 3
    first = config.get("batch_first", False)
    shape = (lambda s, d: (s, d)) if unbatched else (lambda s, d: (n, s, d) if first else (s, n, d))
    q = torch.rand(*shape(length, 8))
    k, v = torch.rand(*shape(source, config.get("kdim", 8))), torch.rand(*shape(source, config.get("vdim", 8)))
    kwargs = {"average_attn_weights": average}
    if mask == "bool":
        kwargs["attn_mask"] = (torch.rand(length, source) > 0.7).index_fill_(1, torch.tensor([0]), False)
    elif mask == "float":
        kwargs["attn_mask"] = torch.randn(length, source)
    if padding:
        kwargs["key_padding_mask"] = torch.zeros(n, source, dtype=torch.bool).index_fill_(1, torch.tensor([1]), True)
    expected, expected_weights = mha(q, k, v, **kwargs)
    with insilico.Probe(model).record("attn:heads", "attn:weights") as rec:
        out, weights = mha(q, k, v, **kwargs)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)
    per_head = rec["attn:weights"]  # (N, heads, L, S), N = 1 for an unbatched call
    torch.testing.assert_close((per_head.mean(1) if average else per_head).reshape(expected_weights.shape),
                               expected_weights)
    assert _clean(model)


# -- the strict finder, on attention modules the registry does not know ---------------------------------------------
class Written(nn.Module):
    """softmax(q @ k.T) @ v written out, with options for the layouts the finder must read or refuse."""

    def __init__(self, style="plain", dim=12, heads=3):
        super().__init__()
        self.qkv, self.proj, self.num_heads, self.style = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), heads, style
        self.gate = nn.Linear(dim, dim)
        self.softmax, self.drop = nn.Softmax(dim=-1), nn.Dropout(0.0)

    def forward(self, x):
        n, length, dim = x.shape
        heads, hd = self.num_heads, dim // self.num_heads
        q, k, v = self.qkv(x).reshape(n, length, 3, heads, hd).permute(2, 0, 3, 1, 4)
        gate = self.gate(x).reshape(n, length, heads, hd).transpose(1, 2).softmax(-1)  # a 4-d softmax first
        if self.style == "loop":   # head by head
            out = torch.stack([torch.softmax(q[:, h] @ k[:, h].transpose(-2, -1), -1) @ v[:, h]
                               for h in range(heads)], 1)
        elif self.style == "folded":  # heads folded into the batch axis
            q, k, v = (t.reshape(n * heads, length, hd) for t in (q, k, v))
            out = torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), -1), v).reshape(n, heads, length, hd)
        elif self.style == "channels":  # channel attention (N, heads, hd, hd)
            attn = torch.softmax(q.transpose(-2, -1) @ k, dim=-1)
            out = (attn @ v.transpose(-2, -1)).transpose(-2, -1)
        elif self.style == "axis2":  # a softmax over queries
            out = torch.softmax(q @ k.transpose(-2, -1), dim=2) @ v
        elif self.style == "twice":
            out = torch.softmax(q @ k.transpose(-2, -1), -1) @ v
            out = torch.softmax(out @ k.transpose(-2, -1), -1) @ v
        elif self.style == "transposed":  # v @ attn.T, as CoAtNet's Attention2d
            attn = self.drop(self.softmax(q @ k.transpose(-2, -1)))
            out = (v.transpose(-2, -1) @ attn.transpose(-2, -1)).transpose(-2, -1)
        else:
            out = self.drop(self.softmax(q @ k.transpose(-2, -1))) @ v
        if self.style == "gated":  # ... that gates the context: not the attention's weights
            out = out * gate
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


def _written(style):
    torch.manual_seed(0)
    model = nn.Sequential(Written(style)).eval()
    return model, torch.rand(2, 5, 12)


def _by_hand(module, x, head=None):
    n, length, dim = x.shape
    q, k, v = module.qkv(x).reshape(n, length, 3, 3, 4).permute(2, 0, 3, 1, 4)
    with torch.no_grad():
        weights = torch.softmax(q @ k.transpose(-2, -1), -1)
        context = weights @ v
        if head is not None:
            context[:, head] = 0
        return weights, context, module.proj(context.transpose(1, 2).reshape(n, length, dim))


@pytest.mark.parametrize("style", ["plain", "gated", "transposed"])
def test_written_out_attention_is_found_by_identity(style):
    """nn.Softmax/Dropout children, a gate softmax before the attention, v @ attn.T: the parts are right."""
    model, x = _written(style)
    weights, context, _ = _by_hand(model[0], x)
    probe = insilico.Probe(model)
    with probe.record("0:weights", "0:heads") as rec:
        model(x)
    torch.testing.assert_close(rec["0:weights"], weights)
    torch.testing.assert_close(rec["0:heads"], context)
    if style != "gated":
        _, _, expected = _by_hand(model[0], x, head=1)
        with probe.lesion("0:heads[1]"):
            torch.testing.assert_close(model(x), expected)
    with probe.stimulate("0:weights[0]", clamp=1 / 5), probe.record("0:heads[0]") as rec:
        model(x)
    torch.testing.assert_close(rec["0:heads[0]"], rec["0:heads[0]"][:, :1].expand(-1, 5, -1))
    assert _clean(model)


@pytest.mark.parametrize("style, words", [
    ("loop", "no axis of their own"),
    ("folded", "no axis of their own"),
    ("channels", "is the width of none of the module's projections"),
    ("axis2", "a softmax over axis 2"),
])
def test_attention_that_fails_a_check_is_refused_with_the_reason(style, words):
    model, x = _written(style)
    probe = insilico.Probe(model)
    plain = model(x)
    for part in ("0:heads[1]", "0:weights"):
        with pytest.raises(UnitError, match="could not be identified") as error, probe.lesion(part):
            model(x)
        message = str(error.value)
        assert words in message and "'0/softmax'" in message and "probe.names(x, ops=True)" in message
        assert "never called" not in message
    assert "0:heads" not in probe.names(x, ops=True)
    torch.testing.assert_close(model(x), plain)
    assert _clean(model)


def test_a_second_attention_in_one_call_is_refused():
    model, x = _written("twice")
    with pytest.raises(UnitError, match="more than once per call"), insilico.Probe(model).record("0:heads"):
        model(x)
    assert _clean(model)


def test_folded_batch_and_wrong_head_axis_are_refused():
    class Frames(nn.Module):  # frames folded into the batch axis, as a video model would
        def __init__(self):
            super().__init__()
            self.inner = SDPA()

        def forward(self, x):
            return self.inner(x.reshape(-1, 3, 12)).reshape(x.shape)

    model = Frames()
    with pytest.raises(UnitError, match="6 entries on the batch axis for a batch of 2"), \
            insilico.Probe(model).record("inner:heads"):
        model(torch.rand(2, 9, 12))
    sdpa = nn.Sequential(SDPA())
    sdpa[0].num_heads = 4   # the module says 4 heads; its query has 3 on axis 1
    with pytest.raises(UnitError, match="the axis after the batch has 3 entries, but the module has 4 heads"), \
            insilico.Probe(sdpa).record("0:weights"):
        sdpa(torch.rand(2, 6, 12))


def test_a_bare_attention_module_given_queries_keys_and_values():
    class Attend(nn.Module):  # no projection, no num_heads: the layout of its inputs is the evidence
        def forward(self, q, k, v):
            return torch.softmax(q @ k.transpose(-2, -1) / 2, dim=-1) @ v

    model = Attend()
    q, k, v = torch.rand(3, 2, 6, 4), torch.rand(3, 2, 7, 4), torch.rand(3, 2, 7, 5)
    with insilico.Probe(model).record(":weights", ":heads") as rec:
        out = model(q, k, v)
    torch.testing.assert_close(rec[":weights"], torch.softmax(q @ k.transpose(-2, -1) / 2, dim=-1))
    torch.testing.assert_close(rec[":heads"], out)


def test_swin_parts_have_one_row_per_stimulus_so_a_mean_lesion_is_the_mean_over_stimuli():
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=12, depths=[2], num_heads=[3],
                                               window_size=[4, 4], num_classes=5).eval()
    attn = "features.1.1.attn"
    x, reference = torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32)
    probe = insilico.Probe(model)
    with probe.record(f"{attn}:heads") as rec:
        model(reference)
    assert rec[f"{attn}:heads"].shape == (3, 3, 4, 16, 4)                  # (N, heads, windows, T, head_dim)
    mean = rec[f"{attn}:heads"][:, 1].mean(0)
    with probe.lesion(f"{attn}:heads[1]", mode="mean", reference=reference), probe.record(f"{attn}:heads") as rec:
        model(x)
    torch.testing.assert_close(rec[f"{attn}:heads"][:, 1], mean.expand(2, -1, -1, -1))
    assert _clean(model)
