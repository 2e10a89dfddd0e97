"""A fresh physiologist's audit of the bundled site (issue 28, target 3): what a page says where a reader would
otherwise misread a figure. Pages are rendered from small hand-made stage dicts (no build).

Measured on the bundled site (minialex, seed 0): 2,406 top exemplars of 292 of 1,024 units sit at or below 0
before the ReLU (the unit does not fire on them; 22 of those units are not silent); features.0[43]'s best 8
exemplars tie within 5e-6 (flat patches of one photo); a 1-split RF error of 0.24 px where sizes on fresh noise
differ by up to 3.5 px; the V1 bandwidth note 403 px wide in a 270-px figure (cut at both ends); raw pixels score
0.080 with human IT, inside every layer's interval.
"""
import re

import pytest

from insilico.gallery import figures, pages, summary
from insilico.gallery.methods import methods_html


def _unit(exemplar_values, rf=None):
    ex = {"k": len(exemplar_values), "n_stimuli": 256, "labels": ["a"] * len(exemplar_values),
          "activations": exemplar_values, "indices": list(range(len(exemplar_values))), "neurons": []}
    data = {"exemplars": ex, "_spatial": rf is not None}
    if rf is not None:
        data["rf"] = rf
    return pages.unit_page("site", "conv", "conv", 0, data, (None, 1), {})


def test_exemplars_a_relu_unit_does_not_fire_on_are_said_so():
    html = _unit([0.07, -0.01, -0.02])
    assert "2 of the 3 are at or below 0 before the nonlinearity" in html
    assert "does not fire on such a photo" in html
    assert "at or below 0" not in _unit([3.0, 2.0, 0.5])        # a unit that fires on all its exemplars: no caveat


def test_exemplars_tied_within_rounding_are_said_to_have_no_order():
    # features.0[43]: uniform patches of one photo give the same value up to float residue at many positions
    html = _unit([1.3667798, 1.3667752, 1.3667648, 1.3583])
    assert "2 of the other 3 tie with the best within rounding (their order is arbitrary)" in html
    assert "tie with the best" not in _unit([1.3667798, 1.30, 1.2])
    assert pages.exemplar_caveats([0.0, 0.0]).count("tie") == 0  # a unit at 0 everywhere: not "ties", at or below 0


def test_the_rf_error_from_one_split_is_not_called_a_standard_error():
    rf = {"neuron": "conv[0,7,7]", "size": 44.5, "size_se": 0.24, "n_images": 32, "box": [10, 54, 10, 54],
          "map_center": [7, 7], "stride": [4, 4], "input_size": [64, 64]}
    section = _unit([3.0], rf).split("<h2>Receptive field")[1]  # an older record: no se_groups
    assert "standard error" not in section
    assert "two halves of the 32 noise images, one split" in section and "&plusmn; 0.24" in section
    section = _unit([3.0], dict(rf, size_se=1.7, se_groups=8)).split("<h2>Receptive field")[1]
    assert "standard error, a bootstrap over 8 groups of the 32 noise images; it matches the spread" in section
    assert "one split" not in section
    few = _unit([3.0], dict(rf, size_se=1.7, se_groups=4, n_images=4)).split("<h2>Receptive field")[1]
    assert "4 groups of the 4 noise images; with so few groups it runs wider" in few  # 1.7x the SD on minialex
    method = methods_html(spatial=True).split('id="methods-rf"')[1]
    assert "bootstrap resamples of 8 groups" in method and "one split" in method  # older pages say which they give


def _early_rows(n):
    return [{"layer": "conv", "unit": u, "page": f"units/conv/{u}.html", "responsive": True, "reason": "",
             "osi": 0.6, "preferred_orientation": 0.0, "bandwidth": 20.0, "rf_size": 9.0,
             "top_exemplar_activation": 1.0, "from_noise_activation": 2.0} for u in range(n)]


