"""The tool registry (insilico/registry.py) tests itself: every tool is registered, every registered tool
is run by the contract test, and every list of tools (the lazy exports, the package docstrings' tables,
``insilico tools``) says exactly what the registrations say."""
from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import warnings

import pytest

import insilico
from contract_tools import RUNNERS, TOOLS
from insilico import InsilicoError
from insilico.registry import KINDS, TOP_LEVEL_KINDS, Registry, discover, tools

REGISTERED = tools()

#: Public functions that take a network but are not tools, by public name (a helper may move between modules),
#: each with the reason. A function that runs a model and is in none of these is a tool someone forgot to register.
NOT_TOOLS = {
    "session": "the plumbing every tool runs its model in, not a tool",
    "predict": "a batched argmax helper of pgd/fgsm (AdversarialResult.check)",
    "record": "metamer_validity's batched recording helper of the validity report (Probe.record is the tool)",
    "validity": "the report on a MetamerResult (MetamerResult.validity())",
    "controllability": "population_control then its check, one number",
    "after_nonlinearity": "an address rule (the unit after its nonlinearity)",
    "layer_units": "an address rule (the layers model_rdms records by default)",
    "compare_all": "its models are model RDMs, not networks",
    "bootstrap": "its models are model RDMs, not networks",
    "discover_layers": "an address rule (the layers a gallery shows)",
}
#: Namespaces whose public callables are checked: the package's own, and each design module (the design
#: package re-exports nothing: its modules are named like their tools).
NAMESPACES = ["insilico", "insilico.experiments", "insilico.attribution", "insilico.rsa", "insilico.encoding",
              "insilico.gallery", "insilico.encoding.predictor"]
NETWORK_PARAMETERS = {"model", "models", "predictor", "net", "network"}


def _design_modules():
    import pkgutil

    import insilico.design as design

    return [m.name for m in pkgutil.iter_modules(design.__path__, "insilico.design.")]


