"""Sample-parallel synthesis over gloo ranks (CPU): equal to one process, and resumable after a dead rank."""
import importlib
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import insilico
from insilico import InsilicoError, Job
from insilico.sharding import done_chunks, map_chunks

maximize_module = importlib.import_module("insilico.design.maximize")

OPTIONS = dict(size=12, steps=6, batch_size=2, progress=False, seed=3)  # 8 units: 4 chunks of 2


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3)).eval()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same(a, b):
    assert a.labels == b.labels
    assert torch.equal(a.images, b.images)  # bit-identical
    assert torch.equal(a.trace.nan_to_num(-1.0), b.trace.nan_to_num(-1.0))
    assert a.seeds == b.seeds and torch.equal(a.steps, b.steps)


class DiesOnSecondChunk(maximize_module.Synthesis):
    """A rank that crashes while computing its second chunk."""
    made = 0

    def run(self, *args, **kwargs):
        DiesOnSecondChunk.made += 1
        if DiesOnSecondChunk.made == 2:
            raise RuntimeError("rank killed")
        return super().run(*args, **kwargs)


def _worker(rank, world, folder, port, die_rank):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if rank == die_rank:
            maximize_module.Synthesis = DiesOnSecondChunk
        result = insilico.maximize(make_model(), "2", out=folder, **OPTIONS)
        torch.save(result.images, os.path.join(folder, f"returned-{rank}.pt"))
        if rank == 0:  # without out=, a rank of a group works alone, with no barrier (so no wait for rank 1)
            own = insilico.Probe(make_model()).record_stimuli(torch.rand(5, 3, 12, 12), "0", progress=False)
            alone = insilico.maximize(make_model(), "2[0]", size=12, steps=2, progress=False)
            assert own.complete and len(own) == 5 and len(alone) == 1
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    return insilico.maximize(make_model(), "2", **OPTIONS)


def test_two_gloo_ranks_equal_one_process(tmp_path, single):
    mp.spawn(_worker, args=(2, str(tmp_path), free_port(), None), nprocs=2, join=True)
    assert done_chunks(tmp_path) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    for rank in (0, 1):  # every rank returns the whole result
        assert torch.equal(torch.load(tmp_path / f"returned-{rank}.pt"), single.images)
    assert_same(insilico.maximize(make_model(), "2", out=tmp_path, **OPTIONS), single)  # all read back, none computed


def test_a_dead_rank_loses_only_its_chunk_and_the_rerun_computes_only_what_is_missing(tmp_path, single, monkeypatch):
    with pytest.raises(Exception, match="rank killed"):
        mp.spawn(_worker, args=(2, str(tmp_path), free_port(), 1), nprocs=2, join=True)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("chunk-*.pt")}
    assert (2, 4) in done_chunks(tmp_path)  # rank 1's first chunk survived
    assert (6, 8) not in done_chunks(tmp_path)  # the one it died on did not
    made = []

    class Counting(maximize_module.Synthesis):
        def __init__(self, *args, labels, **kwargs):
            made.append(list(labels))
            super().__init__(*args, labels=labels, **kwargs)

    monkeypatch.setattr(maximize_module, "Synthesis", Counting)
    rerun = insilico.maximize(make_model(), "2", out=tmp_path, **OPTIONS)
    assert_same(rerun, single)
    assert len(made) == 4 - len(before) and ["2[6]", "2[7]"] in made  # only the missing chunks
    assert all(p.stat().st_mtime_ns == before[p.name] for p in tmp_path.glob("chunk-*.pt") if p.name in before)


def test_hand_made_shards_fill_one_folder(tmp_path, single):
    first = insilico.maximize(make_model(), "2", out=Job(tmp_path, shard=(0, 2)), **OPTIONS)
    assert first is None and done_chunks(tmp_path) == [(0, 2), (4, 6)]  # waits for shard 1
    assert_same(insilico.maximize(make_model(), "2", out=Job(tmp_path, shard=(1, 2)), **OPTIONS), single)


def test_a_folder_of_another_run_is_refused(tmp_path):
    map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path, job={"steps": 5})
    with pytest.raises(InsilicoError, match="another run .*steps"):
        map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path, job={"steps": 6})
    with pytest.raises(TypeError, match="shard"):  # a share is out=Job(folder, shard=...), never without a folder
        map_chunks(lambda a, b: b - a, 4, 2, shard=(0, 2))
    with pytest.raises(InsilicoError, match="chunk size of 0"):  # not an endless loop
        map_chunks(lambda a, b: b - a, 4, 0)


