"""Classification objectives: a classifier's loss per sample, the objective of class attacks (PGD, FGSM).

:class:`ClassLoss` reads the model's logits (unit ``""`` by default) and gives
one value per sample to maximize: the loss of the true class (untargeted
attack), or minus the loss of a target class (targeted attack), as
cross-entropy (torchattacks' PGD) or the logit margin (Carlini & Wagner's
``f6``). After each call ``.success`` says which samples are adversarial, which
the attacks' stopping rule reads.

Example
-------
>>> import torch
>>> obj = ClassLoss(torch.tensor([1]), targeted=True, loss="margin")
>>> obj({"": torch.tensor([[0.0, 2.0, 1.0]])}).tolist(), obj.success.tolist()
([1.0], [True])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Objective
from ..errors import InsilicoError
from ..units import Unit

#: The class losses :class:`ClassLoss` knows.
LOSSES = ("ce", "margin")


class ClassLoss(Objective):
    """Per-sample classification loss of the model's logits, to maximize in an attack.

    Untargeted: the loss of the true class (cross-entropy, or the margin
    ``max_{k != y} z_k - z_y``); targeted: minus the loss of the target class.
    After each call ``.success`` (N,) says which samples are adversarial
    (untargeted: predicted class != label; targeted: == target).

    Parameters
    ----------
    classes : tensor (N,)
        True labels (untargeted) or target classes (targeted).
    targeted : bool
    loss : {"ce", "margin"}
        Default "ce" (as torchattacks' PGD).
    unit : str
        Where the logits (N, K) are: default ``""``, the model's output.

    Raises
    ------
    InsilicoError
        An unknown loss; at the first call, an output that is not (N, K)
        logits, or a class outside 0 .. K-1 (the message names ``labels``,
        or ``target`` for a targeted attack, and the range).

    Example
    -------
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> obj = ClassLoss(torch.tensor([0, 0]), targeted=False, loss="margin")
    >>> obj({"": logits}).tolist(), obj.success.tolist()
    ([-2.0, 3.0], [False, True])
    """

    def __init__(self, classes: torch.Tensor, targeted: bool, loss: str = "ce", unit: str = ""):
        if loss not in LOSSES:
            raise InsilicoError(f"loss must be one of {LOSSES}, not {loss!r}")
        self.classes, self.targeted, self.loss = classes.long(), bool(targeted), loss
        self.unit = Unit.parse(unit)
        self.units = (self.unit,)
        self.success: torch.Tensor | None = None
        self._whole: tuple | None = None  # (full objective, rows) of a subset: success is reported to the full one
        self._checked = False  # classes checked against the logits' width (at the first call)

    def _check_classes(self, y: torch.Tensor, width: int) -> None:
        bad = y[(y < 0) | (y >= width)]
        if bad.numel():
            what = "target" if self.targeted else "labels"
            raise InsilicoError(f"{what}: class {int(bad[0])} is out of range, the model's output at "
                                f"{str(self.unit)!r} has {width} classes: give {what} in 0 .. {width - 1}")
        self._checked = True

    def forward(self, acts, images):
        logits = acts[self.unit]
        if logits.ndim != 2:
            raise InsilicoError(f"class attacks need logits (N, classes) at {str(self.unit)!r}; got "
                                f"{tuple(logits.shape)}: pass target=an Objective for other outputs")
        y = self.classes.to(logits.device)
        if not self._checked:  # once: a class past the logits would be a raw IndexError in the loss
            self._check_classes(y, logits.shape[1])
        if self.loss == "ce":
            value = F.cross_entropy(logits, y, reduction="none")
        else:
            true = logits.gather(1, y[:, None])[:, 0]
            other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
            value = other - true
        pred = logits.detach().argmax(dim=1)
        self.success = pred == y if self.targeted else pred != y
        if self._whole is not None:
            whole, rows = self._whole
            whole.success = torch.zeros(whole.classes.shape[0], dtype=torch.bool, device=y.device).index_copy(
                0, rows.to(y.device), self.success)
        return -value if self.targeted else value

    def subset(self, rows: torch.Tensor) -> ClassLoss:
        """The loss for the samples ``rows``; its ``success`` is also written, full size, to this objective."""
        cut = ClassLoss(self.classes.index_select(0, rows.to(self.classes.device)), self.targeted, self.loss,
                        str(self.unit))
        cut._whole, cut._checked = (self, rows), self._checked
        return cut

    def __repr__(self) -> str:
        return f"ClassLoss({'targeted' if self.targeted else 'untargeted'}, loss={self.loss!r})"


__all__ = ["ClassLoss", "LOSSES"]
