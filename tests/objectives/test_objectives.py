"""Objectives: exact values on a known model, the algebra, unit bookkeeping, per-sample stacking, diversity."""
import pytest
import torch
import torch.nn.functional as F

import insilico
from insilico.errors import InsilicoError, UnitError
from insilico.objectives import (Activation, Activations, Channel, DeepDream, Direction, Diversity, L1, L2, Neuron,
                                 Objective, Stacked, TotalVariation, inhibit, unique_wholes)

X = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5]])


def hidden(x):
    """relu(W1 x + b1) of KnownNet, by hand: W1 = [[1,0],[0,1],[1,-1]], b1 = [0,0,0.5]."""
    return torch.stack([x[:, 0], x[:, 1], x[:, 0] - x[:, 1] + 0.5], dim=1).clamp_min(0)


def test_unit_objectives_and_algebra_are_exact_on_the_known_model(known):
    h = hidden(X)
    out = h @ torch.tensor([1.0, 2.0, 3.0])
    a, b, c = Activation("relu[0]"), Activation("relu[2]"), Activation("fc2[0]")
    assert a.evaluate(known, X).tolist() == h[:, 0].tolist()
    assert Activation("relu[0:2]").evaluate(known, X).tolist() == h[:, :2].mean(dim=1).tolist()
    composite = a - 0.5 * b + 2 * c - 1.0
    torch.testing.assert_close(composite.evaluate(known, X), h[:, 0] - 0.5 * h[:, 2] + 2 * out - 1.0)
    torch.testing.assert_close((-(a + b) / 4).evaluate(known, X), -(h[:, 0] + h[:, 2]) / 4)
    torch.testing.assert_close((3 - a).evaluate(known, X), 3 - h[:, 0])
    torch.testing.assert_close(inhibit(c).evaluate(known, X), -out)
    torch.testing.assert_close(DeepDream("relu").evaluate(known, X), h.pow(2).mean(dim=1))
    v = torch.tensor([3.0, 0.0, 4.0])
    torch.testing.assert_close(Direction("relu", v).evaluate(known, X), h @ (v / 5))


def test_composites_merge_units_without_duplicates_and_hook_each_module_once(known):
    objective = Activation("relu[0]") + Activation("relu[2]") - 0.3 * Activation("relu[0]") + DeepDream("fc1")
    assert [str(u) for u in objective.units] == ["relu[0]", "relu[2]", "fc1"]
    assert [w.key for w in unique_wholes(objective.units)] == ["relu", "fc1"]
    calls = []
    known.relu.register_forward_hook(lambda *args: calls.append("relu"))
    objective.evaluate(known, X)
    assert calls == ["relu"]


def test_gradients_flow_with_grad_true(known):
    x = X.clone().requires_grad_(True)
    Activation("fc2[0]").evaluate(known, x, grad=True).sum().backward()
    # d out / d x by hand: out = relu(x0) + 2 relu(x1) + 3 relu(x0 - x1 + 0.5)
    expected = torch.tensor([[1.0, 2.0], [1.0 + 3.0, -3.0], [0.0, 2.0]])
    torch.testing.assert_close(x.grad, expected)


def test_stack_assigns_objective_i_to_sample_i(known):
    h = hidden(X)
    stacked = Objective.stack([Activation("relu[2]"), Activation("relu[0]") - Activation("relu[1]"),
                               Channel("fc1", 1)])
    values = stacked.evaluate(known, X)
    torch.testing.assert_close(values, torch.stack([h[0, 2], h[1, 0] - h[1, 1], X[2, 1]]))
    assert isinstance(stacked, Stacked) and len(stacked) == 3
    with pytest.raises(InsilicoError, match="3 samples"):
        stacked.evaluate(known, X[:2])


def test_stacked_gather_equals_per_sample_loop():
    g = torch.Generator().manual_seed(0)
    acts = {"conv": torch.randn(5, 4, 6, 7, generator=g)}
    objectives = [Channel("conv", 1), Activation("conv[2,3,4]"), Activation("conv[0:2, 1:3]"),
                  Activation("conv[[1,3], 2]"), Channel("conv", 3)]
    stacked = Objective.stack(objectives)(acts)
    loop = torch.stack([o({"conv": acts["conv"][i:i + 1]})[0] for i, o in enumerate(objectives)])
    torch.testing.assert_close(stacked, loop)


