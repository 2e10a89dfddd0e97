"""A lab for the four elements that make a network: architecture, input statistics, objective, learning rule.

"The computational properties of DNNs are the result of four manipulable elements: the network
architecture, the input statistics, the functional objective, and the learning algorithm"
(Kietzmann, McClure & Kriegeskorte). Here each element is a named option of a :class:`Variant`;
:func:`train_variant` trains one on the bundled photos (:mod:`insilico.models.photos`), and
:func:`study` trains a grid of them (seeded, each cached in ``out=``, resumable, shardable) and
reports for each its held-out task accuracy, its RSA with human and monkey IT per layer
(:mod:`insilico.rsa` on the 92 images of :func:`insilico.data.kriegeskorte2008`) with the human-IT
noise ceiling, its behaviour (:mod:`insilico.behaviour`: confusions, error consistency with the other
variants) and the V1-like tuning of its first convolution (:func:`insilico.experiments.orientation_tuning`),
ranked by brain similarity (:meth:`StudyResult.plot`). Composing those tools puts the lab on the faces
row of :mod:`insilico.layering`.

Modules: :mod:`.variant` (the options), :mod:`.rules` (feedback alignment), :mod:`.objectives` (the
losses), :mod:`.inputs` (input statistics), :mod:`.training` (one variant), :mod:`.study` (a grid;
:func:`trained` reads a study's networks back as observers for :mod:`insilico.behaviour`).
``insilico lab study --out DIR`` (:mod:`insilico.cli.lab`; ``probes/four_elements.py`` calls it) runs the
default grid (:data:`DEFAULT_GRID`) from one command, ``insilico lab train --variant ...`` one variant.

Example
-------
>>> from insilico import lab
>>> [v.name for v in lab.DEFAULT_GRID]
['baseline', 'bl', 'blur2.0', 'sparse', 'feedback_alignment']
"""
from .objectives import OBJECTIVES
from .rules import RULES, feedback_alignment
from .study import DEFAULT_GRID, StudyResult, study, trained
from .training import accuracy, observer, train_variant
from .variant import ARCHITECTURES, Variant, build

__all__ = ["ARCHITECTURES", "DEFAULT_GRID", "OBJECTIVES", "RULES", "StudyResult", "Variant", "accuracy", "build",
           "feedback_alignment", "observer", "study", "train_variant", "trained"]
