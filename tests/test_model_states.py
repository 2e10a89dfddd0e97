"""Model states insilico cannot probe as they are (compiled, meta) are refused with the fix in the message;
wrapped models (DataParallel) get the wrapper's prefix in their close matches (issue 25)."""
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import insilico
from conftest import no_insilico_hooks
from insilico import InsilicoError, Probe, UnitError


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- compiled
def test_compiled_model_is_refused_by_recording_and_gradient_tools_with_the_fix():
    """A hook added after a compiled model's first call never fires (dynamo does not guard on module hooks;
    checked by hand on torch 2.14 with backend='eager', not here: running dynamo costs seconds)."""
    model = _net()
    compiled = torch.compile(model, backend="eager")
    with pytest.raises(InsilicoError, match=r"torch\.compile.*insilico\.Probe\(model\._orig_mod\)"):
        Probe(compiled)
    with pytest.raises(InsilicoError, match=r"_orig_mod"):
        insilico.gradient_map(compiled, X, "3[0]")
    # the fix the message names: the original module, the same weights, exact values
    with Probe(compiled._orig_mod).record("1") as rec:
        compiled._orig_mod(X)
    assert torch.equal(rec["1"], torch.relu(model[0](X)))
    maps = insilico.gradient_map(compiled._orig_mod, X, "3[0]")
    assert torch.equal(maps, insilico.gradient_map(_net(), X, "3[0]"))
    assert no_insilico_hooks(model)


def test_compiled_submodule_and_module_compile_are_refused():
    model = _net()
    model[0] = torch.compile(model[0], backend="eager")
    with pytest.raises(InsilicoError, match=r"model\.0 is compiled.*set model\.0 = model\.0\._orig_mod"):
        Probe(model)
    other = _net()
    other.compile(backend="eager")
    with pytest.raises(InsilicoError, match=r"model\.compile\(\) was called"):
        Probe(other)
    with pytest.raises(InsilicoError, match=r"compile\(\) was called"):
        insilico.maximize(other, "3[0]", size=8, steps=1, progress=False)


# --------------------------------------------------------------------------- meta
def test_meta_model_is_refused_before_any_value_is_made():
    model = _net().to("meta")
    with pytest.raises(InsilicoError, match=r"parameter '0\.weight'.*meta device.*to_empty"):
        Probe(model)
    with pytest.raises(InsilicoError, match="meta device"):
        insilico.gradient_map(model, X, "3[0]")  # was: a data-less meta tensor returned as the map
    bn = nn.Sequential(nn.BatchNorm2d(3))
    bn.register_buffer("scale", torch.empty(3, device="meta"))
    with pytest.raises(InsilicoError, match=r"buffer 'scale'"):
        Probe(bn)
    loaded = _net().to("meta").to_empty(device="cpu")
    loaded.load_state_dict(_net().state_dict())
    with Probe(loaded).record("3") as rec:  # the fix the message names works
        out = loaded(X)
    assert torch.equal(rec["3"], out)


# --------------------------------------------------------------------------- wrapped
def test_data_parallel_close_matches_name_the_module_prefix():
    wrapped = nn.DataParallel(_net())
    with pytest.raises(UnitError, match=r"Did you mean 'module\.1'\?.*wrapped in DataParallel.*model\.module"):
        Probe(wrapped).record("1")
    with pytest.raises(UnitError, match=r"Did you mean 'module\.3'"):
        insilico.gradient_map(wrapped, X, "3[0]")
    with Probe(wrapped).record("module.1") as rec:  # the suggested address records the module
        wrapped(X)
    assert torch.equal(rec["module.1"], torch.relu(wrapped.module[0](X)))