def test_subset_equals_the_rows_of_the_whole_batch():
    g = torch.Generator().manual_seed(1)
    acts = {"conv": torch.randn(4, 3, 5, 5, generator=g)}
    images = torch.rand(4, 1, 5, 5, generator=g)
    stacked = Objective.stack([Channel("conv", 0), Activation("conv[1, 2, 2]"), DeepDream("conv"), Channel("conv", 2)])
    objective = stacked - 0.5 * TotalVariation() + 2.0
    rows = torch.tensor([3, 1])
    whole = objective(acts, images)
    part = objective.subset(rows)({"conv": acts["conv"][rows]}, images[rows])
    torch.testing.assert_close(part, whole[rows])
    plain = Channel("conv", 1) - 0.5 * TotalVariation()
    assert plain.subset(rows) is plain  # nothing per-sample: the same object


def test_neuron_defaults_to_the_centre():
    acts = {"conv": torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)}
    assert Neuron("conv", 1)(acts).tolist() == acts["conv"][:, 1, 2, 2].tolist()
    assert Neuron("conv", 2, y=0, x=3)(acts).tolist() == acts["conv"][:, 2, 0, 3].tolist()


def naive_diversity(act, group_size=None):
    """O(B^2) reference: minus the mean cosine of each sample's flattened Gram matrix with the others of its group."""
    n = act.shape[0]
    size = group_size or n
    grams = [(a.reshape(a.shape[0], -1) @ a.reshape(a.shape[0], -1).T).flatten() for a in act]
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i and j // size == i // size]
        cos = [F.cosine_similarity(grams[i], grams[j], dim=0) for j in others]
        out.append(-sum(cos) / max(1, len(cos)))
    return torch.stack([torch.as_tensor(o, dtype=act.dtype) for o in out])


@pytest.mark.parametrize("group_size", [None, 2, 3])
def test_diversity_equals_naive_pairwise_reference(group_size):
    act = torch.randn(6, 5, 4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(Diversity("l", group_size=group_size)({"l": act}), naive_diversity(act, group_size))


def test_diversity_of_identical_samples_is_minus_one():
    act = torch.rand(1, 3, 4, 4).expand(4, -1, -1, -1)
    torch.testing.assert_close(Diversity("l")({"l": act}), torch.full((4,), -1.0))


def test_image_regularizers_exact():
    images = torch.zeros(2, 1, 2, 3)
    images[1, 0] = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    empty = Activations({})
    # sample 1: horizontal |diffs| = 1,1,0,0 (mean 0.5); vertical = 1,0,1 (mean 2/3)
    torch.testing.assert_close(TotalVariation()(empty, images), torch.tensor([0.0, 0.5 + 2 / 3]))
    torch.testing.assert_close(L1()(empty, images), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(L2(0.0)(empty, images), torch.tensor([0.0, 4 / 6]))
    combined = Activation("fc[0]") - 0.5 * TotalVariation()
    value = combined({"fc": torch.tensor([[2.0], [2.0]])}, images)
    torch.testing.assert_close(value, torch.tensor([2.0, 2.0 - 0.5 * (0.5 + 2 / 3)]))


def test_errors_say_what_to_do(known):
    with pytest.raises(InsilicoError, match="only with numbers"):
        Activation("relu[0]") * Activation("relu[1]")
    with pytest.raises(InsilicoError, match="cannot combine"):
        Activation("relu[0]") + "x"
    with pytest.raises(UnitError, match="was not recorded"):
        Activation("relu[0]")({"fc1": torch.zeros(2, 3)})
    with pytest.raises(UnitError, match="has no module"):
        Activation("nope[0]").evaluate(known, X)
    with pytest.raises(InsilicoError, match="direction"):
        Direction("relu", torch.ones(5)).evaluate(known, X)
    with pytest.raises(InsilicoError, match="pixel images"):
        TotalVariation()(Activations({}))


def test_lowercase_factories_take_one_address():
    from insilico import objectives as O

    acts = {"c": torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)}
    assert torch.equal(O.channel("c[1]")(acts), acts["c"][:, 1].mean(dim=(1, 2)))
    assert torch.equal(O.channel("c", 2)(acts), acts["c"][:, 2].mean(dim=(1, 2)))
    assert torch.equal((-O.channel("c[1]"))(acts), -acts["c"][:, 1].mean(dim=(1, 2)))
    assert torch.equal(O.neuron("c[2,1,3]")(acts), acts["c"][:, 2, 1, 3])
    assert torch.equal(O.neuron("c[0]")(acts), acts["c"][:, 0, 2, 2])
    with pytest.raises(UnitError, match="picks one channel"):
        O.channel("c")
    with pytest.raises(UnitError, match="picks one channel"):
        O.channel("c[1:3]")


def test_representation_targets_must_be_finite():
    from insilico.objectives.representation import RepresentationDistance

    target = torch.rand(2, 3)
    RepresentationDistance({"0": target})
    with pytest.raises(InsilicoError, match=r"target representation at 0 contains NaN or inf"):
        RepresentationDistance({"0": torch.cat([target[:1], torch.tensor([[0.1, float("nan"), 0.3]])])})
