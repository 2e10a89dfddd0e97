"""Op units: outputs of functional operations inside a module's own forward (insilico.ops)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import insilico
from insilico import Unit, UnitError
from insilico.ops import op_name

torchvision = pytest.importorskip("torchvision")


def _stack_depth() -> int:
    return torch._C._len_torch_function_stack()


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _block_input(model, x):
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def _residual_sum(model, x):
    """resnet18 layer1.0's `out += identity`, before its last ReLU, written out."""
    h = _block_input(model, x)
    blk = model.layer1[0]
    return blk.bn2(blk.conv2(blk.relu(blk.bn1(blk.conv1(h))))) + h


# ---------------------------------------------------------------------------------------
# Grammar and names
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["layer1.0/add", "layer1.0/add#1", "cell@2/mul#1", "cell/mul#1@2", "/relu#0",
                                  "/relu", "layer1.0/add[12]", "layer1.0/add#0[12,1:3]", "blk/chunk:1@3[0]",
                                  "blk@-1/chunk:1[0]", "attn:heads[5]", "attn:weights@1[0,2]"])
def test_op_addresses_round_trip(text):
    unit = Unit.parse(text)
    assert str(unit) == text
    assert Unit.parse(unit.key) == unit and Unit.parse(unit.key).key == unit.key


def test_op_address_fields_and_equal_spellings():
    u = Unit.parse("cell@2/mul#1[0]")
    assert (u.module, u.owner, u.op, u.op_call, u.step, u.index) == ("cell/mul#1", "cell", "mul", 1, 2, (0,))
    assert u == "cell/mul#1@2[0]" and u.key == "cell/mul#1@2[0]"
    assert Unit.parse("a/add#0") == "a/add" and Unit.parse("a/add").op_call == 0
    root = Unit.parse("/relu#1")
    assert (root.owner, root.op, root.op_call) == ("", "relu", 1)
    heads = Unit.parse("enc.attn:heads[5]")
    assert (heads.module, heads.part, heads.site, heads.op) == ("enc.attn", "heads", "enc.attn:heads", None)
    # a tool rebuilding "the whole layer" of a unit from its fields keeps the op
    whole = Unit(u.module, u.step, None, u.output)
    assert whole == "cell@2/mul#1" and whole.op == "mul"
    assert Unit.parse("features.3").owner == "features.3" and Unit.parse("features.3").op is None


@pytest.mark.parametrize("bad", ["a/1x", "a/add#x", "a/b/c", "a/add#-1"])
def test_bad_op_addresses_fail_clearly(bad):
    with pytest.raises(UnitError, match="op address|unit address"):
        Unit.parse(bad)


def test_op_names_follow_fx():
    assert op_name(torch.add) == ("add", False)
    assert op_name(torch.Tensor.__add__) == op_name(torch.Tensor.__radd__) == ("add", False)
    assert op_name(torch.Tensor.__iadd__) == op_name(torch.Tensor.add_) == ("add", True)
    assert op_name(F.relu)[0] == op_name(torch.relu)[0] == op_name(torch.Tensor.relu)[0] == "relu"
    assert op_name(torch.Tensor.__getitem__)[0] == "getitem"
    assert op_name(torch.Tensor.__matmul__)[0] == op_name(torch.matmul)[0] == "matmul"
    assert op_name(torch.Tensor.__truediv__)[0] == "div"
    assert op_name(F.softmax)[0] == "softmax" and op_name(torch.cat)[0] == "cat"


