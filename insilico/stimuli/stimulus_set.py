"""Parametric stimuli for in-silico electrophysiology.

Every generator returns a :class:`StimulusSet`: ``.images``, a float tensor
``(N, C, H, W)`` in pixel space ``[0, 1]``, and ``.params``, one dict per
stimulus keyed by the generator's keyword names. Parametric generators take a
scalar or a list (tuple, array, range) for each sweepable keyword and return
the full factorial grid, ordered like ``itertools.product`` over the keywords
in signature order (the last keyword varies fastest). ``center`` is the
exception: one ``(x, y)`` pair is one value, a list of pairs a sweep.

Conventions shared by the parametric generators
-----------------------------------------------
- Images are square, ``size`` x ``size`` pixels.
- Lengths (``aperture``, ``sigma``, bar ``length``/``width``, edge ``position``)
  are fractions of the image side: ``aperture=0.5`` is the circle inscribed in
  the image.
- ``center=(x, y)`` is a fraction of the image side in image coordinates
  (x to the right, y downwards); ``(0.5, 0.5)`` is the centre pixel
  ``(size // 2, size // 2)``.
- Orientation is in degrees, counter-clockwise as seen on screen:
  0 = vertical bars (luminance varies along x), 90 = horizontal bars,
  45 = bars running from top-left to bottom-right ("\\").
- Spatial frequency ``sf`` is in cycles per image (``sf_unit="cpi"``, default)
  or in cycles per degree (``sf_unit="cpd"``, needs ``fov``, the degrees of
  visual angle spanned by the image side).
- Phase is in degrees: phase 0 puts a luminance peak on ``center``.
- Luminance is ``mean * (1 + contrast * wave)`` with ``wave`` in ``[-1, 1]``,
  so ``contrast`` is the Michelson contrast and ``mean`` the mean luminance,
  both exactly; ``mean * (1 + contrast)`` must not exceed 1. Outside a circular
  ``aperture`` every pixel equals ``mean``.
- ``channels=3`` repeats the achromatic image over RGB (the noise generators
  draw each channel independently instead).

Rendering is written by hand because no library renders batched parameter
grids: each generator builds parameter tensors of length N and broadcasts them
against one coordinate grid, so there is no Python loop per stimulus.
Photographs come from scikit-image (its bundled files only, read from disk, so
no download is ever attempted) and ``skimage.io``.
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import pathlib
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StimulusError
from ..pixels import check_images

__all__ = [
    "StimulusSet",
    "PHOTOS",
    "gratings",
    "gabors",
    "plaids",
    "bars",
    "edges",
    "sparse_noise",
    "white_noise",
    "pink_noise",
    "natural_images",
    "from_folder",
]

_FORMAT = "insilico.StimulusSet/1"


# --------------------------------------------------------------------------- StimulusSet
def _jsonable(value: Any, where: str) -> Any:
    """Normalise a parameter value to plain JSON types (tuples become lists)."""
    if isinstance(value, np.generic):  # before int/float: np.float64 subclasses float
        return _jsonable(value.item(), where)
    if value is None or type(value) in (bool, str, int, float):
        return value
    if isinstance(value, (bool, str, int, float)):  # subclasses (IntEnum, str enums...) -> base type
        for base in (bool, int, float, str):
            if isinstance(value, base):
                return base(value)
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.dim() else value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise StimulusError(
        f"{where} holds a {type(value).__name__}, which cannot be saved as JSON; "
        "store numbers, strings, booleans, None, or lists/dicts of them (e.g. str(obj))."
    )


_PLAIN = frozenset({type(None), bool, int, float, str})


def _clean(p: dict, i: int) -> dict:
    """Copy of one params dict with JSON-compatible values (fast path for already-plain dicts)."""
    for k, v in p.items():
        t = type(v)
        if type(k) is not str or not (t in _PLAIN or (t is list and all(type(x) in _PLAIN for x in v))):
            return _jsonable(p, f"params[{i}]")
    return dict(p)


def _same(a: Any, b: Any) -> bool:
    """Parameter equality: numbers compare with a float tolerance, sequences element-wise."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    num = (int, float, np.number)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=1e-12))
    return a == b


