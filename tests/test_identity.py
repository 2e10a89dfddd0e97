"""One identity for every resumable job (issue 23, failing input 2; damaged folders of input 3).

A folder knows what produced it: the model's parameters and buffers, every stimulus, every setting
that changes the result; a rerun of another job is refused naming the difference, an identical one
computes nothing, ``overwrite=True`` starts over, damaged progress files and chunks are recomputed.
"""
import copy
import json

import pytest
import torch
from torch import nn

import insilico
from insilico import Job, Probe
from insilico.errors import JobMismatchError, SavedFileError
from insilico.identity import check, job_identity, model_fingerprint
from insilico.sharding import done_chunks, map_chunks


def conv(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3)).eval()


def classifier(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()


@pytest.fixture
def x():
    return torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))


class Interrupted(torch.utils.data.Dataset):
    """Stimuli whose reading is interrupted (like Ctrl-C) at item ``stop_at``."""

    def __init__(self, images, stop_at=None):
        self.images, self.stop_at = images, stop_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        return self.images[i]


def batch_sizes(model):
    """The batch size of every forward call of ``model`` (a hook of the user's own, left in place)."""
    sizes = []
    model.register_forward_hook(lambda m, inputs, output: sizes.append(len(inputs[0])))
    return sizes


# ------------------------------------------------------------------ record_stimuli(out=)
def test_recording_with_another_model_is_refused(x, tmp_path):
    Probe(conv(0)).record_stimuli(x, ["0"], out=tmp_path, progress=False)
    with pytest.raises(JobMismatchError, match=r"model parameters differ \(0\.bias, 0\.weight, 2\.bias") as err:
        Probe(conv(1)).record_stimuli(x, ["0"], out=tmp_path, progress=False)
    assert "overwrite=True" in str(err.value) and str(tmp_path) in str(err.value)
    other = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3))
    other.load_state_dict(conv(0).state_dict())  # the same weights in another architecture
    with pytest.raises(JobMismatchError, match="model structure differs"):
        Probe(other.eval()).record_stimuli(x, ["0"], out=tmp_path, progress=False)


