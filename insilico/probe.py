"""The probing layer: record, lesion and stimulate any unit of any ``nn.Module``.

A :class:`Probe` owns every hook insilico puts on a model. Each module gets at
most ONE forward hook, whatever is asked of it; the hook counts the module's
calls within a forward pass (so every call of a recurrent module is a separate
``@step``), applies the active edits (lesions, stimulation) in the order they
were added, and then hands the edited output to the active recorders. A survey
(:meth:`Probe.survey`, ``names(example)``) observes its one pass through one
process-wide forward hook instead, removed when the pass ends.

Op units (``"layer1.0/add"``) and attention parts (``"attn:heads"``) live
inside a module's forward: for them, and only while one is attached, the
probe's op watch (:mod:`insilico.ops`) adds a pre-hook and a hook to the
module that runs them and to its descendants, and opens a
``TorchFunctionMode`` for that module's own code. Their sites take edits and
taps exactly as a module's hook does. Without op units none of this exists.

``record``, ``lesion``, ``stimulate`` and ``lesion_connections`` attach at once
and return a handle that is a context manager: leaving the ``with`` block (also
by an exception) or calling ``handle.remove()`` removes exactly what it added,
never the user's own hooks. Bad addresses fail before anything is attached.

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> probe = insilico.Probe(model)
>>> x = torch.rand(10, 3)
>>> with probe.record("1") as rec, probe.lesion("1[0]"):
...     _ = model(x)
>>> float(rec["1"][:, 0].abs().sum())
0.0
>>> probe.hooks()
[]
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from . import attention
from . import ops as _ops
from .edits import (LESION_MODES, ConnectionLesion, Intervention, _Drive, _Edit, _FractionMask, _MeanReplacement,
                    _NoiseReplacement, _steps)
from .errors import InsilicoError, UnitError
from .hooks import Handle, StopForward, _InnerSite, _Observer, _OpObserver, _Site, _SiteHandle, _SurveyHook
from .registry import register_tool
from .session import device_of, dtype_of, session
from .survey import Survey
from .taps import REDUCTIONS, Record, _Tap
from .units import Unit, UnitLike, module_table, need_tensor

__all__ = ["ConnectionLesion", "Handle", "Intervention", "LESION_MODES", "Probe", "REDUCTIONS", "Record", "StopForward"]


class Probe:
    """Hooks units of ``model`` to record, lesion and stimulate them.

    Parameters
    ----------
    model : nn.Module
        Any PyTorch model. The probe attaches nothing until asked, and every
        handle it returns removes what it attached.

    Raises
    ------
    InsilicoError
        A model compiled by ``torch.compile`` or ``module.compile()`` (hooks added after
        compilation do not run: probe ``model._orig_mod``), or one with a parameter or buffer
        on the ``meta`` device (no data: load its weights first). Every tool makes its
        probe here, so every tool refuses them.

    Example
    -------
    >>> import torch, insilico
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    >>> probe = insilico.Probe(model)
    >>> with probe.stimulate("0[1]", clamp=5.0), probe.record("1[1]") as rec:
    ...     _ = model(torch.rand(1, 1, 5, 5))
    >>> rec["1[1]"].unique().tolist()
    [5.0]
    """

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise InsilicoError(f"Probe needs a torch.nn.Module, got {type(model).__name__}")
        _refuse_unprobeable(model)
        self.model = model
        self._sites: dict[str, _Site] = {}
        self._handles: list[Handle] = []
        self._reset_handle = None
        self._ops = _ops.OpWatch(model)

    # -- introspection ---------------------------------------------------------------
    def names(self, *example: Any, ops: bool = False, **kwargs) -> list[str]:
        """Addresses usable as units.

        Without an example: the module paths (``""`` is the model itself).
        With an example input: every address the forward pass produced, in
        execution order (a module when its forward returns, an op when it
        runs), with ``@step`` for modules called more than once; with
        ``ops=True`` also every op of every module's own forward
        (``"layer1.0/add"``) and the attention parts (``"attn:heads"``,
        ``"attn:weights"``) of attention modules. ``probe.survey(example,
        ops=True).table()`` prints them with op names and shapes.

        Example
        -------
        >>> import torch, insilico
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = torch.nn.Linear(3, 3)
        ...     def forward(self, x):
        ...         return torch.relu(self.fc(x) + x)
        >>> insilico.Probe(Net()).names(torch.rand(1, 3), ops=True)
        ['fc', '/add', '/relu', '']
        """
        if not example:
            if ops:
                raise InsilicoError("names(ops=True) needs an example input: probe.names(example, ops=True)")
            return list(module_table(self.model))
        return self.survey(*example, ops=ops, **kwargs).addresses()

    def hooks(self) -> list[str]:
        """What this probe has attached now, one line per handle."""
        return [repr(h) for h in self._handles]

    @property
    def device(self) -> torch.device:
        """The model's device (of its first parameter or buffer; CPU if it has none)."""
        return device_of(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating dtype (of its first floating parameter; float32 if none)."""
        return dtype_of(self.model)

    def survey(self, *inputs: Any, modules: Iterable[str] | None = None, strict: bool = True, ops: bool = False,
               flops: bool = False, **kwargs) -> Survey:
        """One forward pass that logs every module call: order, call count, output shape and dtype.

        The pass runs in a :func:`~insilico.session.session` (eval mode, no
        gradients; every module's flags restored after). Every tool learns
        shapes, call counts and layer lists from a survey instead of a dry run
        of its own.

        Parameters
        ----------
        *inputs, **kwargs
            The arguments of one forward pass (e.g. one image, ``(1, C, H, W)``).
        modules : iterable of str, optional
            Only these module paths (default: every module, the model too).
        strict : bool
            True (default): an exception of the model reaches the caller
            unchanged. False: it is kept in ``survey.error`` with the calls
            made before it (a model whose tail does not take this input size).
        ops : bool
            Also log every op of the modules' own forwards and the attention
            parts of attention modules (:mod:`insilico.ops`); slower (every
            torch call of the pass goes through Python), so off by default.
        flops : bool
            Count the pass's FLOPs (:class:`torch.utils.flop_counter.FlopCounterMode`:
            matrix products and convolutions, 2 per multiply-add): each call's
            ``flops`` is the count up to its end, ``survey.flops`` the whole pass's.

        Example
        -------
        >>> import torch, insilico
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
        >>> s = insilico.Probe(m).survey(torch.rand(1, 1, 5, 5))
        >>> [(c.module, c.shape) for c in s]
        [('0', (2, 3, 3)), ('1', (2, 3, 3)), ('', (2, 3, 3))]
        """
        table = module_table(self.model)  # the pass's one traversal; the kept table resolves the paths below
        survey = Survey(self.model, table)
        paths = list(dict.fromkeys(table if modules is None else modules))
        found = table.items() if modules is None else [(u.module, u.resolve(self.model)) for u in map(Unit, paths)]
        quiet, observed = {}, []  # one global hook for modules without hooks of their own (it runs before those)
        for path, module in found:
            if module._forward_hooks or id(module) in quiet:
                observed.append(_Observer(Unit(path), survey))
            else:
                quiet[id(module)] = path
        handles = [_SurveyHook(self, quiet, survey), _SiteHandle(self, observed)]
        try:
            for handle in handles:
                self._attach(handle)
            stop_ops = self._ops.observe(paths, _OpObserver(survey, self.model)) if ops else None
        except BaseException:
            for handle in handles:
                handle.remove()
            raise
        if flops:
            from torch.utils.flop_counter import FlopCounterMode

            survey.counter = FlopCounterMode(display=False)
        try:
            with session(self.model), survey.counter or contextlib.nullcontext():
                self.model(*inputs, **kwargs)
        except Exception as error:  # noqa: BLE001 - re-raised unless the caller asked to keep it
            if strict:
                raise
            survey.error = error
        finally:
            if stop_ops is not None:
                stop_ops()
            for handle in handles:
                handle.remove()
            if survey.counter is not None:
                survey.flops, survey.counter = float(survey.counter.get_total_flops()), None
        return survey

    def value_spec(self, unit: UnitLike, example: torch.Tensor, survey: Survey | None, parts: dict | None = None
                   ) -> tuple[tuple, torch.dtype]:
        """One sample's shape (the unit's index applied) and the dtype of a unit's values: the one shape rule.

        A module's, op's or attention part's output is read from ``survey``, a
        survey of ``example`` (made with ``ops=True`` for op units and attention
        parts); a part of a structured output (``"lstm:0"``) is sized by one
        recording pass of ``example[:1]``, as a survey sees whole outputs only
        (``parts`` keeps it by the whole output's key, so it is sized once; it
        needs no survey).
        :class:`insilico.plan.Plan` and :func:`insilico.recording.record_stimuli` ask here.

        Raises
        ------
        UnitError
            A unit never called in the surveyed pass, or a structured part that is no tensor; the model's own
            error when the pass failed before the unit ran.
        """
        unit = Unit.coerce(unit, self.model)
        if unit.output is None or unit.part is not None or unit.op is not None:
            dtype = survey.reached(unit).dtype  # the model's own error, or "never called", before the shape
            return survey.shape(unit), dtype
        whole = Unit(unit.module, unit.step, None, unit.output)
        parts = {} if parts is None else parts
        if whole.key not in parts:
            with session(self.model), self.record(whole) as rec:
                self.model(example[:1].to(self.device, self.dtype))
            value = need_tensor(whole, rec[whole])
            parts[whole.key] = (tuple(value.shape[1:]), value.dtype)
        shape, dtype = parts[whole.key]
        if unit.index is not None:
            shape = tuple(unit.select(torch.empty((1,) + shape, device="meta")).shape[1:])
        return shape, dtype

    def units(self, *specs: UnitLike) -> list[Unit]:
        """Parse and check unit addresses against the model (unknown modules fail here)."""
        units = []
        for spec in specs:
            if isinstance(spec, (list, tuple)):
                units.extend(self.units(*spec))
                continue
            unit = Unit.coerce(spec, self.model)
            unit.resolve(self.model)
            units.append(unit)
        if not units:
            raise UnitError("no units given: name at least one, e.g. probe.record('features.3')")
        return units

    # -- the four operations ------------------------------------------------------------
    @register_tool("probe", takes_images=False, saves=False, per_sample=True)
    def record(self, *units: UnitLike, keep_graph: bool = False, reduce: str | None = None,
               stop: bool = False) -> Record:
        """Record units during forward passes; returns a :class:`Record` (a context manager).

        Parameters
        ----------
        *units : str, Unit or nn.Module
            Unit addresses (see :mod:`insilico.units`).
        keep_graph : bool
            False (default): values are detached copies, safe from later
            in-place ops. True: copies that keep the autograd graph, for
            gradients with respect to the input.
        reduce : {"mean", "max", "center"}, optional
            Each channel pooled over its positions at record time, to save
            memory: ``(N, C)``; the unit's index may then only pick channels.
            The output's layout decides the axes (:mod:`insilico.layout`; the
            module and the model's family say which it is): a map
            ``(N, C, H, W, ...)``, a channels-last stage ``(N, H, W, C)``
            (Swin), tokens ``(N, T, D)`` over the patch tokens (CLS and
            registers dropped; ``"center"`` is the centre patch); a vector or
            an attention part is refused when read.

        Every forward pass of the model adds its batch: ``rec[unit]`` is the
        concatenation over passes along the batch axis. For a module called
        several times per pass, ask for one call as ``"module@t"``, or for all
        calls stacked with ``rec.steps("module")`` (N, T, ...); ``rec["module"]``
        without a step then raises a UnitError that says so.

        stop : bool
            End each forward pass once every recorded unit has been computed
            (the rest of the model is skipped): run passes with
            :meth:`Record.forward`, which learns on its first pass where to stop.
            Inside ``with probe.record(..., stop=True): model(x)`` the stop is
            caught at the end of the block.

        A hook never breaks the user's forward pass: an output that cannot be
        recorded as asked raises its UnitError when the value is read.
        """
        if reduce is not None and reduce not in REDUCTIONS:
            raise InsilicoError(f"reduce must be one of {REDUCTIONS} or None, not {reduce!r}")
        parsed = self.units(*units)
        if reduce is not None:
            for unit in parsed:
                if unit.index is not None and len(unit.index) > 1:
                    raise UnitError(f"{unit}: with reduce={reduce!r} the index may only pick channels, e.g. '[12]'")
        taps = {unit.key: _Tap(unit, keep_graph, reduce, self.model) for unit in parsed}
        return self._attach(Record(self, list(taps.values()), stop=stop))

    @register_tool("probe", saves=False, follows_dtype=False)
    def lesion(
        self,
        *units: UnitLike,
        mode: str = "zero",
        value: float = 0.0,
        std: float = 1.0,
        reference: Any = None,
        fraction: float | None = None,
        seed: int | None = None,
        steps: int | Sequence[int] | None = None,
        batch_size: int = 64,
    ) -> Intervention:
        """Silence units: replace their activity in every forward pass.

        Parameters
        ----------
        mode : {"zero", "mean", "constant", "noise"}
            "zero": 0. "constant": ``value``. "mean": each unit's mean response
            over the ``reference`` stimuli (computed now, per call step).
            "noise": fresh Gaussian noise ``value + std * N(0, 1)`` each pass,
            drawn from a generator seeded with ``seed``.
        fraction : float, optional
            Lesion only a random fraction of the channels (first axis of the
            selection; the units of a linear layer), drawn with ``seed``; the
            chosen channels are in ``handle.lesioned`` after the first pass.
        steps : int or list of int, optional
            Only these calls of a module called several times (recurrence);
            the address's own ``@t`` does the same.

        Raises
        ------
        InsilicoError
            An unknown mode, a fraction outside [0, 1], mode="mean" without
            ``reference``; at a forward pass, a mean over ``reference`` whose
            shape differs from the unit's output (reference images of another
            size: the message names ``reference=`` and both shapes).

        Example
        -------
        >>> import torch, insilico
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3))
        >>> with insilico.Probe(model).lesion("0[1]", mode="constant", value=7.0):
        ...     out = model(torch.rand(4, 2))
        >>> out[:, 1].tolist()
        [7.0, 7.0, 7.0, 7.0]
        """
        if mode not in LESION_MODES:
            raise InsilicoError(f"lesion mode must be one of {LESION_MODES}, not {mode!r}")
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise InsilicoError(f"fraction must lie in [0, 1], not {fraction}")
        parsed = self.units(*units)
        if mode == "mean":
            if reference is None:
                raise InsilicoError("mode='mean' needs reference= stimuli to compute each unit's mean response")
            means = self._mean_responses(parsed, reference, batch_size)
        edits = []
        for unit in parsed:
            if mode == "zero":
                replace = lambda sel, step: torch.zeros_like(sel)
            elif mode == "constant":
                replace = lambda sel, step, v=value: torch.full_like(sel, v)
            elif mode == "mean":
                replace = _MeanReplacement(unit, means[unit.module, unit.output])
            else:
                replace = _NoiseReplacement(value, std, seed)
            if fraction is not None:
                replace = _FractionMask(replace, fraction, seed)
            edits.append(_Edit(unit, replace, _steps(unit, steps), f"lesion({mode})"))
        return self._attach(Intervention(self, edits))

    @register_tool("probe", takes_images=False, saves=False, per_sample=True)
    def stimulate(
        self,
        *units: UnitLike,
        add: float | torch.Tensor | None = None,
        gain: float | torch.Tensor | None = None,
        clamp: float | torch.Tensor | tuple | None = None,
        steps: int | Sequence[int] | None = None,
    ) -> Intervention:
        """Drive units: ``x -> clamp(gain * x + add)`` in every forward pass.

        Parameters
        ----------
        add, gain : float or tensor, optional
            A tensor is a pattern broadcast over the selection (e.g. (H, W) for
            one channel, or (N, ...) per sample).
        clamp : float, tensor or (low, high), optional
            A value holds the units there (a voltage clamp); a ``(low, high)``
            pair bounds them (either may be None).
        steps : int or list of int, optional
            Only these calls of a recurrent module (or use ``"module@t"``).
        """
        if add is None and gain is None and clamp is None:
            raise InsilicoError("stimulate needs at least one of add=, gain=, clamp=")
        parsed = self.units(*units)
        drive = _Drive(add, gain, clamp)
        edits = [_Edit(unit, drive, _steps(unit, steps), f"stimulate({drive})") for unit in parsed]
        return self._attach(Intervention(self, edits))

    @register_tool("probe", takes_images=False, saves=False, per_sample=True)
    def lesion_connections(
        self, layer: UnitLike, outputs: Iterable[int] | None = None, inputs: Iterable[int] | None = None
    ) -> ConnectionLesion:
        """Zero the weights from input channels ``inputs`` to output units ``outputs`` of a conv/linear layer.

        ``None`` means all. The original weights are restored bit-exactly when
        the handle is removed (end of ``with``, also on an exception). Grouped
        convolutions are handled: only existing connections are zeroed. The
        weight zeroed is the one the forward pass uses, also where it is made
        from others every pass (``torch.nn.utils.prune``, ``weight_norm``,
        ``spectral_norm``, any ``torch.nn.utils.parametrize`` parametrization;
        see :class:`~insilico.edits.ConnectionLesion`).

        Raises
        ------
        InsilicoError
            A layer that is not Linear/Conv1d/2d/3d, or whose weight is a plain tensor nothing
            recomputes (no parameter, parametrization or pre-hook): the lesion could not be sure to act.
        UnitError
            ``outputs``/``inputs`` out of range; an op or attention part instead of a layer.

        Example
        -------
        >>> import torch, insilico
        >>> layer = torch.nn.Linear(3, 2)
        >>> model = torch.nn.Sequential(layer)
        >>> before = layer.weight.clone()
        >>> with insilico.Probe(model).lesion_connections("0", outputs=[1], inputs=[0, 2]):
        ...     layer.weight[1].tolist()[0] == 0.0 == layer.weight[1].tolist()[2]
        True
        >>> torch.equal(layer.weight, before)
        True
        """
        unit = self.units(layer)[0]
        if unit.op is not None or unit.part is not None:
            raise UnitError(f"lesion_connections needs a Linear or Conv layer, not the op/part {unit}; "
                            f"lesion the op's values with probe.lesion('{unit}') instead")
        return self._attach(ConnectionLesion(self, unit, unit.resolve(self.model), outputs, inputs))

    def record_stimuli(self, stimuli: Any, units: UnitLike | Sequence[UnitLike], **options):
        """Record ``units`` over a stimulus set in batches; see :func:`insilico.recording.record_stimuli`."""
        from .recording import record_stimuli

        return record_stimuli(self, stimuli, units, **options)

    def remove(self) -> None:
        """Remove everything this probe attached (the user's own hooks stay)."""
        for handle in list(self._handles):
            handle.remove()

    close = remove

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Probe({type(self.model).__name__}, {len(self._handles)} active handle(s))"

    # -- hook bookkeeping ----------------------------------------------------------------
    def _attach(self, handle: Handle) -> Handle:
        try:
            handle._attach()
        except BaseException:
            handle.remove()
            raise
        self._handles.append(handle)
        return handle

    def _site(self, unit: Unit) -> _Site:
        key = unit.site
        if key not in self._sites:
            module = unit.resolve(self.model)
            if unit.part is not None:
                attention.check_parts(unit, module)
            if self._reset_handle is None:
                self._reset_handle = (self.model.register_forward_pre_hook(self._new_pass),
                                      self.model.register_forward_hook(self._end_pass))
            if unit.op is not None or unit.part is not None:
                site = _InnerSite(Unit(unit.module, output=unit.part), self._ops)
                self._sites[key] = site
                site.owner = self._ops.add_site(site.unit, site)
            else:
                self._sites[key] = _Site(key, module)
        return self._sites[key]

    def _release(self, key: str) -> None:
        site = self._sites.get(key)
        if site is not None and not site.edits and not site.taps:
            site.remove()
            del self._sites[key]
        if not self._sites and self._reset_handle is not None:
            for handle in self._reset_handle:
                handle.remove()
            self._reset_handle = None
            self._ops.close()

    def _new_pass(self, module, args) -> None:
        for site in self._sites.values():
            site.calls = 0
        if self._ops.active:
            self._ops.new_pass()

    def _end_pass(self, module, args, output) -> None:
        """Edits are validated where they are written, as units are where they are read."""
        for path, site in self._sites.items():
            for edit in site.edits:
                if site.calls == 0:
                    raise UnitError(f"{edit.label} {edit.unit} can never act: {path!r} was never called in this "
                                    f"forward pass (is it used in the model's forward()?){site.hint()}")
                if edit.steps is not None and max(edit.steps) >= site.calls:
                    raise UnitError(
                        f"{edit.label} {edit.unit} can never act on step(s) {sorted(edit.steps)}: {path!r} was "
                        f"called {site.calls} time(s) per forward pass (steps 0..{site.calls - 1})")

    def _mean_responses(self, units: list[Unit], reference: Any, batch_size: int) -> dict:
        """Mean over ``reference`` of each unit's whole module output, per call step: (T, *sample_shape)."""
        from .recording import batches, stimulus_source

        source = stimulus_source(reference, name="reference", model=self.model)
        wholes = {(u.module, u.output): Unit(u.module, output=u.output) for u in units}
        sums: dict = {}
        with session(self.model):
            for _, batch in batches(source, batch_size, self.device, self.dtype):  # empty: a StimulusError
                with self.record(*wholes.values()) as rec:
                    self.model(batch)
                for key, whole in wholes.items():
                    total = need_tensor(whole, rec._tap(whole).stack(), " for mode='mean'").sum(dim=0)
                    sums[key] = total if key not in sums else sums[key] + total
        return {key: total / len(source) for key, total in sums.items()}


def _refuse_unprobeable(model: nn.Module) -> None:
    """Refuse models whose hooks would not run (compiled) or whose values do not exist (``meta``).

    ``torch.compile`` runs the graph it traced: forward hooks added later are not in it (dynamo does
    not guard on module hooks), so a record would see no call and a lesion would silently not act.
    One pass over the modules and one over the tensors; names are looked up only to refuse.
    """
    for module in model.modules():
        compiled = type(module).__name__ == "OptimizedModule" and "_orig_mod" in module._modules
        if not compiled and module._compiled_call_impl is None:
            continue
        path = next(name for name, m in model.named_modules() if m is module)
        where = f"model.{path}" if path else "model"
        if compiled:
            fix = f"set {where} = {where}._orig_mod" if path else "insilico.Probe(model._orig_mod)"
            raise InsilicoError(
                f"{where} is compiled by torch.compile ({type(module).__name__}): hooks added after compilation do "
                f"not run in its compiled code, so recordings would be empty and lesions would not act. Probe the "
                f"original module instead: {fix} (the same weights, run eagerly), and compile again after the experiment")
        raise InsilicoError(
            f"{where}.compile() was called: hooks added after compilation do not run in its compiled code, so "
            f"recordings would be empty and lesions would not act. Probe a model built without .compile() "
            f"(e.g. a fresh instance with model.load_state_dict(compiled.state_dict())), and compile after")
    if any(t.is_meta for t in model.parameters()) or any(t.is_meta for t in model.buffers()):
        kind, name = next((kind, name) for kind, named in (("parameter", model.named_parameters()),
                                                           ("buffer", model.named_buffers()))
                          for name, t in named if t.is_meta)
        raise InsilicoError(
            f"{kind} {name!r} of {type(model).__name__} is on the meta device: it has a shape but no values "
            f"(a model built under torch.device('meta') or with empty weights), so every recording and map "
            f"would be empty. Load its weights first, e.g. model.to_empty(device='cpu') then "
            f"model.load_state_dict(state, assign=True), and probe the loaded model")