def test_the_f1_f0_panel_of_an_early_layer_has_v1s_bimodal_distribution_beside_it():
    rows = _early_rows(2)
    tunings = [{"cell_type": "simple", "modulation_ratio": 1.6, "sf_bandwidth": 1.5},
               {"cell_type": "simple", "modulation_ratio": 1.7, "sf_bandwidth": 2.5}]
    early = summary.layer_summary(rows, tunings, image_size=64)
    panel = next(svg for svg in re.findall(r"<svg.*?</svg>", early, re.S) if "F1/F0 (n = 2)" in svg)
    assert "V1: bimodal [5]" in panel
    assert "Skottun, De Valois" in early                          # reference [5] in the list
    late = summary.layer_summary([dict(r, rf_size=50.0) for r in rows], tunings, image_size=64)
    assert "V1: bimodal" not in late and "Skottun, De Valois" not in late


def test_the_sf_bandwidth_note_gives_the_layers_mean_beside_v1s_mean():
    rows = _early_rows(2)
    tunings = [{"sf_bandwidth": 1.5}, {"sf_bandwidth": 2.5}]
    html = summary.layer_summary(rows, tunings, image_size=64)
    assert "V1 fovea: mean 1.4 octaves [4]; this layer: mean 2 over these 2" in html


def test_a_histogram_widens_to_show_its_whole_note():
    note = "V1: median 40° full width over all cells, untuned ones too [1]; this layer so: 120°"
    svg = figures.histogram([10.0, 20.0], [0, 45, 90], "bandwidth", "orientation bandwidth", note=note)
    width = float(re.search(r'<svg[^>]*\bwidth="(\d+)"', svg).group(1))
    assert width >= 4.9 * len(note) + 10                         # Chromium: 403 px for this note at 10 px
    narrow = figures.histogram([10.0], [0, 45, 90], "bandwidth", "orientation bandwidth", note="V1 [1]")
    assert 'width="270"' in narrow                               # a short note keeps the default width


def test_the_build_settings_say_a_class_of_the_bundled_photos_is_one_photo():
    assert "one photo per class" in pages._setting("stimuli", "photos")


def test_raw_pixels_are_scored_against_it_like_a_layer_and_said_on_the_model_page():
    # the bundled model: pixels reach 0.080 with human IT, inside every layer's interval; the page must say so
    import numpy as np
    from scipy.spatial.distance import squareform
    from scipy.stats import spearmanr

    from insilico import data
    from insilico.gallery import brain
    from insilico.gallery.stages import _fit

    d = data.kriegeskorte2008(size=64)
    images = _fit(d.images, (3, 64, 64))
    found = brain.pixel_baseline(images, d, n_boot=20, seed=0)
    pix = 1 - np.corrcoef(images.flatten(1).double().numpy())               # independent: numpy and scipy
    tri = np.triu_indices(92, 1)
    subjects = [squareform(np.asarray(s.numpy(), float)) for s in d.human_it_subjects()]
    direct = np.mean([spearmanr(pix[tri], s[tri])[0] for s in subjects])
    assert found["human_it"].estimate[0] == pytest.approx(direct, abs=1e-6)
    assert direct == pytest.approx(0.080, abs=0.002)
    lo, hi = found["human_it"].ci[0]
    res = {"layers": ["a", "b"], "pixels": {r: {"similarity": float(found[r].estimate[0]),
                                                "ci": [float(c) for c in found[r].ci[0]]} for r in found},
           "above_pixels": {"human_it": [], "monkey_it": ["b"]}}
    text = brain.pixels_text(res)
    assert f"human IT rho {direct:.3f} [{lo:.3f}, {hi:.3f}], no layer above it" in text
    assert "1 of 2 layers (b) above it" in text


def test_a_layer_is_above_pixels_only_when_the_paired_difference_excludes_0():
    from types import SimpleNamespace

    import numpy as np

    from insilico.gallery import brain

    rng = np.random.default_rng(0)
    pixels = rng.normal(0.08, 0.03, (200, 1))
    layers = SimpleNamespace(names=["same", "higher", "noisy"],
                             samples=np.hstack([pixels + 0.001, pixels + 0.05, pixels + rng.normal(0.05, 0.05, (200, 1))]))
    # "same" is above on every resample but by 0.001: still above (paired); "noisy" overlaps 0 at the 2.5% quantile
    assert brain.above(layers, SimpleNamespace(samples=pixels)) == ["same", "higher"]


