"""The probing layer: record, lesion and stimulate any unit of any ``nn.Module``.

A :class:`Probe` owns every hook insilico puts on a model. Each module gets at
most ONE forward hook, whatever is asked of it; the hook counts the module's
calls within a forward pass (so every call of a recurrent module is a separate
``@step``), applies the active edits (lesions, stimulation) in the order they
were added, and then hands the edited output to the active recorders.

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

import copy
import dataclasses
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from . import ops as _ops
from .errors import InsilicoError, UnitError
from .session import device_of, dtype_of, session
from .survey import Call, Survey
from .units import Unit, UnitLike, describe

REDUCTIONS = ("mean", "max", "center")
LESION_MODES = ("zero", "mean", "constant", "noise")


class Probe:
    """Hooks units of ``model`` to record, lesion and stimulate them.

    Parameters
    ----------
    model : nn.Module
        Any PyTorch model. The probe attaches nothing until asked, and every
        handle it returns removes what it attached.

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
            return [name for name, _ in self.model.named_modules()]
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
               **kwargs) -> Survey:
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

        Example
        -------
        >>> import torch, insilico
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
        >>> s = insilico.Probe(m).survey(torch.rand(1, 1, 5, 5))
        >>> [(c.module, c.shape) for c in s]
        [('0', (2, 3, 3)), ('1', (2, 3, 3)), ('', (2, 3, 3))]
        """
        paths = [name for name, _ in self.model.named_modules()] if modules is None else list(modules)
        survey = Survey(self.model)
        paths = list(dict.fromkeys(paths))
        for path in paths:
            Unit(path).resolve(self.model)
        handle = self._attach(_SiteHandle(self, [_Observer(Unit(path), survey) for path in paths]))
        stop_ops = self._ops.observe(paths, _OpObserver(survey, self.model)) if ops else None
        try:
            with session(self.model):
                self.model(*inputs, **kwargs)
        except Exception as error:  # noqa: BLE001 - re-raised unless the caller asked to keep it
            if strict:
                raise
            survey.error = error
        finally:
            if stop_ops is not None:
                stop_ops()
            handle.remove()
        return survey

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
            Spatial reduction of (N, C, H, W, ...) outputs at record time, to
            save memory; the unit's index may then only pick channels.

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
        taps = {unit.key: _Tap(unit, keep_graph, reduce) for unit in parsed}
        return self._attach(Record(self, list(taps.values()), stop=stop))

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

    def lesion_connections(
        self, layer: UnitLike, outputs: Iterable[int] | None = None, inputs: Iterable[int] | None = None
    ) -> ConnectionLesion:
        """Zero the weights from input channels ``inputs`` to output units ``outputs`` of a conv/linear layer.

        ``None`` means all. The original weights are restored bit-exactly when
        the handle is removed (end of ``with``, also on an exception). Grouped
        convolutions are handled: only existing connections are zeroed.

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
            if unit.part is not None and not _attends(module):
                raise UnitError(f"{unit}: {unit.owner!r} is a {type(module).__name__}; the parts ':heads' and "
                                "':weights' belong to nn.MultiheadAttention modules and modules whose forward "
                                "computes attention (F.scaled_dot_product_attention, or softmax(q @ k.T) @ v)")
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

        source = stimulus_source(reference)
        wholes = {(u.module, u.output): Unit(u.module, output=u.output) for u in units}
        sums: dict = {}
        with session(self.model):
            for _, batch in batches(source, batch_size, self.device, self.dtype):  # empty: a StimulusError
                with self.record(*wholes.values()) as rec:
                    self.model(batch)
                for key, whole in wholes.items():
                    total = rec._tap(whole).stack().sum(dim=0)
                    sums[key] = total if key not in sums else sums[key] + total
        return {key: total / len(source) for key, total in sums.items()}


# ---------------------------------------------------------------------------------------
# Hook sites: one forward hook per module
# ---------------------------------------------------------------------------------------
class StopForward(Exception):
    """Raised by a hook of a ``record(..., stop=True)`` once every recorded unit has run; the pass ends there."""


