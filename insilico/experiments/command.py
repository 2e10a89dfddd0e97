"""What every ``probes/`` script shares: arguments, model loading, output writing.

Each script in ``probes/`` is ``python probes/<name>.py --model NAME|SPEC
--units ... --out DIR [--device auto]``: it builds its parser with
:func:`parser`, loads the model with :func:`load_model` (a bundled name, a
zoo model such as ``torchvision:resnet50`` through :func:`insilico.models.load`,
or ``package.module:callable`` / ``path/file.py:callable`` through
:func:`insilico.models.from_spec`, optionally with ``--weights``), runs one
experiment function of :mod:`insilico.experiments`, and writes with
:func:`write`: the result's NPZ and CSV (first line a JSON header of the
settings), ``settings.json`` (the command line, the model, library versions)
and every figure as PNG and SVG.

Example
-------
>>> args = parser("demo").parse_args(["--model", "torch.nn:Identity", "--out", "/tmp/x"])
>>> args.device, args.progress
('auto', True)
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..errors import InsilicoError
from ..jsonfiles import write_json
from ..jsonfiles import jsonable
from .results import Result


def parser(description: str, model: str = "minialex", units_help: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the options every probe script takes."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=model,
                   help="a bundled model (see insilico.models.available()), a zoo model ('torchvision:resnet50', "
                        "'timm:NAME', 'open_clip:ARCH/TAG', 'hf:REPO') or 'package.module:callable' / "
                        "'path/file.py:callable' returning an nn.Module that takes pixel-space images")
    p.add_argument("--weights", default=None, help="state_dict (.pt/.safetensors) for a --model spec or zoo model "
                                                   "(a zoo model without it: the zoo's pretrained weights)")
    p.add_argument("--units", nargs="+", default=None,
                   help=units_help or "unit addresses, e.g. features.0 or 'features.3[5]' (default: chosen per script)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--batch-size", type=int, default=128, help="stimuli per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars (as in `insilico`)")
    return p


def device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InsilicoError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InsilicoError("--device cuda was asked for but CUDA is not available; use --device auto or cpu")
    return dev


def names_code(spec: str) -> bool:
    """Whether :func:`load_model` imports code for ``spec`` (a ``package.module:callable`` or ``file.py:callable``
    spec) rather than looking up a bundled or zoo model by name (``insilico merge`` never does it for a saved
    spec). A zoo spec (``torchvision:resnet50``) imports only the zoo's package.

    >>> names_code("minialex"), names_code("torch.nn:Identity"), names_code("evil.py:net")
    (False, True, True)
    >>> names_code("torchvision:resnet50"), names_code("torchvision.models:resnet50")
    (False, True)
    """
    from ..models.zoo import split

    return ":" in spec and spec.rsplit(":", 1)[0] not in ("", "cuda") and split(spec) is None


#: ``--weights random``: the model with random weights (an untrained control, or a machine without internet).
RANDOM_WEIGHTS = "random"


def load_model(spec: str, weights: str | None = None, where: str = "auto") -> nn.Module:
    """A bundled or zoo model by name (:func:`insilico.models.load`; a zoo model without ``weights`` gets the
    zoo's pretrained ones), or the user's via :func:`insilico.models.from_spec`; eval mode, on ``where``.
    ``weights`` is a file, or :data:`RANDOM_WEIGHTS` for random weights (nothing downloaded or read)."""
    from .. import models

    dev = device(where)
    if weights == RANDOM_WEIGHTS:
        return models.from_spec(spec, device=dev) if names_code(spec) else models.load(spec, dev, weights=None)
    if models.zoo.split(spec) is not None:
        return models.load(spec, device=dev, weights="DEFAULT" if weights is None else weights)
    if names_code(spec):
        model = models.from_spec(spec, weights=weights, device=dev)
    else:
        if weights is not None:
            raise InsilicoError("--weights is for a --model spec (package.module:callable); bundled models ship theirs")
        model = models.load(spec, device=dev)
    return model  # both loaders give it in eval mode


def labelled_stimuli(per_class: int, seed: int):
    """The bundled held-out photo crops ``(x, y)`` (see :func:`insilico.models.photos.held_out`)."""
    from ..models import photos

    return photos.held_out(per_class, seed=seed)


def write(out: str | Path, name: str, result: Result, figures: dict[str, Any] | None = None,
          args: argparse.Namespace | None = None, summary: dict | None = None) -> list[Path]:
    """Save ``result`` as ``out/name.pt`` and its tables ``out/name.npz|csv``, each figure as PNG and SVG, and ``out/settings.json``."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = result.export(out / name)
    result.save(out / f"{name}.pt")  # the whole result, for Result.load (weights_only)
    paths.append(out / f"{name}.pt")
    for key, fig in (figures or {}).items():
        for ext in ("png", "svg"):
            path = out / f"{key}.{ext}"
            fig.savefig(path, dpi=150, bbox_inches="tight")
            paths.append(path)
        plt.close(fig)
    settings = {
        "arguments": jsonable(vars(args)) if args is not None else {},
        "result": result.settings,
        "summary": jsonable(summary or {}),
        "versions": {"insilico": __version__, "torch": torch.__version__, "numpy": np.__version__},
    }
    settings_path = out / f"{name}_settings.json"
    write_json(settings_path, settings)
    paths.append(settings_path)
    return paths


def report(paths: Sequence[Path], summary: dict | None = None) -> None:
    """Print the summary and the files written."""
    for key, value in (summary or {}).items():
        print(f"{key}: {value}")
    print("wrote " + ", ".join(str(p) for p in paths))


def floats(text: str) -> list[float]:
    """Parse ``"1,2,4"`` into floats (for list options)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
