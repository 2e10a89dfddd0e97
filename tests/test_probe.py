import pytest
import torch
import torchvision
from torch import nn

from conftest import Partly, no_insilico_hooks
from insilico import InsilicoError, Probe, UnitError
from insilico.pixels import raw

X = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
FC1 = torch.tensor([[1.0, 2.0, -0.5], [3.0, -1.0, 4.5]])  # fc1(X) by hand


# --------------------------------------------------------------------------- record
def test_record_exact_values(known):
    probe = Probe(known)
    with probe.record("fc1", "relu[2]", "fc1[1]", "[0]") as rec:
        out = known(X)
    assert torch.equal(rec["fc1"], FC1)
    assert torch.equal(rec["relu[2]"], torch.tensor([0.0, 4.5]))
    assert torch.equal(rec["fc1[1]"], torch.tensor([2.0, -1.0]))
    assert torch.equal(rec[""] if "" in rec else rec["[0]"], out[:, 0])
    assert out[:, 0].tolist() == [1.0 + 4.0 + 0.0, 3.0 + 0.0 + 13.5]
    assert no_insilico_hooks(known)


def test_record_concatenates_passes_and_is_detached(known):
    with Probe(known).record("fc1") as rec:
        known(X[:1])
        known(X[1:])
    assert torch.equal(rec["fc1"], FC1)
    assert not rec["fc1"].requires_grad


def test_recorded_values_survive_inplace_ops():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(inplace=True))
    with Probe(model).record("0") as rec:
        model(X)
    assert torch.equal(rec["0"], model[0](X))
    assert (rec["0"] < 0).any()  # pre-ReLU values kept although the ReLU ran in place


def test_keep_graph_gives_input_gradients(known):
    x = X.clone().requires_grad_(True)
    with Probe(known).record("fc1[2]", keep_graph=True) as rec:
        known(x)
    rec["fc1[2]"].sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, -1.0], [1.0, -1.0]]))


def test_unknown_unit_and_unrecorded_unit_fail_before_any_hook(known):
    probe = Probe(known)
    with pytest.raises(UnitError, match="'fc1'"):
        probe.record("fc2", "fcl")
    assert no_insilico_hooks(known)
    with probe.record("fc1") as rec:
        known(X)
    with pytest.raises(UnitError, match="not recorded"):
        rec["fc2"]


def test_index_out_of_range_fails_at_the_forward_pass(known):
    with pytest.raises(UnitError, match=r"shape \(3,\)"):
        with Probe(known).record("fc1[3]"):
            known(X)
    assert no_insilico_hooks(known)


def test_module_never_called():
    model = Partly()
    with Probe(model).record("unused") as rec:
        model(X)
    with pytest.raises(UnitError, match="never called"):
        rec["unused"]


# --------------------------------------------------------------------------- recurrence
def test_every_call_of_a_repeated_module_is_kept(recurrent):
    x = torch.rand(3, 1, 6, 6)
    probe = Probe(recurrent)
    with probe.record("act", "act@0", "act@3", "act@-1", "conv@2") as rec:
        recurrent(x)
    # step t by hand
    h = torch.zeros(3, 4, 6, 6)
    by_hand = []
    for _ in range(4):
        h = torch.relu(recurrent.conv(x) + recurrent.lateral(h))
        by_hand.append(h)
    assert torch.allclose(rec["act@0"], by_hand[0]) and torch.allclose(rec["act@3"], by_hand[3])
    assert torch.equal(rec["act@-1"], rec["act@3"])
    assert not torch.allclose(rec["act@0"], rec["act@3"])
    stacked = rec.steps("act")
    assert stacked.shape == (3, 4, 4, 6, 6) and torch.allclose(stacked[:, 2], by_hand[2])
    with pytest.raises(UnitError, match="4 time"):
        rec["act"]
    with pytest.raises(UnitError, match="step 7 .* never happened"):
        with probe.record("act@7") as late:
            recurrent(x)
        late["act@7"]


def test_lesion_at_one_step_changes_only_later_steps(recurrent):
    x = torch.rand(2, 1, 6, 6)
    probe = Probe(recurrent)
    with probe.record("act") as clean:
        recurrent(x)
    with probe.record("act") as lesioned, probe.lesion("lateral@2"):
        recurrent(x)
    a, b = clean.steps("act"), lesioned.steps("act")
    assert torch.equal(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2], b[:, 2])
    with pytest.raises(UnitError, match="counted from 0"):
        probe.lesion("lateral", steps=[-1])


