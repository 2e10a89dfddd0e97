"""L-BFGS run separately for every sample of a batch: own curvature history, own line search, own step size.

``torch.optim.LBFGS`` treats a batch parameter (N, ...) as ONE problem: one
line search, one step size and one curvature history shared by all samples,
so a sample's path depends on the batch it is in, and one hard sample slows
every other. :class:`BatchLBFGS` solves the N problems side by side:

- **history**: a ring of the last m steps' pairs ``(s, y)``, tensors
  (m, N, D), with ``rho = 1 / s.y`` (m, N) per sample (0: no pair there, so
  the slot is a no-op for that sample); the two-loop recursion is vectorised
  over samples and the ring moves by writing one slot per step;
- **line search**: backtracking Armijo (``f(x + t d) <= f(x) + c1 t g.d``)
  with safeguarded quadratic interpolation, per sample; every trial is ONE
  batched call of the closure with each sample at its own trial point;
  samples that accepted their step wait at it;
- **safeguards**, per sample: a pair with too little curvature
  (``s.y <= eps |s| |y|``) is not used (its slot stays empty); the history is cleared when the
  direction is not a descent direction or the line search fails (then the
  sample does not move this step);
- **frozen samples**: ``step(closure, active=mask)`` moves only the active ones;
- **one evaluation per step**: the loss and gradient at the accepted point
  are kept; the next step reuses them while the parameter is unchanged (call
  :meth:`forget` when the function itself changes, e.g. new random transforms);
- the host looks at the device once per trial (which samples still search),
  as torch's L-BFGS does.

Written here because torch's L-BFGS couples samples and the batched
quasi-Newton solvers we know of (e.g. for per-sample inverse problems) are
not ``torch.optim`` optimizers the engine can save and resume.

The closure zeroes the gradient, computes the (N,) losses, calls
``losses.sum().backward()`` and returns the losses. Without backtracking
(every first trial accepted) the iterates are those of ``torch.optim.LBFGS``
with ``line_search_fn=None`` run on each sample alone.

Example
-------
>>> import torch
>>> x = torch.zeros(2, 3, requires_grad=True)
>>> scale = torch.tensor([[1.0], [100.0]])          # two problems, differently conditioned
>>> opt = BatchLBFGS([x])
>>> def closure():
...     opt.zero_grad()
...     losses = (scale * (x - 1) ** 2).sum(dim=1)
...     losses.sum().backward()
...     return losses.detach()
>>> for _ in range(10):
...     _ = opt.step(closure)
>>> torch.allclose(x, torch.ones(2, 3))
True
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import InsilicoError

#: A pair is kept when s.y > CURVATURE_EPS * |s| |y| (cosine between step and gradient change).
CURVATURE_EPS = 1e-8


class BatchLBFGS(torch.optim.Optimizer):
    """Per-sample L-BFGS over one parameter whose axis 0 is the sample.

    Parameters
    ----------
    params : iterable with ONE tensor (N, ...)
    lr : float
        First trial step (default 1.0); with an empty history the first
        trial is ``min(1, 1 / |g|_1) * lr`` along ``-g`` (as torch's L-BFGS).
    history_size : int
        Curvature pairs kept per sample (default 10).
    max_ls : int
        Trials of the line search per step (default 20).
    c1 : float
        Armijo constant (default 1e-4).
    """

    def __init__(self, params, lr: float = 1.0, history_size: int = 10, max_ls: int = 20, c1: float = 1e-4):
        super().__init__(params, dict(lr=float(lr), history_size=int(history_size), max_ls=int(max_ls),
                                      c1=float(c1)))
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise InsilicoError("BatchLBFGS optimises one tensor (N, ...): pass [param]")
        self._point: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        #: Closure calls so far (for tests and benchmarks).
        self.evaluations = 0

    @property
    def _param(self) -> torch.Tensor:
        return self.param_groups[0]["params"][0]

    # -- evaluations ------------------------------------------------------------------------------
    def forget(self) -> None:
        """Drop the kept loss and gradient: the next step evaluates the closure again."""
        self._point = None

    def evaluate(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Losses (N,) at the current parameter (kept from the last step when it has not moved)."""
        return self._evaluate(closure)[0]

    def _evaluate(self, closure) -> tuple[torch.Tensor, torch.Tensor]:
        p = self._param
        if self._point is not None and torch.equal(self._point[0], p.detach()):
            return self._point[1], self._point[2]
        with torch.enable_grad():
            losses = closure()
        self.evaluations += 1
        if losses.shape != (p.shape[0],):
            raise InsilicoError(f"the closure must return one loss per sample ({p.shape[0]},), got "
                                f"{tuple(losses.shape)}")
        grad = p.grad.detach().flatten(1).clone() if p.grad is not None else torch.zeros_like(p).flatten(1)
        self._point = (p.detach().clone(), losses.detach(), grad)
        return self._point[1], grad

    def _move(self, x0: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> None:
        with torch.no_grad():
            x = torch.where((t > 0)[:, None], x0 + t[:, None] * d, x0)
            self._param.copy_(x.view_as(self._param))

    # -- the step --------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor], active: torch.Tensor | None = None) -> torch.Tensor:
        """One L-BFGS iteration for every active sample; returns the losses (N,) at the starting point."""
        group, p = self.param_groups[0], self._param
        f, g = self._evaluate(closure)
        x0 = p.detach().flatten(1).clone()
        active = torch.ones(p.shape[0], dtype=torch.bool, device=p.device) if active is None else active.to(p.device)
        state = self._history(group["history_size"])
        d = _two_loop(g, state)
        gd = (g * d).sum(dim=1)
        reset = ~(gd < 0)  # not a descent direction (or NaN): forget the history, go down the gradient
        d = torch.where(reset[:, None], -g, d)
        gd = torch.where(reset, -(g * g).sum(dim=1), gd)
        fresh = reset | ~(state["rho"] > 0).any(dim=0)
        t0 = torch.where(fresh, (1.0 / g.abs().sum(dim=1)).clamp(max=1.0), torch.ones_like(f)) * group["lr"]
        t, f1, g1, failed = self._line_search(closure, x0, f, d, gd, t0 * active, group)
        self._move(x0, t, d)
        moved = t > 0
        self._point = (p.detach().clone(), torch.where(moved, f1, f), torch.where(moved[:, None], g1, g))
        _push(state, t[:, None] * d, g1 - g, keep=moved, clear=active & (reset | failed))
        return f

    def _line_search(self, closure, x0, f, d, gd, t, group):
        """Backtracking Armijo per sample; returns steps (0 where it failed or inactive), losses, grads, failed."""
        pending = t > 0
        f1, g1 = f.clone(), torch.zeros_like(x0)
        for _ in range(group["max_ls"]):
            if not bool(pending.any()):
                break
            self._move(x0, t, d)
            ft, gt = self._evaluate(closure)
            ok = pending & (ft <= f + group["c1"] * t * gd) & torch.isfinite(ft)
            f1, g1 = torch.where(ok, ft, f1), torch.where(ok[:, None], gt, g1)
            pending = pending & ~ok
            t = torch.where(pending, _backtrack(t, f, gd, ft), t)
        failed = pending
        return torch.where(failed, torch.zeros_like(t), t), f1, g1, failed

    def _history(self, m: int) -> dict:
        """This parameter's state: a ring of pairs ``s``, ``y`` (m, N, D), ``rho`` (m, N), ``gamma`` (N,) (the
        initial Hessian scale ``s.y / y.y`` of each sample's newest pair), ``head`` (next slot), ``filled``."""
        p, state = self._param, self.state[self._param]
        if not state:
            n, dim = p.detach().flatten(1).shape
            zeros = lambda *shape: torch.zeros(*shape, dtype=p.dtype, device=p.device)
            state.update(s=zeros(m, n, dim), y=zeros(m, n, dim), rho=zeros(m, n), gamma=zeros(n) + 1, head=0, filled=0)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue from :meth:`state_dict` (the histories; the kept point is not saved, the next step evaluates)."""
        super().load_state_dict(state_dict)
        self.forget()


def _backtrack(t, f, gd, ft):
    """Minimiser of the quadratic through f(0), f'(0) = gd and f(t), kept within [t/10, t/2] (t/2 if not finite)."""
    t_new = -gd * t * t / (2.0 * (ft - f - gd * t))
    t_new = torch.where(torch.isfinite(t_new), t_new, 0.5 * t)
    return torch.minimum(torch.maximum(t_new, 0.1 * t), 0.5 * t)


def _two_loop(g: torch.Tensor, state: dict) -> torch.Tensor:
    """Direction ``-H g`` (N, D), H the L-BFGS inverse Hessian of each sample's pairs in the ring."""
    s, y, rho, m = state["s"], state["y"], state["rho"], state["s"].shape[0]
    order = [(state["head"] - 1 - k) % m for k in range(state["filled"])]  # newest first
    q, alpha = g.clone(), []
    for k in order:
        a = rho[k] * torch.linalg.vecdot(s[k], q)
        q.addcmul_(y[k], a[:, None], value=-1.0)
        alpha.append(a)
    r = q.mul_(state["gamma"][:, None])
    for k, a in zip(reversed(order), reversed(alpha)):
        b = rho[k] * torch.linalg.vecdot(y[k], r)
        r.addcmul_(s[k], (a - b)[:, None])
    return r.neg_()


def _push(state: dict, s: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, clear: torch.Tensor) -> None:
    """Clear the samples in ``clear``; write (s, y) in the next slot, used by the samples in ``keep`` with curvature."""
    rho = torch.where(clear[None, :], torch.zeros_like(state["rho"]), state["rho"])
    gamma = torch.where(clear, torch.ones_like(state["gamma"]), state["gamma"])
    sy, yy = torch.linalg.vecdot(s, y), torch.linalg.vecdot(y, y)
    keep = keep & (sy > CURVATURE_EPS * s.norm(dim=1) * y.norm(dim=1))
    head, m = state["head"], state["s"].shape[0]
    state["s"][head], state["y"][head] = s, y
    rho[head] = torch.where(keep, 1.0 / torch.where(keep, sy, torch.ones_like(sy)), torch.zeros_like(sy))
    state["gamma"] = torch.where(keep, sy / torch.where(keep, yy, torch.ones_like(yy)), gamma)
    state["rho"], state["head"], state["filled"] = rho, (head + 1) % m, min(state["filled"] + 1, m)


__all__ = ["BatchLBFGS"]
