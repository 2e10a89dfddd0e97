"""Objectives: differentiable functions of recorded units, one value per sample, with an algebra.

An :class:`Objective` names the units it reads with unit addresses
(:mod:`insilico.units`), declares them in ``.units``, and maps the recorded
activations (and the pixel images, for regularizers) to a tensor of shape
``(N,)``: one value per sample, larger = more of what it measures. Synthesis
maximizes or minimizes these values sample by sample.

Objectives combine with ``+``, ``-``, unary ``-``, and ``*`` / ``/`` by a
number; every operator goes through one helper that builds a
:class:`Composite`, and a composite's ``.units`` is the union of its parts'
units without duplicates, so synthesis hooks exactly the modules needed (each
module once, however many of its units are read). :meth:`Objective.stack`
assigns objective ``i`` to sample ``i``; stacked unit activations (neuron,
channel) are evaluated in one vectorised gather, not a loop over samples.

=================== ===========================================================
objective           value per sample
=================== ===========================================================
Activation(unit)    mean of the unit's values (a neuron, a channel, any index)
Neuron(layer, c)    one neuron: channel ``c`` at (y, x) (default: the centre)
Channel(layer, c)   mean of channel ``c`` over positions
Direction(l, v)     mean over positions of <activation, v / |v|>
DeepDream(layer)    mean of the squared activations of a layer
Diversity(layer)    minus the mean cosine similarity of the sample's Gram matrix
                    with the other samples' (of its group)
TotalVariation()    mean absolute difference of neighbouring pixels
L1(c), L2(c)        mean absolute / squared deviation of the pixels from ``c``
RepresentationDistance(targets)
                    relative distance to target representations (metamers)
ClassLoss(labels)   a classifier's loss of the true (or target) class (attacks)
Controversy(...)    how much two models disagree about a class pair
MADObjective(...)   one representation distance pushed, another held (MAD)
PopulationControl(t)
                    a predicted population's target driven (population control)
=================== ===========================================================

One module per concept, every name importable from here:

=============================== ================================================
:mod:`.core`                    Objective, Composite (the algebra), Stacked
                                (per-sample assignment), Activations, inhibit
:mod:`.activity`                unit activity: Activation, Channel, Neuron,
                                Direction, DeepDream, Diversity, and factories
:mod:`.regularizers`            image priors: TotalVariation, L1, L2
:mod:`.representation`          RepresentationDistance (metamers)
:mod:`.classification`          ClassLoss (PGD, FGSM)
:mod:`.adjudication`            Controversy, MADObjective (controversial, MAD)
:mod:`.control`                 PopulationControl, control_score (population control)
=============================== ================================================

Example
-------
>>> import torch, insilico
>>> from insilico.objectives import Channel, TotalVariation
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
>>> objective = Channel("1", 2) - 0.5 * Channel("1", 3) - 0.1 * TotalVariation()
>>> [str(u) for u in objective.units]
['1[2]', '1[3]']
>>> tuple(objective.evaluate(model, torch.rand(5, 1, 8, 8)).shape)
(5,)
"""
from __future__ import annotations

from .activity import (Activation, Channel, DeepDream, Direction, Diversity, Neuron, activation, channel, deepdream,
                       direction, diversity, neuron)
from .adjudication import Controversy, MADObjective
from .classification import ClassLoss
from .control import PopulationControl, control_score
from .core import Activations, Composite, Objective, Stacked, inhibit, unique_wholes
from .regularizers import L1, L2, TotalVariation
from .representation import RepresentationDistance

__all__ = [
    "Activation", "Activations", "Channel", "ClassLoss", "Composite", "Controversy", "DeepDream", "Direction",
    "Diversity", "L1", "L2", "MADObjective", "Neuron", "Objective", "PopulationControl", "RepresentationDistance",
    "Stacked", "TotalVariation", "activation", "channel", "control_score", "deepdream", "direction", "diversity",
    "inhibit", "neuron", "unique_wholes",
]