class _Site:
    """The single forward hook on one module; dispatches each call to edits, then taps."""

    def __init__(self, path: str, module: nn.Module):
        self.path = path
        self.edits: list[_Edit] = []
        self.taps: list = []
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def remove(self) -> None:
        self.handle.remove()

    def hint(self) -> str:
        return ""

    def _hook(self, module, args, output):
        step = self.calls
        self.calls += 1
        if _ops.STATE.watching:  # an op mode is open: our own tensor ops are not the model's
            with _ops.quiet():
                return self.fire(output, step)
        return self.fire(output, step)

    def fire(self, output, step):
        for edit in self.edits:
            if edit.steps is None or step in edit.steps:
                output = edit(output, step)
        for tap in self.taps:
            try:
                tap(output, step)
            except UnitError:  # a wrong address fails at once, with its message
                raise
            except Exception as error:  # noqa: BLE001 - anything else never breaks the user's forward
                tap.error = error
        for tap in self.taps:
            if tap.stop_at == (self.path, step):
                raise StopForward
        return output


class _InnerSite(_Site):
    """The site of an op unit or an attention part: fired by the probe's op watch (:mod:`insilico.ops`).

    ``calls`` is the number of calls of the owning module in which the op ran (its last step + 1).
    Attention parts arrive as ``{part: tensor}``, so taps and edits pick them like a dict output.
    """

    def __init__(self, unit: Unit, watch: _ops.OpWatch):
        self.unit, self.watch = unit, watch
        self.path = unit.site
        self.edits, self.taps, self.calls = [], [], 0
        self.owner: _ops.Owner | None = None

    def fire(self, output, step):
        self.calls = max(self.calls, step + 1)
        return super().fire(output, step)

    def remove(self) -> None:
        self.watch.remove_site(self.unit, self)

    def hint(self) -> str:
        owner = self.owner
        if owner is None or self.unit.part is not None:
            return ""
        seen = owner.ops_seen()
        if not owner.seen:
            return f" ({self.unit.owner!r} itself did not run)"
        if not seen:
            return f" ({self.unit.owner!r} ran no op of its own: its work is done by its children)"
        import difflib

        close = difflib.get_close_matches(self.unit.module, seen, n=5, cutoff=0.5) or seen[:8]
        return (f". Ops of {self.unit.owner!r}'s own forward: {', '.join(repr(c) for c in close)}"
                f"{' ...' if len(seen) > len(close) else ''}; list all with probe.names(example, ops=True)")


def _attends(module: nn.Module) -> bool:
    """Whether a module can have attention parts: nn.MultiheadAttention, or a module written outside
    torch.nn (whether its forward calls F.scaled_dot_product_attention is only known when it runs)."""
    return isinstance(module, nn.MultiheadAttention) or not type(module).__module__.startswith("torch.nn.")


class _Edit:
    """Replace a unit's values by ``replace(selection, step)`` on chosen steps."""

    def __init__(self, unit: Unit, replace: Callable, steps: frozenset | None, label: str):
        self.unit, self.replace, self.steps, self.label = unit, replace, steps, label

    def __call__(self, output, step):
        tensor = self.unit.pick(output)
        if not torch.is_tensor(tensor):
            raise UnitError(f"cannot edit {self.unit}: the module returns {describe(output)}; name a part, e.g. ':0'")
        where = self.unit.where(tensor)
        if self.unit.index is None:
            edited = self.replace(tensor, step)
        else:
            edited = tensor.clone()
            edited[where] = self.replace(tensor[where], step)
        return self.unit.put(output, edited)


class _OpObserver:
    """Logs every op (and attention part) of the watched modules into a :class:`Survey`.

    The ops inside torch.nn's own layers (a Conv2d's ``conv2d``, which is the
    layer's output) stay addressable but are not logged, so listings show the
    ops a model's author wrote.
    """

    def __init__(self, survey: Survey, model: nn.Module):
        self.survey = survey
        self.builtin = {name for name, m in model.named_modules()
                        if name and type(m).__module__.startswith("torch.nn.modules")}

    def __call__(self, site: str, step: int, value):
        if "/" in site and site.split("/", 1)[0] in self.builtin:
            return
        first = value if torch.is_tensor(value) else None
        shape = tuple(first.shape[1:]) if first is not None and first.ndim else (() if first is not None else None)
        self.survey.add(Call(site, step, shape, None if first is None else first.dtype, describe(value),
                             first is not None and first.ndim == 0))


