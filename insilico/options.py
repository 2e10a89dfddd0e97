"""One options vocabulary: the base of every tool's options object, and :class:`Job`, where a run keeps its work.

A tool with many knobs takes ONE options object, a frozen dataclass deriving from :class:`Options`, with one
default and one description per knob; for the common one-line calls its fields are also accepted as keyword
overrides, so ``pgd(model, images, eps=8/255)`` and ``pgd(model, images, options=AttackOptions(eps=8/255))``
are the same call. A keyword that is no field is refused with its close matches (never a silent alias of a
former name), and a value out of range is refused when the object is built.

=================================== =========================================================================
object (all reachable as insilico.X) knobs of
=================================== =========================================================================
``SynthesisOptions``                the synthesis loop, shared by every design tool; a design tool's own knobs
                                    extend it: ``MaximizeOptions``, ``MetamerOptions``,
                                    ``ControversialOptions``, ``PopulationControlOptions`` (and the gallery's
                                    ``VisualizeOptions``)
``AttackOptions``                   the attack of :func:`insilico.pgd` (eps, norm, restarts, ...)
``TuningOptions``                   the method of :func:`insilico.experiments.orientation_tuning`
``GradientOptions``                 integrated gradients and SmoothGrad in :func:`insilico.gradient_map`
``FitOptions``                      the ridge fit of :func:`insilico.encoding.fit_predictor`
:class:`Job`                        the run: ``out=`` of every tool that keeps its work in a folder
=================================== =========================================================================

Run-level settings have one name and one meaning in every tool and on both command lines: ``seed`` (int, or
None for fresh entropy), ``batch_size`` (samples per chunk), ``progress`` (a progress bar; ``--quiet``),
``resume`` (an earlier result to continue) and ``out``: a folder, or a :class:`Job` that also says which
share of the chunks this process computes (``shard``; ``--shard i/n``) and whether to start over
(``overwrite``; ``--force``).

Example
-------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Knobs(Options):
...     steps: int = 10
...     def validate(self):
...         if self.steps < 1:
...             raise InsilicoError(f"steps must be >= 1, not {self.steps}")
...         return self
>>> Knobs.from_kwargs("tool", {}, None, steps=3).steps
3
>>> Knobs(stpes=3)
Traceback (most recent call last):
...
insilico.errors.InsilicoError: Knobs() got an unknown option 'stpes': did you mean 'steps'? The options are Knobs' fields: steps
>>> Job.of("runs/a"), Job.of(Job("runs/a", shard=(1, 4))).shard
(Job(path='runs/a', shard=None, overwrite=False), (1, 4))
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass

from .errors import InsilicoError


def check_names(where: str, kwargs, fields: tuple[str, ...], owner: str) -> None:
    """InsilicoError for a keyword of ``kwargs`` that is none of ``fields`` (of the class ``owner``), with its close
    matches."""
    for name in kwargs:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=3)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise InsilicoError(f"{where} got an unknown option {name!r}: {hint}The options are {owner}' "
                                f"fields: {', '.join(fields)}")


#: Each options class's field names (read on every call of a tool: computed once per class).
_FIELDS: dict[type, tuple[str, ...]] = {}


class Options:
    """Base of the options objects (subclasses are frozen dataclasses): named fields only, checked when built.

    A subclass defines its fields and :meth:`validate` (raise InsilicoError naming the option; return ``self``).
    An unknown keyword is an InsilicoError with close matches (not a bare TypeError), also in
    :meth:`replace` and :meth:`from_kwargs`.
    """

    def __new__(cls, *args, **kwargs):
        check_names(f"{cls.__name__}()", kwargs, cls.fields(), cls.__name__)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        self.validate()  # a bad value is refused when the object is made, not when a tool first uses it

    def validate(self):
        """Check every option's range; returns ``self`` (the base checks nothing)."""
        return self

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The names of the options, in order."""
        names = _FIELDS.get(cls)
        if names is None:
            names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
        return names

    def replace(self, **changes):
        """A validated copy with ``changes`` (field names; an unknown one is refused with close matches)."""
        check_names(f"{type(self).__name__}.replace", changes, self.fields(), type(self).__name__)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_kwargs(cls, tool_name: str, defaults: dict | None = None, options=None, **kwargs):
        """The options of one call of ``tool_name``: ``options`` (default: the class defaults updated with the
        tool's ``defaults``), with the call's keywords on top; validated.

        ``options`` may also be an object of a base class (a plain ``SynthesisOptions`` given to a tool whose
        options extend it): its fields are taken as they are, the tool's own at their class defaults.

        Raises InsilicoError for a keyword that is no field ("maximize() got an unknown option 'stpes': did
        you mean 'steps'? ..."), for an out-of-range value and for an options object of another kind.
        """
        check_names(f"{tool_name}()", kwargs, cls.fields(), cls.__name__)
        if options is None:
            base = cls(**(defaults or {}))
        elif isinstance(options, cls):
            base = options
        elif isinstance(options, Options) and issubclass(cls, type(options)):
            base = cls(**{name: getattr(options, name) for name in options.fields()})
        else:
            kinds = " or ".join(k.__name__ for k in cls.__mro__ if k is not Options and issubclass(k, Options)
                                and dataclasses.is_dataclass(k))
            raise InsilicoError(f"{tool_name}(options=...) takes a {kinds}, not {type(options).__name__}")
        return dataclasses.replace(base, **kwargs) if kwargs else base

    def base(self, kind: type):
        """These options as the base class ``kind`` (e.g. the engine's ``SynthesisOptions``): its fields only."""
        return kind(**{name: getattr(self, name) for name in kind.fields()})


def check_shard(shard) -> tuple[int, int] | None:
    """``(rank, world)`` as two ints with ``0 <= rank < world``, or None; InsilicoError otherwise."""
    if shard is None:
        return None
    try:
        rank, world = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise InsilicoError(f"shard must be (rank, world), two ints, not {shard!r}") from None
    if not 0 <= rank < world:
        raise InsilicoError(f"shard must be (rank, world) with 0 <= rank < world, not {shard}")
    return rank, world


@dataclass(frozen=True)
class Job:
    """Where a run keeps its work: the ``out=`` of every tool that writes chunks and resumes from them.

    Attributes
    ----------
    path : folder
        Each finished chunk is kept there; a rerun into it computes only the missing ones, and a folder of
        another job is refused (:mod:`insilico.identity`).
    shard : (rank, world), optional
        Compute only this rank's share of the chunks (e.g. from a SLURM array index; ``--shard rank/world``).
        Default: the ranks of an initialised ``torch.distributed`` process group (e.g. under ``torchrun``),
        else all.
    overwrite : bool
        Delete the work already in ``path`` and start over (default False; ``--force``).

    A plain folder is ``Job(folder)``: ``out="runs/a"`` and ``out=Job("runs/a")`` are the same call.

    Raises
    ------
    InsilicoError
        ``path`` is not a folder name, or ``shard`` is not ``(rank, world)`` with ``0 <= rank < world``.
    """

    path: str | os.PathLike
    shard: tuple[int, int] | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise InsilicoError(f"Job's path must be a folder (str or path), not {type(self.path).__name__}")
        object.__setattr__(self, "shard", check_shard(self.shard))
        if not isinstance(self.overwrite, bool):
            raise InsilicoError(f"Job's overwrite must be True or False, not {self.overwrite!r}")

    @classmethod
    def of(cls, out) -> Job | None:
        """``out`` as a Job: None stays None, a folder becomes ``Job(folder)``, a Job stays itself."""
        if out is None or isinstance(out, Job):
            return out
        if isinstance(out, (str, os.PathLike)):
            return cls(out)
        raise InsilicoError(f"out must be a folder or an insilico.Job(folder, shard=, overwrite=), not "
                            f"{type(out).__name__}")


__all__ = ["Job", "Options", "check_names", "check_shard"]
