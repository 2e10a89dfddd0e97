"""The engine's knobs in one object: :class:`SynthesisOptions`, shared by every design tool.

Every knob of the synthesis loop (how images are parameterized, transformed, optimised, penalised and
stopped) has ONE default and ONE description here. A tool states only where its default differs (a small
dict, e.g. :data:`insilico.design.maximize.MAXIMIZE_DEFAULTS`); its keywords go into the object and are
validated, so ``maximize(model, units, steps=64, lr=0.05)`` and
``maximize(model, units, options=SynthesisOptions(steps=64, lr=0.05))`` are the same call, and one object
configures several tools alike. A tool's own knobs extend this class (``MaximizeOptions``,
``MetamerOptions``, ...: :class:`insilico.options.Options`), and a plain SynthesisOptions given to such a tool
sets the engine's knobs. Run-level settings (``seed``, ``batch_size``, ``progress``, ``resume``, and ``out``: a
folder or an :class:`insilico.Job`) stay each tool's own parameters.

Example
-------
>>> options = SynthesisOptions(steps=64, lr=0.1)
>>> options.replace(steps=8).steps, options.steps
(8, 64)
>>> SynthesisOptions.from_kwargs("maximize", {"transforms": "default"}, stpes=8)
Traceback (most recent call last):
...
insilico.errors.InsilicoError: maximize() got an unknown option 'stpes': did you mean 'steps' or 'stop'? The options are SynthesisOptions' fields: ...
>>> SynthesisOptions(optimizer="adamm")
Traceback (most recent call last):
...
insilico.errors.InsilicoError: optimizer must be one of ('adam', 'sgd', 'lbfgs') or a factory ...
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import InsilicoError
from ..layers import image_size, renamed
from ..options import Options
from ..performance import PRECISIONS
from .best import KEEP
from .optimizers import LR_MAX, OPTIMIZERS
from .parameterization import PARAMETERIZATIONS, Parameterization
from .schedules import SCHEDULES
from .transforms import Transforms

#: Default number of steps per run (lucid's 512).
DEFAULT_STEPS = 512
#: Host looks at device-side masks/traces (progress bar, "all stopped") every this many steps.
DEFAULT_SYNC_EVERY = 16
#: ``transforms="default"``: jitter of ``DEFAULT_JITTER * side`` pixels (8 at 224; lucid).
DEFAULT_JITTER = 1 / 28
#: ``transforms="default"``: padding of ``DEFAULT_PAD * side`` pixels (12 at 224), 0 for models with ``input_size``.
DEFAULT_PAD = 1 / 18
#: ``transforms="default"``: random scale range.
DEFAULT_SCALE = (0.9, 1.1)
#: ``transforms="default"``: random rotation range, degrees.
DEFAULT_ROTATE = 10.0
#: The Fourier parameterization's spectral decay in maximize and population_control (lucid uses 1; 1.5 gives as
#: smooth images in half the steps, benchmarks/bench_maximize.py).
DEFAULT_DECAY = 1.5
#: Schedules a tool resolves itself (metamer: None and "halving", see :data:`insilico.design.metamers.METAMER_DEFAULTS`).
TOOL_SCHEDULES = ("halving", None)
#: Options that never change the images (left out of job identities).
NOT_RESULT_CHANGING = ("progress", "sync_every", "truncate", "compact", "channels_last")
_TRANSFORM_KNOBS = ("pad", "jitter", "scale", "rotate")
_INT_FIELDS = ("steps", "schedule_steps", "pad", "transforms_until", "blur_every", "sync_every")


@dataclass(frozen=True)
class SynthesisOptions(Options):
    """Every knob of the synthesis loop, with its one default (a tool's own defaults: its docstring).

    Checked when built (:meth:`validate`): an unknown name or an out-of-range value raises InsilicoError naming
    the option, e.g. ``SynthesisOptions(optimizer="adamm")`` or ``SynthesisOptions(stpes=4)`` (with its close
    matches).

    Attributes
    ----------
    steps : int
        Steps of a run (default 512, lucid's); >= 0.
    lr : float
        Learning rate, > 0 and finite (default 0.05, lucid's Adam); None only where a tool picks it
        (metamer: per optimizer).
    optimizer : {"adam", "sgd", "lbfgs"} or callable
        Default "adam" (:mod:`.optimizers`); a callable ``(params, lr=..., **optimizer_options)`` returns any
        element-wise ``torch.optim.Optimizer`` (not saved: pass it again to resume).
    optimizer_options : dict, optional
        Extra arguments of the optimizer (e.g. ``{"momentum": 0.9}``; L-BFGS ``history_size``, ``max_ls``).
    schedule : {"constant", "cosine", "linear"} or callable
        Learning-rate factor against the step (default "constant", :mod:`.schedules`); cosine and linear decay
        to 0 over ``schedule_steps`` (default ``steps``). ``"halving"`` and None: only where a tool picks
        the schedule (metamer).
    schedule_steps : int, optional
        Length of the decaying schedules (default ``steps``).
    parameterization : {"fourier", "pixel"}, Parameterization or None
        Default None: the tool's, "fourier" (1/f spectrum, decorrelated colour, sigmoid; :mod:`.parameterization`)
        for Synthesis, maximize, population_control; "pixel" for metamer and controversial.
    param_options : dict, optional
        Passed to the parameterization (``decay``, ``color``, ``squash``).
    transforms : Transforms, "default" or None
        Random per-sample transforms before the model (default None: none); "default" builds
        ``Transforms(pad, jitter, scale, rotate)`` at the image size (:meth:`make_transforms`).
    pad, jitter : int, float, optional
        Pixels of ``transforms="default"``: default ``DEFAULT_PAD * side`` (0 for a model with
        ``input_size``) and ``DEFAULT_JITTER * side``; only with ``transforms="default"``.
    scale, rotate : (float, float), float, optional
        Scale range and rotation (degrees) of ``transforms="default"``: default (0.9, 1.1) and 10.
    transforms_until : int, optional
        Transforms only on steps ``< transforms_until`` (default: every step).
    keep : {"last", "best"}
        The last iterate (default) or each sample's best untransformed iterate (:mod:`.best`).
    tv, l1, l2 : float
        Weights (>= 0) of total-variation, L1 and L2 penalties on the images, always against the goal
        (default 0; Mahendran & Vedaldi 2015).
    blur_every, blur_sigma : int, float
        Gaussian blur of ``blur_sigma`` pixels every ``blur_every`` steps (default 0: never; Yosinski et al.
        2015).
    stop : list of rules
        Stopping rules (:mod:`.stopping`), default none.
    projection : callable, optional
        ``images -> images`` in pixel space after every step (:mod:`.projection`).
    precision : {"fp32", "bf16", "fp16"}
        The model under :func:`torch.autocast` (default "fp32"; :mod:`insilico.performance`).
    channels_last : bool
        The model in NHWC memory order (default False).
    compact : bool or "cpu"
        Run the model only on the samples that have not stopped (default False; "cpu": on a CPU model).
    truncate : bool
        End each forward pass after the recorded modules (default True).
    sync_every : int
        Steps between host looks at the device (default 16).
    progress : bool
        A tqdm progress bar (default True); the tools' own ``progress=`` sets it.
    """

    steps: int = DEFAULT_STEPS
    lr: float | None = 0.05
    optimizer: str | Callable = "adam"
    optimizer_options: dict | None = None
    schedule: str | Callable[[int], float] | None = "constant"
    schedule_steps: int | None = None
    parameterization: str | Parameterization | None = None
    param_options: dict | None = None
    transforms: Transforms | str | None = None
    pad: int | None = None
    jitter: float | None = None
    scale: tuple | None = None
    rotate: float | None = None
    transforms_until: int | None = None
    keep: str = "last"
    tv: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    blur_every: int = 0
    blur_sigma: float = 0.5
    stop: Sequence = ()
    projection: Callable | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compact: bool | str = False
    truncate: bool = True
    sync_every: int = DEFAULT_SYNC_EVERY
    progress: bool = True

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:  # numpy and torch integers as plain ints (JSON settings, job identities)
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value) is not int:
                object.__setattr__(self, name, int(value))
        self.validate()  # a bad value is refused when the object is made, not when a tool first uses it

    def validate(self) -> SynthesisOptions:
        """Check every option's range; returns ``self``. Raises InsilicoError naming the option and its values."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise InsilicoError(f"steps must be at least 0 (0: only the start images), an int, not {self.steps!r}")
        if self.lr is not None and not (_number(self.lr) and math.isfinite(self.lr) and 0 < self.lr <= LR_MAX):
            raise InsilicoError(f"lr must be a positive finite number of at most {LR_MAX:g}, not {self.lr!r}")
        _choice("optimizer", self.optimizer, OPTIMIZERS, "or a factory (params, lr=...) -> torch.optim.Optimizer")
        _choice("schedule", self.schedule, SCHEDULES + TOOL_SCHEDULES, "or a function step -> factor")
        _choice("parameterization", self.parameterization, (*PARAMETERIZATIONS, None), "or a Parameterization",
                kinds=(Parameterization, type))
        _choice("keep", self.keep, KEEP)
        _choice("precision", self.precision, tuple(PRECISIONS))
        if self.compact not in (True, False, "cpu"):
            raise InsilicoError(f"compact must be True, False or 'cpu', not {self.compact!r}")
        if not (self.transforms is None or self.transforms == "default" or isinstance(self.transforms, Transforms)):
            raise InsilicoError(f"transforms must be a Transforms, 'default' or None, not {self.transforms!r}")
        given = [k for k in _TRANSFORM_KNOBS if getattr(self, k) is not None]
        if given and self.transforms != "default":
            raise InsilicoError(f"{', '.join(given)} build transforms='default', but transforms={self.transforms!r}: "
                                "pass transforms='default' or leave them out")
        for name in ("tv", "l1", "l2", "blur_sigma"):
            value = getattr(self, name)
            if not (_number(value) and math.isfinite(value) and value >= 0):
                raise InsilicoError(f"{name} must be a finite number >= 0, not {value!r}")
        for name in ("blur_every", "sync_every", "schedule_steps", "transforms_until"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InsilicoError(f"{name} must be an int >= 0, not {value!r}")
        return self

    @renamed(shape="size")
    def make_transforms(self, model, size: int | Sequence[int] | None = None) -> Transforms:
        """The transforms for images of ``size`` (read as every tool reads it, :func:`insilico.layers.image_size`:
        an int side, ``(H, W)`` or ``(C, H, W)``; default ``model.input_size``): ``transforms="default"`` built from
        pad, jitter, scale and rotate at the image's shorter side; None: the identity.

        Raises
        ------
        InsilicoError
            The former keyword ``shape=`` (now ``size=``); a size :func:`~insilico.layers.image_size` refuses.

        >>> import torch
        >>> options, net = SynthesisOptions(transforms="default"), torch.nn.Conv2d(3, 1, 1)
        >>> options.make_transforms(net, 32).jitter == options.make_transforms(net, (3, 32, 32)).jitter
        True
        """
        if self.transforms is None:
            return Transforms()
        if self.transforms != "default":
            return self.transforms
        side = min(image_size(model, size)[-2:])
        pad = self.pad
        if pad is None:
            pad = 0 if hasattr(model, "input_size") else int(round(DEFAULT_PAD * side))
        return Transforms(pad=int(pad), jitter=DEFAULT_JITTER * side if self.jitter is None else self.jitter,
                          scale=tuple(DEFAULT_SCALE if self.scale is None else self.scale),
                          rotate=DEFAULT_ROTATE if self.rotate is None else self.rotate)

    def identity(self) -> dict:
        """The options that change the images, for a job identity (:mod:`insilico.identity`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NOT_RESULT_CHANGING}


FIELDS = tuple(f.name for f in dataclasses.fields(SynthesisOptions))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice(name: str, value, names: tuple, other: str = "", kinds: tuple = ()) -> None:
    if (kinds and isinstance(value, kinds)) or (other and callable(value) and not isinstance(value, str)):
        return
    if value not in names:
        raise InsilicoError(f"{name} must be one of {tuple(n for n in names if n is not None)} {other}, not {value!r}")


__all__ = ["DEFAULT_DECAY", "DEFAULT_JITTER", "DEFAULT_PAD", "DEFAULT_ROTATE", "DEFAULT_SCALE", "DEFAULT_STEPS", "DEFAULT_SYNC_EVERY",
           "FIELDS", "SynthesisOptions"]