def test_stimulate_selected_steps(recurrent):
    x = torch.rand(2, 1, 6, 6)
    probe = Probe(recurrent)
    with probe.record("conv") as rec, probe.stimulate("conv[1]", add=10.0, steps=[0, 3]):
        recurrent(x)
    base = recurrent.conv(x)[:, 1]
    steps = rec.steps("conv")[:, :, 1]
    assert torch.allclose(steps[:, 0], base + 10) and torch.allclose(steps[:, 3], base + 10)
    assert torch.allclose(steps[:, 1], base)


# --------------------------------------------------------------------------- lesion
def test_lesion_modes_exact(known):
    probe = Probe(known)
    with probe.lesion("fc1[0]"):
        assert known(X)[:, 0].tolist() == [4.0, 13.5]  # unit 0 contributes nothing
    with probe.lesion("relu[1]", mode="constant", value=2.0), probe.record("relu") as rec:
        known(X)
    assert rec["relu"][:, 1].tolist() == [2.0, 2.0]
    reference = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # fc1 responses: [0,0,.5] and [2,4,-1.5]
    with probe.lesion("fc1", mode="mean", reference=raw(reference)), probe.record("fc1") as rec:
        known(X)
    assert torch.allclose(rec["fc1"], torch.tensor([[1.0, 2.0, -0.5]]).expand(2, 3))
    assert no_insilico_hooks(known)


def test_noise_lesion_is_seeded(known):
    probe = Probe(known)
    x = torch.zeros(4000, 2)
    outs = []
    for _ in range(2):
        with probe.lesion("fc1", mode="noise", std=2.0, value=1.0, seed=3), probe.record("fc1") as rec:
            known(x)
        outs.append(rec["fc1"])
    assert torch.equal(outs[0], outs[1])
    assert abs(outs[0].mean().item() - 1.0) < 0.05 and abs(outs[0].std().item() - 2.0) < 0.05


def test_fraction_lesion_hits_the_chosen_channels_only():
    model = nn.Sequential(nn.Conv2d(1, 10, 1), nn.ReLU())
    probe = Probe(model)
    x = torch.rand(2, 1, 3, 3)
    with probe.lesion("0", fraction=0.3, seed=1) as lesion, probe.record("0") as rec:
        model(x)
    chosen = lesion.lesioned["0"]
    assert len(chosen) == 3
    silent = (rec["0"] == 0).flatten(2).all(dim=2).all(dim=0)
    assert silent.nonzero().flatten().tolist() == chosen.tolist()
    with probe.lesion("0", fraction=0.3, seed=1) as again:
        model(x)
    assert torch.equal(again.lesioned["0"], chosen)


def test_seedless_lesions_leave_the_global_random_state_alone(known):
    """Issue 23 item 4: ``seed=None`` takes the OS's entropy; it never re-seeds torch (``torch.seed()`` did)."""
    model = nn.Sequential(nn.Conv2d(1, 10, 1), nn.ReLU())
    torch.manual_seed(7)
    want = torch.rand(3)  # what a seeded script draws next, untouched by insilico
    torch.manual_seed(7)
    probe = Probe(model)
    chosen = []
    for _ in range(2):
        with probe.lesion("0", fraction=0.5, seed=None) as lesion, torch.no_grad():
            model(torch.rand(1, 1, 3, 3, generator=torch.Generator().manual_seed(0)))
        chosen.append(lesion.lesioned["0"].tolist())
        with Probe(known).lesion("fc1", mode="noise", seed=None), torch.no_grad():
            known(torch.zeros(2, 2))
    assert torch.equal(torch.rand(3), want)
    assert len(chosen[0]) == 5
    # fresh entropy per lesion: two draws of 5 of 10 channels agree with probability 1/252
    with torch.no_grad():
        draws = set()
        for _ in range(4):
            with probe.lesion("0", fraction=0.5) as lesion:
                model(torch.zeros(1, 1, 3, 3))
            draws.add(tuple(lesion.lesioned["0"].tolist()))
    assert len(draws) > 1


def test_mean_lesion_reference_passes_the_gate_by_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 1))
    with pytest.raises(InsilicoError, match=r"^reference must lie in pixel space"):
        Probe(model).lesion("0", mode="mean", reference=torch.rand(3, 1, 4, 4) * 255)