def test_distributed_data_parallel_close_matches_name_the_module_prefix(tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group of this process yet")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(_net())
        with pytest.raises(UnitError, match=r"Did you mean 'module\.1'\?.*wrapped in DistributedDataParallel"):
            Probe(wrapped).record("1")
    finally:
        dist.destroy_process_group()


def test_unit_copied_with_a_wrapper_prefix_suggests_the_plain_path():
    with pytest.raises(UnitError, match=r"Did you mean '1'"):
        Probe(_net()).record("module.1")
    with pytest.raises(UnitError, match=r"Did you mean '1'"):   # any wrapper's prefix (a ZooModel's 'net.')
        Probe(_net()).record("net.1")


def test_a_wrapper_with_one_network_child_suggests_the_address_under_it():
    """A ZooModel (normalize, then net), or any model whose one container child holds the network: an address of
    the network answers '<child>.<address>' first and says where the modules are."""
    wrapper = nn.Sequential()
    wrapper.add_module("normalize", nn.Identity())
    wrapper.add_module("backbone", _net())
    with pytest.raises(UnitError, match=r"Did you mean 'backbone\.1'.*under 'backbone\.': write 'backbone\.1'"):
        Probe(wrapper).record("1")
    torchvision = pytest.importorskip("torchvision")
    from insilico.models.zoo import Preprocessing, ZooModel

    zoo = ZooModel(torchvision.models.resnet18(), Preprocessing(
        resize=None, crop=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear", source="test"), "test")
    with pytest.raises(UnitError, match=r"Did you mean 'net\.layer1\.0\.conv1',.*under 'net\.'"):
        Probe(zoo).record("layer1.0.conv1")


# --------------------------------------------------------------------------- lesion_connections on reparametrized weights
def _pruned(layer):
    mask = torch.ones(3, 3)
    mask[0, 1] = mask[2, 2] = 0  # pruned by the user: stays 0; the lesion zeroes row 1 on top
    return prune.custom_from_mask(layer, "weight", mask)


REPARAMETRIZED = {
    "prune": _pruned,
    "weight_norm (hook)": lambda layer: torch.nn.utils.weight_norm(layer),
    "weight_norm (parametrize)": lambda layer: torch.nn.utils.parametrizations.weight_norm(layer),
    "spectral_norm (hook)": lambda layer: torch.nn.utils.spectral_norm(layer),
    "spectral_norm (parametrize)": lambda layer: torch.nn.utils.parametrizations.spectral_norm(layer),
    "orthogonal (parametrize)": lambda layer: torch.nn.utils.parametrizations.orthogonal(layer),
    "plain": lambda layer: layer,
}


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("kind", list(REPARAMETRIZED))
def test_lesion_connections_lesions_the_effective_weight(kind):
    """Was a silent no-op where the weight is recomputed every pass: the forward now equals one computed by
    hand with the effective weight's chosen entries zeroed, and everything is put back bit-exactly after."""
    torch.manual_seed(0)
    layer = REPARAMETRIZED[kind](nn.Linear(3, 3))
    model = nn.Sequential(layer).eval()
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(2))
    before, weight = model(x).detach(), layer.weight.detach().clone()
    lesioned = weight.clone()
    lesioned[1, 0] = lesioned[1, 2] = 0
    assert lesioned[1].abs().sum() > 0 and weight[1, 0] != 0  # the lesion changes something
    hooks = dict(layer._forward_pre_hooks)
    with Probe(model).lesion_connections("0", outputs=[1], inputs=[0, 2]):
        assert torch.equal(layer.weight, lesioned)  # seen inside the block too
        out = model(x)
        again = model(x)
    assert torch.equal(out, torch.nn.functional.linear(x, lesioned, layer.bias))
    assert torch.equal(again, out)
    assert torch.equal(model(x), before) and torch.equal(layer.weight, weight)
    assert dict(layer._forward_pre_hooks) == hooks


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_lesion_connections_on_a_weight_normed_grouped_conv_keeps_gradients():
    torch.manual_seed(0)
    layer = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(4, 4, 3, groups=2))
    model = nn.Sequential(layer).eval()
    x = torch.rand(2, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    lesioned = layer.weight.detach().clone()
    lesioned[0, 1] = 0  # output 0 <- input 1 (group 0); output 0 <- input 3 does not exist
    with Probe(model).lesion_connections("0", outputs=[0], inputs=[1, 3]):
        out = model(x)
        out.sum().backward()
    assert torch.allclose(out, torch.nn.functional.conv2d(x, lesioned, layer.bias, groups=2), atol=1e-6)
    assert layer.parametrizations.weight.original1.grad is not None
    assert len(layer.parametrizations.weight) == 1


def test_lesion_connections_refuses_a_weight_it_cannot_reach():
    layer = nn.Linear(3, 2)
    del layer.weight
    layer.weight = torch.ones(2, 3)  # a plain tensor nothing recomputes
    with pytest.raises(InsilicoError, match=r"neither a parameter.*probe\.lesion\('0\[k\]'\)"):
        Probe(nn.Sequential(layer)).lesion_connections("0", outputs=[0])


# --------------------------------------------------------------------------- structured outputs through every tool
class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean((2, 3))


class _PairNet(nn.Module):
    """A module returning a tuple (as LSTM cells and detection heads do) inside an image model."""

    def __init__(self):
        super().__init__()
        self.pair, self.head = _Pair(), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.pair(x)[1])


TUPLE_ROUTES = {
    "maximize": lambda net: insilico.maximize(net, "pair[0]", size=8, steps=1, progress=False),
    "maximize (layer)": lambda net: insilico.maximize(net, "pair", size=8, steps=1, progress=False),
    "metamer": lambda net: insilico.metamer(net, "pair", X[:1], steps=1),
    "gradient_map": lambda net: insilico.gradient_map(net, X, "pair[0]"),
    "top_exemplars": lambda net: insilico.top_exemplars(net, X, "pair[0]", k=1),
    "record_stimuli": lambda net: Probe(net).record_stimuli(X, "pair", progress=False),
}


@pytest.mark.parametrize("tool", list(TUPLE_ROUTES))
def test_tools_refuse_a_tuple_output_without_a_part_and_name_the_parts(tool):
    """Was: 'tuple' object has no attribute 'shape' (maximize, rec.steps) or a guess; now every route reads
    the structure through the address grammar and says which parts there are."""
    torch.manual_seed(0)
    net = _PairNet()
    with pytest.raises(UnitError, match=r"'pair(\[0\])?' (reads|returns) \(Tensor\[\d, 4, 8, 8\], Tensor\[\d, 4\]\).*'pair:0"):
        TUPLE_ROUTES[tool](net)
    assert no_insilico_hooks(net)


def test_a_part_of_a_tuple_output_is_an_ordinary_unit_for_the_tools():
    torch.manual_seed(0)
    net = _PairNet()
    result = insilico.maximize(net, "pair:1[2]", size=8, steps=3, progress=False)
    with Probe(net).record("pair:1[2]") as rec:
        net(result.images)
    assert torch.allclose(rec["pair:1[2]"], net.pair.conv(result.images).mean((2, 3))[:, 2])
    maps = insilico.gradient_map(net, X, "pair:1[2]")
    x = X.clone().requires_grad_(True)
    net.pair.conv(x).mean((2, 3))[:, 2].sum().backward()  # the part is the conv's spatial mean: its gradient by hand
    assert maps.abs().sum() > 0 and torch.allclose(maps, x.grad, atol=1e-7)
