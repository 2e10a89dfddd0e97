"""The tool contract (shared/DESIGN.md, "The tool contract"): one parametrised test per promise,
over every tool of the library's registry (insilico/registry.py), run tiny by tests/contract_tools.py.

Promises
--------
hooks          no hooks left after success or after an exception raised inside the model mid-run;
               the user's own hooks are still there and still fire; the model's error reaches the user
resnet18       hooks, modes (after success and after an exception) and BatchNorm statistics on torchvision's
               ResNet-18 in train mode
model_error    the model fails on its very first call: that error (not another) reaches the user, and no
               hooks are left
modes          every module's own ``training`` flag and every parameter's own ``requires_grad`` back,
               after success and after an exception (mixed-mode model: frozen BatchNorm in a training net)
bn_stats       BatchNorm running_mean / running_var / num_batches_tracked untouched
no_grad        works under ``torch.no_grad()`` and gives the same result
float64        a float64 model and float64 images give float64 images / maps / responses
independent    a sample's result is the same alone and in a batch (rtol 1e-5, or the tool's documented ``rtol``)
empty          an empty batch is an insilico error that says to give at least one image
bad_images[k]  uint8, values in 0..255, NaN, 3-D images: an insilico error whose message names the fix
save_load      ``result.save(p)``; ``type(result).load(p)`` (torch.load with weights_only) round-trips
global_rng     torch's (CPU, CUDA), numpy's and Python's global random states are as they were

KNOWN_GAPS lists the (tool, promise) pairs that fail today, each with the reason seen in its
traceback. They run as ``xfail(strict=True)``: when a fix makes one pass it shows up as
XPASS(strict), a failure, and its entry must be deleted.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from contract_tools import TOOLS, make_images, make_model
import insilico
from insilico import InsilicoError

# (tool, promise) -> why it fails today (seen in its traceback). Delete the entry when the tool keeps the promise.
KNOWN_GAPS: dict[tuple[str, str], str] = {
}

PROMISES_BAD = {  # kind -> (make the bad images from good ones, a regex the message must match: the fix)
    "uint8": (lambda x: (x * 255).to(torch.uint8), r"255|float"),
    "0..255": (lambda x: x * 255, r"\[0, 1\]"),
    "nan": (lambda x: x.masked_fill(torch.arange(x.numel()).reshape(x.shape) % 7 == 0, float("nan")), r"NaN|nan"),
    "ndim": (lambda x: x[0], r"unsqueeze|4-D|\(N, C, H, W\)"),
}


def cases(promise: str, tools=None, extra=None):
    """pytest params (tool name [, extra]) for ``promise``, marked xfail(strict) where KNOWN_GAPS says so."""
    out = []
    for name in tools if tools is not None else TOOLS:
        for e in (extra or [None]):
            key = (name, promise if e is None else f"{promise}[{e}]")
            reason = KNOWN_GAPS.get(key) or KNOWN_GAPS.get((name, promise))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            values = (name,) if e is None else (name, e)
            out.append(pytest.param(*values, marks=marks, id="-".join(map(str, values))))
    return out


#: Tiny models: one thread is fastest, and keeps the file near its budget on a shared machine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# observing a model around one run of a tool
# ---------------------------------------------------------------------------------------------

class Boom(RuntimeError):
    """The error the test's model raises mid-run."""


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def hooks_of(model: nn.Module) -> dict:
    import torch.nn.modules.module as M

    found = {(name, kind): tuple(getattr(mod, kind)) for name, mod in model.named_modules() for kind in HOOK_DICTS
             if getattr(mod, kind, None)}
    found.update({("<global>", kind): tuple(getattr(M, kind)) for kind in GLOBAL_HOOKS if getattr(M, kind, None)})
    return found


def modes_of(model: nn.Module) -> dict:
    return ({f"{n}.training": m.training for n, m in model.named_modules()}
            | {f"{n}.requires_grad": p.requires_grad for n, p in model.named_parameters()})


def bn_of(model: nn.Module) -> dict:
    return {f"{n}.{b}": getattr(m, b).clone() for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in ("running_mean", "running_var", "num_batches_tracked")}


def caused_by(error: BaseException | None, kind: type) -> bool:
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
    return False


