"""Neural data in the layout recordings export: Brain-Score's ``NeuroidAssembly``, read for the encoding and RSA tools.

:func:`read_neural` reads an ``xarray.DataArray`` (or a NetCDF file of one) with dims ``presentation`` x
``neuroid`` [x ``time_bin``] and a ``stimulus_id`` coordinate on ``presentation`` (what
:meth:`insilico.Recording.to_xarray` writes, and Brain-Score's assemblies hold), and returns a
:class:`NeuralData`: one row per stimulus, in the order of a stimulus set when one is given (its ids:
image files' relative paths, a Dataset's or a recording's ids), repetitions (presentations of one
stimulus id) averaged or kept on a leading ``repetition`` axis (the split-half noise ceiling, crossnobis).

It feeds the tools that take measured responses:

- ``fit_predictor(model, stimuli, neural, layers)``: the responses (N, neuroids), or with repetitions
  kept (repetition, N, neuroids), which adds a noise ceiling to the scores; the targets are named by
  the neuroid ids, and the stimuli's ids must be the data's, in order (:meth:`NeuralData.aligned_to`);
- ``insilico.rsa.rdm(neural)``: the RDM of the stimuli, labelled by their ids (repetitions averaged,
  or the runs of crossnobis);
- anything that takes an array: ``numpy.asarray(neural)`` (refused with a time axis: pick a bin with
  :meth:`NeuralData.at`).

xarray is an optional extra (``pip install 'insilico-ephys[xarray]'``).

Example
-------
>>> import numpy as np, xarray
>>> da = xarray.DataArray(np.arange(12.0).reshape(4, 3), dims=("presentation", "neuroid"),
...                       coords={"stimulus_id": ("presentation", ["b", "a", "b", "a"])})
>>> neural = read_neural(da, ids=["a", "b"])
>>> neural.stimulus_ids, neural.values.tolist()
(['a', 'b'], [[6.0, 7.0, 8.0], [3.0, 4.0, 5.0]])
>>> read_neural(da, repetitions="keep").values.shape   # (repetition, stimulus, neuroid), first-seen order
(2, 2, 3)
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from .errors import InsilicoError, SavedFileError, StimulusError
from .recording import Recording, stimulus_source

#: The dims a neural assembly may have (``presentation`` and ``neuroid`` are required).
DIMS = ("presentation", "neuroid", "time_bin")


@dataclasses.dataclass(eq=False)
class NeuralData:
    """Responses of neuroids (recorded sites, units, voxels) to stimuli, one row per stimulus id.

    Attributes
    ----------
    values : ndarray (n_stimuli, n_neuroids[, n_time_bins]), or with ``repeated`` (n_repetitions, n_stimuli, ...)
    stimulus_ids : list of str
        The stimulus of each row.
    neuroid_ids : list of str
        The neuroid of each column (the ``neuroid_id`` coordinate, else the neuroid's position).
    time_bins : list or None
        The ``time_bin`` coordinate, when the data have that axis (last).
    repeated : bool
        Whether axis 0 holds repetitions (``read_neural(repetitions="keep")``).
    attrs : dict
        The assembly's attributes (a recording's settings).
    ordered : bool
        Whether the rows are in an order the user chose (:meth:`aligned`, ``read_neural(stimuli=)`` or ``ids=``);
        otherwise they are in the order of each stimulus id's first presentation, often a shuffled trial order.
    """

    values: np.ndarray
    stimulus_ids: list
    neuroid_ids: list
    time_bins: list | None = None
    repeated: bool = False
    attrs: dict = dataclasses.field(default_factory=dict)
    ordered: bool = False

    @property
    def n_stimuli(self) -> int:
        return len(self.stimulus_ids)

    def __len__(self) -> int:
        return self.n_stimuli

    def __array__(self, dtype=None, copy=None):
        if self.time_bins is not None:
            raise InsilicoError(f"these neural data have {len(self.time_bins)} time bins: pick one with "
                                ".at(time_bin) (or average them yourself) before using them as responses")
        return self.values if dtype is None else self.values.astype(dtype)

    def mean(self) -> NeuralData:
        """The mean over repetitions (itself when they were averaged already)."""
        if not self.repeated:
            return self
        return dataclasses.replace(self, values=self.values.mean(0), repeated=False)

    def at(self, time_bin: Any) -> NeuralData:
        """The responses in one time bin (a value of :attr:`time_bins`): the time axis dropped."""
        if self.time_bins is None:
            raise InsilicoError("these neural data have no time_bin axis")
        if time_bin not in self.time_bins:
            raise InsilicoError(f"time bin {time_bin!r} is not among {self.time_bins[:8]}")
        k = self.time_bins.index(time_bin)
        return dataclasses.replace(self, values=self.values[..., k], time_bins=None)

    def aligned(self, ids: Sequence) -> NeuralData:
        """The rows of stimuli ``ids``, in that order (other stimuli of the data dropped).

        Raises
        ------
        StimulusError
            An id the data do not hold (the first few named), or repeated ids.
        """
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise StimulusError("the stimulus ids to align the neural data to repeat: give each stimulus once")
        where = {s: i for i, s in enumerate(self.stimulus_ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise StimulusError(f"{len(missing)} of {len(ids)} stimuli have no neural data: {missing[:3]} are not "
                                f"among the data's stimulus_id values (e.g. {self.stimulus_ids[:3]}); give the "
                                "stimuli the data were recorded with, or name them as the data do")
        rows = [where[i] for i in ids]
        values = self.values[:, rows] if self.repeated else self.values[rows]
        return dataclasses.replace(self, values=values, stimulus_ids=ids, ordered=True)

    def aligned_to(self, stimuli: Any) -> NeuralData:
        """The rows of a stimulus set's stimuli, in its order (:meth:`aligned` by its ids).

        ``stimuli`` is anything :func:`insilico.recording.stimulus_source` reads, or a Recording. A
        stimulus set without ids (a tensor) is taken to be in the data's order, and must have as many
        stimuli; data whose ids are ``"0" .. "N-1"`` (a tensor's recording) are put in that order, others must
        be in an order the user chose (``ordered``), never the data's first-presentation order (StimulusError).
        """
        if isinstance(stimuli, Recording):
            ids = [stimuli.ids[i] for i in stimuli.indices] if stimuli.labelled else None
            n = len(stimuli)
        else:
            source = stimulus_source(stimuli)
            ids, n = source.ids, len(source)
        if ids is not None:
            return self.aligned(ids)
        if n != self.n_stimuli:
            raise StimulusError(f"{n} stimuli without ids but neural data of {self.n_stimuli} stimuli: give the "
                                "stimuli ids (image files, or read_neural(..., ids=)) to align them by")
        ids = positional_order(self.stimulus_ids, self.ordered, f"these {n} stimuli have no ids", "or give image files")
        return self if ids is None else self.aligned(ids)

    def __repr__(self) -> str:
        reps = f"{self.values.shape[0]} repetitions x " if self.repeated else ""
        time = f" x {len(self.time_bins)} time bins" if self.time_bins is not None else ""
        return f"NeuralData({reps}{self.n_stimuli} stimuli x {len(self.neuroid_ids)} neuroids{time})"


def positional_order(ids: Sequence, ordered: bool, unnamed: str, other_fix: str) -> list | None:
    """The one rule for rows named by stimulus ids that meet stimuli without ids (matched by position).

    Rows in an order the user chose (``ordered``) are taken as they are (None); rows whose ids are
    ``"0" .. "N-1"`` (a tensor's recording) are put in that order (the ids, in position order); rows in the
    order the data first showed each stimulus (``read_neural`` without ``stimuli=`` / ``ids=``: often a
    shuffled trial order) are refused. :meth:`NeuralData.aligned_to` (``fit_predictor``) and
    :func:`insilico.rsa.compare` (an RDM of such data against an unlabelled one) both read it.

    Parameters
    ----------
    ids : sequence of str
        The rows' stimulus ids, in row order.
    ordered : bool
        Whether the user chose the rows' order.
    unnamed, other_fix : str
        What is matched by position, and one more fix, for the message.

    Raises
    ------
    StimulusError
        Rows in the data's first-presentation order whose ids are not positions.

    Example
    -------
    >>> positional_order(["1", "0", "2"], False, "", ""), positional_order(["b", "a"], True, "", "")
    (['0', '1', '2'], None)
    """
    if ordered:
        return None
    positions = [str(i) for i in range(len(ids))]
    if sorted(map(str, ids)) == sorted(positions):  # ids that are positions
        return positions
    raise StimulusError(f"{unnamed}, and the neural data's rows are in the order the data first showed each "
                        f"stimulus ({list(ids)[:3]}, ...), which need not be the stimuli's: say which id each "
                        "stimulus is, read_neural(data, ids=[...]) (or neural.aligned([...])), in the stimuli's "
                        f"order, {other_fix}")


def read_neural(data: Any, stimuli: Any = None, *, ids: Sequence | None = None,
                repetitions: str = "mean") -> NeuralData:
    """Neural responses from a NetCDF file or an ``xarray.DataArray`` in the NeuroidAssembly layout.

    Parameters
    ----------
    data : path or xarray.DataArray
        Dims ``presentation`` x ``neuroid`` [x ``time_bin``] (in any order), a ``stimulus_id`` coordinate
        on ``presentation``, optionally ``neuroid_id`` on ``neuroid``; a NetCDF file holding one such
        array (``Recording.to_xarray().to_netcdf(path)`` writes one).
    stimuli : stimulus set or Recording, optional
        Align the rows to its stimuli (:meth:`NeuralData.aligned_to`).
    ids : sequence, optional
        Align the rows to these stimulus ids instead.
    repetitions : {"mean", "keep"}
        Presentations of one stimulus id are repetitions: averaged (default), or kept on a leading
        ``repetition`` axis (every stimulus must then be shown equally often).

    Returns
    -------
    NeuralData
        Rows in the order of ``stimuli`` / ``ids``, else of each stimulus id's first presentation.

    Raises
    ------
    InsilicoError
        xarray missing, other dims, no ``stimulus_id`` coordinate, unequal repetitions with ``"keep"``.
    SavedFileError
        A file that does not exist or that xarray cannot read as one DataArray (the message names it).
    StimulusError
        Stimuli the data do not hold (:meth:`NeuralData.aligned`).
    """
    if repetitions not in ("mean", "keep"):
        raise InsilicoError(f"repetitions must be 'mean' or 'keep', not {repetitions!r}")
    da = _data_array(data)
    extra = [d for d in da.dims if d not in DIMS]
    if "presentation" not in da.dims or "neuroid" not in da.dims or extra:
        raise InsilicoError(f"neural data need dims presentation x neuroid [x time_bin] (Brain-Score's "
                            f"NeuroidAssembly), not {tuple(da.dims)}: rename or stack the dims")
    if "stimulus_id" not in da.coords or da.coords["stimulus_id"].dims != ("presentation",):
        raise InsilicoError(f"neural data need a stimulus_id coordinate on presentation (they have "
                            f"{sorted(map(str, da.coords))}): it says which stimulus each presentation showed")
    da = da.transpose(*[d for d in DIMS if d in da.dims])
    values = np.asarray(da.values)
    if not np.issubdtype(values.dtype, np.number):
        raise InsilicoError(f"neural data must be numbers, not {values.dtype}")
    shown = [str(s) for s in da.coords["stimulus_id"].values]
    neuroids = [str(v) for v in da.coords["neuroid_id"].values] if "neuroid_id" in da.coords and \
        da.coords["neuroid_id"].dims == ("neuroid",) else [str(i) for i in range(da.sizes["neuroid"])]
    time_bins = [v.item() if hasattr(v, "item") else v for v in da.coords["time_bin"].values] \
        if "time_bin" in da.dims and "time_bin" in da.coords else (list(range(da.sizes["time_bin"]))
                                                                  if "time_bin" in da.dims else None)
    stacked, unique, repeated = _by_stimulus(values, shown, repetitions)
    neural = NeuralData(stacked, unique, neuroids, time_bins, repeated, dict(da.attrs))
    if ids is not None:
        return neural.aligned(ids)
    return neural if stimuli is None else neural.aligned_to(stimuli)


def _by_stimulus(values: np.ndarray, shown: list, repetitions: str) -> tuple[np.ndarray, list, bool]:
    """``(values, stimulus ids, repeated)``: one row per stimulus id (first-seen order), its presentations
    averaged (``"mean"``) or stacked on a new leading axis (``"keep"``, equal counts only)."""
    unique = list(dict.fromkeys(shown))
    if len(unique) == len(shown):
        return values, unique, False
    rows = {s: [i for i, t in enumerate(shown) if t == s] for s in unique}
    if repetitions == "mean":
        return np.stack([values[r].mean(0) for r in rows.values()]), unique, False
    counts = {s: len(r) for s, r in rows.items()}
    if len(set(counts.values())) > 1:
        low, high = min(counts, key=counts.get), max(counts, key=counts.get)
        raise InsilicoError(f"repetitions='keep' needs every stimulus shown equally often: {low!r} is shown "
                            f"{counts[low]} times, {high!r} {counts[high]}; average them (repetitions='mean') "
                            "or drop the extra presentations")
    return np.stack([values[r] for r in rows.values()], axis=1), unique, True


def _data_array(data: Any):
    """The DataArray ``data`` is or holds (a NetCDF path read by xarray)."""
    try:
        import xarray
    except ImportError:
        raise InsilicoError("read_neural needs xarray: pip install 'insilico-ephys[xarray]'") from None
    if isinstance(data, xarray.DataArray):
        return data
    if isinstance(data, xarray.Dataset) and len(data.data_vars) == 1:
        return next(iter(data.data_vars.values()))
    if not isinstance(data, (str, os.PathLike)):
        raise InsilicoError(f"read_neural takes an xarray.DataArray or a NetCDF file, not {type(data).__name__}")
    if not os.path.isfile(data):
        raise SavedFileError(f"neural data file {os.fspath(data)!r} does not exist", data)
    try:
        return xarray.load_dataarray(data)
    except Exception as exc:  # noqa: BLE001 - any reader failure is re-raised naming the file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SavedFileError(f"cannot read neural data {os.fspath(data)!r} as one xarray DataArray (NetCDF): "
                             f"{reason}", data) from None


__all__ = ["DIMS", "NeuralData", "positional_order", "read_neural"]
