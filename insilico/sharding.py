"""Splitting work across processes, and remembering what is done.

Long jobs (recording 100,000 stimuli, maximizing every unit of a network) are
cut into chunks of item ranges ``[start, stop)``. Each process ("rank") takes
every ``world``-th missing chunk and logs the chunks it finishes to a
progress file of its own (``progress-<rank>.json``), so ranks never write the
same file. What is done is the union of all progress files: a rerun, with
any number of ranks, computes only the missing chunks, and a rank that died
loses only the chunk it was on.

Ranks come from an initialised ``torch.distributed`` process group (e.g.
launched by ``torchrun``), or are given by hand as ``shard=(rank, world)``
(e.g. from a SLURM array index) when there is no process group.

Example
-------
>>> from insilico.sharding import chunks, missing
>>> missing([(0, 10), (20, 30)], 40)
[(10, 20), (30, 40)]
>>> chunks([(10, 20), (30, 40)], 4)
[(10, 12), (12, 16), (16, 20), (30, 32), (32, 36), (36, 40)]
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from .errors import InsilicoError

Interval = tuple[int, int]


def rank_world(shard: tuple[int, int] | None = None) -> tuple[int, int]:
    """This process's rank and the number of ranks: from ``shard``, else the process group, else (0, 1)."""
    if shard is not None:
        rank, world = (int(v) for v in shard)
        if not 0 <= rank < world:
            raise InsilicoError(f"shard must be (rank, world) with 0 <= rank < world, not {shard}")
        return rank, world
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


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
    """Chunks done, kept as one JSON file per rank in ``folder``."""

    def __init__(self, folder: str | os.PathLike, rank: int = 0):
        self.folder = Path(folder)
        self.file = self.folder / f"progress-{rank}.json"
        self.mine = [tuple(i) for i in _read(self.file)]

    def done(self) -> list[Interval]:
        """Union of every rank's finished chunks."""
        found = []
        for file in self.folder.glob("progress-*.json"):
            found.extend(tuple(i) for i in _read(file))
        return merge(found)

    def add(self, start: int, stop: int) -> None:
        """Record a finished chunk (atomic file replace: a crash never leaves half a log)."""
        self.mine = merge(self.mine + [(start, stop)])
        write_json(self.file, {"done": [list(i) for i in self.mine]})


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


def write_json(path: Path, data) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read(file: Path) -> list:
    return json.loads(file.read_text())["done"] if file.exists() else []
