"""Attention parts on a sample of timm families: right, refused or wrong (issue 25).

    python benchmarks/bench_heads.py [--tree PATH] [--models vit_tiny_patch16_224 ...] [--size 64] [--json out.json]

For each model (the smallest of a family, random weights, a small input where the model takes
``img_size=``), every module whose own forward runs a softmax, ``F.scaled_dot_product_attention`` or
``F.multi_head_attention_forward``, or that has an ``nn.Softmax`` child, is asked for its parts
``:weights`` and ``:heads`` (one module per class and model), once with timm's fused attention on and
once off. A request ends as:

- ``refused``: an insilico error (:class:`insilico.errors.InsilicoError`) is raised; ``missing`` when it
  is the old "was never called" (the module ran: a silent absence, not a reason);
- ``right``: ``:weights`` is ``(N, heads, L, S)`` (``(N, heads, windows, T, T)`` for window attention),
  N the batch, ``heads`` the module's ``num_heads`` where it has one, rows summing to 1, equal (after the
  documented unfolding of windows) to a softmax over the last axis that the module's forward computed
  with the fused path off (its op ``softmax#k`` or its ``nn.Softmax`` child), over tokens (the class is
  none of the channel/factorized attentions named in ``NOT_TOKEN_ATTENTION``); ``:heads`` has the same
  ``(N, heads, L)`` (windows) leading axes, and lesioning its last head changes the module's output (unless
  silencing every head does not either: a zero-initialised output branch, as LeViT's);
- ``wrong``: anything else (a part delivered that breaks one of these), or an error that is not insilico's.

``--tree`` imports insilico from another checkout (e.g. the main branch, for the "before" numbers).
Counts are printed per family and in total; nothing is timed.
"""
import argparse
import json
import sys
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent), help="checkout to import")
parser.add_argument("--models", nargs="*", default=None)
parser.add_argument("--size", type=int, default=64, help="image size tried first (the model's own if refused)")
parser.add_argument("--json", default=None)
args = parser.parse_args()
sys.path.insert(0, args.tree)

import timm  # noqa: E402
import torch  # noqa: E402

import insilico  # noqa: E402
from insilico.errors import InsilicoError  # noqa: E402

MODELS = [
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "eva02_tiny_patch14_224", "cait_xxs24_224",
    "xcit_nano_12_p16_224", "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "swinv2_cr_tiny_ns_224",
    "davit_tiny", "coat_lite_tiny", "coatnet_nano_rw_224", "maxvit_nano_rw_256", "twins_pcpvt_small",
    "twins_svt_small", "botnet26t_256", "halonet26t", "nest_tiny", "edgenext_xx_small", "hiera_tiny_224",
    "volo_d1_224", "pvt_v2_b0", "levit_128s", "mvitv2_tiny", "tiny_vit_5m_224", "efficientformer_l1",
    "crossvit_tiny_240", "tnt_s_patch16_224", "visformer_tiny", "gcvit_xxtiny", "efficientvit_m0",
    "mobilevit_xxs", "mobilevitv2_050", "resnest14d", "skresnet18", "gcresnet26ts", "beit_base_patch16_224",
    "fastvit_t8", "poolformerv2_s12", "sequencer2d_s", "convit_tiny", "pit_ti_224", "vit_relpos_small_patch16_224",
]
ATTENTION_OPS = ("softmax", "scaled_dot_product_attention", "multi_head_attention_forward")
#: Classes whose softmax is not over tokens (their parts can never be right in the documented layout).
NOT_TOKEN_ATTENTION = {"XCA", "CrossCovarianceAttn", "ChannelAttention", "ChannelAttentionV2",
                       "FactorAttnConvRelPosEnc", "LinearSelfAttention"}


def build(name: str, size: int):
    for kwargs in (dict(img_size=size), {}):
        try:
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
            side = kwargs.get("img_size") or model.pretrained_cfg["input_size"][-1]
            x = torch.rand(2, 3, side, side)
            with torch.no_grad():
                model(x)
            return model, x
        except Exception:  # noqa: BLE001 - this size does not fit the model: try its own
            continue
    return None, None


