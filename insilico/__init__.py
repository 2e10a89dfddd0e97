"""insilico: in-silico electrophysiology for PyTorch.

Record, lesion and stimulate any unit of any ``nn.Module``, and design stimuli
with gradients. See README.md for a tour.

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
>>> probe = insilico.Probe(model)
>>> with probe.record("0[2]") as rec:
...     _ = model(torch.rand(5, 1, 8, 8))
>>> tuple(rec["0[2]"].shape)
(5, 6, 6)
"""
import importlib as _importlib
import importlib.util as _importlib_util
import warnings as _warnings

from .errors import InsilicoError, StimulusError, UnitError
from ._version import __version__, shadowing_distribution as _shadowing

if _clash := _shadowing():  # `pip install insilico` brings an unrelated package into the same folder
    _warnings.warn(_clash, RuntimeWarning, stacklevel=2)

#: Classes (and ``load``) loaded on first use, like the tools: `import insilico` (and `insilico --help`) imports
#: no torch.
_CLASSES = {"Unit": "units", "Probe": "probe", "Recording": "recording", "load": "results", "Job": "options",
            "SynthesisOptions": "synthesis.options", "AttackOptions": "design.adversarial",
            "MaximizeOptions": "design.maximize", "ControversialOptions": "design.controversial",
            "MetamerOptions": "design.metamers", "PopulationControlOptions": "design.population_control",
            "TuningOptions": "experiments.tuning", "GradientOptions": "attribution.gradients",
            "FitOptions": "encoding.predictor", "NeuralData": "neural", "read_neural": "neural"}

_SUBMODULES = ("models", "stimuli", "objectives", "plot", "synthesis", "design", "attribution", "experiments", "rsa",
               "behaviour", "lab", "encoding", "data", "pixels", "sharding", "session", "layers", "results", "survey", "registry")
#: Former module names (before 0.1): ``insilico.<old>`` warns once and names the new module.
_MOVED = {
    "adversarial": "design.adversarial",
    "metamers": "design.metamers",
    "controversy": "design.controversial",
    "mad_competition": "design.mad",
    "eigendistortions": "design.eigendistortions",
    "gradients": "attribution.gradients",
    "exemplars": "attribution.exemplars",
    "predictor": "encoding.predictor",
}
_warned: set = set()


def _tools():
    """``insilico.<name>``: every registered tool of :data:`insilico.registry.TOP_LEVEL_KINDS`, read from the
    registrations themselves (:func:`insilico.registry.discover` parses the tool modules' source once, on first
    use: ``import insilico`` imports no tool and no torch, and a new tool needs no line here)."""
    from .registry import TOP_LEVEL_KINDS, discover  # light: the registry imports no torch and no tool

    return {n: t for n, t in discover().items() if t.kind in TOP_LEVEL_KINDS}


def __getattr__(name):  # tools load on first use, keeping `import insilico` light
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    if name == "__all__":
        return ["InsilicoError", "StimulusError", "UnitError", *_CLASSES, *_SUBMODULES, *_tools()]
    if name in _MOVED:
        if name not in _warned:
            _warned.add(name)
            _warnings.warn(f"insilico.{name} has moved to insilico.{_MOVED[name]}; the old name will be removed "
                          f"in 0.2: write insilico.{_MOVED[name]}", FutureWarning, stacklevel=2)
        return _importlib.import_module(f".{_MOVED[name]}", __name__)
    if name in _CLASSES:
        if _CLASSES[name] in ("probe", "recording"):  # their reduce= reads layouts (insilico.layout.set_reader)
            _importlib.import_module(".layers", __name__)
        return getattr(_importlib.import_module(f".{_CLASSES[name]}", __name__), name)
    tool = None if name.startswith("_") else _tools().get(name)
    if tool is not None:
        return tool.load()
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f".{name}", __name__)  # any other module, as when Probe imported them
    raise AttributeError(f"module 'insilico' has no attribute {name!r}")


def __dir__():  # the lazy tools and submodules too, so tab completion and dir() show them
    return sorted(set(globals()) | set(_SUBMODULES) | set(_tools()) | set(_CLASSES))

