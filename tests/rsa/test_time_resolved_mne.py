"""rsa.epochs_rdms and time_resolved on MNE Epochs: per-time-point RDMs over the event ids (correlation of the
conditions' mean patterns, crossnobis over folds), checked by hand; a simulated MEG experiment whose time points
follow the model's steps; the refusals."""
import numpy as np
import pytest
import torch

from insilico import InsilicoError, rsa

mne = pytest.importorskip("mne")

EVENT_ID = {"face": 1, "house": 2, "car": 3, "tool": 4}


def _epochs(data, labels, tmin=0.0, sfreq=100.0):
    """EpochsArray of ``data`` (n, channels, times), epoch k of condition code ``labels[k]``."""
    n = len(data)
    events = np.c_[np.arange(n) * 100, np.zeros(n, int), labels]
    info = mne.create_info(data.shape[1], sfreq, "eeg")
    event_id = {name: code for name, code in EVENT_ID.items() if code in set(labels)}
    return mne.EpochsArray(data, info, events, tmin=tmin, event_id=event_id, verbose=False)


def test_correlation_rdms_are_one_minus_r_of_the_conditions_mean_patterns():
    g = np.random.default_rng(0)
    labels = np.tile([1, 2, 3, 4], 5)
    data = g.normal(size=(20, 10, 6))
    rdms, times = rsa.epochs_rdms(_epochs(data, labels, tmin=-0.02))
    assert len(rdms) == 6 and np.allclose(times.numpy(), np.arange(-0.02, 0.04, 0.01))
    assert all(r.labels == list(EVENT_ID) for r in rdms)
    for t in (0, 3, 5):
        means = np.stack([data[labels == c, :, t].mean(0) for c in (1, 2, 3, 4)])
        expected = 1 - np.corrcoef(means)
        assert np.allclose(rdms[t].matrix.numpy(), expected, atol=1e-12)
    picked, _ = rsa.epochs_rdms(_epochs(data, labels), conditions=["car", "face"])  # a subset, in this order
    assert picked[0].labels == ["car", "face"]
    means = np.stack([data[labels == c, :, 0].mean(0) for c in (3, 1)])
    assert picked[0].vector.item() == pytest.approx(1 - np.corrcoef(means)[0, 1], abs=1e-12)


def test_crossnobis_without_noise_normalisation_is_the_cross_validated_euclidean_over_folds():
    g = np.random.default_rng(1)
    labels = np.repeat([1, 2, 3, 4], 6)  # grouped, so the folds alternate within each condition
    data = g.normal(size=(24, 7, 3))
    rdms, _ = rsa.epochs_rdms(_epochs(data, labels), "crossnobis", n_folds=2, noise=None)
    for t in range(3):
        fold_means = np.zeros((2, 4, 7))
        for k, c in enumerate((1, 2, 3, 4)):
            trials = data[labels == c, :, t]
            fold_means[0, k], fold_means[1, k] = trials[0::2].mean(0), trials[1::2].mean(0)
        expected = []
        for i in range(4):
            for j in range(i + 1, 4):
                d0, d1 = fold_means[0, i] - fold_means[0, j], fold_means[1, i] - fold_means[1, j]
                expected.append(d0 @ d1 / 7)  # mean over the two ordered fold pairs, per feature
        assert np.allclose(rdms[t].vector.numpy(), expected, atol=1e-12)
        assert rdms[t].labels == list(EVENT_ID)


def test_crossnobis_is_unbiased_where_correlation_sees_structure_in_noise():
    g = np.random.default_rng(2)
    labels = np.tile([1, 2, 3, 4], 40)
    data = g.normal(size=(160, 16, 4))  # no signal at all
    cv, _ = rsa.epochs_rdms(_epochs(data, labels), "crossnobis", n_folds=4)
    corr, _ = rsa.epochs_rdms(_epochs(data, labels), "correlation")
    spread = np.std([r.vector.numpy() for r in cv])
    assert abs(np.mean([r.vector.numpy() for r in cv])) < 3 * spread / np.sqrt(24)  # around 0
    assert np.mean([r.vector.numpy() for r in corr]) > 0.5  # the mean patterns of noise are far apart


