"""confusion(): counts by construction, intervals, trials, persistence, plots, and the refusals."""
import numpy as np
import pytest
import torch

from insilico import InsilicoError, StimulusError
from insilico.behaviour import ConfusionResult, Trials, confusion, error_consistency
from insilico.pixels import raw


def _identity(k=3):
    net = torch.nn.Linear(k, k)
    with torch.no_grad():
        net.weight.copy_(torch.eye(k))
        net.bias.zero_()
    return net


def test_counts_matrix_and_accuracies_are_those_of_the_argmax():
    x = torch.eye(3)[[0, 1, 2, 1, 1, 0]]           # responses 0 1 2 1 1 0
    y = [0, 1, 2, 2, 1, 1]
    res = confusion(_identity(), raw(x), y, class_names=["cat", "dog", "car"], n_boot=200, progress=False)
    assert res.counts.tolist() == [[1, 0, 0], [1, 2, 0], [0, 1, 1]]
    assert res.matrix.tolist() == [[1.0, 0.0, 0.0], [1 / 3, 2 / 3, 0.0], [0.0, 0.5, 0.5]]
    assert res.accuracy == pytest.approx(4 / 6) and res.class_accuracy.tolist() == [1.0, 2 / 3, 0.5]
    assert res.classes == ["cat", "dog", "car"] and res.images == [str(i) for i in range(6)]
    assert (res.class_low <= res.class_accuracy).all() and (res.class_accuracy <= res.class_high).all()
    assert res.accuracy_interval[0] <= res.accuracy <= res.accuracy_interval[1]
    again = confusion(_identity(), raw(x), y, n_boot=200, progress=False)
    assert torch.equal(again.class_low, res.class_low)  # seeded
    assert again.classes == ["0", "1", "2"]


def test_a_model_is_an_observer_aligned_by_image_id_with_a_table_of_trials(tmp_path):
    x = torch.eye(3)[[0, 1, 2, 1]]
    res = confusion(_identity(), raw(x), [0, 1, 2, 2], class_names=["a", "b", "c"], image_ids=["p", "q", "r", "s"],
                    n_boot=0, progress=False)
    model = res.trials("net")
    assert model.correct.tolist() == [True, True, True, False] and model.deterministic
    person = Trials.from_predictions(["s", "r", "q", "p"], ["c", "c", "b", "a"], ["b", "c", "a", "a"], name="p")
    assert error_consistency(model, person, n_boot=0).value == pytest.approx(0.5)  # wrong on s (both), q (person)
    table = ConfusionResult.from_trials(person, classes=["a", "b", "c"], n_boot=0)
    assert table.counts.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]


def test_a_bundled_model_saves_loads_plots_and_tabulates(tmp_path):
    from insilico import models
    from insilico.models import photos

    net = models.load("minialex")
    x, y = photos.held_out(per_class=1)
    res = confusion(net, x, y, n_boot=20, batch_size=8, progress=False)
    assert res.counts.shape == (16, 16) and int(res.counts.sum()) == 16 and res.classes == list(net.classes)
    assert res.accuracy == pytest.approx(float((net.eval()(x).argmax(1) == y).double().mean()))
    res.save(tmp_path / "c.pt")
    back = ConfusionResult.load(tmp_path / "c.pt")
    assert torch.equal(back.counts, res.counts) and back.classes == res.classes
    assert res.plot().axes and len(res.to_pandas()) == 16


def test_refusals_name_the_fix():
    x = raw(torch.eye(3))
    with pytest.raises(InsilicoError, match="2 labels for 3 stimuli"):
        confusion(_identity(), x, [0, 1], progress=False)
    with pytest.raises(InsilicoError, match=r"labels must lie in 0..2"):
        confusion(_identity(), x, [0, 1, 3], progress=False)
    with pytest.raises(InsilicoError, match="class indices"):
        confusion(_identity(), x, ["a", "b", "c"], progress=False)
    with pytest.raises(InsilicoError, match="2 class_names for a model with 3 outputs"):
        confusion(_identity(), x, [0, 1, 2], class_names=["a", "b"], progress=False)
    with pytest.raises(InsilicoError, match="distinct ids"):
        confusion(_identity(), x, [0, 1, 2], image_ids=["a", "a", "b"], progress=False)
    with pytest.raises(InsilicoError, match="at least 2 classes"):
        confusion(torch.nn.Linear(3, 1), x, [0, 0, 0], progress=False)
    with pytest.raises(StimulusError, match="at least one|empty"):
        confusion(_identity(), torch.rand(0, 3, 4, 4), [], progress=False)
    with pytest.raises(InsilicoError, match="not in classes"):
        ConfusionResult.from_trials(Trials.from_predictions(["a"], ["z"], ["z"]), classes=["x", "y"])


