"""Each sample's best iterate: the engine's ``keep="best"``.

A gradient step can lower the objective (a large learning rate, random
transforms that the untransformed image does not see), so the last iterate is
not always the best one. :class:`BestIterate` remembers, per sample, the
parameters at the step where the objective was highest (lowest for
``goal="minimize"``) and the value measured there. Only steps run without
random transforms are offered (the engine's ``transforms_until``), so the kept
value is the value of the kept image itself, not of a jittered copy. A sample
that was never offered keeps its last iterate.

Example
-------
>>> import torch
>>> best = BestIterate(2)
>>> params = torch.zeros(2, 3)
>>> best.offer(torch.tensor([1.0, 5.0]), params + 1, torch.tensor([True, True]))
>>> best.offer(torch.tensor([2.0, 4.0]), params + 2, torch.tensor([True, True]))
>>> best.score.tolist(), best.choose(params)[:, 0].tolist()
([2.0, 5.0], [2.0, 1.0])
"""
from __future__ import annotations

import torch

#: What a synthesis returns: the last iterate (default) or each sample's best.
KEEP = ("last", "best")


class BestIterate:
    """Per-sample best ``score`` (goal-signed objective; -inf where none was offered) and the parameters that
    gave it."""

    def __init__(self, n: int, device: torch.device | str = "cpu"):
        self.score = torch.full((n,), float("-inf"), device=device)
        self.param: torch.Tensor | None = None

    @property
    def seen(self) -> torch.Tensor:
        """(N,) bool: samples with a kept iterate."""
        return torch.isfinite(self.score)

    def offer(self, score: torch.Tensor, param: torch.Tensor, active: torch.Tensor) -> None:
        """Keep ``param`` rows (the parameters that gave ``score``) where ``score`` beats the best so far."""
        score = score.detach().to(self.score.device, torch.float32)
        better = active.to(self.score.device) & (score > self.score)
        self.score = torch.where(better, score, self.score)
        param = param.detach()
        if self.param is None:
            self.param = param.clone()
        else:
            mask = better.to(param.device).view(-1, *[1] * (param.ndim - 1))
            self.param = torch.where(mask, param, self.param)

    def choose(self, current: torch.Tensor) -> torch.Tensor:
        """Parameters to return: the kept ones where a sample has one, else ``current``."""
        if self.param is None:
            return current
        mask = self.seen.to(current.device).view(-1, *[1] * (current.ndim - 1))
        return torch.where(mask, self.param.to(current.dtype), current)

    def state_dict(self) -> dict:
        return {"score": self.score.clone(), "param": None if self.param is None else self.param.clone()}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.score = state["score"].to(self.score.device)
            self.param = None if state["param"] is None else state["param"].clone()


__all__ = ["BestIterate", "KEEP"]