class _Observer:
    """Logs every call of a module into a :class:`Survey` (used by :meth:`Probe.survey`)."""

    stop_at = None
    error = None

    def __init__(self, unit: Unit, survey: Survey):
        self.unit, self.survey = unit, survey

    def __call__(self, output, step):
        value = output if torch.is_tensor(output) else None
        shape = tuple(value.shape[1:]) if value is not None and value.ndim else (() if value is not None else None)
        self.survey.add(Call(self.unit.module, step, shape, None if value is None else value.dtype,
                             describe(output), value is not None and value.ndim == 0))


class _Tap:
    """Keeps a unit's values from every call it is asked for."""

    def __init__(self, unit: Unit, keep_graph: bool, reduce: str | None):
        self.unit, self.keep_graph, self.reduce = unit, keep_graph, reduce
        self.data: dict[int, list] = {}
        self.calls_per_pass = 0
        self.error: Exception | None = None
        self.stop_at: tuple[str, int] | None = None
        self.log: list | None = None  # (site, step) of every call, while the owning record learns where to stop
        self.hint: Callable[[], str] = str  # extra words for "never called" (the ops that did run)

    def __call__(self, output, step):
        self.calls_per_pass = max(self.calls_per_pass, step + 1)
        if self.log is not None:
            self.log.append((self.unit.site, step))
        if self.unit.step is not None and self.unit.step >= 0 and step != self.unit.step:
            return
        value = self.unit.pick(output)
        if torch.is_tensor(value):
            if self.reduce is not None:
                value = _reduce(value, self.reduce, self.unit)
            value = self.unit.select(value)
        self.data.setdefault(step, []).append(_copy(value, self.keep_graph))

    def steps_seen(self) -> str:
        return f"called {self.calls_per_pass} time(s) per forward pass (steps 0..{self.calls_per_pass - 1})"

    def _check_called(self) -> None:
        if self.error is not None:
            raise self.error
        if not self.data and self.calls_per_pass == 0:
            raise UnitError(
                f"{self.unit.site!r} was never called while recording: is it used in the model's forward(), "
                f"and did a forward pass run inside the with block?{self.hint()}"
            )

    def value(self) -> Any:
        """The recorded values, concatenated over forward passes."""
        self._check_called()
        step = self.unit.step
        if step is None:
            if self.calls_per_pass > 1:
                raise UnitError(
                    f"{self.unit.module!r} was {self.steps_seen()}: ask for one call as "
                    f"'{self.unit.replace(step=0)}' (or @-1 for the last), or for all of them with rec.steps(...)"
                )
            step = 0
        if step < 0:
            step += self.calls_per_pass
        if step not in self.data:
            raise UnitError(f"step {self.unit.step} of {self.unit.module!r} never happened: it was {self.steps_seen()}")
        return _concat(self.data[step])

    def stack(self) -> torch.Tensor:
        """Every step's values stacked on axis 1: (N, T, ...)."""
        self._check_called()
        values = [_concat(self.data[s]) for s in sorted(self.data)]
        shapes = {s: tuple(v.shape[1:]) for s, v in zip(sorted(self.data), values)}
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"@{s}: {shape}" for s, shape in shapes.items())
            raise UnitError(
                f"the steps of {self.unit.module!r} have different shapes ({listed}), so they cannot be stacked; "
                "record and read them one at a time, e.g. probe.record("
                + ", ".join(f"'{self.unit.replace(step=s)}'" for s in shapes) + ")")
        return torch.stack(values, dim=1)


