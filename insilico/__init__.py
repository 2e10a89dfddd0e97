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
import importlib

from .errors import InsilicoError, StimulusError, UnitError
from .units import Unit
from .probe import Probe
from .recording import Recording

__version__ = "0.1.0"

_SUBMODULES = ("models", "stimuli", "objectives", "plot", "synthesis", "experiments", "rsa", "encoding", "data", "adversarial", "metamers", "controversy", "mad_competition",
               "eigendistortions", "pixels", "sharding")
_FUNCTIONS = {  # public function -> the module (named by its concept) that defines it
    "gradient_map": "gradients",
    "top_exemplars": "exemplars",
    "project_exemplars": "exemplars",
    "maximize": "synthesis",
    "metamer": "metamers",
    "pgd": "adversarial",
    "fgsm": "adversarial",
    "controversial": "controversy",
    "mad": "mad_competition",
    "eigendistortion": "eigendistortions",
}


def __getattr__(name):  # tools load on first use, keeping `import insilico` light
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f".{_FUNCTIONS[name]}", __name__), name)
    raise AttributeError(f"module 'insilico' has no attribute {name!r}")


__all__ = ["InsilicoError", "Probe", "Recording", "StimulusError", "Unit", "UnitError", *_SUBMODULES, *_FUNCTIONS]
