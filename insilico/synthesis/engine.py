"""The synthesis engine shared by every gradient-designed stimulus in insilico.

One loop, batched over samples::

    parameterization -> images (N, C, H, W) in [0, 1]
      -> transforms (per-sample random pad/jitter/scale/rotate)
      -> model (a Probe records only the modules the objective reads, keeping the graph)
      -> objective (one value per sample) -> optimizer step on the active samples
      -> stopping rules, projection, blur

What the engine guarantees:

- **Per-sample independence.** Each sample has its own ``torch.Generator``
  (for its initial noise and its transforms), seeded from ``seed`` and the
  sample's index or label. With an objective without cross-sample terms, a
  sample's images do not depend on the batch it is in: Adam and SGD are
  element-wise, and L-BFGS (:class:`.lbfgs.BatchLBFGS`) keeps one curvature
  history and one line search per sample.
- **Per-sample stopping.** Rules (:mod:`.stopping`) are checked on each step's
  values before the update; a sample is frozen the first time a rule fires:
  its loss is masked out and its parameters are restored after every step, so
  it really stops changing. ``result.stop_reasons`` says which rule fired.
  With ``compact=True`` the model runs on the running samples only
  (:meth:`Objective.subset <insilico.objectives.Objective.subset>` cuts the
  objective to them), so stopped samples cost nothing.
- **No per-step GPU sync.** Traces, masks and rules stay on the device; the
  host looks at them every ``sync_every`` steps (progress bar, "all stopped").
  Exceptions: ``compact=True`` (the running rows, once per step) and L-BFGS
  (its line search, once per trial, as torch's).
- **Clean model.** The run is one :func:`insilico.session.session`: every
  module in eval mode, no gradients to the parameters, gradients to the images
  whatever the caller's grad mode (``torch.no_grad()`` outside is fine, for
  every optimizer); every module's own ``training`` flag and every
  parameter's ``requires_grad`` come back afterwards, also on exceptions and
  KeyboardInterrupt. The Probe owns every hook: one ``record(...,
  keep_graph=True, stop=truncate)`` of the modules the objective reads, which
  also ends each pass after the last of them; nothing stays attached.
- **The model's dtype.** The model runs in its own dtype; the parameters, the
  optimizer state and the objective's values are in
  :func:`~insilico.performance.working_dtype` (the model's dtype, but float32
  for a float16/bfloat16 model: the images are cast to the model's dtype at its
  door, the recorded layers back to float32 for the objective); result images
  are in the model's dtype (a float64 model gives float64 images); traces are
  float32. A NaN or inf objective or image is never returned: the run stops
  with :class:`~insilico.errors.NumericsError` naming the step and the dtype
  (checked on the host every ``sync_every`` steps and at the end of a run).
- **Errors of the model reach the user unchanged** (the validation pass before
  the first step adds a note on ``size=``/``pad=``).
- **Resumable.** ``run()`` again continues from the current parameters,
  optimizer state, generators and step count; an interrupted run keeps the
  state of its last complete step. ``run(a); run(b)`` equals ``run(a + b)``.
  :meth:`Synthesis.resume` continues a saved result.

Plugging in other syntheses (metamers, adversarial, MAD/controversial):

- the **loss** is any :class:`insilico.objectives.Objective` (or a
  composite) returning ``(N,)``; ``goal="minimize"`` for distances;
- **start from given images**: ``init=images`` (any parameterization; Fourier
  and sigmoid mappings are inverted so the run starts exactly there);
- a **projection** ``projection(images) -> images`` is applied in pixel space
  after every step (see :mod:`.projection`: ``linf_ball``, ``l2_ball``);
  ``Pixel(squash="clamp")`` clamps to [0, 1] itself;
- **optimizers** (:mod:`.optimizers`): ``"adam"``, ``"sgd"``, ``"lbfgs"``
  (per-sample L-BFGS, one batched forward per line-search trial; transforms
  are drawn once per step so the line search sees one function) or a factory;
- **schedules** (:mod:`.schedules`): ``"constant"``, ``"cosine"``,
  ``"linear"`` or a function ``step -> factor`` (e.g. ``Halving``);
- **stopping**: ``stop=[TargetReached(...), Plateau(...)]``;
- **best iterate**: ``transforms_until=k, keep="best"`` ends with untransformed steps and returns each
  sample's best of them (:mod:`.best`).

Example
-------
>>> import torch
>>> from insilico.objectives import Channel
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
>>> synth = Synthesis(model, Channel("1", 2), n=2, size=(3, 16, 16), steps=20, progress=False)
>>> result = synth.run()
>>> tuple(result.images.shape), result.trace.shape[0], result.stop_reasons
((2, 3, 16, 16), 20, ['steps', 'steps'])
>>> _ = synth.run(10)           # continues where it stopped
>>> synth.step
30
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import nn

from ..errors import InsilicoError, StimulusError, UnsupportedDtypeError
from ..layers import image_size, renamed, size_failure
from ..objectives import L1, L2, Activations, Objective, TotalVariation, unique_wholes
from ..performance import at_model_door, check_finite, kernels_for, numerics_error, tuned, working_dtype
from ..plan import Plan, plan_for
from . import parameterization as params_mod
from . import stopping
from .best import BestIterate
from .lbfgs import BatchLBFGS
from .optimizers import make_optimizer, optimizer_name
from .parameterization import Parameterization, check_images
from .options import DEFAULT_STEPS, SynthesisOptions
from .result import SynthesisResult
from .schedules import SCHEDULES, lr_factor
from .seeds import derive_seed
from .settings import load_state, options_from, settings_of, state_of
from .transforms import Transforms

GOALS = {"maximize": 1.0, "minimize": -1.0}


class Synthesis:
    """Optimise N images at once so that an objective goes up (or down), sample by sample.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images (N, C, H, W) in [0, 1].
    objective : Objective
        One value per sample; its ``.units`` are the modules recorded.
    parameterization : {"fourier", "pixel"} or Parameterization, optional
        Sets :attr:`SynthesisOptions.parameterization <insilico.synthesis.SynthesisOptions>` (default
        "fourier": 1/f spectrum, decorrelated colour for RGB, sigmoid).
    n : int
        Number of images (from ``init`` when given).
    size : int, (H, W) or (C, H, W), optional
        Image size, as every tool reads it (:func:`insilico.layers.image_size`: an int is the side, with
        the model's channels); default ``model.input_size``. ``init`` or a Parameterization, when given,
        say it instead.
    init : tensor (N, C, H, W), optional
        Start from these images instead of noise.
    goal : {"maximize", "minimize"}
        Default "maximize".
    seed : int or list of int
        An int seeds sample ``i`` with ``derive_seed(seed, labels[i])``; a list
        gives each sample's seed directly. Default 0.
    labels : list of str, optional
        Names of the samples (default ``"0"``, ``"1"``, ...).
    plan : Plan, optional
        The calling tool's :class:`~insilico.plan.Plan`: the run records with
        its Probe and runs inside its session (entered here only when the tool
        has not entered it already); default a new one.
    options : SynthesisOptions, optional
        The loop's knobs (default ``SynthesisOptions()``): steps, lr, optimizer, schedule, transforms,
        penalties, stopping rules, projection, precision, compaction (``compact=True`` runs the model only on
        the samples that have not stopped; the objective is cut with
        :meth:`Objective.subset <insilico.objectives.Objective.subset>`).
    **option_overrides
        Any field of :class:`~insilico.synthesis.SynthesisOptions` (``steps=20, lr=0.1, ...``), on top of
        ``options``; an unknown name is refused with close matches (InsilicoError).
    """

    @renamed(shape="size")
    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        parameterization: str | Parameterization | None = None,
        *,
        n: int | None = None,
        size: int | Sequence[int] | None = None,
        init: torch.Tensor | None = None,
        goal: str = "maximize",
        seed: int | Sequence[int] = 0,
        labels: Sequence[str] | None = None,
        plan: Plan | None = None,
        options: SynthesisOptions | None = None,
        **option_overrides,
    ):
        if parameterization is not None:
            option_overrides["parameterization"] = parameterization
        options = SynthesisOptions.from_kwargs("Synthesis", {}, options, **option_overrides)
        _check_choices(model, objective, goal)
        self.options = options
        self.model, self.objective = model, _penalized(objective, options, GOALS[goal])
        self.plan = plan_for(model, plan)  # the calling tool's Probe and session, or new ones
        self.probe = self.plan.probe
        self.device, self.dtype = self.probe.device, self.probe.dtype
        self.work_dtype = working_dtype(self.dtype)  # parameters, optimizer state, objective values
        self.wholes = unique_wholes(objective.units)
        self.probe.units(*self.wholes) if self.wholes else None  # unknown modules fail now, not after an hour
        kind = options.parameterization or "fourier"
        init = self._set_samples(n, size, init, kind, labels, seed)
        self._set_parameterization(kind, options.param_options, init)

        self.goal = GOALS[goal]
        self.goal_name = goal
        self.transforms = options.make_transforms(model, self.shape)
        self.transforms_until = options.transforms_until
        self.keep = options.keep
        self._set_optimizer(options)
        self.rules = list(options.stop)
        self.projection = options.projection
        self.blur_every, self.blur_sigma = int(options.blur_every), float(options.blur_sigma)
        self.progress, self.sync_every, self.truncate = options.progress, max(1, options.sync_every), options.truncate
        self.precision, self.channels_last = options.precision, bool(options.channels_last)
        self._prepare = lambda x: x  # set while running: the input batch in the model's memory format
        self.compact_option = options.compact
        self.compact = options.compact is True or (options.compact == "cpu" and self.device.type == "cpu")
        self.optimizer = self._make_optimizer()
        self._lbfgs = isinstance(self.optimizer, BatchLBFGS)
        self._start_state(self.objective)

    # -- set-up ------------------------------------------------------------------------------
    def _set_samples(self, n, size, init, parameterization, labels, seed) -> torch.Tensor | None:
        """``n``, ``shape`` (C, H, W), ``labels``, the per-sample ``seeds`` and ``generators``; returns ``init``
        through the image gate (it, or a Parameterization, says ``n`` and ``shape``; else ``n=`` and ``size=``)."""
        shape = None
        if init is not None:
            init = check_images(init, name="init")
            n, shape = init.shape[0], tuple(init.shape[1:])
        if isinstance(parameterization, Parameterization):
            n, shape = parameterization.n, parameterization.shape
        if n is None:
            raise StimulusError("say how many images: n=, or init=images")
        if shape is None:
            shape = image_size(self.model, size)
        self.n, self.shape = int(n), tuple(int(s) for s in shape)
        self.labels = [str(l) for l in labels] if labels is not None else [str(i) for i in range(self.n)]
        if len(self.labels) != self.n:
            raise InsilicoError(f"{len(self.labels)} labels for {self.n} samples")
        if isinstance(seed, (int,)) or (torch.is_tensor(seed) and seed.ndim == 0):
            self.seeds = [derive_seed(int(seed), label) for label in self.labels]
        else:
            self.seeds = [int(s) for s in seed]
            if len(self.seeds) != self.n:
                raise InsilicoError(f"{len(self.seeds)} seeds for {self.n} samples: give one per sample or one int")
        self.seed = seed if isinstance(seed, int) else None
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        return init

    def _set_parameterization(self, parameterization, param_options, init) -> None:
        """The image parameterization on the model's device and dtype, started from ``init`` when given."""
        self.param_options = dict(param_options or {})
        if isinstance(parameterization, Parameterization):
            self.param = parameterization
        else:
            self.param = params_mod.make(parameterization, self.n, self.shape, generators=self.generators,
                                         **self.param_options)
        self.param = self.param.to(self.device, self.work_dtype)
        if init is not None:
            self.param.assign(init)

    def _set_optimizer(self, options: SynthesisOptions) -> None:
        """The optimizer's settings (the optimizer itself is made by :meth:`_make_optimizer`)."""
        optimizer = options.optimizer
        self.optimizer_factory = optimizer if callable(optimizer) else None
        self.optimizer_name = optimizer if isinstance(optimizer, str) else optimizer_name(optimizer)
        if options.lr is None:
            raise InsilicoError("lr must be a positive finite number, not None")
        if not callable(options.schedule) and options.schedule not in SCHEDULES:
            raise InsilicoError(f"schedule must be one of {SCHEDULES} or a function step -> factor, not "
                                f"{options.schedule!r} (Halving(every) for a halving rate)")
        self.lr = float(options.lr)
        self.optimizer_options = dict(options.optimizer_options or {})
        self.schedule = options.schedule
        self.steps = int(options.steps)
        self.schedule_steps = int(options.schedule_steps or options.steps)

    def _start_state(self, objective) -> None:
        """The state that a resumed run continues from (step, loss trace, stopped samples, best iterates)."""
        self.step = 0
        self._trace = torch.full((64, self.n), float("nan"), device=self.device, dtype=torch.float32)
        self.frozen = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        self.stop_code = torch.full((self.n,), -1, dtype=torch.long, device=self.device)
        self.stopped_at = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self._previous = None  # images of the last step, for the pixel-change rule
        self.best = BestIterate(self.n, self.device)
        self._nonfinite = torch.full((), -1, dtype=torch.long, device=self.device)  # first step with NaN/inf
        self.interrupted = False
        self._validated = False  # the first run's validation pass (it teaches the plan where passes stop)
        self._running: tuple = (None, objective)  # (rows, objective) of this step's forward passes
        self._subset: tuple | None = None  # (frozen mask, rows, objective.subset(rows)), remade when samples stop

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer_factory or self.optimizer_name, [self.param.param], self.lr,
                              self.optimizer_options)

    @contextlib.contextmanager
    def _session(self):
        """The model in a :func:`~insilico.session.session` (eval, frozen parameters, gradients on whatever the
        caller's grad mode) and the objective's modules recorded by the Probe, keeping the graph and (with
        ``truncate``) ending each pass after the last of them. Everything restored on exit, also on Ctrl-C."""
        recording = (self.plan.record(*self.wholes, keep_graph=True, stop=self.truncate) if self.wholes
                     else contextlib.nullcontext())
        with self.plan.session(grad=True), recording as rec:
            if not self._validated:
                stops = self._validate(rec)
                self._validated = True
                if rec is not None and self.truncate:
                    self.plan.learn(rec, stops)  # later runs stop where this pass learned, or run plainly
                    rec.stop = stops
            yield rec

    def _fixed_size_transforms(self, images: torch.Tensor, draw, rec) -> Transforms | None:
        """The transforms brought back to the parameterized size, if the model takes that size (a fixed-input
        model refusing the padded canvas, e.g. a ViT); else None."""
        size = tuple(images.shape[-2:])
        if self.transforms.output_size(size) == size:
            return None
        resized = self.transforms.resized(size)
        if rec is not None:
            rec.clear()
        try:
            x = at_model_door(resized(images, draw), self.dtype)
            self.model(x) if rec is None else rec.forward(x)
        except Exception:
            return None
        return resized

    def _validate(self, rec) -> bool:
        """One no-grad pass before the first run: checks the objective's output and learns where passes can stop.

        Returns whether passes stop (``rec.stop_at``, learned by this pass or
        given by the plan, says where). A shape error of the model is a
        :class:`~insilico.errors.ModelInputError` naming ``size=`` (other errors reach the caller
        unchanged: :func:`~insilico.layers.inputs.size_failure`), unless every recorded module
        ran before it and passes are truncated (the layers after the recorded
        ones need not take this image size, e.g. the classifier of a fixed-size net).
        """
        with torch.no_grad():
            images = self.param()
            draw = [torch.Generator().manual_seed(0) for _ in range(self.n)]
            x = at_model_door(self.transforms(images, draw), self.dtype)
            try:
                with kernels_for(self.dtype, self.device):  # a missing half kernel is not a size problem
                    self.model(x) if rec is None else rec.forward(x)
            except UnsupportedDtypeError:
                raise
            except Exception as error:
                resized = self._fixed_size_transforms(images, draw, rec)
                if resized is None:  # a shape error of the model: a ModelInputError naming size=
                    raise size_failure(error, tuple(x.shape), "size", f" (after transforms {self.transforms})")
                self.transforms = resized
            values = self._evaluate(rec, images)
            if rec is not None:
                rec.clear()
        check_finite(values, f"the objective {self.objective!r}", self.dtype, "on the initial images",
                     "check the objective (a log or a division of a unit that can be 0?)")
        return rec is not None and rec.stop_at is not None

    # -- one step ---------------------------------------------------------------------------------
    def _evaluate(self, rec, images: torch.Tensor, objective: Objective | None = None) -> torch.Tensor:
        acts = (Activations({w.key: at_model_door(rec[w], self.work_dtype) for w in self.wholes}, self.model)
                if rec is not None else Activations({}))  # a half model's layers reach the objective in float32
        values = (objective or self.objective)(acts, images)
        if values.shape != (images.shape[0],):
            raise InsilicoError(f"the objective gave shape {tuple(values.shape)} for {images.shape[0]} samples; "
                                f"expected ({images.shape[0]},)")
        return values

    def _forward(self, rec, images: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        """Values (N,) of the objective; with compaction only the running rows go through the model (0 elsewhere)."""
        rows, objective = self._running
        if rows is not None:
            if rows.numel() == 0:
                return images.flatten(1).sum(dim=1) * 0.0  # nothing runs; keeps backward() valid
            images, draws = images.index_select(0, rows), None if draws is None else draws[rows.cpu()]
        x = at_model_door(self._prepare(images if draws is None else self.transforms.apply(images, draws)), self.dtype)
        if rec is None:
            self.model(x)
        else:
            rec.clear()
            rec.forward(x)
        values = self._evaluate(rec, images, objective)
        return values if rows is None else values.new_zeros(self.n).index_copy(0, rows, values)

    def _compact_rows(self) -> tuple[torch.Tensor | None, Objective]:
        """(running rows, the objective for them) when compacting and a sample has stopped; else (None, objective)."""
        if not self.compact or not bool(self.frozen.any()):
            return None, self.objective
        if self._subset is None or not torch.equal(self._subset[0], self.frozen):
            rows = (~self.frozen).nonzero()[:, 0]
            self._subset = (self.frozen.clone(), rows, self.objective.subset(rows))
        return self._subset[1], self._subset[2]

    def _one_step(self, rec) -> None:
        """Evaluate, check the rules, update; on any exception (Ctrl-C too) roll back to the step's start."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor(self.schedule, self.step, self.schedule_steps)
        generator_states = [g.get_state() for g in self.generators]
        before = self.param.param.detach().clone()
        try:
            draws = None if self._untransformed() else self.transforms.draw(self.generators)
            active = ~self.frozen
            self._running = self._compact_rows()

            def closure():
                self.optimizer.zero_grad(set_to_none=True)
                losses = -self.goal * self._forward(rec, self.param(), draws)
                torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
                return losses.detach()

            if self._lbfgs:
                if draws is not None:  # a new function each step: the kept point of the last step is stale
                    self.optimizer.forget()
                values = -self.goal * self.optimizer.evaluate(closure)
            else:
                values = -self.goal * closure()
            with torch.no_grad():
                images = self.param()
            # the trace row and the rules see this step's values, before the update
            self._write_trace(torch.where(self.frozen, torch.full_like(values, float("nan")), values.float()))
            self._note_nonfinite(values, images, active)
            change = ((images - self._previous).abs().flatten(1).amax(dim=1) if self._previous is not None
                      else torch.full((self.n,), float("inf"), device=images.device))
            state = stopping.StopState(step=self.step, goal=self.goal, pixel_change=change)
            trace = self._trace[: self.step + 1]
            frozen, code, stopped_at = self.frozen, self.stop_code, self.stopped_at
            for index, rule in enumerate(self.rules):
                fired = rule(trace, state).to(self.device) & ~frozen
                code = torch.where(fired, torch.full_like(code, index), code)
                stopped_at = torch.where(fired, torch.full_like(stopped_at, self.step + 1), stopped_at)
                frozen = frozen | fired
            if self._lbfgs:  # the samples frozen at this step do not move
                self.optimizer.step(closure, active=~frozen)
            else:
                self.optimizer.step()
        except BaseException:
            with torch.no_grad():
                self.param.param.copy_(before)
            for g, s in zip(self.generators, generator_states):
                g.set_state(s)
            raise
        # commit
        if self.keep == "best" and draws is None:
            self.best.offer(self.goal * values, before, active)
        self.frozen, self.stop_code, self.stopped_at = frozen, code, stopped_at
        self._previous = images
        with torch.no_grad():
            if self.blur_every and (self.step + 1) % self.blur_every == 0:
                self.param.blur_(self.blur_sigma)
            self.param.project_()
            if self.projection is not None:
                self.param.assign(self.projection(self.param()), mask=~self.frozen, check=False)
            keep = self.frozen.view(-1, *[1] * (before.ndim - 1))
            self.param.param.copy_(torch.where(keep, before, self.param.param))
        self.step += 1

    def _note_nonfinite(self, values: torch.Tensor, images: torch.Tensor, active: torch.Tensor) -> None:
        """Remember (on the device, no sync) the first step whose objective or images are NaN/inf for a running
        sample; :meth:`_check_finite` raises on the host."""
        bad = (~(torch.isfinite(values) & torch.isfinite(images).flatten(1).all(dim=1)) & active).any()
        self._nonfinite = torch.where(bad & (self._nonfinite < 0), self.step, self._nonfinite)

    def _check_finite(self, end: bool = False) -> None:
        """:class:`~insilico.errors.NumericsError` naming the first step whose objective or images were NaN/inf
        (and, at the end of a run, parameters the last update made non-finite)."""
        step = int(self._nonfinite)
        if step >= 0:
            raise numerics_error("the objective or the images", self.dtype, f"at step {step} of {self!r}", "lower lr")
        if end:
            check_finite(self.param.param.detach(), "the parameters after the last update", self.dtype,
                         f"at step {self.step} of {self!r}", "lower lr")

    def _untransformed(self) -> bool:
        """True when this step runs the images as they are (no transforms, or past ``transforms_until``)."""
        return self.transforms.identity or (self.transforms_until is not None and self.step >= self.transforms_until)

    def _write_trace(self, row: torch.Tensor) -> None:
        if self.step >= self._trace.shape[0]:
            grown = torch.full((2 * self._trace.shape[0], self.n), float("nan"), device=self.device)
            grown[: self._trace.shape[0]] = self._trace
            self._trace = grown
        self._trace[self.step] = row

    # -- running ------------------------------------------------------------------------------------
    def run(self, steps: int | None = None) -> SynthesisResult:
        """Take up to ``steps`` more steps (default: the ``steps`` given at construction); returns the result.

        Stops early when every sample is frozen by a stopping rule. Calling it
        again continues. On an exception or KeyboardInterrupt the model and its
        hooks are restored and the state of the last complete step is kept.
        """
        from tqdm.auto import tqdm

        budget = self.steps if steps is None else int(steps)
        if budget < 0:
            raise InsilicoError(f"steps must be at least 0, not {steps!r}")
        self._subset = None  # the objective may have changed between runs (e.g. coarse-to-fine weights)
        if self._lbfgs:
            self.optimizer.forget()
        self.interrupted = True
        bar = tqdm(total=budget, disable=not self.progress, desc=f"synthesis ({self.n} images x {budget} steps)",
                   unit="step", leave=False)
        try:
            with self._session() as rec, tuned(self.model, self.precision, self.channels_last) as self._prepare:
                done = 0
                while done < budget:
                    self._one_step(rec)
                    done += 1
                    if done % self.sync_every == 0 or done == budget:
                        bar.update(done - bar.n)
                        last = self._trace[self.step - 1]
                        bar.set_postfix(objective=f"{float(last.nanmean()):.4g}", stopped=int(self.frozen.sum()))
                        self._check_finite()
                        if bool(self.frozen.all()):
                            break
                self._check_finite(end=True)
            self.interrupted = False
        finally:
            bar.close()
        return self.result()

    synthesize = run

    @property
    def images(self) -> torch.Tensor:
        """The current images (N, C, H, W), detached; with ``keep="best"`` each sample's best iterate."""
        with torch.no_grad():
            if self.keep == "last" or self.best.param is None:
                return self.param().detach().to(self.dtype)
            current = self.param.param.detach().clone()
            try:
                self.param.param.copy_(self.best.choose(current))
                return self.param().detach().to(self.dtype)
            finally:
                self.param.param.copy_(current)

    def result(self) -> SynthesisResult:
        """The current state as a :class:`SynthesisResult` (images on the CPU, traces, settings, state);
        :class:`~insilico.errors.NumericsError` after a step that made them NaN or inf."""
        self._check_finite()
        names = [stopping.rule_name(r) for r in self.rules]
        codes = self.stop_code.tolist()
        running = "running" if self.interrupted else "steps"
        reasons = [names[c] if c >= 0 else running for c in codes]
        steps = torch.where(self.frozen, self.stopped_at, torch.full_like(self.stopped_at, self.step)).cpu()
        return SynthesisResult(
            images=self.images.cpu(),
            trace=self._trace[: self.step].cpu(),
            steps=steps,
            stop_reasons=reasons,
            labels=list(self.labels),
            settings=self.settings(),
            seeds=list(self.seeds),
            state=self.state_dict(),
        )

    def settings(self) -> dict:
        """JSON-able settings of this synthesis (see :func:`insilico.synthesis.settings.settings_of`)."""
        return settings_of(self)

    def state_dict(self) -> dict:
        """Everything a continued run needs (tensors, numbers and lists only; :func:`.settings.state_of`)."""
        return state_of(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (e.g. ``result.state``)."""
        load_state(self, state)

    @classmethod
    def resume(cls, result: SynthesisResult, model: nn.Module, objective: Objective, **overrides) -> Synthesis:
        """A synthesis that continues ``result`` (saved with its state) for ``model`` and ``objective``.

        Settings come from ``result.settings``; callables that are not saved
        (a custom ``schedule``, custom stopping functions, ``projection``) must
        be passed again in ``overrides``.
        """
        if result.state is None or "param" not in result.state:
            raise InsilicoError("this result has no engine state to resume from (saved with state=False, or chunked: "
                                "use insilico.maximize(..., resume=result) for maximize results)")
        kind, kwargs = options_from(result)
        kwargs.update(overrides)
        synth = cls(model, objective, kind, **kwargs)
        synth.seed = result.settings.get("seed")
        synth.load_state_dict(result.state)
        return synth

    def __repr__(self) -> str:
        return (f"Synthesis({self.n} x {self.shape}, {self.goal_name} {self.objective!r}, "
                f"{self.optimizer_name} lr={self.lr}, step {self.step})")


def _check_choices(model, objective, goal) -> None:
    """InsilicoError, naming the fix, for a model that is not a Module, an objective that is not an Objective,
    or an unknown goal (the options are checked by :meth:`SynthesisOptions.validate`)."""
    if not isinstance(model, nn.Module):
        raise InsilicoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise InsilicoError(
            f"objective must be an insilico.objectives.Objective, got {type(objective).__name__}; "
            "e.g. insilico.objectives.Channel('features.3', 5)"
        )
    if goal not in GOALS:
        raise InsilicoError(f"goal must be 'maximize' or 'minimize', not {goal!r}")


def _penalized(objective: Objective, options: SynthesisOptions, goal: float) -> Objective:
    """``objective`` with the options' image penalties (tv, l1, l2), each working against the goal."""
    for weight, penalty in ((options.tv, TotalVariation()), (options.l1, L1()), (options.l2, L2())):
        if weight:
            objective = objective - goal * weight * penalty
    return objective


__all__ = ["DEFAULT_STEPS", "Synthesis", "SynthesisOptions", "derive_seed"]
