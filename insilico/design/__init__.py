"""Stimulus design on the synthesis engine: every tool that optimises images for a goal.

=================== ===========================================================
module              tool
=================== ===========================================================
maximize            :func:`maximize`: activation-maximizing images (MEIs),
                    diverse and inhibiting images, for many units at once
metamers            :func:`metamer`: images that match a reference's
                    representation (Freeman & Simoncelli; Feather et al.);
                    its result in ``metamer_result``, the validity report
                    (null distances of natural images) in ``metamer_validity``
adversarial         :func:`pgd`, :func:`fgsm`: adversarial stimuli in an
                    Lp ball (Madry et al.; Goodfellow et al.)
adversarial_result  :class:`AdversarialResult`: images, success and norms
                    per epsilon; save, load, concat, plot, check
controversial       :func:`controversial`: stimuli that adjudicate between
                    models (Golan, Raju & Kriegeskorte 2020)
mad                 :func:`mad`: maximum differentiation competition
                    (Wang & Simoncelli 2008)
eigendistortions    :func:`eigendistortion`: the most and least noticeable
                    distortions of a representation (Berardino et al. 2017)
population_control  :func:`population_control`: images that stretch a
                    predicted neuron or drive it alone, on a neural
                    predictor (Bashivan, Kar & DiCarlo 2019)
=================== ===========================================================

Their optimizers and projections are engine pieces (:mod:`insilico.synthesis`:
``SignSGD``, ``EpsBall``), their objectives live with the others
(:mod:`insilico.objectives.classification`, :mod:`insilico.objectives.adjudication`),
and every tool runs its model(s) in :func:`insilico.session.session`.

The functions are reached as ``insilico.maximize``, ``insilico.pgd``, ... (each
module is named by its concept, like the function it defines, so the package
does not re-export them: ``insilico.design.controversial`` is the module).
"""