def candidates(model, x) -> dict:
    """One module per class whose own forward computes a softmax (or an attention call) -> its softmax sites."""
    names = insilico.Probe(model).names(x[:1], ops=True)
    modules = dict(model.named_modules())
    sites: dict = {}
    for name in names:
        if "/" in name and name.split("/", 1)[1].split("#")[0] in ATTENTION_OPS:
            sites.setdefault(name.split("/", 1)[0], []).append(name)
    for path, module in modules.items():
        for child, sub in module.named_children():
            if isinstance(sub, torch.nn.Softmax):
                sites.setdefault(path, []).append(f"{path}.{child}" if path else child)
    chosen, seen = {}, set()
    for path, found in sites.items():
        cls = type(modules[path])
        if path and cls not in seen and not type(modules[path]).__module__.startswith("torch.nn.modules.linear"):
            seen.add(cls)
            chosen[path] = found
    return chosen


def softmaxes(model, x, sites) -> list:
    """The module's own last-axis softmax outputs, natively (fused attention off)."""
    probe = insilico.Probe(model)
    out = []
    for site in sites:
        try:
            with probe.record(site) as rec:
                model(x)
            value = rec[site]
        except Exception:  # noqa: BLE001 - e.g. a softmax op whose call count varies
            continue
        if torch.is_tensor(value):
            out.append(value)
    return out


def same(a, b) -> bool:
    """Equal module outputs (a tuple output is compared by its first tensor, as MViT's (x, size))."""
    first = (lambda v: v[0] if isinstance(v, (tuple, list)) else v)
    return torch.equal(first(a), first(b))


def unfold(native, n):
    return native.reshape(n, native.shape[0] // n, *native.shape[1:]).transpose(1, 2)


def judge(model, x, path, native) -> str:
    module = model.get_submodule(path)
    probe = insilico.Probe(model)
    try:
        with probe.record(path) as plain:
            model(x)
        with probe.record(f"{path}:weights", f"{path}:heads") as rec:
            model(x)
        weights, heads = rec[f"{path}:weights"], rec[f"{path}:heads"]
        last = heads.shape[1] - 1 if heads.ndim > 1 else 0
        with probe.lesion(f"{path}:heads[{last}]"), probe.record(path) as lesioned:
            model(x)
        with probe.lesion(f"{path}:heads"), probe.record(path) as silenced:
            model(x)
    except InsilicoError as error:
        return "missing" if "never called" in str(error) else "refused"
    except Exception as error:  # noqa: BLE001
        return f"wrong ({type(error).__name__})"
    n = x.shape[0]
    if type(module).__name__ in NOT_TOKEN_ATTENTION or weights.ndim not in (4, 5) or weights.shape[0] != n:
        return "wrong"
    heads_count = getattr(module, "num_heads", None)
    if isinstance(heads_count, int) and weights.shape[1] != heads_count:
        return "wrong"
    if not torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-4):
        return "wrong"
    seen = [s if weights.ndim == 4 else unfold(s, n) for s in native
            if s.ndim == 4 and (weights.ndim == 4 or s.shape[0] % n == 0)]
    if not any(s.shape == weights.shape and torch.allclose(s, weights, atol=1e-5) for s in seen):
        return "wrong"
    if heads.shape[:-1] != weights.shape[:-1]:
        return "wrong"
    if same(lesioned[path], plain[path]) and not same(silenced[path], plain[path]):
        return "wrong"  # a head lesion that does nothing where silencing every head does something
    return "right"


def fused(model, on: bool) -> None:
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = on


def main() -> None:
    tally: dict = {}
    for name in args.models or MODELS:
        model, x = build(name, args.size)
        if model is None:
            print(f"{name}: not built")
            continue
        fused(model, False)
        chosen = candidates(model, x)
        for path, sites in chosen.items():
            fused(model, False)
            native = softmaxes(model, x, sites)
            for on in (False, True):
                fused(model, on)
                verdict = judge(model, x, path, native)
                key = f"{name} {path} ({type(model.get_submodule(path)).__name__}, fused {'on' if on else 'off'})"
                tally[key] = verdict
                print(f"{key}: {verdict}", flush=True)
    counts: dict = {}
    for verdict in tally.values():
        counts[verdict.split(" ")[0]] = counts.get(verdict.split(" ")[0], 0) + 1
    listed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"insilico from {args.tree}: {len(tally)} requests: {listed}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tree": args.tree, "tally": tally, "counts": counts}, indent=1))


if __name__ == "__main__":
    main()
