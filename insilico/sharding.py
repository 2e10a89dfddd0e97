"""Splitting work across processes, and remembering what is done.

Long jobs (recording 100,000 stimuli, maximizing every unit of a network) are
cut into chunks of item ranges ``[start, stop)``. Each process ("rank") takes
every ``world``-th missing chunk and logs the chunks it finishes to a
progress file of its own (``progress-<rank>.json``), so ranks never write the
same file. What is done is the union of all progress files: a rerun, with
any number of ranks, computes only the missing chunks, and a rank that died
loses only the chunk it was on.

Ranks come from an initialised ``torch.distributed`` process group (e.g.
launched by ``torchrun``), or are given by hand as ``out=Job(folder, shard=(rank, world))``
(e.g. from a SLURM array index) when there is no process group.

Sample-parallel synthesis (maximize, pgd, ...) uses :func:`map_chunks`: a
run's samples are cut into fixed chunks; each chunk's result is written
atomically as ``chunk-<start>-<stop>.pt`` into the output folder, so the
files themselves say what is done. After a barrier every rank loads the
parts in sample order and the tool joins them exactly as a single-process
run does (which goes through the same chunks), so results are bit-identical
on the CPU with the same seeds. The folder's ``job.json`` holds the job's
identity (:mod:`insilico.identity`), checked on every rerun: a folder of
another model, other inputs or other settings is refused.

Example
-------
>>> from insilico.sharding import chunks, map_chunks, missing
>>> missing([(0, 10), (20, 30)], 40)
[(10, 20), (30, 40)]
>>> chunks([(10, 20), (30, 40)], 4)
[(10, 12), (12, 16), (16, 20), (30, 32), (32, 36), (36, 40)]
>>> map_chunks(lambda a, b: list(range(a, b)), 5, 2)
[[0, 1], [2, 3], [4]]
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from . import persistence
from .errors import InsilicoError, SavedFileError
from .identity import check, job_identity, value_digest
from .jsonfiles import temporary as _temporary
from .jsonfiles import to_json
from .jsonfiles import write_json  # the one strict JSON writer, re-exported for the callers of sharding
from .options import Job, check_shard
from .persistence import pack, unpack

Interval = tuple[int, int]
#: The kind a chunk file records (its contents are packed plain data: :func:`insilico.persistence.pack`).
PART_KIND = "insilico.sharding:part"


def rank_world(shard: tuple[int, int] | None = None) -> tuple[int, int]:
    """This process's rank and the number of ranks: from ``shard``, else the process group, else (0, 1)."""
    if shard is not None:
        return check_shard(shard)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def active(shard: tuple[int, int] | None = None, out=None) -> bool:
    """Whether work is shared (a hand-made shard or a process group of several ranks) or kept in ``out``."""
    return shard is not None or out is not None or rank_world()[1] > 1


def barrier() -> None:
    """Wait for every rank of the process group (no-op without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def merge(intervals) -> list[Interval]:
    """Sorted union of half-open intervals."""
    merged: list[list[int]] = []
    for start, stop in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        elif stop > start:
            merged.append([start, stop])
    return [(a, b) for a, b in merged]


def missing(done, n: int) -> list[Interval]:
    """The parts of ``[0, n)`` not covered by ``done``."""
    gaps, cursor = [], 0
    for start, stop in merge(done):
        if start > cursor:
            gaps.append((cursor, min(start, n)))
        cursor = max(cursor, stop)
    if cursor < n:
        gaps.append((cursor, n))
    return gaps


def chunks(intervals, size: int) -> list[Interval]:
    """Cut intervals into pieces of at most ``size``, aligned to multiples of ``size``.

    Alignment makes the pieces the same whatever was done before, so a
    resumed or sharded run batches every item exactly as a single run does.
    """
    pieces = []
    for start, stop in intervals:
        while start < stop:
            end = min(stop, (start // size + 1) * size)
            pieces.append((start, end))
            start = end
    return pieces


class ProgressLog:
    """Chunks done, kept as one JSON file per rank in ``folder``, each with the digest of its stimuli if given.

    A damaged progress file (cut short, not JSON) is reported with a warning
    naming it and read as empty: what it listed is computed again.
    """

    def __init__(self, folder: str | os.PathLike, rank: int = 0):
        self.folder = Path(folder)
        self.file = self.folder / f"progress-{rank}.json"
        log = _read_log(self.file)
        self.mine = [tuple(i) for i in log["done"]]
        self.mine_digests = dict(log.get("digests", {}))

    def done(self) -> list[Interval]:
        """Union of every rank's finished chunks."""
        found = []
        for file in self.folder.glob("progress-*.json"):
            found.extend(tuple(i) for i in _read_log(file)["done"])
        return merge(found)

    def digests(self) -> dict[str, str]:
        """``"<start>-<stop>"`` -> digest of that chunk's stimuli, over every rank's log."""
        found = {}
        for file in self.folder.glob("progress-*.json"):
            found.update(_read_log(file).get("digests", {}))
        return found

    def add(self, start: int, stop: int, digest: str | None = None) -> None:
        """Record a finished chunk (atomic file replace: a crash never leaves half a log)."""
        self.mine = merge(self.mine + [(start, stop)])
        if digest is not None:
            self.mine_digests[f"{start}-{stop}"] = digest
        log = {"done": [list(i) for i in self.mine]}
        if self.mine_digests:
            log["digests"] = self.mine_digests
        write_json(self.file, log)