# ---------------------------------------------------------------------------------------
# Handles
# ---------------------------------------------------------------------------------------
class Handle:
    """Something a Probe attached. A context manager; ``remove()`` detaches it (idempotent)."""

    def __init__(self, probe: Probe):
        self.probe = probe
        self.removed = False

    def _attach(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _detach(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        try:
            self._detach()
        finally:
            if self in self.probe._handles:
                self.probe._handles.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _SiteHandle(Handle):
    """A handle whose parts (edits or taps) live on module sites."""

    kind = "taps"

    def __init__(self, probe: Probe, parts: list):
        super().__init__(probe)
        self.parts = parts

    def _attach(self) -> None:
        for part in self.parts:
            site = self.probe._site(part.unit)
            getattr(site, self.kind).append(part)
            if isinstance(part, _Tap):
                part.hint = site.hint

    def _detach(self) -> None:
        for part in self.parts:
            site = self.probe._sites.get(part.unit.site)
            if site is not None and part in getattr(site, self.kind):
                getattr(site, self.kind).remove(part)
                self.probe._release(part.unit.site)


class Record(_SiteHandle):
    """Values recorded by :meth:`Probe.record`; index it with a unit address: ``rec["features.3[12]"]``."""

    def __init__(self, probe: Probe, parts: list, stop: bool = False):
        super().__init__(probe, parts)
        self.stop = stop
        self.stop_at: tuple[str, int] | None = None

    def forward(self, *inputs: Any, **kwargs) -> Any:
        """Run the model on ``inputs``; with ``stop=True`` the pass ends after the last recorded call.

        Returns the model's output, or None when the pass was stopped. The
        first pass runs the whole model to learn the call order; if the model
        fails after every recorded unit ran (layers after them that do not take
        this input size), the pass counts as stopped there. Any other error of
        the model reaches the caller unchanged.
        """
        if not self.stop or self.stop_at is not None:
            try:
                return self.probe.model(*inputs, **kwargs)
            except StopForward:
                return None
        log: list = []
        for tap in self.parts:
            tap.log = log
        try:
            output = self.probe.model(*inputs, **kwargs)
        except Exception:
            if not log or not all(tap.data for tap in self.parts):
                raise
            output = None
        finally:
            for tap in self.parts:
                tap.log = None
        self._plan(log)
        return output

    def _plan(self, log: list) -> None:
        counts: dict[str, int] = {}
        for site, step in log:
            counts[site] = max(counts.get(site, 0), step + 1)
        needed = []
        for tap in self.parts:
            total = counts.get(tap.unit.site, 0)
            step = tap.unit.step
            step = total - 1 if step is None else (step if step >= 0 else total + step)
            if (tap.unit.site, step) in log:
                needed.append(log.index((tap.unit.site, step)))
        if needed and "" not in counts:
            self.stop_after(log[max(needed)])

    def stop_after(self, point: tuple[str, int]) -> None:
        """End every pass after call ``point = (site, call index)`` (a module path, an op path or
        ``"attn:heads"``: :attr:`Unit.site`), with no learning pass.

        ``point`` is the ``stop_at`` that an earlier record of the same units
        learned on its first pass (a tool that records again, e.g. each run of
        a synthesis, skips relearning it). Needs ``stop=True``.
        """
        if not self.stop:
            raise InsilicoError("stop_after needs a record made with stop=True")
        point = (str(point[0]), int(point[1]))
        for tap in self.parts:
            tap.stop_at = point
        self.stop_at = point

    def __exit__(self, kind, error, traceback) -> bool:
        self.remove()
        return kind is not None and issubclass(kind, StopForward)

    def _tap(self, spec: UnitLike) -> _Tap:
        unit = Unit.coerce(spec, self.probe.model)
        for tap in self.parts:
            if tap.unit == unit:
                return tap
        raise UnitError(f"{unit} was not recorded; recorded: {', '.join(self.keys())}")

    def __getitem__(self, spec: UnitLike) -> Any:
        return self._tap(spec).value()

    def steps(self, spec: UnitLike) -> torch.Tensor:
        """All calls of a (recurrent) module stacked on axis 1: (N, T, ...)."""
        tap = self._tap(spec)
        if tap.unit.step is not None:
            raise UnitError(f"{tap.unit} names one step; record the address without '@' to get all steps")
        return tap.stack()

    def keys(self) -> list[str]:
        return [str(tap.unit) for tap in self.parts]

    def items(self):
        return [(key, self[key]) for key in self.keys()]

    def __contains__(self, spec) -> bool:
        return any(tap.unit == spec for tap in self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def clear(self) -> None:
        """Forget what was recorded so far (the hooks stay)."""
        for tap in self.parts:
            tap.data.clear()
            tap.calls_per_pass = 0

    def __repr__(self) -> str:
        return f"record {', '.join(self.keys())}"


class Intervention(_SiteHandle):
    """An active lesion or stimulation; removed at the end of ``with`` or by ``remove()``."""

    kind = "edits"

    @property
    def lesioned(self) -> dict[str, torch.Tensor]:
        """For ``fraction=`` lesions: the chosen channel indices per unit (after the first pass)."""
        return {
            str(e.unit): e.replace.chosen for e in self.parts if getattr(e.replace, "chosen", None) is not None
        }

    def __repr__(self) -> str:
        return "; ".join(f"{e.label} {e.unit}" for e in self.parts)


class ConnectionLesion(Handle):
    """Zeroed weights of a conv/linear layer, restored bit-exactly on removal."""

    def __init__(self, probe: Probe, unit: Unit, layer: nn.Module, outputs, inputs):
        super().__init__(probe)
        weight = getattr(layer, "weight", None)
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or weight is None:
            raise InsilicoError(
                f"lesion_connections works on Linear and Conv1d/2d/3d layers; {unit.module!r} is {type(layer).__name__}"
            )
        self.unit, self.weight = unit, weight
        self.mask = _connection_mask(weight, getattr(layer, "groups", 1), outputs, inputs, unit)
        self.saved = None

    def _attach(self) -> None:
        with torch.no_grad():
            self.saved = self.weight[self.mask].clone()
            self.weight[self.mask] = 0

    def _detach(self) -> None:
        if self.saved is not None:
            with torch.no_grad():
                self.weight[self.mask] = self.saved
            self.saved = None

    def __repr__(self) -> str:
        return f"lesion_connections {self.unit} ({int(self.mask.sum())} connections)"


# ---------------------------------------------------------------------------------------
# Replacements used by lesion/stimulate
# ---------------------------------------------------------------------------------------
class _MeanReplacement:
    def __init__(self, unit: Unit, means: torch.Tensor):
        self.unit, self.means = unit, means  # means: (T, *sample_shape)

    def __call__(self, sel, step):
        mean = self.means[min(step, len(self.means) - 1)].unsqueeze(0)
        return self.unit.select(mean).to(sel.dtype).expand_as(sel)


class _NoiseReplacement:
    def __init__(self, mean: float, std: float, seed: int | None):
        self.mean, self.std, self.seed = mean, std, seed
        self.generator = None

    def __call__(self, sel, step):
        if self.generator is None or self.generator.device != sel.device:
            self.generator = torch.Generator(device=sel.device)
            self.generator.manual_seed(self.seed if self.seed is not None else torch.seed())
        noise = torch.randn(sel.shape, generator=self.generator, device=sel.device, dtype=torch.float32)
        return (self.mean + self.std * noise).to(sel.dtype)


class _FractionMask:
    """Apply ``replace`` to a seeded random fraction of the selection's channels only."""

    def __init__(self, replace: Callable, fraction: float, seed: int | None):
        self.replace, self.fraction, self.seed = replace, fraction, seed
        self.chosen = None

    def __call__(self, sel, step):
        if sel.ndim < 2:
            raise UnitError("fraction= needs a selection with a channel axis, e.g. a whole layer or '[0:32]'")
        channels = sel.shape[1]
        if self.chosen is None:
            generator = torch.Generator().manual_seed(self.seed if self.seed is not None else torch.seed())
            order = torch.randperm(channels, generator=generator)
            self.chosen = order[: round(self.fraction * channels)].sort().values
        mask = torch.zeros(channels, dtype=torch.bool)
        mask[self.chosen] = True
        mask = mask.to(sel.device).view(1, channels, *([1] * (sel.ndim - 2)))
        return torch.where(mask, self.replace(sel, step), sel)


class _Drive:
    def __init__(self, add, gain, clamp):
        self.add, self.gain, self.clamp = add, gain, clamp

    def __call__(self, sel, step):
        out = sel
        if self.gain is not None:
            out = out * _like(self.gain, sel)
        if self.add is not None:
            out = out + _like(self.add, sel)
        if isinstance(self.clamp, tuple):
            low, high = self.clamp
            out = out.clamp(min=low, max=high)
        elif self.clamp is not None:
            out = torch.broadcast_to(_like(self.clamp, sel), sel.shape).clone()
        return out

    def __str__(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in (("add", self.add), ("gain", self.gain), ("clamp", self.clamp))]
        return ", ".join(p for p, v in zip(parts, (self.add, self.gain, self.clamp)) if v is not None)


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------
def _steps(unit: Unit, steps) -> frozenset | None:
    if steps is not None and unit.step is not None:
        raise UnitError(f"{unit} already names step {unit.step}; drop steps= or the '@'")
    chosen = [unit.step] if unit.step is not None else ([steps] if isinstance(steps, int) else steps)
    if chosen is None:
        return None
    if any(s < 0 for s in chosen):
        raise UnitError(f"lesion/stimulate need steps counted from 0 (the number of calls is not known in advance): {unit}")
    return frozenset(int(s) for s in chosen)


def _like(value, ref: torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(value, device=ref.device, dtype=ref.dtype)
    try:
        torch.broadcast_shapes(tensor.shape, ref.shape)
    except RuntimeError:
        raise InsilicoError(
            f"a pattern of shape {tuple(tensor.shape)} cannot be broadcast over the selection of shape "
            f"{tuple(ref.shape[1:])} (per sample) / {tuple(ref.shape)} (batch)"
        ) from None
    return tensor


def _short(value) -> str:
    return f"Tensor{list(value.shape)}" if torch.is_tensor(value) else repr(value)


def _copy(value: Any, keep_graph: bool) -> Any:
    """A copy of every tensor in ``value`` (nested containers, named tuples, dataclasses, objects keep their type)."""
    if torch.is_tensor(value):
        return value.clone() if keep_graph else value.detach().clone()
    if isinstance(value, dict):
        copied = [(k, _copy(v, keep_graph)) for k, v in value.items()]
        try:
            return type(value)(copied)
        except TypeError:
            return dict(copied)
    if isinstance(value, (list, tuple)):
        items = [_copy(v, keep_graph) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _copy(getattr(value, f.name), keep_graph) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields)
    if hasattr(value, "__dict__") and not isinstance(value, (nn.Module, type)) and _holds_tensor(vars(value)):
        clone = copy.copy(value)
        for name, item in vars(value).items():
            setattr(clone, name, _copy(item, keep_graph))
        return clone
    return value


def _holds_tensor(value: Any) -> bool:
    if torch.is_tensor(value):
        return True
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    return dataclasses.is_dataclass(value) or (hasattr(value, "__dict__") and _holds_tensor(vars(value)))


def _concat(values: list) -> Any:
    first = values[0]
    if len(values) == 1:
        return first
    if torch.is_tensor(first):
        return torch.cat(values) if first.ndim else torch.stack(values)
    if isinstance(first, dict):
        return {k: _concat([v[k] for v in values]) for k in first}
    if isinstance(first, (list, tuple)):
        items = [_concat([v[i] for v in values]) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    return values


def _reduce(tensor: torch.Tensor, how: str, unit: Unit) -> torch.Tensor:
    if tensor.ndim < 3:
        raise UnitError(f"reduce={how!r} needs (N, C, H, W)-like outputs; {unit} has shape {tuple(tensor.shape)}")
    flat = tensor.flatten(2)
    if how == "mean":
        return flat.mean(dim=2)
    if how == "max":
        return flat.amax(dim=2)
    center = tuple(s // 2 for s in tensor.shape[2:])
    return tensor[(slice(None), slice(None)) + center]


def _connection_mask(weight, groups, outputs, inputs, unit) -> torch.Tensor:
    n_out, in_per_group = weight.shape[:2]
    n_in = in_per_group * groups
    outs = torch.arange(n_out) if outputs is None else torch.as_tensor(list(outputs), dtype=torch.long)
    ins = torch.arange(n_in) if inputs is None else torch.as_tensor(list(inputs), dtype=torch.long)
    for name, index, size in (("outputs", outs, n_out), ("inputs", ins, n_in)):
        if len(index) and (index.min() < -size or index.max() >= size):
            raise UnitError(f"{name} of {unit} must lie in [0, {size}); got {index.tolist()}")
    outs, ins = outs % n_out, ins % n_in
    o, i = torch.meshgrid(outs, ins, indexing="ij")
    connected = (o // (n_out // groups)) == (i // in_per_group)
    mask = torch.zeros(n_out, in_per_group, dtype=torch.bool)
    mask[o[connected], i[connected] % in_per_group] = True
    return mask.to(weight.device)

