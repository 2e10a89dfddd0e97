"""rsa.time_resolved: a simulated time-resolved brain whose time points follow the model's steps, noise ceilings
per time point, and the refusals."""
import math

import pytest
import torch

from insilico import InsilicoError, rsa
from insilico.rsa import TimeResolvedResult, time_resolved


def _simulated(n_subjects=6, noise=1.0, seed=0):
    """3 model steps with independent RDMs (12 conditions); the brain shows step k at times 2k, 2k+1 (+ noise)."""
    steps = torch.rand(3, 66, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return steps, rsa.simulate_brain(steps, [0, 0, 1, 1, 2, 2], n_subjects=n_subjects, noise=noise, seed=seed)


def test_the_peaks_follow_the_simulated_brain_and_the_values_are_compare_alls():
    steps, subjects = _simulated()
    res = time_resolved(steps, subjects=subjects, times=[0.0, 0.05, 0.1, 0.15, 0.2, 0.25], method="spearman",
                        n_boot=50)
    assert res.similarity.shape == (3, 6) and res.steps == ["0", "1", "2"]
    assert (res.similarity.argmax(1) // 2).tolist() == [0, 1, 2]  # step k peaks at time 2k or 2k + 1
    assert torch.equal(res.peak_time, res.times[res.similarity.argmax(1)])
    brain = subjects.mean(0)
    for i in range(3):
        for j in range(6):
            assert res.similarity[i, j] == pytest.approx(rsa.compare(steps[i], brain[j], "spearman"), abs=1e-12)
    for t in range(6):
        lo, hi = rsa.noise_ceiling(subjects[:, t], "spearman")
        assert (float(res.ceiling_lower[t]), float(res.ceiling_upper[t])) == pytest.approx((lo, hi), abs=1e-12)
    assert (res.peak_low <= res.peak_time).all() and (res.peak_time <= res.peak_high).all()


def test_square_series_labelled_rdms_and_a_given_brain_series(tmp_path):
    steps, subjects = _simulated(noise=0.0)
    i, j = torch.triu_indices(12, 12, 1)
    square = torch.zeros(6, 12, 12, dtype=torch.float64)
    square[:, i, j] = subjects[0]
    square = square + square.transpose(1, 2)
    models = {f"layers.6@{k}": rsa.RDM.from_matrix(m) for k, m in enumerate(square[[0, 2, 4]])}
    res = time_resolved(models, square, method="pearson")
    assert res.steps == ["layers.6@0", "layers.6@1", "layers.6@2"] and res.ceiling_lower is None
    assert res.similarity.diagonal(offset=0)[0] == pytest.approx(1.0)
    assert res.peak_time.tolist() == [0.0, 2.0, 4.0] and math.isnan(float(res.peak_low[0]))
    res.save(tmp_path / "tr.pt")
    back = TimeResolvedResult.load(tmp_path / "tr.pt")
    assert torch.equal(back.similarity, res.similarity) and back.steps == res.steps
    assert res.plot().axes and res.plot(image=True).axes


def test_the_simulated_brain_is_the_schedule_plus_seeded_noise():
    steps = torch.rand(3, 66, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    quiet = rsa.simulate_brain(steps, [None, 2, 0], n_subjects=2, noise=0.0)
    assert torch.equal(quiet[1, 1], steps[2]) and torch.equal(quiet[0, 2], steps[0])
    assert torch.equal(quiet[0, 0], torch.full((66,), float(steps.mean()), dtype=torch.float64))
    noisy = rsa.simulate_brain(steps, [None, 2, 0], n_subjects=2, noise=0.5, seed=3)
    assert torch.equal(noisy, rsa.simulate_brain(steps, [None, 2, 0], n_subjects=2, noise=0.5, seed=3))
    assert not torch.equal(noisy[0], noisy[1])
    with pytest.raises(InsilicoError, match="the schedule names steps of 0..2"):
        rsa.simulate_brain(steps, [3])


def test_labelled_rdms_are_aligned_by_label_not_by_position():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 5, generator=g, dtype=torch.float64)
    names = [f"im{k}" for k in range(6)]
    model = [rsa.rdm(x, "euclidean", labels=names)]
    shuffled = [rsa.rdm(x[[3, 1, 0, 5, 2, 4]], "euclidean", labels=[names[k] for k in [3, 1, 0, 5, 2, 4]])]
    assert time_resolved(model, shuffled, method="pearson").similarity[0, 0] == pytest.approx(1.0)
    other = [rsa.rdm(x, "euclidean", labels=[f"other{k}" for k in range(6)])]
    with pytest.raises(InsilicoError, match="label different stimuli"):
        time_resolved(model, other)


def test_refusals():
    steps, subjects = _simulated()
    with pytest.raises(InsilicoError, match="66 pairs of conditions, the brain's 3"):
        time_resolved(steps, torch.rand(4, 3, dtype=torch.float64))
    with pytest.raises(InsilicoError, match="2 times for 6 brain RDMs"):
        time_resolved(steps, subjects[0], times=[0, 1])
    with pytest.raises(InsilicoError, match="at least 2 subjects"):
        time_resolved(steps, subjects=subjects[:1])
    with pytest.raises(InsilicoError, match="give the brain's RDM series"):
        time_resolved(steps)
    with pytest.raises(InsilicoError, match="a series of RDMs"):
        time_resolved(rsa.RDM.from_matrix(torch.ones(3, 3) - torch.eye(3)), subjects[0])
