"""The tool contract for the synthesis engine, maximize and metamers: one session, the Probe's hooks only,
the model's errors and dtype, empty batches, mixed train/eval models (issue 15, failing inputs 3, 6, 9)."""
import pathlib

import pytest
import torch
from torch import nn

import insilico
from conftest import no_insilico_hooks
from insilico.errors import InsilicoError, ModelInputError, StimulusError
from insilico.objectives import Channel
from insilico.results import Result
from insilico.synthesis import Synthesis, SynthesisResult

pytestmark = pytest.mark.usefixtures("one_thread")


def net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3)).eval()


class Boom(nn.Module):
    """Identity that raises on its ``at``-th call (0 = never)."""

    def __init__(self, at=0):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("boom inside the model")
        return x


def mixed(at=0):
    """Fine-tuning set-up: a training model with a frozen BatchNorm (eval, no grads) and a training one."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4),
                      Boom(at), nn.ReLU())
    with torch.no_grad():  # statistics that differ from the defaults, so a moved value shows
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    m.train()
    m[1].eval()
    for p in m[1].parameters():
        p.requires_grad_(False)
    return m


def flags(m):
    return ([mod.training for mod in m.modules()], [p.requires_grad for p in m.parameters()])


def stats(m):
    return {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}


def assert_untouched(m, before_flags, before_stats):
    assert flags(m) == before_flags
    assert m.training and not m[1].training and m[4].training
    assert m[0].weight.requires_grad and not m[1].weight.requires_grad
    after = stats(m)
    assert all(torch.equal(after[k], v) for k, v in before_stats.items())
    assert no_insilico_hooks(m)
    assert all(p.grad is None for p in m.parameters())


# ---------------------------------------------------------------------------------------
# Failing input 3: under torch.no_grad(), for every optimizer
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs"])
def test_maximize_under_no_grad_equals_a_run_with_grad(optimizer):
    model = net()
    options = dict(size=(3, 16, 16), steps=2, optimizer=optimizer, progress=False)
    with torch.no_grad():
        quiet = insilico.maximize(model, "1[0]", **options)
    plain = insilico.maximize(model, "1[0]", **options)
    assert torch.equal(quiet.images, plain.images) and torch.equal(quiet.trace, plain.trace)
    assert quiet.trace.shape == (2, 1) and torch.isfinite(quiet.trace).all()
    assert torch.is_grad_enabled()                  # the caller's grad mode is back


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_metamer_under_no_grad_equals_a_run_with_grad(optimizer):
    model, refs = net(), torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        quiet = insilico.metamer(model, "2", refs, steps=5, optimizer=optimizer, progress=False)
        assert not torch.is_grad_enabled()
    plain = insilico.metamer(model, "2", refs, steps=5, optimizer=optimizer, progress=False)
    assert torch.equal(quiet.images, plain.images)
    assert (quiet.final_errors < quiet.errors[0]).all()        # it did descend


# ---------------------------------------------------------------------------------------
# Failing input 6: the model's own error reaches the user
# ---------------------------------------------------------------------------------------
def test_model_errors_reach_the_user_unchanged():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(RuntimeError, match="channels") as info:
        insilico.metamer(conv, "1", torch.rand(2, 1, 16, 16), progress=False)
    assert "never called" not in str(info.value)
    assert no_insilico_hooks(conv)
    with pytest.raises(RuntimeError, match="channels"):
        insilico.maximize(nn.Sequential(nn.Conv2d(1, 4, 3)), "0", size=(3, 12, 12), steps=2, progress=False)
    synth = Synthesis(conv, Channel("1", 0), n=1, size=(1, 12, 12), progress=False)
    with pytest.raises(RuntimeError, match="channels") as info:
        synth.run(2)
    # the model's own message, in an insilico error naming size= (issue 23 fault 14), still a RuntimeError
    assert isinstance(info.value, ModelInputError) and "check size=" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError) and not isinstance(info.value.__cause__, InsilicoError)
    assert no_insilico_hooks(conv) and conv.training  # nn.Sequential starts in training mode, and stays


def test_tail_that_does_not_take_the_size_is_never_run_after_the_first_pass():
    tail = Boom()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), tail, nn.Flatten(), nn.Linear(7, 2))  # 7: wrong size
    synth = Synthesis(model, Channel("1", 0), n=2, size=(3, 10, 10), steps=4, progress=False)
    synth.run()
    assert tail.calls == 1                  # the validation pass; every step stopped after "1"
    synth.run(3)                            # a second run keeps the learned stop (no new learning pass)
    assert tail.calls == 1 and synth.step == 7
    untruncated = Synthesis(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Boom()), Channel("1", 0), n=1,
                            size=(3, 10, 10), steps=3, truncate=False, progress=False)
    untruncated.run()
    assert untruncated.model[2].calls == 4


def test_no_raw_hooks_in_the_engine_and_the_design_tools():
    root = pathlib.Path(insilico.__file__).parent
    files = [root / "synthesis" / "engine.py", root / "design" / "maximize.py", *root.glob("design/metamer*.py"),
             *root.glob("objectives/*.py")]
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        assert "register_forward" not in text, path
        assert ".eval()" not in text and "m.training = mode" not in text, path


# ---------------------------------------------------------------------------------------
# Failing input 9, dtype
# ---------------------------------------------------------------------------------------
def test_metamer_of_an_empty_batch_is_an_insilico_error_naming_the_fix():
    with pytest.raises(StimulusError, match="empty batch.*at least one image"):
        insilico.metamer(net(), "1", torch.rand(0, 3, 16, 16), progress=False)
    with pytest.raises(StimulusError, match="empty batch"):
        insilico.metamer(net(), "1", torch.rand(0, 3, 16, 16), batch_size=2, progress=False)


def test_float64_models_give_float64_images():
    model = net().double()
    result = insilico.maximize(model, ["1[0]", "2[1]"], size=(3, 16, 16), steps=3, progress=False)
    assert result.images.dtype == torch.float64 and model[0].weight.dtype == torch.float64
    single = insilico.maximize(net(), ["1[0]", "2[1]"], size=(3, 16, 16), steps=3, progress=False)
    assert single.images.dtype == torch.float32
    assert (result.images - single.images).abs().max() < 1e-3   # the same run, in more precision
    meta = insilico.metamer(model, "2", torch.rand(1, 3, 12, 12), steps=3, progress=False)
    assert meta.images.dtype == torch.float64


# ---------------------------------------------------------------------------------------
# Mixed train/eval models: every module's own flag, requires_grad, BatchNorm statistics
# ---------------------------------------------------------------------------------------
def test_maximize_keeps_each_modules_mode_and_batchnorm_statistics():
    m = mixed()
    before_flags, before_stats = flags(m), stats(m)
    result = insilico.maximize(m, "6[1]", size=(3, 12, 12), steps=3, progress=False)
    assert torch.isfinite(result.trace).all()
    assert_untouched(m, before_flags, before_stats)


@pytest.mark.parametrize("tool", ["maximize", "metamer"])
def test_an_exception_inside_the_model_mid_run_restores_everything(tool):
    m = mixed(at=4)                          # the validation pass and 2 steps run, the 4th forward raises
    before_flags, before_stats = flags(m), stats(m)
    with pytest.raises(RuntimeError, match="boom inside the model"):
        if tool == "maximize":
            insilico.maximize(m, "6[1]", size=(3, 12, 12), steps=5, progress=False)
        else:
            insilico.metamer(m, "6", torch.rand(1, 3, 12, 12), steps=5, optimizer="adam", progress=False)
    assert m[5].calls == 4
    assert_untouched(m, before_flags, before_stats)


def test_metamer_and_objective_evaluation_keep_the_modes():
    m = mixed()
    before_flags, before_stats = flags(m), stats(m)
    result = insilico.metamer(m, "3", torch.rand(2, 3, 12, 12), steps=4, progress=False)
    assert torch.allclose(result.check(), result.final_errors, rtol=1e-4, atol=1e-6)
    values = Channel("3", 0).evaluate(m, torch.rand(3, 3, 12, 12))
    assert values.shape == (3,)
    assert_untouched(m, before_flags, before_stats)


# ---------------------------------------------------------------------------------------
# SynthesisResult is a Result
# ---------------------------------------------------------------------------------------
def test_synthesis_result_follows_the_result_protocol(tmp_path):
    result = insilico.maximize(net(), ["1[0]", "1[1]", "2[0]"], size=(3, 12, 12), steps=3, batch_size=2,
                               progress=False)
    assert isinstance(result, Result) and result.sample_fields[0] == "images"
    assert result.versions == insilico.results.versions()
    result.save(tmp_path / "own.pt")                       # its own format (files written before still load)
    Result.save(result, tmp_path / "generic.pt")           # the generic one loads too
    for name in ("own.pt", "generic.pt"):
        back = SynthesisResult.load(tmp_path / name)
        assert torch.equal(back.images, result.images) and back.labels == result.labels
        assert torch.equal(back.trace.nan_to_num(-1), result.trace.nan_to_num(-1))
        assert back.versions["torch"] == torch.__version__
    parts = [insilico.maximize(net(), u, size=(3, 12, 12), steps=s, progress=False)
             for u, s in (("1[0]", 2), (["1[1]", "2[0]"], 3))]
    joined = SynthesisResult.concat(parts)
    assert joined.labels == ["1[0]", "1[1]", "2[0]"] and joined.trace.shape == (3, 3)
    assert torch.isnan(joined.trace[2, 0]) and joined.steps.tolist() == [2, 3, 3]
    assert torch.equal(joined.images[1:], parts[1].images)


def test_metamer_result_loads_from_its_own_and_the_generic_format(tmp_path):
    from insilico.design.metamers import MetamerResult

    result = insilico.metamer(net(), ["0", "2"], torch.rand(2, 3, 12, 12), steps=4, progress=False)
    result.save(tmp_path / "own.pt")
    Result.save(result, tmp_path / "generic.pt")
    for name in ("own.pt", "generic.pt"):
        back = MetamerResult.load(tmp_path / name)
        assert type(insilico.load(tmp_path / name)) is MetamerResult
        assert torch.equal(back.images, result.images) and torch.equal(back.references, result.references)
        assert back.reference_index == result.reference_index == [0, 1, 0, 1]
        assert back.condition_index == [0, 0, 1, 1] and back.model is None
        assert torch.equal(back.final_errors, result.final_errors)
        assert torch.allclose(back.check(net()), result.final_errors, rtol=1e-4, atol=1e-6)


def test_a_metamer_is_the_same_alone_and_in_a_batch():
    # float64: batch and single convs round differently (~1 ulp), which steps amplify; the tolerances below hold
    # for that rounding on any CPU, while a batch companion leaking in would show at any precision
    model = net().double()
    refs = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    start = insilico.metamer(model, "2", refs, steps=0, progress=False)
    alone = insilico.metamer(model, "2", refs[2:3], steps=0, progress=False)
    assert (alone.images[0] - start.images[2]).abs().max() < 1e-12  # the start noise follows the reference,
    assert (start.images[0] - start.images[2]).abs().max() > 0.1     # not its index
    batch = insilico.metamer(model, "2", refs, steps=3, optimizer="adam", progress=False)
    alone = insilico.metamer(model, "2", refs[2:3], steps=3, optimizer="adam", progress=False)
    assert (alone.images[0] - batch.images[2]).abs().max() < 1e-10
    assert batch.labels[2] == "2|2" and alone.labels == ["2|0"]
