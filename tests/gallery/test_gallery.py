"""Gallery builds: pages, links, resumption, sharding, and a headless-browser check."""
import html.parser
import json
import re
from pathlib import Path

import pytest

from insilico.cli import main
from insilico.errors import InsilicoError
from insilico.gallery import GallerySettings, build, pages
from insilico.options import Job

from conftest import GALLERY_TINY as TINY   # the `site` fixture (conftest.py) is built with these

STAGES_PER_LAYER = {"features.0": 5, "classifier.6": 3}   # conv layers add tuning and rf


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.targets.append(value)


def links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.targets


def test_build_writes_index_layer_and_unit_pages(site):
    root, summary = site
    assert summary["computed"] == {"features": 4, "exemplars": 4, "tuning": 2, "rf": 2, "lesion": 4}
    assert (root / "index.html").exists() and (root / "style.css").exists()
    assert sorted(p.name for p in (root / "layers").iterdir()) == ["classifier.6.html", "features.0.html"]
    for layer in ("features.0", "classifier.6"):
        assert sorted(p.name for p in (root / "units" / layer).glob("*.html")) == ["0.html", "1.html"]
    unit = (root / "units" / "features.0" / "1.html").read_text()
    for section in ("Feature visualization", "Top 3 exemplars", "Tuning to gratings", "Receptive field",
                    "Lesion effect per class"):
        assert section in unit
    assert "not computed yet" not in unit and unit.count('class="chart"') == 3     # orientation, SF, lesion bars
    assert unit.count("<svg") - unit.count('svg" class="zoom"') == 5     # and the RF map with its scale bar, the RF
    # outlines over the exemplars (besides each exemplar's field enlarged)
    linear = (root / "units" / "classifier.6" / "0.html").read_text()
    assert "Tuning" not in linear and "Lesion effect" in linear
    lesion = json.loads((root / "units" / "classifier.6" / "0" / "lesion.json").read_text())
    assert lesion["labelled"] and len(lesion["probability_change"]) == 16
    # silencing the logit of class 0 can only lower class 0's probability on its own images
    assert lesion["probability_change"][0] < 0


def test_units_csv_has_one_row_per_unit_with_the_page_values(site):
    import csv

    root, _ = site
    with open(root / "units.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["layer"], r["unit"]) for r in rows] == [("features.0", "0"), ("features.0", "1"),
                                                       ("classifier.6", "0"), ("classifier.6", "1")]
    for column in ("layer", "unit", "max_activation", "top_exemplar_activation", "responsive", "osi",
                   "preferred_orientation", "rf_size"):
        assert column in rows[0], column
    for row in rows:
        folder = root / "units" / row["layer"] / row["unit"]
        features = json.loads((folder / "features.json").read_text())
        exemplars = json.loads((folder / "exemplars.json").read_text())
        shown = next(r for r in pages.ranked_images(features) if r["maximizing"])   # what the page calls maximizing
        assert float(row["max_activation"]) == pytest.approx(shown["value"], rel=1e-5)
        assert row["maximizing_kind"] == shown["kind"]
        assert float(row["top_exemplar_activation"]) == pytest.approx(exemplars["activations"][0], rel=1e-5)
        assert (root / row["page"]).is_file()
        if row["layer"] == "classifier.6":        # no gratings for a linear layer: nothing to claim
            assert row["responsive"] == row["osi"] == row["preferred_orientation"] == row["rf_size"] == ""
            continue
        tuning = json.loads((folder / "tuning.json").read_text())
        rf = json.loads((folder / "rf.json").read_text())
        assert row["responsive"] == ("true" if tuning["responsive"] else "false")
        assert row["tuned_unit"] == tuning["unit"] and row["tuned_unit"].startswith("features.1[")  # after the ReLU
        assert float(row["rf_size"]) == pytest.approx(rf["size"], rel=1e-5)
        assert "size_se" in rf   # the size's SE over image halves (issue 28); None with one noise image (TINY)
        assert {"f0", "f1", "modulation_ratio", "cell_type", "osi_saturated", "spontaneous"} <= set(tuning)
        if tuning["responsive"] and tuning["f0"]:
            assert tuning["cell_type"] == ("simple" if tuning["f1"] / tuning["f0"] > 1 else "complex")
        if tuning["responsive"]:
            assert float(row["osi"]) == pytest.approx(tuning["osi"], rel=1e-5)
            assert row["preferred_colour"] in ("luminance", "red-green", "blue-yellow")   # colour gratings too
        else:                                      # no selectivity index for a unit that fails the criteria
            assert row["osi"] == row["preferred_orientation"] == "" and tuning["osi"] is None
            assert row["reason"] == tuning["reason"] != ""