def test_lesion_requires_reference_and_known_mode(known):
    probe = Probe(known)
    with pytest.raises(InsilicoError, match="reference"):
        probe.lesion("fc1", mode="mean")
    with pytest.raises(InsilicoError, match="mode"):
        probe.lesion("fc1", mode="ablate")


# --------------------------------------------------------------------------- stimulate
def test_stimulate_add_gain_clamp(known):
    probe = Probe(known)
    with probe.stimulate("fc1", gain=2.0, add=1.0), probe.record("fc1") as rec:
        known(X)
    assert torch.equal(rec["fc1"], FC1 * 2 + 1)
    with probe.stimulate("fc1", clamp=(0.0, 2.5)), probe.record("fc1") as rec:
        known(X)
    assert torch.equal(rec["fc1"], FC1.clamp(0, 2.5))
    with probe.stimulate("fc1[1]", clamp=-3.0), probe.record("fc1") as rec:
        known(X)
    assert rec["fc1"][:, 1].tolist() == [-3.0, -3.0] and torch.equal(rec["fc1"][:, 0], FC1[:, 0])


def test_stimulate_pattern_broadcast_over_selection():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Identity())
    pattern = torch.arange(16.0).reshape(4, 4)
    x = torch.rand(2, 1, 4, 4)
    with Probe(model).stimulate("0[2]", add=pattern):
        y = model(x)
    assert torch.allclose(y[:, 2], model[0](x)[:, 2] + pattern)
    with pytest.raises(InsilicoError, match="broadcast"):
        with Probe(model).stimulate("0[2]", add=torch.ones(3, 3)):
            model(x)
    assert no_insilico_hooks(model)


def test_edits_compose_in_order_and_recorders_see_the_result(known):
    probe = Probe(known)
    with probe.record("fc1") as rec:
        with probe.stimulate("fc1", add=1.0), probe.stimulate("fc1", gain=3.0):
            known(X)
        assert len(probe.hooks()) == 1  # only the record is still attached
    assert torch.equal(rec["fc1"], (FC1 + 1) * 3)
    assert probe.hooks() == [] and no_insilico_hooks(known)


# --------------------------------------------------------------------------- lifecycle
def test_hooks_removed_after_exception_and_user_hooks_kept(known):
    calls = []
    user = known.fc1.register_forward_hook(lambda m, i, o: calls.append(1))
    probe = Probe(known)
    with pytest.raises(RuntimeError, match="boom"):
        with probe.record("fc1"), probe.lesion("relu"), probe.lesion_connections("fc2", inputs=[0]):
            known(X)
            raise RuntimeError("boom")
    assert list(known.fc1._forward_hooks.values()) != [] and len(known.fc1._forward_hooks) == 1
    assert known.fc2.weight.tolist() == [[1.0, 2.0, 3.0]]
    assert probe.hooks() == []
    user.remove()
    assert no_insilico_hooks(known)
    known(X)
    assert calls == [1]


def test_handles_work_without_with(known):
    probe = Probe(known)
    lesion = probe.lesion("fc1")
    assert known(X).abs().sum() == 0
    assert probe.hooks() == ["lesion(zero) fc1"]
    lesion.remove()
    lesion.remove()  # idempotent
    assert known(X)[:, 0].tolist() == [5.0, 16.5]
    probe.record("fc1")
    probe.remove()
    assert no_insilico_hooks(known)


def test_works_under_no_grad_and_in_half_precision(known):
    model = known.to(torch.bfloat16)
    with torch.no_grad(), Probe(model).lesion("fc1[0]") as _, Probe(model).record("fc1") as rec:
        out = model(X.to(torch.bfloat16))
    assert rec["fc1"].dtype == torch.bfloat16 and rec["fc1"][:, 0].tolist() == [0.0, 0.0]
    assert out.tolist() == [[4.0], [13.5]]


