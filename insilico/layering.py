"""The layering of insilico: the row of every module, read from the top down, and who may import whom.

A module imports only from its own row or the rows below it (module-level,
function-local and ``if TYPE_CHECKING`` imports alike), the imports have no
cycle, and a tool never imports another tool. ``tests/contract/test_layering.py``
parses every module's imports and holds the package to this table; a new
module must be given a row here (the test names the file that has none).

============ ==========================================================================
row          modules (a package stands for all its modules; the longest name wins)
============ ==========================================================================
faces        ``cli/`` (with the probes' script kit ``experiments.command``),
             ``gallery/`` (composes tools; re-implements none), ``lab/`` (its study composes
             the behaviour and tuning tools), ``demo``, the package root ``insilico`` (its
             tools load lazily) and ``__main__``
tools        ``design/``, ``experiments/``, ``behaviour/``: each tool a module (with its
             companions, :data:`COMPANIONS`); tools never import each other
engine       ``synthesis/``, ``data/``
pieces       ``objectives/``, ``encoding/`` (ridge, predictor), ``rsa/``, ``attribution/``
knowledge    ``layers`` (module kinds, layouts, the centre rule, model families, the layer
             chooser)
probing      ``probe``, ``recording``, ``taps``, ``edits``, ``hooks``, ``survey``, ``ops``, ``layout``
             (what each layout means: channels, positions, the centre rule),
             ``attention`` (the head layouts ``ops`` splits), ``plan`` (one forward plan
             per call), ``evaluate`` (the batched loops), ``models/``, ``stimuli/``, ``plot/``,
             ``neural`` (neural data in the recordings' layout)
foundations  ``units``, ``pixels``, ``session``, ``results``, ``persistence``, ``sharding``,
             ``identity``, ``seeding``, ``jsonfiles``, ``errors``, ``performance``,
             ``registry``, ``options`` (the options base, :class:`~insilico.options.Job`),
             ``_version``, ``layering``
============ ==========================================================================

Rules decided for this code base where the first sketch was silent:

- ``attention`` is probing, not knowledge: :mod:`insilico.ops` splits an
  attention module's fused call into heads, so the layouts sit beside it.
- ``layout`` is probing: what a layout means (channels, positions, pooling, the
  centre rule) is read by ``taps`` (``record(reduce=)``); which layout a unit has
  is knowledge (``layers``), which registers its reader there when imported
  (:func:`insilico.layout.set_reader`; ``insilico.Probe`` imports it).
- the forward plan (``plan``) and the batched loops (``evaluate``) are probing,
  not engine: they compose the probe, the session, the survey and the batch
  iterator only, and every piece above reads them (predictors stream their
  stimuli, attribution and RSA record units), as the tools do.
- inside probing, ``recording`` sits below ``probe`` (``Probe.record_stimuli``
  and lesions with reference means call into it) and ``plan`` above ``probe``
  (it builds the call's Probe), so ``recording`` never imports ``plan``: the
  one shape rule both read is :meth:`insilico.Probe.value_spec`.
- ``attribution`` is a piece: gradient maps and exemplars use the probe and
  the session only (never the synthesis engine), and tools read them
  (receptive fields use gradient maps).
- a tool's result and report modules are the tool's own (:data:`COMPANIONS`),
  as are the kits its package shares (``experiments.runs``, ``.results``, ...);
  a shared piece two tools need moves down a row (``ModelGroup`` went to
  :mod:`insilico.models.group`, the population-control objective to
  :mod:`insilico.objectives.control`, its projections to
  :mod:`insilico.synthesis.projection`).
- a submodule's package ``__init__`` runs when it is imported, so it counts
  as imported too (except the lazy package root).

Example
-------
>>> row("insilico.design.mad"), row("insilico.synthesis.engine"), row("insilico.units")
('tools', 'engine', 'foundations')
>>> ROWS.index("pieces") < ROWS.index("engine")
True
>>> tool("insilico.design.metamer_result"), tool("insilico.experiments.runs")
('insilico.design.metamers', 'insilico.experiments')
"""
from __future__ import annotations

from .errors import InsilicoError

#: The rows, from the bottom up; a module may import from its own row and the rows before it.
ROWS = ("foundations", "probing", "knowledge", "pieces", "engine", "tools", "faces")

#: Module (or package) name below ``insilico`` -> row; the longest matching name wins; "" is the package root.
PLACES = {
    "": "faces", "__main__": "faces", "cli": "faces", "gallery": "faces", "demo": "faces",
    "experiments.command": "faces",
    "lab": "faces", "design": "tools", "experiments": "tools", "behaviour": "tools",
    "synthesis": "engine", "data": "engine",
    "objectives": "pieces", "encoding": "pieces", "predictor": "pieces", "rsa": "pieces", "attribution": "pieces",
    "layers": "knowledge", "families": "knowledge",
    "probe": "probing", "recording": "probing", "taps": "probing", "edits": "probing", "hooks": "probing",
    "survey": "probing", "ops": "probing", "attention": "probing", "models": "probing", "stimuli": "probing",
    "plot": "probing", "plan": "probing", "evaluate": "probing", "layout": "probing", "neural": "probing",
    "units": "foundations", "pixels": "foundations", "session": "foundations", "results": "foundations",
    "sharding": "foundations", "errors": "foundations", "performance": "foundations", "_version": "foundations",
    "identity": "foundations", "persistence": "foundations", "registry": "foundations", "layering": "foundations",
    "seeding": "foundations", "jsonfiles": "foundations", "options": "foundations", "statistics": "foundations",
}

#: Tools-row modules that are not tools of their own: a tool's companions (its result, its report) name the
#: tool; a package's kits (shared by every tool of the package) name the package.
COMPANIONS = {
    "design.metamer_result": "design.metamers", "design.metamer_validity": "design.metamers",
    "design.adversarial_result": "design.adversarial", "design.closed_loop": "design.population_control",
    "design.transfer": "design.population_control",
    "experiments.runs": "experiments", "experiments.results": "experiments", "experiments.budget": "experiments",
    "experiments.selectivity": "experiments",
    "behaviour.trials": "behaviour", "behaviour.consistency": "behaviour",
}


def _short(module: str) -> str:
    if module != "insilico" and not module.startswith("insilico."):
        raise InsilicoError(f"{module!r} is not a module of insilico")
    return module[len("insilico."):] if module != "insilico" else ""


def row(module: str) -> str:
    """The row of ``module`` (a dotted name, ``"insilico.design.mad"``); InsilicoError when it has none.

    Raises
    ------
    InsilicoError
        When no entry of :data:`PLACES` covers the module: add one (and a line to the table above).
    """
    name = _short(module)
    parts = name.split(".") if name else []
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in PLACES and (n or not parts):
            return PLACES[key]
    raise InsilicoError(f"{module} has no row in insilico/layering.py: add it to PLACES (and to the table in the "
                        "module docstring)")


def tool(module: str) -> str:
    """The tool a tools-row module belongs to: itself, or what :data:`COMPANIONS` names (dotted, with ``insilico.``).

    A package ``__init__`` (``"insilico.experiments"``) is its package's face: it belongs to every tool of it.
    """
    name = _short(module)
    return "insilico." + COMPANIONS.get(name, name)


__all__ = ["COMPANIONS", "PLACES", "ROWS", "row", "tool"]
