"""Edits: what :meth:`insilico.Probe.lesion`, :meth:`~insilico.Probe.stimulate` and
:meth:`~insilico.Probe.lesion_connections` do to a unit in every forward pass.

An edit replaces a unit's values on chosen steps (zero, constant, the mean
over reference stimuli, seeded noise, a random fraction of channels, or the
drive ``clamp(gain * x + add)``); a connection lesion zeroes chosen weights
and restores them bit-exactly.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import InsilicoError, UnitError
from .hooks import Handle, HookOwner, _SiteHandle
from .seeding import generator
from .units import Unit, need_tensor

LESION_MODES = ("zero", "mean", "constant", "noise")


class _Edit:
    """Replace a unit's values by ``replace(selection, step)`` on chosen steps."""

    def __init__(self, unit: Unit, replace: Callable, steps: frozenset | None, label: str):
        self.unit, self.replace, self.steps, self.label = unit, replace, steps, label

    def __call__(self, output, step):
        tensor = need_tensor(self.unit, self.unit.pick(output), f" ({self.label} edits one tensor)")
        where = self.unit.where(tensor)
        if self.unit.index is None:
            edited = self.replace(tensor, step)
        else:
            edited = tensor.clone()
            edited[where] = self.replace(tensor[where], step)
        return self.unit.put(output, edited)


class Intervention(_SiteHandle):
    """An active lesion or stimulation; removed at the end of ``with`` or by ``remove()``."""

    kind = "edits"

    @property
    def lesioned(self) -> dict[str, torch.Tensor]:
        """For ``fraction=`` lesions: the chosen channel indices per unit (after the first pass)."""
        return {
            str(e.unit): e.replace.chosen for e in self.parts if getattr(e.replace, "chosen", None) is not None
        }

    def __repr__(self) -> str:
        return "; ".join(f"{e.label} {e.unit}" for e in self.parts)


class ConnectionLesion(Handle):
    """Zeroed weights of a conv/linear layer, restored bit-exactly on removal.

    The weight the layer's forward uses is the one lesioned, however it is made:

    - a plain ``weight`` parameter: the chosen entries are zeroed in place (and put back);
    - a ``torch.nn.utils.parametrize`` weight (``parametrizations.weight_norm``, ``spectral_norm``,
      ``orthogonal``, any parametrization): a mask parametrization is appended to the layer's list
      (removed after), so the effective weight is zero there and the originals are untouched;
    - a weight recomputed by a forward pre-hook from other tensors every pass (``prune``:
      ``weight_orig * weight_mask``; the old ``weight_norm``/``spectral_norm``: ``weight_g``, ``weight_v``,
      ``weight_orig``): a pre-hook that runs after theirs zeroes the recomputed weight, and the
      attribute is put back after. Zeroing ``weight_orig``/``weight_v`` instead would change the norm
      (or be masked away): the effective weight would not be the one asked for.
    """

    def __init__(self, probe: HookOwner, unit: Unit, layer: nn.Module, outputs, inputs):
        super().__init__(probe)
        weight = getattr(layer, "weight", None)
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or not torch.is_tensor(weight):
            raise InsilicoError(
                f"lesion_connections works on Linear and Conv1d/2d/3d layers; {unit.module!r} is {type(layer).__name__}"
            )
        self.unit, self.layer, self.weight = unit, layer, weight
        self.mask = _connection_mask(weight, getattr(layer, "groups", 1), outputs, inputs, unit)
        self.how = _weight_kind(layer, unit)
        self.spread = self.mask.view(self.mask.shape + (1,) * (weight.ndim - 2))  # over a kernel's positions
        self.saved = self.hook = self.unmasked = self.masked = None

    def _attach(self) -> None:
        if self.how == "parameter":
            with torch.no_grad():
                self.saved = self.weight[self.mask].clone()
                self.weight[self.mask] = 0
        elif self.how == "parametrized":
            from torch.nn.utils import parametrize

            parametrize.register_parametrization(self.layer, "weight", _ZeroMask(self.spread))
            self.saved = self.layer.parametrizations.weight
        else:
            self.hook = self.layer.register_forward_pre_hook(self._mask_recomputed)
            self._mask_recomputed(self.layer, ())

    def _mask_recomputed(self, layer, args) -> None:
        current = layer.__dict__["weight"]
        self.unmasked = self.unmasked if current is self.masked else current  # recomputed by its hook, or not
        self.masked = self.unmasked.masked_fill(self.spread, 0)
        layer.__dict__["weight"] = self.masked

    def _detach(self) -> None:
        if self.how == "parameter" and self.saved is not None:
            with torch.no_grad():
                self.weight[self.mask] = self.saved
        elif self.how == "parametrized" and self.saved is not None:
            chain = self.saved
            last = len(chain) - 1
            if not isinstance(chain[last], _ZeroMask) or chain[last].mask is not self.spread:
                raise InsilicoError(f"lesion_connections {self.unit}: the layer's weight parametrizations changed "
                                    "while the lesion was active; remove the lesion before adding parametrizations")
            del chain[last]
        elif self.hook is not None:
            self.hook.remove()
            if self.layer.__dict__.get("weight") is self.masked:
                self.layer.__dict__["weight"] = self.unmasked
        self.saved = self.hook = self.unmasked = self.masked = None

    def __repr__(self) -> str:
        return f"lesion_connections {self.unit} ({int(self.mask.sum())} connections, {self.how} weight)"