def create_once(folder: Path, create, ready: str = "meta.json", timeout: float = 600.0) -> None:
    """Run ``create()`` in exactly one of several processes; the others wait until ``folder/ready`` exists."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / ready).exists():
        return
    try:
        fd = os.open(folder / ".create.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        deadline = time.monotonic() + timeout
        while not (folder / ready).exists():
            if time.monotonic() > deadline:
                raise InsilicoError(
                    f"waited {timeout:.0f} s for another process to create {folder / ready}; "
                    f"if none is running, delete {folder / '.create.lock'}"
                ) from None
            time.sleep(0.05)
        return
    try:
        create()
    finally:
        os.close(fd)
        os.unlink(folder / ".create.lock")


def _read_log(file: Path) -> dict:
    """A progress file's contents; a damaged one warns (naming it) and counts as empty, so its chunks are redone."""
    if not file.exists():
        return {"done": []}
    try:
        log = persistence.read_json(file, "progress log")
        if not all(len(i) == 2 and all(isinstance(v, int) for v in i) for i in log["done"]):
            raise ValueError("no list of [start, stop] chunks")
        return log
    except (SavedFileError, ValueError, KeyError, TypeError) as e:
        if str(file) not in _WARNED:  # one warning per damaged file, however often the log is read
            _WARNED.add(str(file))
            warnings.warn(f"{file} is damaged ({type(e).__name__}: {e}); the chunks it listed are computed again",
                          stacklevel=3)
        return {"done": []}


_WARNED: set[str] = set()


# ---------------------------------------------------------------------------------------
# Sample-parallel synthesis: one result file per chunk
# ---------------------------------------------------------------------------------------
_CHUNK = re.compile(r"chunk-(\d+)-(\d+)\.pt")
_MERGE_ONLY = [False]


