"""Stimulus synthesis: one engine for activation maximization, metamers and adversarial stimuli.

=================== ===========================================================
module              concept
=================== ===========================================================
engine              :class:`Synthesis`, the shared optimisation loop
options             :class:`SynthesisOptions`: every knob of the loop, one
                    default each, shared by the design tools
optimizers          the optimizers by name (adam, sgd, lbfgs) or factory;
                    :class:`SignSGD`: per-sample steepest descent under a norm
lbfgs               :class:`BatchLBFGS`: L-BFGS with one history and one
                    line search per sample
schedules           learning-rate schedules (constant, cosine, linear,
                    :class:`Halving`)
parameterization    :class:`Pixel`, :class:`Fourier` (1/f, decorrelated colour)
color               the colour decorrelation matrix and how it is estimated
transforms          :class:`Transforms`: per-sample pad/jitter/scale/rotate
settings            the engine's JSON settings and back (resume)
stopping            stopping rules ``rule(trace, state) -> mask``
projection          constraints after each step (:class:`EpsBall`,
                    :class:`ContrastBudget`, ...; :class:`Chain` of them)
seeds               :func:`derive_seed`, :func:`content_key`: per-sample seeds
result              :class:`SynthesisResult`: a :class:`insilico.results.Result`
=================== ===========================================================

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
>>> result = insilico.maximize(model, ["1[0]", "1[2]"], size=(1, 12, 16), steps=10, progress=False)
>>> tuple(result.images.shape)
(2, 1, 12, 16)
"""
from .engine import DEFAULT_STEPS, Synthesis, derive_seed
from .lbfgs import BatchLBFGS
from .options import SynthesisOptions
from .parameterization import Fourier, Parameterization, Pixel
from .optimizers import SignSGD
from .projection import Chain, Clamp, ContrastBudget, EpsBall, L2Ball, LinfBall
from .result import SynthesisResult
from .schedules import Halving
from .stopping import MaxSteps, PixelChange, Plateau, StopState, TargetReached
from .transforms import Transforms

__all__ = [
    "BatchLBFGS", "Chain", "Clamp", "ContrastBudget", "DEFAULT_STEPS", "EpsBall", "Fourier", "Halving", "L2Ball",
    "LinfBall", "MaxSteps",
    "Parameterization", "Pixel", "PixelChange", "Plateau", "SignSGD", "StopState", "Synthesis", "SynthesisResult",
    "SynthesisOptions",
    "TargetReached", "Transforms",
    "derive_seed",
]
