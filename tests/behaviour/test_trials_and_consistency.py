"""Observers' trials (CSV in Geirhos et al.'s layout) and the consistency measures, on hand-made data."""
import math

import numpy as np
import pytest

from insilico import InsilicoError
from insilico.behaviour import Trials, error_consistency, image_consistency, read_trials

GEIRHOS = """subj,session,trial,rt,object_response,category,condition,imagename
subject-01,1,1,812.3,dog,dog,0,0001_cl_s01_0_dog_10_n02099601_9106.png
subject-01,1,2,655.0,cat,dog,0,0002_cl_s01_0_dog_10_n02099601_1.png
subject-01,1,3,NaN,car,car,0,0003_cl_s01_0_car_10_n04285008_2.png
subject-02,1,1,700.0,dog,dog,0,0001_cl_s01_0_dog_10_n02099601_9106.png
"""


def _kappa(a, b):
    """Geirhos et al. 2020, written out: c_exp = pa pb + (1 - pa)(1 - pb), kappa = (c_obs - c_exp) / (1 - c_exp)."""
    pa, pb = np.mean(a), np.mean(b)
    c_exp = pa * pb + (1 - pa) * (1 - pb)
    c_obs = np.mean(np.asarray(a) == np.asarray(b))
    return (c_obs - c_exp) / (1 - c_exp)


def _observer(correct, name, ids=None, truth="x"):
    ids = [f"im{k}" for k in range(len(correct))] if ids is None else ids
    return Trials.from_predictions(ids, [truth] * len(correct), [truth if c else "other" for c in correct], name=name)


def test_the_geirhos_csv_layout_reads_as_it_is_and_round_trips(tmp_path):
    path = tmp_path / "contrast-experiment_subject-01.csv"
    path.write_text(GEIRHOS)
    trials = read_trials(path)
    assert trials.name == "contrast-experiment_subject-01" and len(trials) == 4
    assert trials.truth == ["dog", "dog", "car", "dog"] and trials.response[1] == "cat"
    assert trials.correct.tolist() == [True, False, True, True]
    assert trials.rt[0] == 812.3 and math.isnan(trials.rt[2])
    assert trials.subject == ["subject-01"] * 3 + ["subject-02"] and not trials.deterministic
    stripped = read_trials(path, image_id=lambda name: name.split("_", 3)[-1])
    assert stripped.images[0] == "0_dog_10_n02099601_9106.png"
    one = read_trials(path, subject="subject-01")
    assert len(one) == 3 and one.accuracy == pytest.approx(2 / 3)
    trials.to_csv(tmp_path / "back.csv")
    back = read_trials(tmp_path / "back.csv", name=trials.name)
    for field in ("images", "truth", "response", "subject"):
        assert getattr(back, field) == getattr(trials, field)
    np.testing.assert_array_equal(back.rt, trials.rt)


def test_a_csv_without_a_needed_column_or_without_rows_is_refused(tmp_path):
    (tmp_path / "no_response.csv").write_text("subj,category,imagename\ns,dog,a.png\n")
    with pytest.raises(InsilicoError, match=r"no response column: name one of \['object_response'"):
        read_trials(tmp_path / "no_response.csv")
    (tmp_path / "empty.csv").write_text("subj,object_response,category,imagename\n")
    with pytest.raises(InsilicoError, match="has no trials"):
        read_trials(tmp_path / "empty.csv")
    with pytest.raises(InsilicoError, match="no trials"):
        Trials([], [], [], [], [])


