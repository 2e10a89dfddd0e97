"""Attention parts over real architectures: right, in the documented layout, or refused (issue 25).

Random weights, tiny configurations. The oracle of a part is the module's own tensor read as an op
unit (its ``softmax``, its ``attn @ v`` matmul) with timm's fused attention off, rearranged to the
documented layout; the parts are then checked on both of timm's paths (written out and SDPA).
"""
import pytest
import torch

import insilico
from insilico import UnitError
from insilico.attention import KNOWN
from insilico.layers import attention_modules

timm = pytest.importorskip("timm")

# family: (timm model, overrides, image size, attention module, layout, oracle of :weights, of :heads)
# ("/softmax" an op of the module, ".softmax" its nn.Softmax child; ":T" the context is (N, heads, hd, L))
RIGHT = {
    "vit": ("vit_tiny_patch16_224", dict(img_size=32, depth=1, embed_dim=24, num_heads=3), 32,
            "blocks.0.attn", "heads", "/softmax", "/matmul#1"),
    "eva": ("eva02_tiny_patch14_224", dict(img_size=28, depth=1, embed_dim=24, num_heads=3), 28,
            "blocks.0.attn", "heads", "/softmax", "/matmul#1"),
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=32, window_size=4, embed_dim=12, depths=(2, 1),
                                                  num_heads=(2, 4)), 32,
             "layers.0.blocks.1.attn", "windows", ".softmax", "/matmul#1"),     # the shifted, masked block
    "swinv2": ("swinv2_tiny_window8_256", dict(img_size=32, window_size=4, embed_dim=12, depths=(2, 1),
                                               num_heads=(2, 4)), 32,
               "layers.0.blocks.1.attn", "windows", ".softmax", "/matmul#1"),
    "davit": ("davit_tiny", dict(embed_dims=(8, 16), depths=(1, 1), num_heads=(2, 4), window_size=4), 32,
              "stages.0.blocks.0.0.attn", "windows", ".softmax", "/matmul#1"),
    "twins": ("twins_svt_small", dict(img_size=32, embed_dims=(8, 16, 32, 64), depths=(2, 1, 1, 1),
                                      num_heads=(2, 2, 4, 8), wss=(2, 2, 2, 2)), 32,
              "blocks.0.1.attn", "heads", "/softmax", "/matmul#1"),              # GlobalSubSampleAttn
    "coatnet": ("coatnet_nano_rw_224", dict(img_size=64), 64,
                "stages.2.blocks.0.attn", "heads", "/softmax", "/matmul#1:T"),   # v @ attn.transpose(-2, -1)
}

# family: (timm model, overrides, image size, attention module, words of the refusal)
REFUSED = {
    "xcit": ("xcit_nano_12_p16_224", dict(img_size=32, depth=1, embed_dim=24, num_heads=3), 32,
             "blocks.0.attn", "channel attention"),
    "edgenext": ("edgenext_xx_small", dict(), 64, "stages.1.blocks.1.xca", "channel attention"),
    "davit-channels": ("davit_tiny", dict(embed_dims=(8, 16), depths=(1, 1), num_heads=(2, 4), window_size=4), 32,
                       "stages.0.blocks.0.1.attn", "channel attention"),
    "coat": ("coat_lite_tiny", dict(img_size=32, embed_dims=(16, 16, 16, 16), serial_depths=(1, 1, 1, 1),
                                    num_heads=8), 32, "serial_blocks1.0.factoratt_crpe", "k.softmax"),
    "botnet": ("botnet26t_256", dict(img_size=64), 64, "stages.3.0.self_attn", "heads into the batch axis"),
    "halonet": ("halonet26t", dict(img_size=128), 128, "stages.3.0.self_attn", "heads into the batch axis"),
    "twins-local": ("twins_svt_small", dict(img_size=32, embed_dims=(8, 16, 32, 64), depths=(2, 1, 1, 1),
                                            num_heads=(2, 2, 4, 8), wss=(2, 2, 2, 2)), 32,
                    "blocks.0.0.attn", "windows or blocks"),
    "nest": ("nest_tiny", dict(img_size=32, patch_size=4), 32, "levels.0.transformer_encoder.0.attn",
             "windows or blocks"),
}

_MODELS: dict = {}


def _model(name, overrides):
    key = (name, tuple(sorted(overrides.items())))
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = timm.create_model(name, pretrained=False, num_classes=5, **overrides).eval()
    return _MODELS[key]


def _fused(model, path, on: bool) -> bool:
    """Switch timm's fused (SDPA) path of the module; False when it has none (Swin v2)."""
    module = model.get_submodule(path)
    if not hasattr(module, "fused_attn"):
        return False
    module.fused_attn = on
    return True


