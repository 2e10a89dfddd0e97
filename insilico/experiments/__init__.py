"""Ready-made in-silico experiments: tuning curves, receptive fields, lesions, microstimulation, dynamics.

What an electrophysiologist does to neurons, done to any unit of any PyTorch
model (pixel-space input), batched, with results that save and plot
themselves. The scripts in ``probes/`` are thin command-line wrappers around
these functions (see :mod:`insilico.experiments.command`).

The table of the experiments (at the end) is generated from their registrations
(:func:`insilico.registry.tool_table`); the tuning indices (OSI, circular
variance, bandwidths, responsiveness criteria) are defined in :mod:`.selectivity`.

Example
-------
>>> import torch, insilico
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 5), torch.nn.ReLU())
>>> insilico.experiments.receptive_field(net, "0[0,3,3]", size=16).size
5.0
"""
# Derived, not hand-written (issue 24: adding a tool = one module + one registration): every tool registered
# in this package (read from the source by insilico.registry.discover) is imported and exported with the
# public ``*Result`` classes of its module. Explicit import lines would help an editor's completion, but
# each new experiment would need one more edit here that nothing but a test reminds of; this package is
# imported eagerly anyway. Names that are not tools or their results stay explicit below.
from ..registry import export as _export
from ..registry import tool_table as _tool_table
from .results import Result
from .runs import after_nonlinearity
from .tuning import MACAQUE_V1

__all__ = ["MACAQUE_V1", "Result", "after_nonlinearity", *_export(__name__, globals())]
if __doc__:  # None under python -OO
    __doc__ += "\n" + _tool_table(__name__)
