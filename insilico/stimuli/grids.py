"""Parameter grids and argument checks shared by the stimulus generators.

:class:`_Grid` expands each sweepable keyword (a scalar or a list) into the
full factorial grid, in ``itertools.product`` order, and gives per-stimulus
parameter columns as tensors, so generators never loop over stimuli. The
``_check_*`` helpers turn bad arguments into :class:`~insilico.errors.StimulusError`
messages that say what to pass instead.
"""
from __future__ import annotations

import difflib
import itertools
import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..errors import StimulusError
from ..seeding import fresh_seed
from .stimulus_set import _jsonable


class _Grid:
    """Full factorial grid over keyword values, in itertools.product order.

    ``column(name)`` gives a length-N tensor of that keyword's value per
    stimulus without looping over stimuli.
    """

    def __init__(self, spec: dict[str, Any], sweep: Iterable[str], pairs: Iterable[str] = ()):
        sweep, pairs = set(sweep), set(pairs)
        self.options: dict[str, list] = {}
        for name, value in spec.items():
            if name in pairs:
                opts = _pair_options(name, value)
            elif _is_list(value):
                opts = value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else list(value)
                if name not in sweep:
                    raise StimulusError(f"{name} takes a single value, got a list {opts!r}.")
                if not opts:
                    raise StimulusError(f"{name} is an empty list; give at least one value.")
            else:
                opts = [value]
            self.options[name] = [o if name in pairs else _jsonable(o, name) for o in opts]
        self.names = list(self.options)
        self.lengths = [len(self.options[k]) for k in self.names]
        self.n = math.prod(self.lengths)
        self.strides = {k: math.prod(self.lengths[i + 1:]) for i, k in enumerate(self.names)}

    def params(self) -> list[dict]:
        return [dict(zip(self.names, combo)) for combo in itertools.product(*self.options.values())]

    def index(self, name: str) -> torch.Tensor:
        return torch.div(torch.arange(self.n), self.strides[name], rounding_mode="floor") % len(self.options[name])

    def column(self, name: str, fn: Callable[[Any], Any] = float) -> torch.Tensor:
        """float64 (N,) tensor (or (N, k) for pairs) of ``fn(value)`` per stimulus."""
        table = torch.tensor([fn(v) for v in self.options[name]], dtype=torch.float64)
        return table[self.index(name)]


def _is_list(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dim() > 0
    return isinstance(value, (list, tuple, np.ndarray, range))


def _pair_options(name: str, value: Any) -> list:
    """A pair (x, y) is one value; a list of pairs is a sweep."""
    def is_pair(v):
        return isinstance(v, (tuple, list, np.ndarray)) and len(v) == 2 and all(
            isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in v)

    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if is_pair(value):
        return [[float(c) for c in value]]
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) and all(is_pair(v) for v in value):
        return [[float(c) for c in v] for v in value]
    raise StimulusError(f"{name} must be an (x, y) pair or a list of pairs, got {value!r}.")


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise StimulusError(f"size must be a positive integer number of pixels, got {size!r}.")
    return int(size)


def _check_channels(channels: Any) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise StimulusError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    return int(channels)


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise StimulusError(f"{name} must be a positive integer, got {n!r}.")
    return int(n)


def _numbers(grid: _Grid, name: str, lo: float | None = None, hi: float | None = None,
             allow_none: bool = False, hint: str = "") -> None:
    for v in grid.options[name]:
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
            raise StimulusError(f"{name} must be a finite number, got {v!r}.{hint}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise StimulusError(f"{name} must lie in {rng}, got {v!r}.{hint}")


def _check_luminance(grid: _Grid, peak: float | None = None, contrast_keys: Sequence[str] = ("contrast",)) -> None:
    """mean in [0, 1], contrast in [0, 1], and mean * (1 + total contrast) <= 1 for every combination."""
    _numbers(grid, "mean", 0.0, 1.0)
    for k in contrast_keys:
        _numbers(grid, k, 0.0, 1.0, allow_none=True)
    mean = max(grid.options["mean"])
    if peak is None:
        peak = max(grid.options[contrast_keys[0]])
    if mean * (1 + peak) > 1 + 1e-9:
        raise StimulusError(
            f"mean * (1 + contrast) = {mean} * (1 + {peak:g}) = {mean * (1 + peak):.4g} exceeds 1, so the "
            f"brightest pixels would clip; lower contrast to <= {1 / mean - 1:.4g} or mean to <= {1 / (1 + peak):.4g}."
        )


def _check_choice(grid: _Grid, name: str, choices: Sequence[str]) -> None:
    for v in grid.options[name]:
        if v not in choices:
            close = difflib.get_close_matches(str(v), choices, n=2)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise StimulusError(f"unknown {name} {v!r}; choose one of {list(choices)}.{hint}")


def _polarity(v: Any) -> float:
    table = {"light": 1.0, "white": 1.0, "on": 1.0, "dark": -1.0, "black": -1.0, "off": -1.0}
    if isinstance(v, str) and v.lower() in table:
        return table[v.lower()]
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v in (1, -1):
        return float(v)
    raise StimulusError(f"polarity must be +1/'light' or -1/'dark', got {v!r}.")


def _generator(seed: int | None) -> tuple[torch.Generator, int]:
    if seed is None:
        seed = fresh_seed() % (2**31 - 1)  # the OS's entropy, not a draw from torch's global generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StimulusError(f"seed must be an integer or None, got {seed!r}.")
    return torch.Generator().manual_seed(int(seed)), int(seed)
