"""The one decoder (insilico.persistence): hostile, damaged and foreign files are refused, naming the file;
every class on the allow-list round-trips; every reader goes through it.

Grouped by the guarantee: no code runs from a data file; damage gives a SavedFileError that names the
file (and the versions, for another version's file); the allow-list and the classes agree; round trips.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import insilico
from insilico import persistence, sharding
from insilico.errors import InsilicoError, SavedFileError
from insilico.encoding import NeuralPredictor
from insilico.results import Result

sys.path.insert(0, str(Path(__file__).parent))
import contract_tools  # noqa: E402

#: The payload of issue 23 item 1: plain data that passes torch.load(weights_only=True).
SYSTEM = {"__dataclass__": "insilico.results:os.system", "fields": {"command": "touch PWNED"}}
HOSTILE = {"format": 2, "kind": "insilico.design.adversarial_result:AdversarialResult", "result": SYSTEM,
           "versions": {}}


@dataclasses.dataclass
class Rates(Result):
    sample_fields = ("rates",)
    rates: torch.Tensor
    settings: dict = dataclasses.field(default_factory=dict)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """Run in ``tmp_path``, so a ``touch PWNED`` would land there."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / "PWNED").exists(), "a data file ran code"


def refused(read, path, *needles):
    """``read(path)`` raises SavedFileError whose message and ``.path`` name the file (and each needle)."""
    with pytest.raises(SavedFileError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message and caught.value.path == str(path), message
    for needle in needles:
        assert needle in message, message
    return message


# -- no code runs from a data file ---------------------------------------------------------
@pytest.mark.parametrize("reader", ["insilico.load", "Result.load", "AdversarialResult.load"])
def test_the_issue_payload_is_refused_naming_the_file(cwd, reader):
    from insilico.design.adversarial_result import AdversarialResult

    path = cwd / "evil.pt"
    torch.save(HOSTILE, path)
    assert torch.load(path, weights_only=True) == HOSTILE  # plain data: weights_only alone lets it through
    read = {"insilico.load": insilico.load, "Result.load": Result.load,
            "AdversarialResult.load": AdversarialResult.load}[reader]
    refused(read, path)


@pytest.mark.parametrize("kind", ["insilico.results:os.system", "insilico.design.adversarial_result:os.system",
                                  "insilico.persistence:importlib.import_module", "os:system",
                                  "insilico.recording:record_stimuli", "insilico.probe:Probe",
                                  "insilico.sharding:ProgressLog", "insilico.results:Result.load"])
def test_a_name_off_the_allow_list_is_refused_anywhere_in_a_file(cwd, kind):
    called = {"__dataclass__": kind, "fields": {"command": "touch PWNED"}}
    top = cwd / "top.pt"
    torch.save({"format": 2, "kind": kind, "result": called, "versions": {}}, top)
    refused(insilico.load, top, kind, "allow-list")
    nested = cwd / "nested.pt"  # a genuine result whose settings hide the call
    Rates(torch.ones(2), {"x": 1}).save(nested)
    blob = torch.load(nested, weights_only=True)
    blob["result"]["fields"]["settings"] = called
    torch.save(blob, nested)
    refused(insilico.load, nested, kind, "allow-list")
    refused(Rates.load, nested, kind)


def test_a_class_of_another_role_is_not_rebuilt(cwd):
    path = cwd / "folder.pt"  # the Recording is on the list as a folder reader, not as a result or a value
    torch.save({"format": 2, "kind": "insilico.recording:Recording",
                "result": {"__dataclass__": "insilico.recording:Recording", "fields": {}}}, path)
    refused(insilico.load, path, "insilico.recording:Recording")


def test_hostile_chunk_files_are_refused_by_load_part_and_map_chunks(cwd):
    bare = cwd / "chunk-00000000-00000002.pt"
    torch.save(HOSTILE, bare)
    refused(sharding.load_part, bare, "not a chunk")
    wrapped = cwd / "wrapped.pt"
    torch.save({"format": 2, "kind": sharding.PART_KIND, "part": SYSTEM, "versions": {}}, wrapped)
    refused(sharding.load_part, wrapped, "allow-list")
    legacy = cwd / "legacy.pt"  # a part written before parts recorded their format
    torch.save(SYSTEM, legacy)
    refused(sharding.load_part, legacy, "allow-list")
    out = cwd / "out"  # a shared out= folder seeded with the payload: it never runs, and is never silently replaced
    compute = lambda a, b: Rates(torch.arange(a, b).float())  # noqa: E731
    assert sharding.map_chunks(compute, 2, 2, out=out)[0].rates.tolist() == [0.0, 1.0]
    chunk = out / "chunk-00000000-00000002.pt"
    torch.save({"format": 2, "kind": sharding.PART_KIND, "part": SYSTEM}, chunk)
    refused(lambda p: sharding.map_chunks(compute, 2, 2, out=out), chunk, "allow-list")
    with sharding.merge_only():  # insilico merge, too
        refused(lambda p: sharding.map_chunks(compute, 2, 2, out=out), chunk, "allow-list")


def test_hostile_predictor_files_are_refused(cwd):
    net = nn.Sequential(nn.Conv2d(3, 2, 3))
    predictor = NeuralPredictor(net, ["0"], "mean", 2, ["a", "b"], (3, 8, 8))
    predictor.scores, predictor.settings = {"r": np.array([0.5, 0.25])}, {"alpha": 1.0}
    good = cwd / "p.pt"
    predictor.save(good)
    back = NeuralPredictor.load(good, net)
    assert back.scores["r"].tolist() == [0.5, 0.25] and back.settings == {"alpha": 1.0}
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(back(x), predictor(x))
    evil = cwd / "evil.pt"
    torch.save(HOSTILE, evil)
    refused(lambda p: NeuralPredictor.load(p, net), evil, "not a predictor")
    blob = torch.load(good, weights_only=True)
    blob["scores"] = SYSTEM
    torch.save(blob, evil)
    refused(lambda p: NeuralPredictor.load(p, net), evil, "allow-list")
    other = {**blob, "scores": {}, "state": {k: v for k, v in blob["state"].items() if k != "readout.bias"}}
    other["state"]["readout.gain"] = torch.ones(2)
    torch.save(other, evil)  # a readout of "another version": refused, not half loaded
    refused(lambda p: NeuralPredictor.load(p, net), evil, "readout.bias", "readout.gain")
    blob["scores"], blob["format"] = {}, 7
    torch.save(blob, evil)
    refused(lambda p: NeuralPredictor.load(p, net), evil, "format 7", "upgrade insilico")


# -- damaged files, other formats, other versions --------------------------------------------
def test_truncated_files_name_the_file(cwd):
    path = cwd / "r.pt"
    Rates(torch.rand(100)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for read in (insilico.load, Rates.load, sharding.load_part, lambda p: NeuralPredictor.load(p, nn.Conv2d(3, 2, 3))):
        refused(read, path, "damaged", "compute it again")
    empty = cwd / "empty.pt"
    empty.write_bytes(b"")
    refused(insilico.load, empty, "damaged")
    refused(insilico.load, cwd / "missing.pt", "no result")


def test_a_newer_or_unknown_format_names_both_versions(cwd):
    path = cwd / "new.pt"
    Rates(torch.ones(1)).save(path)
    blob = torch.load(path, weights_only=True)
    blob["format"], blob["versions"] = 3, {"insilico": "9.9.0", "torch": "9.0"}
    torch.save(blob, path)
    for read in (insilico.load, Rates.load):
        refused(read, path, "format 3", "insilico 9.9.0", f"this is insilico {insilico.__version__}",
                "upgrade insilico")
    blob["format"] = "two"
    torch.save(blob, path)
    refused(insilico.load, path, "format 'two'")
    part = cwd / "part.pt"
    sharding.save_part(part, Rates(torch.ones(1)))
    blob = torch.load(part, weights_only=True)
    blob["format"] = 3
    torch.save(blob, part)
    refused(sharding.load_part, part, "format 3")


def test_fields_of_another_version_name_class_fields_and_versions(cwd):
    path = cwd / "other.pt"
    Rates(torch.ones(2), {"a": 1}).save(path)
    blob = torch.load(path, weights_only=True)
    blob["versions"] = {"insilico": "0.0.1", "torch": "1.0"}
    blob["result"]["fields"]["spikes"] = torch.zeros(1)
    del blob["result"]["fields"]["rates"]
    torch.save(blob, path)
    message = refused(insilico.load, path, "spikes", "rates", "insilico 0.0.1", insilico.__version__)
    assert persistence.kind_name(Rates) in message
    # the synthesis results' own format of earlier versions (1) too
    from insilico.synthesis import SynthesisResult

    syn = cwd / "syn.pt"
    blob = _format1(settings={"seed": 0})
    meta = json.loads(blob["json"])
    meta["temperature"] = 3
    blob["json"] = json.dumps(meta)
    torch.save(blob, syn)
    refused(insilico.load, syn, "temperature", "SynthesisResult", "insilico 0.0.9")
    blob["json"] = "{cut"
    torch.save(blob, syn)
    refused(SynthesisResult.load, syn, "damaged")


def _format1(metamer: bool = False, **meta) -> dict:
    """A file in the synthesis results' own format 1 (written by versions before the one decoder), as data."""
    blob = {"format": 1, "images": torch.rand(2, 1, 4, 4), "trace": torch.tensor([[1.0, 2.0], [1.5, float("nan")]]),
            "steps": torch.tensor([2, 1]), "state": None,
            "json": json.dumps({"stop_reasons": ["steps", "target_reached"], "labels": ["a", "b"], "settings": {},
                                "seeds": [0, 1], "versions": {"insilico": "0.0.9", "torch": "2.0"}, **meta})}
    if metamer:
        blob["metamer"] = {"references": torch.rand(1, 1, 4, 4), "final_errors": torch.tensor([0.1, 0.2]),
                           "layer_errors": {"0": torch.tensor([0.1, 0.2])},
                           "json": json.dumps({"reference_index": [0, 0], "condition_index": [0, 0],
                                               "conditions": [{"0": 1.0}]})}
    return blob


def test_the_synthesis_results_earlier_format_still_loads(tmp_path):
    from insilico.design.metamer_result import MetamerResult
    from insilico.synthesis import SynthesisResult

    for metamer, cls in ((False, SynthesisResult), (True, MetamerResult)):
        blob = _format1(metamer)
        torch.save(blob, tmp_path / "old.pt")
        for back in (insilico.load(tmp_path / "old.pt"), cls.load(tmp_path / "old.pt")):
            assert type(back) is cls and torch.equal(back.images, blob["images"]) and back.labels == ["a", "b"]
            assert back.versions["insilico"] == "0.0.9" and back.traces[1].tolist() == [2.0]
        if metamer:
            assert back.layer_of(1) == {"0": 1.0} and torch.equal(back.references, blob["metamer"]["references"])
            back.save(tmp_path / "new.pt")  # saved again in the current format
            assert torch.load(tmp_path / "new.pt", weights_only=True)["format"] == persistence.FORMAT
            assert torch.equal(MetamerResult.load(tmp_path / "new.pt").final_errors, blob["metamer"]["final_errors"])
    with pytest.raises(InsilicoError, match="not a metamer result"):
        MetamerResult.load(_saved(tmp_path, _format1()))


def _saved(folder: Path, blob: dict) -> Path:
    torch.save(blob, folder / "blob.pt")
    return folder / "blob.pt"


def test_damaged_recording_folders_name_the_file(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    insilico.Probe(model).record_stimuli(torch.rand(6, 1, 8, 8), ["0"], batch_size=3, out=tmp_path / "rec",
                                         progress=False)
    meta = tmp_path / "rec" / "meta.json"
    npy = next((tmp_path / "rec").glob("*.npy"))
    assert insilico.load(tmp_path / "rec").array("0").shape == (6, 2, 6, 6)
    full = npy.read_bytes()
    npy.write_bytes(full[: len(full) - 40])  # cut short
    for read in (insilico.Recording.load, insilico.load):
        with pytest.raises(SavedFileError, match="cut short") as caught:
            read(tmp_path / "rec")
        assert caught.value.path == str(npy) and str(npy) in str(caught.value)
    npy.write_bytes(full)
    good = meta.read_text()
    meta.write_text(good[: len(good) // 2])  # corrupt JSON
    with pytest.raises(SavedFileError, match="meta.json.*damaged") as caught:
        insilico.Recording.load(tmp_path / "rec")
    assert caught.value.path == str(meta)
    meta.write_text(json.dumps({**json.loads(good), "format": "insilico.recording/2"}))
    with pytest.raises(SavedFileError, match="recording/2"):
        insilico.Recording.load(tmp_path / "rec")
    meta.write_text(json.dumps({**json.loads(good), "units": [{"unit": "0", "file": "../../etc/passwd"}]}))
    with pytest.raises(SavedFileError, match="not a .npy file in the recording's folder"):
        insilico.Recording.load(tmp_path / "rec")
    meta.unlink()
    with pytest.raises(SavedFileError, match="no meta.json"):
        insilico.load(tmp_path / "rec")


def test_damaged_experiment_tables_name_the_file(tmp_path):
    from insilico import experiments

    table = experiments.Result({"x": np.arange(3.0)}, {"model": "toy"}).export(tmp_path / "t")[0]
    assert insilico.load(table).arrays["x"].tolist() == [0.0, 1.0, 2.0]
    table.write_bytes(table.read_bytes()[:30])
    refused(insilico.load, table, "damaged")
    refused(experiments.Result.load, table, "damaged")
    np.savez(tmp_path / "u.npz", settings=np.array(json.dumps({"result": "system"})), x=np.zeros(1))
    refused(insilico.load, tmp_path / "u.npz", "'system'")


# -- the allow-list and the classes agree --------------------------------------------------
def _all_modules():
    names = [m.name for m in pkgutil.walk_packages(insilico.__path__, "insilico.") if not m.name.endswith("__main__")]
    return [importlib.import_module(n) for n in names]


def _defined(kind: str, cls: type) -> bool:
    """Whether ``cls`` is the class its module defines under that name (not one made in a doctest or test)."""
    module, _, name = kind.partition(":")
    found = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    return found is cls


def test_the_allow_list_table_names_exactly_the_classes_that_register():
    _all_modules()
    registered = {k: c for k, c in persistence.registered().items() if k.startswith("insilico.") and _defined(k, c)}
    assert set(registered) == set(persistence.KINDS), "update insilico.persistence.KINDS (and MOVED for a move)"
    for kind in persistence.KINDS:
        cls = registered[kind]
        assert dataclasses.is_dataclass(cls) or hasattr(cls, "load"), kind
    assert all(new in persistence.KINDS for new in persistence.MOVED.values())


# -- every result on the allow-list round-trips ---------------------------------------------
def _tiny_results() -> dict:
    """One instance of every class on the allow-list: the contract tools' results, plus tiny constructors."""
    from insilico import behaviour, experiments, rsa
    from insilico.encoding import cross_validate, split_half_ceiling
    from insilico.experiments.dynamics import RecurrentLesionResult
    from insilico.rsa.bootstrap import BootstrapResult
    from insilico.rsa.noise_ceiling import NoiseCeiling

    model, _ = contract_tools.make_model("mixed")
    images = contract_tools.make_images()
    found = {}
    for tool in contract_tools.TOOLS.values():
        if tool.saves:
            result = tool.run(model, images)
            found.setdefault(persistence.kind_name(type(result)), result)
    rng = np.random.default_rng(0)
    ceiling = NoiseCeiling(0.25, 0.5, "spearman")
    extra = [ceiling, split_half_ceiling(rng.normal(size=(4, 6, 3)), n_splits=2),
             cross_validate(rng.normal(size=(6, 4)), rng.normal(size=(6, 2)), cv=2, inner_cv=None),  # not a tool
             BootstrapResult(["a", "b"], rng.random(2), rng.random((3, 2)), rng.random((2, 2)), rng.random(2),
                             "spearman", "stimuli", 0.95, ceiling),
             cross_validate(rng.normal(size=(12, 5)), rng.normal(size=(12, 3)), cv=3, inner_cv=2),
             RecurrentLesionResult({"accuracy": rng.random((2, 3))}, {"conditions": ["none", "lateral"]}),
             experiments.Result({"x": np.arange(3.0), "names": np.array(["a", "b", "c"])}, {"model": "toy"})]
    trials = behaviour.Trials(["a", "b"], ["x", "y"], ["x", "x"], ["s1", "s1"], [512.0, float("nan")], "people")
    extra += [trials, behaviour.error_consistency(trials, trials, n_boot=3),
              rsa.time_resolved(rng.random((2, 6)), subjects=rng.random((3, 4, 6)), n_boot=3)]
    from insilico.lab import StudyResult
    extra.append(StudyResult(["a"], [{"blur": 1.0}], [{"readout": None, "probe": 0.5, "chance": 0.0625}],
                             [{"l1": 0.1}], [{"l1": 0.2}], {"lower": 0.3, "upper": 0.6}, [{"loss": [1.0, 0.5]}]))
    from insilico.design.closed_loop import ClosedLoopResult
    extra.append(ClosedLoopResult(torch.rand(2, 1, 4, 4), torch.rand(3, 2, 2), torch.tensor([0, 1]),
                                  ["stretch", "one_hot"], torch.tensor([0, 1]), torch.rand(2, 2), [{"stretch": {"gap_beyond": 0.5}}] * 2,
                                  ["n0", "n1"], {"rounds": 2}))
    for result in extra:
        found.setdefault(persistence.kind_name(type(result)), result)
    return found


def _same(a, b, where="result"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if torch.is_tensor(a):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(123.0), b.nan_to_num(123.0)), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.init and not isinstance(getattr(b, f.name), nn.Module):  # models are not saved
                _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def tiny():
    return _tiny_results()


def test_every_result_on_the_allow_list_round_trips(tmp_path, tiny):
    results = tiny
    assert set(results) == set(persistence.KINDS), f"no instance of {sorted(set(persistence.KINDS) - set(results))}"
    for kind, result in results.items():
        path = tmp_path / kind.replace(":", "_")
        if isinstance(result, insilico.Recording):
            result.save(path)
            back = insilico.load(path)
            assert back.units == result.units and all(np.array_equal(back.array(u), result.array(u))
                                                      for u in result.units), kind
            continue
        result.save(path)
        for back in (insilico.load(path), type(result).load(path)):
            _same(back, result, kind)
        sharding.save_part(tmp_path / "part.pt", [result, {"n": 1}])
        part = sharding.load_part(tmp_path / "part.pt")
        _same(part[0], result, f"{kind} (as a chunk)")


def test_a_result_of_another_kind_names_the_class_to_load_it_with(tmp_path):
    from insilico.rsa.noise_ceiling import NoiseCeiling

    NoiseCeiling(0.1, 0.2, "spearman").save(tmp_path / "c.pt")
    with pytest.raises(InsilicoError, match="NoiseCeiling.load"):
        Rates.load(tmp_path / "c.pt")


@pytest.mark.parametrize("kind", sorted(persistence.KINDS - {"insilico.recording:Recording"}))
def test_a_hostile_value_in_any_saved_result_is_refused(kind, tiny, cwd):
    """For every result kind (so every tool that saves): the call hidden in each field in turn is refused."""
    path = cwd / "r.pt"
    tiny[kind].save(path)
    blob = torch.load(path, weights_only=True)
    for field in list(blob["result"]["fields"]):
        poisoned = {**blob, "result": {**blob["result"], "fields": {**blob["result"]["fields"], field: SYSTEM}}}
        torch.save(poisoned, path)
        refused(insilico.load, path, "insilico.results:os.system", "allow-list")
        refused(type(tiny[kind]).load, path, "allow-list")
