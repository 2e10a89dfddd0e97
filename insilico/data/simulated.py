"""A simulated brain with a known ground truth, to validate closed-loop stimulus design.

:class:`SimulatedBrain` is a population of model neurons, each a sparse,
spatially localised, nonlinear readout of one layer of a network:

    drive_i(x) = sum_c w_ic sum_yx g_i(y, x) f_c(x; y, x)      (k channels, a Gaussian receptive field)
    rate_i(x)  = gain * softplus(slope * (z(drive_i) - threshold))

where ``z`` standardises the drive over calibration images, so every neuron
fires sparsely (a few natural images drive it hard). ``brain(images)`` gives
the noise-free rates (the ground truth a presented stimulus is judged by);
``brain.respond(images, repetitions)`` gives Poisson spike counts over
repeated presentations, the data an experimenter records.

:func:`simulated_experiment` builds the two brains the population-control
validation needs (see :func:`insilico.population_control`):

- ``kind="matched"``: the neurons read the bundled ``minialex``'s ``features.9``
  (conv4 after its ReLU), the network the predictor is fitted on: a correct
  loop must drive them beyond their natural maxima;
- ``kind="different"``: they read the recurrent ``blt``'s top layer at its
  last time step: a predictor from ``minialex`` fits natural images well but
  plain maximization of it transfers badly, the real experimental problem.

Example
-------
>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
>>> brain = SimulatedBrain(net, "1", n_neurons=5, calibration=torch.rand(64, 3, 16, 16), seed=0)
>>> x = torch.rand(10, 3, 16, 16)
>>> tuple(brain(x).shape), tuple(brain.respond(x, repetitions=3).shape)
((10, 5), (3, 10, 5))
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .. import evaluate
from ..errors import InsilicoError
from ..plan import Plan
from ..session import session

#: The network layer each kind of brain reads.
BRAINS = {"matched": ("minialex", "features.9"), "different": ("blt", "layers.2@-1")}


class SimulatedBrain(nn.Module):
    """Ground-truth model neurons: images (N, C, H, W) -> noise-free rates (N, n_neurons).

    Parameters
    ----------
    network : nn.Module
        Pixel-space network whose layer the neurons read (shared, not copied).
    layer : str
        Unit address of a (N, C, H, W) layer, e.g. ``"features.9"`` or ``"layers.2@-1"``.
    n_neurons : int
    channels : int
        Channels each neuron reads (sparsity; default 3), drawn among the channels
        natural images drive (std over ``calibration`` at least a tenth of the median channel's).
    rf_sigma : float
        Width of the Gaussian receptive field, in positions of the layer's grid (default 0.75).
    threshold, slope, gain : float
        Of the softplus nonlinearity on the standardised drive (defaults 1.0, 1.5, 4.0):
        ``gain * softplus(slope * (z - threshold))`` (mean spike count per presentation).
    calibration : tensor (M, C, H, W)
        Natural images that standardise each neuron's drive.
    seed : int
    """

    def __init__(self, network: nn.Module, layer: str, n_neurons: int = 64, *, channels: int = 3,
                 rf_sigma: float = 0.75, threshold: float = 1.0, slope: float = 1.5, gain: float = 4.0,
                 calibration: torch.Tensor, seed: int = 0):
        super().__init__()
        if n_neurons < 1 or channels < 1:
            raise InsilicoError("a simulated brain needs n_neurons >= 1 and channels >= 1")
        self.network, self.layer = network, str(layer)
        self.threshold, self.slope, self.gain = float(threshold), float(slope), float(gain)
        self.targets = [f"n{i}" for i in range(n_neurons)]
        if hasattr(network, "input_size"):
            self.input_size = tuple(network.input_size)
        self._plan = None
        gen = torch.Generator().manual_seed(int(seed))
        with session(network):
            feats = self._layer(calibration)
        if feats.ndim != 4:
            raise InsilicoError(f"{layer} gives shape {tuple(feats.shape)}; a simulated brain reads (N, C, H, W) layers")
        c, h, w = feats.shape[1:]
        std = feats.transpose(0, 1).reshape(c, -1).std(1)
        # neurons read channels that natural images drive: a near-silent channel (std under a tenth of the
        # median) divided by its own std would dominate the neuron, which would then fire only to the rare
        # image that wakes the channel: tuning no recording of natural images can reveal
        live = (std >= 0.1 * std.median()).nonzero()[:, 0]
        live = live if len(live) else torch.arange(c)
        scale = std.clamp_min(0.1 * float(std.median()) + 1e-12)  # per-channel scale
        k = min(channels, len(live))
        weights = torch.zeros(n_neurons, c, h, w)
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        for i in range(n_neurons):
            picked = live[torch.randperm(len(live), generator=gen)[:k]]
            signs = torch.ones(k)
            signs[1:] = torch.where(torch.rand(k - 1, generator=gen) < 0.3, -1.0, 1.0)
            amp = signs * (0.5 + torch.rand(k, generator=gen))
            cy = (h - 1) / 2 + (torch.rand((), generator=gen) - 0.5) * (h - 1) * 0.6
            cx = (w - 1) / 2 + (torch.rand((), generator=gen) - 0.5) * (w - 1) * 0.6
            rf = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rf_sigma ** 2))
            weights[i, picked] = (amp / scale[picked])[:, None, None] * (rf / rf.sum())[None]
        self.register_buffer("weights", weights.to(feats.device, feats.dtype).flatten(1))
        drive = feats.flatten(1) @ self.weights.T
        self.register_buffer("drive_mean", drive.mean(0))
        self.register_buffer("drive_std", drive.std(0).clamp_min(1e-6))

    @property
    def n_neurons(self) -> int:
        return len(self.targets)

    def _layer(self, images: torch.Tensor) -> torch.Tensor:
        if self._plan is None:  # the network's Probe; its pass stops after the layer, where the first pass learned
            self._plan = Plan(self.network)
        return self._plan.read([self.layer], images, keep_graph=torch.is_grad_enabled())[0]

    def drive(self, images: torch.Tensor) -> torch.Tensor:
        """Standardised drive (N, n_neurons) before the nonlinearity."""
        d = self._layer(images).flatten(1) @ self.weights.T
        return (d - self.drive_mean) / self.drive_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Noise-free rates (N, n_neurons): mean spike counts per presentation."""
        return self.gain * F.softplus(self.slope * (self.drive(images) - self.threshold))

    def respond(self, images: torch.Tensor, repetitions: int = 4, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """Poisson spike counts over ``repetitions`` presentations: (repetitions, N, n_neurons), float, on the CPU
        (drawn there from ``seed``: the same counts whatever the brain's device)."""
        rates = self.rates(images, batch_size)
        gen = torch.Generator().manual_seed(int(seed))
        return torch.poisson(rates.expand(int(repetitions), *rates.shape).contiguous(), generator=gen)

    def rates(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Noise-free rates (N, n_neurons) of many images, in batches, without gradients, on the CPU
        (:func:`insilico.evaluate.predict`)."""
        return evaluate.predict(self, images, batch_size=batch_size)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, n_neurons={self.n_neurons}"


@dataclasses.dataclass
class SimulatedExperiment:
    """A simulated recording session (see :func:`simulated_experiment`).

    Attributes
    ----------
    brain : SimulatedBrain
    images : tensor (n_stimuli, 3, 64, 64)       natural images shown for fitting
    responses : tensor (repetitions, n_stimuli, n_neurons)   Poisson counts
    held_out_images : tensor (n_held_out, 3, 64, 64)         natural images from the photos' held-out regions
    held_out_responses : tensor (repetitions, n_held_out, n_neurons)
    natural_max : tensor (n_neurons,)
        Each neuron's largest noise-free rate over all natural images (fitted and held out).
    kind : str
    """

    brain: SimulatedBrain
    images: torch.Tensor
    responses: torch.Tensor
    held_out_images: torch.Tensor
    held_out_responses: torch.Tensor
    natural_max: torch.Tensor
    kind: str

    @property
    def natural_images(self) -> torch.Tensor:
        return torch.cat([self.images, self.held_out_images])


def simulated_brain(kind: str = "matched", n_neurons: int = 64, seed: int = 0, layer: str | None = None,
                    **options) -> SimulatedBrain:
    """A :class:`SimulatedBrain` reading a bundled network (``kind`` in :data:`BRAINS`; ``layer`` overrides its layer)."""
    from .. import models

    if kind not in BRAINS:
        raise InsilicoError(f"unknown brain kind {kind!r}; choose one of {', '.join(BRAINS)}")
    name, default = BRAINS[kind]
    layer = layer or default
    calibration, _ = models.photos.sample(256, split="train", seed=10_000 + seed)
    return SimulatedBrain(models.load(name), layer, n_neurons, calibration=calibration, seed=seed, **options)


def simulated_experiment(kind: str = "matched", n_stimuli: int = 1000, n_neurons: int = 64, repetitions: int = 4,
                         held_out_per_class: int = 8, seed: int = 0, **options) -> SimulatedExperiment:
    """Show natural images to a simulated brain, with repeated noisy presentations.

    Parameters
    ----------
    kind : {"matched", "different"}
        Which network the neurons read (see the module docstring).
    n_stimuli : int
        Natural images (augmented training crops of the bundled photos) shown for fitting.
    n_neurons, repetitions : int
    held_out_per_class : int
        Held-out natural crops per photo (16 photos), from regions no model was trained on.
    seed : int
    **options
        More :class:`SimulatedBrain` arguments.

    Example
    -------
    >>> exp = simulated_experiment("matched", n_stimuli=64, n_neurons=4, held_out_per_class=1)  # doctest: +SKIP
    >>> tuple(exp.responses.shape), tuple(exp.held_out_responses.shape), tuple(exp.natural_max.shape)  # doctest: +SKIP
    ((4, 64, 4), (4, 16, 4), (4,))
    """
    from .. import models

    brain = simulated_brain(kind, n_neurons, seed, **options)
    images, _ = models.photos.sample(n_stimuli, split="train", seed=seed)
    held, _ = models.photos.held_out(held_out_per_class, seed=1234 + seed)
    responses = brain.respond(images, repetitions, seed=seed)
    held_responses = brain.respond(held, repetitions, seed=seed + 1)
    natural_max = torch.cat([brain.rates(images), brain.rates(held)]).amax(0)
    return SimulatedExperiment(brain, images, responses, held, held_responses, natural_max, kind)


__all__ = ["BRAINS", "SimulatedBrain", "SimulatedExperiment", "simulated_brain", "simulated_experiment"]