# --------------------------------------------------------------------------- connections
def test_connection_lesion_zeroes_exact_weights_and_restores_bits():
    conv = nn.Conv2d(4, 6, 3)
    model = nn.Sequential(conv)
    before = conv.weight.detach().clone()
    with Probe(model).lesion_connections("0", outputs=[1, 5], inputs=[0, 3]) as handle:
        w = conv.weight.detach()
        assert (w[[1, 5]][:, [0, 3]] == 0).all()
        untouched = torch.ones(6, 4, dtype=torch.bool)
        untouched[1, 0] = untouched[1, 3] = untouched[5, 0] = untouched[5, 3] = False
        assert torch.equal(w[untouched], before[untouched])
        assert "4 connections" in repr(handle)
    assert torch.equal(conv.weight, before) and conv.weight.data_ptr() == conv.weight.data_ptr()


def test_connection_lesion_grouped_conv():
    conv = nn.Conv2d(4, 4, 1, groups=2, bias=False)  # out 0,1 <- in 0,1; out 2,3 <- in 2,3
    nn.init.ones_(conv.weight)
    x = torch.ones(1, 4, 1, 1)
    with Probe(conv).lesion_connections("", outputs=[0, 2], inputs=[1, 2]):
        y = conv(x).flatten().tolist()
    assert y == [1.0, 2.0, 1.0, 2.0]
    with pytest.raises(UnitError, match=r"\[0, 4\)"):
        Probe(conv).lesion_connections("", inputs=[4])
    with pytest.raises(InsilicoError, match="Linear and Conv"):
        Probe(nn.Sequential(nn.ReLU())).lesion_connections("0")


# --------------------------------------------------------------------------- structured outputs
def test_tuple_outputs():
    model = nn.Sequential()
    model.add_module("lstm", nn.LSTM(3, 5, batch_first=True))
    x = torch.rand(2, 7, 3)
    probe = Probe(model)
    with probe.record("lstm", "lstm:0[:, 3]") as rec:
        out, (h, c) = model(x)
    assert isinstance(rec["lstm"], tuple) and torch.equal(rec["lstm"][1][0], h)
    assert torch.equal(rec["lstm:0[:, 3]"], out[:, :, 3])
    with probe.lesion("lstm:0[:, 3]"):
        out2, (h2, _) = model(x)
    assert (out2[:, :, 3] == 0).all() and torch.equal(out2[:, :, :3], out[:, :, :3]) and torch.equal(h2, h)
    with pytest.raises(UnitError, match=r"\(Tensor\[2, 7, 5\], \(Tensor"):
        with probe.record("lstm[3]"):
            model(x)
    assert no_insilico_hooks(model)


# --------------------------------------------------------------------------- real architectures
def test_alexnet_inplace_relu_records_pre_activation_values():
    model = torchvision.models.alexnet(num_classes=10).eval()
    x = torch.rand(2, 3, 96, 96)
    with Probe(model).record("features.0", "features.1", "features.3[5]", "classifier.6") as rec:
        logits = model(x)
    conv = model.features[0](x)
    assert torch.allclose(rec["features.0"], conv) and (rec["features.0"] < 0).any()
    assert torch.allclose(rec["features.1"], conv.relu())
    assert rec["features.3[5]"].shape == (2, 11, 11)
    assert torch.equal(rec["classifier.6"], logits)
    assert no_insilico_hooks(model)


def test_resnet18_values_safe_from_residual_inplace_add():
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    with Probe(model).record("maxpool", "layer1.0.bn2", "layer1.0") as rec:
        model(x)
    block = model.layer1[0]
    inner = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(rec["maxpool"])))))
    assert torch.allclose(rec["layer1.0.bn2"], inner, atol=1e-6)  # before `out += identity`
    assert torch.allclose(rec["layer1.0"], (inner + rec["maxpool"]).relu(), atol=1e-6)


