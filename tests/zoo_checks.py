"""The zoo harness (issue 25, item 7): one model of a zoo through record, lesion, heads, gradient maps, maximize
and tuning, each checked against a hand-written reference (plain forward hooks, hand arithmetic).

Used by ``tests/models/test_zoo.py`` (a dozen small architectures, one test per model and check) and by
``benchmarks/bench_zoo.py`` (the smallest model of every timm family, a tally of passed / refused / failed).

A :class:`Subject` is a model (random weights, eval, ``input_size`` set), a layer with a grid (a conv map
``(C, H, W)``, a channels-last stage ``(H, W, C)`` or tokens ``(T, D)``), its layout as the caller knows
it (or as :func:`insilico.layers.unit_layout` reads it, in the benchmark), the model's head unit and its
first attention module with parts. Each check in :data:`CHECKS` takes a Subject and raises: an
``AssertionError`` for a wrong answer, an :class:`insilico.InsilicoError` for a refusal, anything else for a
crash (:func:`verdict` names the three).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import insilico
from insilico.errors import InsilicoError
from insilico.units import module_table

TUNING = dict(orientations=[0.0, 45.0, 90.0, 135.0], sfs=[2.0], phases=[0.0, 90.0, 180.0, 270.0])


class Inconclusive(Exception):
    """The check cannot tell right from wrong on this model (e.g. a lesion whose hand edit changes nothing)."""


@dataclasses.dataclass
class Subject:
    """A model of the zoo and the addresses the checks use."""

    name: str
    model: nn.Module
    size: int  # image side (square RGB images)
    layer: str  # a layer with a grid, called once per pass
    layout: str  # "map", "channels_last" or "tokens"
    head: str  # a unit after the layer: a class logit ("[0]", ":logits[0]")
    attention: str | None = None  # an attention module with parts, when the model has attention

    @property
    def channel(self) -> str:
        """Channel 0 of the layer: the first axis of a map, the last axis of the other layouts."""
        return f"{self.layer}[0]" if self.layout == "map" else f"{self.layer}[...,0]"

    def images(self, n: int = 2, seed: int = 0) -> torch.Tensor:
        return torch.rand(n, 3, self.size, self.size, generator=torch.Generator().manual_seed(seed))


def subject(name: str, model: nn.Module, size: int, layer: str | None = None, layout: str | None = None,
            attention: str | None = None, has_attention: bool | None = None) -> Subject:
    """A Subject; what is not given is read from the model (the benchmark's way: a layer with a grid from the
    layer chooser, its layout and the first ``:weights`` part from a survey with ops)."""
    model.eval()
    model.input_size = (3, size, size)
    x = torch.rand(1, 3, size, size)
    survey = insilico.Probe(model).survey(x, ops=True) if attention is None or layer is None else None
    if layer is None:
        layer = _middle_layer(model, survey)
    if layout is None:
        layout = insilico.layers.unit_layout(model, layer, survey.shape(layer))
    if attention is None and survey is not None:
        parts = [c.module for c in survey if c.module.endswith(":weights")]
        attention = parts[0].rsplit(":", 1)[0] if parts else None
        if attention is None and (has_attention or (has_attention is None and _attends(model))):
            # attention modules, none with parts listed: ask the first that runs for its parts, which must be
            # refused with the reason (a class the registry refuses, or one whose attention fails the checks)
            ran = set(survey.modules())
            attention = next((path for path, m in model.named_modules() if path in ran and _is_attention(m)), "")
    return Subject(name, model, size, layer, layout, _head(model, x), attention)


def _middle_layer(model: nn.Module, survey) -> str:
    """The middle of the shallowest modules with a grid that run once (at least 3 of them: block outputs on the
    main path rather than a layer inside a residual branch, which random init may leave without effect)."""
    once = [name for name in survey.modules() if name and survey.count(name) == 1 and survey.call(name).shape
            and insilico.layers.unit_layout(model, name, survey.shape(name)) in ("map", "channels_last", "tokens")]
    for depth in range(1 + max((n.count(".") for n in once), default=0)):
        shallow = [name for name in once if name.count(".") <= depth]
        if len(shallow) >= 3 or len(shallow) == len(once):
            break
    if not once:
        raise InsilicoError(f"{type(model).__name__}: no layer with a grid runs once per pass")
    return shallow[len(shallow) // 2]


def _is_attention(module: nn.Module) -> bool:
    return "attention" in type(module).__name__.lower() or type(module).__name__.endswith("Attn")


def _attends(model: nn.Module) -> bool:
    return any(_is_attention(m) for m in model.modules())


def _head(model: nn.Module, x: torch.Tensor) -> str:
    """A class logit of the model's output: ``"[0]"``, or the first 2-d tensor of a structured output."""
    with torch.no_grad():
        out = model(x)
    if torch.is_tensor(out):
        return "[0]" if out.ndim == 2 else "[" + ",".join("0" * (out.ndim - 1)) + "]"
    items = out.items() if hasattr(out, "items") else enumerate(out)
    for key, value in items:
        if torch.is_tensor(value) and value.ndim == 2:
            return f":{key}[0]"
    raise InsilicoError(f"{type(model).__name__} returns no 2-d tensor to take a logit of")