class StimulusSet:
    """A batch of stimuli in pixel space with one parameter dict per stimulus.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray, shape (N, C, H, W)
        Floating point, finite, in ``[0, 1]``.
    params : list of dict, optional
        One dict per stimulus with JSON-compatible values (numbers, strings,
        booleans, None, lists). Default: empty dicts.

    Raises
    ------
    StimulusError
        If the images are not a finite 4-D float tensor in ``[0, 1]`` or
        ``len(params) != N``.

    Examples
    --------
    >>> import torch
    >>> s = StimulusSet(torch.full((2, 1, 8, 8), 0.5), [{"k": 0}, {"k": 1}])
    >>> len(s), s[1].params
    (2, [{'k': 1}])
    >>> len(s + s)
    4
    """

    def __init__(self, images: torch.Tensor | np.ndarray, params: Sequence[dict] | None = None):
        images = check_images(images)
        n = images.shape[0]
        if params is None:
            params = [{} for _ in range(n)]
        if isinstance(params, dict) or not isinstance(params, Sequence):
            raise StimulusError(
                f"params must be a list with one dict per stimulus, got {type(params).__name__}."
            )
        if len(params) != n:
            raise StimulusError(
                f"len(params) = {len(params)} but there are {n} images; pass one dict per image "
                "(or params=None)."
            )
        clean = []
        for i, p in enumerate(params):
            if not isinstance(p, dict):
                raise StimulusError(f"params[{i}] must be a dict, got {type(p).__name__}.")
            clean.append(_clean(p, i))
        self.images = images
        self.params = clean

    @classmethod
    def _trusted(cls, images: torch.Tensor, params: list[dict]) -> "StimulusSet":
        """Build from params this module already made JSON-clean (images are still checked)."""
        obj = cls.__new__(cls)
        obj.images = check_images(images, empty=True)
        if len(params) != obj.images.shape[0]:
            raise StimulusError(f"internal: {len(params)} params for {obj.images.shape[0]} images.")
        obj.params = [dict(p) for p in params]
        return obj


    # -- container protocol
    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        keys = sorted({k for p in self.params for k in p})
        return f"StimulusSet(n={n}, channels={c}, size={h}x{w}, device={self.images.device}, keys={keys})"

    def __getitem__(self, index) -> "StimulusSet":
        n = len(self)
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for a StimulusSet of {n} stimuli")
            i %= n
            return StimulusSet._trusted(self.images[i : i + 1], [self.params[i]])
        if isinstance(index, slice):
            return StimulusSet._trusted(self.images[index], self.params[index])
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask has shape {idx.shape}, expected ({n},)")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
            raise IndexError(
                "index a StimulusSet with an int, a slice, a boolean mask or a 1-D list of ints, "
                f"got {type(index).__name__}"
            )
        if idx.size and (idx.max() >= n or idx.min() < -n):
            raise IndexError(f"index out of range for a StimulusSet of {n} stimuli")
        idx = idx % n if idx.size else idx
        t = torch.as_tensor(idx, dtype=torch.long, device=self.images.device)
        return StimulusSet._trusted(self.images.index_select(0, t), [self.params[i] for i in idx.tolist()])

    def __add__(self, other: "StimulusSet") -> "StimulusSet":
        if not isinstance(other, StimulusSet):
            return NotImplemented
        return StimulusSet.concat([self, other])

    @staticmethod
    def concat(sets: Iterable["StimulusSet"]) -> "StimulusSet":
        """Concatenate stimulus sets of equal channels and size (on the first set's device).

        Examples
        --------
        >>> a = gratings(size=16, orientation=[0, 90])
        >>> len(StimulusSet.concat([a, a, a]))
        6
        """
        sets = list(sets)
        if not sets:
            raise StimulusError("StimulusSet.concat needs at least one StimulusSet.")
        for i, s in enumerate(sets):
            if not isinstance(s, StimulusSet):
                raise StimulusError(f"StimulusSet.concat: item {i} is a {type(s).__name__}, not a StimulusSet.")
        shape = sets[0].images.shape[1:]
        for i, s in enumerate(sets[1:], 1):
            if s.images.shape[1:] != shape:
                raise StimulusError(
                    f"cannot concatenate stimuli of shape (C, H, W) = {tuple(shape)} and {tuple(s.images.shape[1:])} "
                    f"(set {i}); regenerate them with the same size and channels."
                )
        first = sets[0].images
        images = torch.cat([s.images.to(device=first.device, dtype=first.dtype) for s in sets])
        return StimulusSet._trusted(images, [p for s in sets for p in s.params])

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "StimulusSet":
        """Return a copy of the set on ``device`` (and ``dtype``, a float type)."""
        return StimulusSet._trusted(self.images.to(device=device, dtype=dtype), self.params)

    # -- parameters
    def table(self) -> dict[str, np.ndarray]:
        """Parameters as columns: ``{key: numpy array of length N}``.

        Missing keys are None; pairs such as ``center`` become ``(N, 2)`` arrays
        when every row is a pair, otherwise object arrays.

        Examples
        --------
        >>> gratings(size=16, orientation=[0, 45, 90]).table()["orientation"]
        array([ 0, 45, 90])
        """
        keys: list[str] = []
        for p in self.params:
            keys += [k for k in p if k not in keys]
        out = {}
        for k in keys:
            col = [p.get(k) for p in self.params]
            try:
                arr = np.asarray(col)
            except ValueError:  # ragged lists
                arr = None
            if arr is None or arr.dtype == object:
                arr = np.empty(len(col), dtype=object)
                arr[:] = col
            out[k] = arr
        return out

    def where(self, predicate: Callable[[dict], bool] | None = None, **conditions) -> "StimulusSet":
        """Stimuli whose params match every condition.

        A condition value may be a value (numbers match within float tolerance),
        a list of accepted values, or a callable applied to the value.
        ``predicate`` receives the whole params dict.

        Examples
        --------
        >>> g = gratings(size=16, orientation=[0, 45, 90], sf=[2, 4])
        >>> len(g.where(orientation=45)), len(g.where(orientation=[0, 90], sf=4))
        (2, 2)
        """
        keys = {k for p in self.params for k in p}
        missing = [k for k in conditions if k not in keys]
        if missing:
            raise StimulusError(
                f"no stimulus has parameter(s) {missing}; available: {sorted(keys)}."
            )

        def match(p: dict) -> bool:
            if predicate is not None and not predicate(p):
                return False
            for k, want in conditions.items():
                if k not in p:
                    return False
                v = p[k]
                if callable(want):
                    ok = want(v)
                elif isinstance(want, (list, set, np.ndarray)) and not (
                    isinstance(v, list) and _same(v, list(want))
                ):
                    ok = any(_same(v, w) for w in want)
                else:
                    ok = _same(v, want)
                if not ok:
                    return False
            return True

        return self[np.array([match(p) for p in self.params], dtype=bool)]

    # -- persistence
    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Save images and params to ``.npz`` (numpy) or ``.pt`` (torch); params are stored as JSON.

        Nothing is pickled; :meth:`load` restores images bit for bit.

        Examples
        --------
        >>> import tempfile, os
        >>> g = gratings(size=16, orientation=[0, 90])
        >>> p = g.save(os.path.join(tempfile.mkdtemp(), "g.npz"))
        >>> bool((StimulusSet.load(p).images == g.images).all())
        True
        """
        path = pathlib.Path(path)
        meta = json.dumps({"format": _FORMAT, "torch": torch.__version__})
        params = json.dumps(self.params)
        images = self.images.detach().cpu()
        if path.suffix == ".npz":
            np.savez_compressed(path, images=images.numpy(), params=np.array(params), meta=np.array(meta))
        elif path.suffix in (".pt", ".pth"):
            torch.save({"images": images, "params": params, "meta": meta}, path)
        else:
            raise StimulusError(f"save: unknown file type {path.suffix!r}; use a path ending in .npz or .pt.")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "StimulusSet":
        """Load a set written by :meth:`save` (``.npz`` or ``.pt``)."""
        path = pathlib.Path(path)
        if not path.exists():
            raise StimulusError(f"load: no file at {path}.")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "images" not in z or "params" not in z:
                    raise StimulusError(f"load: {path} is not a StimulusSet file (missing 'images'/'params').")
                images = torch.from_numpy(z["images"].copy())
                params = json.loads(str(z["params"]))
        elif path.suffix in (".pt", ".pth"):
            d = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(d, dict) or "images" not in d or "params" not in d:
                raise StimulusError(f"load: {path} is not a StimulusSet file (missing 'images'/'params').")
            images, params = d["images"], json.loads(d["params"])
        else:
            raise StimulusError(f"load: unknown file type {path.suffix!r}; expected .npz or .pt.")
        out = cls(images, params)
        return out.to(device) if device is not None else out

    # -- plotting
    def plot(self, n: int = 16, ax=None, ncols: int | None = None, keys: Sequence[str] | None = None,
             cmap: str = "gray"):
        """Show the first ``n`` stimuli in a grid titled with their parameters.

        Titles list ``keys`` (default: the parameters that vary among the shown
        stimuli). With ``ax``, the stimuli are drawn as one montage in that axes.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = gratings(size=16, orientation=[0, 45, 90]).plot()
        >>> len(fig.axes)
        3
        """
        import matplotlib.pyplot as plt

        shown = self[: max(0, int(n))]
        m = len(shown)
        if m == 0:
            raise StimulusError("plot: nothing to show (empty StimulusSet or n=0).")
        imgs = shown.images.detach().float().cpu()
        if imgs.shape[1] not in (1, 3):
            imgs = imgs[:, :1]
        if keys is None:
            keys = [k for k in dict.fromkeys(k for p in shown.params for k in p)
                    if any(not _same(p.get(k), shown.params[0].get(k)) for p in shown.params)]
        titles = [", ".join(f"{k}={_fmt(p[k])}" for k in keys if k in p) for p in shown.params]
        ncols = ncols or min(m, 8)
        nrows = math.ceil(m / ncols)

        def show(a, img):
            arr = img.permute(1, 2, 0).numpy()
            if arr.shape[2] == 1:
                a.imshow(arr[..., 0], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            else:
                a.imshow(arr, interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])

        if ax is not None:  # montage into one axes
            c, h, w = imgs.shape[1:]
            pad = 1
            canvas = torch.ones(c, nrows * (h + pad) - pad, ncols * (w + pad) - pad)
            for i in range(m):
                r, q = divmod(i, ncols)
                canvas[:, r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = imgs[i]
            show(ax, canvas)
            return ax.figure
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.8 * nrows), squeeze=False)
        for i, a in enumerate(axes.flat):
            if i < m:
                show(a, imgs[i])
                if titles[i]:
                    a.set_title(titles[i], fontsize=6)
            else:
                fig.delaxes(a)
        fig.tight_layout()
        return fig


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "(" + ",".join(_fmt(x) for x in v) + ")"
    return str(v)


# --------------------------------------------------------------------------- parameter grids
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


def _coords(grid: _Grid, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stimulus coordinates relative to ``center``, in fractions of the image side.

    Returns X of shape (N, 1, W) (rightwards) and Y of shape (N, H, 1) (upwards).
    """
    pix = (torch.arange(size, dtype=torch.float64) - size // 2) / size
    c = grid.column("center", fn=lambda p: p)  # (N, 2)
    x = pix[None, :] - (c[:, 0:1] - 0.5)
    y = -(pix[None, :] - (c[:, 1:2] - 0.5))
    return (x.to(device, torch.float32)[:, None, :], y.to(device, torch.float32)[:, :, None])


def _sf_cycles_per_image(grid: _Grid, size: int, sf_unit: str, fov: float | None, key: str = "sf") -> torch.Tensor:
    if sf_unit not in ("cpi", "cpd"):
        close = difflib.get_close_matches(str(sf_unit), ["cpi", "cpd"], n=1)
        raise StimulusError(
            f"unknown sf_unit {sf_unit!r}; use 'cpi' (cycles per image) or 'cpd' (cycles per degree, needs fov)."
            + (f" Did you mean {close[0]!r}?" if close else "")
        )
    if fov is not None and (isinstance(fov, bool) or not isinstance(fov, (int, float, np.number)) or not fov > 0
                            or not math.isfinite(fov)):
        raise StimulusError(
            f"fov (degrees of visual angle spanned by the image) must be a positive number, got {fov!r}."
        )
    if sf_unit == "cpd" and fov is None:
        raise StimulusError("sf_unit='cpd' needs fov=, the degrees of visual angle the image spans (e.g. fov=8).")
    _numbers(grid, key, 0.0, None, allow_none=(key != "sf"))
    scale = float(fov) if sf_unit == "cpd" else 1.0
    sf = grid.column(key, fn=lambda v: math.nan if v is None else v) * scale
    top = torch.nan_to_num(sf, nan=0.0).max().item() if len(sf) else 0.0
    if top > size / 2 + 1e-9:
        raise StimulusError(
            f"{key} = {top / scale:g} {sf_unit} is {top:g} cycles per image, above the Nyquist limit of "
            f"{size / 2:g} cycles for size={size}; lower {key} or raise size."
        )
    return sf


def _finish(lum: torch.Tensor, channels: int, params: list[dict]) -> StimulusSet:
    """(N, H, W) luminance -> StimulusSet; ``params`` must be JSON-clean (built from a _Grid)."""
    lum = lum.clamp_(0.0, 1.0)
    images = lum.unsqueeze(1)
    if channels == 3:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return StimulusSet._trusted(images, params)


def _aperture(lum: torch.Tensor, grid: _Grid, X: torch.Tensor, Y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Set every pixel farther than ``aperture`` from the centre to the mean luminance."""
    _numbers(grid, "aperture", 0.0, None, allow_none=True)
    if all(v is None for v in grid.options["aperture"]):
        return lum
    r = grid.column("aperture", fn=lambda v: math.inf if v is None else v).to(lum.device, torch.float32)
    outside = (X * X + Y * Y) > (r * r)[:, None, None]
    return torch.where(outside, mean[:, None, None].expand_as(lum), lum)


def _rotated(grid: _Grid, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates rotated by each stimulus's orientation: (across, along) the orientation, (N, H, W) each."""
    th = torch.deg2rad(grid.column("orientation"))
    c = torch.cos(th).to(X.device, torch.float32)[:, None, None]
    s = torch.sin(th).to(X.device, torch.float32)[:, None, None]
    return X * c + Y * s, Y * c - X * s


def _wave(grid: _Grid, X, Y, sf, orientation_deg, phase_deg, device) -> torch.Tensor:
    """cos(2*pi*sf*(x cos(th) + y sin(th)) + phase), (N, H, W), computed separably.

    cos(a + b) = cos a cos b - sin a sin b with a depending on x only and b on
    y only, so only N*(H + W) trigonometric evaluations are needed.
    """
    th = torch.deg2rad(orientation_deg)
    k = 2 * math.pi * sf
    kx = (k * torch.cos(th)).to(device, torch.float32)[:, None, None]
    ky = (k * torch.sin(th)).to(device, torch.float32)[:, None, None]
    ph = torch.deg2rad(phase_deg).to(device, torch.float32)[:, None, None]
    a = kx * X + ph  # (N, 1, W)
    b = ky * Y  # (N, H, 1)
    out = torch.cos(a) * torch.cos(b)
    out.addcmul_(torch.sin(a), torch.sin(b), value=-1.0)
    return out


def _apply_wave_shape(grid: _Grid, w: torch.Tensor) -> torch.Tensor:
    _check_choice(grid, "wave", ("sine", "square"))
    if "square" not in grid.options["wave"]:
        return w
    sq = torch.where(w >= 0, 1.0, -1.0)
    if "sine" not in grid.options["wave"]:
        return sq
    is_sq = (grid.column("wave", fn=lambda v: v == "square") > 0).to(w.device)[:, None, None]
    return torch.where(is_sq, sq, w)


# --------------------------------------------------------------------------- gratings & co
_GRATING_DOC_PARAMS = """
    size : int
        Image side in pixels.
    orientation : float or list, degrees
        Counter-clockwise; 0 = vertical bars (luminance varies along x).
    sf : float or list
        Spatial frequency in cycles per image (``sf_unit="cpi"``) or cycles per
        degree (``sf_unit="cpd"``, needs ``fov``). At most ``size / 2`` cycles per image.
    phase : float or list, degrees
        0 puts a luminance peak on ``center``.
    contrast : float or list in [0, 1]
        Michelson contrast.
    mean : float or list in [0, 1]
        Mean luminance; ``mean * (1 + contrast) <= 1``.
    wave : {"sine", "square"} or list
        Square waves take exactly the two values ``mean * (1 +- contrast)``.
    channels : {1, 3}
    aperture : None, float or list
        Radius of a circular aperture as a fraction of the image side
        (0.5 = inscribed circle); pixels outside equal ``mean``. None: no aperture.
    center : (x, y) or list of pairs
        Fractions of the image side, image coordinates; (0.5, 0.5) = pixel (size//2, size//2).
    fov : float, optional
        Degrees of visual angle spanned by the image side.
    sf_unit : {"cpi", "cpd"}
    device : torch device, optional"""


def gratings(size: int = 64, orientation: Any = 0.0, sf: Any = 4.0, phase: Any = 0.0, contrast: Any = 1.0,
             mean: Any = 0.5, wave: Any = "sine", channels: int = 1, aperture: Any = None,
             center: Any = (0.5, 0.5), fov: float | None = None, sf_unit: str = "cpi",
             device: str | torch.device | None = None) -> StimulusSet:
    """Sine or square-wave gratings over a full factorial parameter grid.

    Luminance = ``mean * (1 + contrast * wave(2*pi*sf*u + phase))`` where ``u``
    is the distance from ``center`` along the grating's normal
    ``(cos(orientation), sin(orientation))`` (y pointing up).

    Parameters
    ----------{params}

    Returns
    -------
    StimulusSet
        ``N = product of the list lengths`` stimuli; params keys are the keyword names.

    Examples
    --------
    >>> g = gratings(size=32, orientation=[0, 45, 90, 135], sf=[2, 4], contrast=0.5)
    >>> tuple(g.images.shape), g.params[1]["orientation"], g.params[1]["sf"]
    ((8, 1, 32, 32), 0, 4)
    >>> round(g.images.max().item(), 6), round(g.images.min().item(), 6)
    (0.75, 0.25)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, sf=sf, phase=phase, contrast=contrast, mean=mean,
                      wave=wave, channels=channels, aperture=aperture, center=center, fov=fov, sf_unit=sf_unit),
                 sweep=("orientation", "sf", "phase", "contrast", "mean", "wave", "aperture"), pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "phase")
    _check_luminance(grid)
    sfc = _sf_cycles_per_image(grid, size, sf_unit, fov)
    X, Y = _coords(grid, size, device)
    w = _wave(grid, X, Y, sfc, grid.column("orientation"), grid.column("phase"), X.device)
    w = _apply_wave_shape(grid, w)
    m = grid.column("mean").to(X.device, torch.float32)
    mc = m * grid.column("contrast").to(X.device, torch.float32)
    lum = w.mul_(mc[:, None, None]).add_(m[:, None, None])
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


gratings.__doc__ = gratings.__doc__.format(params=_GRATING_DOC_PARAMS)


def gabors(size: int = 64, orientation: Any = 0.0, sf: Any = 4.0, phase: Any = 0.0, sigma: Any = 0.125,
           contrast: Any = 1.0, mean: Any = 0.5, wave: Any = "sine", aspect: Any = 1.0, channels: int = 1,
           aperture: Any = None, center: Any = (0.5, 0.5), fov: float | None = None, sf_unit: str = "cpi",
           device: str | torch.device | None = None) -> StimulusSet:
    """Gabor patches: a grating multiplied by a Gaussian envelope centred on ``center``.

    Luminance = ``mean * (1 + contrast * envelope * wave)`` with
    ``envelope = exp(-(u**2 + (v / aspect)**2) / (2 * sigma**2))``, ``u`` across
    and ``v`` along the bars, so a phase-0 Gabor peaks at exactly
    ``mean * (1 + contrast)`` on the centre pixel.

    Parameters
    ----------{params}
    sigma : float or list
        Envelope standard deviation as a fraction of the image side.
    aspect : float or list
        Envelope elongation along the bars (1 = circular).

    Examples
    --------
    >>> g = gabors(size=32, orientation=[0, 90], sigma=[0.1, 0.2])
    >>> len(g), g.params[3]["sigma"], round(g.images[0, 0, 16, 16].item(), 6)
    (4, 0.2, 1.0)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, sf=sf, phase=phase, sigma=sigma, contrast=contrast,
                      mean=mean, wave=wave, aspect=aspect, channels=channels, aperture=aperture, center=center,
                      fov=fov, sf_unit=sf_unit),
                 sweep=("orientation", "sf", "phase", "sigma", "contrast", "mean", "wave", "aspect", "aperture"),
                 pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "phase")
    _check_luminance(grid)
    for k in ("sigma", "aspect"):
        _numbers(grid, k, 0.0)
        if min(grid.options[k]) <= 0:
            raise StimulusError(f"{k} must be positive, got {min(grid.options[k])!r}.")
    sfc = _sf_cycles_per_image(grid, size, sf_unit, fov)
    X, Y = _coords(grid, size, device)
    dev = X.device
    ori = grid.column("orientation")
    w = _apply_wave_shape(grid, _wave(grid, X, Y, sfc, ori, grid.column("phase"), dev))
    th = torch.deg2rad(ori)
    c = torch.cos(th).to(dev, torch.float32)[:, None, None]
    s = torch.sin(th).to(dev, torch.float32)[:, None, None]
    u = X * c + Y * s
    v = (Y * c - X * s) / grid.column("aspect").to(dev, torch.float32)[:, None, None]
    sig = grid.column("sigma").to(dev, torch.float32)[:, None, None]
    env = torch.exp(-(u * u + v * v) / (2 * sig * sig))
    m = grid.column("mean").to(dev, torch.float32)
    mc = m * grid.column("contrast").to(dev, torch.float32)
    lum = m[:, None, None] + mc[:, None, None] * env * w
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