def test_results_of_chunks_are_not_joined_into_stale_counts():
    x = raw(torch.eye(3))
    part = confusion(_identity(), x, [0, 1, 2], n_boot=0, progress=False)
    with pytest.raises(InsilicoError, match="no sample axis"):
        ConfusionResult.concat([part, part])


def test_image_files_are_observed_under_their_relative_paths(tmp_path):
    skimage = pytest.importorskip("skimage.io")
    for k, name in enumerate(["cat/a.png", "dog/b.png", "dog/c.png"]):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        skimage.imsave(tmp_path / name, np.full((4, 4, 3), 60 * k, np.uint8), check_contrast=False)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    res = confusion(net, str(tmp_path), [0, 1, 1], n_boot=0, progress=False)
    assert res.images == ["cat/a.png", "dog/b.png", "dog/c.png"] and int(res.counts.sum()) == 3


def test_a_folder_gives_its_labels_by_the_one_rule_of_every_tool(tmp_path):
    """Without labels=, the folder's classes are the truth: by name against model.classes, else in the folder's
    order when the model has as many outputs; otherwise refused (before: always refused)."""
    skimage = pytest.importorskip("skimage.io")
    for k, name in enumerate(["cat/a.png", "dog/b.png", "dog/c.png"]):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        skimage.imsave(tmp_path / name, np.full((4, 4, 3), 60 * k, np.uint8), check_contrast=False)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    res = confusion(net, str(tmp_path), n_boot=0, progress=False)
    assert res.truth.tolist() == [0, 1, 1] and res.classes == ["cat", "dog"]
    net.classes = ["dog", "cat"]                   # the model's own order wins, matched by name
    res = confusion(net, str(tmp_path), n_boot=0, progress=False)
    assert res.truth.tolist() == [1, 0, 0] and res.classes == ["dog", "cat"]
    net.classes = ["dog", "owl"]
    with pytest.raises(InsilicoError, match=r"\['cat'\] are not among the model's classes"):
        confusion(net, str(tmp_path), n_boot=0, progress=False)
    three = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    with pytest.raises(InsilicoError, match="2 classes .* but the model 3 outputs"):
        confusion(three, str(tmp_path), n_boot=0, progress=False)
    with pytest.raises(InsilicoError, match="labels are needed: .*a folder DIR/<class>/<image>"):
        confusion(three, torch.rand(3, 3, 4, 4), n_boot=0, progress=False)


def test_a_class_answered_all_right_has_a_wilson_interval_not_one_to_one():
    """16 of 16 right: a bootstrap over images gives [1, 1] (every resample is all right); the Wilson interval
    (z = 1.96) is [16 / (16 + z^2), 1], as for every class and the overall accuracy here."""
    from insilico.behaviour.confusion import _result

    truth = np.repeat([0, 1], 16)
    predicted = np.r_[np.zeros(16, int), np.r_[np.ones(8, int), np.zeros(8, int)]]
    res = _result(truth, predicted, ["a", "b"], [str(i) for i in range(32)], 1000, 0, {})
    z2 = 1.959963984540054 ** 2
    assert float(res.class_low[0]) == pytest.approx(16 / (16 + z2)) and float(res.class_high[0]) == pytest.approx(1.0)
    assert float(res.class_low[1]) < 0.5 < float(res.class_high[1])
    none = _result(truth, predicted, ["a", "b"], [str(i) for i in range(32)], 0, 0, {})
    assert np.isnan(none.class_low.numpy()).all() and np.isnan(none.accuracy_interval).all()
