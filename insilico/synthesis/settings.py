"""The engine's settings as JSON, and back: what a saved result says about how it was made.

:func:`settings_of` writes a :class:`~insilico.synthesis.Synthesis`'s settings
(no callables: a custom schedule, stopping function or projection is named,
not saved); :func:`options_from` reads them back as the arguments that
rebuild the engine, for :meth:`Synthesis.resume <insilico.synthesis.Synthesis.resume>`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import stopping
from .transforms import Transforms

if TYPE_CHECKING:
    from .engine import Synthesis
    from .result import SynthesisResult


def settings_of(synth: Synthesis) -> dict:
    """JSON-able settings of ``synth``."""
    return {
        "objective": repr(synth.objective),
        "units": [str(u) for u in synth.objective.units],
        "model": type(synth.model).__name__,
        "parameterization": synth.param.spec(),
        "param_options": {k: v for k, v in synth.param_options.items() if isinstance(v, (int, float, str, bool))},
        "goal": synth.goal_name,
        "transforms": synth.transforms.spec(),
        "optimizer": synth.optimizer_name,
        "lr": synth.lr,
        "optimizer_options": {k: v for k, v in synth.optimizer_options.items() if isinstance(v, (int, float, str, bool))},
        "schedule": synth.schedule if isinstance(synth.schedule, str) else "custom",
        "schedule_steps": synth.schedule_steps,
        "steps": synth.steps,
        "stop": [stopping.rule_spec(r) for r in synth.rules],
        "projection": None if synth.projection is None else repr(synth.projection),
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
    """The parameterization kind and the keyword arguments that rebuild the engine of ``result``."""
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
        n=spec["n"], shape=spec["shape"], param_options=options, goal=s["goal"],
        transforms=Transforms(**{**s["transforms"], "scale": tuple(s["transforms"]["scale"])}),
        optimizer=s["optimizer"], lr=s["lr"], optimizer_options=s["optimizer_options"],
        schedule=s["schedule"] if s["schedule"] != "custom" else "constant", schedule_steps=s["schedule_steps"],
        steps=s["steps"], stop=[stopping.from_spec(r) for r in s["stop"] if r["rule"] in stopping.RULES],
        blur_every=s["blur_every"], blur_sigma=s["blur_sigma"], seed=result.seeds, labels=result.labels,
        precision=s.get("precision", "fp32"), channels_last=s.get("channels_last", False),
        compact=s.get("compact", False),
    )
    return kind, kwargs


__all__ = ["options_from", "settings_of"]
