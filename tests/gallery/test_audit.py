"""A physiologist's audit of the rebuilt gallery (issues 26 and 28): no page figure true by construction, units named
for what they are, and units.csv carrying what the pages show.

- an attention head's value is a norm (never below 0): its layer page draws no "above 0 on some photo" bar;
- unit pages of a head layer say "head N", of a token layer "feature N at the centre patch token";
- units.csv keeps its columns and order and appends the physiology the tuning and RF records carry (F1/F0, cell
  type, OSI at the floor, spontaneous activity, the RF size's standard error and its image count), for responsive
  units only, like the indices.

Pages are rendered from hand-made records (no build).
"""
import csv
import importlib
import io
import re

from insilico.gallery import pages, summary

build = importlib.import_module("insilico.gallery.build")  # the module (the package exports the function build)

HEADS = "blocks.0.attn:heads"


def _head_row(unit, top, noise):
    return {"layer": HEADS, "unit": unit, "page": f"units/{HEADS}/{unit}.html", "top_exemplar_activation": top,
            "from_noise_activation": noise, "maximizing_kind": "from noise", "max_activation": noise}


def test_a_head_layer_draws_no_above_zero_bar_which_every_head_passes():
    rows = [_head_row(0, 1.0, 2.0), _head_row(1, 0.5, 0.2)]
    heads = summary.layer_summary(rows, [None, None], heads=True)
    assert "above 0 on some photo" not in heads and "Summary of 2 heads" in heads
    assert "norm of its output, never below 0" in heads
    assert "in <b>1 of 2</b> units" in heads                 # the headline stays: it can fail
    # the same rows as a linear layer's units keep the bar (a pre-ReLU value can be <= 0 there)
    linear = summary.layer_summary([dict(r, layer="fc") for r in rows], [None, None])
    assert "above 0 on some photo" in linear
    page = pages.layer_page("site", HEADS, "heads", [0, 1], {0, 1}, rows, [None, None], 32, build.UNIT_COLUMNS)
    assert "above 0 on some photo" not in page and "<p>2 heads." in page


def test_unit_pages_name_heads_and_token_features():
    data = {"features": {"maximizing": 1.0, "maximizing_kind": "from noise", "diverse": [1.0], "inhibiting": 0.1}}
    head = pages.unit_page("site", HEADS, "heads", 3, dict(data), (2, 4), pages.unit_context(HEADS, layout="heads"))
    nav = head.split("</nav>")[0]
    assert "head 3" in nav and "&larr; head 2" in nav and "head 4 &rarr;" in nav and "unit" not in nav
    token = pages.unit_page("site", "blocks.0", "blocks.0", 5, dict(data), (4, None),
                            pages.unit_context("blocks.0", layout="tokens"))
    nav = token.split("</nav>")[0]
    assert "feature 5 at the centre patch token" in nav and "&larr; feature 4" in nav and "unit" not in nav
    conv = pages.unit_page("site", "conv", "conv", 5, dict(data), (4, 6), pages.unit_context("conv", layout="map"))
    assert "unit 5" in conv.split("</nav>")[0]
    index = pages.index_page("site", {}, [{"layer": HEADS, "slug": "heads", "n": 3, "done": 3, "shape": (3, 5, 8),
                                           "thumbs": []}])
    assert "3 heads, output 3 × 5 × 8, all 3 heads computed" in index


