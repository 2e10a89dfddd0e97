"""RSA: every distance and comparison against NumPy/SciPy (and rsatoolbox when installed), ceilings, data, probe."""
import json
import os
import sys

import matplotlib
import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import pdist, squareform

import insilico
from insilico import rsa
from insilico.rsa.bootstrap import dual_variance
from insilico.errors import InsilicoError

matplotlib.use("Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- RDMs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean", "sqeuclidean"])
def test_distances_equal_scipy(rng, method):
    x = rng.normal(size=(15, 40)) + 3.0
    r = rsa.rdm(x, method)
    np.testing.assert_allclose(r.numpy(), pdist(x, method), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r.matrix.numpy(), squareform(pdist(x, method)), atol=1e-9)
    # float32 tensors and trailing axes: flattened, computed in float64, same numbers
    x32 = torch.tensor(x.reshape(15, 4, 10), dtype=torch.float32)
    np.testing.assert_allclose(rsa.rdm(x32, method).numpy(), pdist(x32.double().reshape(15, -1).numpy(), method),
                               atol=1e-6)


def test_per_feature_and_recording_and_labels(rng):
    x = rng.normal(size=(6, 20))
    np.testing.assert_allclose(rsa.rdm(x, "sqeuclidean", per_feature=True).numpy(), pdist(x, "sqeuclidean") / 20)
    rec = insilico.Recording({"a": x.astype(np.float32), "b": x[:, :5].copy()}, ids=list("uvwxyz"))
    out = rsa.rdm(rec, "euclidean")
    assert list(out) == ["a", "b"] and out["a"].labels == list("uvwxyz") and out["b"].name == "b"
    np.testing.assert_allclose(out["b"].numpy(), pdist(x[:, :5]), atol=1e-12)
    assert isinstance(rsa.rdm([x, x[:, :3]]), list)


def test_rdm_object(rng):
    m = squareform(pdist(rng.normal(size=(7, 3))))
    r = rsa.RDM.from_matrix(m, labels=list("abcdefg"), name="V1")
    np.testing.assert_allclose(r.vector.numpy(), squareform(m))
    sub = r.subset([4, 0, 2])
    np.testing.assert_allclose(sub.matrix.numpy(), m[np.ix_([4, 0, 2], [4, 0, 2])])
    assert sub.labels == ["e", "a", "c"]
    with pytest.raises(InsilicoError, match="symmetric"):
        rsa.RDM.from_matrix(m + np.eye(7))
    with pytest.raises(InsilicoError, match="not n"):
        rsa.RDM(np.ones(5))


def test_plots_return_figures(rng):
    import matplotlib.pyplot as plt

    r = rsa.rdm(rng.normal(size=(8, 5)), name="layer")
    fig = r.plot(rank=True)
    assert len(fig.axes) == 2  # heat map and colour bar
    fig2, ax = plt.subplots()
    assert r.mds(ax=ax) is fig2
    plt.close(fig2)


def test_mds_recovers_points(rng):
    pts = rng.normal(size=(10, 2))
    xy = rsa.mds_coordinates(rsa.rdm(pts, "euclidean")).numpy()
    np.testing.assert_allclose(pdist(xy), pdist(pts), atol=1e-9)


# --- crossnobis -----------------------------------------------------------------------------------
def _crossnobis_numpy(x, prec):
    """Leave-one-run-out: mean over folds of (a_i - a_j)' prec (b_i - b_j) / P, a = mean of the other runs."""
    r, n, p = x.shape
    out = np.zeros((n, n))
    for k in range(r):
        a = np.delete(x, k, 0).mean(0)
        b = x[k]
        for i in range(n):
            for j in range(n):
                out[i, j] += (a[i] - a[j]) @ prec @ (b[i] - b[j])
    return squareform(out / r / p, checks=False)


def _shrinkage_diag_numpy(res, dof):
    """Schäfer & Strimmer (2005) shrinkage towards the diagonal, written out element by element."""
    n = res.shape[0]
    s = res.T @ res / dof
    std = np.sqrt(np.diag(s))
    z = res / std
    w = np.einsum("ij,ik->ijk", z, z)                      # (n, P, P)
    r_mean = w.sum(0) / (n - 1)
    var_r = n / dof ** 2 * ((w ** 2).sum(0) / (n - 1) - r_mean ** 2)
    off = ~np.eye(len(s), dtype=bool)
    lam = np.clip(var_r[off].sum() / (r_mean[off] ** 2).sum(), 0, 1)
    return np.where(off, (1 - lam) * s, s)


