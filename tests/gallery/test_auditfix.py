"""Issue 28, the audit's three findings fixed in the tools: what the pages say about them. Pages are rendered from
small hand-made stage dicts (no build).

Measured on the bundled minialex (notes/s5/auditfix-numbers.txt): the RF size's new standard error over 32 conv
centre neurons matches the SD of the size between fresh 32-image draws (RMS ratio 1.04; the two-halves value 0.82,
0 in 8% of draws); 61 of 166 "simple" units of the bundled site peak at the lowest SF (now unresolved); the human
IT intervals over subjects and stimuli widen, e.g. features.3 [0.042, 0.171] -> [-0.002, 0.206].
"""
import json

from insilico.gallery import brain, pages, summary


def _tuning(cell_type, at_edge):
    return {"unit": "conv[0,7,7]", "responsive": True, "f0": 0.5, "f1": 0.8, "modulation_ratio": 1.6,
            "cell_type": cell_type, "sf_peak_at_edge": at_edge, "spontaneous": False}


def test_a_unit_whose_sf_peak_is_at_the_edge_has_no_simple_complex_call_on_its_page():
    facts = " ".join(pages._physiology_facts(_tuning("unresolved", True)))
    assert "F1/F0 1.60: no simple/complex call (the SF peak is at the edge of the tested SFs" in facts
    assert "simple" not in facts.replace("simple/complex", "")
    older = " ".join(pages._physiology_facts(_tuning("simple", True)))  # a record from before the rule
    assert "simple (read at the edge of the tested SFs, not at a bracketed optimum)" in older


def test_the_layer_counts_unresolved_units_apart_and_leaves_them_out_of_the_f1_f0_split():
    rows = [{"responsive": True}] * 3
    tunings = [_tuning("unresolved", True), _tuning("simple", False), dict(_tuning("complex", False),
                                                                         modulation_ratio=0.4)]
    text = summary.physiology_text(rows, tunings)
    assert "1 has no simple/complex call (SF peak at the edge of the tested range" in text
    assert "is read at an SF at the edge" not in text
    counts = summary.modulation_counts(tunings)
    assert (counts["simple"], counts["complex"], counts["unresolved"], counts["ratios"]) == (1, 1, 1, [1.6, 0.4])


def _brain(over=True):
    layer = {"similarity": 0.1, "ci": [0.0, 0.2]}
    res = {"layers": ["a"], "units": {"a": "a"}, "compare": "spearman", "rdm_method": "correlation", "n_boot": 200,
           "seed": 0, "image_size": 64, "human_it": {"a": layer}, "monkey_it": {"a": layer},
           "human_it_noise_ceiling": {"lower": 0.2, "upper": 0.4}, "monkey_it_vs_human_it": 0.296,
           "monkey_it_vs_human_it_ci": [0.18, 0.41], "best_layer": {"human_it": "a", "monkey_it": "a"},
           "seconds": 1.0}
    if over:
        res["over"] = {"human_it": brain.HUMAN_OVER, "monkey_it": "stimuli"}
    return res


def test_the_model_page_says_what_the_rsa_intervals_resample():
    page = brain.rsa_html(_brain())
    assert "human IT over subjects and stimuli together (200 samples" in page and "Schütt" in page
    assert "monkey IT over stimuli only" in page and "intervals over stimuli (" not in page
    assert "95% bootstrap intervals over stimuli (200 samples)" in brain.rsa_html(_brain(over=False))  # older file


def test_a_brain_file_with_intervals_over_stimuli_only_is_recomputed(tmp_path, monkeypatch):
    from insilico.gallery.settings import GallerySettings
    from insilico.gallery.stages import Work

    old = dict(_brain(over=False), pixels={}, layers=["features.0"])
    (tmp_path / "brain.json").write_text(json.dumps(old))
    work = Work(model=None, settings=GallerySettings(), root=tmp_path, shape=(3, 64, 64))
    fresh = dict(_brain(), layers=["features.0"])
    monkeypatch.setattr(brain, "it_rsa", lambda *args, **kwargs: fresh)
    assert brain.ensure(work, ["features.0"], rank=0) == fresh
    assert brain.ensure(work, ["features.0"], rank=0) == fresh  # now cached
