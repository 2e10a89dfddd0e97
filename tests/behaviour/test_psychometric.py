"""psychometric(): the manipulations by construction, a threshold recovered from a synthetic observer, a bundled
model end to end, a lesion as a psychometric shift."""
import math

import numpy as np
import pytest
import torch

from insilico import InsilicoError
from insilico.behaviour import degrade, fit_logistic, psychometric, threshold
from insilico.behaviour.psychometric import PsychometricResult, _fit


def test_the_manipulations_do_what_they_say():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(degrade(x, "contrast", 0.3), 0.5 + 0.3 * (x - 0.5))
    assert torch.equal(degrade(x, "contrast", 0.0), torch.full_like(x, 0.5))
    noisy = degrade(x, "noise", 0.1, seed=1)
    assert (noisy - x).abs().max() <= 0.1 + 1e-6 and noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(noisy, degrade(x, "noise", 0.1, seed=1)) and not torch.equal(noisy, degrade(x, "noise", 0.1))
    assert torch.equal(degrade(x[1:2], "noise", 0.1, seed=1)[0], noisy[1])  # an image's noise: alone as in a batch
    assert torch.allclose(degrade(x, "noise", 0.3, seed=1) - x, ((noisy - x) * 3).clamp(-x, 1 - x), atol=1e-6)
    occluded = degrade(x, "occlusion", 0.4, seed=0)
    grey = (occluded == 0.5).all(1).double().mean((1, 2))
    assert (grey >= 0.4).all() and (grey < 0.4 + 0.25).all()  # patches of a quarter side: at most one patch over
    assert torch.equal(degrade(x, "occlusion", 0.0), x)
    with pytest.raises(InsilicoError, match="parameter must be one of"):
        degrade(x, "blur", 1.0)
    with pytest.raises(InsilicoError, match=r"contrast level must lie in \[0, 1\]"):
        degrade(x, "contrast", 1.5)


def test_a_threshold_is_recovered_from_a_synthetic_logistic_observer():
    """Image i is right at level x when u_i < p(x): a seeded observer whose accuracy follows a known logistic."""
    levels = np.linspace(0.0, 1.0, 11)
    chance, alpha, beta = 0.25, 0.35, 0.08
    p = chance + (1 - chance) / (1 + np.exp(-(levels - alpha) / beta))
    u = np.random.default_rng(0).random(4000)
    correct = (u[None, :] < p[:, None]).astype(float)
    (a, b, lapse, value, criterion), interval, bounds = _fit(levels, correct, chance, None, 50, 0)
    assert a == pytest.approx(alpha, abs=0.01) and b == pytest.approx(beta, abs=0.01) and lapse < 0.01
    assert value == pytest.approx(alpha, abs=0.01) and interval[0] < value < interval[1]
    assert criterion == pytest.approx(chance + (1 - lapse - chance) / 2)
    assert (bounds[:, 0] <= correct.mean(1)).all() and (correct.mean(1) <= bounds[:, 1]).all()
    # an explicit criterion: the level where p = 0.9, from the logistic's inverse
    f = (0.9 - chance) / (1 - chance)
    assert threshold(alpha, beta, chance, 0.9) == pytest.approx(alpha + beta * math.log(f / (1 - f)))
    assert math.isnan(threshold(alpha, beta, chance, 0.9, lapse=0.2))  # a top of 0.8 never reaches 0.9
    falling = fit_logistic(1 - levels, p, chance)  # accuracy falling with the level: a negative scale
    assert falling[0] == pytest.approx(1 - alpha, abs=1e-4) and falling[1] == pytest.approx(-beta, abs=1e-4)


def test_a_bundled_model_end_to_end_and_a_lesion_as_a_psychometric_shift(tmp_path):
    import insilico
    from insilico import models
    from insilico.models import photos

    net = models.load("minialex")
    x, y = photos.held_out(per_class=1)
    res = psychometric(net, x, y, "contrast", levels=[0.0, 0.1, 0.3, 1.0], n_boot=20, progress=False)
    clean = insilico.behaviour.confusion(net, x, y, n_boot=0, progress=False).accuracy
    assert float(res.accuracy[-1]) == pytest.approx(clean)  # contrast 1 is the image itself
    grey_answer = int(net.eval()(torch.full((1, 3, 64, 64), 0.5)).argmax())
    assert float(res.accuracy[0]) == pytest.approx(float((y == grey_answer).double().mean()))  # one grey image
    assert res.correct.shape == (4, 16) and res.chance == 1 / 16
    res.save(tmp_path / "p.pt")
    back = PsychometricResult.load(tmp_path / "p.pt")
    assert torch.equal(back.correct, res.correct) and back.alpha == res.alpha and back.parameter == "contrast"
    assert res.plot().axes
    with insilico.Probe(net).lesion("features.0"):  # the first conv silenced: nothing is seen at any contrast
        lesioned = psychometric(net, x, y, "contrast", levels=[0.0, 0.1, 0.3, 1.0], n_boot=0, progress=False)
    assert len(set(lesioned.accuracy.tolist())) == 1  # flat: every level gives the same answers


class _Brightness(torch.nn.Module):
    """Class 0 'dark' when the image's mean is below grey, class 1 'light' above: right at every contrast > 0."""

    def forward(self, x):
        m = x.mean((1, 2, 3)) - 0.5
        return torch.stack([-m, m], -1)