def test_interrupted_under_one_model_and_finished_under_another_is_refused(x, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Probe(conv(0)).record_stimuli(Interrupted(x, stop_at=6), ["0"], batch_size=4, out=tmp_path, progress=False)
    assert insilico.Recording.load(tmp_path).done == [(0, 4)]
    with pytest.raises(JobMismatchError, match="model parameters differ"):
        Probe(conv(1)).record_stimuli(Interrupted(x), ["0"], batch_size=4, out=tmp_path, progress=False)


def test_stimuli_sharing_the_first_and_last_image_are_refused(x, tmp_path):
    Probe(conv(0)).record_stimuli(x, ["0"], batch_size=4, out=tmp_path, progress=False)
    y = x.clone()
    y[5] = 1 - y[5]  # the middle of the second batch; first and last images unchanged
    with pytest.raises(JobMismatchError, match=r"\(stimuli 4\.\.7 differ\)"):
        Probe(conv(0)).record_stimuli(y, ["0"], batch_size=4, out=tmp_path, progress=False)
    with pytest.raises(JobMismatchError, match="stimuli: 10 \\(folder\\) vs 9 \\(now\\)"):
        Probe(conv(0)).record_stimuli(x[:9], ["0"], out=tmp_path, progress=False)


def test_identical_rerun_and_resume_compute_only_what_is_missing(x, tmp_path):
    model = conv(0)
    whole = Probe(model).record_stimuli(x, ["0", "2"], batch_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        Probe(model).record_stimuli(Interrupted(x, stop_at=9), ["0", "2"], batch_size=4, out=tmp_path, progress=False)
    sizes = batch_sizes(model)
    resumed = Probe(model).record_stimuli(Interrupted(x), ["0", "2"], batch_size=4, out=tmp_path, progress=False)
    assert [s for s in sizes if s > 1] == [2]  # only the last batch (8..9); size 1 is the shape survey
    assert torch.equal(resumed["2"], whole["2"])
    sizes.clear()
    again = Probe(model).record_stimuli(x, ["0", "2"], batch_size=5, out=tmp_path, progress=False)  # other batches
    assert [s for s in sizes if s > 1] == [] and torch.equal(again["0"], whole["0"])


def test_other_settings_of_a_recording_are_refused(x, tmp_path):
    Probe(conv(0)).record_stimuli(x, ["0"], out=tmp_path, progress=False)
    with pytest.raises(JobMismatchError, match="setting reduce: null \\(folder\\) vs \"mean\" \\(now\\)"):
        Probe(conv(0)).record_stimuli(x, ["0"], reduce="mean", out=tmp_path, progress=False)
    with pytest.raises(JobMismatchError, match="setting ids"):
        Probe(conv(0)).record_stimuli(x, ["0"], ids=[f"s{i}" for i in range(10)], out=tmp_path, progress=False)


def test_overwrite_starts_a_recording_over(x, tmp_path):
    Probe(conv(0)).record_stimuli(x, ["0", "2"], out=tmp_path, progress=False)
    rec = Probe(conv(1)).record_stimuli(x, ["2"], out=Job(tmp_path, overwrite=True), progress=False)
    assert rec.units == ["2"] and sorted(p.name for p in tmp_path.glob("*.npy")) == ["000_2.npy"]
    assert torch.equal(rec["2"], Probe(conv(1)).record_stimuli(x, ["2"], progress=False)["2"])
    with pytest.raises(insilico.InsilicoError, match="hand-made shard"):
        Probe(conv(1)).record_stimuli(x, ["2"], out=Job(tmp_path, shard=(0, 2), overwrite=True), progress=False)


def test_a_corrupt_progress_file_is_named_and_its_chunks_recorded_again(x, tmp_path):
    model = conv(0)
    first = Probe(model).record_stimuli(x, ["2"], batch_size=4, out=tmp_path, progress=False)
    (tmp_path / "progress-0.json").write_text('{"done": [[0, 4], [4')  # cut short
    sizes = batch_sizes(model)
    with pytest.warns(UserWarning, match="progress-0.json is damaged"):
        again = Probe(model).record_stimuli(x, ["2"], batch_size=4, out=tmp_path, progress=False)
    assert [s for s in sizes if s > 1] == [4, 4, 2] and torch.equal(again["2"], first["2"])
    assert json.loads((tmp_path / "progress-0.json").read_text())["done"] == [[0, 10]]


def test_a_cut_array_is_named_and_a_saved_copy_is_not_resumed_blindly(x, tmp_path):
    rec = Probe(conv(0)).record_stimuli(x, ["0"], out=tmp_path / "r", progress=False)
    rec.save(tmp_path / "copy")  # no stimulus digests travel with a copy: resuming into it is refused
    with pytest.raises(JobMismatchError, match="without a job identity"):
        Probe(conv(0)).record_stimuli(x, ["0"], out=tmp_path / "copy", progress=False)
    (tmp_path / "copy" / "meta.json").unlink()  # progress logs left without their metadata
    with pytest.raises(JobMismatchError, match="without a job identity"):
        Probe(conv(0)).record_stimuli(x, ["0"], out=tmp_path / "copy", progress=False)
    array = tmp_path / "r" / "000_0.npy"
    array.write_bytes(array.read_bytes()[:100])
    with pytest.raises(SavedFileError, match="000_0.npy is damaged.*overwrite=True"):
        Probe(conv(0)).record_stimuli(x, ["0"], out=tmp_path / "r", progress=False)


# ------------------------------------------------------------------ map_chunks: the design tools
def test_pgd_with_other_images_steps_or_model_is_refused(tmp_path):
    images = torch.rand(6, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    options = dict(eps=0.1, steps=3, batch_size=4, progress=False, out=tmp_path)
    first = insilico.pgd(classifier(0), images, **options)
    other = images.clone()
    other[2] = 1 - other[2]
    with pytest.raises(JobMismatchError, match=r"images 0\.\.3 differ"):
        insilico.pgd(classifier(0), other, **options)
    with pytest.raises(JobMismatchError, match="setting steps: 3 \\(folder\\) vs 4 \\(now\\)"):
        insilico.pgd(classifier(0), images, **dict(options, steps=4))
    with pytest.raises(JobMismatchError, match="model parameters differ"):
        insilico.pgd(classifier(1), images, **options)
    labels = classifier(0)(images).argmax(1)  # the labels the first run used (the model's predictions)
    labels[5] = (labels[5] + 1) % 3
    with pytest.raises(JobMismatchError, match=r"\(labels 4\.\.5 differ\)"):
        insilico.pgd(classifier(0), images, labels=labels, **options)
    redone = insilico.pgd(classifier(1), images, **dict(options, out=Job(tmp_path, overwrite=True)))
    assert torch.equal(redone.images, insilico.pgd(classifier(1), images, **dict(options, out=None)).images)
    assert not torch.equal(redone.images, first.images)


def test_metamer_with_other_references_or_model_is_refused(tmp_path):
    refs = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    options = dict(steps=2, batch_size=2, progress=False, out=tmp_path)
    insilico.metamer(conv(0), "2", refs, **options)
    with pytest.raises(JobMismatchError, match=r"references 2\.\.2 differ"):
        insilico.metamer(conv(0), "2", torch.cat([refs[:2], refs[:1]]), **options)
    with pytest.raises(JobMismatchError, match="model parameters differ"):
        insilico.metamer(conv(1), "2", refs, **options)
    with pytest.raises(JobMismatchError, match="setting lr"):
        insilico.metamer(conv(0), "2", refs, lr=0.5, **options)


def test_maximize_with_another_model_or_start_is_refused_and_overwrite_recomputes(tmp_path):
    options = dict(size=(1, 8, 8), steps=2, batch_size=2, progress=False, out=tmp_path)
    insilico.maximize(conv(0), "2", **options)
    with pytest.raises(JobMismatchError, match="model parameters differ"):
        insilico.maximize(conv(1), "2", **options)
    with pytest.raises(JobMismatchError, match="init: none \\(folder\\) vs given \\(now\\)"):
        insilico.maximize(conv(0), "2", init=torch.rand(2, 1, 8, 8), **options)
    with pytest.raises(JobMismatchError, match="setting objectives"):
        insilico.maximize(conv(0), insilico.objectives.Direction("2", torch.tensor([1.0, -1.0])), **options)
    redone = insilico.maximize(conv(1), "2", **dict(options, out=Job(tmp_path, overwrite=True)))
    assert torch.equal(redone.images, insilico.maximize(conv(1), "2", **dict(options, out=None)).images)


def test_controversial_with_another_model_is_refused(tmp_path):
    options = dict(size=(3, 2, 2), steps=2, progress=False, out=tmp_path)
    insilico.controversial([classifier(0), classifier(1)], [(0, 1)], **options)
    with pytest.raises(JobMismatchError, match="model 'model1' parameters differ"):
        insilico.controversial([classifier(0), classifier(2)], [(0, 1)], **options)


def test_a_damaged_chunk_is_named_and_computed_again(tmp_path):
    calls = []

    def compute(a, b):
        calls.append((a, b))
        return torch.arange(a, b)

    first = map_chunks(compute, 5, 2, out=tmp_path, job={"steps": 1})
    part = tmp_path / "chunk-00000002-00000004.pt"
    part.write_bytes(part.read_bytes()[:40])  # cut short
    calls.clear()
    with pytest.warns(UserWarning, match="chunk-00000002-00000004.pt cannot be read, so that chunk is computed again"):
        again = map_chunks(compute, 5, 2, out=tmp_path, job={"steps": 1})
    assert calls == [(2, 4)] and all(torch.equal(a, b) for a, b in zip(again, first))
    assert done_chunks(tmp_path) == [(0, 2), (2, 4), (4, 5)]


@pytest.mark.parametrize("edit", ["wrong_shape", "renamed"])
def test_a_chunk_whose_contents_fail_their_checksum_is_named_and_computed_again(tmp_path, edit):
    """Issue 23 (kind 3): a chunk that reads but holds a wrongly shaped tensor (or another range's part) is
    damaged: a warning names it and it is recomputed (was a raw torch.cat RuntimeError in pgd)."""
    model, images = classifier(0), torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    run = lambda: insilico.pgd(model, images, eps=0.1, steps=2, batch_size=2, progress=False, out=tmp_path)
    want = run().all_images
    first, second = sorted(tmp_path.glob("chunk-*.pt"))
    if edit == "wrong_shape":
        blob = torch.load(second, weights_only=True)
        blob["part"]["fields"]["all_images"] = torch.zeros(1, 2, 3)
        torch.save(blob, second)
    else:
        second.write_bytes(first.read_bytes())  # chunk 0-2's part under the name of chunk 2-4
    from insilico.sharding import merge_only

    with merge_only(), pytest.raises(SavedFileError, match=f"{second.name} is damaged.*without --shard"):
        run()  # insilico merge computes nothing: it names the chunk
    with pytest.warns(UserWarning, match=f"{second.name} is damaged: its contents do not match the checksum.*"
                                         "so that chunk is computed again"):
        got = run().all_images
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    run()  # rewritten: read without a warning (warnings are errors in the suite)


def test_a_newer_job_identity_is_called_newer_naming_job_json(tmp_path):
    """Issue 23 (kind 3): job.json with identity 99 names job.json and the versions, and does not say "older"."""
    map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path)
    data = json.loads((tmp_path / "job.json").read_text())
    (tmp_path / "job.json").write_text(json.dumps(dict(data, identity=99)))
    with pytest.raises(JobMismatchError, match=r"job\.json holds work with a job identity of version 99, made by a "
                                               r"newer insilico \(this one reads version 1\)") as e:
        map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path)
    assert "older insilico" not in str(e.value)  # ("folder" does contain "older")


def test_a_folder_without_identity_is_refused(tmp_path):
    map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path)
    (tmp_path / "job.json").write_text(json.dumps({"tool": "pgd", "n": 4}))  # as older versions wrote it
    with pytest.raises(JobMismatchError, match="without a job identity"):
        map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path)
    assert map_chunks(lambda a, b: b - a, 4, 2, out=Job(tmp_path, overwrite=True)) == [2, 2]
    (tmp_path / "job.json").unlink()  # parts left without their job.json
    with pytest.raises(JobMismatchError, match="without a job identity"):
        map_chunks(lambda a, b: b - a, 4, 2, out=tmp_path)