@pytest.mark.parametrize("p", [6, 40])  # P x P whitening, and Woodbury (P > runs x stimuli)
def test_crossnobis_equals_numpy(rng, p):
    x = rng.normal(size=(3, 8, p)) + rng.normal(size=(1, 8, p))
    np.testing.assert_allclose(rsa.rdm(x, "crossnobis", noise=None).numpy(), _crossnobis_numpy(x, np.eye(p)),
                               atol=1e-10)
    res = (x - x.mean(0)).reshape(-1, p)
    cov = _shrinkage_diag_numpy(res, 2 * 8)
    np.testing.assert_allclose(rsa.noise_covariance(res, "shrinkage_diag", dof=16).numpy(), cov, atol=1e-10)
    expected = _crossnobis_numpy(x, np.linalg.inv(cov))
    np.testing.assert_allclose(rsa.rdm(x, "crossnobis").numpy(), expected, atol=1e-8)
    np.testing.assert_allclose(rsa.rdm(x, "crossnobis", noise=np.linalg.inv(cov)).numpy(), expected, atol=1e-8)
    # observations with run and condition labels, shuffled
    obs, runs, conds = x.reshape(-1, p), np.repeat([5, 6, 7], 8), np.tile(np.arange(8), 3)
    perm = rng.permutation(len(obs))
    r = rsa.rdm(obs[perm], "crossnobis", runs=runs[perm], conditions=conds[perm])
    np.testing.assert_allclose(r.numpy(), expected, atol=1e-8)
    assert r.labels == list(range(8))


def test_crossnobis_unbiased(rng):
    """Identical patterns give distances scattered around 0; distinct ones recover the true distance."""
    truth = rng.normal(size=(4, 200))
    truth[1] = truth[0]
    x = truth + rng.normal(size=(20, 4, 200))
    m = rsa.rdm(x, "crossnobis", noise=None).matrix.numpy()
    assert abs(m[0, 1]) < 0.1
    np.testing.assert_allclose(m[2, 3], ((truth[2] - truth[3]) ** 2).mean(), rtol=0.1)


# rsatoolbox's crossnobis (rsatoolbox/util/build_rdm.py) fills an integer array with NaN on its way: its own
# numpy warning, not ours.
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_rdms_equal_rsatoolbox(rng):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    x = rng.normal(size=(12, 30))
    ds = rsatoolbox.data.Dataset(x)
    ref = rsatoolbox.rdm.calc_rdm(ds, method="correlation").get_vectors()[0]
    np.testing.assert_allclose(rsa.rdm(x, "correlation").numpy(), ref, atol=1e-6)
    ref = rsatoolbox.rdm.calc_rdm(ds, method="euclidean").get_vectors()[0]
    np.testing.assert_allclose(rsa.rdm(x, "sqeuclidean", per_feature=True).numpy(), ref, atol=1e-6)
    runs = rng.normal(size=(4, 10, 25))
    obs = runs.reshape(40, 25)
    ds = rsatoolbox.data.Dataset(obs, obs_descriptors=dict(run=np.repeat(np.arange(4), 10),
                                                          cond=np.tile(np.arange(10), 4)))
    res = (runs - runs.mean(0)).reshape(40, 25)
    for method in ["shrinkage_diag", "shrinkage_eye", "diag"]:
        cov = rsatoolbox.data.noise.cov_from_residuals(res, dof=30, method=method)
        np.testing.assert_allclose(rsa.noise_covariance(res, method, dof=30).numpy(), cov, atol=1e-10)
        ref = rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="cond", cv_descriptor="run",
                                      noise=np.linalg.inv(cov)).get_vectors()[0]
        np.testing.assert_allclose(rsa.rdm(runs, "crossnobis", noise=method).numpy(), ref, atol=1e-6)


# --- comparisons ----------------------------------------------------------------------------------
def _tau_a_numpy(a, b):
    sa = np.sign(a[:, None] - a[None, :])
    sb = np.sign(b[:, None] - b[None, :])
    n = len(a)
    return (sa * sb)[np.triu_indices(n, 1)].sum() / (n * (n - 1) / 2)


