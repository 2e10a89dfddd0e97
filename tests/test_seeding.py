"""seed=None is fresh entropy in every tool that takes a seed, and no tool reads or moves the global generators
(issue 23 item 4; the inputs come from a hostile acceptance run)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import insilico
from insilico.errors import InsilicoError
from insilico.seeding import run_seed


def _net(seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LeakyReLU(0.1), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    m.input_size = (3, 16, 16)
    return m


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _seedless_calls():
    m, m1, x = _net(), _net(1), _images()
    return {
        "maximize": lambda: insilico.maximize(m, ["4[0]"], size=(3, 16, 16), steps=1, seed=None, progress=False),
        "metamer": lambda: insilico.metamer(m, "1", x, steps=1, seed=None, progress=False),
        "pgd": lambda: insilico.pgd(m, x, torch.tensor([0, 1]), steps=1, seed=None, progress=False),
        "pgd_restarts": lambda: insilico.pgd(m, x, torch.tensor([0, 1]), steps=1, restarts=2, seed=None,
                                             progress=False),
        "controversial": lambda: insilico.controversial([m, m1], [(0, 1)], init=x[:1], steps=1, seed=None,
                                                        progress=False),
        "mad": lambda: insilico.mad([m, m1], x, ("1", "4"), steps=1, seed=None, progress=False),
        "eigendistortion": lambda: insilico.eigendistortion(m, "1", x, iterations=2, seed=None, progress=False),
    }


def _global_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


@pytest.mark.parametrize("name", list(_seedless_calls()))
def test_seed_none_is_fresh_entropy_and_leaves_the_global_generators_alone(name):
    call = _seedless_calls()[name]  # building the nets draws from the global generator: before the snapshot
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    before = _global_states()
    call()
    after = _global_states()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_population_control_takes_seed_none():
    from insilico.encoding import fit_predictor

    x, y = _images(12, 1), torch.rand(12, 2, generator=torch.Generator().manual_seed(2))
    p = fit_predictor(_net(), x, y, layers=["1"], reduce="mean", progress=False)
    result = insilico.population_control(p, torch.tensor([0]), steps=1, restarts=1, seed=None, progress=False)
    assert torch.isfinite(result.images).all()


def test_two_seedless_runs_differ_and_a_seed_repeats():
    m = _net()
    run = lambda seed: insilico.maximize(m, ["4[0]"], size=(3, 16, 16), steps=1, seed=seed, progress=False).images
    assert not torch.equal(run(None), run(None))
    assert torch.equal(run(3), run(3))


def test_run_seed_refuses_what_cannot_be_a_seed(tmp_path):
    assert run_seed(5) == 5 and isinstance(run_seed(None), int)
    for bad in (1.5, "0", True):
        with pytest.raises(InsilicoError, match="seed must be an int"):
            run_seed(bad)
    with pytest.raises(InsilicoError, match="could never be resumed"):  # a resumable folder needs a fixed seed
        insilico.maximize(_net(), ["4[0]"], size=(3, 16, 16), steps=1, seed=None, progress=False, out=tmp_path)