def map_chunks(compute: Callable[[int, int], Any], n: int, size: int, *, out: str | os.PathLike | Job | None = None,
               job: dict | Callable[[], dict] | None = None) -> list | None:
    """``[compute(a, b) for (a, b) in chunks of [0, n)]``, shared by the ranks and kept in ``out``.

    Parameters
    ----------
    compute : callable (start, stop) -> part
        The work on samples ``[start, stop)``; a part is made of tensors,
        numbers, strings, lists, dicts and insilico dataclasses (results).
    n, size : int
        Samples, and samples per chunk (chunks are ``[k*size, (k+1)*size)``).
    out : folder or Job, optional
        Keep each finished part there (``chunk-<start>-<stop>.pt``, written
        atomically, with a checksum of its contents and range); parts already
        there are not computed again. Ranks share the work only through such
        a folder: without ``out`` every process computes its own job alone.
        A damaged part (unreadable, or contents that fail their checksum:
        edited, wrongly shaped, renamed) is reported (a warning naming it)
        and computed again; ``insilico merge`` refuses it, naming it.
        A :class:`~insilico.options.Job` also gives this rank's share
        (``shard``: default the ``torch.distributed`` process group, whose
        ranks split the missing chunks evenly, then wait for each other; a
        hand-made shard takes the chunks whose number is ``rank`` modulo
        ``world`` and does not wait) and ``overwrite`` (delete the parts and
        ``job.json`` already there and start over; default False: a folder
        of another job is refused).
    job : dict, or a callable returning one, optional
        The job identity (:func:`insilico.identity.job_identity`: model,
        inputs, settings), stored as ``out/job.json`` and checked by
        :func:`insilico.identity.check` on every rerun; a plain dict is taken
        as the settings. A callable is called only when ``out`` is given.

    Returns
    -------
    list or None
        The parts in sample order (on the CPU when read from ``out``); None
        when other shards are still missing (a hand-made shard that finished
        before the others; rerun or ``insilico merge`` when all are done).

    Raises
    ------
    JobMismatchError
        ``out`` holds parts of another job (the message names each difference).
    """
    if int(size) < 1:
        raise InsilicoError(f"chunks need at least one sample each: got a chunk size of {size}")
    pieces = chunks([(0, n)], size)
    target = Job.of(out)
    if target is None:  # a process of a group (e.g. data-parallel training) may well run a job of its own
        return [compute(a, b) for a, b in pieces]
    shard = target.shard
    rank, world = rank_world(shard)
    folder = Path(target.path)
    if target.overwrite:
        start_over(folder, ["job.json", "chunk-*.pt"], shard)
    _claim(folder, job() if callable(job) else job)
    barrier()  # every rank plans from the same files before any rank adds to them
    todo = [p for p in pieces if not part_file(folder, p).exists()]
    if _MERGE_ONLY[0] and todo:
        more = "..." if len(todo) > 3 else ""
        raise InsilicoError(f"{folder} lacks {len(todo)} of {len(pieces)} chunks ({todo[:3]}{more}): run the missing "
                            "shards (the same command without --shard computes only them)")
    mine = todo[rank::world] if shard is None else [p for p in todo if (p[0] // size) % world == rank]
    barrier()
    for a, b in mine:
        save_part(part_file(folder, (a, b)), compute(a, b))
    barrier()
    if not all(part_file(folder, p).exists() for p in pieces):
        return None
    return [_load_or_redo(part_file(folder, p), lambda p=p: compute(*p)) for p in pieces]


def _load_or_redo(path: Path, compute: Callable[[], Any]) -> Any:
    """The part in ``path``. One that cannot be read (cut short, corrupt) or fails its checksum (edited,
    renamed) is reported, naming the file, and computed and written again; one that reads but is refused (not
    a chunk, a class off the allow-list, another format) is an error: a file someone put there is never
    silently replaced."""
    try:
        return load_part(path)
    except DamagedPartError as e:
        error = e
    except SavedFileError as e:
        try:
            persistence.read(path, "chunk of an out= folder")
        except SavedFileError:
            error = e  # unreadable: damaged
        else:
            raise
    damaged = isinstance(error, DamagedPartError)
    cause = error.__cause__
    what, why = (str(error), "") if damaged else (f"{path} cannot be read", f" ({type(cause).__name__}: "
                                                  f"{str(cause).strip().splitlines()[0][:160]})" if cause else "")
    if _MERGE_ONLY[0]:
        raise SavedFileError(f"{what}, so that chunk must be computed again: rerun the command without --shard{why}",
                             path) from None
    warnings.warn(f"{what}, so that chunk is computed again{why}", stacklevel=3)
    part = compute()
    save_part(path, part)
    return load_part(path)


def start_over(folder: Path, patterns: list[str], shard: tuple[int, int] | None) -> None:
    """``Job(folder, overwrite=True)``: delete the files matching ``patterns`` in ``folder`` (rank 0 of a group; the others wait).

    Hand-made shards run at different times and would delete each other's
    work, so they are refused: start over once without ``shard``.
    """
    if shard is not None and rank_world(shard)[1] > 1:
        raise InsilicoError(f"Job(folder, overwrite=True) (--force) with a hand-made shard would delete the other shards' work in "
                            f"{folder}: start over once without shard (or delete the folder), then run the shards")
    if rank_world()[0] == 0 and folder.exists():
        for pattern in patterns:
            for file in folder.glob(pattern):
                file.unlink()
    barrier()


def join_samples(parts: list, fields: tuple[str, ...], **changes):
    """One dataclass result from the results of consecutive chunks.

    ``fields`` are per-sample: tensors are concatenated along their first
    axis, lists are chained, results with a ``concat`` method use it; the
    other fields come from the first part, except those given in ``changes``.

    Example
    -------
    >>> import dataclasses, torch
    >>> @dataclasses.dataclass
    ... class R:
    ...     x: torch.Tensor
    ...     labels: list
    ...     name: str
    >>> join_samples([R(torch.ones(1), ["a"], "r"), R(torch.zeros(2), ["b", "c"], "r")], ("x", "labels"))
    R(x=tensor([1., 0., 0.]), labels=['a', 'b', 'c'], name='r')
    """
    def join(values):
        if torch.is_tensor(values[0]):
            return torch.cat(values)
        if isinstance(values[0], list):
            return [v for vs in values for v in vs]
        if values[0] is None:
            return None
        return type(values[0]).concat(values)

    joined = {name: join([getattr(p, name) for p in parts]) for name in fields}
    return dataclasses.replace(parts[0], **joined, **changes)


@contextlib.contextmanager
def merge_only():
    """Within this block :func:`map_chunks` computes nothing: it joins the parts, or fails naming the missing ones."""
    _MERGE_ONLY[0] = True
    try:
        yield
    finally:
        _MERGE_ONLY[0] = False


def done_chunks(out: str | os.PathLike) -> list[Interval]:
    """The sample ranges whose parts are in ``out``."""
    found = [_CHUNK.fullmatch(f.name) for f in Path(out).glob("chunk-*.pt")]
    return sorted((int(m[1]), int(m[2])) for m in found if m)


def part_file(folder: Path, piece: Interval) -> Path:
    """Where :func:`map_chunks` keeps the part of samples ``piece = (start, stop)`` in ``folder``."""
    return folder / f"chunk-{piece[0]:08d}-{piece[1]:08d}.pt"


def _claim(folder: Path, job: dict | None) -> None:
    """Write the job identity to ``job.json`` once; refuse a folder that holds another job's parts."""
    job = job if job and "identity" in job else job_identity(None, job)
    job = json.loads(to_json(job))  # as written to job.json
    if not (folder / "job.json").exists() and any(folder.glob("chunk-*.pt")):
        check(None, job, str(folder))  # parts whose job.json is gone: nothing says what made them
    create_once(folder, lambda: write_json(folder / "job.json", job), ready="job.json")
    check(read_identity(folder / "job.json"), job, str(folder / "job.json"))


def read_identity(path: Path) -> dict:
    """The job identity stored in ``path`` (through the one decoder); a damaged file is refused naming the fix."""
    try:
        return persistence.read_json(path, "job identity")
    except SavedFileError as e:
        raise SavedFileError(f"{e}; the work beside it cannot be checked against this run: pass out=Job(folder, overwrite=True) "
                             "(--force on the command line) to start over, or choose another out= folder", path) from None


def save_part(path: str | os.PathLike, part: Any) -> None:
    """Write ``part`` atomically with ``torch.save`` (tensors and plain data only: readable with weights_only).

    The file records the decoder's format, a kind (``"insilico.sharding:part"``), a checksum of the
    part and the file's name (its sample range; :func:`load_part` checks it) and the versions.
    """
    path = Path(path)
    tmp = _temporary(path)
    packed = pack(part)
    torch.save({"format": persistence.FORMAT, "kind": PART_KIND, "part": packed,
                "checksum": _checksum(path, packed), "versions": persistence.versions()}, tmp)
    os.replace(tmp, path)


class DamagedPartError(SavedFileError):
    """A part whose contents do not match the checksum written with it (edited, or damaged in place, or moved
    to another chunk's name): computed again like an unreadable part."""


def _checksum(path: Path, packed: Any) -> str:
    """The digest of a packed part and the chunk's file name (its sample range): a part moved to another
    range's name, or with any tensor edited, fails it."""
    return value_digest([Path(path).name, packed])


def load_part(path: str | os.PathLike) -> Any:
    """Read a part written by :func:`save_part`, through the one decoder (:mod:`insilico.persistence`).

    Raises
    ------
    SavedFileError
        The file is missing, truncated or corrupt, of a newer format, not a chunk, or names a class
        that is not on the allow-list; ``error.path`` is the file (a damaged chunk can be deleted and
        computed again). :class:`DamagedPartError` (a SavedFileError): contents that fail the checksum
        :func:`save_part` wrote (parts written before checksums are read unchecked).
    """
    blob = persistence.read(path, "chunk of an out= folder")
    if "part" not in blob and "__dataclass__" in blob:  # written before chunks recorded their format
        return unpack(blob, path)
    if blob.get("kind", PART_KIND) != PART_KIND or "part" not in blob:
        raise SavedFileError(f"{path} is not a chunk written by insilico (it holds {blob.get('kind', 'no part')!r})",
                             path)
    persistence.check_format(blob, path, persistence.FORMAT, "chunk of an out= folder", oldest=persistence.FORMAT)
    part = unpack(blob["part"], path, blob.get("versions"))  # a class off the allow-list is refused first
    if "checksum" in blob and blob["checksum"] != _checksum(path, blob["part"]):
        raise DamagedPartError(f"{path} is damaged: its contents do not match the checksum written with them "
                               "(edited, overwritten in place, or another chunk's file renamed)", path)
    return part
