import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from insilico import InsilicoError, Probe, Recording
from insilico.options import Job
from insilico.sharding import chunks, merge, missing, rank_world

UNITS = ["0", "2[1]"]


def make_model():
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3)).eval()


def stimuli():
    return torch.rand(45, 1, 10, 10, generator=torch.Generator().manual_seed(2))


def test_interval_arithmetic():
    assert merge([(5, 8), (0, 3), (3, 4), (7, 10)]) == [(0, 4), (5, 10)]
    assert missing([(0, 4), (5, 10)], 12) == [(4, 5), (10, 12)]
    assert missing([], 3) == [(0, 3)]
    assert chunks([(3, 17)], 5) == [(3, 5), (5, 10), (10, 15), (15, 17)]
    assert rank_world() == (0, 1) and rank_world((1, 3)) == (1, 3)
    with pytest.raises(InsilicoError, match="rank < world"):
        rank_world((3, 3))


def test_manual_shards_fill_one_folder_like_a_single_run(tmp_path):
    single = Probe(make_model()).record_stimuli(stimuli(), UNITS, batch_size=8, out=tmp_path / "one", progress=False)
    first = Probe(make_model()).record_stimuli(stimuli(), UNITS, batch_size=8, out=Job(tmp_path / "two", shard=(0, 2)),
                                               progress=False)
    assert not first.complete and len(first) == 24  # chunks 0, 2, 4 of 8, 8, 8, 8, 8, 5
    both = Probe(make_model()).record_stimuli(stimuli(), UNITS, batch_size=8, out=Job(tmp_path / "two", shard=(1, 2)),
                                              progress=False)
    assert both.complete
    for unit in UNITS:
        assert np.array_equal(both.array(unit), single.array(unit))
    with pytest.raises(TypeError, match="shard"):  # no former name lingers: a share is out=Job(folder, shard=...)
        Probe(make_model()).record_stimuli(stimuli(), UNITS, progress=False, shard=(0, 2))


def test_a_dead_rank_loses_only_its_chunk(tmp_path):
    class DiesAt(torch.utils.data.Dataset):
        def __init__(self, at):
            self.data, self.at = stimuli(), at

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            if i == self.at:
                raise RuntimeError("rank killed")
            return self.data[i]

    single = Probe(make_model()).record_stimuli(stimuli(), UNITS, batch_size=8, out=tmp_path / "one", progress=False)
    Probe(make_model()).record_stimuli(DiesAt(None), UNITS, batch_size=8, out=Job(tmp_path / "r", shard=(0, 2)), progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        Probe(make_model()).record_stimuli(DiesAt(27), UNITS, batch_size=8, out=Job(tmp_path / "r", shard=(1, 2)), progress=False)
    partial = Recording.load(tmp_path / "r")
    assert partial.done == [(0, 24), (32, 40)]  # rank 1 finished chunk (8, 16) only
    assert np.array_equal(partial.indices[:24], np.arange(24))
    rerun = Probe(make_model()).record_stimuli(DiesAt(None), UNITS, batch_size=8, out=tmp_path / "r", progress=False)
    for unit in UNITS:
        assert np.array_equal(rerun.array(unit), single.array(unit))


def _worker(rank, world, folder, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        rec = Probe(make_model()).record_stimuli(stimuli(), UNITS, batch_size=8, out=folder, progress=False)
        assert rec.complete
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    torch.set_num_threads(1)
    single = Probe(make_model()).record_stimuli(stimuli(), UNITS, batch_size=8, out=tmp_path / "one", progress=False)
    port = 29500 + os.getpid() % 1000
    mp.spawn(_worker, args=(2, str(tmp_path / "ddp"), port), nprocs=2, join=True)
    shared = Recording.load(tmp_path / "ddp")
    assert shared.complete
    assert sorted(p.name for p in (tmp_path / "ddp").glob("progress-*.json")) == ["progress-0.json", "progress-1.json"]
    for unit in UNITS:
        assert np.array_equal(shared.array(unit), single.array(unit))  # bit-identical


def test_merge_of_missing_chunks_lists_them_with_dots_only_when_cut(tmp_path):
    from insilico import sharding

    out = tmp_path / "out"
    sharding.map_chunks(lambda a, b: torch.arange(a, b), 10, 2, out=out)
    (out / "chunk-00000000-00000002.pt").unlink()
    with sharding.merge_only(), pytest.raises(InsilicoError, match=r"lacks 1 of 5 chunks \(\[\(0, 2\)\]\): run"):
        sharding.map_chunks(lambda a, b: torch.arange(a, b), 10, 2, out=out)
    for name in ("00000002-00000004", "00000004-00000006", "00000006-00000008"):
        (out / f"chunk-{name}.pt").unlink()
    with sharding.merge_only(), pytest.raises(InsilicoError, match=r"lacks 4 of 5 chunks \(\[.*\(4, 6\)\]\.\.\.\)"):
        sharding.map_chunks(lambda a, b: torch.arange(a, b), 10, 2, out=out)