class _ZeroMask(nn.Module):
    """A parametrization that zeroes the masked entries of a weight (the last of the layer's list)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask = mask

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.masked_fill(self.mask, 0)


def _weight_kind(layer: nn.Module, unit: Unit) -> str:
    """How ``layer.weight`` is made: ``"parameter"``, ``"parametrized"`` or ``"recomputed"`` (by a pre-hook)."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(layer, "weight"):
        return "parametrized"
    if isinstance(layer._parameters.get("weight"), torch.Tensor):
        return "parameter"
    if "weight" in layer.__dict__ and layer._forward_pre_hooks:
        return "recomputed"
    raise InsilicoError(f"lesion_connections {unit}: the weight of {unit.module!r} is neither a parameter, a "
                        f"torch.nn.utils.parametrize parametrization, nor recomputed by a forward pre-hook (prune, "
                        f"weight_norm, spectral_norm), so a lesion could not be sure to reach the forward pass; "
                        f"lesion the layer's outputs with probe.lesion('{unit.module}[k]') instead")


# ---------------------------------------------------------------------------------------
# Replacements used by lesion/stimulate
# ---------------------------------------------------------------------------------------
class _MeanReplacement:
    def __init__(self, unit: Unit, means: torch.Tensor):
        self.unit, self.means = unit, means  # means: (T, *sample_shape)

    def __call__(self, sel, step):
        mean = self.unit.select(self.means[min(step, len(self.means) - 1)].unsqueeze(0))
        if mean.shape[1:] != sel.shape[1:]:  # reference images of another size than those the model runs on
            raise InsilicoError(
                f"lesion(mode='mean') of {str(self.unit)!r}: the mean over reference= has shape "
                f"{tuple(mean.shape[1:])} per stimulus, but the unit's output now has {tuple(sel.shape[1:])}: "
                "give reference= stimuli of the size (and kind) of the images the model runs on")
        return mean.to(sel.dtype).expand_as(sel)


class _NoiseReplacement:
    def __init__(self, mean: float, std: float, seed: int | None):
        self.mean, self.std, self.seed = mean, std, seed
        self.generator = None

    def __call__(self, sel, step):
        if self.generator is None or self.generator.device != sel.device:
            self.generator = generator(self.seed, sel.device)  # seed=None: fresh entropy, never the global state
        noise = torch.randn(sel.shape, generator=self.generator, device=sel.device, dtype=torch.float32)
        return (self.mean + self.std * noise).to(sel.dtype)


