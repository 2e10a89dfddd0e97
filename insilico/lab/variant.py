"""What a network is made of: one :class:`Variant` names its four elements (Kietzmann, McClure & Kriegeskorte).

=================== ===================================================================================
element             options (fields of :class:`Variant`)
=================== ===================================================================================
architecture        ``architecture``: ``"minialex"`` or a BLT family member ``"b"``, ``"bl"``, ``"bt"``,
                    ``"blt"`` (:mod:`insilico.models`); ``width`` (factor on every layer's channels);
                    ``depth`` (layers of the BLT family); ``timesteps`` (its recurrent depth)
input statistics    ``class_weights`` (relative frequency of each of the 16 photo classes), ``blur``
                    (Gaussian sigma in pixels of the 64-px crop), ``contrast`` (factor about each crop's
                    mean), ``clutter`` (fraction of crops with patches of other crops), ``size`` (input side)
objective           ``objective``: ``"classification"``, ``"autoencoding"``, ``"sparse"`` (reconstruction plus
                    an L1 activity penalty ``sparsity``), ``"slowness"``, ``"contrastive"``
                    (:mod:`insilico.lab.objectives`)
learning rule       ``rule``: ``"backprop"`` or ``"feedback_alignment"`` (:mod:`insilico.lab.rules`)
=================== ===================================================================================

Example
-------
>>> v = Variant(objective="sparse", rule="feedback_alignment")
>>> v.name, v.replace(blur=1.5).name
('sparse+feedback_alignment', 'blur1.5+sparse+feedback_alignment')
>>> Variant(objective="clasification")
Traceback (most recent call last):
...
insilico.errors.InsilicoError: Variant(objective='clasification') is not an objective; choose one of classification, autoencoding, sparse, slowness, contrastive (did you mean 'classification'?)
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from torch import nn

from ..errors import InsilicoError
from ..models import photos
from ..models.blt import BLTNet
from ..models.minialex import MiniAlexNet, scaled_width
from ..options import Options
from .objectives import OBJECTIVES
from .rules import RULES, feedback_alignment

#: Architectures a variant can name: the bundled ``minialex`` and the BLT family.
ARCHITECTURES = ("minialex", "b", "bl", "bt", "blt")


def _choice(value, choices, what: str, field: str) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InsilicoError(f"Variant({field}={value!r}) is not {what}; choose one of {', '.join(choices)}{hint}")


@dataclass(frozen=True)
class Variant(Options):
    """One network to train: its architecture, input statistics, objective and learning rule.

    Attributes
    ----------
    architecture : str
        One of :data:`ARCHITECTURES` (default ``"minialex"``; it needs ``size=64``).
    width : float
        Factor on the channels of every layer (default 1: the bundled widths; ``MiniAlexNet(width=)``,
        ``BLTNet(width=)``).
    depth : int, optional
        Layers of a BLT-family network (default None: its 3; ``BLTNet(depth=)``); ``minialex`` has its own 5
        convolutions and refuses another depth.
    timesteps : int
        Time steps of a BLT-family network (default 4; ignored by ``minialex``).
    class_weights : tuple of 16 floats, optional
        Relative frequency of each class of :data:`insilico.models.photos.CLASSES` in training (default:
        uniform). The held-out test is class-balanced whatever the training frequencies.
    blur : float
        Gaussian blur sigma in pixels of the 64-px crop, applied to every training image (default 0).
    contrast : float
        Training images become ``mean + contrast * (x - mean)`` per image (default 1; in (0, 1]).
    clutter : float
        Fraction of training images cluttered with patches of other crops (default 0).
    size : int
        Side in pixels the 64-px crops are resized to (default 64; BLT family: a multiple of 16).
    objective : str
        One of :data:`~insilico.lab.objectives.OBJECTIVES` (default ``"classification"``).
    sparsity : float
        Weight of the L1 activity penalty of the ``"sparse"`` objective (default 0.01: minialex's code, 200 steps
        of 32 crops, keeps a mean |code| of 0.34 and a linear probe at 0.25 (chance 0.06); at 0.03 0.20 and 0.29;
        at 0.05 and 0.1 the code collapses to zero (mean |code| < 1e-4) and stops reconstructing).
    rule : str
        One of :data:`~insilico.lab.rules.RULES` (default ``"backprop"``).
    lr : float
        AdamW learning rate (one-cycle schedule; default 2e-3).
    """

    architecture: str = "minialex"
    width: float = 1.0
    depth: int | None = None
    timesteps: int = 4
    class_weights: tuple | None = None
    blur: float = 0.0
    contrast: float = 1.0
    clutter: float = 0.0
    size: int = 64
    objective: str = "classification"
    sparsity: float = 0.01
    rule: str = "backprop"
    lr: float = 2e-3

    def validate(self):
        _choice(self.architecture, ARCHITECTURES, "an architecture", "architecture")
        _choice(self.objective, OBJECTIVES, "an objective", "objective")
        _choice(self.rule, RULES, "a learning rule", "rule")
        if self.class_weights is not None:
            weights = tuple(float(w) for w in self.class_weights)
            if len(weights) != len(photos.CLASSES) or min(weights) < 0 or sum(weights) <= 0:
                raise InsilicoError(f"Variant(class_weights=...) needs {len(photos.CLASSES)} non-negative weights "
                                    f"(one per class of insilico.models.photos.CLASSES), not {self.class_weights!r}")
            object.__setattr__(self, "class_weights", weights)
        if not 0 < self.contrast <= 1 or self.blur < 0 or not 0 <= self.clutter <= 1:
            raise InsilicoError(f"Variant: contrast must be in (0, 1], blur >= 0 and clutter in [0, 1]; got "
                                f"contrast={self.contrast}, blur={self.blur}, clutter={self.clutter}")
        if self.architecture == "minialex" and self.size != 64:
            raise InsilicoError(f"Variant(architecture='minialex') takes 64-px input, not size={self.size}: use "
                                "size=64, or a BLT-family architecture for smaller inputs")
        if self.size < 16 or self.size % 16:
            raise InsilicoError(f"Variant(size={self.size}): the input side must be a multiple of 16, >= 16")
        if self.depth is not None:
            self._check_depth()
        scaled_width(1, self.width)  # refuses a width that is not a positive number, naming it
        if self.timesteps < 1 or self.lr <= 0 or self.sparsity < 0:
            raise InsilicoError(f"Variant: timesteps >= 1, lr > 0 and sparsity >= 0 needed; got timesteps="
                                f"{self.timesteps}, lr={self.lr}, sparsity={self.sparsity}")
        return self

    def _check_depth(self) -> None:
        """A BLT-family depth of at least 1 whose top layer's map the input side halves into evenly."""
        if self.architecture == "minialex":
            raise InsilicoError(f"Variant(depth={self.depth!r}): minialex has its own 5 convolutions; depth is an "
                                "option of the BLT family (architecture='b', 'bl', 'bt' or 'blt')")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 1:
            raise InsilicoError(f"Variant(depth={self.depth!r}): the number of layers must be an int >= 1")
        if self.size % (4 * 2 ** (self.depth - 1)):
            raise InsilicoError(f"Variant(depth={self.depth}, size={self.size}): {self.depth} layers halve a "
                                f"{self.size}-px input's map (side / 4) {self.depth - 1} times; use a size that is a "
                                f"multiple of {4 * 2 ** (self.depth - 1)}, or fewer layers")

    @property
    def name(self) -> str:
        """A short name: the fields that differ from the defaults, joined by ``+`` (``"baseline"`` for none)."""
        parts = [self.architecture] if self.architecture != "minialex" else []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default or field.name in ("objective", "rule", "architecture"):
                continue
            parts.append(f"{field.name}{value}" if not isinstance(value, tuple) else "class_weights")
        parts += [v for v in (self.objective, self.rule) if v not in ("classification", "backprop")]
        return "+".join(parts) or "baseline"

    def settings(self) -> dict:
        """Every field as plain JSON (the variant's part of a study's identity)."""
        return {f: (list(v) if isinstance(v, tuple) else v) for f, v in dataclasses.asdict(self).items()}


def build(variant: Variant, seed: int = 0) -> nn.Module:
    """The untrained network of ``variant``, its learning rule applied (init from torch's global generator:
    call inside :func:`insilico.seeding.keep_global_rng` after ``torch.manual_seed``)."""
    if variant.architecture == "minialex":
        model = MiniAlexNet(width=variant.width)
    else:
        model = BLTNet(variant.architecture.upper(), timesteps=variant.timesteps, width=variant.width,
                       depth=variant.depth or 3)
        model.input_size = (3, variant.size, variant.size)
    if variant.rule == "feedback_alignment":
        feedback_alignment(model, seed=seed)
    return model


__all__ = ["ARCHITECTURES", "Variant", "build"]
