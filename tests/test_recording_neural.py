"""Neural data in the recordings' layout (Brain-Score's NeuroidAssembly) read back for the encoding and RSA tools
(issue 26, item 6): a Recording exported with to_xarray (through NetCDF) and read as neural data gives the same
RDM and fits the same predictor as the recording itself; ids align it to a stimulus set; repetitions are averaged
or kept for the noise ceiling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import insilico
from insilico.encoding import fit_predictor
from insilico.errors import InsilicoError, SavedFileError, StimulusError
from insilico.neural import read_neural
from insilico.rsa import rdm

xarray = pytest.importorskip("xarray")
pytest.importorskip("scipy")  # NetCDF3 through scipy


def _folder(root, n=8):
    import skimage.io

    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / ("ab"[i % 2]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        skimage.io.imsave(path, rng.integers(0, 256, (10 + i, 12, 3)).astype(np.uint8), check_contrast=False)
    return root


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    model.input_size = (3, 10, 10)
    return model.eval()


def test_a_recording_read_back_as_neural_data_gives_the_same_rdm_and_predictor(tmp_path):
    root = _folder(tmp_path / "set")
    model = _model()
    rec = insilico.Probe(model).record_stimuli(root, ["2"], progress=False)
    rec.to_xarray().to_netcdf(tmp_path / "rec.nc", engine="scipy")
    neural = read_neural(tmp_path / "rec.nc", stimuli=root)
    assert neural.stimulus_ids == rec.ids and neural.neuroid_ids == rec.neuroids()["neuroid_id"]
    assert np.array_equal(neural.values, rec["2"].reshape(8, -1).numpy())
    direct = rdm(rec)["2"]
    back = rdm(neural)
    assert back.labels == direct.labels and torch.allclose(back.vector, direct.vector)
    fitted = fit_predictor(model, root, neural, "1", reduce="mean", held_out=0, progress=False)
    by_hand = fit_predictor(model, root, rec["2"].reshape(8, -1).numpy(), "1", reduce="mean", held_out=0,
                            progress=False)
    assert fitted.targets == neural.neuroid_ids
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(fitted(x), by_hand(x), atol=1e-5)


def test_ids_align_the_data_to_a_stimulus_set_and_missing_ones_are_refused(tmp_path):
    root = _folder(tmp_path / "set", n=4)
    rec = insilico.Probe(_model()).record_stimuli(root, ["4"], progress=False)
    da = rec.to_xarray()
    shuffled = da.isel(presentation=[2, 0, 3, 1])  # another order of presentation
    neural = read_neural(shuffled, stimuli=root)
    assert neural.stimulus_ids == rec.ids and np.array_equal(neural.values, rec["4"].numpy())
    fewer = da.isel(presentation=[0, 1, 2])
    with pytest.raises(StimulusError, match=r"1 of 4 stimuli have no neural data: \['b/3.png'\]"):
        read_neural(fewer, stimuli=root)
    with pytest.raises(StimulusError, match="have no neural data"):  # fit_predictor aligns, and refuses too
        fit_predictor(_model(), root, read_neural(fewer), "1", reduce="mean", held_out=0, progress=False)
    subset = read_neural(da, ids=["b/3.png", "a/0.png"])
    assert np.array_equal(subset.values, rec["4"].numpy()[[3, 0]])


def test_repetitions_are_averaged_or_kept_for_the_noise_ceiling():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(12, 3))
    order = rng.permutation(np.repeat(np.arange(12), 4))  # 4 repetitions of 12 stimuli, shuffled
    trials = signal[order] + 0.3 * rng.normal(size=(48, 3))
    da = xarray.DataArray(trials, dims=("presentation", "neuroid"),
                          coords={"stimulus_id": ("presentation", [f"s{i}" for i in order]),
                                  "neuroid_id": ("neuroid", ["n0", "n1", "n2"])})
    ids = [f"s{i}" for i in range(12)]
    mean = read_neural(da, ids=ids)
    for i in range(12):
        assert np.allclose(mean.values[i], trials[order == i].mean(0))
    kept = read_neural(da, ids=ids, repetitions="keep")
    assert kept.values.shape == (4, 12, 3) and kept.repeated
    assert np.allclose(kept.mean().values, mean.values)
    assert np.allclose(rdm(kept).vector, rdm(mean).vector)  # correlation RDM: of the means
    assert rdm(kept, "crossnobis").n == 12  # crossnobis: the repetitions are its runs
    net = nn.Linear(3, 3)
    torch.manual_seed(0)
    x = insilico.pixels.raw(torch.as_tensor(signal, dtype=torch.float32))
    scored = fit_predictor(net, x, kept, "", held_out=0.5, progress=False)
    assert scored.targets == ["n0", "n1", "n2"] and "ceiling" in scored.scores
    assert scored.to_pandas()["target"].tolist() == ["n0", "n1", "n2"]
    with pytest.raises(InsilicoError, match="shown equally often"):
        read_neural(da.isel(presentation=slice(1, None)), repetitions="keep")


def test_time_bins_and_bad_inputs_are_named(tmp_path):
    da = xarray.DataArray(np.zeros((3, 2, 4)), dims=("presentation", "neuroid", "time_bin"),
                          coords={"stimulus_id": ("presentation", ["a", "b", "c"]), "time_bin": [0, 10, 20, 30]})
    neural = read_neural(da)
    assert neural.time_bins == [0, 10, 20, 30] and neural.at(20).values.shape == (3, 2)
    with pytest.raises(InsilicoError, match="4 time bins: pick one with .at"):
        np.asarray(neural)
    with pytest.raises(InsilicoError, match="stimulus_id coordinate"):
        read_neural(da.drop_vars("stimulus_id"))
    with pytest.raises(InsilicoError, match="presentation x neuroid"):
        read_neural(da.rename(neuroid="site"))
    with pytest.raises(SavedFileError, match="does not exist"):
        read_neural(tmp_path / "nowhere.nc")
    (tmp_path / "bad.nc").write_bytes(b"not netcdf")
    with pytest.raises(SavedFileError, match="cannot read neural data"):
        read_neural(tmp_path / "bad.nc")
