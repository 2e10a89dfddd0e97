import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import no_insilico_hooks
from insilico import InsilicoError, Probe, Recording, StimulusError, UnitError

UNITS = ["0", "1[2]", "3[0,1,1]"]


@pytest.fixture
def net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(4, 2, 3)).eval()


@pytest.fixture
def stimuli():
    return torch.rand(53, 1, 9, 9, generator=torch.Generator().manual_seed(1))


class Flaky(torch.utils.data.Dataset):
    """A dataset that is interrupted (like Ctrl-C) when it reaches item ``stop_at``."""

    def __init__(self, images, stop_at=None):
        self.images, self.stop_at = images, stop_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        return self.images[i], 0


def test_in_memory_matches_one_big_forward(net, stimuli):
    rec = Probe(net).record_stimuli(stimuli, UNITS, batch_size=8, progress=False)
    with Probe(net).record(*UNITS) as live:
        net(stimuli)
    for unit in UNITS:
        assert torch.allclose(rec[unit], live[unit], atol=1e-6)
    assert len(rec) == 53 and rec.ids == list(range(53)) and rec.complete
    assert no_insilico_hooks(net)


def test_on_disk_equals_in_memory_and_loads_lazily(net, stimuli, tmp_path):
    memory = Probe(net).record_stimuli(stimuli, UNITS, batch_size=10, progress=False)
    disk = Probe(net).record_stimuli(stimuli, UNITS, batch_size=10, out=tmp_path / "rec", progress=False)
    loaded = Recording.load(tmp_path / "rec")
    for unit in UNITS:
        assert np.array_equal(memory.array(unit), loaded.array(unit))
        assert isinstance(loaded.array(unit), np.memmap)
        assert torch.equal(disk[unit], memory[unit])
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert [u["unit"] for u in meta["units"]] == UNITS and meta["n_stimuli"] == 53
    assert meta["units"][0]["shape"] == [53, 4, 7, 7]


def test_interrupted_recording_resumes_to_identical_arrays(net, stimuli, tmp_path):
    whole = Probe(net).record_stimuli(stimuli, UNITS, batch_size=10, out=tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):
        Probe(net).record_stimuli(Flaky(stimuli, stop_at=37), UNITS, batch_size=10, out=tmp_path / "cut", progress=False)
    partial = Recording.load(tmp_path / "cut")
    assert len(partial) == 30 and not partial.complete
    assert torch.equal(partial["0"], whole["0"][:30])
    assert no_insilico_hooks(net)
    resumed = Probe(net).record_stimuli(Flaky(stimuli), UNITS, batch_size=10, out=tmp_path / "cut", progress=False)
    assert resumed.complete
    for unit in UNITS:
        assert np.array_equal(resumed.array(unit), whole.array(unit))


def test_other_stimuli_in_the_same_folder_are_refused(net, stimuli, tmp_path):
    Probe(net).record_stimuli(stimuli, UNITS, out=tmp_path / "r", progress=False)
    with pytest.raises(InsilicoError, match="another out"):
        Probe(net).record_stimuli(stimuli.flip(0), UNITS, out=tmp_path / "r", progress=False)
    with pytest.raises(InsilicoError, match="another out"):
        Probe(net).record_stimuli(stimuli, ["0"], out=tmp_path / "r", progress=False)


def test_bad_stimuli_fail_clearly(net, stimuli):
    bad = stimuli.clone()
    bad[20, 0, 3, 3] = float("nan")
    with pytest.raises(StimulusError, match="NaN"):
        Probe(net).record_stimuli(bad, UNITS, batch_size=8, progress=False)
    with pytest.raises(StimulusError, match="empty"):
        Probe(net).record_stimuli(stimuli[:0], UNITS, progress=False)
    with pytest.raises(StimulusError, match="cannot read stimuli"):
        Probe(net).record_stimuli(object(), UNITS, progress=False)
    assert no_insilico_hooks(net)


def test_spatial_reduction_at_record_time(net, stimuli):
    full = Probe(net).record_stimuli(stimuli, ["0"], progress=False)["0"]
    for how, expected in [("mean", full.mean(dim=(2, 3))), ("max", full.amax(dim=(2, 3))), ("center", full[:, :, 3, 3])]:
        rec = Probe(net).record_stimuli(stimuli, ["0", "0[1]"], reduce=how, progress=False)
        assert torch.allclose(rec["0"], expected, atol=1e-6)
        assert torch.allclose(rec["0[1]"], expected[:, 1], atol=1e-6)
    with pytest.raises(Exception, match="only pick channels"):
        Probe(net).record_stimuli(stimuli, ["0[1,2,2]"], reduce="mean", progress=False)


