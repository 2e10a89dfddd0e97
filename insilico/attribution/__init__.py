"""Attribution: what in an image drives a unit.

=================== ===========================================================
module              tool
=================== ===========================================================
gradients           :func:`gradient_map`: gradient, gradient x input, guided
                    backprop, Zeiler & Fergus deconvolution, integrated
                    gradients, SmoothGrad, Grad-CAM (captum where it has them)
exemplars           :func:`top_exemplars` (streaming top-k over a stimulus
                    set) and :func:`project_exemplars` (the Zeiler & Fergus
                    figure: top crops with their deconvolution projections)
=================== ===========================================================
"""
from .exemplars import project_exemplars, top_exemplars
from .gradients import gradient_map

__all__ = ["gradient_map", "project_exemplars", "top_exemplars"]
