"""The tool registry: every tool of insilico, registered where it is defined.

A *tool* runs a user's model and keeps the tool contract (every hook through the Probe, the model's
modes and BatchNorm statistics back, one image gate, float64 in / float64 out, results that save;
see the README). Each tool carries one line above its definition, ``@register_tool(kind, ...)``, and
that one registration makes it known to everything that lists tools:

- the contract test (``tests/test_contract.py``) runs every promise over every registered tool, and
  its completeness test fails when a registered tool has no tiny contract runner
  (``tests/contract_tools.py``) or when a public function that runs a model is not registered;
- ``insilico tools`` lists them (name, kind, flags, first docstring line);
- the tool tables of the package docstrings (``insilico.design``, ``insilico.experiments``,
  ``insilico.attribution``) are checked against the registry (``tests/test_registry.py``);
- ``insilico.<name>`` exports the ``attribution`` and ``design`` tools lazily: the light table in
  ``insilico/__init__.py`` (names -> modules, so ``import insilico`` imports no tool) is checked against
  the registrations.

A :class:`Tool` record holds the callable's import path as a string (``"module:qualname"``), so a
record is cheap and :func:`tools` is the one place that imports every module to collect them.
Flags the signature already says are read from it, not declared twice: ``resumes`` (an ``out=``
folder), ``random`` (``seed=``), ``two_models`` (``models``). The others are promises the tool's author
declares: ``takes_images`` (the image gate and the empty-batch refusal apply), ``saves`` (its result
saves and loads), ``per_sample`` (a sample's result does not depend on its batch companions),
``follows_dtype`` (a float64 model gives float64 images / maps / responses).

Recipe: adding a tool = one module + one registration
-----------------------------------------------------
1. Write the function in the module of its concept (``insilico/experiments/mean_response.py``);
   run the model inside :func:`insilico.session.session`, through one :class:`~insilico.Probe`, and
   pass images through ``session.inputs`` (the image gate).
2. Put ``@register_tool("experiment", takes_images=True, saves=False)`` above it.
3. Run ``tests/test_registry.py`` and ``tests/test_contract.py``: they say what else the tool needs and
   where (a tiny contract runner in ``tests/contract_tools.py``; for an ``attribution``/``design`` tool
   one line in ``insilico/__init__.py``'s lazy table; its row in the package docstring's table).

The example registers into a scratch :class:`Registry` (the library's is :data:`TOOLS`):

>>> import torch
>>> import insilico
>>> from insilico.registry import Registry
>>> from insilico.session import session
>>> scratch = Registry()
>>> @scratch.register("experiment", takes_images=True, saves=False)
... def mean_response(model, stimuli, unit):
...     '''The mean response of ``unit`` over ``stimuli`` (N, C, H, W) in [0, 1]: one float.'''
...     with session(model) as s, insilico.Probe(model).record(unit) as rec:
...         model(s.inputs(stimuli))
...     return float(rec[unit].mean())
>>> tool = scratch["mean_response"]
>>> tool.kind, tool.takes_images, tool.random, tool.resumes
('experiment', True, False, False)
>>> tool.summary
'The mean response of ``unit`` over ``stimuli`` (N, C, H, W) in [0, 1]: one float.'
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
>>> mean_response(net, torch.zeros(2, 1, 5, 5), "1") >= 0  # the function itself, unchanged
True
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Callable, Iterator

from .errors import InsilicoError

#: The kinds of tool, in listing order, and what each does.
KINDS = {
    "probe": "record, lesion and stimulate units through a Probe",
    "attribution": "what in an image drives a unit (gradient maps, exemplars)",
    "design": "images optimised for a goal on the synthesis engine",
    "experiment": "ready-made in-silico experiments (tuning, receptive fields, lesions, ...)",
    "rsa": "representational similarity analysis of a model",
    "encoding": "encoding models of neural data from a model's features",
    "gallery": "the browsable static site of a model",
}

#: One name per option across tools: the name -> the other spellings it replaces (issue 24, "options drift").
#: ``tests/test_registry.py`` lists the registered tools that still use another spelling.
VOCABULARY = {
    "size": ("input_size", "image_size", "shape"),
    "progress": ("quiet", "verbose", "show_progress"),
    "seed": ("random_state", "rng", "generator"),
    "batch_size": ("batchsize", "chunk_size"),
    "out": ("out_dir", "output_dir", "folder"),
}

#: The kinds whose tools ``import insilico`` exports lazily as ``insilico.<name>``.
TOP_LEVEL_KINDS = ("attribution", "design")


@dataclasses.dataclass(frozen=True)
class Tool:
    """One registered tool.

    Attributes
    ----------
    name : str
        Its public name (the function's name unless registered under another).
    target : str
        ``"module:qualname"``, e.g. ``"insilico.design.maximize:maximize"``; :meth:`load` imports it.
    kind : str
        One of :data:`KINDS`.
    takes_images, saves, per_sample, follows_dtype : bool
        The contract promises its author declares (see the module docstring).
    resumes, random, two_models : bool
        Read from the signature: an ``out`` parameter, a ``seed`` parameter, a ``models`` parameter.
    summary : str
        The first line of its docstring.
    """

    name: str
    target: str
    kind: str
    takes_images: bool = True
    saves: bool = True
    per_sample: bool = False
    follows_dtype: bool = True
    resumes: bool = False
    random: bool = False
    two_models: bool = False
    summary: str = ""

    @property
    def module(self) -> str:
        """The module that defines (and registers) the tool."""
        return self.target.partition(":")[0]

    def load(self) -> Callable:
        """The callable itself (imports its module)."""
        module, _, qualname = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj


class Registry(dict):
    """``name -> Tool``, filled by :meth:`register` where each tool is defined."""

    def register(self, kind: str, *, name: str | None = None, takes_images: bool = True, saves: bool = True,
                 per_sample: bool = False, follows_dtype: bool = True) -> Callable[[Callable], Callable]:
        """A decorator that registers the function (or method) it decorates and returns it unchanged.

        Raises
        ------
        InsilicoError
            ``kind`` is not one of :data:`KINDS`, or another callable is registered under the same name.
        """
        if kind not in KINDS:
            raise InsilicoError(f"register_tool: kind {kind!r} is not one of {sorted(KINDS)}; pick one, or add "
                                f"the new kind to insilico.registry.KINDS with a line that says what it covers")

        def decorate(func: Callable) -> Callable:
            params = inspect.signature(func).parameters
            doc = inspect.getdoc(func) or ""
            tool = Tool(name=name or func.__name__, target=f"{func.__module__}:{func.__qualname__}", kind=kind,
                        takes_images=takes_images, saves=saves, per_sample=per_sample, follows_dtype=follows_dtype,
                        resumes="out" in params, random="seed" in params, two_models="models" in params,
                        summary=doc.strip().splitlines()[0] if doc.strip() else "")
            old = self.get(tool.name)
            if old is not None and old.target != tool.target:
                raise InsilicoError(f"register_tool: the name {tool.name!r} of {tool.target} is already the tool "
                                    f"{old.target}; register one of them under another name (name=...)")
            self[tool.name] = tool  # the same target again (a module reloaded) replaces its record
            return func

        return decorate


#: The library's tools, filled as their modules are imported; :func:`tools` imports them all.
TOOLS = Registry()
#: ``@register_tool(kind, ...)``: :meth:`Registry.register` of :data:`TOOLS`.
register_tool = TOOLS.register


def _modules(package: str = "insilico") -> Iterator[str]:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if not info.name.rpartition(".")[2].startswith("__"):  # __main__ runs the command line
            yield info.name


def tools(kind: str | None = None) -> dict[str, Tool]:
    """Every registered tool (of ``kind``, if given), by name, in listing order (kind, then name).

    Imports every module of insilico once (about 2 s), so that each registration has run.

    Raises
    ------
    InsilicoError
        ``kind`` is not one of :data:`KINDS`, or a module of insilico fails to import (its tools would be
        missing from the listing).

    >>> from insilico.registry import tools
    >>> tools("design")["maximize"].target
    'insilico.design.maximize:maximize'
    """
    if kind is not None and kind not in KINDS:
        raise InsilicoError(f"tools: kind {kind!r} is not one of {sorted(KINDS)}")
    for module in _modules():
        try:
            importlib.import_module(module)
        except ImportError as error:  # a tool there would be missing from every listing: say so, never skip it
            raise InsilicoError(f"tools: importing {module} failed ({error}); every module of insilico must import "
                                f"for the registry to be complete (install what it needs)") from error
    order = list(KINDS)
    found = sorted(TOOLS.values(), key=lambda t: (order.index(t.kind), t.name))
    return {t.name: t for t in found if kind is None or t.kind == kind}


def describe(kind: str | None = None) -> str:
    """The registered tools as a text table (name, kind, flags, summary): what ``insilico tools`` prints."""
    flags = ("takes_images", "saves", "per_sample", "resumes", "random", "two_models")
    rows = [(t.name, t.kind, ",".join(f for f in flags if getattr(t, f)), t.summary) for t in tools(kind).values()]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    return "\n".join(" ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths)) + " " + r[3] for r in rows)


__all__ = ["KINDS", "TOP_LEVEL_KINDS", "TOOLS", "VOCABULARY", "Registry", "Tool", "describe", "register_tool", "tools"]