def test_units_csv_appends_the_physiology_columns_after_the_old_ones(tmp_path):
    old = ("layer", "unit", "page", "max_activation", "top_exemplar_activation", "maximizing_kind",
           "from_noise_activation", "responsive", "reason", "tuned_unit", "osi", "circular_variance",
           "preferred_orientation", "bandwidth", "preferred_sf", "sf_peak_at_edge", "preferred_colour", "rf_size")
    assert build.UNIT_COLUMNS[:len(old)] == old
    tuning = {"responsive": True, "reason": "", "osi": 1.0, "osi_saturated": True, "modulation_ratio": 1.57,
              "cell_type": "simple", "spontaneous": False}
    rf = {"size": 9.0, "size_se": 0.75, "n_images": 16}
    responsive = build.unit_row("conv", 0, {"tuning": tuning, "rf": rf})
    silent = build.unit_row("conv", 1, {"tuning": dict(tuning, responsive=False, reason="silent on the stimulus set"),
                                        "rf": dict(rf, size=None)})
    build.write_units_csv(tmp_path / "units.csv", [responsive, silent])
    got = list(csv.DictReader(io.StringIO((tmp_path / "units.csv").read_text())))
    assert [got[0][k] for k in ("f1_f0", "cell_type", "osi_at_floor", "spontaneous", "rf_size_se", "rf_n_images")
            ] == ["1.57", "simple", "true", "false", "0.75", "16"]
    # a unit that fails the criteria gets no physiology (like its indices), and no SE without a size
    assert [got[1][k] for k in ("f1_f0", "cell_type", "osi_at_floor", "spontaneous", "osi", "rf_size_se")] == [""] * 6
    table = summary.unit_table([responsive], build.UNIT_COLUMNS)
    assert 'data-col="f1_f0"' in table and '<td class="t" data-v="simple">simple</td>' in table


def test_units_csv_max_activation_is_the_image_the_page_calls_maximizing():
    # max.png is the image from noise (it beats the best photo), but the stretched exemplar drives the unit more:
    # the page calls the stretched exemplar maximizing, and so must units.csv (46 of the first 144 bundled units)
    feats = {"maximizing": 25.3, "maximizing_kind": "from noise", "top_exemplar": 16.0, "diverse": [25.3],
             "inhibiting": -26.3, "other": {"kind": "stretched exemplar", "value": 26.3}}
    row = build.unit_row("conv", 0, {"features": feats, "exemplars": {"activations": [16.0]}})
    page = pages._features_html(0, feats)
    assert "<b>maximizing: stretched exemplar (26.3)</b>" in page
    assert (row["max_activation"], row["maximizing_kind"], row["from_noise_activation"]) == (
        26.3, "stretched exemplar", 25.3)
    # the best photo itself (no ascent step improved it) is not synthesized: the image from noise is maximizing
    photo = dict(feats, maximizing=16.0, maximizing_kind="top exemplar", other={"kind": "from noise", "value": 12.0})
    row = build.unit_row("conv", 0, {"features": photo, "exemplars": {"activations": [16.0]}})
    assert (row["max_activation"], row["maximizing_kind"]) == (12.0, "from noise")
    assert build.unit_row("conv", 0, {})["max_activation"] is None


def test_the_bandwidth_panel_compares_v1_on_its_own_footing():
    # V1's 40° median full width counts every cell (untuned ones at 360°): the panel of tuned units' half widths
    # draws no V1 line and gives this layer's median on V1's footing instead
    rows = [{"layer": "conv", "unit": u, "page": f"units/conv/{u}.html", "responsive": True, "reason": "",
             "osi": osi, "preferred_orientation": 0.0 if bw else None, "bandwidth": bw, "rf_size": 5.0,
             "top_exemplar_activation": 1.0, "from_noise_activation": 2.0} for u, (osi, bw) in
            enumerate([(0.8, 10.0), (0.7, 15.0), (0.1, None)])]
    tunings = [{"bandwidth": r["bandwidth"]} for r in rows]
    html = summary.layer_summary(rows, tunings, image_size=64)
    assert "V1: median 40° full width over all cells, untuned ones too [1]; this layer so: 30°" in html
    panel = next(svg for svg in re.findall(r"<svg.*?</svg>", html, re.S) if "orientation bandwidth" in svg)
    assert "<rect" in panel and "stroke-dasharray" not in panel             # bars, and no reference line on them
    assert summary.v1_footing_median(rows, tunings) == 30.0                 # full widths 20, 30, 360


def test_the_method_text_says_the_headline_is_not_at_matched_contrast():
    # images from noise: 2-5x the photos' RMS contrast and 30-56% saturated pixels in the bundled conv layers
    from insilico.gallery.methods import methods_html

    text = methods_html(spatial=True)
    assert "not at matched contrast" in text and "bootstrap resamples of 8 groups of the noise images" in text
