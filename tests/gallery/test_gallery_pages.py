"""Gallery panels read like figures: labelled axes and round ticks, the blank and the preferred value drawn,
RF scale bar and outlines, one lesion scale per layer, class names, layer descriptions, the model card.

Pages are rendered from small hand-made stage dicts (no build), and their SVG is parsed as XML.
"""
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from insilico.gallery import pages, summary
from insilico.gallery.charts import nice_ticks, svg_bars, svg_curve
from insilico.gallery.describe import describe_layers, model_card, output_classes
from insilico.gallery.settings import GallerySettings

NS = "{http://www.w3.org/2000/svg}"
CLASSES = ["cat", "dog", "car"]


def svgs(html: str) -> list:
    """Every inline <svg> of a page, parsed (fails on invalid XML)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def texts(svg) -> dict:
    """Text content -> the text element (its attributes)."""
    return {"".join(t.itertext()): t.attrib for t in svg.iter(f"{NS}text")}


def tuning(responsive=True, preferred=60.0):
    curve = [0.1, 0.5, 1.5, 3.0, 4.0, 3.1, 1.4, 0.4, 0.2, 0.1, 0.1, 0.1]
    return {"unit": "conv.1[2,7,7]", "orientations": [15.0 * i for i in range(12)], "curve": curve,
            "sfs": [1.0, 2.0, 4.0, 8.0, 16.0, 25.6], "sf_curve": [0.5, 1.0, 4.0, 2.0, 1.0, 0.2], "baseline": 0.8,
            "responsive": responsive, "reason": "" if responsive else "not driven by gratings",
            "preferred_orientation": preferred if responsive else None, "osi": 0.6 if responsive else None,
            "preferred_sf": 4.0 if responsive else None, "sf_peak_at_edge": False, "phase_reduce": "max",
            "margin": 0.2, "colour_peak": {"luminance": 3.2}}


def rf():
    return {"neuron": "conv[2,7,7]", "size": 9.0, "center": [32.0, 32.0], "box": [28.0, 36.0, 28.0, 36.0],
            "map_center": [7, 7], "stride": [4.0, 4.0], "input_size": [64, 64]}


def exemplars():
    return {"k": 2, "n_stimuli": 10, "labels": ["cat", "dog"], "activations": [3.0, 2.0], "indices": [4, 1],
            "neurons": ["conv[2,9,7]", "conv[2,0,15]"]}


def lesion(values):
    return {"classes": CLASSES, "labelled": True, "probability_change": values, "n_stimuli": 6}


def unit_html(data, context=None, channel=2):
    data = dict(data, _spatial=True)
    return pages.unit_page("site", "conv", "conv", channel, data, (1, 3), context)


# ---------------------------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------------------------
def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 13.2) == [0.0, 5.0, 10.0, 15.0]
    assert nice_ticks(-0.42, 0.07) == [-0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1]
    ticks = nice_ticks(-3.1, 8.8)
    assert ticks[0] <= -3.1 and ticks[-1] >= 8.8 and len(ticks) >= 4


def test_tuning_curve_has_labelled_axes_interior_ticks_baseline_and_preferred_mark():
    svg = ET.fromstring(svg_curve([15.0 * i for i in range(12)] + [180], [0, 1, 2, 3, 4, 3, 2, 1, 0, 0, 0, 0, 0],
                                  "orientation (°)", "orientation tuning", baseline=1.0, ylabel="response",
                                  mark=(60.0, "preferred 60°"), x_range=(0, 180),
                                  x_ticks=[0, 45, 90, 135, 180]))
    found = texts(svg)
    assert {"orientation (°)", "response", "preferred 60°", "blank", "45", "90", "135"} <= set(found)
    # the preferred-orientation line sits at 60° on the tick scale (a third of the way from 45 to 90)
    x45, x90 = float(found["45"]["x"]), float(found["90"]["x"])
    mark = next(l for l in svg.iter(f"{NS}line") if l.get("class") == "mark")
    assert float(mark.get("x1")) == pytest.approx(x45 + (x90 - x45) / 3, abs=0.2)
    # the dashed baseline sits at 1.0 on the y ticks (0 and 1 are tick labels)
    base = next(l for l in svg.iter(f"{NS}line") if l.get("class") == "baseline")
    y0, y1 = float(found["0"]["y"]) - 3.5, float(found["1"]["y"]) - 3.5
    assert float(base.get("y1")) == pytest.approx(y1, abs=0.2) and y1 < y0


def test_log_axis_ticks_at_powers_of_two():
    svg = ET.fromstring(svg_curve([1, 2, 4, 8, 16, 25.6], [1, 2, 3, 2, 1, 0], "SF (cycles / image)", "SF", log_x=True))
    found = texts(svg)
    assert {"1", "2", "4", "8", "16"} <= set(found)
    xs = [float(found[t]["x"]) for t in ("1", "2", "4", "8", "16")]
    steps = [b - a for a, b in zip(xs, xs[1:])]
    assert max(steps) - min(steps) < 0.3          # one octave, one step


def test_bars_on_a_given_scale():
    svg = ET.fromstring(svg_bars(CLASSES, [0.05, -0.01, 0.0], "lesion", scale=0.5))
    widths = [float(r.get("width")) for r in svg.iter(f"{NS}rect")]
    full = ET.fromstring(svg_bars(CLASSES, [0.5, 0, 0], "lesion", scale=0.5))
    assert widths[0] == pytest.approx(float(next(full.iter(f"{NS}rect")).get("width")) / 10, rel=1e-3)
    assert {"cat", "dog", "car", "0"} <= set(texts(svg))


# ---------------------------------------------------------------------------------------------------------------
# Unit pages
# ---------------------------------------------------------------------------------------------------------------
def test_unit_page_panels_parse_and_say_their_units():
    html = unit_html({"tuning": tuning(), "rf": rf(), "exemplars": exemplars(), "lesion": lesion([-0.2, 0.1, 0])},
                     pages.unit_context("conv", "conv1: Conv2d 3→8, 5×5, stride 4, before ReLU", input_size=(3, 64, 64)))
    parsed = [s for s in svgs(html) if s.get("class") != "zoom"]
    assert len(parsed) == 5          # exemplar outlines, orientation, SF, RF map, lesion
    assert len(svgs(html)) == 5 + 2 * 3      # and each exemplar's field enlarged: photo, deconvolution, gradient
    words = set().union(*(texts(s) for s in parsed))
    assert "orientation (° counter-clockwise; 0 = vertical bars)" in words
    assert "spatial frequency (cycles / image, log scale)" in words
    assert {"preferred 60°", "preferred 4", "blank", "16 px"} <= words
    assert "conv1: Conv2d 3→8, 5×5, stride 4, before ReLU" in html
    assert "cycles per image" not in html and "#methods-tuning" in html      # the method is on the layer page


def test_rf_outlines_move_with_each_exemplars_neuron():
    html = unit_html({"rf": rf(), "exemplars": exemplars()})
    overlay = svgs(html)[0]
    assert overlay.get("viewBox") == f"0 0 {2 * 66 - 2} {3 * 66 - 2}"
    rects = [{k: float(v) for k, v in r.attrib.items()} for r in overlay.iter(f"{NS}rect")]
    assert len(rects) == 6                        # 2 exemplars x 3 rows
    first, second = rects[0], rects[3]
    # neuron row 9 = centre + 2 rows of stride 4: the box moves down 8 px, same columns
    assert (first["x"], first["y"], first["width"], first["height"]) == (28, 36, 9, 9)
    # neuron (0, 15): up 28 px (clipped at the top), right 32 px (clipped at the right edge), second tile
    assert (second["x"], second["y"], second["width"], second["height"]) == (66 + 60, 0, 4, 9)
    assert rects[1]["y"] == 66 + 36                 # the same box on the deconvolution row


def test_rf_box_at():
    assert pages.rf_box_at(rf(), "conv[2,7,7]") == (28, 36, 28, 36)
    assert pages.rf_box_at(rf(), "fc[3]") is None                       # no map position
    old = {k: v for k, v in rf().items() if k not in ("stride", "map_center")}
    assert pages.rf_box_at(old, "conv[2,9,7]") is None                  # a site built before strides were stored
    assert "Yellow:" not in unit_html({"rf": old, "exemplars": exemplars()})


def test_unresponsive_unit_gets_no_preferred_mark():
    html = unit_html({"tuning": tuning(responsive=False)})
    assert "not driven by gratings" in html and "preferred" not in "".join(
        "".join(texts(s)) for s in svgs(html))


def test_one_lesion_scale_across_a_layer():
    layer = [{"lesion": lesion([-0.4, 0.1, 0.0])}, {"lesion": lesion([-0.04, 0.01, 0.0])}]
    context = pages.unit_context("conv", datas=layer, channels=[5, 6])
    assert context["lesion_scale"] == pytest.approx(0.4) and context["lesion_scale_unit"] == 5
    widths = []
    for c, data in zip((5, 6), layer):
        html = pages.unit_page("site", "conv", "conv", c, data, (None, None), context)
        assert "&plusmn;0.4," in html and '<a href="5.html">unit 5</a>' in html
        bars = svgs(html)[-1]
        widths.append(max(float(r.get("width")) for r in bars.iter(f"{NS}rect")))
        assert set(CLASSES) <= set(texts(bars))
    assert widths[1] == pytest.approx(widths[0] / 10, rel=1e-3)


def test_output_units_named_by_class():
    context = pages.unit_context("fc", "fc1: Linear 8→3, the model's output (one logit per class)", CLASSES)
    html = pages.unit_page("site", "fc", "fc", 1, {"lesion": lesion([0.0, -0.3, 0.0])}, (0, 2), context)
    assert "class &ldquo;dog&rdquo;</h1>" in html and "logit of class &ldquo;dog&rdquo;" in html
    assert "<title>fc[1] dog - site</title>" in html


# ---------------------------------------------------------------------------------------------------------------
# Descriptions and the model card
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minialex():
    from insilico.models import load

    return load("minialex")


def test_minialex_layer_descriptions(minialex):
    layers = ["features.0", "features.3", "classifier.4", "classifier.6"]
    d = describe_layers(minialex, (3, 64, 64), layers)
    assert d["features.3"]["text"] == "conv2: Conv2d 48→96, 5×5, stride 1, before ReLU"
    assert d["features.0"]["text"] == "conv1: Conv2d 3→48, 9×9, stride 2, before ReLU"
    assert d["classifier.4"]["text"] == "fc2: Linear 256→256, before ReLU"
    assert d["classifier.6"]["output"] and not d["classifier.4"]["output"]
    assert output_classes(minialex, d["classifier.6"]) == list(minialex.classes)
    assert output_classes(minialex, d["classifier.4"]) is None


def test_resnet18_layer_descriptions_follow_the_data_not_only_the_call_order():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None)
    d = describe_layers(net, (3, 32, 32), ["conv1", "layer1.0.conv2", "layer2.0.conv2", "fc"])
    assert d["conv1"]["text"] == "conv1: Conv2d 3→64, 7×7, stride 2, before BatchNorm2d → ReLU"
    assert d["layer1.0.conv2"]["text"] == \
        "conv3: Conv2d 64→64, 3×3, stride 1, before BatchNorm2d → add → ReLU"
    # the downsample branch runs between bn2 and the add: skipped, not read as what follows conv2
    assert d["layer2.0.conv2"]["follows"] == "before BatchNorm2d → add → ReLU"
    assert d["fc"]["output"] and d["fc"]["name"] == "fc1"


def test_index_has_model_card_and_hides_internals(minialex):
    settings = GallerySettings()
    layers = ["features.0", "classifier.6"]
    card = model_card(minialex, settings, (3, 64, 64), layers)
    assert card["parameters"] == sum(p.numel() for p in minialex.parameters())
    assert [r["address"] for r in card["architecture"] if r["gallery"]] == layers
    assert card["trained"]["held_out_accuracy"] > card["trained"]["chance"]
    summary = [{"layer": "features.0", "slug": "features.0", "n": 48, "done": 48, "shape": (48, 30, 30),
                "thumbs": [], "description": "conv1: Conv2d 3→48, 9×9, stride 2, before ReLU"}]
    html = pages.index_page("t", settings.to_dict(), summary, card)
    assert f"{card['parameters']:,} parameters" in html and "held-out accuracy" in html
    # the accuracy over the card's 512 crops with its Wilson interval (315 of 512 right: [57.2%, 65.6%])
    assert card["trained"]["held_out_n"] == 512 and "61.5%</b> [57.2%, 65.6%] (95% Wilson interval over 512 images)" in html
    assert "conv1: Conv2d 3→48, 9×9, stride 2, before ReLU" in html and "3 × 64 × 64" in html
    shown, hidden = html.split("<details><summary>Build internals")
    assert "activation-maximization steps per image" in shown
    assert "<td>lr</td>" not in shown and "<td>chunk</td>" not in shown and "<td>seed</td>" not in shown
    assert "<td>lr</td>" in hidden and "<td>chunk</td>" in hidden


def test_map_stride_from_the_wiring(minialex, tmp_path: Path):
    from insilico.gallery.stages import Work, map_stride

    work = Work(minialex, GallerySettings(), tmp_path, (3, 64, 64))
    assert map_stride(work, "features.0") == [2.0, 2.0]
    assert map_stride(work, "features.3") == [4.0, 4.0]


def test_recurrent_layer_descriptions_and_strides():
    from insilico.gallery.stages import Work, map_stride
    from insilico.models import load

    net = load("blt")
    d = describe_layers(net, (3, 64, 64), ["layers.0.bottom_up@3", "layers.1.top_down.0@3"])
    assert d["layers.0.bottom_up@3"]["text"] == \
        "conv1 at step 3 (of steps 0–3): Conv2d 3→32, 7×7, stride 4, before add → GroupNorm → ReLU"
    assert d["layers.1.top_down.0@3"]["follows"] == "before Upsample → add → GroupNorm → ReLU"
    work = Work(net, GallerySettings(model="blt"), Path("."), (3, 64, 64))
    assert map_stride(work, "layers.1.top_down.0@3") == [16.0, 16.0]      # it reads layers.2's 4 x 4 map


def test_silent_units_get_a_banner_that_says_where_they_are_silent():
    silent = {"tuning": {"reason": "silent on the stimulus set", "unit": "c.1[3,7,7]", "responsive": False},
              "exemplars": {"activations": [33.2, 31.0], "n_stimuli": 256}}
    note = pages._silent_note(silent)
    assert "Silent unit" in note and "c.1[3,7,7]" in note and "33.2" in note
    never = pages._silent_note({"exemplars": {"activations": [-0.13, -0.5], "n_stimuli": 256}})
    assert "never exceeds 0 on the 256 exemplar photos" in never
    assert pages._silent_note({"exemplars": {"activations": [0.4]}}) == ""
    # one definition of silent (the headline's, summary.is_silent): a best photo at or below 0 is silent with tuning too
    spatial = {"tuning": {"reason": "not driven by gratings"}, "exemplars": {"activations": [-1]}}
    assert "Silent unit" in pages._silent_note(spatial) and summary.is_silent({"top_exemplar_activation": -1})
    assert pages._silent_note({"tuning": {"reason": "not driven by gratings"}, "exemplars": {"activations": [0.2]}}) == ""


def test_silent_units_leave_the_rf_summaries():
    from insilico.gallery.summary import rf_sizes

    rows = [{"rf_size": 9.0, "reason": ""}, {"rf_size": 60.0, "reason": "silent on the stimulus set"},
            {"rf_size": None, "reason": ""}]
    assert rf_sizes(rows) == [9.0]


def test_exemplars_whose_field_reaches_past_the_edge_are_counted():
    rf = {"box": [21.0, 44.0, 18.0, 43.0], "map_center": [7, 7], "stride": [4.0, 4.0], "input_size": [64, 64],
          "size": 25.0}
    assert pages._past_the_edge(rf, ["c[1,7,7]", "c[1,10,0]", "c[1,14,14]", "c[1,8,8]"], (64, 64)) == 2
    assert pages.rf_box_at(rf, "c[1,10,0]", clip=False) == (33.0, 56.0, -10.0, 15.0)
    html = pages._exemplars_html(1, {"k": 2, "n_stimuli": 9, "labels": ["a", "b"], "activations": [2.0, 1.0],
                                     "neurons": ["c[1,10,0]", "c[1,7,7]"]}, rf, (64, 64))
    assert "In 1 of 2 the field reaches past the image" in html


def test_an_unresolved_bandwidth_is_said_so_not_given_a_number():
    narrow = dict(tuning(), bandwidth=7.5, bandwidth_resolved=False, orientation_step=15.0)
    html = pages._tuning_html(narrow)
    assert "below the 15° orientation sampling (not resolved)" in html and "height) 7.5" not in html
    broad = pages._tuning_html(dict(tuning(), bandwidth=31.0, bandwidth_resolved=True, orientation_step=15.0))
    assert "bandwidth (half width at half height) 31°" in broad


def test_a_lesion_panel_on_few_images_per_class_says_it_has_no_interval():
    few, many = lesion([-0.4, 0.1, 0.0]), lesion([-0.4, 0.1, 0.0])
    few["n_stimuli"], many["n_stimuli"] = 2 * len(CLASSES), 32 * len(CLASSES)
    said = [pages.unit_page("site", "conv", "conv", 5, {"lesion": d}, (None, None)) for d in (few, many)]
    assert "With 2 images per class a bar is an indication, not a measurement" in said[0]
    assert "indication, not a measurement" not in said[1]