def test_trials_save_load_and_pandas(tmp_path):
    t = _observer([1, 0, 1], "net")
    t.save(tmp_path / "t.pt")
    back = Trials.load(tmp_path / "t.pt")
    assert back.images == t.images and back.deterministic and back.correct.tolist() == [True, False, True]
    pd = pytest.importorskip("pandas")
    frame = t.to_pandas()
    assert isinstance(frame, pd.DataFrame) and frame["correct"].tolist() == [True, False, True]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_error_consistency_is_the_geirhos_formula(seed):
    g = np.random.default_rng(seed)
    a, b = g.random(40) < 0.7, g.random(40) < 0.5
    res = error_consistency(_observer(a, "a"), _observer(b, "b"), n_boot=200, seed=0)
    assert res.value == pytest.approx(_kappa(a, b), abs=1e-12)
    assert res.details["c_exp"] == pytest.approx(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    assert res.low <= res.value <= res.high


def test_arrays_of_trial_wise_correctness_are_observers_matched_by_position():
    import torch

    a, b = np.array([True, True, False, False, True]), [1, 0, 0, 1, 1]
    assert error_consistency(a, b, n_boot=0).value == pytest.approx(_kappa(a, b), abs=1e-12)
    assert error_consistency(torch.tensor(b), a, n_boot=0).value == pytest.approx(_kappa(a, b), abs=1e-12)


def test_an_array_that_is_not_correctness_is_refused_with_what_it_holds():
    """Class predictions or NaN-marked missing trials are arrays too: the refusal names the values, not the type."""
    with pytest.raises(InsilicoError, match=r"'?a'? holds 4 values that are not all 0/1 \(e.g. \[nan\]\).*no NaN"):
        error_consistency(np.array([1.0, np.nan, 0.0, 1.0]), [1, 0, 0, 1], n_boot=0)
    with pytest.raises(InsilicoError, match=r"holds 3 values that are not all 0/1 \(e.g. \[2, 5\]\).*predicted == label"):
        error_consistency([1, 0, 1], np.array([2, 0, 5]), n_boot=0)


def test_error_consistency_is_one_for_identical_and_zero_for_independent_observers():
    a = [1, 1, 0, 0, 1, 0, 1, 1]
    assert error_consistency(_observer(a, "a"), _observer(a, "b"), n_boot=0).value == 1.0
    # b is right on half of a's right and half of a's wrong images: c_obs = c_exp exactly
    assert error_consistency(_observer([1, 1, 0, 0], "a"), _observer([1, 0, 1, 0], "b"), n_boot=0).value == 0.0
    # fully opposite errors with equal accuracies 0.5: kappa -1
    assert error_consistency(_observer([1, 0, 1, 0], "a"), _observer([0, 1, 0, 1], "b"), n_boot=0).value == -1.0


def test_observers_are_aligned_by_image_id_not_by_position():
    a = _observer([1, 0, 1, 1], "a", ids=["p", "q", "r", "s"])
    b = _observer([0, 1, 1, 1], "b", ids=["q", "p", "s", "r"])  # the same correctness as a, shuffled
    assert error_consistency(a, b, n_boot=0).value == 1.0


def test_mismatched_or_repeated_image_ids_and_undefined_kappa_are_refused():
    a = _observer([1, 0, 1], "a", ids=["p", "q", "r"])
    with pytest.raises(InsilicoError, match=r"saw different images: 1 only in 'a' \(e.g. \['r'\]\), 1 only in 'b'"):
        error_consistency(a, _observer([1, 0, 1], "b", ids=["p", "q", "z"]))
    with pytest.raises(InsilicoError, match="several trials of images"):
        error_consistency(a, _observer([1, 0, 1], "b", ids=["p", "q", "q"]))
    with pytest.raises(InsilicoError, match="undefined: both are always right"):
        error_consistency(_observer([1, 1], "a"), _observer([1, 1], "b"))
    with pytest.raises(InsilicoError, match="1-D array of trial-wise correctness"):
        error_consistency(a, [1, 0, 2])
    with pytest.raises(InsilicoError, match="saw different images"):
        error_consistency([1, 0, 1], [1, 0, 1, 1])


def _people(p_correct, n_subjects, seed, name):
    """Trials of ``n_subjects`` people on images of 2 classes, image i right with probability p_correct[i]."""
    g = np.random.default_rng(seed)
    ids, truth, resp, subj = [], [], [], []
    for s in range(n_subjects):
        for i, p in enumerate(p_correct):
            c = "x" if i % 2 else "y"
            ids.append(f"im{i}"), truth.append(c), subj.append(f"s{s}")
            resp.append(c if g.random() < p else ("y" if c == "x" else "x"))
    return Trials(ids, truth, resp, subj, [math.nan] * len(ids), name)


def test_image_consistency_of_an_observer_with_itself_is_one_and_with_a_shuffled_difficulty_near_zero():
    g = np.random.default_rng(0)
    p = g.uniform(0.55, 0.98, 60)
    model = Trials.from_predictions([f"im{i}" for i in range(60)], ["x" if i % 2 else "y" for i in range(60)],
                                    ["x" if i % 2 else "y" for i in range(60)], name="net")
    model.response[3] = model.response[8] = "x"  # wrong on two images
    assert image_consistency(model, model, n_boot=0).value == pytest.approx(1.0)
    same = image_consistency(_people(p, 40, 1, "a"), _people(p, 40, 2, "b"), n_boot=100, seed=0)
    other = image_consistency(_people(p, 40, 1, "a"), _people(g.permutation(p), 40, 3, "c"), n_boot=0, seed=0)
    # seeded draws: deterministic; the corrected consistency of two groups sharing one difficulty is near 1
    assert 0.8 < same.value < 1.2 and 0 < same.details["reliability_a"] < 1
    assert abs(other.value) < 0.35 and same.low < same.value < same.high


def test_image_consistency_of_an_observer_answering_each_class_alike_is_refused_not_nan():
    """A model that answers one class for every image has the same i1n on every image: the correlation is 0/0
    (before: a NaN result with a NaN interval and numpy's RuntimeWarning)."""
    ids, truth = [f"im{i}" for i in range(8)], ["x", "y"] * 4
    flat = Trials.from_predictions(ids, truth, ["x"] * 8, name="flat")
    varied = Trials.from_predictions(ids, truth, ["x", "y", "y", "y", "x", "x", "x", "y"], name="varied")
    with pytest.raises(InsilicoError, match="observer 'flat' is no harder on one image than on another"):
        image_consistency(varied, flat, n_boot=0)
    assert np.isfinite(image_consistency(varied, varied, n_boot=0).value)


def test_image_consistency_needs_repeats_of_a_person_and_two_classes():
    person = Trials.from_predictions(["a", "b", "c"], ["x", "y", "x"], ["x", "y", "y"], name="p")
    person.deterministic = False
    model = Trials.from_predictions(["a", "b", "c"], ["x", "y", "x"], ["x", "x", "x"], name="m")
    with pytest.raises(InsilicoError, match="split-half reliability needs at least 2 trials per image"):
        image_consistency(person, model)
    one = Trials.from_predictions(["a", "b", "c"], ["x", "x", "x"], ["x", "y", "x"], name="m")
    with pytest.raises(InsilicoError, match="at least 2 classes"):
        image_consistency(one, one)
    with pytest.raises(InsilicoError, match="saw different images"):
        image_consistency(model, Trials.from_predictions(["a", "b", "d"], ["x", "y", "x"], ["x", "x", "x"]))


# -- error consistency over subjects (Geirhos et al.: kappa per subject, averaged) -------------------
def _table(rows, name="people"):
    """Trials of people from (subject, image, correct) rows, one class."""
    subj, ids, ok = zip(*rows)
    return Trials(list(ids), ["x"] * len(ids), ["x" if c else "o" for c in ok], list(subj), [math.nan] * len(ids),
                  name)


def test_a_model_against_several_people_is_each_persons_kappa_on_their_images_averaged():
    g = np.random.default_rng(3)
    model_ok = g.random(30) < 0.6
    model = _observer(model_ok, "net")
    rows, expected = [], {}
    for s, seen in (("s1", range(0, 30)), ("s2", range(0, 20)), ("s3", range(10, 30))):
        ok = g.random(len(seen)) < 0.7
        rows += [(s, f"im{i}", c) for i, c in zip(seen, ok)]
        expected[s] = _kappa(model_ok[list(seen)], ok)
    people = _table(rows)
    res = error_consistency(model, people, n_boot=300, seed=0)
    assert [p[1] for p in res.details["pairs"]] == ["s1", "s2", "s3"]
    for _, s, k in res.details["pairs"]:
        assert k == pytest.approx(expected[s], abs=1e-12)  # each person on their own images
    assert res.value == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    assert res.details["interval"] == "subjects" and res.n_images == 30
    assert min(expected.values()) - 1e-12 <= res.low <= res.value <= res.high <= max(expected.values()) + 1e-12
    back = error_consistency(people, model, n_boot=0)  # symmetric in the observers
    assert back.value == pytest.approx(res.value, abs=1e-12)


def test_people_against_themselves_average_every_pair_of_different_subjects():
    a, b, c = [1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 1, 0]
    people = _table([(s, f"im{i}", v) for s, ok in (("a", a), ("b", b), ("c", c)) for i, v in enumerate(ok)])
    res = error_consistency(people, people, n_boot=0)
    pairs = {(x, y): k for x, y, k in res.details["pairs"]}
    assert len(pairs) == 6 and ("a", "a") not in pairs
    assert pairs[("a", "c")] == pytest.approx(_kappa(a, c)) and pairs[("c", "a")] == pytest.approx(_kappa(a, c))
    assert res.value == pytest.approx(np.mean([_kappa(a, b), _kappa(a, c), _kappa(b, c)]))


def test_by_subject_a_person_image_the_model_never_saw_and_all_undefined_pairs_are_refused():
    people = _table([("s1", "im0", 1), ("s1", "im1", 0), ("s2", "im0", 1), ("s2", "im9", 0)])
    with pytest.raises(InsilicoError, match=r"'net' never saw 1 image\(s\) of 'people:s2' \(e.g. \['im9'\]\)"):
        error_consistency(_observer([1, 0], "net"), people)
    right = _table([("s1", "im0", 1), ("s1", "im1", 1), ("s2", "im0", 1), ("s2", "im1", 1)])
    with pytest.raises(InsilicoError, match="undefined for every pair of subjects"):
        error_consistency(_observer([1, 1], "net"), right)
    half = _table([("s1", "im0", 1), ("s1", "im1", 1), ("s2", "im0", 1), ("s2", "im2", 0)])
    res = error_consistency(_observer([1, 1, 0], "net"), half, n_boot=0)  # with s1: both always right
    assert res.value == 1.0 and [u[:2] for u in res.details["undefined"]] == [["net", "s1"]]


def test_trials_from_an_excel_csv_keep_their_subjects_and_answers(tmp_path):
    """Before: a UTF-8 BOM (Excel's "CSV UTF-8") hid the first column, so 'subj' was missing and every trial was
    given the file's name as subject; cells written 'cat, cat ' kept their spaces, so 'cat ' != 'cat' scored a
    correct answer as wrong (accuracy 0.5, not 1.0) -- both without a word."""
    path = tmp_path / "humans.csv"
    path.write_text("subj, imagename, category, object_response\ns1, a.png, cat, cat \ns2, b.png, dog, dog\n",
                    encoding="utf-8-sig")
    trials = read_trials(path)
    assert trials.subject == ["s1", "s2"] and trials.images == ["a.png", "b.png"]
    assert trials.response == ["cat", "dog"] and trials.accuracy == 1.0