def first_tensor(out: Any) -> torch.Tensor:
    """The model's main output: a tensor, or the first tensor of a tuple / dict / ModelOutput."""
    if torch.is_tensor(out):
        return out
    values = out.values() if hasattr(out, "values") else out
    return next(v for v in values if torch.is_tensor(v))


# ------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------
def check_record(s: Subject) -> None:
    """Every call of every module with a tensor output, recorded by insilico, equals a plain hook's copy."""
    probe, x = insilico.Probe(s.model), s.images()
    survey = probe.survey(x[:1])
    wanted = [c for c in survey if c.shape is not None and "/" not in c.module and ":" not in c.module]
    addresses = [survey.address(c.module, c.step) if survey.count(c.module) > 1 else c.module for c in wanted]
    hand: dict[str, list] = {}

    def keep(path):
        return lambda module, args, output: hand.setdefault(path, []).append(
            output.detach().clone() if torch.is_tensor(output) else None)

    handles = [m.register_forward_hook(keep(path)) for path, m in module_table(s.model).items()]
    try:
        with torch.no_grad(), probe.record(*addresses) as rec:
            s.model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert len(addresses) > 3, addresses
    for call, address in zip(wanted, addresses):
        assert torch.equal(rec[address], hand[call.module][call.step]), f"{s.name}: {address} differs from the hook's copy"


def check_lesion(s: Subject) -> None:
    """``lesion(channel 0)`` gives the model output of a hand edit that zeroes channel 0 (and differs from the
    clean output); the recorded channel is zero."""
    probe, x = insilico.Probe(s.model), s.images()
    module = insilico.Unit.parse(s.layer).resolve(s.model)

    def zero(_, args, output):
        output = output.clone()
        output[(slice(None), 0) if s.layout == "map" else (..., 0)] = 0
        return output

    with torch.no_grad():
        clean = first_tensor(s.model(x))
        with probe.lesion(s.channel), probe.record(s.channel) as rec:
            lesioned = first_tensor(s.model(x))
        handle = module.register_forward_hook(zero)
        try:
            by_hand = first_tensor(s.model(x))
        finally:
            handle.remove()
    assert rec[s.channel].abs().max() == 0
    torch.testing.assert_close(lesioned, by_hand, rtol=1e-5, atol=1e-6)
    if torch.equal(by_hand, clean):
        raise Inconclusive(f"{s.name}: zeroing {s.channel} by hand changes nothing")


def check_heads(s: Subject) -> None:
    """Right or refused (issue 25): the first attention module's ``:weights`` are probabilities (rows sum to 1)
    in the documented layout, ``(N, heads, L, S)`` or, for window attention, ``(N, heads, windows, L, S)``, and its
    ``:heads`` share every axis but the last; or the parts are refused with a UnitError saying the attention could
    not be identified (never a silent wrong tensor, never "never called"), which is raised on."""
    if s.attention is None:
        return
    assert s.attention != "", f"{s.name} has attention modules but none has the parts :heads / :weights"
    weights, heads = f"{s.attention}:weights", f"{s.attention}:heads"
    try:
        with torch.no_grad(), insilico.Probe(s.model).record(weights, heads) as rec:
            s.model(s.images())
        w, h = rec[weights], rec[heads]
    except insilico.UnitError as refusal:
        assert "Address its ops instead" in str(refusal), str(refusal)  # the reason, and the way round it
        assert "never called" not in str(refusal), str(refusal)
        raise  # a refusal with its reason: the verdict says "refused"
    assert len(w) == len(h) == 2, f"{s.name}: {len(w)} rows of :weights for 2 images (windows or patches in the batch axis)"
    assert w.ndim == h.ndim in (4, 5) and w.shape[:-1] == h.shape[:-1], (tuple(w.shape), tuple(h.shape))
    assert w.min() >= 0
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), rtol=0, atol=1e-4)
    expected = getattr(insilico.Unit.parse(s.attention).resolve(s.model), "num_heads", None)
    assert expected is None or w.shape[1] == expected, f"{w.shape[1]} heads, the module has {expected}"


