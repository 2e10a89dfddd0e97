"""Scale of the model (issue 25, item 6): names(), survey() and unit resolution are linear in the modules.

The property checked is the one that makes them linear, by construction: the number of traversals of
the model (``model.named_modules()``, which ``modules()`` and ``parameters()`` also go through) made by
one call does not grow with the number of modules or of units. Wall time is measured in
benchmarks/bench_scale.py, never here.
"""
import gc
import weakref

import pytest
import torch
from torch import nn

import insilico
from insilico.errors import UnitError
from insilico.units import Unit, module_table


def deep(blocks: int) -> nn.Sequential:
    return nn.Sequential(*[nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()) for _ in range(blocks)])


def count_traversals(model: nn.Module) -> list:
    """Patch ``model.named_modules`` (on the instance) to log each top-level traversal."""
    calls = []
    original = model.named_modules

    def named_modules(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.named_modules = named_modules
    return calls


def traversals_per_call(blocks: int) -> dict:
    model = deep(blocks).eval()
    probe = insilico.Probe(model)
    x = torch.rand(1, 2, 4, 4)
    paths = probe.names()  # before counting: the first listing
    calls = count_traversals(model)
    counts = {}
    for name, run in [
        ("names()", lambda: probe.names()),
        ("names(x)", lambda: probe.names(x)),
        ("survey(x)", lambda: probe.survey(x)),
        ("survey(x, ops=True)", lambda: probe.survey(x, ops=True)),
        ("units(all)", lambda: probe.units(*paths)),
        ("coerce(all)", lambda: [Unit.coerce(m, model) for m in model.modules()]),
        ("record(all)", lambda: probe.record(*paths[1:]).remove()),
        ("survey(x).shape(all)", lambda: (lambda s: [s.shape(p) for p in paths])(probe.survey(x))),
    ]:
        before = len(calls)
        run()
        counts[name] = len(calls) - before - (name == "coerce(all)")  # coerce's own model.modules() listing
    return counts


def test_traversals_per_call_do_not_grow_with_the_model():
    small, large = traversals_per_call(4), traversals_per_call(120)
    assert small == large, (small, large)
    # a fixed handful per surveyed pass: its table, the session's modules() and parameters(), the device and
    # dtype lookups, the compiled / meta refusal
    assert max(large.values()) <= 12, large
    assert large["names()"] == 1 and large["units(all)"] == 0 and large["record(all)"] == 0


def test_a_module_added_after_a_first_call_is_found():
    model = deep(3).eval()
    probe = insilico.Probe(model)
    x = torch.rand(2, 2, 4, 4)
    assert "extra" not in probe.names()
    with pytest.raises(UnitError, match="no module 'extra'"):
        probe.units("extra")
    model.add_module("extra", nn.Sequential(nn.Conv2d(2, 2, 1)))
    assert probe.units("extra.0") == ["extra.0"]
    assert "extra.0" in probe.names() and "extra.0" in probe.names(x)
    with probe.record("extra.0") as rec:
        out = model(x)
    assert torch.equal(rec["extra.0"], out)


def test_a_replaced_or_removed_module_is_seen():
    model = deep(3).eval()
    probe = insilico.Probe(model)
    x = torch.rand(2, 2, 4, 4)
    old = Unit("1.0").resolve(model)
    new = nn.Conv2d(2, 2, 1)
    model[1][0] = new
    assert Unit("1.0").resolve(model) is new and Unit.coerce(new, model) == "1.0"
    with pytest.raises(UnitError, match="not part of this model"):
        Unit.coerce(old, model)
    with probe.lesion("1.0[1]"), probe.record("1.0") as rec:
        model(x)
    assert rec["1.0"][:, 1].abs().sum() == 0 and rec["1.0"][:, 0].abs().sum() > 0
    model[2]._modules.pop("1")  # removed without a registration hook
    with pytest.raises(UnitError, match="no module '2.1'"):
        Unit("2.1").resolve(model)
    assert "2.1" not in probe.names()


def test_the_kept_table_keeps_nothing_alive():
    model = deep(2)
    insilico.Probe(model).names()
    Unit("0.0").resolve(model)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


class AllEqual(nn.Sequential):
    """Models that compare (and hash) equal: the kept tables of two of them can be confused, lookups cannot."""

    def __eq__(self, other):
        return isinstance(other, AllEqual)

    def __hash__(self):
        return 0


def test_models_that_compare_equal_resolve_to_their_own_modules():
    a, b = AllEqual(nn.Linear(2, 2), nn.ReLU()), AllEqual(nn.Linear(2, 2))
    assert Unit("0").resolve(a) is a[0] and Unit("0").resolve(b) is b[0] and Unit("0").resolve(a) is a[0]
    assert Unit.coerce(b[0], b) == "0" and Unit.coerce(a[0], a) == "0"
    assert list(module_table(a)) == ["", "0", "1"]
    with pytest.raises(UnitError, match="AllEqual has no module 'l'"):
        Unit("l").resolve(a)


def test_survey_index_follows_new_calls():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    relu = model[1]

    def forward(x):  # the ReLU runs twice
        return relu(model[0](relu(x)))

    model.forward = forward
    survey = insilico.Probe(model).survey(torch.rand(1, 2))
    assert survey.count("1") == 2 and survey.call("1@-1") is survey.calls[2]
    survey.add(survey.calls[1])  # a call logged after the index was read
    assert survey.count("0") == 2 and survey.address("0") == "0@1"


def test_a_survey_registers_one_global_hook_and_leaves_none():
    """Per-module registrations cost more than the pass on thousands of modules: a hook-free model gets none."""
    import torch.nn.modules.module as M

    model = deep(40).eval()
    registered, original = [], nn.Module.register_forward_hook
    seen_global = []

    def spy(self, *args, **kwargs):
        registered.append(self)
        return original(self, *args, **kwargs)

    def forward_pre(module, args):
        seen_global.append(len(M._global_forward_hooks))

    model[0].register_forward_pre_hook(forward_pre)  # a pre-hook of the user's: the module still gets the global hook
    before = dict(M._global_forward_hooks)
    nn.Module.register_forward_hook = spy
    try:
        survey = insilico.Probe(model).survey(torch.rand(1, 2, 4, 4))
    finally:
        nn.Module.register_forward_hook = original
    assert registered == [] and seen_global == [len(before) + 1]
    assert dict(M._global_forward_hooks) == before
    assert len(survey) == 1 + 40 * 3 and survey.modules()[:3] == ["0.0", "0.1", "0"]


def test_a_survey_sees_what_the_users_hooks_and_the_probes_edits_make():
    """Torch runs a global hook before a module's own: modules with hooks of their own keep an observer after them."""
    model = deep(3).eval()
    x = torch.rand(1, 2, 4, 4)
    model[2][1].register_forward_hook(lambda m, a, out: out[:, :1])  # the user's hook changes the shape
    probe = insilico.Probe(model)
    with probe.lesion("1.0[0]"), probe.record("1.0") as rec:
        survey = probe.survey(x)
    assert survey.shape("2.1") == (1, 4, 4) and survey.shape("2") == (1, 4, 4) and survey.shape("") == (1, 4, 4)
    assert survey.shape("2.0") == (2, 4, 4) and survey.count("1.0") == 1
    assert [c.module for c in survey][:6] == ["0.0", "0.1", "0", "1.0", "1.1", "1"]
    assert rec["1.0"].shape == (1, 2, 4, 4) and rec["1.0"][:, 0].abs().sum() == 0  # the record saw the pass
    assert probe.hooks() == []


def test_a_module_called_twice_gets_two_steps_from_the_global_hook():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)  # one ReLU object, two calls
    survey = insilico.Probe(model).survey(torch.rand(1, 2))
    assert survey.count("1") == 2 and survey.addresses() == ["0", "1@0", "2", "1@1", ""]