gabors.__doc__ = gabors.__doc__.format(params=_GRATING_DOC_PARAMS)


def plaids(size: int = 64, orientation: Any = 0.0, angle: Any = 90.0, sf: Any = 4.0, sf2: Any = None,
           phase: Any = 0.0, phase2: Any = None, contrast: Any = 0.5, contrast2: Any = None, mean: Any = 0.5,
           wave: Any = "sine", channels: int = 1, aperture: Any = None, center: Any = (0.5, 0.5),
           fov: float | None = None, sf_unit: str = "cpi", device: str | torch.device | None = None) -> StimulusSet:
    """Plaids: the sum of two gratings, the second at ``orientation + angle``.

    Luminance = ``mean * (1 + contrast * w1 + contrast2 * w2)``: each component
    keeps its own Michelson contrast, so ``contrast + contrast2 <= 1`` and
    ``mean * (1 + contrast + contrast2) <= 1``. ``sf2``, ``phase2`` and
    ``contrast2`` default (None) to the first component's values.

    Parameters
    ----------{params}
    angle : float or list, degrees
        Orientation of the second component relative to the first.
    sf2, phase2, contrast2 : float, list or None
        Second component's values (None: same as the first).

    Examples
    --------
    >>> p = plaids(size=32, orientation=[0, 45], angle=[60, 90], contrast=0.25)
    >>> len(p), p.params[1]["angle"], round(p.images.max().item(), 6)
    (4, 90, 0.75)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, angle=angle, sf=sf, sf2=sf2, phase=phase, phase2=phase2,
                      contrast=contrast, contrast2=contrast2, mean=mean, wave=wave, channels=channels,
                      aperture=aperture, center=center, fov=fov, sf_unit=sf_unit),
                 sweep=("orientation", "angle", "sf", "sf2", "phase", "phase2", "contrast", "contrast2", "mean",
                        "wave", "aperture"), pairs=("center",))
    for k in ("orientation", "angle", "phase"):
        _numbers(grid, k)
    _numbers(grid, "phase2", allow_none=True)
    _numbers(grid, "contrast", 0.0, 1.0)
    _numbers(grid, "contrast2", 0.0, 1.0, allow_none=True)
    peak = max(c1 + (c1 if c2 is None else c2) for c1 in grid.options["contrast"] for c2 in grid.options["contrast2"])
    _check_luminance(grid, peak=peak, contrast_keys=("contrast", "contrast2"))
    if peak > 1 + 1e-9:
        raise StimulusError(f"contrast + contrast2 = {peak:g} exceeds 1; lower the component contrasts.")
    sf1 = _sf_cycles_per_image(grid, size, sf_unit, fov, "sf")
    sf2c = _sf_cycles_per_image(grid, size, sf_unit, fov, "sf2")
    sf2c = torch.where(torch.isnan(sf2c), sf1, sf2c)
    X, Y = _coords(grid, size, device)
    dev = X.device
    ori, ph = grid.column("orientation"), grid.column("phase")
    ph2 = grid.column("phase2", fn=lambda v: math.nan if v is None else v)
    ph2 = torch.where(torch.isnan(ph2), ph, ph2)
    w1 = _apply_wave_shape(grid, _wave(grid, X, Y, sf1, ori, ph, dev))
    w2 = _apply_wave_shape(grid, _wave(grid, X, Y, sf2c, ori + grid.column("angle"), ph2, dev))
    c1 = grid.column("contrast")
    c2 = grid.column("contrast2", fn=lambda v: math.nan if v is None else v)
    c2 = torch.where(torch.isnan(c2), c1, c2)
    m = grid.column("mean").to(dev, torch.float32)
    mc1 = (m * c1.to(dev, torch.float32))[:, None, None]
    mc2 = (m * c2.to(dev, torch.float32))[:, None, None]
    lum = m[:, None, None] + mc1 * w1 + mc2 * w2
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


plaids.__doc__ = plaids.__doc__.format(params=_GRATING_DOC_PARAMS)


def bars(size: int = 64, orientation: Any = 0.0, length: Any = 0.5, width: Any = 0.0625, center: Any = (0.5, 0.5),
         polarity: Any = 1, contrast: Any = 1.0, mean: Any = 0.5, channels: int = 1,
         device: str | torch.device | None = None) -> StimulusSet:
    """Light or dark bars on a mean-luminance background.

    A pixel belongs to the bar when its centre lies in ``[-length/2, length/2)``
    from ``center`` along the bar and in ``[-width/2, width/2)`` across it, so
    a bar ``k / size`` wide covers exactly ``k`` pixels when ``center`` is on
    the pixel grid. Bar pixels are ``mean * (1 + polarity * contrast)``, all
    others ``mean``.

    Parameters
    ----------
    size : int
        Image side in pixels.
    orientation : float or list, degrees
        Counter-clockwise; 0 = vertical bar.
    length, width : float or list
        Fractions of the image side (``width=1/size`` is one pixel wide).
    center : (x, y) or list of pairs
        Bar centre, fractions of the image side, image coordinates.
    polarity : {1, -1, "light", "dark"} or list
    contrast, mean : float or list in [0, 1]
    channels : {1, 3}
    device : torch device, optional

    Examples
    --------
    >>> b = bars(size=32, orientation=[0, 90], polarity=["light", "dark"], width=2 / 32)
    >>> len(b), sorted(set(b.images[3].unique().tolist()))
    (4, [0.0, 0.5])
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, length=length, width=width, center=center,
                      polarity=polarity, contrast=contrast, mean=mean, channels=channels),
                 sweep=("orientation", "length", "width", "polarity", "contrast", "mean"), pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "length", 0.0)
    _numbers(grid, "width", 0.0)
    _check_luminance(grid)
    pol = grid.column("polarity", fn=_polarity)
    X, Y = _coords(grid, size, device)
    dev = X.device
    u, v = _rotated(grid, X, Y)  # across and along the bar
    # half-open intervals [-w/2, w/2): a bar k pixels wide covers exactly k pixel centres on the grid
    eps = 1e-4 / size
    half_w = (grid.column("width") / 2).to(dev, torch.float32)[:, None, None]
    half_l = (grid.column("length") / 2).to(dev, torch.float32)[:, None, None]
    inside = (u >= -half_w - eps) & (u < half_w - eps) & (v >= -half_l - eps) & (v < half_l - eps)
    m = grid.column("mean").to(dev, torch.float32)
    on = (m * (1 + pol.to(dev, torch.float32) * grid.column("contrast").to(dev, torch.float32)))
    lum = torch.where(inside, on[:, None, None], m[:, None, None])
    return _finish(lum, channels, grid.params())


