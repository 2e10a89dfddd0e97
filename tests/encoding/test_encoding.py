"""Encoding models: ridge against sklearn, per-target alphas, dual = primal, ceilings."""
import warnings

import numpy as np
import pytest
import torch

import insilico
from insilico import encoding
from insilico.encoding import RidgeCV
from insilico.errors import InsilicoError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _data(rng, n, p, t=3, noise=0.5):
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=(p, t)) / np.sqrt(p) + noise * rng.normal(size=(n, t)) + 2.0
    return x, y


@pytest.mark.parametrize("n,p", [(60, 15), (25, 70)])  # primal and dual
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fixed_alpha_equals_sklearn_ridge(rng, n, p, fit_intercept):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _data(rng, n, p)
    ours = RidgeCV(alphas=[3.0], cv=4, fit_intercept=fit_intercept).fit(x, y)
    ref = sklearn.Ridge(alpha=3.0, fit_intercept=fit_intercept).fit(x, y)
    assert ours.dual_ == (p > n)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-9)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-9)
    np.testing.assert_allclose(ours.predict(x), ref.predict(x), atol=1e-9)
    np.testing.assert_allclose(ours.alpha_, [3.0] * 3)
    # a 1-D target gives sklearn's shapes
    one = RidgeCV(alphas=[3.0], cv=4, fit_intercept=fit_intercept).fit(x, y[:, 0])
    assert one.coef_.shape == (p,) and isinstance(one.intercept_, float) and one.alpha_ == 3.0
    ref_one = sklearn.Ridge(alpha=3.0, fit_intercept=fit_intercept).fit(x, y[:, 0])
    assert one.score(x, y[:, 0]) == pytest.approx(ref_one.score(x, y[:, 0]), abs=1e-9)


def test_leave_one_out_alphas_equal_sklearn(rng):
    sklearn = pytest.importorskip("sklearn.linear_model")
    alphas = np.logspace(-2, 4, 13)
    for n, p in [(50, 10), (30, 80)]:
        x = rng.normal(size=(n, p))
        y = x[:, :4] @ rng.normal(size=(4, 4)) + rng.normal(size=(n, 4)) * np.array([0.1, 1.0, 3.0, 10.0])
        ref = sklearn.RidgeCV(alphas=alphas, alpha_per_target=True).fit(x, y)
        np.testing.assert_allclose(RidgeCV(alphas=alphas).fit(x, y).alpha_, ref.alpha_)


def test_kfold_alpha_equals_grid_search(rng):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, KFold

    alphas = np.logspace(-2, 4, 13)
    x, y = _data(rng, 80, 30, t=3, noise=2.0)
    ours = RidgeCV(alphas=alphas, cv=KFold(5)).fit(x, y)
    for t in range(3):
        ref = GridSearchCV(Ridge(), {"alpha": alphas}, cv=KFold(5), scoring="neg_mean_squared_error").fit(x, y[:, t])
        assert ours.alpha_[t] == ref.best_params_["alpha"]
        np.testing.assert_allclose(ours.cv_mse_[:, t], -ref.cv_results_["mean_test_score"], rtol=1e-9)


def test_dual_equals_primal(rng):
    x, y = _data(rng, 40, 30, t=5, noise=1.0)
    alphas = np.logspace(-1, 3, 9)
    for cv in (None, 5):
        primal = RidgeCV(alphas=alphas, cv=cv, solver="primal").fit(x, y)
        dual = RidgeCV(alphas=alphas, cv=cv, solver="dual").fit(x, y)
        assert not primal.dual_ and dual.dual_
        np.testing.assert_allclose(primal.coef_, dual.coef_, atol=1e-9)
        np.testing.assert_allclose(primal.cv_mse_, dual.cv_mse_, rtol=1e-8)
        np.testing.assert_allclose(primal.alpha_, dual.alpha_)


def test_per_target_alpha_follows_noise(rng):
    """Same signal, more noise per target -> larger penalties, in order."""
    n, p = 300, 40
    x = rng.normal(size=(n, p))
    signal = x @ rng.normal(size=(p, 1)) / np.sqrt(p)
    noise_levels = np.array([0.05, 0.5, 2.0, 8.0])
    y = signal + rng.normal(size=(n, 4)) * noise_levels
    model = RidgeCV(alphas=np.logspace(-3, 5, 33), cv=5).fit(x, y)
    assert np.all(np.diff(model.alpha_) > 0), model.alpha_
    # one alpha for all targets when asked
    shared = RidgeCV(alphas=np.logspace(-3, 5, 33), cv=5, alpha_per_target=False).fit(x, y)
    assert len(set(shared.alpha_.tolist())) == 1


