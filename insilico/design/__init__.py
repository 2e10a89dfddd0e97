"""Stimulus design on the synthesis engine: every tool that optimises images for a goal.

Each tool is a function in the module of its concept (``maximize``, ``metamers``,
``adversarial``, ``controversial``, ``mad``, ``eigendistortions``,
``population_control``), listed in the table below, which is generated from the
registrations (:func:`insilico.registry.tool_table`): a new tool appears there
without an edit here. Their results live beside them: ``metamer_result`` (and
``metamer_validity``, the validity report: null distances of natural images),
``adversarial_result`` (:class:`AdversarialResult`: images, success and norms
per epsilon; save, load, concat, plot, check).

Their optimizers and projections are engine pieces (:mod:`insilico.synthesis`:
``SignSGD``, ``EpsBall``), their objectives live with the others
(:mod:`insilico.objectives.classification`, :mod:`insilico.objectives.adjudication`),
and every tool runs its model(s) in :func:`insilico.session.session`.

The functions are reached as ``insilico.maximize``, ``insilico.pgd``, ... (each
module is named by its concept, like the function it defines, so the package
does not re-export them: ``insilico.design.controversial`` is the module).
"""
from ..registry import tool_table as _tool_table

if __doc__:  # None under python -OO
    __doc__ += "\n" + _tool_table(__name__)