def test_vgg11_channel_lesion_propagates():
    model = torchvision.models.vgg11(num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    probe = Probe(model)
    with probe.lesion("features.0[3]"), probe.record("features.1[3]", "features.3") as rec:
        lesioned = model(x)
    with probe.record("features.3") as clean:
        intact = model(x)
    assert (rec["features.1[3]"] == 0).all()
    assert not torch.allclose(rec["features.3"], clean["features.3"])
    assert not torch.allclose(lesioned, intact)
    assert no_insilico_hooks(model)


@pytest.mark.cuda
def test_cuda_record_lesion_stimulate(known):
    model = known.cuda()
    x = X.cuda()
    probe = Probe(model)
    with probe.lesion("fc1[0]", mode="noise", seed=0), probe.stimulate("fc1[1]", add=1.0), probe.record("fc1") as rec:
        model(x)
    assert rec["fc1"].device.type == "cuda"
    assert torch.allclose(rec["fc1"][:, 1].cpu(), FC1[:, 1] + 1)


def test_lesion_mean_over_a_reference_of_another_size_is_a_clear_error():
    """Issue 23 fault 13: a reference of 8 px while the model runs on 16 px names reference= and both shapes;
    the hooks are gone afterwards and a reference of the right size lesions as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(InsilicoError, match=r"'1\[0\]'.*reference= has shape \(6, 6\).*now has \(14, 14\)"):
        with torch.no_grad(), Probe(model).lesion("1[0]", mode="mean", reference=torch.rand(2, 3, 8, 8)):
            model(x)
    no_insilico_hooks(model)
    reference = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        want = model[1](model[0](reference))[:, 0].mean(0)
        with Probe(model).lesion("1[0]", mode="mean", reference=reference), Probe(model).record("1") as rec:
            model(x)
    torch.testing.assert_close(rec["1"][:, 0], want.expand(2, 14, 14))


# --------------------------------------------------------------------------- structured outputs (issue 25)
class _Loop(nn.Module):
    """An LSTM cell run for 3 steps: each call returns the tuple (h, c)."""

    def __init__(self):
        super().__init__()
        self.cell, self.head = nn.LSTMCell(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        state = None
        for _ in range(3):
            state = self.cell(x, state)
        return self.head(state[0])


def test_steps_of_a_tuple_output_stack_part_by_part():
    torch.manual_seed(0)
    model, x = _Loop(), torch.rand(5, 3)
    probe = Probe(model)
    with probe.record("cell", "cell:0", *[f"cell:1@{t}" for t in range(3)]) as rec:
        model(x)
    h, c = rec.steps("cell")  # was: 'tuple' object has no attribute 'shape'
    assert h.shape == c.shape == (5, 3, 4)
    assert torch.equal(h, rec.steps("cell:0"))
    assert torch.equal(c, torch.stack([rec[f"cell:1@{t}"] for t in range(3)], dim=1))
    assert not torch.equal(h, c)


def test_a_tuple_output_without_a_part_is_refused_with_its_parts_by_edits_and_reductions():
    model, x = _Loop(), torch.rand(5, 3)
    probe = Probe(model)
    parts = r"'cell@1' reads \(Tensor\[5, 4\], Tensor\[5, 4\]\), not one tensor.*'cell:0@1' \(Tensor\[5, 4\]\), 'cell:1@1'"
    with pytest.raises(UnitError, match=parts):
        with probe.lesion("cell@1"):
            model(x)
    with pytest.raises(UnitError, match=r"not one tensor for reduce='max'.*'cell:0'"):
        with probe.record("cell", reduce="max"):
            model(x)
    with pytest.raises(UnitError, match=r"not one tensor to index.*'cell:1@2\[0\]'"):
        with probe.record("cell@2[0]") as rec:
            model(x)
    assert probe.hooks() == []
    with probe.lesion("cell:1@1"), probe.record("cell:1@1") as rec:  # a part is edited as any tensor
        model(x)
    assert rec["cell:1@1"].abs().sum() == 0


def test_nested_parts_and_layers_first_states_of_an_lstm_are_never_joined_on_the_wrong_axis():
    """nn.LSTM returns (output, (h_n, c_n)) with h_n (layers, N, H): one pass is returned as it is; joining passes
    or steps along axis 0 would mix layers with samples, so it is refused, and ':0' (batch first) works."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    x = torch.rand(4, 5, 3)
    model = nn.Sequential(lstm)
    probe = Probe(model)
    with probe.record("0", "0:0") as rec:
        model(x)
    out, (h, c) = rec["0"]
    assert out.shape == (4, 5, 4) and h.shape == (1, 4, 4)
    with probe.record("0", "0:0") as rec:
        model(x[:2])
        model(x[2:])
    with pytest.raises(UnitError, match=r"cannot join the forward passes of '0'.*first axes \[1, 2\].*'0:0'"):
        rec["0"]
    assert torch.allclose(rec["0:0"], out, atol=1e-6)
    with pytest.raises(UnitError, match=r"part 1 of '0''s output is \(Tensor\[1, 1, 4\], Tensor\[1, 1, 4\]\), not a "
                                        r"tensor: an address names one level of parts; record '0' whole"):
        with probe.record("0:1"):
            model(x[:1])
