"""The engine's settings as JSON, and back: what a saved result says about how it was made.

:func:`settings_of` writes a :class:`~insilico.synthesis.Synthesis`'s settings
(no callables: a custom schedule, stopping function or projection is named,
not saved; ``synth`` is the engine, which imports this module, so it is not
annotated); :func:`options_from` reads them back as the arguments that
rebuild the engine, for :meth:`Synthesis.resume <insilico.synthesis.Synthesis.resume>`;
:func:`state_of` and :func:`load_state` hold its state (parameters, optimizer,
generators, traces, stopping, best iterates) for a continued run.
"""
from __future__ import annotations

import torch

from ..errors import InsilicoError
from . import stopping
from .result import SynthesisResult
from .transforms import Transforms


def settings_of(synth) -> dict:
    """JSON-able settings of ``synth``."""
    return {
        "objective": repr(synth.objective),
        "units": [str(u) for u in synth.objective.units],
        "model": type(synth.model).__name__,
        "parameterization": synth.param.spec(),
        "param_options": {k: v for k, v in synth.param_options.items() if isinstance(v, (int, float, str, bool))},
        "goal": synth.goal_name,
        "transforms": synth.transforms.spec(),
        "transforms_until": synth.transforms_until,
        "keep": synth.keep,
        "optimizer": synth.optimizer_name,
        "lr": synth.lr,
        "optimizer_options": {k: v for k, v in synth.optimizer_options.items() if isinstance(v, (int, float, str, bool))},
        "schedule": synth.schedule if isinstance(synth.schedule, str) else "custom",
        "schedule_steps": synth.schedule_steps,
        "steps": synth.steps,
        "stop": [stopping.rule_spec(r) for r in synth.rules],
        "projection": None if synth.projection is None else repr(synth.projection),
        "tv": synth.options.tv,
        "l1": synth.options.l1,
        "l2": synth.options.l2,
        "blur_every": synth.blur_every,
        "blur_sigma": synth.blur_sigma,
        "seed": synth.seed,
        "compact": synth.compact_option,
        "device": str(synth.device),
        "dtype": str(synth.dtype).replace("torch.", ""),
        "precision": synth.precision,
        "channels_last": synth.channels_last,
    }


def options_from(result: SynthesisResult) -> tuple[str, dict]:
    """The parameterization kind and the keyword arguments that rebuild the engine of ``result`` (``n``,
    ``size``, ``seed``, ``labels`` and fields of :class:`~insilico.synthesis.SynthesisOptions`)."""
    s = result.settings
    spec = dict(s["parameterization"])
    kind = spec.pop("kind").lower()
    options = {k: v for k, v in s.get("param_options", {}).items()}
    options.setdefault("squash", spec.get("squash"))
    if kind == "fourier":
        options.setdefault("decay", spec.get("decay", 1.0))
        if not spec.get("decorrelated", True):
            options.setdefault("color", None)
    kwargs = dict(
        n=spec["n"], size=spec["shape"], param_options=options, goal=s["goal"],
        transforms=Transforms(**{**s["transforms"], "scale": tuple(s["transforms"]["scale"])}),
        optimizer=s["optimizer"], lr=s["lr"], optimizer_options=s["optimizer_options"],
        schedule=s["schedule"] if s["schedule"] != "custom" else "constant", schedule_steps=s["schedule_steps"],
        steps=s["steps"], stop=[stopping.from_spec(r) for r in s["stop"] if r["rule"] in stopping.RULES],
        tv=s.get("tv", 0.0), l1=s.get("l1", 0.0), l2=s.get("l2", 0.0),
        blur_every=s["blur_every"], blur_sigma=s["blur_sigma"], seed=result.seeds, labels=result.labels,
        precision=s.get("precision", "fp32"), channels_last=s.get("channels_last", False),
        compact=s.get("compact", False), transforms_until=s.get("transforms_until"), keep=s.get("keep", "last"),
    )
    return kind, kwargs


def state_of(synth) -> dict:
    """Everything a continued run of ``synth`` needs (tensors, numbers and lists only)."""
    return {
        "param": synth.param.param.detach().clone(),
        "optimizer": _clone(synth.optimizer.state_dict()),
        "generators": [g.get_state() for g in synth.generators],
        "trace": synth._trace[: synth.step].clone(),
        "frozen": synth.frozen.clone(),
        "stop_code": synth.stop_code.clone(),
        "stopped_at": synth.stopped_at.clone(),
        "step": synth.step,
        "previous": None if synth._previous is None else synth._previous.clone(),
        "best": synth.best.state_dict(),
    }


def load_state(synth, state: dict) -> None:
    """Set ``synth`` to continue from :func:`state_of` (e.g. ``result.state``)."""
    if tuple(state["param"].shape) != tuple(synth.param.param.shape):
        raise InsilicoError(
            f"saved parameters have shape {tuple(state['param'].shape)}, this synthesis "
            f"{tuple(synth.param.param.shape)}: resume with the same parameterization, n and shape"
        )
    with torch.no_grad():
        synth.param.param.copy_(state["param"])
    synth.optimizer.load_state_dict(state["optimizer"])
    for g, s in zip(synth.generators, state["generators"]):
        g.set_state(s)
    synth.step = int(state["step"])
    synth._trace = torch.full((max(64, 2 * synth.step), synth.n), float("nan"), device=synth.device)
    synth._trace[: synth.step] = state["trace"].to(synth.device)
    synth.frozen = state["frozen"].to(synth.device)
    synth.stop_code = state["stop_code"].to(synth.device)
    synth.stopped_at = state["stopped_at"].to(synth.device)
    synth._previous = None if state.get("previous") is None else state["previous"].to(synth.device, synth.work_dtype)
    synth.best.load_state_dict(state.get("best"))


def _clone(value):
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


__all__ = ["load_state", "options_from", "settings_of", "state_of"]