@functools.lru_cache(maxsize=None)
def observe(name: str, kind: str | None = None, fail: str | None = None) -> dict:
    """Run tool ``name`` once on a fresh model (of ``kind``) with the user's own hooks attached.

    ``fail``: "mid": the model raises :class:`Boom` half way through the tool's forward passes (from
    a forward pre-hook on its first module, which the test registers and removes itself); "first":
    on its first call.
    """
    tool = TOOLS[name]
    kind = kind or tool.models[0]
    model, arch = make_model(kind)
    images = make_images()
    user_calls = []
    model.get_submodule(arch.layer).register_forward_hook(lambda *a: user_calls.append("hook"))
    model.register_forward_pre_hook(lambda *a: user_calls.append("pre"))
    hooks, modes, bn = hooks_of(model), modes_of(model), bn_of(model)

    calls = [0]
    fail_at = {None: math.inf, "first": 1}.get(fail) or observe(name, kind)["calls"] // 2 + 1

    def counter(module, args):
        calls[0] += 1
        if calls[0] >= fail_at:
            raise Boom(f"the user's model fails on call {calls[0]}")

    handle = model.get_submodule(arch.first).register_forward_pre_hook(counter)
    result = error = None
    try:
        result = tool.run(model, images)
    except Exception as e:  # noqa: BLE001 - looked at by the tests
        error = e
    handle.remove()
    obs = dict(result=result, error=error, calls=calls[0], hooks=(hooks, hooks_of(model)),
               modes=(modes, modes_of(model)), bn=(bn, bn_of(model)))
    n = len(user_calls)
    with torch.no_grad():
        model.eval()(images)
    obs["user_hooks_fire"] = len(user_calls) - n == 2
    return obs


def succeeded(obs):
    if obs["error"] is not None:
        raise obs["error"]
    return obs


def failed(obs):
    assert obs["error"] is not None, "the model raised mid-run, but the tool returned a result"
    assert caused_by(obs["error"], Boom), f"the model's error did not reach the user: {obs['error']!r}"
    return obs


def as_tensor(value) -> torch.Tensor:
    return torch.from_numpy(np.asarray(value)) if not torch.is_tensor(value) else value.detach().cpu()


def assert_same(a, b, exact: bool, what: str, rtol: float = 1e-5):
    a, b = as_tensor(a), as_tensor(b)
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} != {tuple(b.shape)}"
    if exact:
        assert torch.equal(a, b), f"{what}: not bit-identical"
    else:
        scale = float(a.abs().max()) if a.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale + 1e-12, equal_nan=True,
                                   msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------
# the promises
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", cases("hooks"))
def test_hooks(name):
    ok = succeeded(observe(name))
    assert ok["hooks"][1] == ok["hooks"][0], "hooks left on the model after success"
    assert ok["user_hooks_fire"], "the user's hooks no longer fire"
    assert ok["calls"] > 0, "the tool never ran the model"
    bad = failed(observe(name, fail="mid"))
    assert bad["hooks"][1] == bad["hooks"][0], "hooks left on the model after an exception"
    assert bad["user_hooks_fire"], "the user's hooks no longer fire after an exception"


@pytest.mark.parametrize("name", cases("model_error"))
def test_model_error(name):
    """The user's model fails on its first call (e.g. wrong channel count): that error reaches the user."""
    bad = failed(observe(name, fail="first"))
    assert bad["hooks"][1] == bad["hooks"][0], "hooks left on the model after an exception"


@pytest.mark.parametrize("name", cases("modes"))
def test_modes(name):
    ok = succeeded(observe(name))
    before, after = ok["modes"]
    assert after == before, f"changed after success: {sorted(k for k in before if before[k] != after[k])}"
    bad = observe(name, fail="mid")
    assert bad["error"] is not None, "the model raised mid-run, but the tool returned a result"
    before, after = bad["modes"]
    assert after == before, f"changed after an exception: {sorted(k for k in before if before[k] != after[k])}"


@pytest.mark.parametrize("name", cases("bn_stats"))
def test_bn_stats(name):
    ok = succeeded(observe(name))
    before, after = ok["bn"]
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert not moved, f"BatchNorm statistics moved: {moved}"


RESNET = [n for n, t in TOOLS.items() if "resnet18" in t.models]