def edges(size: int = 64, orientation: Any = 0.0, position: Any = 0.0, polarity: Any = 1, contrast: Any = 1.0,
          mean: Any = 0.5, channels: int = 1, aperture: Any = None, center: Any = (0.5, 0.5),
          device: str | torch.device | None = None) -> StimulusSet:
    """Luminance edges (step functions) with exactly two luminance values.

    Pixels with ``u >= position`` (``u``: distance from ``center`` along the
    normal ``(cos(orientation), sin(orientation))``, y up) are
    ``mean * (1 + polarity * contrast)``, the others ``mean * (1 - polarity * contrast)``.

    Parameters
    ----------
    size : int
    orientation : float or list, degrees
        Counter-clockwise; 0 = vertical edge, light on the right for polarity 1.
    position : float or list
        Offset of the edge from ``center`` along the normal, fraction of the image side.
    polarity : {1, -1, "light", "dark"} or list
    contrast, mean : float or list in [0, 1]
    channels : {1, 3}
    aperture : None, float or list
        Circular aperture radius, fraction of the image side.
    center : (x, y) or list of pairs
    device : torch device, optional

    Examples
    --------
    >>> e = edges(size=16, orientation=[0, 90])
    >>> float(e.images[0, 0, 0, 0]), float(e.images[0, 0, 0, -1])
    (0.0, 1.0)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, position=position, polarity=polarity, contrast=contrast,
                      mean=mean, channels=channels, aperture=aperture, center=center),
                 sweep=("orientation", "position", "polarity", "contrast", "mean", "aperture"), pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "position")
    _check_luminance(grid)
    pol = grid.column("polarity", fn=_polarity)
    X, Y = _coords(grid, size, device)
    dev = X.device
    u, _ = _rotated(grid, X, Y)
    side = torch.where(u >= grid.column("position").to(dev, torch.float32)[:, None, None] - 1e-4 / size, 1.0, -1.0)
    m = grid.column("mean").to(dev, torch.float32)
    mc = m * grid.column("contrast").to(dev, torch.float32) * pol.to(dev, torch.float32)
    lum = m[:, None, None] + mc[:, None, None] * side
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


# --------------------------------------------------------------------------- noise
def _generator(seed: int | None) -> tuple[torch.Generator, int]:
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StimulusError(f"seed must be an integer or None, got {seed!r}.")
    return torch.Generator().manual_seed(int(seed)), int(seed)


def sparse_noise(size: int = 64, n_frames: int = 100, dots: int = 1, dot_size: int = 4, seed: int | None = 0,
                 polarity: Any = "both", contrast: float = 1.0, mean: float = 0.5, channels: int = 1,
                 device: str | torch.device | None = None) -> StimulusSet:
    """Sparse noise: each frame holds exactly ``dots`` square dots on a mean-gray background.

    Dots sit on a lattice of ``dot_size``-pixel cells (centred in the image when
    ``size`` is not a multiple of ``dot_size``) and never overlap. Light dots are
    ``mean * (1 + contrast)``, dark dots ``mean * (1 - contrast)``.

    Parameters
    ----------
    size : int
    n_frames : int
    dots : int
        Dots per frame, at most ``(size // dot_size) ** 2``.
    dot_size : int
        Dot side in pixels.
    seed : int or None
        None draws a fresh seed (recorded in params).
    polarity : {"both", "light", "dark", 1, -1}
        "both" draws each dot's sign at random.
    contrast, mean : float in [0, 1]
    channels : {1, 3}
    device : torch device, optional

    Returns
    -------
    StimulusSet
        params per frame: the keywords plus ``frame``, ``positions`` (list of
        ``[x, y]``, the column and row of each dot's top-left pixel) and
        ``signs`` (+1 light, -1 dark, one per dot).

    Examples
    --------
    >>> s = sparse_noise(size=16, n_frames=3, dots=2, dot_size=2, seed=1)
    >>> len(s), len(s.params[0]["positions"]), int((s.images[0] != 0.5).sum())
    (3, 2, 8)
    """
    size, channels = _check_size(size), _check_channels(channels)
    n = _check_count("n_frames", n_frames)
    dots = _check_count("dots", dots)
    dot_size = _check_count("dot_size", dot_size)
    if dot_size > size:
        raise StimulusError(f"dot_size = {dot_size} exceeds size = {size}; use a smaller dot_size.")
    g = size // dot_size
    if dots > g * g:
        raise StimulusError(f"{dots} dots of {dot_size} px do not fit in a {size} px image without overlap "
                            f"(at most {g * g}); lower dots or dot_size.")
    grid = _Grid(dict(contrast=contrast, mean=mean), sweep=())
    _check_luminance(grid)
    if isinstance(polarity, str) and polarity == "both":
        pol = None
    else:
        pol = _polarity(polarity)
    gen, seed = _generator(seed)
    cells = torch.multinomial(torch.ones(n, g * g), dots, replacement=False, generator=gen)  # (n, dots)
    if pol is None:
        signs = torch.randint(0, 2, (n, dots), generator=gen).float() * 2 - 1
    else:
        signs = torch.full((n, dots), pol)
    low = torch.zeros(n, g * g).scatter_(1, cells, signs).view(n, g, g)
    big = low.repeat_interleave(dot_size, 1).repeat_interleave(dot_size, 2)
    off = (size - g * dot_size) // 2
    rest = size - g * dot_size - off
    big = F.pad(big, (off, rest, off, rest))
    lum = (mean + mean * contrast * big).to(device)
    rows = (cells // g) * dot_size + off
    cols = (cells % g) * dot_size + off
    positions = torch.stack([cols, rows], dim=-1).tolist()
    sign_list = signs.long().tolist()
    base = _jsonable(dict(size=size, n_frames=n, dots=dots, dot_size=dot_size, seed=seed, polarity=polarity,
                          contrast=contrast, mean=mean, channels=channels), "sparse_noise")
    params = [dict(base, frame=i, positions=positions[i], signs=sign_list[i]) for i in range(n)]
    return _finish(lum, channels, params)


def _noise_finish(z: torch.Tensor, mean: float, contrast: float, device) -> torch.Tensor:
    return (mean + mean * contrast * z).clamp_(0, 1).to(device)


def white_noise(size: int = 64, n: int = 100, seed: int | None = 0, distribution: str = "uniform",
                contrast: float = 1.0, mean: float = 0.5, channels: int = 1,
                device: str | torch.device | None = None) -> StimulusSet:
    """Spatially white noise, every pixel (and channel) drawn independently.

    ``distribution``: "uniform" (``mean * (1 + contrast * U(-1, 1))``; the
    defaults give U(0, 1)), "binary" (``mean * (1 +- contrast)``), or "gaussian"
    (``mean * (1 + contrast * z / 3)``, z standard normal, clipped to [0, 1]).

    Parameters
    ----------
    size, n : int
        Image side in pixels; number of images.
    seed : int or None
    distribution : {"uniform", "binary", "gaussian"}
    contrast, mean : float in [0, 1]
    channels : {1, 3}
        With 3, each channel is drawn independently (colour noise).
    device : torch device, optional

    Examples
    --------
    >>> w = white_noise(size=32, n=4, seed=0)
    >>> tuple(w.images.shape), w.params[2]["frame"]
    ((4, 1, 32, 32), 2)
    """
    size, channels, n = _check_size(size), _check_channels(channels), _check_count("n", n)
    grid = _Grid(dict(contrast=contrast, mean=mean, distribution=distribution), sweep=())
    _check_luminance(grid)
    _check_choice(grid, "distribution", ("uniform", "binary", "gaussian"))
    gen, seed = _generator(seed)
    shape = (n, channels, size, size)
    if distribution == "uniform":
        z = torch.rand(shape, generator=gen) * 2 - 1
    elif distribution == "binary":
        z = torch.randint(0, 2, shape, generator=gen).float() * 2 - 1
    else:
        z = torch.randn(shape, generator=gen) / 3
    images = _noise_finish(z, mean, contrast, device)
    base = dict(size=size, n=n, seed=seed, distribution=distribution, contrast=contrast, mean=mean, channels=channels)
    return StimulusSet(images, [dict(base, frame=i) for i in range(n)])


def pink_noise(size: int = 64, n: int = 100, exponent: Any = 1.0, seed: int | None = 0, contrast: float = 1.0,
               mean: float = 0.5, channels: int = 1, device: str | torch.device | None = None) -> StimulusSet:
    """Noise with a ``1 / f**exponent`` amplitude spectrum (exponent 1: pink, "natural" statistics).

    White Gaussian noise is filtered in the Fourier domain (zero DC), then each
    image is scaled so that its largest deviation from ``mean`` is exactly
    ``mean * contrast``: no pixel clips and the spectrum's slope is untouched.

    Parameters
    ----------
    size, n : int
        Image side in pixels; images per exponent.
    exponent : float or list
        Amplitude-spectrum exponent (0 white, 1 pink, 2 brown). A list gives
        ``len(exponent) * n`` images, exponent-major.
    seed : int or None
    contrast, mean : float in [0, 1]
    channels : {1, 3}
        With 3, each channel is drawn independently.
    device : torch device, optional

    Examples
    --------
    >>> p = pink_noise(size=32, n=2, exponent=[1.0, 2.0], seed=0)
    >>> len(p), [q["exponent"] for q in p.params]
    (4, [1.0, 1.0, 2.0, 2.0])
    """
    size, channels, n = _check_size(size), _check_channels(channels), _check_count("n", n)
    grid = _Grid(dict(exponent=exponent, frame=list(range(n)), contrast=contrast, mean=mean),
                 sweep=("exponent", "frame"))
    _numbers(grid, "exponent")
    _check_luminance(grid)
    gen, seed = _generator(seed)
    N = grid.n
    white = torch.randn((N, channels, size, size), generator=gen, dtype=torch.float64)
    f = torch.fft.fftfreq(size, dtype=torch.float64) * size
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    ex = grid.column("exponent")[:, None, None, None]
    filt = radius[None, None] ** (-ex)
    filt[..., 0, 0] = 0.0
    z = torch.fft.ifft2(torch.fft.fft2(white) * filt).real
    peak = z.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    images = _noise_finish((z / peak).float(), mean, contrast, device)
    params = [dict(size=size, n=n, exponent=p["exponent"], seed=seed, contrast=contrast, mean=mean,
                   channels=channels, frame=p["frame"]) for p in grid.params()]
    return StimulusSet(images, params)


# --------------------------------------------------------------------------- photographs
#: Photographs bundled inside scikit-image (no download): name -> file in skimage.data's folder.
PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "horse": "horse.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "microaneurysms": "microaneurysms.png",
    "moon": "moon.png",
    "motorcycle": "motorcycle_left.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}
_ALIASES = {"cat": "chelsea"}


def _to_float_rgb(arr: np.ndarray) -> np.ndarray:
    """Any image array -> float32 (H, W, 3) or (H, W, 1) in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise StimulusError(f"expected a 2-D or 3-D image array, got shape {arr.shape}.")
    if arr.shape[2] == 4:  # drop alpha
        arr = arr[..., :3]
    if arr.shape[2] == 2:  # gray + alpha
        arr = arr[..., :1]
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.float32) / np.iinfo(arr.dtype).max
    else:
        out = np.clip(arr.astype(np.float32), 0, 1)
    return out


def _layout(img: torch.Tensor, gray: bool, channels: int | None) -> torch.Tensor:
    """(C, H, W) with C in {1, 3} -> requested colour and channel count."""
    out_c = channels if channels is not None else (1 if gray else 3)
    _check_channels(out_c)
    if out_c == 1 or gray:
        if img.shape[0] == 3:  # ITU-R BT.709 luminance, as skimage.color.rgb2gray
            w = torch.tensor([0.2125, 0.7154, 0.0721], dtype=img.dtype)
            img = (img * w[:, None, None]).sum(0, keepdim=True)
    return img.expand(out_c, -1, -1) if img.shape[0] == 1 else img


def _resize(batch: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) square crops -> (N, C, size, size); antialiased when shrinking."""
    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    shrink = batch.shape[-1] > size
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 1)


def bundled_photo_path(filename: str) -> str:
    """Path of a photo file shipped inside the scikit-image package.

    Read from the package folder itself, never ``skimage.data.data_dir``, which
    may point at an (empty) download cache.
    """
    import skimage.data

    path = os.path.join(os.path.dirname(skimage.data.__file__), filename)
    if not os.path.exists(path):
        raise StimulusError(f"{filename} is not in {os.path.dirname(path)}; reinstall scikit-image (>= 0.21)")
    return path


@lru_cache(maxsize=32)
def _read_photo(name: str) -> np.ndarray:
    import skimage.io

    return _to_float_rgb(skimage.io.imread(bundled_photo_path(PHOTOS[name])))  # cached: callers copy, never write


def natural_images(names: str | Sequence[str] | None = None, size: int = 64, n_crops: int = 1, seed: int | None = 0,
                   gray: bool = False, crop: float = 1.0, channels: int | None = None,
                   device: str | torch.device | None = None) -> StimulusSet:
    """Square crops of the photographs bundled with scikit-image, resized to ``size``.

    Only files shipped inside the scikit-image package are read (see
    :data:`PHOTOS`), straight from disk: no download is ever attempted.

    Parameters
    ----------
    names : str, list of str or None
        Photo names (None: all of :data:`PHOTOS`).
    size : int
        Output side in pixels.
    n_crops : int
        Crops per photo. With 1 the crop is centred; with more they are placed at random (seeded).
    seed : int or None
    gray : bool
        Convert colour photos to luminance.
    crop : float in (0, 1]
        Crop side as a fraction of the photo's shorter side.
    channels : {1, 3} or None
        Output channels (None: 1 if ``gray`` else 3). Gray content with 3
        channels is replicated over RGB.
    device : torch device, optional

    Returns
    -------
    StimulusSet
        params: ``name``, ``crop_index``, ``box`` (``[x0, y0, side]`` in photo
        pixels) plus the keywords ``size``, ``crop``, ``gray``, ``seed``.

    Examples
    --------
    >>> s = natural_images(["camera", "astronaut"], size=32, n_crops=2, crop=0.5)
    >>> tuple(s.images.shape), [p["name"] for p in s.params]
    ((4, 3, 32, 32), ['camera', 'camera', 'astronaut', 'astronaut'])
    """
    size = _check_size(size)
    n_crops = _check_count("n_crops", n_crops)
    if channels is not None:
        _check_channels(channels)
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
        raise StimulusError(f"crop (fraction of the photo's shorter side) must lie in (0, 1], got {crop!r}.")
    if names is None:
        names = list(PHOTOS)
    elif isinstance(names, str):
        names = [names]
    resolved = []
    for nm in names:
        key = _ALIASES.get(str(nm).lower(), str(nm).lower())
        if key not in PHOTOS:
            close = difflib.get_close_matches(str(nm), list(PHOTOS) + list(_ALIASES), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise StimulusError(
                f"unknown photo {nm!r}.{hint} Available (bundled with scikit-image): {', '.join(PHOTOS)}. "
                "For your own images use insilico.stimuli.from_folder(path)."
            )
        resolved.append(key)
    if not resolved:
        raise StimulusError("names is empty; give at least one photo name (or None for all).")
    _, seed = _generator(seed)  # validates; None draws a seed that is recorded
    rng = np.random.default_rng(seed)
    chunks, params = [], []
    for nm in resolved:
        arr = _read_photo(nm)
        h, w = arr.shape[:2]
        side = max(1, int(round(crop * min(h, w))))
        if n_crops == 1:
            boxes = [((w - side) // 2, (h - side) // 2)]
        else:
            xs = rng.integers(0, w - side + 1, n_crops)
            ys = rng.integers(0, h - side + 1, n_crops)
            boxes = list(zip(xs.tolist(), ys.tolist()))
        img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        img = _layout(img, gray, channels)
        batch = torch.stack([img[:, y0:y0 + side, x0:x0 + side] for x0, y0 in boxes])
        chunks.append(_resize(batch, size))
        params += [dict(name=nm, crop_index=i, box=[x0, y0, side], size=size, crop=float(crop), gray=bool(gray),
                        seed=seed)
                   for i, (x0, y0) in enumerate(boxes)]
    images = torch.cat(chunks).contiguous().to(device)
    return StimulusSet(images, params)


_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def from_folder(path: str | os.PathLike, size: int = 64, gray: bool = False, channels: int | None = None,
                recursive: bool = False, extensions: Sequence[str] = _IMAGE_EXTENSIONS,
                device: str | torch.device | None = None) -> StimulusSet:
    """Every image in a folder, centre-cropped to a square and resized to ``size``.

    Files are read with ``skimage.io`` in sorted path order. Integer images are
    scaled by their dtype's maximum, alpha channels dropped.

    Parameters
    ----------
    path : str or path-like
        Folder of images.
    size : int
    gray : bool
        Convert colour images to luminance.
    channels : {1, 3} or None
        Output channels (None: 1 if ``gray`` else 3).
    recursive : bool
        Also read sub-folders.
    extensions : sequence of str
        File suffixes to read (case-insensitive).
    device : torch device, optional

    Returns
    -------
    StimulusSet
        params: ``file`` (path relative to ``path``), ``name`` (file stem), ``size``.

    Examples
    --------
    >>> import tempfile, numpy as np, skimage.io
    >>> d = tempfile.mkdtemp()
    >>> skimage.io.imsave(f"{d}/a.png", np.zeros((20, 30), np.uint8), check_contrast=False)
    >>> s = from_folder(d, size=8, gray=True)
    >>> tuple(s.images.shape), s.params[0]["file"]
    ((1, 1, 8, 8), 'a.png')
    """
    import skimage.io

    size = _check_size(size)
    if channels is not None:
        _check_channels(channels)
    root = pathlib.Path(path)
    if not root.is_dir():
        raise StimulusError(f"from_folder: {str(root)!r} is not a folder; pass the directory holding the images.")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir())
                   if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise StimulusError(
            f"from_folder: no image files ({', '.join(sorted(exts))}) in {str(root)!r}"
            + ("" if recursive else "; pass recursive=True to search sub-folders") + "."
        )
    imgs, params = [], []
    for f in files:
        try:
            arr = skimage.io.imread(f)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name
            raise StimulusError(f"from_folder: could not read {f}: {exc}. Remove or convert the file.") from exc
        if arr.ndim == 4:  # animated / multi-page: first frame
            arr = arr[0]
        arr = _to_float_rgb(np.asarray(arr))
        if arr.shape[2] not in (1, 3):
            raise StimulusError(f"from_folder: {f} has {arr.shape[2]} channels; expected gray, RGB or RGBA.")
        h, w = arr.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        img = torch.from_numpy(np.ascontiguousarray(arr[y0:y0 + side, x0:x0 + side])).permute(2, 0, 1)
        imgs.append(_resize(_layout(img, gray, channels)[None], size)[0])
        params.append(dict(file=f.relative_to(root).as_posix(), name=f.stem, size=size))
    return StimulusSet(torch.stack(imgs).contiguous().to(device), params)
