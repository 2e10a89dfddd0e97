"""The tool registry: every tool of insilico, registered where it is defined.

A *tool* runs a user's model and keeps the tool contract (every hook through the Probe, the model's
modes and BatchNorm statistics back, one image gate, float64 in / float64 out, results that save;
see the README). Each tool carries one line above its definition, ``@register_tool(kind, ...)``, and
that one registration makes it known to everything that lists tools:

- the contract test (``tests/contract/test_contract.py``) runs every promise over every registered tool, and
  its completeness test fails when a registered tool has no tiny contract runner
  (``tests/contract_tools.py``) or when a public function that runs a model is not registered;
- ``insilico tools`` lists them (name, kind, flags, first docstring line);
- ``insilico.<name>`` exports every ``attribution`` and ``design`` tool lazily, ``insilico.experiments``
  and ``insilico.attribution`` export their tools (with their modules' ``*Result`` classes), and the tool
  packages' docstrings end with the table of their tools: all read from the registrations by
  :func:`discover`, which parses the source (``ast``) instead of importing it, so ``import insilico``
  stays light (no torch, no tool) and no list of tools is written twice.

A :class:`Tool` record holds the callable's import path as a string (``"module:qualname"``), so a
record is cheap and :func:`tools` is the one place that imports every module to collect them;
:func:`discover` builds the same records from the source (``tests/contract/test_registry.py`` checks that the two
agree), which is why the options of ``@register_tool(...)`` are literals.
Flags the signature already says are read from it, not declared twice: ``resumes`` (an ``out=``
folder), ``random`` (``seed=``), ``two_models`` (``models``). The others are promises the tool's author
declares: ``takes_images`` (the image gate and the empty-batch refusal apply), ``saves`` (its result
saves and loads), ``per_sample`` (a sample's result does not depend on its batch companions),
``follows_dtype`` (a float64 model gives float64 images / maps / responses).

Recipe: adding a tool = one module + one registration
-----------------------------------------------------
1. Write the function in the module of its concept (``insilico/experiments/mean_response.py``). Pass the
   user's images through the one image gate, :func:`insilico.pixels.check_images` (shape, dtype, range,
   NaN, empty batch: the error names the argument and the fix); run the model inside
   :func:`insilico.session.session` (eval mode, every flag restored; ``session.inputs`` puts the images
   on the model's device and dtype) and read units through one :class:`~insilico.probe.Probe`. Import
   from the layers below yours only (``from ..probe import Probe``, not ``insilico.Probe``: the rows
   are in :mod:`insilico.layering`). The first line of the docstring says what the tool does, and cites
   its source paper where it has one: it is the tool's row in ``insilico tools`` and in its package's
   table.
2. Put ``@register_tool("experiment", takes_images=True, saves=False, follows_dtype=False)`` above it
   (literal options; ``follows_dtype`` is True unless the result is not a tensor in the model's dtype,
   like this float). That is all the library needs: the exports (``insilico.<name>`` for attribution
   and design tools, the package's ``__all__`` for experiments and attribution) and the tables follow.
3. Add a tiny contract runner (``run_<name>`` and its ``RUNNERS`` entry, with ``out=`` the result's
   per-sample main tensor where it has one) to ``tests/contract_tools.py``, then run
   ``tests/contract/test_registry.py``, ``tests/contract/test_contract.py`` and ``tests/contract/test_layering.py``: they fail,
   naming what is missing, until the tool keeps every promise it declares.

The example registers into a scratch :class:`Registry` (the library's is :data:`TOOLS`):

>>> import torch
>>> from insilico.pixels import check_images
>>> from insilico.probe import Probe
>>> from insilico.registry import Registry
>>> from insilico.session import session
>>> scratch = Registry()
>>> @scratch.register("experiment", takes_images=True, saves=False, follows_dtype=False)
... def mean_response(model, stimuli, unit):
...     '''The mean response of ``unit`` over ``stimuli`` (N, C, H, W) in [0, 1]: one float.'''
...     stimuli = check_images(stimuli, name="stimuli")
...     with session(model) as s, Probe(model).record(unit) as rec:
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

The library's own registrations, read from the source without importing a tool module:

>>> from insilico.registry import discover
>>> tool = discover("insilico.experiments")["microstimulation"]
>>> tool.target, tool.kind, tool.per_sample
('insilico.experiments.microstimulation:microstimulation', 'experiment', True)
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import pathlib
import pkgutil
import re
from typing import Callable, Iterator

from .errors import InsilicoError

#: The kinds of tool, in listing order, and what each does.
KINDS = {
    "probe": "record, lesion and stimulate units through a Probe",
    "attribution": "what in an image drives a unit (gradient maps, exemplars)",
    "design": "images optimised for a goal on the synthesis engine",
    "experiment": "ready-made in-silico experiments (tuning, receptive fields, lesions, ...)",
    "behaviour": "a model's decisions as an observer's (confusions, psychometric curves, reaction times)",
    "rsa": "representational similarity analysis of a model",
    "encoding": "encoding models of neural data from a model's features",
    "gallery": "the browsable static site of a model",
}

#: One name per option across tools: the name -> the other spellings it replaces (issue 24, "options drift").
#: ``tests/contract/test_registry.py`` lists the registered tools that still use another spelling.
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


def _read_flags(parameters) -> dict[str, bool]:
    """The flags a tool's parameter names say (one rule for the registration and for :func:`discover`)."""
    return {"resumes": "out" in parameters, "random": "seed" in parameters, "two_models": "models" in parameters}