def test_splitters_folds_and_batches_agree(rng):
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GroupKFold, KFold

    x, y = _data(rng, 60, 12, t=7)
    alphas = np.logspace(-2, 3, 6)
    ours = RidgeCV(alphas=alphas, cv=4).fit(x, y)
    folds = encoding.kfold(60, 4)
    assert [len(te) for _, te in folds] == [15] * 4
    for cv in (KFold(4), folds):
        other = RidgeCV(alphas=alphas, cv=cv, n_targets_batch=2).fit(x, y)
        np.testing.assert_allclose(other.cv_mse_, ours.cv_mse_, rtol=1e-10)
    groups = np.repeat(np.arange(6), 10)
    grouped = RidgeCV(alphas=alphas, cv=GroupKFold(3)).fit(x, y, groups=groups)
    assert grouped.alpha_.shape == (7,)


def test_tensor_in_tensor_out(rng):
    x, y = _data(rng, 50, 10)
    model = RidgeCV(alphas=[0.1, 1.0, 10.0], cv=5).fit(torch.tensor(x), torch.tensor(y))
    assert torch.is_tensor(model.alpha_) and torch.is_tensor(model.predict(torch.tensor(x)))
    ref = RidgeCV(alphas=[0.1, 1.0, 10.0], cv=5).fit(x, y)
    np.testing.assert_allclose(model.coef_.numpy(), ref.coef_, atol=1e-12)
    np.testing.assert_allclose(model.score(torch.tensor(x), torch.tensor(y)).numpy(), ref.score(x, y))


def test_scores_equal_numpy(rng):
    y, pred = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    r = [np.corrcoef(y[:, k], pred[:, k])[0, 1] for k in range(4)]
    r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(encoding.pearson_r(y, pred), r, atol=1e-12)
    np.testing.assert_allclose(encoding.r2_score(y, pred), r2, atol=1e-12)


def test_split_half_ceiling_and_normalised_scores(rng):
    """The ceiling is what a perfect model reaches; a fitted model stays below it."""
    n, p, t, reps = 400, 20, 30, 4
    x = rng.normal(size=(n, p))
    signal = x @ rng.normal(size=(p, t)) / np.sqrt(p)
    noise_sd = np.linspace(0.3, 2.0, t)
    trials = signal + rng.normal(size=(reps, n, t)) * noise_sd
    mean = trials.mean(0)
    ceiling = encoding.split_half_ceiling(trials, n_splits=20)
    true_reliability = 1 / (1 + noise_sd ** 2 / reps)  # var(signal) = 1
    err = ceiling.reliability - true_reliability   # unbiased, with per-target sampling error
    assert abs(err.mean()) < 0.03 and np.abs(err).mean() < 0.08
    perfect = encoding.pearson_r(mean, signal)
    assert abs((perfect - ceiling.r).mean()) < 0.03
    res = encoding.cross_validate(x, mean, cv=5, inner_cv=5)
    assert np.mean(res.r <= ceiling.r + 0.02) > 0.9
    norm = res.normalized(ceiling)
    assert 0.85 < np.nanmedian(norm) <= 1.02
    summary = res.summary(ceiling)
    assert summary["n_targets"] == t and summary["median_normalized_r"] == pytest.approx(np.nanmedian(norm))
    assert not np.isnan(res.predictions).any()


def test_cross_validate_recording(rng):
    feats = rng.normal(size=(60, 3, 4)).astype(np.float32)
    rec = insilico.Recording({"conv": feats, "fc": rng.normal(size=(60, 5)).astype(np.float32)})
    y = feats.reshape(60, -1)[:, :2] @ np.ones((2, 3)) + 0.1 * rng.normal(size=(60, 3))
    out = encoding.cross_validate(rec, y.astype(np.float32), cv=3, inner_cv=3)
    assert set(out) == {"conv", "fc"}
    assert np.all(out["conv"].r > 0.9) and np.all(out["fc"].r < out["conv"].r)


def test_errors_say_what_to_do(rng):
    x, y = _data(rng, 20, 5)
    with pytest.raises(InsilicoError, match="positive"):
        RidgeCV(alphas=[0.0, 1.0]).fit(x, y)
    with pytest.raises(InsilicoError, match="must match"):
        RidgeCV().fit(x, y[:10])
    with pytest.raises(InsilicoError, match="not fitted"):
        RidgeCV().predict(x)
    with pytest.raises(InsilicoError, match="solver"):
        RidgeCV(solver="svd").fit(x, y)


