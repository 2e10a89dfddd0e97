"""The tool contract's per-model promises for ``closed_loop`` (insilico/design/closed_loop.py), asserted here
until it carries ``@register_tool`` (then tests/contract_tools.py's runner moves into RUNNERS and these
cases run through tests/contract/test_contract.py like every tool).

closed_loop runs two of the user's networks: the one inside ``fit`` (a predictor is fitted on it every round)
and the ``brain``. Both are the contract's mixed-mode net (train root, a frozen BatchNorm, dropout active):
after success and after the brain fails mid-loop, neither has a hook left, every ``training`` flag and
``requires_grad`` is its own, BatchNorm statistics never move, and the brain's error reaches the user; a
float64 pair gives float64 designs; CUDA models run on CPU stimuli (marked cuda: skipped without one).
"""
from __future__ import annotations

import pytest
import torch

from contract_tools import CLASSES, arch_of, make_images, make_model
from insilico.design.closed_loop import CLIMB, closed_loop
from insilico.encoding import fit_predictor
from test_contract import Boom, bn_of, caused_by, hooks_of, modes_of

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:r is undefined")]  # 3 held-out stimuli: a tiny fit


#: The loop's two ways of designing: from noise (its defaults) and the climb from each target's best images.
WAYS = {"noise": {}, "climb": {**CLIMB, "budget": 1.0}}


def _loop(net, brain, dtype=torch.float32, way="noise"):
    """Two rounds of one stretch design per target (4 targets: the brain's logits), 2 steps each."""
    layer = arch_of(net).deeper
    stimuli = make_images(12, seed=1, dtype=dtype)
    with torch.no_grad():
        responses = brain.eval()(stimuli.to(next(brain.parameters()).device)).cpu()
    brain.train()
    brain[1].eval()  # back to the mixed mode make_model gives

    def fit(images, shown):
        return fit_predictor(net, images, shown, layer, reduce="mean", cv=3, progress=False)

    options = {"restarts": 1, **WAYS[way]}
    return closed_loop(fit, brain, stimuli, responses, rounds=2, modes=("stretch",), steps=2, progress=False,
                       **options)


def _observed(fail_at=None, way="noise"):
    net, _ = make_model("mixed")
    brain, _ = make_model("mixed", seed=1)
    fired = []
    for model in (net, brain):
        model.register_forward_hook(lambda *a: fired.append(1))
    before = [(hooks_of(m), modes_of(m), bn_of(m)) for m in (net, brain)]
    calls = [0]

    def counter(module, args):
        calls[0] += 1
        if fail_at is not None and calls[0] >= fail_at:
            raise Boom(f"the brain fails on call {calls[0]}")

    handle = brain[0].register_forward_pre_hook(counter)
    result = error = None
    try:
        result = _loop(net, brain, way=way)
    except Exception as e:  # noqa: BLE001 - looked at by the tests
        error = e
    handle.remove()
    after = [(hooks_of(m), modes_of(m), bn_of(m)) for m in (net, brain)]
    n = len(fired)
    with torch.no_grad():
        for model in (net, brain):
            model.eval()(make_images())
    return dict(result=result, error=error, calls=calls[0], before=before, after=after, fires=len(fired) - n == 2)


def _same_state(obs):
    for who, (b, a) in zip(("the fitted net", "the brain"), zip(obs["before"], obs["after"])):
        assert a[0] == b[0], f"hooks left on {who}"
        assert a[1] == b[1], f"{who}: changed {sorted(k for k in b[1] if b[1][k] != a[1][k])}"
        moved = [k for k in b[2] if not torch.equal(b[2][k], a[2][k])]
        assert not moved, f"{who}: BatchNorm statistics moved: {moved}"
    assert obs["fires"], "the user's hooks no longer fire"


@pytest.mark.parametrize("way", WAYS)
def test_closed_loop_leaves_both_networks_as_it_found_them(way):
    ok = _observed(way=way)
    if ok["error"] is not None:
        raise ok["error"]
    assert ok["calls"] > 1 and len(ok["result"]) == 2 * CLASSES  # two rounds of one image per target
    _same_state(ok)


@pytest.mark.parametrize("way", WAYS)
def test_closed_loop_leaves_both_networks_as_it_found_them_when_the_brain_fails_mid_loop(way):
    bad = _observed(fail_at=_observed(way=way)["calls"] // 2 + 1, way=way)
    assert bad["error"] is not None and caused_by(bad["error"], Boom), f"the brain's error was lost: {bad['error']!r}"
    _same_state(bad)


@pytest.mark.parametrize("way", WAYS)
def test_closed_loop_designs_in_the_models_dtype(way):
    net, _ = make_model("mixed")
    brain, _ = make_model("mixed", seed=1)
    loop = _loop(net.double(), brain.double(), torch.float64, way)
    assert loop.images.dtype == torch.float64


@pytest.mark.cuda
def test_closed_loop_follows_the_models_device():
    net, _ = make_model("mixed")
    brain, _ = make_model("mixed", seed=1)
    loop = _loop(net.cuda(), brain.cuda())
    assert torch.isfinite(loop.images).all() and torch.isfinite(loop.responses).all() and len(loop) == 2 * CLASSES