def test_reductions_per_unit_mix_a_token_layer_and_a_vector():
    pytest.importorskip("torchvision")
    from contract_tools import vit
    from insilico.layout import centre_token

    model, x = vit().eval(), torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    block, head = "encoder.layers.encoder_layer_0", "heads.head"
    probe = Probe(model)
    whole = probe.record_stimuli(x, [block, head], progress=False)
    with pytest.raises(UnitError, match="heads.head gives .* layout 'vector'"):  # one reduction for all: refused
        probe.record_stimuli(x, [block, head], reduce="center", progress=False)
    # a default applies where it is meaningful: the token layer's centre patch, the logits whole
    rec = probe.record_stimuli(x, [block, head], reduce={"*": "center"}, batch_size=2, progress=False)
    assert rec.meta["reduce"] == {block: "center", head: None}
    centre = centre_token(whole[block].shape[1])
    assert centre == 4  # CLS, then a 2x2 grid: row 1, column 1 is token 1 + 1 * 2 + 1
    assert torch.allclose(rec[block], whole[block][:, centre], atol=1e-5)
    assert torch.allclose(rec[head], whole[head], atol=1e-5)
    ids = rec.neuroids()["neuroid_id"]
    assert ids[0] == f"{block}#0" and ids[-1] == f"{head}[3]"  # the reduction named only where it was made
    per_unit = probe.record_stimuli(x, [block, head], reduce={block: "mean"}, progress=False)
    assert torch.allclose(per_unit[block], whole[block][:, 1:].mean(1), atol=1e-5)  # the patches, CLS dropped
    assert torch.allclose(per_unit[head], whole[head], atol=1e-5)
    with pytest.raises(UnitError, match="heads.head gives .* layout 'vector'"):  # named for a vector: refused
        probe.record_stimuli(x, [block, head], reduce={"*": "mean", head: "mean"}, progress=False)
    with pytest.raises(UnitError, match="reduce names 'heads'"):
        probe.record_stimuli(x, [block, head], reduce={"heads": "mean"}, progress=False)
    with pytest.raises(InsilicoError, match="not 'median'"):
        probe.record_stimuli(x, [block, head], reduce={block: "median"}, progress=False)


def test_model_mode_restored_and_params_kept(net, stimuli, tmp_path):
    net.train()
    params = [{"contrast": float(i) / 53} for i in range(53)]
    stim_set = SimpleNamespace(images=stimuli, params=params)
    a = Probe(net).record_stimuli(stim_set, ["2"], progress=False, out=tmp_path / "p")
    b = Probe(net).record_stimuli(stimuli, ["2"], progress=False)
    assert net.training  # restored
    assert torch.equal(a["2"], b["2"])  # dropout was off: eval mode while recording
    assert Recording.load(tmp_path / "p").params[10] == {"contrast": 10 / 53}


def test_recurrent_steps_recorded(recurrent):
    x = torch.rand(6, 1, 6, 6)
    rec = Probe(recurrent).record_stimuli(x, ["act@0", "act@3"], batch_size=4, progress=False)
    with Probe(recurrent).record("act") as live:
        recurrent(x)
    assert torch.allclose(rec["act@3"], live.steps("act")[:, 3], atol=1e-6)


def test_streaming_memory_is_bounded_by_the_batch(net, tmp_path):
    class Lazy(torch.utils.data.Dataset):
        def __len__(self):
            return 400

        def __getitem__(self, i):
            return torch.full((1, 9, 9), i / 400)

    rec = Probe(net).record_stimuli(Lazy(), ["0"], batch_size=50, out=tmp_path / "lazy", progress=False)
    assert rec["0"].shape == (400, 4, 7, 7)
    assert (tmp_path / "lazy" / "000_0.npy").stat().st_size >= 400 * 4 * 7 * 7 * 4


