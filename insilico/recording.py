"""Recordings: responses of units to a stimulus set, in memory or streamed to disk.

On disk a recording is a folder::

    meta.json          units, shapes, dtypes, stimulus ids and parameters, model, versions, and the
                       job identity (:mod:`insilico.identity`: model fingerprint, settings)
    progress-<r>.json  the stimulus ranges rank r has finished, each with the digest of its stimuli
                       (rewritten after every batch)
    000_<unit>.npy     one array per unit, (N, ...), memory-mapped when loaded

Batches are written with plain file writes at their offset (no writable
memory map), so the process's memory stays flat however many stimuli are
streamed. An interrupted run (Ctrl-C, a crash, a killed job) keeps every
complete batch; calling ``record_stimuli`` again with the same ``out``
records only what is missing, after checking that it is the same job: the
same model (parameters and buffers), units and settings, and the same
stimuli for every range already recorded (read and hashed again, no forward
pass); anything else is refused naming the difference (``out=Job(folder,
overwrite=True)`` starts over). Several processes (``torchrun`` ranks, or
``out=Job(folder, shard=(rank, world))``) can fill one folder together: see
:mod:`insilico.sharding`.

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
>>> rec = insilico.Probe(model).record_stimuli(torch.rand(10, 1, 8, 8), ["0", "1[2]"], batch_size=4, progress=False)
>>> tuple(rec["0"].shape), tuple(rec["1[2]"].shape)
((10, 3, 6, 6), (10, 6, 6))
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import persistence
from ._version import __version__
from .pixels import Raw, check_images
from .options import Job
from .errors import InsilicoError, JobMismatchError, SavedFileError, StimulusError, UnitError
from .identity import check, digest, fingerprint_differences, job_identity, value_digest
from .jsonfiles import jsonable
from .layout import POOLS as REDUCTIONS
from .performance import HALF, check_finite, tuned
from .registry import register_tool
from .results import need_pandas
from .session import session
from .sharding import (ProgressLog, barrier, chunks, create_once, merge, missing, rank_world, read_identity,
                       start_over, write_json)
from .units import Unit

FORMAT = "insilico.recording/1"


class Recording:
    """Responses of units to a stimulus set; ``rec[unit]`` is a CPU tensor (N, ...).

    It keeps the result protocol of :class:`insilico.results.Result`:
    ``save(path)`` / ``load(path)`` (a folder of ``.npy`` arrays and JSON
    metadata, read memory-mapped and without unpickling anything: a recording
    may be larger than memory, so it is not one ``torch.save`` file),
    ``concat`` (over stimulus chunks), ``plot(ax=None)`` and ``versions``.

    Attributes
    ----------
    units : list of str
        The recorded unit addresses.
    ids : list
        One label per stimulus (image files: their relative paths; 0 .. N-1 when none were given).
    labelled : bool
        Whether the ids were given (``record_stimuli(ids=)``); RDMs of a
        recording without ids are unlabelled (:mod:`insilico.rsa`).
    params : list of dict or None
        Stimulus parameters (from a :class:`~insilico.stimuli.StimulusSet`).
    labels : list of int or None
        The class index of each stimulus, when the stimuli had classes (a
        ``DIR/<class>/<image>`` folder, a Dataset with ``targets``).
    class_names : list of str or None
        The name of each class index.
    path : Path or None
        The folder, for on-disk recordings (loaded lazily, memory-mapped).
    done : list of (start, stop)
        The stimulus ranges recorded: all of them unless a run was
        interrupted (record again with the same ``out`` to finish it).
        ``rec[unit]`` and ``len(rec)`` cover only the recorded stimuli.
    """

    def __init__(self, arrays: dict[str, np.ndarray], ids=None, params=None, meta=None, path=None, done=None):
        self._arrays = arrays
        self.units = list(arrays)
        self.n_stimuli = len(next(iter(arrays.values())))
        self.done = merge(done) if done is not None else [(0, self.n_stimuli)]
        self.labelled = ids is not None
        self.ids = list(ids) if ids is not None else list(range(self.n_stimuli))
        self.params = params
        self.meta = meta or {}
        self.path = Path(path) if path is not None else None

    @property
    def labels(self) -> list | None:
        return self.meta.get("labels")

    @property
    def class_names(self) -> list | None:
        return self.meta.get("class_names")

    @property
    def complete(self) -> bool:
        return self.done == [(0, self.n_stimuli)]

    @property
    def indices(self) -> np.ndarray:
        """Positions in the stimulus set of the recorded stimuli (all of them when complete)."""
        return np.concatenate([np.arange(a, b) for a, b in self.done]) if self.done else np.zeros(0, dtype=int)

    def array(self, unit) -> np.ndarray:
        """The responses of ``unit`` as a numpy array (a lazy memory map on disk)."""
        key = Unit.parse(unit).key
        for name, array in self._arrays.items():
            if Unit.parse(name).key == key:
                if self.complete:
                    return array
                if len(self.done) == 1 and self.done[0][0] == 0:
                    return array[: self.done[0][1]]
                return array[self.indices]
        raise UnitError(f"{unit} is not in this recording; it holds {', '.join(self.units)}")

    def __getitem__(self, unit) -> torch.Tensor:
        return torch.from_numpy(self.array(unit))

    def __len__(self) -> int:
        return sum(b - a for a, b in self.done)

    def __contains__(self, unit) -> bool:
        return any(Unit.parse(name) == unit for name in self.units)

    def save(self, path: str | os.PathLike) -> Recording:
        """Write this recording to a folder in the on-disk format; returns the loaded copy."""
        shapes = {name: (a.shape[1:], a.dtype.str) for name, a in self._arrays.items()}
        meta = {k: v for k, v in self.meta.items() if k != "job"}  # a copy holds no stimulus digests to resume by
        ids = self.ids if self.labelled else None  # ids not given stay not given
        sink = _DiskSink(Path(path), self.units, shapes, self.n_stimuli, ids, self.params, meta)
        for start, stop in self.done:
            for name in self.units:
                sink.write(name, start, np.asarray(self._arrays[name][start:stop]))
            sink.commit(start, stop)
        sink.close()
        return Recording.load(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recording:
        """Open an on-disk recording lazily (memory-mapped, copy-on-write; nothing is unpickled).

        Raises
        ------
        SavedFileError
            No recording there, a missing or damaged ``meta.json``, a recording format this insilico
            does not read, or a unit's ``.npy`` missing, cut short or of another shape (the message
            names the file).
        """
        path = Path(path)
        if not (path / "meta.json").exists():
            if (path / "job.json").exists():  # an out= folder of maximize, metamer, pgd, controversial
                raise SavedFileError(f"{path} is the out= folder of a resumable run (job.json and its chunk files), "
                                     "not a saved result: rerun the same call with this out= (it computes nothing "
                                     "that is done and returns the result), or `insilico merge` it for a command-line "
                                     "run", path / "job.json")
            raise SavedFileError(f"{path} holds no insilico recording (no meta.json)", path / "meta.json")
        meta = persistence.read_json(path / "meta.json", "recording metadata")
        if meta.get("format") != FORMAT:
            raise SavedFileError(
                f"{path / 'meta.json'} is a recording in format {meta.get('format')!r}; this insilico reads "
                f"{FORMAT} ({persistence.versions_text(meta.get('versions'))}): read it with the insilico "
                "that wrote it, or record again", path / "meta.json")
        return cls(_unit_arrays(path, meta), *_stimuli_of(meta, path), meta, path, ProgressLog(path).done())

    @property
    def versions(self) -> dict:
        """Versions of the libraries that recorded it (from the metadata)."""
        return dict(self.meta.get("versions", {}))

    @classmethod
    def concat(cls, recordings: Sequence[Recording]) -> Recording:
        """Join recordings of the same units over consecutive stimulus chunks (in memory).

        Raises
        ------
        InsilicoError
            No recording, different units, an incomplete recording, or recordings of another model, reduction,
            precision or value shape than the first (the message names what differs).
        """
        recordings = list(recordings)
        if not recordings:
            raise InsilicoError("Recording.concat needs at least one recording")
        units = recordings[0].units
        for k, rec in enumerate(recordings):
            if rec.units != units:
                raise InsilicoError(f"recordings of different units cannot be joined: {rec.units} vs {units}")
            if not rec.complete:
                raise InsilicoError(f"{rec!r} is incomplete: finish it (record again with the same out=) first")
            differ = _recording_differences(recordings[0], rec)
            if differ:
                raise InsilicoError(f"recording {k} is not a chunk of the same job as recording 0 (recording 0 vs {k}: "
                                    f"{'; '.join(differ)}): its rows would not be what the joined recording's "
                                    "settings say; join recordings of one model and one setting, or keep them apart")
        arrays = {name: np.concatenate([np.asarray(rec.array(name)) for rec in recordings]) for name in units}
        ids = [i for rec in recordings for i in rec.ids] if all(rec.labelled for rec in recordings) else None
        params = None
        if all(rec.params is not None for rec in recordings):
            params = [p for rec in recordings for p in rec.params]
        meta = {k: v for k, v in recordings[0].meta.items() if k not in ("labels", "class_names")}
        if all(rec.labels is not None and rec.class_names == recordings[0].class_names for rec in recordings):
            meta.update(labels=[y for rec in recordings for y in rec.labels], class_names=recordings[0].class_names)
        return cls(arrays, ids, params, meta)

    def to_xarray(self):
        """The responses as an ``xarray.DataArray`` laid out as Brain-Score's ``NeuroidAssembly``.

        Dims ``("presentation", "neuroid")``, or ``("presentation", "neuroid", "time_bin")`` when every
        unit names a time step and each unit is recorded at the same steps (``"blt.conv2@0"``,
        ``"blt.conv2@1"``, ...; ``time_bin`` holds the step numbers). Only recorded stimuli are rows.

        Coordinates: on ``presentation`` ``stimulus_id`` (the ids, as text), ``label`` and
        ``class_name`` when the stimuli had classes, and each scalar stimulus parameter (a
        StimulusSet's); on ``neuroid`` those of :meth:`neuroids`. Attributes: the recording's
        settings (``model``, ``reduce``, ``precision``, ``batch_size``, ``class_names``, ``versions``)
        as NetCDF-safe text and numbers, so ``to_netcdf`` / ``xarray.load_dataarray`` round-trip it
        (scipy's NetCDF3 writer is enough). Values are read into memory (float32 as recorded).

        Raises
        ------
        InsilicoError
            xarray is not installed (``pip install insilico-ephys[xarray]``).

        Example
        -------
        >>> import torch, insilico
        >>> net = torch.nn.Conv2d(1, 2, 3)
        >>> rec = insilico.Probe(net).record_stimuli(torch.rand(4, 1, 5, 5), "", progress=False)
        >>> da = rec.to_xarray()
        >>> da.dims, da.sizes["neuroid"], str(da.neuroid_id.values[5])
        (('presentation', 'neuroid'), 18, '[0,1,2]')
        """
        try:
            import xarray
        except ImportError:
            raise InsilicoError("Recording.to_xarray needs xarray: pip install 'insilico-ephys[xarray]'") from None
        rows = self.indices
        values, neuroids = self._flat()
        coords = {"stimulus_id": ("presentation", [str(self.ids[i]) for i in rows])}
        if self.labels is not None:
            coords["label"] = ("presentation", np.asarray([self.labels[i] for i in rows], dtype=np.int32))
            if self.class_names is not None:
                coords["class_name"] = ("presentation", [str(self.class_names[self.labels[i]]) for i in rows])
        for key, column in _param_columns(self.params, rows).items():
            coords.setdefault(key, ("presentation", column))
        steps = _time_steps(self.units, neuroids)
        if steps is None:
            coords.update({k: ("neuroid", v) for k, v in neuroids.items()})
            dims = ("presentation", "neuroid")
        else:
            first = [j for j, unit in enumerate(neuroids["unit"]) if Unit.parse(unit).step == steps[0]]
            values = np.stack([values[:, [j for j, unit in enumerate(neuroids["unit"]) if Unit.parse(unit).step == t]]
                               for t in steps], axis=-1)
            coords.update({k: ("neuroid", [_without_step(v[j], k) for j in first]) for k, v in neuroids.items()
                           if k != "step"})
            coords["time_bin"] = ("time_bin", np.asarray(steps, dtype=np.int32))
            dims = ("presentation", "neuroid", "time_bin")
        return xarray.DataArray(values, dims=dims, coords=coords, name="responses", attrs=self._attrs())

    def to_pandas(self):
        """The responses as a ``pandas.DataFrame``: one row per recorded stimulus (index ``stimulus_id``), one
        column per single value (named by :meth:`neuroids`' ``neuroid_id``); values read into memory.

        Raises
        ------
        InsilicoError
            pandas is not installed (``pip install pandas``).
        """
        pandas = need_pandas("Recording.to_pandas")
        values, neuroids = self._flat()
        index = pandas.Index([self.ids[i] for i in self.indices], name="stimulus_id")
        return pandas.DataFrame(values, index=index, columns=pandas.Index(neuroids["neuroid_id"], name="neuroid_id"))

    def neuroids(self) -> dict[str, list]:
        """One entry per single recorded value (the columns of :meth:`to_pandas`), as lists of equal length.

        ``neuroid_id``: the value's address (``"features.0[3,2,1]"``; with a reduction or a sliced
        index, the unit followed by the position in its recorded value, ``"features.0[1:3]#0,2,1"``);
        ``unit``: the recorded address; ``layer``: its module; ``step``: its time step (-1: none);
        ``channel``: the first index of the value's full address (a conv map's channel, a token
        layer's token; -1 when a sliced index hides it); ``position``: the rest of the address
        (``"2,1"``), the reduction (``"mean"``), or ``""``.
        """
        return self._flat(values=False)[1]

    def _flat(self, values: bool = True) -> tuple:
        """The recorded stimuli's values (N, neuroids) in unit order, and the neuroid coordinates."""
        reduce = self.meta.get("reduce")
        columns, coords = [], {k: [] for k in ("neuroid_id", "unit", "layer", "step", "channel", "position")}
        for name in self.units:
            array = self.array(name)
            unit, shape = Unit.parse(name), tuple(array.shape[1:])
            if values:
                columns.append(np.asarray(array).reshape(len(array), -1))
            how = reduce.get(name) if isinstance(reduce, dict) else reduce  # one for all, or per unit
            for where in np.ndindex(*shape):
                for key, value in zip(coords, _neuroid(unit, where, how)):
                    coords[key].append(value)
        data = np.concatenate(columns, axis=1) if values and columns else None
        return data, coords

    def _attrs(self) -> dict:
        """The settings as NetCDF attributes: text and numbers only (JSON text for the rest)."""
        import json

        attrs = {"format": FORMAT, "n_stimuli": int(self.n_stimuli)}
        for key, value in self.meta.items():
            if key in ("job", "labels", "units", "stimuli", "format"):
                continue
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                attrs[key] = value
            else:
                attrs[key] = json.dumps(jsonable(value))
        return attrs

    def plot(self, unit=None, ax=None):
        """Responses of ``unit`` (default the first), stimuli x values (flattened); returns the Figure."""
        import matplotlib.pyplot as plt

        name = self.units[0] if unit is None else unit
        values = np.asarray(self.array(name), dtype=float).reshape(len(self), -1)
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="magma")
        ax.set_xlabel(f"{name} (values, flattened)")
        ax.set_ylabel("stimulus")
        ax.figure.colorbar(image, ax=ax, shrink=0.8)
        return ax.figure

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        status = "" if self.complete else f", {len(self)}/{self.n_stimuli} recorded"
        return f"Recording({len(self.units)} units x {self.n_stimuli} stimuli{status}{where})"


persistence.register(Recording, "folder")  # insilico.load(folder) opens it through the decoder's table


def _recording_differences(first: Recording, other: Recording) -> list[str]:
    """What makes ``other``'s values mean something else than ``first``'s (each as "first vs other"): the model
    (class; its parameters where both were recorded to disk, with their job identity), the reduction, the
    precision, a unit's value shape."""
    import json

    out = [f"{key}: {json.dumps(jsonable(first.meta.get(key)))} vs {json.dumps(jsonable(other.meta.get(key)))}"
           for key in ("model", "reduce", "precision") if other.meta.get(key) != first.meta.get(key)]
    models = [(r.meta.get("job") or {}).get("model", {}).get("model") for r in (first, other)]
    if all(isinstance(m, dict) for m in models):
        out += fingerprint_differences(*models)
    out += [f"value shape of {u}: {list(first.array(u).shape[1:])} vs {list(other.array(u).shape[1:])}"
            for u in first.units if tuple(other.array(u).shape[1:]) != tuple(first.array(u).shape[1:])]
    return out


def _neuroid(unit: Unit, where: tuple, reduce) -> tuple:
    """``(neuroid_id, unit, layer, step, channel, position)`` of the value at ``where`` in ``unit``'s recorded value."""
    fixed = unit.index or ()
    known = all(isinstance(i, int) for i in fixed)  # a sliced or listed index hides the full address
    full = tuple(fixed) + tuple(where) if known else None
    step = -1 if unit.step is None else unit.step
    if full is not None and reduce is None:
        name = str(unit.replace(index=full)) if full else str(unit)
        return name, str(unit), unit.module, step, (full[0] if full else -1), ",".join(map(str, full[1:]))
    name = f"{unit}#{','.join(map(str, where))}" if where else str(unit)
    channel = full[0] if full else -1
    return name, str(unit), unit.module, step, channel, reduce or ""


def _time_steps(units: list, neuroids: dict) -> list | None:
    """The common time steps when every unit names one and each unit is recorded at all of them, else None."""
    parsed = [Unit.parse(u) for u in units]
    if len(parsed) < 2 or any(u.step is None for u in parsed):
        return None
    steps = sorted({u.step for u in parsed})
    groups: dict = {}
    for unit in parsed:
        groups.setdefault(str(unit.replace(step=None)), []).append(unit.step)
    if len(steps) < 2 or any(sorted(g) != steps for g in groups.values()):
        return None
    per_step = [[_without_step(n, "neuroid_id") for n, u in zip(neuroids["neuroid_id"], neuroids["unit"])
                 if Unit.parse(u).step == t] for t in steps]
    return steps if all(ids == per_step[0] for ids in per_step) else None


def _without_step(value, key: str):
    """A neuroid coordinate with the time step taken out of the addresses (``"a@2[3]"`` -> ``"a[3]"``)."""
    if key not in ("neuroid_id", "unit"):
        return value
    head, _, tail = str(value).partition("#")
    head = str(Unit.parse(head).replace(step=None))
    return f"{head}#{tail}" if tail else head


def _param_columns(params, rows) -> dict:
    """Stimulus parameters that every stimulus has as one scalar (text or number), one column each."""
    if not params:
        return {}
    columns = {}
    for key in params[0]:
        column = [params[i].get(key) for i in rows]
        if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in column):
            kinds = {type(v) for v in column}
            columns[key] = [str(v) for v in column] if str in kinds else np.asarray(column, dtype=float)
    return columns


