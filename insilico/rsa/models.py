"""Model RDMs: record a network's layers over a stimulus set and compute one RDM per layer.

The network runs through a :class:`~insilico.Probe` (``record_stimuli``: the
one batched loop, in a session that keeps every module's own mode); the
default layers come from a survey of one forward pass.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InsilicoError, StimulusError
from ..layers import is_activation, is_conv_linear, is_inert
from ..registry import register_tool
from .rdm import rdm


def layer_units(model: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """The layers of a model worth an RDM: every activation module, and the last layer (the output).

    Activations, convolutions / linear layers and the modules that leave values
    as they are (Dropout, Identity, Flatten) are the lists of :mod:`insilico.layers.modules`.

    Modules called several times per forward pass (recurrent networks) are
    addressed at their last call (``"@-1"``); modules never called are left
    out. Without activation modules (functional ReLUs), every convolution and
    linear layer is used instead.

    Parameters
    ----------
    model : nn.Module
    example : tensor
        One input batch for a trial forward pass (e.g. ``stimuli[:1]``).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(8, 2))
    >>> layer_units(net, torch.rand(1, 4))
    ['1', '3']
    """
    from ..probe import Probe

    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    names = [n for n, m in leaves if is_activation(m)]
    last = [n for n, m in leaves if not is_inert(m)][-1:]
    names += [n for n in last if n not in names]
    if len(names) <= 1:
        names = [n for n, m in leaves if is_conv_linear(m)] or names
    if not names:
        raise InsilicoError("found no layers to record in this model; pass units= explicitly")
    survey = Probe(model).survey(example, modules=names)  # in a session: every module's own mode kept
    return [n if survey.count(n) == 1 else f"{n}@-1" for n in names if survey.count(n) > 0]


@register_tool("rsa", follows_dtype=False)
def model_rdms(model: torch.nn.Module, stimuli, units: Sequence[str] | None = None, method: str = "correlation",
               labels: Sequence | None = None, batch_size: int = 64, progress: bool = True, **options) -> dict:
    """Record a model's layers over a stimulus set and compute one RDM per layer.

    Parameters
    ----------
    model : nn.Module
        Taking pixel-space stimuli; recorded in eval mode, on its own device.
    stimuli : tensor (N, C, H, W) or anything :meth:`Probe.record_stimuli` takes
    units : list of str, optional
        Default: :func:`layer_units` (every activation, and the output).
    method : str
        See :func:`rdm`; computed on the model's device.
    **options
        More :func:`rdm` arguments (``dtype``...).

    Returns
    -------
    dict unit -> RDM, in layer order

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    >>> rdms = model_rdms(net, torch.rand(5, 3, 8, 8), progress=False)
    >>> list(rdms), rdms["1"].n
    (['1', '3'], 5)
    """
    from ..probe import Probe
    from ..recording import stimulus_source

    probe = Probe(model)
    stimuli = stimulus_source(stimuli, model=model)  # any form; its first stimulus is the survey's example
    if units is None:
        if not len(stimuli):
            raise StimulusError("the stimulus set is empty: give at least one stimulus")
        units = layer_units(model, stimuli.batch(0, 1, probe.device, probe.dtype))
    rec = probe.record_stimuli(stimuli, list(units), batch_size=batch_size, progress=progress)
    options.setdefault("device", probe.device)
    return rdm(rec, method, labels=labels, **options)
