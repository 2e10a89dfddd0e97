"""Bundled trained networks, the zoos' models, and loading the user's own.

Nothing is downloaded for the bundled models: they are small networks trained here on
crops of scikit-image's bundled photos (:mod:`insilico.models.photos`), with
weights shipped in ``insilico/models/weights/``. Each takes pixel-space input
(N, 3, 64, 64) in [0, 1] (normalisation is its ``normalize`` module) and has
``input_size`` and ``classes``; recurrent ones also ``timesteps``.

=========== ==========================================================
name        model
=========== ==========================================================
minialex    AlexNet-shaped CNN (``features.0`` .. ``classifier.6``); alias "alexnet"
blt         recurrent CNN, bottom-up + lateral + top-down, T=4 steps
bl, bt, b   the same without top-down / lateral / both (controls)
=========== ==========================================================

Models of the zoos (torchvision, timm, open_clip, Hugging Face) in one line, on pixel-space images with
``input_size``, ``class_names`` and ``preprocessing`` (:mod:`.zoo`; the zoo's modules under ``net.``):
``load("torchvision:resnet50")``, ``load("timm:convnext_tiny")``,
``load("open_clip:ViT-B-32/laion2b_s34b_b79k")``, ``load("hf:facebook/dinov2-small")``.

Several models side by side as one module (what model-comparing tools run):
:class:`ModelGroup` (:mod:`.group`).

Examples
--------
>>> import torch, insilico.models as models
>>> models.available()
['minialex', 'blt', 'bl', 'bt', 'b']
>>> net = models.load("minialex")
>>> tuple(net(torch.rand(2, *net.input_size)).shape)
(2, 16)
>>> models.card("blt")["held_out_cluttered_accuracy_per_step"]     # doctest: +SKIP
[0.49, 0.53, 0.54, 0.55]
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import sys

import torch
from torch import nn

from ..errors import InsilicoError
from ..seeding import keep_global_rng
from . import photos, weightfiles, zoo
from .blt import BLTNet
from .group import ModelGroup
from .minialex import MiniAlexNet

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")

# Training recipes (see insilico.models.train). minialex: its first conv learns 3x faster than the rest,
# which is what turns its filters oriented and localized within a CPU budget. The BLT family: half the
# crops cluttered with patches of other crops, the loss of time step t weighted by 2**t.
_BLT_RECIPE = dict(steps=600, lr=3e-3, weight_decay=0.05, occlude=0.5, step_weights="geometric")
_REGISTRY = {
    "minialex": dict(
        build=MiniAlexNet, steps=600, lr=2e-3, weight_decay=0.05, conv1_lr=3.0,
        description="AlexNet-shaped CNN (5 conv + 3 linear) classifying 64x64 crops of 16 bundled scikit-image photos"),
    "blt": dict(
        build=lambda: BLTNet("BLT", timesteps=4), **_BLT_RECIPE,
        description="Recurrent CNN (Spoerer et al. 2017) with bottom-up, lateral and top-down convolutions, "
                    "4 time steps, on 64x64 crops of 16 bundled scikit-image photos"),
    "bl": dict(
        build=lambda: BLTNet("BL", timesteps=4), **_BLT_RECIPE,
        description="Recurrent CNN with bottom-up and lateral convolutions (no top-down), 4 time steps"),
    "bt": dict(
        build=lambda: BLTNet("BT", timesteps=4), **_BLT_RECIPE,
        description="Recurrent CNN with bottom-up and top-down convolutions (no lateral), 4 time steps"),
    "b": dict(
        build=lambda: BLTNet("B", timesteps=4), **_BLT_RECIPE,
        description="Feed-forward control of the BLT family (bottom-up only, unrolled 4 steps)"),
}
_ALIASES = {"alexnet": "minialex"}


def _resolve(name: str) -> str:
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _REGISTRY or not os.path.exists(os.path.join(WEIGHTS_DIR, key + ".pt")):
        raise InsilicoError(
            f"no bundled model named {name!r}; available: {', '.join(available())}. For a zoo model write "
            f"{', '.join(z + ':NAME' for z in zoo.ZOOS)} (e.g. 'torchvision:resnet50'); for your own network "
            "use insilico.models.from_spec('package.module:callable')."
        )
    return key


def available() -> list[str]:
    """Names of the bundled models that have shipped weights (see :func:`card`).

    Examples
    --------
    >>> "minialex" in available() and "blt" in available()
    True
    """
    return [n for n in _REGISTRY if os.path.exists(os.path.join(WEIGHTS_DIR, n + ".pt"))]


def card(name: str) -> dict:
    """The model card of a bundled model.

    Returns
    -------
    dict
        ``description``, ``input_size``, ``classes``, ``chance``, ``held_out_accuracy``
        (last step for recurrent models, plus ``held_out_accuracy_per_step``),
        ``train_command``, ``seed``, ``train_minutes`` and more.

    Examples
    --------
    >>> c = card("minialex")
    >>> c["held_out_accuracy"] > 3 * c["chance"]
    True
    """
    key = _resolve(name)
    path = os.path.join(WEIGHTS_DIR, key + ".json")
    if not os.path.exists(path):
        raise InsilicoError(f"the card {path} is missing; rerun `python -m insilico.models.train {key}`")
    with open(path) as f:
        return json.load(f)


def load(name: str, device: str | torch.device | None = None,
         weights: str | os.PathLike | None = "DEFAULT") -> nn.Module:
    """A trained model in eval mode, taking pixel-space input in [0, 1]: bundled, or from a zoo.

    Parameters
    ----------
    name : str
        One of :func:`available` (case-insensitive; "alexnet" means "minialex"), or a zoo model:
        ``"torchvision:resnet50"``, ``"timm:convnext_tiny"``, ``"open_clip:ViT-B-32/laion2b_s34b_b79k"``
        (the image tower), ``"hf:facebook/dinov2-small"`` or ``"hf:/path/to/folder"``; a zoo model is a
        :class:`~insilico.models.zoo.ZooModel` (``input_size``, ``class_names``, ``preprocessing``; the
        zoo's modules addressed under ``net.``, e.g. ``"net.layer4"``), see :mod:`insilico.models.zoo`.
    device : str or torch.device, optional
        Where to put the model (default: torch's default device, the CPU unless set; a model built under
        ``torch.device("meta")`` stays there, shapes without values, which the tools refuse).
    weights : "DEFAULT", a weight name, a path, or None
        ``"DEFAULT"``: the bundled model's shipped weights, or the zoo's pretrained weights (downloaded on
        the user's machine on first use); a zoo's weight name or tag (``"IMAGENET1K_V2"``); a path: a
        ``state_dict`` or ``.safetensors`` file (pickles refused); None: random weights (an untrained
        control, or tests).

    Raises
    ------
    InsilicoError
        Unknown name (the message lists the available ones, or the zoo's close matches), a zoo package
        that is not installed (the message names the extra), weights that do not fit.

    Examples
    --------
    >>> net = load("blt")
    >>> net.training, net.timesteps, net.input_size
    (False, 4, (3, 64, 64))
    >>> load("torchvision:alexnet", weights=None).input_size
    (3, 224, 224)
    """
    if zoo.split(name) is not None:
        return zoo.load(name, weights=weights, device=device)
    key = _resolve(name)
    if weights is None:
        model = _REGISTRY[key]["build"]()
    else:
        with keep_global_rng():  # the random init, replaced by the weights below, must not move the caller's stream
            model = _REGISTRY[key]["build"]()
        if weights == "DEFAULT":
            state = torch.load(os.path.join(WEIGHTS_DIR, key + ".pt"), map_location="cpu", weights_only=True)
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        else:
            weightfiles.load_into(model, weights, f"the bundled {key}")
    model.name = key
    return model.to(device or torch.get_default_device()).eval()  # built under torch.device("meta"): stays there


def from_spec(spec: str, weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
              **kwargs) -> nn.Module:
    """Build the user's model from ``"package.module:callable"`` or ``"path/file.py:callable"``.

    Parameters
    ----------
    spec : str
        Where the callable lives and its name, separated by ``:``. The callable is
        called with ``**kwargs`` and must return an ``nn.Module``.
    weights : path, optional
        A ``state_dict`` saved with ``torch.save`` (read with ``weights_only=True``)
        or a ``.safetensors`` file; loaded strictly.
    device : str or torch.device, optional
        Where to put the model.

    Returns
    -------
    nn.Module in eval mode.

    Examples
    --------
    >>> net = from_spec("torch.nn:Identity")
    >>> net.training
    False
    """
    if not isinstance(spec, str) or spec.count(":") < 1 or spec.rsplit(":", 1)[1] == "":
        raise InsilicoError(
            f"bad model spec {spec!r}; write 'package.module:callable' or 'path/to/file.py:callable'")
    where, attr = spec.rsplit(":", 1)
    if where.endswith(".py") or os.sep in where or "/" in where:
        if not os.path.exists(where):
            raise InsilicoError(f"model file {where!r} (from spec {spec!r}) does not exist")
        modname = "_insilico_user_" + os.path.splitext(os.path.basename(where))[0]
        mspec = importlib.util.spec_from_file_location(modname, where)
        module = importlib.util.module_from_spec(mspec)
        sys.modules[modname] = module
        try:
            mspec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(modname, None)
            raise InsilicoError(f"importing {where!r} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            close = difflib.get_close_matches(where, list(zoo.ZOOS), n=1)
            hint = f" (for a zoo model write '{close[0]}:{attr}')" if close else ""
            raise InsilicoError(f"cannot import module {where!r} (from spec {spec!r}): {e}{hint}") from e
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise InsilicoError(f"{where!r} has no attribute {attr!r}; it defines: {', '.join(names[:20])}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise InsilicoError(f"{spec!r} is not callable; point the spec at a function or class returning an nn.Module")
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise InsilicoError(f"{spec!r} returned a {type(model).__name__}, expected a torch.nn.Module")
    if weights is not None:
        weightfiles.load_into(model, weights, f"the model from {spec!r}")
    if device is not None:
        model = model.to(device)
    return model.eval()


__all__ = ["available", "card", "load", "from_spec", "photos", "zoo", "weightfiles", "BLTNet", "MiniAlexNet", "ModelGroup", "WEIGHTS_DIR"]