def _unit_arrays(path: Path, meta: dict) -> dict:
    """The memory-mapped array of every unit named in a recording's metadata, checked against it."""
    arrays = {}
    units = meta.get("units")
    if not isinstance(units, list) or not all(isinstance(u, dict) for u in units):
        raise SavedFileError(f"{path / 'meta.json'} is damaged (no list of units)", path / "meta.json")
    for entry in units:
        name = entry.get("file")
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".npy"):
            raise SavedFileError(f"{path / 'meta.json'} names the array file {name!r}, which is not a .npy file "
                                 "in the recording's folder", path / "meta.json")
        array = persistence.open_npy(path / name)
        shape, dtype = entry.get("shape"), entry.get("dtype")
        if (shape is not None and list(array.shape) != list(shape)) or \
                (dtype is not None and array.dtype != np.dtype(dtype)):
            raise SavedFileError(f"{path / name} holds {tuple(array.shape)} {array.dtype}, but meta.json says "
                                 f"{tuple(shape or ())} {dtype}: the folder is damaged; record again", path / name)
        arrays[entry.get("unit")] = array
    return arrays


def _stimuli_of(meta: dict, path: Path) -> tuple:
    """The stimulus ids and parameters a recording's metadata holds."""
    stimuli = meta.get("stimuli", {})
    if not isinstance(stimuli, dict):
        raise SavedFileError(f"{path / 'meta.json'} is damaged (stimuli is not an object)", path / "meta.json")
    return stimuli.get("ids"), stimuli.get("params")