def test_names_with_ops_in_execution_order(resnet):
    names = insilico.Probe(resnet).names(torch.rand(1, 3, 32, 32), ops=True)
    block = names[names.index("layer1.0.conv1"):names.index("layer1.0") + 1]
    assert block == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu@0", "layer1.0.conv2", "layer1.0.bn2",
                     "layer1.0/add", "layer1.0.relu@1", "layer1.0"]
    assert "/flatten" in names and names[-1] == ""
    assert "layer1.0.conv1/conv2d" not in names  # a torch.nn layer's own op is its output, not listed
    assert insilico.Probe(resnet).names()[:2] == ["", "conv1"]  # without an example: module paths
    survey = insilico.Probe(resnet).survey(torch.rand(1, 3, 32, 32), ops=True)
    table = survey.table()
    assert "layer2.0/add" in table and "op add" in table and "(128, 4, 4)" in table
    assert survey.shape("layer2.0/add[3]") == (4, 4) and survey.shape("layer1.0.relu@1") == (64, 8, 8)
    with pytest.raises(UnitError, match="'layer2.0/add'"):
        survey.shape("layer2.0/ad")


# ---------------------------------------------------------------------------------------
# Values equal hand-written re-implementations
# ---------------------------------------------------------------------------------------
def test_resnet_residual_sum_equals_hand_computation(resnet):
    x = torch.rand(3, 3, 32, 32)
    probe = insilico.Probe(resnet)
    with probe.record("layer1.0/add", "layer1.0/add[5,1:3]", "layer1.0") as rec:
        resnet(x)
    with torch.no_grad():
        expected = _residual_sum(resnet, x)
    torch.testing.assert_close(rec["layer1.0/add"], expected)
    torch.testing.assert_close(rec["layer1.0/add[5,1:3]"], expected[:, 5, 1:3])
    torch.testing.assert_close(rec["layer1.0"], expected.relu())
    assert probe.hooks() == [] and _hook_count(resnet) == 0 and _stack_depth() == 0


def test_lesion_and_stimulate_an_op(resnet):
    x = torch.rand(2, 3, 32, 32)
    probe = insilico.Probe(resnet)
    with probe.lesion("layer1.0/add[7]"), probe.record("layer1.0", "layer1.1.conv1") as rec:
        resnet(x)
    with torch.no_grad():
        expected = _residual_sum(resnet, x)
        expected[:, 7] = 0
        after = resnet.layer1[1].conv1(expected.relu())
    torch.testing.assert_close(rec["layer1.0"], expected.relu())
    torch.testing.assert_close(rec["layer1.1.conv1"], after)
    with probe.stimulate("layer1.0/add[3]", clamp=-1.0), probe.record("layer1.0[3]") as rec:
        resnet(x)
    assert float(rec["layer1.0[3]"].abs().max()) == 0.0  # relu(-1)