def _whitened_numpy(a, b, centre):
    def g(v):
        if centre:
            v = v - v.mean()
        d = squareform(v)
        h = np.eye(len(d)) - 1 / len(d)
        return (-0.5 * h @ d @ h).ravel()

    ga, gb = g(a), g(b)
    return ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb)


@pytest.fixture
def pair(rng):
    a = rng.random(45)
    b = a + rng.normal(scale=0.3, size=45)
    a[:6] = a[0]  # ties
    b[10:14] = b[10]
    return a, b


def test_comparisons_equal_scipy(pair):
    a, b = pair
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    n = len(a)
    expected = {
        "spearman": stats.spearmanr(a, b).statistic,
        "pearson": stats.pearsonr(a, b).statistic,
        "cosine": 1 - pdist([a, b], "cosine")[0],
        "kendall_a": _tau_a_numpy(a, b),
        "rho_a": 12 * ((ra - ra.mean()) @ (rb - rb.mean())) / (n ** 3 - n),
        "whitened_pearson": _whitened_numpy(a, b, True),
        "whitened_cosine": _whitened_numpy(a, b, False),
    }
    for method, value in expected.items():
        assert rsa.compare(a, b, method) == pytest.approx(value, abs=1e-9), method
        assert rsa.compare(rsa.RDM(a), squareform(b), method) == pytest.approx(value, abs=1e-9), method
    batch = rsa.compare_all(np.stack([a, b]), np.stack([b, a, b]), "spearman").numpy()
    np.testing.assert_allclose(batch[0], [expected["spearman"], 1, expected["spearman"]], atol=1e-12)


def test_comparisons_equal_rsatoolbox(pair):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    a, b = pair
    ra, rb = rsatoolbox.rdm.RDMs(a[None]), rsatoolbox.rdm.RDMs(b[None])
    for ours, theirs in [("spearman", "spearman"), ("kendall_a", "tau-a"), ("rho_a", "rho-a"), ("pearson", "corr"),
                         ("cosine", "cosine"), ("whitened_pearson", "corr_cov"), ("whitened_cosine", "cosine_cov")]:
        assert rsa.compare(a, b, ours) == pytest.approx(rsatoolbox.rdm.compare(ra, rb, theirs)[0, 0], abs=1e-6)


def test_bad_method_says_what_to_do():
    with pytest.raises(InsilicoError, match="choose one of"):
        rsa.compare([1, 2, 3], [1, 2, 3], "kendal")
    with pytest.raises(InsilicoError, match="runs"):
        rsa.rdm(np.ones((4, 3)), "crossnobis")


# --- ceilings and bootstrap ----------------------------------------------------------------------
def _subjects(rng, n_subjects=8, noise=1.0):
    truth = rng.normal(size=(20, 30))
    true_rdm = rsa.rdm(truth)
    subjects = [rsa.rdm(truth + noise * rng.normal(size=truth.shape)) for _ in range(n_subjects)]
    return true_rdm, subjects


@pytest.mark.parametrize("method", ["spearman", "pearson", "rho_a", "kendall_a", "cosine"])
def test_noise_ceiling_brackets_true_model(rng, method):
    if method == "cosine":  # cosine suits RDMs whose zero means "no difference", like crossnobis RDMs
        truth = rng.normal(size=(20, 30))
        true_rdm = rsa.rdm(np.stack([truth] * 2), "crossnobis", noise=None)  # noise-free: the true distances
        subjects = [rsa.rdm(truth + 1.5 * rng.normal(size=(4, 20, 30)), "crossnobis", noise=None) for _ in range(8)]
        other = rsa.rdm(np.stack([rng.normal(size=(20, 30))] * 2), "crossnobis", noise=None)
    else:
        true_rdm, subjects = _subjects(rng)
        other = rsa.rdm(rng.normal(size=(20, 30)))
    lower, upper = rsa.noise_ceiling(subjects, method)
    true_score = rsa.compare_all(true_rdm, subjects, method).mean().item()
    assert lower < true_score < upper
    assert rsa.compare_all(other, subjects, method).mean().item() < lower


def test_noise_ceiling_equals_rsatoolbox(rng):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    _, subjects = _subjects(rng, 5)
    v = np.stack([s.numpy() for s in subjects])
    for ours, theirs in [("spearman", "spearman"), ("pearson", "corr"), ("cosine", "cosine")]:
        ref = rsatoolbox.inference.boot_noise_ceiling(rsatoolbox.rdm.RDMs(v), method=theirs)
        np.testing.assert_allclose(tuple(rsa.noise_ceiling(subjects, ours)), ref, atol=1e-6)


