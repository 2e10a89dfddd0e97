"""Experiment results: arrays + settings that save to NPZ/CSV/JSON, reload, and plot.

Every experiment in :mod:`insilico.experiments` returns a :class:`Result`
subclass. ``result.save("out/tuning")`` writes

- ``tuning.npz``: every array, plus the settings as a JSON string (``settings``);
- ``tuning.csv``: one row per unit (or condition), the first line a ``#``
  comment holding the settings as JSON, so a spreadsheet or
  ``numpy.genfromtxt(..., comments="#")`` reads the table and a human reads
  how it was made;

and ``type(result).load("out/tuning.npz")`` gives the result back. Figures are
methods that take ``ax=`` (where one axis suffices) and return the Figure.

Example
-------
>>> import numpy as np, tempfile, os
>>> r = Result({"x": np.arange(3.0)}, {"model": "toy"})
>>> with tempfile.TemporaryDirectory() as d:
...     paths = r.save(os.path.join(d, "toy"))
...     back = Result.load(paths[0])
>>> back.settings["model"], back.arrays["x"].tolist()
('toy', [0.0, 1.0, 2.0])
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InsilicoError


class Result:
    """Arrays (``.arrays``) and the settings that produced them (``.settings``).

    Subclasses expose the arrays as attributes and add plots; ``table()``
    names the per-row columns written to CSV.
    """

    def __init__(self, arrays: dict[str, Any], settings: dict[str, Any] | None = None):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.settings = jsonable(settings or {})

    def __getattr__(self, name: str):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def table(self) -> dict[str, np.ndarray]:
        """Columns of the CSV table (equal-length 1-D arrays); default: every 1-D array of the longest length."""
        ones = {k: v for k, v in self.arrays.items() if v.ndim == 1}
        if not ones:
            return {}
        n = max(len(v) for v in ones.values())
        return {k: v for k, v in ones.items() if len(v) == n}

    def save(self, path: str | os.PathLike) -> list[Path]:
        """Write ``path.npz`` and ``path.csv`` (a suffix on ``path`` is dropped); returns the paths."""
        stem = Path(path)
        if stem.suffix in (".npz", ".csv"):
            stem = stem.with_suffix("")
        stem.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"result": type(self).__name__, **self.settings})
        npz = stem.with_suffix(".npz")
        np.savez_compressed(npz, settings=np.array(header), **self.arrays)
        paths = [npz]
        columns = self.table()
        if columns:
            csv = stem.with_suffix(".csv")
            write_csv(csv, columns, header)
            paths.append(csv)
        return paths

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        """Read a result written by :meth:`save` (give the ``.npz`` file or its stem)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        if not path.exists():
            raise InsilicoError(f"{path} does not exist; results are saved as NAME.npz by result.save(NAME)")
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "settings"}
            settings = json.loads(str(data["settings"])) if "settings" in data.files else {}
        settings.pop("result", None)
        return cls(arrays, settings)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in list(self.arrays.items())[:6])
        return f"{type(self).__name__}({shapes})"


def write_csv(path: Path, columns: dict[str, np.ndarray], header: str) -> None:
    """A CSV table whose first line is ``# <header>``."""
    names = list(columns)
    rows = zip(*(np.asarray(columns[n]).tolist() for n in names))
    with open(path, "w") as f:
        f.write("# " + header.replace("\n", " ") + "\n")
        f.write(",".join(names) + "\n")
        for row in rows:
            f.write(",".join(_cell(v) for v in row) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.6g}"
    text = str(value)
    return f'"{text}"' if "," in text else text


def jsonable(value: Any) -> Any:
    """Plain-JSON copy of settings (tuples become lists, numpy scalars numbers, others strings)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def new_axes(ax=None, figsize=(5, 3.5)):
    """``(figure, ax)``: the given axis and its figure, or a new figure with one axis."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax
