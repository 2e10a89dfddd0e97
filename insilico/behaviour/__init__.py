"""Behaviour: a model's decisions studied as an observer's, and compared with people's.

"Recognition performance, perceptual confusions, and illusions provide valuable
clues ... the detailed patterns of errors and reaction times across stimuli ...
may reveal subtle functional differences between systems that exhibit the same
overall level of task performance" (Kietzmann, McClure & Kriegeskorte 2019).
An observer is a model or a table of human trials (:class:`Trials`, read from
CSV by :func:`read_trials` in the layout of Geirhos et al.'s model-vs-human
data); observers are aligned by image id.

- :func:`confusion`: confusion matrices (counts and per true class), per-class
  accuracy with bootstrap intervals over images;
- :func:`error_consistency`: Cohen's kappa of trial-wise correctness beyond
  what the accuracies predict (Geirhos et al. 2020); per subject and averaged,
  with an interval over subjects, for tables of several people;
- :func:`image_consistency`: i1n image-level consistency, split-half corrected
  (Rajalingham et al. 2018);
- :func:`psychometric`: accuracy over contrast, noise or occlusion with a fitted
  logistic and threshold (run inside a lesion or stimulation to see the shift);
- :func:`reaction_times`: the time step at which a recurrent readout becomes
  confident (Spoerer et al. 2020), and the speed-accuracy trade-off.

Example
-------
>>> import torch, insilico
>>> from insilico.behaviour import confusion, error_consistency
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> x, y = torch.rand(30, 3, 2, 2), torch.arange(30) % 3
>>> a = confusion(net, x, y, n_boot=0, progress=False)
>>> tuple(a.matrix.shape), float(a.matrix.sum(1)[0])
((3, 3), 1.0)
>>> error_consistency(a, a, n_boot=0).value   # an observer agrees with itself
1.0
"""
# The tools are read from their registrations (insilico.registry.discover), as in insilico.experiments.
from ..registry import export as _export
from ..registry import tool_table as _tool_table
from .consistency import RATE_RANGE, ConsistencyResult, aligned_correctness, error_consistency, image_consistency
from .psychometric import PARAMETERS, degrade, fit_logistic, threshold
from .reaction_times import CRITERIA, decide
from ..statistics import bootstrap
from .trials import COLUMNS, Trials, read_trials

__all__ = ["COLUMNS", "CRITERIA", "PARAMETERS", "RATE_RANGE", "ConsistencyResult", "Trials", "aligned_correctness",
           "bootstrap", "decide", "degrade", "error_consistency", "fit_logistic", "image_consistency", "read_trials",
           "threshold", *_export(__name__, globals())]
if __doc__:  # None under python -OO
    __doc__ += "\n" + _tool_table(__name__)