def test_bootstrap(rng):
    true_rdm, subjects = _subjects(rng, 4)
    models = {"true": true_rdm, "random": rsa.rdm(rng.normal(size=(20, 30)))}
    for over in ("stimuli", "subjects", "both", "dual"):
        res = rsa.bootstrap(models, subjects, "spearman", over=over, n_boot=200, progress=False)
        assert res.samples.shape == (200, 2) and res.names == ["true", "random"]
        assert np.all(res.ci[:, 0] <= res.estimate) and np.all(res.estimate <= res.ci[:, 1])
        assert res.ci[0, 0] > res.ci[1, 1]  # the true model is better, beyond the intervals
        assert res.ceiling.lower < res.estimate[0] < res.ceiling.upper
    # one resample, by hand: duplicated stimuli drop their self-pairs
    stim = np.array([0, 0, 3, 5, 5, 5, 7, 9, 9, 11, 12, 13, 14, 15, 16, 17, 18, 18, 19, 2])
    ia, ib = np.triu_indices(20, 1)
    keep = stim[ia] != stim[ib]
    a = true_rdm.matrix.numpy()[stim[ia], stim[ib]]
    d = subjects[0].matrix.numpy()[stim[ia], stim[ib]]
    t = lambda v: torch.tensor(v)[None, None]  # noqa: E731
    for method, ref in [("spearman", stats.spearmanr(a[keep], d[keep]).statistic),
                        ("pearson", stats.pearsonr(a[keep], d[keep]).statistic)]:
        got = rsa._similarity_masked(t(a), t(d), torch.tensor(keep)[None], method)
        assert float(got) == pytest.approx(ref, abs=1e-12)
    fig = res.plot()
    assert fig.axes[0].get_legend() is not None  # the noise ceiling is labelled


def test_dual_bootstrap_corrects_the_two_factor_variance_on_the_same_resamples(rng):
    """Schütt et al. (2023): resampling subjects and stimuli together overcounts the noise; the corrected variance
    2 (V_subjects + V_stimuli) - V_both lies between the larger one-factor variance and the naive two-factor one."""
    true_rdm, subjects = _subjects(rng, 4)
    models = {"true": true_rdm, "random": rsa.rdm(rng.normal(size=(20, 30)))}
    both = rsa.bootstrap(models, subjects, over="both", n_boot=300, seed=3, progress=False)
    dual = rsa.bootstrap(models, subjects, over="dual", n_boot=300, seed=3, progress=False)
    np.testing.assert_array_equal(dual.samples, both.samples)   # the same two-factor resamples
    one = [rsa.bootstrap(models, subjects, over=o, n_boot=300, seed=3, progress=False).std
           for o in ("stimuli", "subjects")]
    assert np.all(dual.std <= both.std + 1e-12) and np.all(dual.std >= 0.8 * np.maximum(*one))  # other resamples: MC
    half = dual.ci[:, 1] - dual.estimate
    np.testing.assert_allclose(half, dual.estimate - dual.ci[:, 0])
    np.testing.assert_allclose(half, 1.959964 * dual.std, rtol=1e-6)
    assert float(dual_variance(np.array(3.0), np.array(1.0), np.array(1.0))) == 1.0  # 3x noise: 2 (1 + 1) - 3
    with pytest.raises(InsilicoError, match="over='stimuli'"):
        rsa.bootstrap(models, subjects[:1], over="dual", n_boot=10, progress=False)


def test_bootstrap_resamples_do_not_depend_on_the_models_so_calls_with_one_seed_are_paired(rng):
    """Two calls with the same seed draw the same subjects and stimuli whatever the models (the pixel baseline
    and the layers are compared pair by pair): with 300 stimuli one call runs in chunks of 74 resamples and the
    other in chunks of 89, so draws made chunk by chunk would differ after the first chunk."""
    x = rng.normal(size=(300, 8))
    subjects = [rsa.rdm(x + rng.normal(size=x.shape)) for _ in range(4)]
    a, b = rsa.rdm(x), rsa.rdm(rng.normal(size=(300, 8)))
    alone = rsa.bootstrap({"a": a}, subjects, over="both", n_boot=100, seed=1, progress=False)
    paired = rsa.bootstrap({"a": a, "b": b}, subjects, over="both", n_boot=100, seed=1, progress=False)
    np.testing.assert_allclose(alone.samples[:, 0], paired.samples[:, 0], rtol=0, atol=1e-12)