@pytest.mark.parametrize("name", cases("resnet18", RESNET))
def test_resnet18(name):
    """The cheap promises (hooks, modes, BatchNorm statistics) on a real architecture in train mode."""
    ok = succeeded(observe(name, "resnet18"))
    assert ok["hooks"][1] == ok["hooks"][0], "hooks left on the model"
    assert ok["user_hooks_fire"], "the user's hooks no longer fire"
    before, after = ok["modes"]
    assert after == before, f"changed: {sorted(k for k in before if before[k] != after[k])}"
    before, after = ok["bn"]
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert not moved, f"BatchNorm statistics moved: {moved}"
    bad = failed(observe(name, "resnet18", fail="mid"))
    assert bad["hooks"][1] == bad["hooks"][0], "hooks left on the model after an exception"
    before, after = bad["modes"]
    assert after == before, f"changed after an exception: {sorted(k for k in before if before[k] != after[k])}"


@pytest.mark.parametrize("name", cases("no_grad"))
def test_no_grad(name):
    tool = TOOLS[name]
    model, _ = make_model(TOOLS[name].models[0])
    with torch.no_grad():
        result = tool.run(model, make_images())
    assert torch.is_grad_enabled()
    if tool.out is not None:
        assert_same(tool.out(result), tool.out(succeeded(observe(name))["result"]), False, "no_grad vs grad")


@pytest.mark.parametrize("name", cases("float64"))
def test_float64(name):
    tool = TOOLS[name]
    model, _ = make_model(TOOLS[name].models[0])
    result = tool.run(model.double(), make_images(dtype=torch.float64))
    if tool.follows_dtype:
        assert tool.out is not None, (f"{name} is registered with follows_dtype=True (the default), but its runner in "
                                      "tests/contract_tools.py gives no out=: give Runner(run, out=<result -> its main "
                                      "tensor output>), or register the tool with follows_dtype=False")
        out = tool.out(result)
        assert str(out.dtype).endswith("float64"), f"a float64 model gave {out.dtype}"


@pytest.mark.parametrize("name", cases("independent", [n for n, t in TOOLS.items() if t.independent]))
def test_independent(name):
    tool = TOOLS[name]
    assert tool.out is not None, (f"{name} is registered with per_sample=True, but its runner in "
                                  "tests/contract_tools.py gives no out= (the per-sample output to compare)")
    batch = tool.out(succeeded(observe(name))["result"])
    model, _ = make_model(TOOLS[name].models[0])
    alone = tool.out(tool.run(model, make_images(), samples=[2]))
    assert_same(alone[0], batch[2], tool.exact, f"sample 2 alone vs in a batch of 4 (rtol {tool.rtol:g})", tool.rtol)


def test_independence_tolerances_stay_narrow():
    """A tool's own ``rtol`` (documented in the registry) covers rounding amplified, never a dependence."""
    loose = {n: t.rtol for n, t in TOOLS.items() if t.rtol != 1e-5}
    assert all(r <= 1e-4 for r in loose.values()), loose
    assert set(loose) <= {"metamer"}, f"a new loose tolerance must be justified in contract_tools.py: {loose}"


IMAGE_TOOLS = [n for n, t in TOOLS.items() if t.images]


@pytest.mark.parametrize("name", cases("empty", IMAGE_TOOLS))
def test_empty(name):
    model, _ = make_model(TOOLS[name].models[0])
    with pytest.raises(InsilicoError, match=r"at least one|empty"):
        TOOLS[name].run(model, make_images()[:0])


@pytest.mark.parametrize("name,bad", cases("bad_images", IMAGE_TOOLS, list(PROMISES_BAD)))
def test_bad_images(name, bad):
    make_bad, fix = PROMISES_BAD[bad]
    model, _ = make_model(TOOLS[name].models[0])
    with pytest.raises(InsilicoError, match=fix):
        TOOLS[name].run(model, make_bad(make_images()))


@pytest.mark.parametrize("name", cases("save_load", [n for n, t in TOOLS.items() if t.saves]))
def test_save_load(name, tmp_path, monkeypatch):
    tool = TOOLS[name]
    result = succeeded(observe(name))["result"]
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    result.save(tmp_path / "result")
    monkeypatch.setattr(torch, "load", spy)
    loaded = type(result).load(tmp_path / "result")
    assert type(loaded) is type(result)
    assert type(insilico.load(tmp_path / "result")) is type(result)  # by its recorded type
    assert all(w is True for w in loads), f"torch.load without weights_only=True: {loads}"
    if tool.out is not None:
        assert_same(tool.out(loaded), tool.out(result), True, "loaded vs saved")