# ------------------------------------------------------------------ the fingerprint itself
def test_fingerprint_covers_buffers_dtypes_and_structure():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    base = model_fingerprint(model)
    assert model_fingerprint(copy.deepcopy(model)) == base  # content, not identity of the objects
    moved = copy.deepcopy(model)
    moved[1].running_var[0] = 2.0
    assert model_fingerprint(moved)["tensors"]["1.running_var"] != base["tensors"]["1.running_var"]
    half = model_fingerprint(copy.deepcopy(model).to(torch.bfloat16))
    assert half["digest"] != base["digest"] and half["tensors"]["0.weight"].startswith("bfloat16[2,1,3,3]:")
    with pytest.raises(JobMismatchError, match=r"tensor shapes or dtypes differ \(0\.bias: float32\[2\] vs bfloat16"):
        check(job_identity(model), job_identity(copy.deepcopy(model).to(torch.bfloat16)), "here")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_fingerprint_is_the_same_on_the_gpu():
    model = conv(0)
    assert model_fingerprint(copy.deepcopy(model).cuda())["digest"] == model_fingerprint(model)["digest"]


# ------------------------------------------------------------------ gallery sites
def test_a_gallery_site_keys_on_the_model_content_not_the_weights_path(tmp_path):
    from insilico.gallery.build import _check_site
    from insilico.gallery.settings import GallerySettings

    _check_site(tmp_path, GallerySettings(weights="a.pt"), conv(0))
    _check_site(tmp_path, GallerySettings(weights="copy-of-a.pt"), conv(0))  # the same weights elsewhere: reused
    with pytest.raises(JobMismatchError, match="model parameters differ"):
        _check_site(tmp_path, GallerySettings(weights="a.pt"), conv(1))  # new weights at the same path: refused
    _check_site(tmp_path, GallerySettings(weights="a.pt"), conv(1), overwrite=True)
    assert json.loads((tmp_path / "job.json").read_text())["model"]["model"]["digest"] == \
        model_fingerprint(conv(1))["digest"]
    (tmp_path / "job.json").unlink()  # a site built before job identities
    with pytest.raises(JobMismatchError, match="without a job identity"):
        _check_site(tmp_path, GallerySettings(weights="a.pt"), conv(1))


