"""Model states insilico cannot probe as they are (compiled, meta) are refused with the fix in the message;
wrapped models (DataParallel) get the wrapper's prefix in their close matches (issue 25)."""
import pytest
import torch
from torch import nn

import insilico
from conftest import no_insilico_hooks
from insilico import InsilicoError, Probe, UnitError


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- compiled
def test_hooks_added_after_compilation_do_not_run():
    """Why compiled models are refused: a hook added after the first compiled call never fires."""
    model = _net()
    compiled = torch.compile(model, backend="eager")
    compiled(X)
    seen = []
    handle = model[1].register_forward_hook(lambda *_: seen.append(1))
    compiled(X)
    handle.remove()
    assert seen == []


def test_compiled_model_is_refused_by_recording_and_gradient_tools_with_the_fix():
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


def test_unit_copied_with_a_wrapper_prefix_suggests_the_plain_path():
    with pytest.raises(UnitError, match=r"Did you mean '1'"):
        Probe(_net()).record("module.1")