# ---------------------------------------------------------------------------------------------
# global RNG untouched (issue 23 item 4): every tool draws from generators of its own
# ---------------------------------------------------------------------------------------------

def global_rng_states() -> dict:
    """torch's CPU (and CUDA) generator, numpy's legacy global state and Python's ``random``."""
    import random

    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def changed_rng_states(before: dict, after: dict) -> list[str]:
    def same(a, b):
        if torch.is_tensor(a):
            return torch.equal(a, b)
        if isinstance(a, np.ndarray):
            return np.array_equal(a, b)
        if isinstance(a, (tuple, list)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b

    return [k for k in before if not same(before[k], after[k])]


@pytest.mark.parametrize("name", cases("global_rng"))
def test_global_rng_untouched(name):
    """A seeded script draws the same numbers after a tool call as without it: no tool seeds, re-seeds or
    draws from torch's, numpy's or Python's global generators (``seed=None`` takes the OS's entropy)."""
    import random

    tool = TOOLS[name]
    model, _ = make_model(TOOLS[name].models[0])
    images = make_images()
    torch.manual_seed(1234), np.random.seed(1234), random.seed(1234)
    before = global_rng_states()
    tool.run(model, images)
    changed = changed_rng_states(before, global_rng_states())
    assert not changed, f"{name} changed the global random state of: {changed}"


@pytest.mark.parametrize("call", ["lesion_noise", "lesion_fraction", "smoothgrad", "fit_predictor", "bundled_model"])
def test_global_rng_untouched_by_seedless_randomness(call):
    """The calls issue 23 named, with ``seed=None`` where they take one (fresh entropy, not ``torch.seed()``)."""
    import random
    import warnings

    from insilico.encoding import fit_predictor

    model, arch = make_model()
    images = make_images()
    runs = {
        "lesion_noise": lambda: _lesioned(model, images, f"{arch.layer}", mode="noise", seed=None),
        "lesion_fraction": lambda: _lesioned(model, images, f"{arch.layer}", fraction=0.5, seed=None),
        "smoothgrad": lambda: insilico.gradient_map(model, images, f"{arch.logits}[1]", method="smoothgrad",
                                                    nt_samples=3, seed=None),
        "fit_predictor": lambda: fit_predictor(model, make_images(12, seed=1), make_images(12, seed=2)[:, 0, 0, :2],
                                               arch.deeper, reduce="mean", cv=3, progress=False),
        "bundled_model": lambda: insilico.models.load("minialex"),  # built (random init), then its weights loaded
    }
    torch.manual_seed(1234), np.random.seed(1234), random.seed(1234)
    before = global_rng_states()
    with warnings.catch_warnings():  # random responses: a held-out r may be undefined (warned); not the point
        warnings.simplefilter("ignore", RuntimeWarning)
        runs[call]()
    changed = changed_rng_states(before, global_rng_states())
    assert not changed, f"{call} changed the global random state of: {changed}"


def _lesioned(model, images, layer, **options):
    with torch.no_grad(), insilico.Probe(model).lesion(layer, **options):
        return model.eval()(images)


# ---------------------------------------------------------------------------------------------
# independent, for every gradient method (issue 23 item 10): the registry runs gradient_map with
# its default method only, so SmoothGrad's per-batch noise went unseen
# ---------------------------------------------------------------------------------------------

GRADIENT_OPTIONS = {"integrated": {"n_steps": 5}, "smoothgrad": {"nt_samples": 5, "seed": 7}}


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "guided", "deconv", "integrated",
                                    "smoothgrad", "gradcam"])