def test_cli_refuses_another_run_in_out_and_force_starts_over(tmp_path, capsys):
    from insilico.cli import main

    args = ["maximize", "--units", "classifier.6[1]", "--steps", "2", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    png = tmp_path / "classifier.6_1.png"
    before = png.read_bytes()
    capsys.readouterr()
    assert main([*args[:4], "3", *args[5:]]) == 2
    assert "setting steps: 2 (folder) vs 3 (now)" in capsys.readouterr().err
    assert main([*args[:4], "3", *args[5:], "--force"]) == 0
    assert "1 computed, 0 already" in capsys.readouterr().out and png.read_bytes() != before


def test_large_tensors_are_hashed_in_blocks_and_every_byte_counts():
    from insilico.identity import digest

    x = torch.rand(2, 3, 512, 512)  # 6 MiB: two blocks of the hash tree
    y = x.clone()
    y[1, 2, 511, 511] += 1e-3  # the last element, in the second block
    assert digest(x) == digest(x.clone()) == digest(x.contiguous(memory_format=torch.channels_last))
    assert digest(x) != digest(y) and digest(x) != digest(x.reshape(6, 512, 512))  # the shape counts too


# ------------------------------------------------------------------ module settings (issue 23, fault 4)
def _settings_net(slope: float = 0.1, pad: int = 0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=pad), nn.LeakyReLU(slope), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


@pytest.mark.parametrize("first,second,module", [(dict(slope=0.1), dict(slope=0.3), "1"),
                                                 (dict(pad=0), dict(pad=1), "0")],
                         ids=["leaky_relu_slope", "conv_padding"])
def test_record_folder_refuses_a_model_with_other_module_settings(tmp_path, first, second, module):
    """Same parameters and buffers, another module setting: the folder is refused naming the module."""
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a, b = _settings_net(**first), _settings_net(**second)
    assert model_fingerprint(a)["tensors"] == model_fingerprint(b)["tensors"]
    Probe(a).record_stimuli(x, ["2"], out=tmp_path / "o", progress=False, batch_size=2)
    with pytest.raises(JobMismatchError, match=rf"module settings differ \({module}\)"):
        Probe(b).record_stimuli(x, ["2"], out=tmp_path / "o", progress=False, batch_size=2)
    again = Probe(_settings_net(**first)).record_stimuli(x, ["2"], out=tmp_path / "o", progress=False, batch_size=2)
    assert again.array("2").shape == (4, 4, 1, 1)  # the same settings: the folder is reused


class _Scaled(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


class _Shifted(_Scaled):
    def forward(self, x):
        return x + self.scale


def test_module_settings_cover_plain_attributes_and_user_forward_code():
    base = model_fingerprint(nn.Sequential(_Scaled(2.0)))
    assert model_fingerprint(nn.Sequential(_Scaled(2.0)))["digest"] == base["digest"]  # deterministic
    assert model_fingerprint(nn.Sequential(_Scaled(3.0)))["modules"]["0"] != base["modules"]["0"]
    shifted = model_fingerprint(nn.Sequential(_Shifted(2.0)))  # another forward (and class)
    assert shifted["modules"]["0"] != base["modules"]["0"]
    trained = nn.Sequential(_Scaled(2.0)).train()
    trained.note = object()  # an object attribute (printed with its address) is left out: still deterministic
    assert model_fingerprint(trained)["digest"] == base["digest"]