def test_an_output_units_page_says_what_its_exemplars_and_lesion_show_by_construction():
    # bundled site: 5 of the 16 logits have no photo of their class among their top 9 (camera, coffee, grass, ihc,
    # moon); setting a logit to 0 drops its own class's probability, the largest bar in 12 of 16 units
    ex = {"k": 3, "n_stimuli": 48, "labels": ["moon", "moon", "coffee"], "activations": [6.0, 5.5, 5.0],
          "indices": [0, 1, 2], "neurons": []}
    lesion = {"classes": ["coffee", "moon"], "labelled": True, "probability_change": [-0.3, 0.01], "n_stimuli": 4}
    html = pages.unit_page("site", "fc", "fc", 0, {"exemplars": ex, "lesion": lesion}, (None, 1),
                           {"classes": ["coffee", "moon"]})
    assert "1 of these 3 exemplars is a photo of class “coffee”" in html
    lesion_part = html.split("Lesion effect per class")[1]
    assert "by construction" in lesion_part and "the bar of “coffee” is no finding" in lesion_part
    hidden = pages.unit_page("site", "conv", "conv", 0, {"exemplars": ex, "lesion": lesion}, (None, 1), {})
    assert "is a photo of class" not in hidden and "by construction" not in hidden.split("Lesion effect")[1]


def test_an_f1_f0_read_at_the_edge_of_the_tested_sfs_is_said_so():
    # bundled site: 61 of 166 simple units peak at the lowest SF (1 cycle/image), where the F1/F0 call is not read
    # at a bracketed optimum as Skottun et al. read it
    record = {"unit": "conv.1[0,7,7]", "orientations": [0.0, 90.0], "curve": [2.0, 1.0], "sfs": [1.0, 2.0],
              "sf_curve": [2.0, 1.0], "baseline": 0.0, "responsive": True, "reason": "", "f0": 1.0, "f1": 1.6,
              "modulation_ratio": 1.6, "cell_type": "simple", "sf_peak_at_edge": True, "spontaneous": False}
    assert "F1/F0 1.60: simple (read at the edge of the tested SFs, not at a bracketed optimum)" in pages._tuning_html(record)
    inside = pages._tuning_html(dict(record, sf_peak_at_edge=False))
    assert "F1/F0 1.60: simple;" in inside and "bracketed optimum" not in inside
    rows = _early_rows(2)
    text = summary.physiology_text(rows, [record, dict(record, sf_peak_at_edge=False)])
    assert "the simple/complex call of 1 is read at an SF at the edge of the tested range" in text


def test_rf_sizes_of_a_layer_whose_fields_fill_the_image_are_said_to_be_cut_at_its_edge():
    # bundled site: features.10's median field is 60.7 px of 64, and 62 of its 96 boxes reach the image's edge
    from insilico.gallery import brain

    html = brain.rf_html([("conv1", [9.0, 9.0]), ("conv5", [55.0, 61.0, 62.0])], 64)
    assert "conv5: the median field spans 85% or more of the image" in html and "lower bound" in html
    assert "conv1: the median field" not in html
    assert "lower bound" not in brain.rf_html([("conv1", [9.0, 9.0])], 64)


def test_exemplars_that_are_mostly_crops_of_one_photo_are_said_so():
    # bundled site: the top 9 come from a median of 2-3 photos, from 1 photo in 235 of 1,024 units
    text = pages.exemplar_caveats([5.0, 4.0, 3.0, 2.0], ["moon", "moon", "moon", "text"])
    assert "3 of the 4 share one label (“moon”)" in text and "not independent stimuli" in text
    assert "share one label" not in pages.exemplar_caveats([5.0, 4.0, 3.0, 2.0], ["moon", "text", "page", "coins"])
    html = _unit([5.0, 4.0, 3.0, 2.0])                          # _unit labels every exemplar "a"
    assert "4 of the 4 share one label (“a”)" in html