def test_every_link_and_image_resolves(site):
    root, _ = site
    pages = list(root.rglob("*.html"))
    assert len(pages) == 1 + 1 + 2 + 4        # index, model page, layers, units
    checked = 0
    for page in pages:
        for target in links(page):
            assert not re.match(r"^[a-z]+:", target) and not target.startswith("/"), f"{page}: {target} not relative"
            assert (page.parent / target.split("#")[0]).is_file(), f"{page} links to missing {target}"
            checked += 1
    assert checked > 40


def test_rerun_computes_nothing_and_rewrites_no_image(site):
    root, _ = site
    images = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert len(images) == 2 * 8 + 2 * 7    # max, max-other, matched, 2 diverse, inhibit, exemplars (+ rf for conv)
    summary = build(GallerySettings(**TINY), root, progress=False)
    assert sum(summary["computed"].values()) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == images


def test_more_units_compute_only_the_new_ones_and_shards_add_up(tmp_path):
    settings = dict(TINY, layers=["classifier.6"], chunk=1)
    first = build(GallerySettings(**dict(settings, units=1)), tmp_path, progress=False)
    assert first["computed"]["features"] == 1
    ranks = [build(GallerySettings(**dict(settings, units=3)), Job(tmp_path, shard=(r, 2)), progress=False)
             for r in range(2)]
    assert [r["computed"]["features"] for r in ranks] == [1, 1]     # units 1 and 2, one per rank
    assert sorted(p.name for p in (tmp_path / "cache" / "classifier.6" / "features").glob("progress-*.json")) == \
        ["progress-0.json", "progress-1.json"]
    again = build(GallerySettings(**dict(settings, units=3)), tmp_path, progress=False)
    assert sum(again["computed"].values()) == 0
    assert "pending" not in (tmp_path / "layers" / "classifier.6.html").read_text()


def test_other_settings_are_refused(site):
    root, _ = site
    with pytest.raises(InsilicoError, match="another run .*setting steps: 2 \\(folder\\) vs 3"):
        build(GallerySettings(**dict(TINY, steps=3)), root, progress=False)


def test_cli_misspelt_layer_gets_close_matches_and_how_to_list(tmp_path, capsys):
    assert main(["gallery", "build", "--model", "minialex", "--layers", "features.00", "--units", "1", "--steps", "2",
                 "--out", str(tmp_path / "site"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "no module 'features.00'. Did you mean 'features.0'" in error and "Probe(model).names()" in error


def test_cli_builds_from_a_definition(tmp_path, capsys):
    definition = tmp_path / "tiny.json"
    definition.write_text(json.dumps(dict(TINY, model="minialex", layers=["classifier.6"])))
    out = tmp_path / "site"
    assert main(["gallery", "build", "--definition", str(definition), "--units", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert "open" in capsys.readouterr().out and (out / "units" / "classifier.6" / "0.html").exists()
    assert main(["gallery", "build", "--definition", str(definition), "--out", str(out), "--shard", "3"]) == 2


CHECK = """<script>
window.addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  document.body.setAttribute("data-images", document.images.length);
  document.body.setAttribute("data-broken", JSON.stringify(bad));
});
</script>"""