def test_a_labelled_folder_gives_its_classes_matched_by_name(tmp_path):
    """Before: labels= was required, a folder's own classes were refused."""
    skimage = pytest.importorskip("skimage.io")
    for name, value in [("dark/a.png", 20), ("dark/b.png", 60), ("light/c.png", 200), ("light/d.png", 240)]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        skimage.imsave(tmp_path / name, np.full((4, 4, 3), value, np.uint8), check_contrast=False)
    model = _Brightness()
    res = psychometric(model, str(tmp_path), parameter="contrast", levels=[0.25, 0.5, 1.0], n_boot=0, progress=False)
    assert res.correct.all()                      # the folder's order is the model's outputs (2 of each)
    model.classes = ["light", "dark"]             # now output 0 means 'light': every answer is wrong
    res = psychometric(model, str(tmp_path), parameter="contrast", levels=[0.25, 0.5, 1.0], n_boot=0, progress=False)
    assert not res.correct.any()


def test_a_threshold_beyond_the_tested_levels_is_not_reported_as_measured():
    """Accuracy 1 -> 0.85 over noise 0..0.6 (chance 0.25, criterion 0.5): the fitted curve reaches 0.5 only past
    the last level (before: that extrapolation was the threshold, e.g. -3.4 or 2.1, with a finite interval)."""
    levels = np.array([0.0, 0.2, 0.4, 0.6])
    correct = np.stack([np.arange(100) < 100 * a for a in (1.0, 0.95, 0.9, 0.85)]).astype(float)
    alpha, beta, lapse = fit_logistic(levels, correct.mean(1), 0.25, lapse=False)
    assert not 0.0 <= threshold(alpha, beta, 0.25, 0.5) <= 0.6   # the fit's own crossing lies outside
    (_, _, _, value, _), interval, _ = _fit(levels, correct, 0.25, 0.5, 20, 0)
    assert math.isnan(value) and all(math.isnan(v) for v in interval)
    inside = np.stack([np.arange(100) < 100 * a for a in (1.0, 0.9, 0.3, 0.25)]).astype(float)
    (_, _, _, value, _), _, _ = _fit(levels, inside, 0.25, 0.5, 0, 0)
    assert 0.2 < value < 0.4                                     # a crossing within the levels stands


def test_refusals():
    x, y = torch.rand(4, 3, 8, 8), [0, 1, 0, 1]
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    with pytest.raises(InsilicoError, match="at least 3 levels"):
        psychometric(net, x, y, levels=[0.5, 1.0], progress=False)
    with pytest.raises(InsilicoError, match="criterion must lie between chance"):
        psychometric(net, x, y, criterion=0.4, progress=False)
    with pytest.raises(InsilicoError, match="parameter must be one of"):
        psychometric(net, x, y, "blur", progress=False)


def _synthetic(alpha, levels, u, chance=0.25, beta=0.08):
    p = chance + (1 - chance) / (1 + np.exp(-(levels - alpha) / beta))
    correct = (u[None, :] < p[:, None]).astype(float)
    (a, b, lapse, value, criterion), interval, bounds = _fit(levels, correct, chance, None, 0, 0)
    return PsychometricResult(torch.tensor(levels), torch.tensor(correct.mean(1)), torch.tensor(correct > 0),
                              torch.tensor(bounds[:, 0]), torch.tensor(bounds[:, 1]), a, b, lapse, value, interval,
                              chance, criterion, "contrast")


def test_a_lesion_shows_as_a_threshold_shift_with_a_paired_interval():
    levels = np.linspace(0.0, 1.0, 11)
    u = np.random.default_rng(0).random(2000)
    intact, lesioned = _synthetic(0.35, levels, u), _synthetic(0.55, levels, u)
    shift = intact.shift(lesioned, n_boot=50)
    assert shift["shift"] == pytest.approx(0.2, abs=0.02) and shift["low"] < shift["shift"] < shift["high"]
    assert intact.shift(intact, n_boot=20)["shift"] == 0.0
    with pytest.raises(InsilicoError, match="same parameter, levels and images"):
        intact.shift(_synthetic(0.5, levels[:-1], u))


def test_a_flat_curve_has_no_threshold_whatever_the_order_of_the_levels():
    """A model whose accuracy never moves (here: the same answer for every image) has no threshold. Before: the
    fit put the logistic's top at chance (lapse = 1 - chance) and returned its starting point, the first level
    given: threshold 0.0 for levels [0, .2, .5, 1] and 1.0 for [1, 0, .5, .2] -- a number, without a word."""
    alpha, beta, lapse = fit_logistic([0.0, 0.2, 0.5, 1.0], [0.25] * 4, 0.25, lapse=True)
    assert math.isnan(alpha) and math.isnan(beta)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    torch.nn.init.zeros_(net[1].weight)
    torch.nn.init.zeros_(net[1].bias)
    images = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for levels in ([0.0, 0.2, 0.5, 1.0], [1.0, 0.0, 0.5, 0.2]):
        result = psychometric(net, images, [0, 1, 2, 3] * 2, "noise", levels=levels, n_boot=3, progress=False)
        assert np.allclose(result.accuracy, 0.25) and math.isnan(result.threshold)