# ------------------------------------------------------------------ issue 15, inputs 8 and 12
@pytest.mark.parametrize("images, needle", [
    ((torch.rand(4, 3, 8, 8) * 255).to(torch.uint8), "images.float\\(\\) / 255"),
    (torch.rand(4, 3, 8, 8) * 255, "pixel space \\[0, 1\\]"),
])
def test_record_stimuli_gates_uint8_and_0_255_images(images, needle):
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(StimulusError, match=needle):
        Probe(m).record_stimuli(images, ["1"], progress=False)
    assert all(not mod._forward_hooks for mod in m.modules())


class TwoScales(nn.Module):
    """One pooling module applied at two resolutions in one forward pass."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.pool(x))


def test_steps_of_differently_shaped_calls_name_the_steps_and_shapes():
    m = TwoScales()
    with Probe(m).record("pool") as rec:
        m(torch.rand(2, 3, 8, 8))
    with pytest.raises(UnitError, match=r"@0: \(3, 4, 4\), @1: \(3, 2, 2\).*probe.record\('pool@0', 'pool@1'\)"):
        rec.steps("pool")
    with Probe(m).record("pool@0", "pool@1") as rec:  # the way the message names
        m(torch.rand(2, 3, 8, 8))
    assert tuple(rec["pool@0"].shape) == (2, 3, 4, 4) and tuple(rec["pool@1"].shape) == (2, 3, 2, 2)


def test_batches_is_the_one_loop_gated_and_on_the_models_dtype():
    from insilico.recording import batches

    x = torch.rand(5, 1, 4, 4)
    got = list(batches(x, 2, dtype=torch.float64))
    assert [(s, len(b)) for s, b in got] == [(0, 2), (2, 2), (4, 1)]
    assert all(b.dtype == torch.float64 for _, b in got)
    assert torch.equal(torch.cat([b for _, b in got]).float(), x)
    with pytest.raises(StimulusError, match="empty"):
        next(batches(torch.rand(0, 1, 4, 4), 2))
    with pytest.raises(InsilicoError, match="batch_size"):
        next(batches(x, 0))
    with pytest.raises(StimulusError, match="NaN"):
        list(batches(torch.full((2, 1, 4, 4), float("nan")), 1))


def test_recording_saves_loads_concatenates_and_plots(tmp_path):
    import matplotlib.pyplot as plt

    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
    probe = Probe(m)
    x = torch.rand(7, 1, 6, 6)
    whole = probe.record_stimuli(x, ["1", "0[2]"], batch_size=3, progress=False)
    parts = [probe.record_stimuli(x[:4], ["1", "0[2]"], progress=False, ids=range(4)),
             probe.record_stimuli(x[4:], ["1", "0[2]"], progress=False, ids=range(4, 7))]
    joined = Recording.concat(parts)
    assert joined.ids == list(range(7))
    for unit in ("1", "0[2]"):
        torch.testing.assert_close(joined[unit], whole[unit])
    back = Recording.load(joined.save(tmp_path / "rec").path)
    torch.testing.assert_close(back["1"], whole["1"])
    assert set(back.versions) >= {"insilico", "torch"}
    other = probe.record_stimuli(x, ["1"], progress=False)
    with pytest.raises(InsilicoError, match="different units"):
        Recording.concat([whole, other])
    fig, ax = plt.subplots()
    assert whole.plot("0[2]", ax=ax) is fig
    plt.close(fig)


def test_recordings_of_other_settings_or_models_are_not_joined(tmp_path):
    """Before: Recording.concat joined a mean-pooled and a max-pooled recording (or two models' recordings on
    disk) and kept the first one's settings: half the rows were not what meta said, without a word."""
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = torch.rand(6, 3, 8, 8)
    first = Probe(a).record_stimuli(x[:3], ["1"], reduce="mean", progress=False, ids=range(3))
    assert len(Recording.concat([first, Probe(a).record_stimuli(x[3:], ["1"], reduce="mean", progress=False,
                                                                   ids=range(3, 6), batch_size=2)])) == 6
    with pytest.raises(InsilicoError, match=r"recording 1 .*reduce: \"mean\" vs \"max\""):
        Recording.concat([first, Probe(a).record_stimuli(x[3:], ["1"], reduce="max", progress=False)])
    with pytest.raises(InsilicoError, match=r"recording 1 .*shape of 1: \[4\] vs \[4, 6, 6\]"):
        Recording.concat([first, Probe(a).record_stimuli(x[3:], ["1"], progress=False)])
    on_disk = [Probe(m).record_stimuli(x[k:k + 3], ["1"], reduce="mean", progress=False, out=tmp_path / f"r{k}")
               for m, k in ((a, 0), (b, 3))]
    with pytest.raises(InsilicoError, match=r"recording 1 .*model parameters differ"):
        Recording.concat(on_disk)