# --- shipped data ---------------------------------------------------------------------------------
def test_kriegeskorte2008_loads_offline():
    d = insilico.data.kriegeskorte2008(size=48)
    assert tuple(d.images.shape) == (92, 3, 48, 48) and d.images.dtype == torch.float32
    assert 0 <= float(d.images.min()) and float(d.images.max()) <= 1
    assert len(d.categories) == 92 and d.categories.count("human face") == 12 and int(d.animate.sum()) == 48
    assert d.monkey_it.n == 92 and d.human_it.n == 92 and d.flags["face"].sum() == 24
    assert len(d.human_it_sessions) == 4 and all(len(s) == 2 for s in d.human_it_sessions)
    assert d.subjects == ["BE", "KO", "SN", "TI"]
    mean = torch.stack([r.vector for row in d.human_it_sessions for r in row]).mean(0)
    assert stats.pearsonr(mean.numpy(), d.human_it.numpy()).statistic > 0.999  # Fig. 1 hIT is their mean
    assert 0.3 < rsa.compare(d.monkey_it, d.human_it, "spearman") < 0.6
    lower, upper = rsa.noise_ceiling(d.human_it_subjects(), "spearman")
    assert 0 < lower < upper < 1
    assert repr(d) == ("Kriegeskorte2008(92 images (3, 48, 48), 6 categories, 48 animate; RDMs: monkey_it, "
                       "human_it, human_it_sessions (4 subjects x 2 sessions))")  # a summary, not every array


def test_load_responses_and_rdms(tmp_path, rng):
    from scipy.io import savemat

    it, v4 = rng.normal(size=(10, 6)), rng.normal(size=(10, 4))
    savemat(tmp_path / "data.mat", {"IT": it.T, "V4": v4.T})  # neurons x stimuli, as MATLAB users store them
    rec = insilico.data.load_responses(tmp_path / "data.mat", stimulus_axis=1)
    np.testing.assert_allclose(rec["IT"].numpy(), it)
    np.testing.assert_allclose(rsa.rdm(rec)["V4"].numpy(), pdist(v4, "correlation"), atol=1e-12)
    np.save(tmp_path / "rdms.npy", np.stack([squareform(pdist(it)), squareform(pdist(v4))]))
    rdms = insilico.data.load_rdms(tmp_path / "rdms.npy")
    assert len(rdms) == 2
    np.testing.assert_allclose(rdms[1].numpy(), pdist(v4))
    with pytest.raises(InsilicoError, match="use .npy"):
        insilico.data.load_responses(tmp_path / "x.txt") if (tmp_path / "x.txt").write_text("1") else None


# --- the brain-RSA probe --------------------------------------------------------------------------
TINY = """
import torch
def tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                               torch.nn.Flatten(), torch.nn.Linear(128, 10))
"""


