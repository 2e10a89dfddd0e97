"""StimulusSet: a batch of stimuli in pixel space with one JSON-clean parameter dict per stimulus.

The container every generator returns: indexing, concatenation, device moves,
parameter queries (:meth:`StimulusSet.table`, :meth:`StimulusSet.where`),
saving and loading without pickle, and a quick plot.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .. import persistence
from ..errors import SavedFileError, StimulusError
from ..jsonfiles import to_json
from ..pixels import check_images

_FORMAT = "insilico.StimulusSet/1"


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
        >>> from insilico.stimuli import gratings
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
        >>> from insilico.stimuli import gratings
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
        >>> from insilico.stimuli import gratings
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
        >>> from insilico.stimuli import gratings
        >>> g = gratings(size=16, orientation=[0, 90])
        >>> p = g.save(os.path.join(tempfile.mkdtemp(), "g.npz"))
        >>> bool((StimulusSet.load(p).images == g.images).all())
        True
        """
        path = pathlib.Path(path)
        meta = to_json({"format": _FORMAT, "torch": torch.__version__}, indent=None)
        params = to_json(self.params, indent=None)
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
        """Load a set written by :meth:`save` (``.npz`` or ``.pt``), through the readers of :mod:`insilico.persistence`.

        Raises
        ------
        StimulusError
            No file at ``path``, or a suffix other than ``.npz``/``.pt``/``.pth``.
        SavedFileError
            A truncated or corrupt file, one that is not a StimulusSet, or one whose contents a
            StimulusSet refuses (NaN or non-float images, a parameter per stimulus lacking, ...):
            the message names the file.
        """
        path = pathlib.Path(path)
        if not path.exists():
            raise StimulusError(f"load: no file at {path}.")
        if path.suffix == ".npz":
            d = persistence.read_npz(path, ("images", "params"), "stimulus set")
            images, params = torch.from_numpy(d["images"]), d["params"]
            params = persistence.json_field({"params": str(params)}, "params", path, (list, dict))
        elif path.suffix in (".pt", ".pth"):
            d = persistence.read(path, "stimulus set")
            if "images" not in d or "params" not in d:
                raise SavedFileError(f"load: {path} is not a StimulusSet file (missing 'images'/'params').", path)
            images, params = d["images"], persistence.json_field(d, "params", path, (list, dict))
        else:
            raise StimulusError(f"load: unknown file type {path.suffix!r}; expected .npz or .pt.")
        try:
            out = cls(images, params)
        except (StimulusError, TypeError, ValueError, AttributeError) as e:
            raise SavedFileError(f"load: {path} holds no valid stimulus set ({e}): write it again", path) from e
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
        >>> from insilico.stimuli import gratings
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

