"""Layer summaries (histograms, V1 references, the unit table) and the model page (RSA with IT, cached)."""
import json
import re

import numpy as np
import pytest

from insilico.gallery import brain, figures, summary
from insilico.gallery.build import UNIT_COLUMNS


def _row(unit, responsive=True, **values):
    row = {"layer": "conv", "unit": unit, "page": f"units/conv/{unit}.html", "responsive": responsive,
           "reason": None if responsive else "silent on the stimulus set", "max_activation": 2.0 + unit,
           "from_noise_activation": 2.0 + unit, "top_exemplar_activation": 1.5, "rf_size": 9.0}
    row.update(values)
    return row


def test_histogram_counts_the_finite_values_in_each_bin():
    svg = figures.histogram([0.05, 0.1, 0.15, 0.7, None, float("nan")], [0, 0.25, 0.5, 0.75, 1], "OSI", "OSI")
    assert "OSI (n = 4)" in svg
    assert re.findall(r"<title>[^<]*: (\d+)</title>", svg) == ["3", "1"]        # two non-empty bins


def test_status_counts_and_early_layers():
    rows = [_row(0), _row(1), _row(2, responsive=False), _row(3, responsive=False, reason="not driven by gratings")]
    assert [(label, n) for label, n, _ in summary.status_counts(rows)] == [
        ("responsive", 2), ("not driven by gratings", 1), (summary.SAME_RESPONSE, 1)]  # "silent": is_silent only
    linear = [_row(0, responsive=None, top_exemplar_activation=-0.5), _row(1, responsive=None)]
    assert [(label, n) for label, n, _ in summary.status_counts(linear)] == [
        ("above 0 on some photo", 1), ("never above 0 on the photos", 1)]
    assert summary.is_early(rows, image_size=64)                   # 9 px of 64
    assert not summary.is_early([_row(0, rf_size=40.0)], image_size=64)
    assert not summary.is_early(linear[:0], image_size=64)


def test_layer_summary_counts_only_responsive_units_and_cites_v1_on_early_layers():
    rows = [_row(0, osi=0.6, preferred_orientation=90.0, bandwidth=20.0, circular_variance=0.4),
            _row(1, osi=0.2, preferred_orientation=None, bandwidth=None, circular_variance=0.9),
            _row(2, responsive=False)]
    early = summary.layer_summary(rows, [None] * 3, image_size=64)
    assert "OSI (n = 2)" in early and "preferred orientation (n = 1)" in early
    assert "De Valois, Yund &amp; Hepler (1982)" in early and "Ringach, Shapley &amp; Hawken (2002)" in early
    assert "V1: median 40° full width over all cells" in early      # not a line over the tuned units' half widths
    assert "in <b>2 of 2</b> units (1 silent unit left out" in early   # from noise > best photo; silent apart
    late = summary.layer_summary([dict(r, rf_size=50.0) for r in rows], [None] * 3, image_size=64)
    assert "De Valois" not in late and "No V1 reference" in late


def test_unit_table_has_the_csv_columns_and_links_every_unit():
    rows = [_row(0, osi=0.5), _row(1, responsive=False)]
    html = summary.unit_table(rows, UNIT_COLUMNS)
    heads = re.findall(r'<th data-col="([^"]+)"', html)
    assert heads == [c for c in UNIT_COLUMNS if c != "page"]
    assert re.findall(r'<a href="([^"]+)">', html)[1:] == ["../units/conv/0.html", "../units/conv/1.html"]
    assert html.count("<tr>") == 3 and 'data-v="0.5"' in html and "<script>" in html
    assert "http" not in html.split("<script>")[1]                 # no external file: opens from file://


def test_brain_json_is_cached_and_matches_the_rsa_library(site):
    from insilico import data, models, rsa

    root, _ = site
    res = json.loads((root / "brain.json").read_text())
    assert res["layers"] == ["features.0", "classifier.6"] and res["units"]["features.0"] == "features.1"
    ceiling = res["human_it_noise_ceiling"]
    assert 0 < ceiling["lower"] < ceiling["upper"] <= 1
    for region in ("human_it", "monkey_it"):
        values = {layer: res[region][layer]["similarity"] for layer in res["layers"]}
        assert res["best_layer"][region] == max(values, key=values.get)
    # the same number straight from insilico.rsa: layer RDM vs each subject, mean over subjects
    d = data.kriegeskorte2008(size=64)
    layer = rsa.model_rdms(models.load("minialex"), d.images, units=["features.1"], progress=False)["features.1"]
    direct = np.mean([rsa.compare(layer, s, "spearman") for s in d.human_it_subjects()])
    assert res["human_it"]["features.0"]["similarity"] == pytest.approx(direct, abs=1e-6)
    page = (root / "model.html").read_text()
    assert page.count('role="img"') >= 3 and "noise ceiling" in page and figures.BEST in page
    assert 'href="model.html"' in (root / "index.html").read_text()


def test_only_rank_0_computes_the_brain_file(site, tmp_path):
    from insilico.gallery.stages import Work

    root, _ = site
    work = Work(model=None, settings=None, root=tmp_path, shape=(3, 64, 64))
    assert brain.ensure(work, ["features.0"], rank=1) is None and not (tmp_path / "brain.json").exists()
    (tmp_path / "brain.json").write_text((root / "brain.json").read_text())
    stale = brain.ensure(work, ["features.0"], rank=1)              # other layers: left for rank 0
    assert stale["layers"] == ["features.0", "classifier.6"]
    assert brain.ensure(work, ["features.0", "classifier.6"], rank=0) == stale   # cached: nothing recomputed


def test_a_model_too_small_for_the_92_images_gets_a_reason_not_a_crash(tmp_path):
    import torch

    from insilico.gallery.settings import GallerySettings
    from insilico.gallery.stages import Work

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU())
    work = Work(model=net, settings=GallerySettings(), root=tmp_path, shape=(3, 6, 6))
    res = brain.ensure(work, ["0"], rank=0)
    assert "at least 8 pixels" in res["unavailable"] and brain.read(tmp_path) == res
    assert "not available for this model" in brain.model_page("net", res, [], 6)