@pytest.fixture(scope="module")
def brain_rsa():
    import importlib.util

    spec = importlib.util.spec_from_file_location("brain_rsa", os.path.join(ROOT, "probes", "brain_rsa.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_brain_rsa_probe_user_model(tmp_path, brain_rsa, capsys):
    (tmp_path / "tiny.py").write_text(TINY)
    out = tmp_path / "out"
    code = brain_rsa.main(["--model", str(tmp_path / "tiny.py") + ":tiny", "--size", "32", "--n-boot", "20",
                           "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "brain_rsa.json").read_text())
    assert summary["layers"] == ["1", "4"]
    lo, hi = summary["human_it_noise_ceiling"]["lower"], summary["human_it_noise_ceiling"]["upper"]
    assert 0 < lo < hi < 1
    rows = (out / "brain_rsa.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 and rows[0].startswith("layer,region")
    assert (out / "brain_rsa.png").stat().st_size > 10_000
    assert np.load(out / "rdms.npz")["1"].shape == (4186,)
    assert "best layer" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        brain_rsa.main(["--help"])
    assert exit_.value.code == 0 and "--model" in capsys.readouterr().out
    assert brain_rsa.main(["--model", "nosuchmodel", "--out", str(out)]) == 2


def test_brain_rsa_probe_bundled_model(tmp_path, brain_rsa):
    if "minialex" not in insilico.models.available():
        pytest.skip("the bundled minialex weights have not landed yet (insilico/models/weights/minialex.pt)")
    summary = brain_rsa.run("minialex", str(tmp_path), n_boot=20, progress=False)
    assert len(summary["layers"]) == 8 and set(summary["human_it"]) == set(summary["layers"])
    assert all(-1 <= v["similarity"] <= 1 for v in summary["monkey_it"].values())
    assert (tmp_path / "brain_rsa.png").exists() and (tmp_path / "brain_rsa.csv").exists()


# --- GPU ------------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_rdm_on_cuda_matches_cpu(rng):
    x = torch.tensor(rng.normal(size=(3, 30, 50)))
    for method in ["correlation", "euclidean", "crossnobis"]:
        data = x if method == "crossnobis" else x[0]
        gpu = rsa.rdm(data.cuda(), method)
        assert gpu.device.type == "cuda"
        np.testing.assert_allclose(gpu.numpy(), rsa.rdm(data, method).numpy(), atol=1e-6)
    assert rsa.compare(gpu, rsa.rdm(x, "crossnobis").to("cuda"), "spearman") == pytest.approx(1.0)


# ------------------------------------------------------------------ NaN is never scored (issue 15, input 5)
@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_a", "rho_a", "cosine", "whitened_pearson"])
@pytest.mark.parametrize("a, b", [
    ([5, 1, 2, 3, float("nan")], [5, 1, 2, 3, 0.5]),               # NaN in one RDM
    ([5, 1, 2, float("nan"), 4], [5, 1, 2, 3, float("nan")]),     # NaN at different positions
    ([5, 1, 2, 3, float("inf")], [5, 1, 2, 3, 0.5]),
])
def test_compare_refuses_nan_with_the_fix(method, a, b):
    if method == "whitened_pearson":  # needs a full condensed RDM: 6 pairs = 4 conditions
        a, b = a + [1.0], b + [1.0]
    with pytest.raises(InsilicoError, match="NaN or inf.*isfinite"):
        rsa.compare(a, b, method)


def test_nan_refused_by_compare_all_noise_ceiling_and_bootstrap():
    good = torch.rand(3, 10, dtype=torch.float64)
    bad = good.clone()
    bad[1, 4] = float("nan")
    with pytest.raises(InsilicoError, match="NaN"):
        rsa.compare_all(good, bad)
    with pytest.raises(InsilicoError, match="NaN"):
        rsa.noise_ceiling(bad)
    assert rsa.compare(good[0], good[0], "spearman") == pytest.approx(1.0)  # finite RDMs still compare


def test_bootstrap_and_noise_ceiling_follow_the_result_protocol(tmp_path):
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(12, 3, generator=g, dtype=torch.float64)
    subjects = [rsa.rdm(truth + 0.1 * torch.rand(12, 3, generator=g, dtype=torch.float64)) for _ in range(3)]
    models = {"true": rsa.rdm(truth), "random": rsa.rdm(torch.rand(12, 3, generator=g))}
    res = rsa.bootstrap(models, subjects, n_boot=20, progress=False)
    res.save(tmp_path / "boot.pt")
    back = rsa.BootstrapResult.load(tmp_path / "boot.pt")
    assert back.names == res.names and isinstance(back.ceiling, rsa.NoiseCeiling)
    np.testing.assert_array_equal(back.samples, res.samples)
    assert (back.ceiling.lower, back.ceiling.upper) == (res.ceiling.lower, res.ceiling.upper)
    parts = [rsa.bootstrap({k: v}, subjects, n_boot=20, progress=False) for k, v in models.items()]
    joined = rsa.BootstrapResult.concat(parts)
    assert joined.names == ["true", "random"]
    np.testing.assert_allclose(joined.samples, res.samples)  # the same seed resamples the same stimuli
    res.ceiling.save(tmp_path / "ceiling.pt")
    assert tuple(rsa.NoiseCeiling.load(tmp_path / "ceiling.pt")) == tuple(res.ceiling)
    with pytest.raises(InsilicoError, match="no sample axis"):
        rsa.NoiseCeiling.concat([res.ceiling, res.ceiling])
    assert back.plot() is not None and back.ceiling.plot() is not None


def test_rdm_follows_the_result_protocol(tmp_path, monkeypatch):
    """rsa.RDM saves (one file, weights_only load), loads, 'concatenates' (one RDM) and plots like every result."""
    from insilico.results import Result

    g = torch.Generator().manual_seed(0)
    r = rsa.rdm(torch.rand(6, 4, generator=g, dtype=torch.float64), labels=list("abcdef"), name="V1")
    assert isinstance(r, Result) and r.method == "correlation"
    r.save(tmp_path / "rdm.pt")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("weights_only")) or real_load(*a, **k))
    back = rsa.RDM.load(tmp_path / "rdm.pt")
    assert loads == [True]
    assert type(back) is rsa.RDM and torch.equal(back.vector, r.vector) and back.vector.dtype == torch.float64
    assert (back.labels, back.method, back.name, back.n) == (r.labels, r.method, r.name, 6)
    assert torch.equal(back.matrix, r.matrix) and sorted(back.versions) == ["insilico", "numpy", "python", "torch"]
    assert rsa.compare(back, r, "spearman") == pytest.approx(1.0)
    assert rsa.RDM.concat([r]) is r
    with pytest.raises(InsilicoError, match="cannot be concatenated"):
        rsa.RDM.concat([r, r])
    assert back.plot() is not None
    rsa.NoiseCeiling(0.1, 0.2, "spearman").save(tmp_path / "ceiling.pt")
    with pytest.raises(InsilicoError, match="NoiseCeiling.load"):  # a file of another kind names its class
        rsa.RDM.load(tmp_path / "ceiling.pt")
    # the constructor is unchanged: positional (vector, labels, method, name), default labels, checks
    plain = rsa.RDM(torch.tensor([1.0, 2.0, 3.0]), None, "euclidean", "x")
    assert plain.labels == [0, 1, 2] and plain.method == "euclidean" and "RDM(3 stimuli 'x'" in repr(plain)
    with pytest.raises(InsilicoError, match="2 labels"):
        rsa.RDM([1.0, 2.0, 3.0], labels=["a", "b"])


# --- labels: RDMs meet in one stimulus order (issue 23 item 5) ----------------------------------
def _shuffled_pair(rng, n=12):
    x = rng.normal(size=(n, 30))
    labels = [f"img{i:02d}" for i in range(n)]
    perm = rng.permutation(n)
    model = rsa.rdm(x, labels=labels, name="model")
    brain = rsa.rdm(x[perm] + 0.05 * rng.normal(size=(n, 30)), labels=[labels[i] for i in perm], name="brain")
    return model, brain, perm


@pytest.mark.parametrize("method", ["spearman", "kendall_a", "pearson", "whitened_pearson"])
def test_compare_aligns_rdms_by_label(rng, method):
    model, brain, perm = _shuffled_pair(rng)
    score = rsa.compare(model, brain, method)
    assert score > 0.9, score
    # the same RDMs by position (labels dropped) score near 0: the alignment is what made it 0.9+
    positional = rsa.compare(model.vector, brain.vector, method)
    assert abs(positional) < 0.5, positional
    # the reordered brain RDM is exactly the one computed in the model's order
    from insilico.rsa.compare import aligned

    _, back = aligned(model, brain)
    assert back.labels == model.labels
    inverse = np.argsort(perm)
    np.testing.assert_allclose(back.matrix.numpy(), brain.matrix.numpy()[np.ix_(inverse, inverse)])


def test_bootstrap_and_noise_ceiling_align_subjects_by_label(rng):
    model, brain, _ = _shuffled_pair(rng)
    in_order = brain.subset([brain.labels.index(k) for k in model.labels])
    res = rsa.bootstrap({"m": model}, [brain, in_order], n_boot=20, progress=False)
    want = rsa.bootstrap({"m": model}, [in_order, in_order], n_boot=20, progress=False)
    np.testing.assert_allclose(res.estimate, want.estimate)
    np.testing.assert_allclose(res.samples, want.samples)
    lo, hi = rsa.noise_ceiling([model, brain])
    assert lo > 0.9 and hi > 0.9


def test_rdms_of_different_stimuli_are_refused_with_the_labels(rng):
    model, brain, _ = _shuffled_pair(rng)
    other = rsa.RDM(brain.vector, labels=brain.labels[:-1] + ["elsewhere"], name="V4")
    with pytest.raises(InsilicoError, match=r"'(V4|model)' and '(V4|model)' label different stimuli.*'elsewhere'"):
        rsa.compare(other, model)
    with pytest.raises(InsilicoError, match="label different stimuli"):
        rsa.bootstrap([model], [other], n_boot=5, progress=False)
    with pytest.raises(InsilicoError, match="label different stimuli"):
        rsa.noise_ceiling([model, brain, other])
    # repeated labels (categories) in another order: which stimulus is which is unknown
    cats = rsa.rdm(rng.normal(size=(4, 5)), labels=["face", "face", "body", "body"])
    with pytest.raises(InsilicoError, match="repeat labels"):
        rsa.compare(cats, cats.subset([2, 0, 1, 3]))


def test_rdms_without_labels_match_by_position(rng):
    model, brain, _ = _shuffled_pair(rng)
    plain = rsa.RDM(brain.vector)  # default labels 0 .. n-1: no labels of its own
    assert rsa.compare(model, plain) == pytest.approx(rsa.compare(model.vector, brain.vector), abs=1e-12)
    assert rsa.compare(brain, brain.matrix.numpy()) == pytest.approx(1.0)


def test_integer_labels_are_labels():
    """Ids 0..n-1 given as labels are labels (issue 23, fault 11): the same stimuli in another order score 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 20, generator=g, dtype=torch.float64)
    perm = torch.randperm(8, generator=g).tolist()
    model, brain = rsa.rdm(x, labels=list(range(8))), rsa.rdm(x[perm], labels=perm)
    assert model.labelled and brain.labelled and not rsa.rdm(x).labelled
    assert rsa.compare(model, brain) == pytest.approx(1.0) and rsa.compare(brain, model) == pytest.approx(1.0)
    assert rsa.compare(model, rsa.rdm(x[perm])) < 0.5  # no labels given: matched by position
    assert model.subset([1, 0]).labelled and not rsa.rdm(x).subset([1, 0]).labelled


def test_recording_ids_label_rdms_only_when_given(tmp_path):
    """A recording without ids gives unlabelled RDMs (also saved and loaded); explicit ids 0..n-1 are labels."""
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    perm = [3, 1, 5, 0, 2, 4]
    plain = insilico.Recording({"a": x})
    assert not plain.labelled and not rsa.rdm(plain)["a"].labelled and plain.ids == list(range(6))
    plain.save(tmp_path / "plain")
    assert not insilico.Recording.load(tmp_path / "plain").labelled
    given = insilico.Recording({"a": x[perm]}, ids=perm)
    given.save(tmp_path / "given")
    loaded = insilico.Recording.load(tmp_path / "given")
    assert loaded.labelled and loaded.ids == perm
    ordered = rsa.rdm(insilico.Recording({"a": x}, ids=list(range(6))))["a"]
    assert rsa.compare(ordered, rsa.rdm(loaded)["a"]) == pytest.approx(1.0)
    model = torch.nn.Sequential(torch.nn.Flatten()).eval()
    rec = insilico.Probe(model).record_stimuli(torch.rand(4, 1, 2, 2), ["0"], progress=False)
    assert not rec.labelled and not insilico.Recording.concat([rec, rec]).labelled


def test_the_rdm_of_an_unfinished_recording_is_labelled_by_the_stimuli_it_holds(tmp_path):
    """One share of a sharded recording holds stimuli 0, 1, 4, 5 of 6. Before: rdm() labelled its 4 rows with all 6
    ids (an InsilicoError about label counts), and an unlabelled one gave an RDM matched by position (row 2 is
    stimulus 4). Now its rows carry their stimuli's ids (0 .. n-1 when none were given), so it aligns by label."""
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    net = torch.nn.Flatten().eval()
    probe = insilico.Probe(net)
    for ids in (None, [f"s{i}" for i in range(6)]):
        out = tmp_path / f"share{ids is None}"
        part = probe.record_stimuli(x, [""], out=insilico.Job(out, shard=(0, 2)), batch_size=2, ids=ids,
                                    progress=False)
        assert not part.complete and part.indices.tolist() == [0, 1, 4, 5]
        held = rsa.rdm(part)[""]
        names = [i if ids is None else ids[i] for i in (0, 1, 4, 5)]
        assert held.labelled and held.labels == names
        whole = rsa.rdm(x.flatten(1), labels=[i if ids is None else ids[i] for i in range(6)])
        assert rsa.compare(held, whole.subset([0, 1, 4, 5]), "pearson") == pytest.approx(1.0)