@register_tool("probe", per_sample=True)
def record_stimuli(
    probe,
    stimuli: Any,
    units,
    batch_size: int = 64,
    out: str | os.PathLike | Job | None = None,
    reduce: str | Mapping | None = None,
    progress: bool = True,
    ids: Sequence | None = None,
    model_name: str | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Recording:
    """Record ``units`` over a stimulus set in batches (no gradients, model in eval mode).

    Parameters
    ----------
    probe : Probe
    stimuli : tensor (N, ...), numpy array, StimulusSet, Dataset, folder, glob or list of image files
        A Dataset's items may be tensors or ``(tensor, label)`` pairs; image
        files are decoded and fitted to the model's input (its ``preprocessing``
        or ``input_size``; see :func:`stimulus_source`); both are read batch by
        batch, so stimuli never need to fit in memory. A folder's class
        sub-folders become the recording's ``labels`` and ``class_names``.
    units : address or list of addresses
    batch_size : int
    out : folder or Job, optional
        Stream to disk there (see the module docstring); a folder holding an
        unfinished recording of the same job (model, units, stimuli,
        settings) is resumed; one of another job is refused
        (:class:`~insilico.errors.JobMismatchError` naming the differences).
        ``Job(folder, shard=(rank, world))`` records only this rank's share of the batches (by default
        the ranks of an initialised ``torch.distributed`` process group share the work, e.g. under
        ``torchrun``: all write into the folder and all return the whole recording; without ``out`` each
        process records on its own); ``Job(folder, overwrite=True)`` deletes the recording already there
        and starts over.
    reduce : {"mean", "max", "center"} or dict, optional
        Spatial reduction at record time (see :meth:`Probe.record`): one for every unit (a unit it is
        meaningless for, such as a vector, is refused), or a dict per unit, ``{"blocks.3": "center",
        "head": None}`` (units it does not name are recorded whole), whose key ``"*"`` is a default that
        applies only where it is meaningful (``{"*": "mean"}`` pools every map, channels-last and token
        layer and records vectors whole). The recording's ``meta["reduce"]`` is then the dict of what each
        unit got.
    progress : bool
        Show a tqdm progress bar.
    ids : sequence, optional
        Stimulus labels (default: image files' relative paths, else 0..N-1).
    model_name : str, optional
        Stored in the metadata.
    precision : {"fp32", "bf16", "fp16"}
        Forward passes under :func:`torch.autocast` (default "fp32": unchanged);
        bf16/fp16 values are stored as float32 / float16.
    channels_last : bool
        Model weights and batches in NHWC memory order during the run (faster
        convolutions on GPUs; see :mod:`insilico.performance`).

    Returns
    -------
    Recording

    Raises
    ------
    JobMismatchError
        ``out`` holds a recording of another model, other units or settings,
        or other stimuli (the message names them).
    UnitError
        A reduction meaningless for a unit it names (not a default), or a ``reduce`` dict naming a unit
        that is not recorded.
    """
    if isinstance(units, (str, Unit)) or not isinstance(units, Sequence):
        units = [units]
    parsed = probe.units(*units)
    names = list(dict.fromkeys(str(u) for u in parsed))
    source = stimulus_source(stimuli, model=probe.model)
    n = len(source)
    if n == 0:
        raise StimulusError("the stimulus set is empty")
    if batch_size < 1:
        raise InsilicoError(f"batch_size must be at least 1, not {batch_size}")
    given = list(ids) if ids is not None else source.ids  # None: the recording's RDMs are unlabelled
    ids = given if given is not None else list(range(n))
    if len(ids) != n:
        raise StimulusError(f"{len(ids)} ids for {n} stimuli")
    job = Job.of(out)
    shard = None if job is None else job.shard
    out = None if job is None else Path(job.path)
    rank, world = rank_world(shard)
    if world > 1 and out is None:
        rank, world = 0, 1  # a process of a group (e.g. data-parallel training) records a job of its own
    sync = barrier if world > 1 else (lambda: None)

    model = probe.model
    with session(model), tuned(model, precision, channels_last) as prepare:
        shapes, reduce = _probe_shapes(probe, source, names, reduce, prepare)
        meta = {
            "model": model_name or type(model).__name__,
            "batch_size": batch_size,
            "reduce": reduce,
            "precision": precision,
            "versions": {"insilico": __version__, "torch": torch.__version__, "numpy": np.__version__},
            **({"labels": source.labels, "class_names": source.class_names} if source.labels is not None else {}),
        }
        if out is None:
            sink = _MemorySink(shapes, n)
        else:
            settings = {"units": names, "reduce": jsonable(reduce), "precision": precision,
                        "ids": value_digest(jsonable(ids)), "params": value_digest(jsonable(source.params))}
            meta["job"] = job_identity(model, settings, {"stimuli": {"n": n}})
            if job.overwrite:
                start_over(Path(out), ["meta.json", "progress-*.json", "[0-9][0-9][0-9]_*.npy"], shard)
            sink = _DiskSink.open(Path(out), names, shapes, n, given, source, meta, rank)
        sync()  # every rank plans from the same progress before any rank adds to it
        todo = _share(chunks(missing(sink.done(), n), batch_size), batch_size, rank, world, shard)
        sync()
        half = probe.dtype if probe.dtype in HALF else {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        _fill(probe, source, names, sink, todo, reduce, progress, prepare, half)
        sync()
    if out is None:
        return Recording(sink.arrays, given, source.params, meta)
    return Recording.load(out)


def _share(todo: list, batch_size: int, rank: int, world: int, shard) -> list:
    """This rank's chunks. Ranks of a process group plan together and split what is missing evenly;
    hand-made shards can't see each other's plans, so each keeps the chunks whose batch number is its own."""
    if shard is None:
        return todo[rank::world]
    return [(a, b) for a, b in todo if (a // batch_size) % world == rank]


def _fill(probe, source, names, sink, todo, reduce, progress, prepare, half=None) -> None:
    """Record ``todo`` into ``sink``: one forward pass per batch, one record per reduction (``reduce``: one
    for all units, or a dict unit -> reduction as :func:`_reductions` resolves it). ``half``: the half dtype the
    model computes in, whose NaN / inf (an overflow) is a NumericsError, not a stored value."""
    groups: dict = {}
    for name in names:
        groups.setdefault(reduce.get(name) if isinstance(reduce, dict) else reduce, []).append(name)
    try:
        for start, batch in batches(source, len(source), probe.device, probe.dtype, progress, "recording",
                                    ranges=todo, leave=True):
            with contextlib.ExitStack() as stack:
                recs = [stack.enter_context(probe.record(*group, reduce=how)) for how, group in groups.items()]
                probe.model(prepare(batch))
            stop = start + len(batch)
            key = source.digest(start, stop) if sink.hashes else None  # while an accelerator computes the batch
            for rec, group in zip(recs, groups.values()):
                for name in group:
                    if half is not None:
                        check_finite(rec[name], f"the responses of {name}", half, f"on stimuli {start}..{stop - 1}",
                                     "record with precision='fp32' (or 'bf16', float32's range)")
                    sink.write(name, start, _to_numpy(rec[name]))
            sink.commit(start, stop, key)
    finally:
        sink.close()


def _reductions(names: list, reduce) -> dict:
    """``{name: (reduction, default)}`` for ``record_stimuli(reduce=)``: one reduction for every unit (not a
    default: refused where meaningless), or a dict per unit whose ``"*"`` is a default for the units it does not
    name (applied only where meaningful)."""
    if not isinstance(reduce, Mapping):
        return {name: (reduce, False) for name in names}
    given = {key: how for key, how in reduce.items() if key != "*"}
    for how in reduce.values():
        if how is not None and how not in REDUCTIONS:
            raise InsilicoError(f"reduce must be one of {REDUCTIONS} or None for each unit, not {how!r}")
    found = {}
    for key in given:
        match = [name for name in names if Unit.parse(name) == Unit.parse(key)]
        if not match:
            raise UnitError(f"reduce names {key!r}, which is not among the recorded units ({', '.join(names)}): "
                            "name the units as they are recorded, or use '*' for a default")
        found.update(dict.fromkeys(match, given[key]))
    return {name: (found[name], False) if name in found else (reduce.get("*"), "*" in reduce) for name in names}


def _probe_shapes(probe, source, names, reduce, prepare) -> tuple[dict[str, tuple], Any]:
    """Per-sample shape and numpy dtype of each unit's recorded values, from one survey of one stimulus, and the
    reduction of each unit (``reduce`` as given, or a dict unit -> reduction when a dict was given: a default
    reduction is dropped, None, for a unit whose layout has no positions to pool).

    The survey (:meth:`insilico.Probe.survey`, under the caller's precision)
    gives each call's output shape and dtype, read by the one shape rule
    (:meth:`insilico.Probe.value_spec`: a part of a structured output,
    ``"lstm:0"``, is sized by one recording pass); the unit's reduction and
    index are applied to an empty ``meta`` tensor of that shape, as a
    recording applies them.
    """
    from .taps import _reduce

    plan = _reductions(names, reduce)
    for how in dict.fromkeys(how for how, _ in plan.values()):  # the record's own checks of addresses and reductions
        probe.record(*[n for n in names if plan[n][0] == how], reduce=how).remove()
    first = prepare(source.batch(0, 1, probe.device, probe.dtype))
    units = [Unit.coerce(name, probe.model) for name in names]
    plain = [u for u in units if u.output is None or u.part is not None or u.op is not None]
    ops = any(u.part is not None or u.op is not None for u in units)
    survey = probe.survey(first, ops=ops, strict=False) if plain else None
    shapes, parts, chosen = {}, {}, {}
    for name, unit in zip(names, units):
        whole = Unit(unit.module, unit.step, None, unit.output)
        shape, dtype = probe.value_spec(whole, first, survey, parts)
        value = torch.empty((1, *shape), dtype=dtype, device="meta")
        how, default = plan[name]
        if how is not None:
            try:
                value = _reduce(value, how, unit, probe.model)
            except UnitError:
                if not default:
                    raise
                how = None  # the default does not apply here: no positions to pool
        chosen[name] = how
        shapes[name] = (tuple(unit.select(value).shape[1:]), _numpy_dtype(value.dtype))
    return shapes, (chosen if isinstance(reduce, Mapping) else reduce)


def _numpy_dtype(dtype: torch.dtype) -> str:
    """The numpy dtype string recordings store ``dtype`` as (bfloat16 as float32, which numpy lacks)."""
    if dtype == torch.bfloat16:
        dtype = torch.float32
    return torch.empty(0, dtype=dtype).numpy().dtype.str


# ---------------------------------------------------------------------------------------
# Stimulus sources
# ---------------------------------------------------------------------------------------
class _Source:
    """Uniform batch access to tensors, arrays, StimulusSets, Datasets and image files.

    ``ids`` (the files' relative paths), ``labels`` (class indices) and
    ``class_names`` are what the stimuli say of themselves (None when nothing).
    """

    def __init__(self, get, n, params=None, images: bool = True, ids=None, labels=None, class_names=None):
        self._get, self._n, self.params, self.images = get, n, params, images
        self.ids, self.labels, self.class_names = ids, labels, class_names
        self._last = None

    def __len__(self) -> int:
        return self._n

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Stimuli ``[start, stop)`` as given (no gate, device or dtype change); the last batch read is kept."""
        if self._last is not None and self._last[0] == (start, stop):
            return self._last[1]
        self._last = None  # one chunk alive: the last one is let go before the next is read
        batch = self._get(start, stop)
        if not torch.is_tensor(batch):
            batch = torch.as_tensor(np.asarray(batch))
        self._last = ((start, stop), batch)
        return batch

    def batch(self, start: int, stop: int, device, dtype) -> torch.Tensor:
        batch = self.read(start, stop)
        if self.images:
            check_images(batch, name=getattr(self, "name", "images"))
        elif batch.is_floating_point() and not torch.isfinite(batch).all():
            raise StimulusError(f"stimuli {start}..{stop - 1} contain NaN or inf values")
        if dtype is not None and batch.is_floating_point():
            batch = batch.to(dtype)  # the model's dtype: float64 models get float64 stimuli
        return batch if device is None else batch.to(device)

    def __getitem__(self, indices) -> torch.Tensor:
        """The stimuli at ``indices`` (an int, or a sequence or tensor of them), gated, as read (on the CPU)."""
        if isinstance(indices, int) or (torch.is_tensor(indices) and indices.ndim == 0):
            return self.batch(int(indices), int(indices) + 1, None, None)[0]
        return torch.cat([self.batch(int(i), int(i) + 1, None, None) for i in indices])

    def digest(self, start: int, stop: int) -> str:
        """:func:`insilico.identity.digest` of stimuli ``[start, stop)`` (the batch just read is not read again)."""
        return digest(self.read(start, stop))


def stimulus_source(stimuli: Any, name: str = "images", model=None) -> _Source:
    """Wrap stimuli (tensor, array, StimulusSet, Dataset, image files) for batched access.

    Every batch passes the image gate (:func:`insilico.pixels.check_images`:
    (N, C, H, W) floats in [0, 1]), whose messages start with ``name`` (the
    argument as the user wrote it, e.g. ``"reference"``); inputs that are not
    images go through the explicit door :func:`insilico.pixels.raw`. A
    Dataset's items may be images, ``(image, label, ...)`` tuples (torchvision's
    ``ImageFolder`` with a ``transform`` that makes tensors; its ``targets`` and
    ``classes`` become the source's ``labels`` and ``class_names``) or dicts with an
    image under one of :data:`IMAGE_KEYS`.

    :func:`insilico.stimuli.labels.labelled` stimuli (a labels CSV, a class-names file) have those labels and
    class names, over the ones they carry.

    Image files are read as :mod:`insilico.stimuli.files` says: a folder
    (``DIR/<class>/<image>`` gives labels and class names), a glob string or a
    list of paths; ``ids`` are the relative paths. They are decoded chunk by
    chunk (one chunk alive at a time), as RGB (grey for a one-channel model)
    and fitted to ``model``'s input: by its ``preprocessing`` (a
    :class:`~insilico.models.zoo.Preprocessing`: resize, centre crop) when it
    has one, else resized to cover its ``input_size`` and centre-cropped
    (:func:`~insilico.stimuli.files.fit_image`); without either, every image
    must have one size (a StimulusError names two that differ).

    Example
    -------
    >>> import tempfile, numpy as np, skimage.io, torch
    >>> d = tempfile.mkdtemp()
    >>> for i, shape in enumerate([(20, 30, 3), (40, 24, 3)]):
    ...     skimage.io.imsave(f"{d}/{i}.png", np.zeros(shape, np.uint8), check_contrast=False)
    >>> net = torch.nn.Conv2d(3, 2, 3)
    >>> net.input_size = (3, 16, 16)
    >>> source = stimulus_source(d, model=net)
    >>> source.ids, tuple(source.batch(0, 2, None, None).shape)
    (['0.png', '1.png'], (2, 3, 16, 16))
    """
    if isinstance(stimuli, _Source):  # made already (e.g. by a tool that reads it twice)
        return stimuli
    from .stimuli.labels import Labelled

    given = stimuli if isinstance(stimuli, Labelled) else None
    source = _stimulus_source(stimuli if given is None else given.stimuli, model)
    if given is not None:
        _relabel(source, given.labels, given.class_names)
    source.name = name
    return source


def _relabel(source: _Source, labels: Any, class_names: Any) -> None:
    """Give ``source`` the labels of a labels file (or ``{id: label}``) and the class names of a class-names file
    (or a list), over those its stimuli carry (:func:`insilico.stimuli.labels.labelled`)."""
    from .stimuli.labels import assign_labels, name_classes, read_class_names, read_labels

    own = source.class_names
    if labels is not None:
        if source.ids is None:
            raise StimulusError("a labels file names images by id, and these stimuli have none (only image files "
                                "do): give the tool one label per stimulus (labels=) instead")
        table = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else \
            {str(k): v for k, v in dict(labels).items()}
        source.labels, own = assign_labels(source.ids, getattr(source, "paths", None), table)
    if class_names is not None:
        names = read_class_names(class_names) if isinstance(class_names, (str, os.PathLike)) else \
            [str(n) for n in class_names]
        if source.labels is None:
            raise StimulusError("class names name the classes of the stimuli's labels, and these stimuli have none: "
                                "give a labels file too, or a folder DIR/<class>/<image>")
        source.labels, own = name_classes(source.labels, own, names), names
    source.class_names = own


def _file_source(stimuli: Any, model) -> _Source:
    """A source over image files, decoded per chunk and fitted to ``model``'s input (see :func:`stimulus_source`)."""
    from .stimuli.files import fit_image, image_files, read_image

    files = image_files(stimuli)
    size = getattr(model, "input_size", None)
    channels = int(size[0]) if size is not None and len(size) == 3 and int(size[0]) in (1, 3) else 3
    preprocessing = getattr(model, "preprocessing", None)
    if callable(preprocessing):
        def fit(image):
            return preprocessing(image[None])[0]
    elif size is not None and len(size) >= 2:
        def fit(image):
            return fit_image(image, tuple(int(s) for s in size[-2:]))
    else:
        def fit(image):
            return image

    first = {}  # the first image decoded: every other must come out the same size, in any chunk

    def get(a, b):
        images = [fit(read_image(files.paths[i], channels)) for i in range(a, b)]
        first.setdefault("shape", (files.paths[a], images[0].shape))
        path, shape = first["shape"]
        for i, image in zip(range(a, b), images):
            if image.shape != shape:
                raise StimulusError(f"{path} is {tuple(shape)} but {files.paths[i]} is {tuple(image.shape)}: images "
                                    "of different sizes are fitted to a model's input, and this model states none "
                                    "(no preprocessing or input_size): set model.input_size = (C, H, W), or resize "
                                    "the files to one size")
        return torch.stack(images)

    source = _Source(get, len(files), ids=files.ids, labels=files.labels, class_names=files.class_names)
    source.paths = files.paths  # a labels file may name the files by path
    return source


def _stimulus_source(stimuli: Any, model=None) -> _Source:
    from .stimuli.files import is_files

    if is_files(stimuli):
        return _file_source(stimuli, model)
    if isinstance(stimuli, Raw):
        tensor = stimuli.data
        return _Source(lambda a, b: tensor[a:b], len(tensor), images=False)
    params = None
    if hasattr(stimuli, "images") and not isinstance(stimuli, torch.utils.data.Dataset):  # a StimulusSet
        params = getattr(stimuli, "params", None)
        stimuli = stimuli.images
    if isinstance(stimuli, np.ndarray):
        stimuli = torch.from_numpy(stimuli)
    if torch.is_tensor(stimuli):
        if stimuli.ndim < 2:
            raise StimulusError(f"stimuli need a batch axis first, e.g. (N, C, H, W); got shape {tuple(stimuli.shape)}")
        tensor = stimuli
        return _Source(lambda a, b: tensor[a:b], len(tensor), jsonable(params))
    if hasattr(stimuli, "__getitem__") and hasattr(stimuli, "__len__"):
        dataset = stimuli

        def get(a, b):
            images = [_item_image(dataset[i], i) for i in range(a, b)]
            shapes = sorted({tuple(x.shape) for x in images})
            if len(shapes) > 1:
                raise StimulusError(f"dataset items {a}..{b - 1} have images of different shapes {shapes[:4]}: give the "
                                    "dataset a transform that makes every image one size (e.g. torchvision's "
                                    "Resize(s) + CenterCrop(s) + ToTensor())")
            return torch.stack(images)

        labels, names = getattr(dataset, "targets", None), getattr(dataset, "classes", None)  # torchvision's
        if labels is None or names is None or len(labels) != len(dataset):  # only a classification set's
            labels = names = None
        else:
            labels, names = [int(y) for y in labels], [str(c) for c in names]
        return _Source(get, len(dataset), labels=labels, class_names=names)
    raise StimulusError(
        f"cannot read stimuli from {type(stimuli).__name__}: pass a tensor (N, C, H, W), a numpy array, "
        "a StimulusSet, a Dataset, a folder of images, a glob or a list of image files"
    )


#: Keys of a dataset's dict items that hold the image (Hugging Face datasets, torchvision v2 samples).
IMAGE_KEYS = ("image", "pixel_values", "img", "images")


def _item_image(item: Any, index: int) -> torch.Tensor:
    """The image of one dataset item: the item, the first element of an ``(image, label)`` tuple
    (torchvision's ``ImageFolder``), or the ``IMAGE_KEYS`` entry of a dict; the gate checks it later."""
    if isinstance(item, Mapping):
        key = next((k for k in IMAGE_KEYS if k in item), None)
        if key is None:
            raise StimulusError(f"dataset item {index} is a dict with keys {list(item)[:8]}; insilico takes the image "
                                f"from one of {list(IMAGE_KEYS)}: rename the key, or wrap the dataset")
        item = item[key]
    elif isinstance(item, (tuple, list)) and item:
        item = item[0]  # (image, label, ...)
    if torch.is_tensor(item):
        return item
    if type(item).__module__.startswith("PIL."):
        raise StimulusError(f"dataset item {index} is a PIL image: give the dataset a transform that makes float "
                            "tensors in [0, 1] of one size, e.g. torchvision.transforms.Compose([Resize(s), "
                            "CenterCrop(s), ToTensor()])")
    try:
        return torch.as_tensor(np.asarray(item))
    except (TypeError, ValueError, RuntimeError):
        raise StimulusError(f"dataset item {index} holds {type(item).__name__}, not an image: items must be image "
                            f"tensors (C, H, W), (image, label) tuples or dicts with one of {list(IMAGE_KEYS)}") from None


def batches(stimuli: Any, batch_size: int, device=None, dtype=None, progress: bool = False,
            desc: str = "batches", ranges: Sequence[tuple[int, int]] | None = None,
            leave: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """The one batched evaluate loop: yield ``(start, batch)`` over a stimulus set, each batch gated.

    Every tool that runs a model over stimuli (recording, the experiments,
    exemplars, RSA model RDMs) takes its batches from here: each batch passes
    the image gate of :func:`stimulus_source` (or the :func:`~insilico.pixels.raw`
    door) and lands on ``device`` / ``dtype`` (floating batches only), with a
    tqdm progress bar counting stimuli.

    Parameters
    ----------
    stimuli : tensor (N, C, H, W), numpy array, StimulusSet, Dataset, raw(...) or a source
        Anything :func:`stimulus_source` reads (a source made already is used as is).
    batch_size : int
        Stimuli per batch (at least 1); the last batch may be smaller.
    device, dtype : optional
        Where batches go (the model's: ``session.device``, ``session.dtype``).
    progress : bool
        Show a progress bar labelled ``desc``.
    ranges : list of (start, stop), optional
        Exactly these stimulus ranges, in this order (a resumed or sharded
        recording); default ``0..N`` in steps of ``batch_size``.

    Raises
    ------
    StimulusError
        An empty stimulus set (nothing to evaluate: every tool says so at once
        rather than failing inside ``torch.cat``), or a batch failing the gate.
    InsilicoError
        ``batch_size`` below 1.

    Example
    -------
    >>> import torch
    >>> [(start, len(b)) for start, b in batches(torch.rand(5, 1, 4, 4), 2)]
    [(0, 2), (2, 2), (4, 1)]
    """
    source = stimuli if isinstance(stimuli, _Source) else stimulus_source(stimuli)
    n = len(source)
    if n == 0:
        raise StimulusError("the stimulus set is empty: give at least one stimulus")
    if batch_size < 1:
        raise InsilicoError(f"batch_size must be at least 1, not {batch_size}")
    if ranges is None:
        ranges = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    bar = tqdm(total=sum(b - a for a, b in ranges), unit="stim", desc=desc, disable=not progress, leave=leave)
    try:
        for start, stop in ranges:
            yield start, source.batch(start, stop, device, dtype)
            bar.update(stop - start)
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------
# Sinks: where batches go
# ---------------------------------------------------------------------------------------
class _MemorySink:
    def __init__(self, shapes: dict, n: int):
        self.arrays = {name: np.empty((n,) + shape, dtype=np.dtype(dtype)) for name, (shape, dtype) in shapes.items()}

    hashes = False

    def done(self) -> list:
        return []

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        self.arrays[name][start : start + len(values)] = values

    def commit(self, start: int, stop: int, key: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class _DiskSink:
    """Writes unit arrays as .npy files chunk by chunk, with plain writes at each chunk's offset.

    Ranks write disjoint rows of the same files and log their chunks in
    progress files of their own, so several processes can share a folder.
    """

    def __init__(self, path: Path, names, shapes, n, ids, params, meta, rank=0):
        self.path = path
        files = {name: f"{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'model'}.npy"
                 for i, name in enumerate(names)}

        def create():
            for name, (shape, dtype) in shapes.items():
                np.lib.format.open_memmap(path / files[name], mode="w+", dtype=np.dtype(dtype), shape=(n, *shape))
            entries = [{"unit": name, "file": files[name], "shape": [n, *shapes[name][0]], "dtype": shapes[name][1]}
                       for name in names]
            write_json(path / "meta.json", {"format": FORMAT, **meta, "units": entries, "n_stimuli": n,
                                            "stimuli": {"ids": jsonable(ids), "params": jsonable(params)}})

        create_once(path, create)
        self.files, self.offsets, self.row_bytes = {}, {}, {}
        for name, (shape, dtype) in shapes.items():
            try:
                self.offsets[name] = np.load(path / files[name], mmap_mode="r").offset
            except (OSError, ValueError) as e:
                raise SavedFileError(f"{path / files[name]} is damaged ({type(e).__name__}: {e}): pass "
                                     "out=Job(folder, overwrite=True) (--force) to record again, or choose another out= folder",
                                     path / files[name]) from None
            self.row_bytes[name] = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            self.files[name] = open(path / files[name], "r+b")
        self.log = ProgressLog(path, rank)

    hashes = True

    @classmethod
    def open(cls, path: Path, names, shapes, n, ids, source, meta, rank=0) -> _DiskSink:
        """A sink for a new recording, or the unfinished one of the same job (``meta["job"]``) already in ``path``.

        The stimuli of every range already recorded are read again and hashed
        (no forward pass) and compared with the digests in the progress files.
        """
        if not (path / "meta.json").exists() and any(path.glob("progress-*.json")):
            check(None, meta["job"], str(path))  # progress logs whose meta.json is gone: nothing says what made them
        if (path / "meta.json").exists():
            stored = read_identity(path / "meta.json").get("job")
            if isinstance(stored, dict) and stored.get("stimuli", {}).get("stimuli", {}).get("n") == n:
                log = ProgressLog(path)
                kept = log.digests()
                unhashed = [f"{a}-{b}" for a, b in missing([_span(k) for k in kept], n)
                            if any(a < d1 and d0 < b for d0, d1 in log.done())]  # done without a digest: refuse
                chunks = {**kept, **{k: None for k in unhashed}}
                stored["stimuli"]["stimuli"]["chunks"] = chunks
                meta["job"]["stimuli"]["stimuli"]["chunks"] = {k: source.digest(*_span(k)) for k in chunks}
            check(stored, meta["job"], str(path / "meta.json"))
            meta["job"]["stimuli"]["stimuli"].pop("chunks", None)
            _check_labels(read_identity(path / "meta.json"), meta, path)
        return cls(path, names, shapes, n, ids, source.params, meta, rank)

    def done(self) -> list:
        return self.log.done()

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        fh = self.files[name]
        fh.seek(self.offsets[name] + start * self.row_bytes[name])
        fh.write(np.ascontiguousarray(values).tobytes())

    def commit(self, start: int, stop: int, key: str | None = None) -> None:
        for fh in self.files.values():
            fh.flush()
        self.log.add(start, stop, key)

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


def _check_labels(stored: dict, meta: dict, path: Path) -> None:
    """JobMismatchError when a folder's recording has other labels or class names than this run's stimuli: they
    are not in the job identity (the responses do not depend on them), but the folder would give back its own."""
    differ = [f"{key}: {_shown(stored.get(key))} (folder) vs {_shown(meta.get(key))} (now)"
              for key in ("labels", "class_names") if jsonable(stored.get(key)) != jsonable(meta.get(key))]
    if differ:
        raise JobMismatchError(f"{path} holds a recording of these stimuli with other labels ({'; '.join(differ)}): "
                               "its responses are the same, but loading it gives the folder's labels; pass the new "
                               "labels where you use the recording, or out=Job(folder, overwrite=True) (--force on "
                               "the command line) to record again with them", differ)


def _shown(value) -> str:
    import json

    text = json.dumps(jsonable(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _span(key: str) -> tuple[int, int]:
    start, stop = key.split("-")
    return int(start), int(stop)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()