@pytest.mark.cuda
def test_ridge_cv_on_cuda_matches_cpu(rng):
    x, y = _data(rng, 80, 120, t=6)
    alphas = np.logspace(-2, 3, 6)
    cpu = RidgeCV(alphas=alphas, cv=5).fit(torch.tensor(x), torch.tensor(y))
    gpu = RidgeCV(alphas=alphas, cv=5).fit(torch.tensor(x).cuda(), torch.tensor(y).cuda())
    assert gpu.alpha_.device.type == "cuda"
    torch.testing.assert_close(gpu.coef_.cpu(), cpu.coef_, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(gpu.alpha_.cpu(), cpu.alpha_)


def test_encoding_results_follow_the_one_result_protocol(tmp_path):
    """EncodingResult and Ceiling save (one file, weights_only), load, concatenate over targets and plot."""
    import matplotlib.pyplot as plt

    from insilico.encoding import Ceiling, EncodingResult, cross_validate, split_half_ceiling

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6))
    Y = X[:, :3] + 0.3 * rng.normal(size=(60, 3))
    res = cross_validate(X, Y, cv=3, inner_cv=3)
    res.save(tmp_path / "enc.pt")
    back = EncodingResult.load(tmp_path / "enc.pt")
    for name in ("r", "r2", "alpha", "predictions"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert back.settings == {"alphas": [float(a) for a in 10.0 ** np.arange(-2, 7)], "n_folds": 3, "n_samples": 60}
    parts = [cross_validate(X, Y[:, :2], cv=3, inner_cv=3), cross_validate(X, Y[:, 2:], cv=3, inner_cv=3)]
    joined = EncodingResult.concat(parts)
    np.testing.assert_allclose(joined.r, res.r)
    np.testing.assert_allclose(joined.predictions, res.predictions)
    ceiling = split_half_ceiling(Y + rng.normal(size=(4, 60, 3)))
    ceiling.save(tmp_path / "ceiling.pt")
    c = Ceiling.load(tmp_path / "ceiling.pt")
    np.testing.assert_array_equal(c.reliability, ceiling.reliability)
    assert len(Ceiling.concat([c, c]).r) == 6
    with pytest.raises(insilico.InsilicoError, match="Ceiling, not a EncodingResult|holds a Ceiling"):
        EncodingResult.load(tmp_path / "ceiling.pt")
    fig, ax = plt.subplots()
    assert res.plot(ax=ax, ceiling=c) is fig and c.plot() is not None
    plt.close("all")


# --- degenerate data (issue 23 item 7) -------------------------------------------------------------
def _tiny_net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())


@pytest.mark.parametrize("n", [1, 2, 5])
def test_fit_predictor_refuses_too_few_stimuli_with_the_minimum(n):
    from insilico.encoding import fit_predictor

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 3, 8, 8, generator=g), torch.rand(n, 2, generator=g)
    with pytest.raises(InsilicoError, match=r"got %d stimuli; with held_out=0.2 it needs at least 6.*held_out=0" % n):
        fit_predictor(_tiny_net(), x, y, "1", reduce="mean", progress=False)
    if n < 3:
        with pytest.raises(InsilicoError, match=r"held_out=0 it needs at least 3"):
            fit_predictor(_tiny_net(), x, y, "1", reduce="mean", held_out=0, progress=False)