class _FractionMask:
    """Apply ``replace`` to a seeded random fraction of the selection's channels only."""

    def __init__(self, replace: Callable, fraction: float, seed: int | None):
        self.replace, self.fraction, self.seed = replace, fraction, seed
        self.chosen = None

    def __call__(self, sel, step):
        if sel.ndim < 2:
            raise UnitError("fraction= needs a selection with a channel axis, e.g. a whole layer or '[0:32]'")
        channels = sel.shape[1]
        if self.chosen is None:
            order = torch.randperm(channels, generator=generator(self.seed))
            self.chosen = order[: round(self.fraction * channels)].sort().values
        mask = torch.zeros(channels, dtype=torch.bool)
        mask[self.chosen] = True
        mask = mask.to(sel.device).view(1, channels, *([1] * (sel.ndim - 2)))
        return torch.where(mask, self.replace(sel, step), sel)


class _Drive:
    def __init__(self, add, gain, clamp):
        self.add, self.gain, self.clamp = add, gain, clamp

    def __call__(self, sel, step):
        out = sel
        if self.gain is not None:
            out = out * _like(self.gain, sel)
        if self.add is not None:
            out = out + _like(self.add, sel)
        if isinstance(self.clamp, tuple):
            low, high = self.clamp
            out = out.clamp(min=low, max=high)
        elif self.clamp is not None:
            out = torch.broadcast_to(_like(self.clamp, sel), sel.shape).clone()
        return out

    def __str__(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in (("add", self.add), ("gain", self.gain), ("clamp", self.clamp))]
        return ", ".join(p for p, v in zip(parts, (self.add, self.gain, self.clamp)) if v is not None)


def _steps(unit: Unit, steps) -> frozenset | None:
    if steps is not None and unit.step is not None:
        raise UnitError(f"{unit} already names step {unit.step}; drop steps= or the '@'")
    chosen = [unit.step] if unit.step is not None else ([steps] if isinstance(steps, int) else steps)
    if chosen is None:
        return None
    if any(s < 0 for s in chosen):
        raise UnitError(
            f"lesion/stimulate need steps counted from 0 (the number of calls is not known in advance): {unit}; "
            f"count the calls with probe.survey(x).count({unit.module!r}) and name the last one as "
            f"'{unit.module}@T-1'")
    return frozenset(int(s) for s in chosen)


def _like(value, ref: torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(value, device=ref.device, dtype=ref.dtype)
    try:
        torch.broadcast_shapes(tensor.shape, ref.shape)
    except RuntimeError:
        raise InsilicoError(
            f"a pattern of shape {tuple(tensor.shape)} cannot be broadcast over the selection of shape "
            f"{tuple(ref.shape[1:])} (per sample) / {tuple(ref.shape)} (batch)"
        ) from None
    return tensor


def _short(value) -> str:
    return f"Tensor{list(value.shape)}" if torch.is_tensor(value) else repr(value)


def _connection_mask(weight, groups, outputs, inputs, unit) -> torch.Tensor:
    n_out, in_per_group = weight.shape[:2]
    n_in = in_per_group * groups
    outs = torch.arange(n_out) if outputs is None else torch.as_tensor(list(outputs), dtype=torch.long)
    ins = torch.arange(n_in) if inputs is None else torch.as_tensor(list(inputs), dtype=torch.long)
    for name, index, size in (("outputs", outs, n_out), ("inputs", ins, n_in)):
        if len(index) and (index.min() < -size or index.max() >= size):
            raise UnitError(f"{name} of {unit} must lie in [0, {size}); got {index.tolist()}")
    outs, ins = outs % n_out, ins % n_in
    o, i = torch.meshgrid(outs, ins, indexing="ij")
    connected = (o // (n_out // groups)) == (i // in_per_group)
    mask = torch.zeros(n_out, in_per_group, dtype=torch.bool)
    mask[o[connected], i[connected] % in_per_group] = True
    return mask.to(weight.device)