class Functional(nn.Module):
    """No submodules: every value is an op of the model's own forward."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3, generator=g) * 0.3)
        self.b = nn.Parameter(torch.randn(4, generator=g) * 0.1)
        self.v = nn.Parameter(torch.randn(8, 5, generator=g))

    def forward(self, x):
        h = F.conv2d(x, self.w, padding=1)
        h = h + self.b.view(1, -1, 1, 1)
        h = F.relu(h)
        s = torch.cat([h, h * 2], dim=1)
        s += 1
        p = s.mean(dim=(2, 3))
        logits = p @ self.v
        return torch.softmax(logits, -1)[:, :3]


def test_model_without_submodules_every_op_equals_rerun():
    model = Functional()
    x = torch.rand(4, 3, 6, 6)
    probe = insilico.Probe(model)
    names = probe.names(x[:1], ops=True)
    assert names == ["/conv2d", "/view", "/add", "/relu", "/mul", "/cat", "/add#1", "/mean", "/matmul",
                     "/softmax", "/getitem", ""]
    with probe.record(*names) as rec:
        out = model(x)
    with torch.no_grad():
        conv = F.conv2d(x, model.w, padding=1)
        bias = model.b.view(1, -1, 1, 1)
        added = conv + bias
        relu = added.relu()
        cat = torch.cat([relu, relu * 2], 1)
        mean = (cat + 1).mean(dim=(2, 3))
        logits = mean @ model.v
        soft = logits.softmax(-1)
    expected = {"/conv2d": conv, "/add": added, "/relu": relu, "/mul": relu * 2, "/cat": cat,
                "/add#1": cat + 1, "/mean": mean, "/matmul": logits, "/softmax": soft, "/getitem": soft[:, :3],
                "": out}
    for name, value in expected.items():
        torch.testing.assert_close(rec[name], value, msg=name)
    assert rec["/view"].shape == (1, 4, 1, 1)  # a parameter's view: no batch axis of its own, kept as it is
    # the in-place `s += 1` sees an edit of its op too
    with probe.lesion("/add#1[0]"), probe.record("/mean") as rec:
        model(x)
    assert float(rec["/mean"][:, 0].abs().max()) == 0.0
    torch.testing.assert_close(rec["/mean"][:, 1:], mean[:, 1:])


class Cell(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, h, x):
        a = self.lin(h) * 0.5
        b = torch.tanh(x) * a
        return a + b


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.cell = Cell()

    def forward(self, x):  # (N, T, 3)
        h = torch.zeros_like(x[:, 0])
        for t in range(x.shape[1]):
            h = self.cell(h, x[:, t] + t)
        return h


def _unroll(model, x, zero_add_at=None):
    h, steps = torch.zeros_like(x[:, 0]), []
    with torch.no_grad():
        for t in range(x.shape[1]):
            a = model.cell.lin(h) * 0.5
            b = torch.tanh(x[:, t] + t) * a
            steps.append(b)
            h = a + b
            if t == zero_add_at:
                h = torch.zeros_like(h)
    return torch.stack(steps, 1), h


def test_op_of_a_module_called_T_times():
    model, x = Recurrent(), torch.rand(5, 4, 3)
    probe = insilico.Probe(model)
    units = ["cell/mul#1"] + [f"cell/mul#1@{t}" for t in range(4)] + ["cell@2/mul#1", "cell/mul#1@-1"]
    with probe.record(*units) as rec:
        model(x)
    steps, _ = _unroll(model, x)
    torch.testing.assert_close(rec.steps("cell/mul#1"), steps)
    for t in range(4):
        torch.testing.assert_close(rec[f"cell/mul#1@{t}"], steps[:, t])
    torch.testing.assert_close(rec["cell@2/mul#1"], steps[:, 2])
    torch.testing.assert_close(rec["cell/mul#1@-1"], steps[:, 3])
    with pytest.raises(UnitError, match="called 4 time"):
        rec["cell/mul#1"]
    _, final = _unroll(model, x, zero_add_at=2)
    with probe.lesion("cell/add@2"):
        torch.testing.assert_close(model(x), final)
    with probe.lesion("cell/add", steps=[2]):
        torch.testing.assert_close(model(x), final)


def test_ops_of_children_are_theirs_and_missing_ops_list_close_matches():
    model, x = Recurrent(), torch.rand(2, 3, 3)
    probe = insilico.Probe(model)
    with probe.record("cell/linear", "cell/mul") as rec:
        model(x)
    with pytest.raises(UnitError, match="never called") as info:
        rec["cell/linear"]  # the Linear child's op, not cell's own
    assert "'cell/mul'" in str(info.value) and "names(example, ops=True)" in str(info.value)
    with pytest.raises(UnitError, match="can never act") as info:
        with probe.lesion("cell/mul#2"):
            model(x)
    assert "'cell/mul#1'" in str(info.value)
    assert probe.hooks() == [] and _hook_count(model) == 0 and _stack_depth() == 0
    with pytest.raises(UnitError, match="no module 'cel'"):
        probe.record("cel/mul")


# ---------------------------------------------------------------------------------------
# Cost and hygiene: no mode without op units; nothing left behind
# ---------------------------------------------------------------------------------------
def test_no_op_interception_without_op_units(resnet):
    depths = {}

    def spy(name):
        def hook(module, *args):
            depths.setdefault(name, _stack_depth())
        return hook

    handles = [resnet.layer1[0].conv1.register_forward_hook(spy("child")),
               resnet.layer2[0].conv1.register_forward_hook(spy("outside"))]
    try:
        probe = insilico.Probe(resnet)
        with probe.record("layer1.0", "layer2.0.conv1"):
            assert _hook_count(resnet) == 2 + 2 + 2  # one hook per recorded module + the pass hooks + the spies
            resnet(torch.rand(1, 3, 32, 32))
        assert depths == {"child": 0, "outside": 0}
        depths.clear()
        with probe.record("layer1.0/add"):
            handles.append(resnet.layer1[0].register_forward_pre_hook(spy("owner")))  # runs after the probe's
            resnet(torch.rand(1, 3, 32, 32))
        # the mode is open only during layer1.0's own code: not in its children, not elsewhere
        assert depths == {"owner": 1, "child": 0, "outside": 0}
    finally:
        for h in handles:
            h.remove()
    assert _hook_count(resnet) == 0 and _stack_depth() == 0


class Failing(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        self.lin(x) + 1
        raise RuntimeError("boom")


def test_nothing_left_after_an_exception():
    model = nn.Sequential(Failing())
    probe = insilico.Probe(model)
    with pytest.raises(RuntimeError, match="boom"):
        with probe.record("0/add"):
            model(torch.rand(2, 3))
    assert _stack_depth() == 0 and _hook_count(model) == 0 and probe.hooks() == []
    with probe.record("0/add") as rec:  # the next pass counts from scratch
        with pytest.raises(RuntimeError):
            model(torch.ones(2, 3))
    torch.testing.assert_close(rec["0/add"], model[0].lin(torch.ones(2, 3)).detach() + 1)


# ---------------------------------------------------------------------------------------
# Tools take op units
# ---------------------------------------------------------------------------------------
def test_record_stimuli_and_stopping_record_take_op_units(resnet):
    x = torch.rand(5, 3, 32, 32)
    probe = insilico.Probe(resnet)
    recording = probe.record_stimuli(x, ["layer1.0/add[3]", "layer1.0"], batch_size=2, progress=False)
    with torch.no_grad():
        expected = _residual_sum(resnet, x)
    torch.testing.assert_close(recording["layer1.0/add[3]"], expected[:, 3])
    with probe.record("layer1.0/add", stop=True) as rec:
        rec.forward(x[:2])
        assert rec.forward(x[2:]) is None  # stopped after the op
    torch.testing.assert_close(rec["layer1.0/add"], expected)


def test_gradient_map_of_an_op_unit_equals_autograd(resnet):
    x = torch.rand(2, 3, 32, 32)
    grads = insilico.gradient_map(resnet, x, "layer1.0/add[3,2,2]")
    leaf = x.clone().requires_grad_(True)
    _residual_sum(resnet, leaf)[:, 3, 2, 2].sum().backward()
    torch.testing.assert_close(grads, leaf.grad)


def test_maximize_takes_an_op_unit(resnet):
    result = insilico.maximize(resnet, "layer1.0/add[3]", size=32, steps=8, progress=False, seed=0)
    trace = result.losses[0]  # the objective (mean of the op unit) per step
    assert trace[-1] > trace[0]


def test_gradcam_at_an_op_unit_equals_gradcam_at_a_module_in_its_place():
    """Grad-CAM's layer= may be an op: the map equals the one at an Identity module placed on that op's output."""
    from insilico import gradient_map

    class Block(nn.Module):
        def __init__(self, marked):
            super().__init__()
            torch.manual_seed(0)
            self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.head = nn.Linear(4, 2)
            self.mark = nn.Identity() if marked else None

        def forward(self, x):
            h = self.c1(x)
            s = h + self.c2(h)
            if self.mark is not None:
                s = self.mark(s)
            return self.head(torch.relu(s).mean(dim=(2, 3)))

    x = torch.rand(3, 3, 8, 8)
    by_op = gradient_map(Block(False), x, "[1]", method="gradcam", layer="/add")
    by_module = gradient_map(Block(True), x, "[1]", method="gradcam", layer="mark")
    assert by_op.abs().sum() > 0
    torch.testing.assert_close(by_op, by_module)
