"""Reduced precision and channels-last recording (insilico.performance)."""
import pytest
import torch
from torch import nn

from insilico import InsilicoError, Probe
from insilico.performance import tuned


def make_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()


def test_channels_last_and_bf16_recordings_match_fp32_and_leave_the_model_as_it_was(tmp_path):
    model, x = make_model(), torch.rand(10, 3, 12, 12)
    plain = Probe(model).record_stimuli(x, ["1", "4"], batch_size=4, progress=False)
    nhwc = Probe(model).record_stimuli(x, ["1", "4"], batch_size=4, progress=False, channels_last=True)
    half = Probe(model).record_stimuli(x, ["1", "4"], batch_size=4, progress=False, precision="bf16",
                                       out=tmp_path / "bf16")
    for unit in ("1", "4"):
        torch.testing.assert_close(nhwc[unit], plain[unit], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(half[unit], plain[unit], rtol=0.05, atol=0.05)
        assert half[unit].dtype == torch.float32 and not torch.equal(half[unit], plain[unit])
    assert all(p.is_contiguous() for p in model.parameters())
    with pytest.raises(InsilicoError, match="another run .*precision"):  # a bf16 folder is not continued in fp32
        Probe(model).record_stimuli(x, ["1", "4"], batch_size=4, progress=False, out=tmp_path / "bf16")


def test_tuned_restores_the_memory_format_after_an_error_and_checks_precision():
    model = make_model()
    with pytest.raises(RuntimeError, match="boom"), tuned(model, channels_last=True):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        raise RuntimeError("boom")
    assert model[0].weight.is_contiguous()
    with pytest.raises(InsilicoError, match="precision must be"), tuned(model, precision="fp8"):
        pass


def test_maximize_in_bf16_and_channels_last_drives_its_units_like_fp32():
    import insilico

    model = make_model()
    options = dict(size=12, steps=24, progress=False, transforms=None)
    plain = insilico.maximize(model, "2", **options)
    fast = insilico.maximize(model, "2", precision="bf16", channels_last=True, **options)
    assert fast.settings["maximize"]["precision"] == "bf16" and torch.isfinite(fast.images).all()
    gained = fast.trace[-1] - fast.trace[0]
    assert (gained > 0).all() and torch.allclose(fast.trace[-1], plain.trace[-1], rtol=0.2, atol=0.2)
    assert all(p.is_contiguous() for p in model.parameters())


def test_the_engine_runs_its_model_in_the_chosen_precision_and_a_resumed_run_keeps_it():
    from insilico.objectives import Channel
    from insilico.synthesis import Synthesis

    model, seen = make_model(), []
    model[0].register_forward_hook(lambda m, args, out: seen.append((out.dtype, args[0].is_contiguous())))
    synth = Synthesis(model, Channel("2", 1), "pixel", n=2, size=(3, 12, 12), steps=3, progress=False,
                      precision="bf16", channels_last=True)
    result = synth.run()
    assert seen[-1] == (torch.bfloat16, False)  # autocast conv, NHWC input batch
    assert result.images.dtype == torch.float32 and all(p.is_contiguous() for p in model.parameters())
    again = Synthesis.resume(result, model, Channel("2", 1), progress=False)
    assert (again.precision, again.channels_last) == ("bf16", True)
    with pytest.raises(InsilicoError, match="precision must be"):
        Synthesis(model, Channel("2", 1), "pixel", n=1, size=(3, 12, 12), precision="int8")