def test_pgd_and_controversial_shards_equal_one_run(tmp_path):
    """Equal by construction: the one-process run goes through the same chunks (same samples, same batch shapes),
    so each sample sees bit-identical tensors whatever the CPU's kernels (issue 15, failing input 14: the
    one-process controversial run used to optimise every pair in one batch and differed by 6e-8 on AVX512)."""
    from insilico.design.adversarial import pgd
    from insilico.design.controversial import controversial

    torch.manual_seed(0)
    net, other = (nn.Sequential(nn.Flatten(), nn.Linear(12, 3)) for _ in range(2))
    x = torch.rand(7, 3, 2, 2)
    kw = dict(eps=[0.1, 0.3], steps=5, batch_size=3, progress=False)
    plain = pgd(net, x, **kw)
    assert pgd(net, x, out=Job(tmp_path / "pgd", shard=(1, 2)), **kw) is None
    shared = pgd(net, x, out=Job(tmp_path / "pgd", shard=(0, 2)), **kw)
    assert torch.equal(shared.all_images, plain.all_images) and torch.equal(shared.all_success, plain.all_success)

    pairs = [(0, 1), (1, 2), (2, 0), (0, 2), (1, 0)]
    kw = dict(seeds=2, size=(3, 2, 2), steps=7, progress=False, batch_size=2)
    plain = controversial([net, other], pairs, **kw)
    assert controversial([net, other], pairs, out=Job(tmp_path / "c", shard=(0, 2)), **kw) is None
    shared = controversial([net, other], pairs, out=Job(tmp_path / "c", shard=(1, 2)), **kw)
    assert shared.labels == plain.labels and torch.equal(shared.images, plain.images)
    assert torch.equal(shared.score, plain.score) and shared.settings["pairs"] == plain.settings["pairs"]


def test_controversial_shards_of_several_model_pairs_equal_one_run_in_the_same_order(tmp_path):
    from insilico.design.controversial import controversial

    torch.manual_seed(1)
    models = {name: nn.Sequential(nn.Flatten(), nn.Linear(12, 4)) for name in ("a", "b", "c")}  # 3 model pairs
    pairs = [(0, 1), (1, 2), (3, 0)]
    kw = dict(seeds=2, size=(3, 2, 2), steps=8, lr=0.2, stop_at=0.4, progress=False, batch_size=2)
    plain = controversial(models, pairs, **kw)
    assert plain.labels[:3] == ["a:0|b:1#0", "a:0|b:1#1", "a:1|b:2#0"]  # (model pair, class pair, seed)
    assert plain.labels[-1] == "b:3|c:0#1" and len(plain) == 3 * 3 * 2
    stopped = plain.synthesis.steps < 8
    assert bool(stopped.any()) and not bool(stopped.all())  # some samples stopped early, others ran on
    for rank in (2, 0, 1):  # shards finish in any order
        shared = controversial(models, pairs, out=Job(tmp_path, shard=(rank, 3)), **kw)
    assert shared.labels == plain.labels and torch.equal(shared.images, plain.images)
    assert torch.equal(shared.score, plain.score) and torch.equal(shared.synthesis.steps, plain.synthesis.steps)
    assert len(done_chunks(tmp_path)) == 5  # 18 samples, 4 per chunk (2 combinations x 2 seeds)
    # pgd with early stopping: the shards equal the one-process run too
    from insilico.design.adversarial import pgd

    net = models["a"]
    x = torch.rand(5, 3, 2, 2)
    kw = dict(eps=0.2, steps=8, batch_size=2, progress=False)
    plain = pgd(net, x, **kw)
    assert bool((plain.steps_taken < 8).any())  # early stops inside the chunks
    for rank in (1, 0):
        shared = pgd(net, x, out=Job(tmp_path / "pgd", shard=(rank, 2)), **kw)
    assert torch.equal(shared.images, plain.images) and torch.equal(shared.steps_taken, plain.steps_taken)


def test_cli_shards_and_merge_write_what_one_run_writes(tmp_path, capsys):
    from insilico.cli import main

    args = ["maximize", "--units", "features.0[0]", "features.0[1]", "features.0[2]", "--steps", "3",
            "--batch-size", "2", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    assert main(args + ["--out", str(tmp_path / "two"), "--shard", "0/2"]) == 0
    assert not (tmp_path / "two" / "manifest.json").exists()  # waits for shard 1
    assert main(args + ["--out", str(tmp_path / "two"), "--shard", "1/2"]) == 0  # the last shard writes the outputs
    for written in [*(tmp_path / "two").glob("*.png"), tmp_path / "two" / "manifest.json"]:
        written.unlink()
    assert main(["merge", str(tmp_path / "two")]) == 0  # ... and so does merge, computing nothing
    one, two = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert one["outputs"] == two["outputs"] and len(one["outputs"]) == 3
    for entry in one["outputs"]:
        assert (tmp_path / "one" / entry["file"]).read_bytes() == (tmp_path / "two" / entry["file"]).read_bytes()
    (tmp_path / "two" / "parts" / "chunk-00000002-00000003.pt").unlink()
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "two")]) == 2
    assert "lacks 1 of 2 chunks" in capsys.readouterr().err


def test_metamer_shards_equal_one_run_and_keep_the_job_order(tmp_path):
    from insilico.design.metamers import metamer

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3))
    refs = torch.rand(5, 1, 9, 9)
    kw = dict(steps=15, n_seeds=2, batch_size=2, progress=False)
    plain = metamer(net, ["0", "2"], refs, **kw)
    assert metamer(net, ["0", "2"], refs, out=Job(tmp_path, shard=(1, 2)), **kw) is None
    shared = metamer(net, ["0", "2"], refs, out=Job(tmp_path, shard=(0, 2)), **kw)
    assert torch.equal(shared.images, plain.images) and torch.equal(shared.final_errors, plain.final_errors)
    whole = metamer(net, ["0", "2"], refs, steps=15, n_seeds=2, progress=False)  # one batch, no chunks
    assert shared.labels == whole.labels and shared.reference_index == whole.reference_index
    assert torch.equal(shared.references, whole.references)
    assert torch.allclose(shared.images, whole.images, atol=1e-4)  # same start noise, per-sample L-BFGS
