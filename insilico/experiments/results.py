"""Experiment results: arrays + settings that save, load, concatenate and plot like every insilico result.

Every experiment in :mod:`insilico.experiments` returns a :class:`Result`
subclass: a dataclass of ``arrays`` (numpy, one entry per quantity) and the
``settings`` that produced them, built on :class:`insilico.results.Result`, so

- ``result.save("tuning.pt")`` writes ONE file (tensors + settings + versions)
  and ``TuningResult.load("tuning.pt")`` reads it with ``weights_only=True``;
- ``type(result).concat(parts)`` joins results of chunks of one job (units,
  lesion groups, layers, stimuli: the arrays named in ``sample_arrays``);
- ``result.plot(ax=None)`` returns the Figure.

``result.export("out/tuning")`` additionally writes the tables the
``probes/`` scripts publish:

- ``tuning.npz``: every array, plus the settings as a JSON string (``settings``);
- ``tuning.csv``: one row per unit (or condition), the first line a ``#``
  comment holding the settings as JSON, so a spreadsheet or
  ``numpy.genfromtxt(..., comments="#")`` reads the table and a human reads
  how it was made;

and ``load`` also reads an exported ``.npz`` back.

Example
-------
>>> import numpy as np, tempfile, os
>>> r = Result({"x": np.arange(3.0)}, {"model": "toy"})
>>> with tempfile.TemporaryDirectory() as d:
...     r.save(os.path.join(d, "toy.pt"))
...     back = Result.load(os.path.join(d, "toy.pt"))
...     paths = r.export(os.path.join(d, "toy"))
...     table = Result.load(paths[0])
>>> back.settings["model"], back.arrays["x"].tolist(), table.arrays["x"].tolist()
('toy', [0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .. import persistence
from ..errors import InsilicoError, SavedFileError
from ..jsonfiles import jsonable, to_json
from ..results import Result as _Result


@dataclasses.dataclass(repr=False, eq=False)
class Result(_Result):
    """Arrays (``.arrays``, also readable as attributes) and the settings that produced them (``.settings``).

    Subclasses expose the arrays as attributes and add plots; ``table()``
    names the per-row columns written to CSV by :meth:`export`;
    ``sample_arrays`` names the arrays whose first axis :meth:`concat` joins.
    """

    #: Arrays with a sample axis first (units, groups, layers, stimuli), joined by :meth:`concat`.
    sample_arrays: ClassVar[tuple[str, ...]] = ()
    #: Arrays every result of the kind holds; a saved one without them (an older insilico's) is refused.
    required_arrays: ClassVar[tuple[str, ...]] = ()

    arrays: dict[str, Any]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.arrays = {k: np.asarray(v) for k, v in self.arrays.items()}
        self.settings = jsonable(self.settings or {})
        missing = [k for k in self.required_arrays if k not in self.arrays]
        if missing:
            raise InsilicoError(f"a {type(self).__name__} without {missing}: it was made by an older insilico "
                                "(before these noise estimates were stored); run the experiment again")

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

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to ONE file (read back with :meth:`load`); for the NPZ/CSV tables use :meth:`export`."""
        if Path(path).suffix in (".npz", ".csv"):
            raise InsilicoError(f"save() writes one insilico result file (e.g. {Path(path).with_suffix('.pt')}); "
                                "the .npz/.csv tables are written by result.export(stem)")
        super().save(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        """Read a result written by :meth:`save`, or the ``.npz`` written by :meth:`export` (give it or its stem)."""
        path = Path(path)
        if path.suffix == ".npz" or (not path.exists() and path.with_suffix(".npz").exists()):
            return cls._from_npz(path.with_suffix(".npz"))
        return super().load(path)

    @classmethod
    def concat(cls, results: Sequence["Result"]) -> "Result":
        """Join results of chunks of one job along the first axis of ``sample_arrays``; other arrays come from the first.

        Raises
        ------
        InsilicoError
            No result, or a result kind without a sample axis (``sample_arrays`` empty).
        """
        results = list(results)
        if not results:
            raise InsilicoError(f"{cls.__name__}.concat needs at least one result")
        keys = results[0]._sample_keys()
        if not keys:
            raise InsilicoError(f"{cls.__name__} has no sample axis to concatenate along; run the experiment "
                                "on all the stimuli at once")
        if len(results) == 1:
            return results[0]
        arrays = dict(results[0].arrays)
        for key in keys:
            if key in arrays:
                arrays[key] = np.concatenate([r.arrays[key] for r in results])
        return cls._joined(cls(arrays, dict(results[0].settings)))

    def _sample_keys(self) -> tuple[str, ...]:
        """The arrays :meth:`concat` joins (default ``sample_arrays``)."""
        return self.sample_arrays

    @classmethod
    def _joined(cls, result: "Result") -> "Result":
        """Recompute arrays derived from the joined ones (a hook for subclasses)."""
        return result

    def export(self, path: str | os.PathLike) -> list[Path]:
        """Write ``path.npz`` and ``path.csv`` (a suffix on ``path`` is dropped); returns the paths."""
        stem = Path(path)
        if stem.suffix in (".npz", ".csv"):
            stem = stem.with_suffix("")
        stem.parent.mkdir(parents=True, exist_ok=True)
        header = to_json({"result": type(self).__name__, **self.settings}, indent=None)
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
    def _from_npz(cls, path: Path) -> "Result":
        """A table written by :meth:`export` (plain arrays, never unpickled); SavedFileError when damaged."""
        if not path.exists():
            raise SavedFileError(f"{path} does not exist; tables are exported as NAME.npz by result.export(NAME)", path)
        return cls._from_table(*persistence.read_table(path), path)

    @classmethod
    def _from_table(cls, arrays: dict, settings: dict, path) -> "Result":
        """The result of a table's arrays and settings, as :func:`insilico.persistence.read_table` reads them."""
        settings = {k: v for k, v in settings.items() if k != "result"}
        return persistence.build(cls, {"arrays": arrays, "settings": settings}, path, settings.get("versions"))

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


