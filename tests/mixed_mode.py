"""A model in mixed training mode (fine-tuning with a frozen BatchNorm), and checks that a tool left it as it was.

Used by the tool tests (adversarial, controversial, MAD, eigendistortions): after a tool ran, also when the
model raised in the middle of the run, every module has its own ``training`` flag back, every parameter its
own ``requires_grad``, the BatchNorm statistics did not move, and no hook is left.
"""
import torch
from torch import nn

from tests.conftest import no_insilico_hooks


class Bomb(nn.Module):
    """Identity that raises on its ``fuse``-th call (never when ``fuse`` is None)."""

    def __init__(self):
        super().__init__()
        self.fuse, self.calls = None, 0

    def forward(self, x):
        self.calls += 1
        if self.fuse is not None and self.calls >= self.fuse:
            raise RuntimeError("model failed mid-run")
        return x


def mixed_model(seed: int = 0, classes: int = 3, side: int = 6) -> nn.Sequential:
    """conv -> BatchNorm (eval, frozen stats) -> ReLU -> Bomb -> linear classifier; the rest in train mode.

    Modules: 0 conv, 1 BatchNorm2d, 2 ReLU, 3 Bomb, 4 Flatten, 5 Linear. The conv's weight does not require
    grad (a frozen layer); the BatchNorm has non-trivial running statistics.
    """
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), Bomb(), nn.Flatten(),
                      nn.Linear(4 * side * side, classes))
    with torch.no_grad():
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    m.train()
    m[1].eval()
    m[0].weight.requires_grad_(False)
    return m


def snapshot(model: nn.Module) -> dict:
    """Per-module training flags, per-parameter requires_grad, and copies of the buffers."""
    return {
        "modes": {name: m.training for name, m in model.named_modules()},
        "grads": {name: p.requires_grad for name, p in model.named_parameters()},
        "buffers": {name: b.clone() for name, b in model.named_buffers()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    """The model is as :func:`snapshot` saw it, and carries no hook."""
    after = snapshot(model)
    assert after["modes"] == before["modes"]
    assert after["grads"] == before["grads"]
    for name, value in before["buffers"].items():
        assert torch.equal(after["buffers"][name], value), f"buffer {name} moved"
    assert no_insilico_hooks(model)
    assert not model[1].training and model.training and model[0].training  # the point of the exercise


def arm(model: nn.Module, after_calls: int) -> None:
    """Make the model raise on its ``after_calls``-th forward pass from now."""
    bomb = model[3]
    bomb.calls, bomb.fuse = 0, after_calls


def disarm(model: nn.Module) -> int:
    """Stop raising; returns how many forward passes ran since :func:`arm`."""
    bomb = model[3]
    calls, bomb.fuse = bomb.calls, None
    return calls