def test_independent_every_gradient_method(method):
    """Image 2's map alone equals its map in a batch of 4, and with one row per pass (another split).

    rtol 1e-5 of the map's largest magnitude: every method is a per-row computation whose only batch
    dependence is float32 rounding of kernels that pick another summation order for another batch
    size: measured <= 6e-7 on this net and <= 2e-6 on ResNet-18 (Grad-CAM). A random draw shared by
    the batch (noise per batch, not per image) differs by ~0.1-1 of the map and fails by 4 orders.
    """
    model, arch = make_model()
    images = make_images()
    options = dict(GRADIENT_OPTIONS.get(method, {}), **({"layer": arch.layer} if method == "gradcam" else {}))
    unit = f"{arch.logits}[1]"
    batch = insilico.gradient_map(model, images, unit, method=method, **options)
    alone = insilico.gradient_map(model, images[2:3], unit, method=method, **options)
    assert_same(alone[0], batch[2], False, f"{method}: image 2 alone vs in a batch of 4", rtol=1e-5)
    if method in ("integrated", "smoothgrad"):
        split = insilico.gradient_map(model, images, unit, method=method, internal_batch_size=1, **options)
        assert_same(split, batch, False, f"{method}: one row per pass vs all rows in one pass", rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# hostile files refused (issue 23 item 1): a file may rebuild only insilico's own result classes
# ---------------------------------------------------------------------------------------------

#: Plain data (``torch.load(weights_only=True)`` reads it) that names a function instead of a result class.
HOSTILE = {"__dataclass__": "insilico.results:os.system", "fields": {"command": "touch PWNED"}}


def _refused(path, read, monkeypatch) -> None:
    """``read()`` refuses the hostile file at ``path`` naming it, and runs nothing."""
    from insilico.errors import SavedFileError

    monkeypatch.chdir(path.parent)
    with pytest.raises(SavedFileError) as info:
        read()
    assert str(path.name) in str(info.value), f"the error does not name the file: {info.value}"
    assert not (path.parent / "PWNED").exists(), "the file ran code"


def _poison_result(path) -> None:
    """Replace the saved result in ``path`` (a torch file, or an experiment's .npz) by something hostile."""
    if path.suffix == ".npz":  # an object array: numpy would unpickle it
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["settings"] = np.array([HOSTILE], dtype=object)
        np.savez(path, **arrays)
        return
    blob = torch.load(path, weights_only=True)
    blob["result"] = HOSTILE
    torch.save(blob, path)


@pytest.mark.parametrize("name", cases("hostile_result", [n for n, t in TOOLS.items() if t.saves]))
def test_hostile_result_file_refused(name, tmp_path, monkeypatch):
    result = succeeded(observe(name))["result"]
    result.save(tmp_path / "result")
    path = next(p for p in tmp_path.iterdir() if p.name.startswith("result"))
    if path.is_dir():  # a recording folder: its metadata may only name array files inside it
        import json

        meta = json.loads((path / "meta.json").read_text())
        meta["units"][0]["file"] = "../../PWNED.npy"
        (path / "meta.json").write_text(json.dumps(meta))
        target = path / "meta.json"
    else:
        _poison_result(path)
        target = path
    _refused(target, lambda: insilico.load(path), monkeypatch)
    _refused(target, lambda: type(result).load(path), monkeypatch)


RESUMABLE = [n for n, t in TOOLS.items() if t.resumes and n != "gallery"]  # gallery caches are JSON: no code


@pytest.mark.parametrize("name", cases("hostile_resume", RESUMABLE))
def test_hostile_file_in_an_out_folder_refused_on_resume(name, tmp_path, monkeypatch):
    """A resumed run reads what its out= folder holds: a hostile chunk (or recording metadata) is an error naming
    the file, never rebuilt and never silently recomputed over."""
    tool = TOOLS[name]
    model, _ = make_model(TOOLS[name].models[0])
    images = make_images()
    out = tmp_path / "out"
    tool.run(model, images, out=out)
    chunks = sorted(out.rglob("chunk-*.pt"))
    if chunks:
        blob = torch.load(chunks[0], weights_only=True)
        blob["part"] = HOSTILE
        torch.save(blob, chunks[0])
        target = chunks[0]
    else:  # a recording: rows of .npy files named by meta.json
        import json

        meta_path = next(out.rglob("meta.json"))
        meta = json.loads(meta_path.read_text())
        meta["units"][0]["file"] = "../../PWNED.npy"
        meta_path.write_text(json.dumps(meta))
        target = meta_path
    _refused(target, lambda: tool.run(model, images, out=out), monkeypatch)
