"""The gallery's lesion panels carry their noise (issue 28): each bar's Student's t interval over its class's images, hollow bars where it includes 0, floor / ceiling flags, and the layer's split-half reliability."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

import insilico
from insilico.experiments import lesion_sweep
from insilico.gallery import pages
from insilico.gallery.settings import GallerySettings
from insilico.gallery.stages import LESION_MIN_PER_CLASS, Work, _per_class, lesion, lesion_reliability

SVG = "{http://www.w3.org/2000/svg}"


def _dead_channel_net():
    """Linear(4, 3) -> ReLU -> Linear(3, 2) whose hidden channel 0 never fires (bias -100): lesioning it is no change."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight[0] = 0.0
        net[0].bias[0] = -100.0
    return net


def test_a_lesion_that_changes_nothing_has_a_zero_interval_and_hollow_bars():
    net, x = _dead_channel_net(), torch.rand(24, 4)
    y = torch.arange(24) % 2
    found = lesion_sweep(net, "1", insilico.pixels.raw(x), y, groups=[[0], [1]], n_boot=0, progress=False)
    dead, live = _per_class(found, {"by": y.numpy(), "n_classes": 2, "shown": [0, 1], "names": ["a", "b"],
                                    "flagged": True})
    assert dead["probability_change"] == [0.0, 0.0] and dead["interval"] == [[0.0, 0.0], [0.0, 0.0]]
    assert dead["nonzero"] == [False, False]
    for k, (lo, hi) in enumerate(live["interval"]):     # a real change: its mean inside a non-degenerate interval
        changes = [v for v, c in zip(live["image_change"], live["image_class"]) if c == k]
        assert np.mean(changes) == pytest.approx(live["probability_change"][k], abs=1e-12)
        assert lo < hi and live["nonzero"][k] == (lo > 0 or hi < 0)
    svg = ET.fromstring(pages._lesion_html(dict(dead, labelled=True, n_stimuli=24)).split("</p>", 1)[1])
    assert [r.get("fill") for r in svg.iter(f"{SVG}rect")] == ["none", "none"]


def test_too_few_images_per_class_give_no_interval():
    """One or two images per class cannot measure noise (a resample of one image is that image): no interval, no
    claim that a bar differs from 0, and the panel says it is an indication."""
    net, x = _dead_channel_net(), torch.rand(2 * (LESION_MIN_PER_CLASS - 1), 4)
    y = torch.arange(len(x)) % 2
    found = lesion_sweep(net, "1", insilico.pixels.raw(x), y, groups=[[1]], n_boot=0, progress=False)
    (d,) = _per_class(found, {"by": y.numpy(), "n_classes": 2, "shown": [0, 1], "names": ["a", "b"]})
    assert "interval" not in d and "nonzero" not in d
    assert "indication, not a measurement" in pages._lesion_html(dict(d, labelled=True, n_stimuli=len(x)))


def test_the_lesion_stage_bars_are_the_probe_lesions_per_image_changes_with_intervals(tmp_path):
    """On the bundled photos: each image's change is the Probe's lesion of that logit, the bar its class mean, and
    silencing the logit of class 0 lowers class 0's probability on every one of its images: an interval below 0."""
    model = insilico.models.load("minialex")
    work = Work(model, GallerySettings(lesion_per_class=8), tmp_path, (3, 64, 64))
    d0, _ = lesion(work, "classifier.6", [0, 1])
    x, y, _ = work.lesion_set
    with torch.no_grad():
        base = torch.softmax(model(x).double(), -1)
        with insilico.Probe(model).lesion("classifier.6[0]"):
            cut = torch.softmax(model(x).double(), -1)
    change = (cut - base)[torch.arange(len(x)), y]
    assert np.allclose(d0["image_change"], change.numpy(), atol=1e-6)
    assert d0["image_class"] == y.tolist() and d0["method"] == "t"
    from scipy import stats
    own = change[y == 0].numpy()                 # class 0's whisker: Student's t by hand
    half = stats.t.ppf(0.975, len(own) - 1) * own.std(ddof=1) / np.sqrt(len(own))
    assert np.allclose(d0["interval"][0], [own.mean() - half, own.mean() + half], atol=1e-6)
    assert d0["interval"][0][1] < 0 and d0["nonzero"][0]
    assert len(d0["at_floor"]) == len(d0["at_ceiling"]) == len(d0["baseline_accuracy"]) == 16
    html = pages._lesion_html(d0)
    assert "95% interval of each bar (Student's t" in html and f"{sum(d0['nonzero'])} of 16 bars differ from 0" in html


def test_the_split_half_reliability_of_a_lesion_matrix_is_one_without_noise_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(4), 10)
    effects = rng.normal(size=(30, 4))                       # units x classes, each image of a class the same
    clean = [{"image_change": effects[u, classes].tolist(), "image_class": classes.tolist(), "classes": list("abcd")}
             for u in range(30)]
    assert lesion_reliability(clean)["split_half_r"] == pytest.approx(1.0, abs=1e-9)
    noise = [dict(d, image_change=rng.normal(size=len(classes)).tolist()) for d in clean]
    found = lesion_reliability(noise)
    assert abs(found["split_half_r"]) < 0.2 and found["per_class"] == 10 and found["units"] == 30
    assert lesion_reliability(clean[:1]) is None                       # one unit: no matrix to correlate
    html = pages.layer_page("s", "fc", "fc", [0], set(), [{"unit": 0, "page": "", "lesion_bars": 4,
                                                            "lesion_nonzero": 1}], lesion=found)
    assert "1 of 4 lesion bars" in html and "Test-retest" in html