def _public_functions(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if inspect.isfunction(obj) and obj.__module__.startswith("insilico"):
            yield f"{obj.__module__}:{obj.__qualname__}", obj


def test_every_registered_tool_has_a_contract_runner_and_every_runner_a_tool():
    missing = sorted(set(REGISTERED) - set(RUNNERS))
    assert not missing, (f"registered tools with no contract runner: {missing}; add a tiny run function and a "
                         f"RUNNERS entry in tests/contract_tools.py")
    stale = sorted(set(RUNNERS) - set(REGISTERED))
    assert not stale, f"contract runners of tools that are not registered: {stale} (@register_tool where defined)"
    assert list(TOOLS) == list(REGISTERED)


def test_every_public_function_that_runs_a_network_is_a_registered_tool():
    registered = {t.target for t in REGISTERED.values()}
    unregistered = {}
    for module in NAMESPACES + _design_modules():
        for target, func in _public_functions(module):
            params = set(inspect.signature(func).parameters)
            if params & NETWORK_PARAMETERS and target not in registered and func.__name__ not in NOT_TOOLS:
                unregistered[target] = module
    assert not unregistered, (f"public functions that take a network but are not registered tools: {unregistered}; "
                              f"put @register_tool(kind, ...) above each (insilico/registry.py), or list it in "
                              f"NOT_TOOLS here with the reason")


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_a_record_points_at_its_callable_and_its_flags_match_the_signature(name):
    tool = REGISTERED[name]
    func = tool.load()
    assert callable(func) and f"{func.__module__}:{func.__qualname__}" == tool.target
    params = inspect.signature(func).parameters
    assert (tool.resumes, tool.random, tool.two_models) == ("out" in params, "seed" in params, "models" in params)
    assert tool.kind in KINDS and tool.summary, f"{name}: a kind of KINDS and a docstring whose first line says what"


def test_the_static_discovery_reads_exactly_the_registrations():
    """discover() (the source, parsed) and tools() (the modules, imported) give the same records in one order."""
    static = discover()
    assert list(static) == list(REGISTERED)
    differ = {n: (static[n], REGISTERED[n]) for n in REGISTERED if static[n] != REGISTERED[n]}
    assert not differ, f"the source says one thing, the registration another: {differ}"
    for package in ("insilico.design", "insilico.experiments", "insilico.attribution", "insilico.rsa"):
        assert discover(package) == {n: t for n, t in REGISTERED.items() if t.module.startswith(package + ".")}


SCRATCH_SOURCE = '''
@register_tool("experiment", takes_images=False, saves=False)
def mean_response(model, stimuli, unit, *, seed=0, out=None):
    """The mean response of ``unit``.

    More text.
    """


class Kit:
    @register_tool("probe", name="kit_record", per_sample=True)
    def record(self, *units, **options):
        """Record."""

    def helper(self, model):
        @register_tool("design", follows_dtype=False)
        def inner(models, images):
            """Inner (registered when helper runs)."""
        return inner


def plain(model):
    """Not a tool."""
'''


def test_discovery_reads_a_new_module_as_its_registrations_register_it():
    import ast
    import types

    from insilico.registry import _walk

    scratch, module = Registry(), types.ModuleType("scratch_tools")
    module.register_tool = scratch.register
    exec(compile(SCRATCH_SOURCE, "scratch_tools.py", "exec"), vars(module))
    module.Kit().helper(None)
    static = list(_walk(ast.parse(SCRATCH_SOURCE).body, "", "scratch_tools", "scratch_tools.py"))
    assert {t.name: t for t in static} == dict(scratch)
    assert [t.name for t in static] == ["mean_response", "kit_record", "inner"]
    assert scratch["kit_record"].target == "scratch_tools:Kit.record" and scratch["inner"].two_models
    assert scratch["mean_response"].summary == "The mean response of ``unit``."


@pytest.mark.parametrize("decorator, message", [
    ("@register_tool(KIND)", r"scratch\.py:2: the kind of @register_tool is not a literal"),
    ("@register_tool('design', saves=SAVES)", r"scratch\.py:2: the saves of @register_tool is not a literal"),
    ("@register_tool('designs')", r"scratch\.py:2: kind 'designs' is not one of"),
    ("@register_tool('design', colour=True)", r"scratch\.py:2: write @register_tool\(kind, name=\.\.\."),
])
def test_discovery_refuses_a_registration_it_cannot_read_and_names_the_line(decorator, message):
    import ast

    from insilico.registry import _walk

    source = f"\n{decorator}\ndef tool(model):\n    'Doc.'\n"
    with pytest.raises(InsilicoError, match=message):
        list(_walk(ast.parse(source).body, "", "scratch", "scratch.py"))


def test_discovery_refuses_two_tools_under_one_name():
    import ast

    from insilico.registry import _one_per_name, _walk

    source = "@register_tool('design')\ndef a(model): 'A.'\n\n@register_tool('design', name='a')\ndef b(model): 'B.'\n"
    found = list(_walk(ast.parse(source).body, "", "scratch", "scratch.py"))
    with pytest.raises(InsilicoError, match=r"\['scratch:a', 'scratch:b'\] are registered under one name"):
        _one_per_name(found)
    _one_per_name(found[:1])


def test_discovery_refuses_what_is_not_an_insilico_package_or_a_kind():
    with pytest.raises(InsilicoError, match="'insilico.nowhere' is not a package of insilico"):
        discover("insilico.nowhere")
    with pytest.raises(InsilicoError, match="'numpy' is not a package of insilico"):
        discover("numpy")
    with pytest.raises(InsilicoError, match="kind 'designs' is not one of"):
        discover(kind="designs")


def test_insilico_exports_every_attribution_and_design_tool_from_the_registrations():
    top = {n: t for n, t in REGISTERED.items() if t.kind in TOP_LEVEL_KINDS}
    assert set(top) == set(insilico._tools()) and set(top) <= set(insilico.__all__) and set(top) <= set(dir(insilico))
    for name, tool in top.items():
        assert getattr(insilico, name) is tool.load()
    assert insilico.load is importlib.import_module("insilico.results").load


@pytest.mark.parametrize("package", ["insilico.experiments", "insilico.attribution"])
def test_a_tool_package_exports_its_registered_tools_with_their_results(package):
    module = importlib.import_module(package)
    for name, tool in REGISTERED.items():
        if tool.module.startswith(package + "."):
            assert name in module.__all__ and getattr(module, name) is tool.load(), f"{package} lacks {name}"
    results = {n for n in module.__all__ if n.endswith("Result") and n != "Result"}
    assert all(getattr(module, n).__module__.startswith(package + ".") for n in results)
    assert len(module.__all__) == len(set(module.__all__))


def test_import_insilico_is_light_and_dir_lists_the_lazy_tools():
    code = ("import sys, insilico; names = dir(insilico) + insilico.__all__; "
            "print(sorted(m for m in sys.modules if m.startswith(('insilico.design', 'insilico.attribution', "
            "'insilico.experiments', 'insilico.gallery', 'insilico.rsa')))); "
            "print(all(n in names for n in [*insilico._tools(), *insilico._SUBMODULES, *insilico._CLASSES])); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", f"import insilico imported tool modules: {out[0]}"
    assert out[1] == "True"
    assert out[2] == "False", "import insilico imported torch (Probe, Unit, Recording load on first use)"
    assert not set(insilico._MOVED) & set(dir(insilico)), "former names are not advertised"


@pytest.mark.parametrize("old", sorted(insilico._MOVED))
def test_a_former_name_warns_once_with_its_new_path(old, monkeypatch):
    monkeypatch.setattr(insilico, "_warned", set())
    new = insilico._MOVED[old]
    with pytest.warns(FutureWarning, match=rf"insilico\.{old} has moved to insilico\.{re.escape(new)}"):
        module = getattr(insilico, old)
    assert module is importlib.import_module(f"insilico.{new}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(insilico, old) is module  # once


def _table_functions(package: str) -> set[str]:
    doc = importlib.import_module(package).__doc__
    tables = re.findall(r"^=+(?: +=+)+\n(?:.*\n)+?^=+(?: +=+)+\n((?:.*\n)+?)^=+(?: +=+)+$", doc, flags=re.M)
    assert tables, f"{package}'s docstring has no table of its tools"
    return set(re.findall(r":func:`~?(?:[\w.]+\.)?(\w+)`", "".join(tables)))


@pytest.mark.parametrize("package", ["insilico.design", "insilico.experiments", "insilico.attribution"])
def test_a_package_docstring_table_lists_exactly_its_registered_tools(package):
    listed = _table_functions(package)
    registered = {n for n, t in REGISTERED.items() if t.module.startswith(package + ".")}
    assert listed == registered, (f"{package}'s docstring table lacks {sorted(registered - listed)} and lists "
                                  f"{sorted(listed - registered)} that are not its registered tools")


def test_register_refuses_an_unknown_kind_and_a_second_callable_under_one_name():
    scratch = Registry()

    def probe_me(model, images, seed=0):
        """One line."""

    with pytest.raises(InsilicoError, match="kind 'designs' is not one of"):
        scratch.register("designs")
    scratch.register("design")(probe_me)
    assert scratch["probe_me"].random and not scratch["probe_me"].resumes
    scratch.register("design")(probe_me)  # the same callable again (a reloaded module): replaced

    def other(model):
        """Another."""

    with pytest.raises(InsilicoError, match="already the tool"):
        scratch.register("experiment", name="probe_me")(other)


def test_the_listing_names_every_tool_once_in_kind_order():
    from insilico.registry import describe

    header, *rows = describe().splitlines()
    assert header.split() == ["name", "kind", "promises", "summary"]
    assert [r.split()[0] for r in rows] == list(REGISTERED)
    assert [REGISTERED[r.split()[0]].kind for r in rows] == sorted((t.kind for t in REGISTERED.values()),
                                                                    key=list(KINDS).index)


def test_insilico_tools_prints_the_registry(capsys):
    from insilico.cli import main

    assert main(["tools", "--kind", "design", "--quiet"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert names == list(tools("design")) and "maximize" in names
    assert "``" not in out and ":class:`" not in out and ":func:`" not in out  # plain text, no reST markup


def test_the_listing_prints_rest_markup_as_plain_text():
    from insilico.registry import _plain

    assert _plain("of ``unit``; a :class:`~insilico.recording.Record`, :func:`insilico.record` or :class:`Foo`") == \
        "of unit; a Record, insilico.record or Foo"


#: The command line's subcommands -> the registered tool each runs; the others run no tool.
CLI_TOOLS = {"record": "record_stimuli", "maximize": "maximize", "gradient-map": "gradient_map",
             "deconv": "gradient_map", "metamer": "metamer", "adversarial": "pgd", "controversial": "controversial",
             "gallery": "gallery"}
CLI_OTHERS = {"demo", "models", "tools", "merge", "lab"}  # lab trains networks (insilico.lab.study), no registered tool


def test_every_subcommand_runs_a_registered_tool_or_is_named_as_one_that_does_not():
    import argparse

    from insilico.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(CLI_TOOLS) | CLI_OTHERS, (
        f"subcommands {sorted(set(sub.choices) - set(CLI_TOOLS) - CLI_OTHERS)} are new here: name the registered "
        f"tool each runs in CLI_TOOLS (or add it to CLI_OTHERS)")
    assert set(CLI_TOOLS.values()) <= set(REGISTERED), sorted(set(CLI_TOOLS.values()) - set(REGISTERED))


#: Registered tools that still spell an option another way than insilico.registry.VOCABULARY (delete an entry
#: when the tool is renamed; a new spelling anywhere fails).
KNOWN_DRIFT: dict = {}


def test_one_name_per_option_across_the_tools():
    from insilico.registry import VOCABULARY

    other = {spelling: name for name, spellings in VOCABULARY.items() for spelling in spellings}
    drift = {}
    for tool_name, tool in REGISTERED.items():
        found = {p: other[p] for p in inspect.signature(tool.load()).parameters if p in other}
        if found:
            drift[tool_name] = found
    assert drift == KNOWN_DRIFT, f"options spelled another way than insilico.registry.VOCABULARY: {drift}"