def _summary(doc: str | None) -> str:
    """The first line of a (cleaned) docstring, or ``""``."""
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


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
            tool = Tool(name=name or func.__name__, target=f"{func.__module__}:{func.__qualname__}", kind=kind,
                        takes_images=takes_images, saves=saves, per_sample=per_sample, follows_dtype=follows_dtype,
                        **_read_flags(inspect.signature(func).parameters), summary=_summary(inspect.getdoc(func)))
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
    """The registered tools as a text table (name, kind, flags, summary): what ``insilico tools`` prints.

    Read from the source (:func:`discover`), so the listing imports no tool and no torch."""
    flags = ("takes_images", "saves", "per_sample", "resumes", "random", "two_models")
    rows = [("name", "kind", "promises", "summary")]
    rows += [(t.name, t.kind, ",".join(f for f in flags if getattr(t, f)), _plain(t.summary))
             for t in discover(kind=kind).values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(" ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths)) + " " + r[3] for r in rows)


def _plain(text: str) -> str:
    """``text`` without reST markup: ``code`` -> code, :role:`~a.b.C` -> C, :role:`a.b` -> a.b."""
    text = re.sub(r":[\w:.-]+:`~([^`]*\.)?([^`]*)`", r"\2", text)
    return re.sub(r":[\w:.-]+:`([^`]*)`|``([^`]*)``", lambda m: m.group(1) or m.group(2) or "", text)


#: The options of ``@register_tool(...)`` that :func:`discover` reads (each a literal in the source).
_DECLARED = ("name", "takes_images", "saves", "per_sample", "follows_dtype")


def _literal(node: ast.expr, where: str, what: str):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise InsilicoError(f"{where}: the {what} of @register_tool is not a literal; write it as a plain string or "
                            f"True/False, so that the registry can read it without importing the module") from None


def _static_tool(func: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str, module: str,
                 where: str) -> Tool | None:
    """The :class:`Tool` that ``@register_tool(...)`` above ``func`` registers, read from the source; or None."""
    calls = [d for d in func.decorator_list if isinstance(d, ast.Call)
             and getattr(d.func, "id", getattr(d.func, "attr", None)) == "register_tool"]
    if not calls:
        return None
    call, where = calls[0], f"{where}:{calls[0].lineno}"
    options = {k.arg: k.value for k in call.keywords}
    if call.args:
        options["kind"] = call.args[0]
    unknown = set(options) - {"kind", *_DECLARED}
    if unknown or "kind" not in options or len(call.args) > 1:
        raise InsilicoError(f"{where}: write @register_tool(kind, {', '.join(f'{o}=...' for o in _DECLARED)}) "
                            f"with literals (found {ast.unparse(call)})")
    declared = {k: _literal(v, where, k) for k, v in options.items()}
    kind = declared.pop("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InsilicoError(f"{where}: kind {kind!r} is not one of {sorted(KINDS)}")
    args = func.args
    params = [a.arg for a in (*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg) if a]
    return Tool(name=declared.pop("name", None) or func.name, target=f"{module}:{qualname}", kind=kind,
                **declared, **_read_flags(params), summary=_summary(ast.get_docstring(func)))


def _walk(body: list[ast.stmt], prefix: str, module: str, where: str) -> Iterator[Tool]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield from _walk(node.body, f"{prefix}{node.name}.", module, where)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            tool = _static_tool(node, prefix + node.name, module, where)
            if tool is not None:
                yield tool
            yield from _walk(node.body, f"{prefix}{node.name}.<locals>.", module, where)


def _one_per_name(found: list[Tool]) -> None:
    """Refuse two callables under one name (importing both fails too, in :meth:`Registry.register`)."""
    names = [t.name for t in found]
    twice = sorted({t.target for t in found if names.count(t.name) > 1})
    if twice:
        raise InsilicoError(f"discover: {twice} are registered under one name; register one of them under "
                            f"another name (name=...)")


@functools.lru_cache(maxsize=None)
def _scan() -> tuple[Tool, ...]:
    """Every registration in insilico's source, parsed once per process (one parse serves every package)."""
    root = pathlib.Path(__file__).resolve().parent  # the insilico package
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        inside_packages = all((root.parent / p / "__init__.py").is_file() for p in relative.parents[:-1])
        if path.name == "__main__.py" or not inside_packages:  # what pkgutil.walk_packages does not import either
            continue
        source = path.read_text(encoding="utf-8")
        if "@register_tool" not in source:  # cheap: most modules register nothing (the parse is the cost)
            continue
        module = ".".join(relative.parts[:-1] if path.name == "__init__.py" else relative.parts)
        where = str(path.relative_to(root.parent))
        found.extend(_walk(ast.parse(source, where).body, "", module, where))
    _one_per_name(found)
    if not found:  # a silent empty listing would hide every tool: an install without its .py files
        raise InsilicoError(f"discover: no @register_tool found in the source under {root}; the registry reads "
                            f"the registrations from the .py files: install insilico with its source")
    return tuple(found)


def discover(package: str = "insilico", kind: str | None = None) -> dict[str, Tool]:
    """The tools registered in ``package``'s modules, read from their source without importing them.

    The static twin of :func:`tools`: it parses each module that mentions ``register_tool`` (``ast``),
    finds the functions and methods decorated ``@register_tool(...)`` and builds the same :class:`Tool`
    records the registrations build, so ``import insilico`` can export the tools lazily and the tool
    packages can list them without importing torch. The source is parsed once per process, on the first
    call (about 0.1 s), so there is no generated list that could go stale.
    ``tests/contract/test_registry.py`` checks that it equals :func:`tools`.

    Parameters
    ----------
    package : str
        ``"insilico"`` or one of its packages (``"insilico.design"``).
    kind : str, optional
        Only the tools of this kind (one of :data:`KINDS`).

    Returns
    -------
    dict[str, Tool]
        By name, in listing order (kind, then name).

    Raises
    ------
    InsilicoError
        ``package`` is not a package of insilico, ``kind`` not one of :data:`KINDS`, or a
        ``@register_tool(...)`` has an option that is not a literal (its file and line are named).

    >>> from insilico.registry import discover
    >>> discover("insilico.design")["pgd"].target
    'insilico.design.adversarial:pgd'
    >>> sorted(discover(kind="attribution"))
    ['attention_rollout', 'gradient_map', 'project_exemplars', 'top_exemplars']
    """
    if kind is not None and kind not in KINDS:
        raise InsilicoError(f"discover: kind {kind!r} is not one of {sorted(KINDS)}")
    root = pathlib.Path(__file__).resolve().parent
    if package.split(".")[0] != root.name or not root.joinpath(*package.split(".")[1:], "__init__.py").is_file():
        raise InsilicoError(f"discover: {package!r} is not a package of insilico (e.g. 'insilico.design')")
    order, inside = list(KINDS), package + "."
    found = sorted(_scan(), key=lambda t: (order.index(t.kind), t.name))
    return {t.name: t for t in found if (kind is None or t.kind == kind)
            and (package == root.name or t.module == package or t.module.startswith(inside))}


def tool_table(package: str) -> str:
    """The table of ``package``'s registered tools (reST, from :func:`discover`): what its docstring shows.

    A tool package ends its docstring with ``__doc__ += tool_table(__name__)``, so a new tool is listed
    there without editing a table. Columns: the tool, its module (relative to ``package``), the first
    line of its docstring (where the tool's source paper belongs).

    >>> from insilico.registry import tool_table
    >>> lines = tool_table("insilico.attribution").splitlines()
    >>> lines[:2], lines[3].split()
    (['Tools', '-----'], ['tool', 'module', 'what', 'it', 'does'])
    >>> [line.split()[:2] for line in lines[5:-1]]  # doctest: +NORMALIZE_WHITESPACE
    [[':func:`attention_rollout`', 'rollout'], [':func:`gradient_map`', 'gradients'],
     [':func:`project_exemplars`', 'exemplars'], [':func:`top_exemplars`', 'exemplars']]
    """
    rows = [(f":func:`{t.name}`", t.module[len(package) + 1:], t.summary) for t in discover(package).values()]
    if not rows:
        raise InsilicoError(f"tool_table: {package} registers no tool (@register_tool(kind, ...) above each)")
    rows.insert(0, ("tool", "module", "what it does"))
    widths = [max(len(r[i]) for r in rows) for i in range(2)] + [60]
    border = "  ".join("=" * w for w in widths)
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(["Tools", "-----", border, lines[0], border, *lines[1:], border, ""])


def export(package: str, namespace: dict) -> list[str]:
    """Import ``package``'s registered tools into ``namespace``, each with its module's public ``*Result`` classes.

    What a tool package's ``__init__`` does instead of hand-written import lines
    (``__all__ += export(__name__, globals())``), so a new tool needs no line there.

    Returns
    -------
    list[str]
        The names put into ``namespace``, for its ``__all__`` (tools in listing order, each followed by its
        module's results, each name once).

    Raises
    ------
    InsilicoError
        ``package`` is not a package of insilico.

    >>> from insilico.registry import export
    >>> space = {}
    >>> export("insilico.attribution", space)
    ['attention_rollout', 'gradient_map', 'project_exemplars', 'top_exemplars']
    >>> space["gradient_map"].__module__
    'insilico.attribution.gradients'
    """
    names: list[str] = []
    for tool in discover(package).values():
        module = importlib.import_module(tool.module)
        found = {tool.name: tool.load()}
        found.update({name: obj for name, obj in vars(module).items() if name.endswith("Result") and
                      not name.startswith("_") and inspect.isclass(obj) and obj.__module__ == tool.module})
        namespace.update(found)
        names.extend(n for n in found if n not in names)
    return names


__all__ = ["KINDS", "TOP_LEVEL_KINDS", "TOOLS", "VOCABULARY", "Registry", "Tool", "describe", "discover", "export", "register_tool", "tool_table",
           "tools"]