def test_a_failed_survey_leaves_no_global_hook():
    import torch.nn.modules.module as M

    model = deep(2).eval()
    before = dict(M._global_forward_hooks)
    with pytest.raises(RuntimeError):
        insilico.Probe(model).survey(torch.rand(1, 3, 4, 4))  # 3 channels into a 2-channel conv
    survey = insilico.Probe(model).survey(torch.rand(1, 3, 4, 4), strict=False)
    assert survey.error is not None and len(survey) == 0
    assert dict(M._global_forward_hooks) == before


def test_session_sets_training_past_setattr_only_where_the_class_has_none_of_its_own():
    """session() skips nn.Module.__setattr__ for ``training`` (its checks cost more than a small pass on thousands
    of modules); a class with its own __setattr__ still gets every set through it, and every flag comes back."""
    from insilico.session import session

    class Watched(nn.Linear):
        def __setattr__(self, name, value):
            if name == "training":
                self.__dict__.setdefault("sets", []).append(value)
            super().__setattr__(name, value)

    model = nn.Sequential(nn.Linear(2, 2), Watched(2, 2), nn.BatchNorm1d(2)).train()
    model[2].eval()  # a frozen BatchNorm in a training model
    model[1].sets = []
    with session(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert model[1].sets == [False, True]
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert all(p.requires_grad for p in model.parameters()) and "training" in vars(model[0])