def test_a_half_recording_that_overflows_is_refused_not_stored_as_nan():
    """Before: a float16 model (or precision="fp16") whose responses overflow 65504 stored inf / NaN in the
    recording without a word, where the dtype contract says a half run gives finite values or NumericsError."""
    from insilico.errors import NumericsError

    conv = nn.Conv2d(3, 2, 3)
    with torch.no_grad():
        conv.weight.fill_(1e4)
    net = nn.Sequential(conv, nn.ReLU())
    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(Probe(net).record_stimuli(x, ["1"], progress=False)["1"]).all()   # float32: finite
    with pytest.raises(NumericsError, match=r"responses of 1 is NaN or inf on stimuli 0\.\.2.*precision='fp32'"):
        Probe(net).record_stimuli(x, ["1"], precision="fp16", progress=False)
    with pytest.raises(NumericsError, match=r"responses of 1 is NaN or inf .*torch.float16 model"):
        Probe(net.half()).record_stimuli(x, ["1"], progress=False)


def test_resuming_a_folder_with_other_labels_is_refused_not_given_the_old_ones(tmp_path):
    """Before: rerunning record_stimuli into a finished folder with a corrected labels table returned the folder's
    old labels and class names without a word (labels are not in the job identity: the responses are the same)."""
    import skimage.io

    from insilico.errors import JobMismatchError
    from insilico.stimuli.labels import labelled

    root = tmp_path / "set"
    root.mkdir()
    for k in range(4):
        skimage.io.imsave(root / f"{k}.png", np.full((6, 6, 3), 40 * k, np.uint8), check_contrast=False)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    old = {f"{k}.png": "cat" if k % 2 else "dog" for k in range(4)}
    first = Probe(net).record_stimuli(labelled(root, old), [""], out=tmp_path / "rec", progress=False)
    again = Probe(net).record_stimuli(labelled(root, old), [""], out=tmp_path / "rec", progress=False)
    assert first.labels == again.labels == [1, 0, 1, 0]
    new = {f"{k}.png": "dog" if k % 2 else "cat" for k in range(4)}
    with pytest.raises(JobMismatchError, match=r"labels: \[1, 0, 1, 0\] \(folder\) vs \[0, 1, 0, 1\] \(now\)"):
        Probe(net).record_stimuli(labelled(root, new), [""], out=tmp_path / "rec", progress=False)


class Pairs(torch.utils.data.Dataset):
    """Items as users' datasets give them: ``(image, label)`` tuples, or dicts with an image key."""

    def __init__(self, images, kind="tuple", key="image"):
        self.images, self.kind, self.key = images, kind, key

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.kind == "tuple":
            return self.images[i], i % 3
        return {self.key: self.images[i], "label": i % 3}


@pytest.mark.parametrize("kind,key", [("tuple", None), ("dict", "image"), ("dict", "pixel_values")])
def test_datasets_of_labelled_items_give_their_images(net, stimuli, kind, key):
    """Issue 23 item 7: (image, label) tuples and dicts with an image key record like the image tensor."""
    want = Probe(net).record_stimuli(stimuli, UNITS, batch_size=16, progress=False)
    got = Probe(net).record_stimuli(Pairs(stimuli, kind, key), UNITS, batch_size=16, progress=False)
    for u in UNITS:
        assert torch.equal(got[u], want[u])


def test_image_folder_with_a_transform_records(net, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):  # photos of different sizes, as in any folder
            Image.fromarray(rng.integers(0, 255, (12 + i, 14, 3), dtype=np.uint8)).convert("L").save(tmp_path / c / f"{i}.png")
    folder = torchvision.datasets.ImageFolder(tmp_path, transform=T.Compose([T.Grayscale(), T.Resize(9), T.CenterCrop(9),
                                                                           T.ToTensor()]))
    rec = Probe(net).record_stimuli(folder, UNITS, batch_size=4, progress=False)
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    assert images.shape == (6, 1, 9, 9)
    assert torch.equal(rec["0"], Probe(net).record_stimuli(images, ["0"], progress=False)["0"])
    with pytest.raises(StimulusError, match="PIL image: give the dataset a transform"):
        Probe(net).record_stimuli(torchvision.datasets.ImageFolder(tmp_path), UNITS, progress=False)
    with pytest.raises(StimulusError, match=r"different shapes.*Resize"):
        Probe(net).record_stimuli(torchvision.datasets.ImageFolder(tmp_path, transform=T.Compose([
            T.Grayscale(), T.ToTensor()])), UNITS, batch_size=6, progress=False)
    with pytest.raises(StimulusError, match=r"keys \['label', 'target'\].*'pixel_values'"):
        Probe(net).record_stimuli([{"label": 0, "target": 1}], UNITS, progress=False)


