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


def test_nan_in_neural_data_is_refused_where_it_lies():
    """One missing value: rdm, fit_predictor and RidgeCV name how many and which rows (stimuli) and columns
    (neuroids) hold it (before: 'contain NaN or inf', nowhere)."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10, 4))
    values[6, 2] = np.nan
    da = xarray.DataArray(values, dims=("presentation", "neuroid"),
                          coords={"stimulus_id": ("presentation", [f"s{i}" for i in range(10)])})
    neural = read_neural(da, ids=[f"s{i}" for i in range(10)])
    where = r"1 NaN or inf value \(rows \[6\], columns \[2\] of shape \(10, 4\)\)"
    with pytest.raises(InsilicoError, match="the responses contain " + where):
        rdm(neural)
    x = insilico.pixels.raw(torch.as_tensor(rng.normal(size=(10, 3)), dtype=torch.float32))
    with pytest.raises(InsilicoError, match="the responses contain " + where):
        fit_predictor(nn.Linear(3, 3), x, neural, "", progress=False)
    with pytest.raises(InsilicoError, match="the data contain " + where):
        insilico.encoding.RidgeCV(alphas=[1.0], cv=2).fit(rng.normal(size=(10, 3)), values)


def test_stimuli_without_ids_are_not_matched_to_a_trial_order_of_named_stimuli():
    """Trials shown in a shuffled order: the rows of read_neural(da) follow each stimulus's first presentation, not
    the tensor's order. Before: fit_predictor(net, tensor, neural) paired them by position (r 0.88, not 1)."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(12, 3)), dtype=torch.float32)
    responses = x.numpy() @ rng.normal(size=(3, 2))             # a linear brain: a linear predictor fits it exactly
    order = rng.permutation(12)
    da = xarray.DataArray(responses[order], dims=("presentation", "neuroid"),
                          coords={"stimulus_id": ("presentation", [f"s{i}" for i in order])})
    net, stimuli = nn.Identity(), insilico.pixels.raw(x)
    with pytest.raises(StimulusError, match=r"have no ids, and the neural data's rows are in the order .*ids=\["):
        fit_predictor(net, stimuli, read_neural(da), "", progress=False)
    fitted = fit_predictor(net, stimuli, read_neural(da, ids=[f"s{i}" for i in range(12)]), "", progress=False)
    assert (fitted.scores["r"] > 0.99).all()                    # said which is which: aligned
    plain = da.assign_coords(stimulus_id=("presentation", [str(i) for i in order]))
    assert (fit_predictor(net, stimuli, read_neural(plain), "", progress=False).scores["r"] > 0.99).all()


def test_an_rdm_of_neural_data_in_trial_order_is_not_compared_by_position_with_an_unlabelled_one():
    """The trial-order trap of fit_predictor, met by rsa.compare: the brain RDM of read_neural(da) is labelled by ids
    in the order of first presentation; an unlabelled model RDM (a tensor's) pairs stimuli by position. Before:
    compare gave 0.2 for RDMs of the same geometry, without a word. Now it refuses with the same rule (one place)."""
    from insilico import rsa

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5))
    order = rng.permutation(12)
    da = xarray.DataArray(x[order], dims=("presentation", "neuroid"),
                          coords={"stimulus_id": ("presentation", [f"s{i}" for i in order])})
    model = rdm(torch.as_tensor(x))                                      # unlabelled: matched by position
    brain = rdm(read_neural(da))
    for call in (lambda: rsa.compare(model, brain), lambda: rsa.compare(brain, model),
                 lambda: rsa.compare(brain, model.vector), lambda: rsa.compare_all([model], [brain]),
                 lambda: rsa.bootstrap({"m": model}, [brain, brain], n_boot=2, progress=False)):
        with pytest.raises(StimulusError, match=r"order the data first showed each stimulus.*ids=\["):
            call()
    said = rdm(read_neural(da, ids=[f"s{i}" for i in range(12)]))      # said which is which: in the model's order
    assert rsa.compare(model, said, "pearson") == pytest.approx(1.0)
    assert rsa.compare(rdm(torch.as_tensor(x), labels=[f"s{i}" for i in range(12)]), brain, "pearson") == \
        pytest.approx(1.0)                                               # both labelled: aligned by label
    plain = read_neural(da.assign_coords(stimulus_id=("presentation", [str(i) for i in order])))
    assert rsa.compare(model, rdm(plain), "pearson") == pytest.approx(1.0)   # ids that are positions: put in order
    assert brain.ordered is False and said.ordered is True and brain.subset([1, 0]).ordered is False


def test_an_rdm_of_neural_data_with_time_bins_is_refused_not_flattened_over_time():
    """Before: rsa.rdm(neural) with a time_bin axis flattened time into the features (one RDM of whole time
    courses) without a word, where every other use of such data is told to pick a bin (NeuralData.__array__)."""
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(6)]
    da = xarray.DataArray(rng.normal(size=(6, 4, 3)), dims=("presentation", "neuroid", "time_bin"),
                          coords={"stimulus_id": ("presentation", ids), "time_bin": [0, 10, 20]})
    neural = read_neural(da, ids=ids)
    with pytest.raises(InsilicoError, match=r"3 time bins: pick one with .at\(time_bin\)"):
        rdm(neural)
    per_bin = [rdm(neural.at(t)) for t in neural.time_bins]
    assert np.allclose(per_bin[1].vector, rdm(torch.as_tensor(da.values[:, :, 1])).vector)