def _output(probe, model, x, path):
    with probe.record(path) as rec:
        model(x)
    return rec[path]


def _unfold(native, layout, n):
    """A native (N * windows, heads, ...) tensor in the documented layout (N, heads, windows, ...)."""
    if layout == "heads":
        return native
    return native.reshape(n, native.shape[0] // n, *native.shape[1:]).transpose(1, 2)


@pytest.mark.parametrize("family", list(RIGHT))
def test_parts_equal_the_modules_own_tensors_on_both_paths(family):
    name, overrides, size, path, layout, weights_at, heads_at = RIGHT[family]
    model = _model(name, overrides)
    x = torch.rand(2, 3, size, size)
    probe = insilico.Probe(model)
    assert attention_modules(model)[path] == layout
    transposed = heads_at.endswith(":T")
    oracle = (path + weights_at, path + heads_at.removesuffix(":T"))
    _fused(model, path, False)
    with probe.record(f"{path}:weights", f"{path}:heads", *oracle) as rec:
        plain = model(x)
    weights, heads = rec[oracle[0]], rec[oracle[1]]
    heads = heads.transpose(-2, -1) if transposed else heads
    torch.testing.assert_close(rec[f"{path}:weights"], _unfold(weights, layout, 2))
    torch.testing.assert_close(rec[f"{path}:heads"], _unfold(heads, layout, 2))
    parts = rec[f"{path}:weights"]
    assert parts.shape[:2] == (2, model.get_submodule(path).num_heads)
    torch.testing.assert_close(parts.sum(-1), torch.ones(parts.shape[:-1]))
    # lesioning head 1 through the part = zeroing head 1 of the module's own matmul (its axis 1 is the head)
    with probe.lesion(oracle[1] + "[1]"), probe.record(path) as out:
        model(x)
    by_op = out[path]
    with probe.lesion(f"{path}:heads[1]"), probe.record(path) as out:
        model(x)
    torch.testing.assert_close(out[path], by_op)
    assert not torch.allclose(out[path], _output(probe, model, x, path))
    if not _fused(model, path, True):        # timm's default path: F.scaled_dot_product_attention
        return
    try:
        with probe.record(f"{path}:weights", f"{path}:heads") as fused, probe.record(path) as out:
            model(x)
        with probe.lesion(f"{path}:heads[1]"), probe.record(path) as lesioned:
            model(x)
        torch.testing.assert_close(lesioned[path], by_op, atol=1e-5, rtol=1e-4)
    finally:
        _fused(model, path, False)
    torch.testing.assert_close(fused[f"{path}:weights"], rec[f"{path}:weights"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused[f"{path}:heads"], rec[f"{path}:heads"], atol=1e-5, rtol=1e-4)
    assert out[path].shape[0] == (2 if layout == "heads" else weights.shape[0])
    assert torch.equal(model(x), plain)


@pytest.mark.parametrize("family", list(REFUSED))
def test_refused_attention_says_why_and_what_to_address(family):
    name, overrides, size, path, words = REFUSED[family]
    model = _model(name, overrides)
    probe = insilico.Probe(model)
    assert attention_modules(model)[path] == "refused"
    with pytest.raises(UnitError, match="not delivered as parts") as error:
        probe.record(f"{path}:heads")
    message = str(error.value)
    assert words in message and f"'{path}/softmax'" in message and "probe.names(x, ops=True)" in message
    assert "never called" not in message


def test_vit_head_lesion_equals_zeroing_the_head_by_hand():
    name, overrides, size, path, *_ = RIGHT["vit"]
    model = _model(name, overrides)
    attn = model.get_submodule(path)
    x = torch.rand(2, 3, size, size)
    probe = insilico.Probe(model)
    with probe.record("blocks.0.norm1", f"{path}:weights") as rec:
        model(x)
    y = rec["blocks.0.norm1"]
    n, length, dim = y.shape
    q, k, v = attn.qkv(y).reshape(n, length, 3, 3, dim // 3).permute(2, 0, 3, 1, 4)
    with torch.no_grad():
        weights = torch.softmax(q @ k.transpose(-2, -1) * attn.scale, dim=-1)
        context = weights @ v
        context[:, 2] = 0
        expected = attn.proj(context.transpose(1, 2).reshape(n, length, dim))
    torch.testing.assert_close(rec[f"{path}:weights"], weights)
    with probe.lesion(f"{path}:heads[2]"), probe.record(path) as out:
        model(x)
    torch.testing.assert_close(out[path], expected)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_hugging_face_vit_parts(implementation):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                                    intermediate_size=48, image_size=32, patch_size=16)
    config._attn_implementation = implementation
    model = transformers.ViTModel(config).eval()
    path = "layers.0.attention"
    assert attention_modules(model) == {path: "heads"}
    x = torch.rand(2, 3, 32, 32)
    probe = insilico.Probe(model)
    with probe.record(f"{path}:weights", f"{path}:heads", "layers.0.layernorm_before") as rec:
        model(pixel_values=x)
    attn = model.get_submodule(path)
    y = rec["layers.0.layernorm_before"]
    q, k, v = (proj(y).reshape(2, 5, 3, 8).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    with torch.no_grad():
        weights = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(rec[f"{path}:weights"], weights)
    torch.testing.assert_close(rec[f"{path}:heads"], weights @ v)


def test_every_registered_class_exists():
    """The registry names classes by module path: a rename upstream must fail here, not silently."""
    import importlib

    for path in KNOWN:
        module, _, cls = path.rpartition(".")
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue  # the package is not installed
        assert hasattr(imported, cls), path


def test_open_clip_towers_and_attention():
    open_clip = pytest.importorskip("open_clip")
    from open_clip.transformer import Attention, VisionTransformer

    torch.manual_seed(0)
    tower = VisionTransformer(image_size=32, patch_size=16, width=24, layers=1, heads=3, mlp_ratio=2.0,
                              output_dim=8).eval()
    path = "transformer.resblocks.0.attn"
    assert attention_modules(tower) == {path: "heads"}
    x = torch.rand(2, 3, 32, 32)
    with insilico.Probe(tower).record(f"{path}:weights", "transformer.resblocks.0.ln_1") as rec:
        tower(x)
    y = rec["transformer.resblocks.0.ln_1"]
    mha = tower.get_submodule(path)
    first = mha.batch_first
    _, expected = mha(y, y, y, need_weights=True, average_attn_weights=False) if first else \
        mha(*(y.transpose(0, 1),) * 3, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(rec[f"{path}:weights"], expected)
    model = torch.nn.Sequential(Attention(24, num_heads=3)).eval()    # its own attention (SDPA)
    tokens = torch.rand(2, 5, 24)
    with insilico.Probe(model).record("0:weights", "0:heads") as rec:
        model(tokens)
    q, k, v = torch.nn.functional.linear(tokens, model[0].in_proj_weight, model[0].in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(2, 5, 3, 8).transpose(1, 2) for t in (q, k, v))
    with torch.no_grad():
        weights = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(rec["0:weights"], weights)
    torch.testing.assert_close(rec["0:heads"], weights @ v)


@pytest.mark.parametrize("kind", ["Dinov2", "CLIPVision", "SiglipVision", "DeiT"])
def test_hugging_face_parts_equal_the_eager_functions_tensors(kind):
    """Eager: the parts are the eager function's own softmax and ``attn @ v``; SDPA: the same parts."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = getattr(transformers, f"{kind}Config")(hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                                                    intermediate_size=48, image_size=32, patch_size=16)
    model = getattr(transformers, f"{kind}Model")(config).eval()
    path = next(name for name, layout in attention_modules(model).items() if "layer" in name)
    x = torch.rand(2, 3, 32, 32)
    probe = insilico.Probe(model)
    seen = {}
    for implementation in ("eager", "sdpa"):
        model.config._attn_implementation = implementation
        ops = (f"{path}/softmax", f"{path}/matmul#1") if implementation == "eager" else ()
        with probe.record(f"{path}:weights", f"{path}:heads", *ops) as rec:
            model(pixel_values=x)
        with probe.lesion(f"{path}:heads[1]"), probe.record(f"{path}:0") as lesioned:
            model(pixel_values=x)
        seen[implementation] = rec[f"{path}:weights"], rec[f"{path}:heads"], lesioned[f"{path}:0"]
        if ops:
            torch.testing.assert_close(rec[f"{path}:weights"], rec[ops[0]])
            torch.testing.assert_close(rec[f"{path}:heads"], rec[ops[1]])
            with probe.lesion(f"{ops[1]}[1]"), probe.record(f"{path}:0") as by_op:
                model(pixel_values=x)
            torch.testing.assert_close(lesioned[f"{path}:0"], by_op[f"{path}:0"])
    for eager, sdpa in zip(seen["eager"], seen["sdpa"]):
        torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-4)
    tokens = 4 + {"Dinov2": 1, "CLIPVision": 1, "SiglipVision": 0, "DeiT": 2}[kind]   # patches + CLS, distillation
    assert seen["eager"][0].shape == (2, 3, tokens, tokens)
