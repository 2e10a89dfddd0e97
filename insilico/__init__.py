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
from ._version import __version__

#: Classes loaded on first use, like the tools: `import insilico` (and so `insilico --help`) imports no torch.
_CLASSES = {"Unit": "units", "Probe": "probe", "Recording": "recording"}

_SUBMODULES = ("models", "stimuli", "objectives", "plot", "synthesis", "design", "attribution", "experiments", "rsa",
               "encoding", "data", "pixels", "sharding", "session", "layers", "results", "survey", "registry")
#: Lazy exports: public name -> the module (named by its concept) that defines it. Light (strings only), so
#: ``import insilico`` imports no tool. Every ``attribution`` and ``design`` tool of :mod:`insilico.registry`
#: is here, and nothing else but ``load`` (tests/test_registry.py checks it against the registrations).
_LAZY = {
    "gradient_map": "attribution.gradients",
    "top_exemplars": "attribution.exemplars",
    "project_exemplars": "attribution.exemplars",
    "maximize": "design.maximize",
    "metamer": "design.metamers",
    "pgd": "design.adversarial",
    "fgsm": "design.adversarial",
    "controversial": "design.controversial",
    "mad": "design.mad",
    "eigendistortion": "design.eigendistortions",
    "population_control": "design.population_control",
    "load": "results",
}
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


def __getattr__(name):  # tools load on first use, keeping `import insilico` light
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _MOVED:
        if name not in _warned:
            _warned.add(name)
            _warnings.warn(f"insilico.{name} has moved to insilico.{_MOVED[name]}; the old name will be removed "
                          f"in 0.2: write insilico.{_MOVED[name]}", FutureWarning, stacklevel=2)
        return _importlib.import_module(f".{_MOVED[name]}", __name__)
    if name in _CLASSES:
        return getattr(_importlib.import_module(f".{_CLASSES[name]}", __name__), name)
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f".{name}", __name__)  # any other module, as when Probe imported them
    raise AttributeError(f"module 'insilico' has no attribute {name!r}")


def __dir__():  # the lazy tools and submodules too, so tab completion and dir() show them
    return sorted(set(globals()) | set(_SUBMODULES) | set(_LAZY) | set(_CLASSES))


__all__ = ["InsilicoError", "Probe", "Recording", "StimulusError", "Unit", "UnitError", *_SUBMODULES, *_LAZY]