def check_gradients(s: Subject) -> None:
    """The gradient map of channel 0 equals autograd through plain hooks."""
    x = s.images()
    maps = insilico.gradient_map(s.model, x, s.channel, progress=False)
    module = insilico.Unit.parse(s.layer).resolve(s.model)
    kept = []  # the channel's sum when the layer returns (later in-place ops of the model cannot change it)
    handle = module.register_forward_hook(lambda m, a, out: kept.append((out[:, 0] if s.layout == "map"
                                                                          else out[..., 0]).sum()))
    x = x.clone().requires_grad_(True)
    try:
        s.model(x)
    finally:
        handle.remove()
    (expected,) = torch.autograd.grad(kept[0], x)
    assert maps.shape == x.shape and expected.abs().max() > 0
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


def check_gradcam(s: Subject) -> None:
    """Grad-CAM of the head unit at the layer equals the hand computation on the layer's grid: channels first,
    the prefix tokens (CLS, registers: what is left over a square number of patches) dropped."""
    x = s.images()
    cam = insilico.gradient_map(s.model, x, s.head, method="gradcam", layer=s.layer, progress=False)
    module = insilico.Unit.parse(s.layer).resolve(s.model)
    kept = []

    def keep(_, args, output):  # the layer's values, out of reach of the model's later in-place ops
        kept.append(output.clone())
        return kept[-1].clone()

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            out = s.model(x)
    finally:
        handle.remove()
    head = insilico.Unit.parse(s.head)
    logit = head.select(head.pick(out)).sum()
    act = kept[0]
    (grad,) = torch.autograd.grad(logit, act)
    if grad.abs().max() == 0:
        raise Inconclusive(f"{s.name}: the head does not depend on {s.layer} (random init)")
    act, grad = _grid(act.detach(), s.layout), _grid(grad, s.layout)
    expected = F.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1, keepdim=True))
    expected = F.interpolate(expected, size=x.shape[2:], mode="bilinear", align_corners=False).expand_as(x)
    assert cam.shape == x.shape
    torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-5 * max(1.0, float(expected.abs().max())))


def _grid(value: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "map":
        return value
    if layout == "channels_last":
        return value.permute(0, 3, 1, 2)
    side = math.isqrt(value.shape[1])
    patches = value[:, value.shape[1] - side * side:]
    return patches.transpose(1, 2).reshape(value.shape[0], value.shape[2], side, side)


def check_maximize(s: Subject) -> None:
    """Two steps of maximize on channel 0: a pixel-space image and finite losses that do not get worse."""
    result = insilico.maximize(s.model, s.channel, size=s.size, steps=2, progress=False, seed=0)
    images = result.images
    assert tuple(images.shape) == (1, 3, s.size, s.size)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert torch.isfinite(torch.as_tensor(result.losses)).all()


def check_tuning(s: Subject) -> None:
    """Orientation tuning of channel 0 over 4 orientations: one curve of 4 finite responses, a peak among them."""
    unit = f"{s.layer}[0]" if s.layout == "map" else (f"{s.layer}[:,:,0]" if s.layout == "channels_last"
                                                      else f"{s.layer}[:,0]")
    result = insilico.experiments.orientation_tuning(s.model, unit, size=s.size, progress=False, **TUNING)
    curves = torch.as_tensor(result.curves)
    assert tuple(curves.shape) == (1, 4) and torch.isfinite(curves).all(), curves
    peak = float(torch.as_tensor(result.peak_orientation)[0])
    assert math.isnan(peak) or peak in TUNING["orientations"], peak


CHECKS: dict[str, Callable[[Subject], None]] = {
    "record": check_record, "lesion": check_lesion, "heads": check_heads, "gradients": check_gradients,
    "gradcam": check_gradcam, "maximize": check_maximize, "tuning": check_tuning,
}


def verdict(check: Callable[[Subject], None], s: Subject) -> tuple[str, str]:
    """``("passed" | "refused" | "failed" | "n/a", detail)``: a refusal is an InsilicoError (its message), a
    failure a wrong answer or a crash, "n/a" a check that cannot tell on this model (:class:`Inconclusive`)."""
    try:
        check(s)
    except Inconclusive as why:
        return "n/a", str(why)
    except InsilicoError as error:
        return "refused", f"{type(error).__name__}: {error}"
    except Exception as error:  # noqa: BLE001 - every other outcome is a failure, named
        return "failed", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return "passed", ""