def _simulated_meg(subject, schedule, steps_patterns, noise=1.0):
    """One subject: 4 conditions x 8 epochs; at time t the conditions show the patterns of model step
    schedule[t] (None: nothing), plus Gaussian noise."""
    g = np.random.default_rng(100 + subject)
    labels = np.tile([1, 2, 3, 4], 8)
    data = noise * g.normal(size=(32, steps_patterns.shape[2], len(schedule)))
    for t, k in enumerate(schedule):
        if k is not None:
            data[:, :, t] += steps_patterns[k][labels - 1]
    return _epochs(data, labels, tmin=-0.1, sfreq=20.0)


def test_time_resolved_on_epochs_finds_when_each_model_step_appears():
    g = np.random.default_rng(3)
    patterns = 3 * g.normal(size=(3, 4, 12))  # 3 model steps, 4 conditions, 12 sensors
    model = [rsa.rdm(p, "correlation", labels=list(EVENT_ID)) for p in patterns]
    schedule = [None, 0, 0, 1, 1, 2, 2]
    subjects = [_simulated_meg(s, schedule, patterns) for s in range(4)]
    res = rsa.time_resolved(model, subjects=subjects, method="pearson", n_boot=20)
    assert np.allclose(res.times.numpy(), subjects[0].times)
    assert (res.similarity.argmax(1).numpy() + 1) // 2 == pytest.approx([1, 2, 3])  # step k at times 2k+1, 2k+2
    assert res.ceiling_lower is not None and res.ceiling_lower.shape == (7,)
    assert torch.isfinite(res.peak_low).all() and (res.peak_low <= res.peak_high).all()
    one = rsa.time_resolved(model, subjects[0], method="pearson")  # one subject's epochs as the brain
    expected = rsa.compare_all(model, rsa.epochs_rdms(subjects[0])[0], "pearson")
    assert torch.allclose(one.similarity, expected.cpu(), atol=1e-12)
    shuffled = [model[0].labels[k] for k in (2, 0, 3, 1)]  # labelled RDMs are aligned by condition name
    assert torch.allclose(rsa.time_resolved(model, subjects[0], conditions=shuffled, method="pearson").similarity,
                          one.similarity, atol=1e-12)


def test_epochs_refusals_name_the_fix():
    data = np.random.default_rng(4).normal(size=(8, 5, 3))
    labels = np.array([1, 1, 1, 1, 1, 1, 1, 2])
    ep = _epochs(data, labels)
    with pytest.raises(InsilicoError, match=r"at least 3 each for crossnobis.*'house': 1"):
        rsa.epochs_rdms(ep, "crossnobis", n_folds=3)
    with pytest.raises(InsilicoError, match="n_folds >= 2"):
        rsa.epochs_rdms(ep, "crossnobis", n_folds=1)
    with pytest.raises(InsilicoError, match=r"at least 2 conditions.*'car': 0"):
        rsa.epochs_rdms(ep, conditions=["face", "car"])
    with pytest.raises(InsilicoError, match="takes an MNE Epochs"):
        rsa.epochs_rdms(data)
    with pytest.raises(InsilicoError, match="method"):
        rsa.epochs_rdms(ep, "euclidean")
    later = _epochs(np.random.default_rng(5).normal(size=(8, 5, 4)), np.tile([1, 2], 4))
    early = _epochs(np.random.default_rng(6).normal(size=(8, 5, 3)), np.tile([1, 2], 4))
    model = rsa.epochs_rdms(early)[0][:2]
    with pytest.raises(InsilicoError, match="different time points"):
        rsa.time_resolved(model, subjects=[early, later])
    with pytest.raises(InsilicoError, match="mixes MNE Epochs"):
        rsa.time_resolved(model, subjects=[early, torch.rand(3, 1, dtype=torch.float64)])