def test_fit_predictor_scores_on_at_least_three_held_out_stimuli():
    """8 stimuli: round(0.2 * 8) = 2 held out would give r = +-1 exactly, whatever the fit; 3 give a real r."""
    from insilico.encoding.predictor import fit_predictor

    g = torch.Generator().manual_seed(0)
    net = _tiny_net()
    x = torch.rand(8, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = net(x).mean((2, 3))[:, :2] * 2.0 + 1.0 + 0.05 * torch.rand(8, 2, generator=g)
    p = fit_predictor(net, x, y, "1", reduce="mean", cv=2, progress=False)
    r = p.scores["r"]
    assert np.isfinite(r).all() and (np.abs(r) < 1 - 1e-4).all(), r


def test_pearson_r_is_nan_with_a_reason_where_undefined():
    y = torch.tensor([[1.0, 2.0], [2.0, 2.0], [4.0, 2.0]])
    pred = torch.tensor([[1.0, 1.0], [3.0, 2.0], [5.0, 3.0]])
    with pytest.warns(RuntimeWarning, match=r"undefined \(NaN\) for target\(s\) \[1\]: the data are constant"):
        r = encoding.pearson_r(y, pred)
    assert 0.9 < float(r[0]) < 1 and torch.isnan(r[1])
    with pytest.warns(RuntimeWarning, match="predictions are constant"):
        assert np.isnan(encoding.pearson_r(np.array([1.0, 2.0, 4.0]), np.full(3, 0.1)))
    with pytest.warns(RuntimeWarning, match=r"R2 is undefined \(NaN\) for target\(s\) \[1\]: the data are constant"):
        r2 = encoding.r2_score(y, pred)
    assert float(r2[0]) < 1 and torch.isnan(r2[1])
    with pytest.warns(RuntimeWarning, match="over 2 samples is \\+-1.*at least 3"):
        encoding.pearson_r(torch.tensor([1.0, 2.0]), torch.tensor([5.0, 3.0]))


def test_fit_predictor_leaves_the_global_random_state_alone():
    from insilico.encoding import fit_predictor

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 8, 8, generator=g), torch.rand(12, 2, generator=g)
    net = _tiny_net()
    torch.manual_seed(5)
    want = torch.rand(2)
    torch.manual_seed(5)
    with warnings.catch_warnings():  # random responses: a target's r may be undefined (NaN, warned); not the point
        warnings.simplefilter("ignore", RuntimeWarning)
        fit_predictor(net, x, y, "1", reduce="mean", cv=3, progress=False)
    assert torch.equal(torch.rand(2), want)


# ------------------------------------------------------------------ a predictor file knows its trunk (issue 23)
def _trunk(seed: int = 0, width: int = 4) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.LeakyReLU(0.1), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(width, 3)).eval()
    m.input_size = (3, 16, 16)
    return m


@pytest.fixture
def saved_predictor(tmp_path):
    """A predictor fitted on ``_trunk(0)`` layer "1" (reduce=None: 4 x 14 x 14 features), saved as p.pt."""
    x = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.rand(12, 3, generator=torch.Generator().manual_seed(2))
    p = encoding.fit_predictor(_trunk(0), x, y, layers=["1"], progress=False)
    p.save(tmp_path / "p.pt")
    return tmp_path / "p.pt", x, p(x).detach()


def test_a_predictor_refuses_another_trunk_naming_file_and_difference(saved_predictor):
    from insilico.encoding import NeuralPredictor
    from insilico.errors import SavedFileError

    path, x, want = saved_predictor
    assert torch.equal(NeuralPredictor.load(path, _trunk(0))(x), want)
    with pytest.raises(SavedFileError, match=r"p\.pt.*another network.*parameters differ \(0\.bias, 0\.weight"):
        NeuralPredictor.load(path, _trunk(1))  # same architecture, other weights
    loose = NeuralPredictor.load(path, _trunk(1), strict=False)  # the documented escape: loads, widths still fit
    assert loose(x).shape == want.shape and not torch.equal(loose(x), want)
    with pytest.raises(SavedFileError, match=r"p\.pt.*another network"):
        NeuralPredictor.load(path, _trunk(0, width=8))
    with pytest.raises(SavedFileError, match=r"p\.pt' does not fit.*give 1568 features.*readout takes 784"):
        NeuralPredictor.load(path, _trunk(0, width=8), strict=False)  # was a raw RuntimeError in predict


def test_a_predictor_file_without_a_trunk_fingerprint_needs_strict_false(saved_predictor):
    from insilico.encoding import NeuralPredictor
    from insilico.errors import SavedFileError

    path, x, want = saved_predictor
    blob = torch.load(path, weights_only=True)
    del blob["trunk"]  # as files saved before fingerprints were kept
    torch.save(blob, path)
    with pytest.raises(SavedFileError, match=r"p\.pt.*records no fingerprint.*strict=False"):
        NeuralPredictor.load(path, _trunk(0))
    assert torch.equal(NeuralPredictor.load(path, _trunk(0), strict=False)(x), want)


@pytest.mark.parametrize("layers", [["nonexistent"], ["4"]], ids=["no_such_layer", "layer_of_other_width"])
def test_a_predictor_file_whose_layers_disagree_with_its_readout_is_refused(saved_predictor, layers):
    """An edited `layers` entry: refused at load naming the file (was: loaded, then UnitError or a raw
    RuntimeError "mat1 and mat2 shapes cannot be multiplied" when predicting)."""
    from insilico.encoding import NeuralPredictor
    from insilico.errors import SavedFileError

    path, _, _ = saved_predictor
    blob = torch.load(path, weights_only=True)
    blob["layers"] = layers
    torch.save(blob, path)
    with pytest.raises(SavedFileError, match=r"p\.pt"):
        NeuralPredictor.load(path, _trunk(0))
