"""Ready-made in-silico experiments: tuning curves, receptive fields, lesions, microstimulation, dynamics.

What an electrophysiologist does to neurons, done to any unit of any PyTorch
model (pixel-space input), batched, with results that save and plot
themselves. The scripts in ``probes/`` are thin command-line wrappers around
these functions (see :mod:`insilico.experiments.command`).

================================  ====================================================
function                          experiment
================================  ====================================================
:func:`orientation_tuning`        gratings and a blank: orientation/SF tuning of the
                                  unit after its nonlinearity, responsiveness
                                  criteria, OSI, circular variance, bandwidths
                                  (definitions: :mod:`.selectivity`)
:func:`receptive_field`           one unit's RF: theoretical, gradient, sparse noise
:func:`receptive_field_sizes`     RF size per layer vs depth
:func:`lesion_sweep`              lesion channels (or groups): per-class accuracy,
                                  dissociation matrix
:func:`cumulative_lesion`         lesion most / least important channels first
:func:`microstimulation`          drive units harder and harder: class-probability shifts
:func:`time_courses`              responses per time step of a recurrent model
:func:`connection_lesions`        lateral vs top-down lesions: accuracy per step
================================  ====================================================

Example
-------
>>> import torch, insilico
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 5), torch.nn.ReLU())
>>> insilico.experiments.receptive_field(net, "0[0,3,3]", size=16).size
5.0
"""
from .dynamics import DynamicsResult, RecurrentLesionResult, connection_lesions, time_courses
from .lesions import CumulativeLesionResult, LesionResult, cumulative_lesion, lesion_sweep
from .microstimulation import MicrostimulationResult, microstimulation
from .receptive_fields import RFResult, RFSizesResult, receptive_field, receptive_field_sizes
from .results import Result
from .runs import after_nonlinearity
from .tuning import MACAQUE_V1, TuningResult, orientation_tuning

__all__ = [
    "orientation_tuning", "TuningResult", "MACAQUE_V1", "after_nonlinearity",
    "receptive_field", "receptive_field_sizes", "RFResult", "RFSizesResult",
    "lesion_sweep", "cumulative_lesion", "LesionResult", "CumulativeLesionResult",
    "microstimulation", "MicrostimulationResult",
    "time_courses", "connection_lesions", "DynamicsResult", "RecurrentLesionResult",
    "Result",
]