# ---------------------------------------------------------------------------------------
# Export: xarray (Brain-Score's NeuroidAssembly layout, NetCDF) and pandas (issue 26, item 6)
# ---------------------------------------------------------------------------------------
def test_to_xarray_round_trips_through_netcdf_with_ids_labels_and_coordinates(tmp_path):
    xarray = pytest.importorskip("xarray")
    pytest.importorskip("scipy")
    import skimage.io

    for name in ("b/x.png", "a/y.png", "a/z.png"):
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        skimage.io.imsave(tmp_path / "set" / name, np.random.default_rng(len(name)).integers(0, 255, (6, 6, 3),
                          dtype=np.uint8), check_contrast=False)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU())
    rec = Probe(net).record_stimuli(tmp_path / "set", ["0", "1[1]"], progress=False)
    da = rec.to_xarray()
    assert da.dims == ("presentation", "neuroid") and da.shape == (3, 2 * 16 + 16)
    assert list(da.stimulus_id.values) == ["a/y.png", "a/z.png", "b/x.png"]
    assert list(da.label.values) == [0, 0, 1] and list(da.class_name.values) == ["a", "a", "b"]
    assert str(da.neuroid_id.values[16 + 5]) == "0[1,1,1]" and str(da.neuroid_id.values[32 + 5]) == "1[1,1,1]"
    assert int(da.channel.values[16]) == 1 and str(da.position.values[16 + 5]) == "1,1"
    assert np.array_equal(da.values[:, 32:], rec["1[1]"].reshape(3, -1).numpy())
    da.to_netcdf(tmp_path / "rec.nc", engine="scipy")
    back = xarray.load_dataarray(tmp_path / "rec.nc", engine="scipy")
    assert back.identical(da) and back.attrs["model"] == "Sequential"
    frame = rec.to_pandas()
    assert list(frame.index) == list(da.stimulus_id.values) and frame.shape == da.shape
    assert frame["1[1,2,3]"].tolist() == rec["1[1]"][:, 2, 3].tolist()


def test_to_xarray_has_a_time_bin_axis_for_the_steps_of_a_recurrent_module():
    pytest.importorskip("xarray")

    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            for _ in range(3):
                x = torch.relu(self.conv(x))
            return x

    torch.manual_seed(0)
    rec = Probe(Recurrent()).record_stimuli(torch.rand(4, 2, 5, 5), ["conv@0", "conv@1", "conv@2"],
                                                     reduce="mean", progress=False)
    da = rec.to_xarray()
    assert da.dims == ("presentation", "neuroid", "time_bin") and da.shape == (4, 2, 3)
    assert list(da.time_bin.values) == [0, 1, 2] and list(da.unit.values) == ["conv", "conv"]
    assert list(da.position.values) == ["mean", "mean"] and list(da.channel.values) == [0, 1]
    for t in range(3):
        assert np.array_equal(da.values[..., t], rec[f"conv@{t}"].numpy())
    mixed = Probe(Recurrent()).record_stimuli(torch.rand(4, 2, 5, 5), ["conv@0", "conv@1[0]"],
                                                       reduce="mean", progress=False)
    assert mixed.to_xarray().dims == ("presentation", "neuroid")  # not the same units at every step


def test_tabular_results_become_data_frames():
    pytest.importorskip("pandas")
    from insilico.experiments import lesion_sweep
    from insilico.pixels import raw

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x, y = torch.rand(20, 4), torch.randint(0, 2, (20,))
    res = lesion_sweep(net, "1", raw(x), y, progress=False)
    frame = res.to_pandas()
    assert list(frame.columns) == list(res.table()) and len(frame) == 3
    assert frame["accuracy"].tolist() == res.accuracy.tolist()
