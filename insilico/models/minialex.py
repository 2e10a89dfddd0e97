"""MiniAlexNet: an AlexNet-shaped CNN small enough to train on two CPU cores.

The module tree follows torchvision's ``AlexNet`` so unit addresses read the
same (``features.0`` is conv1, ``features.3`` conv2, ``features.6/8/10``
conv3-5, ``classifier.1/4/6`` the linear layers), with a ``normalize`` module
in front so the model takes pixel-space input.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InsilicoError
from . import photos
from .normalize import Normalize


def scaled_width(channels: int, width: float, multiple: int = 1) -> int:
    """``channels`` times ``width``, rounded to the nearest multiple of ``multiple`` (at least ``multiple``).

    The one rule of the bundled architectures' ``width=`` factor: ``width=1`` gives ``channels`` back, so
    the shipped weights load into the default networks unchanged.

    Raises
    ------
    InsilicoError
        ``width`` is not a positive number.

    Example
    -------
    >>> scaled_width(48, 0.5), scaled_width(48, 1.0), scaled_width(32, 0.3, multiple=4)
    (24, 48, 8)
    """
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        raise InsilicoError(f"width={width!r}: the width factor must be a positive number (1.0: the bundled widths)")
    return max(multiple, multiple * round(channels * width / multiple))


class MiniAlexNet(nn.Module):
    """AlexNet layout for 3 x 64 x 64 input.

    ======== ================================ =============
    unit     layer                            output
    ======== ================================ =============
    features.0   Conv 3->48, 9x9, stride 2    48 x 30 x 30
    features.2   MaxPool 3, stride 2          48 x 14 x 14
    features.3   Conv 48->96, 5x5             96 x 14 x 14
    features.5   MaxPool 3, stride 2          96 x 6 x 6
    features.6   Conv 96->128, 3x3            128 x 6 x 6
    features.8   Conv 128->128, 3x3           128 x 6 x 6
    features.10  Conv 128->96, 3x3            96 x 6 x 6
    features.12  MaxPool 3, stride 2          96 x 2 x 2
    classifier.1 Linear 384->256 (after Dropout)
    classifier.4 Linear 256->256 (after Dropout)
    classifier.6 Linear 256->n_classes
    ======== ================================ =============

    With ``width=w`` every convolution's and hidden linear layer's width is scaled by ``w``
    (:func:`scaled_width`; the table is ``w=1``, the bundled weights' shapes).

    Parameters
    ----------
    n_classes : int
        Output logits; 16 for the bundled photo task.
    classes : list of str, optional
        Class names (default: :data:`insilico.models.photos.CLASSES`).
    width : float
        Factor on every hidden layer's width (default 1: the bundled network).

    Raises
    ------
    InsilicoError
        ``width`` is not a positive number.

    Examples
    --------
    >>> net = MiniAlexNet().eval()
    >>> tuple(net(torch.rand(2, 3, 64, 64)).shape)
    (2, 16)
    >>> MiniAlexNet(width=0.5).features[0].out_channels
    24
    """

    input_size = (3, 64, 64)

    def __init__(self, n_classes: int = len(photos.CLASSES), classes: list[str] | None = None, width: float = 1.0):
        super().__init__()
        self.classes = list(classes) if classes is not None else list(photos.CLASSES)[:n_classes]
        self.width = width
        c1, c2, c3, c4, c5, h = (scaled_width(c, width) for c in (48, 96, 128, 128, 96, 256))
        self.normalize = Normalize(photos.MEAN, photos.STD)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=9, stride=2, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(c5 * 2 * 2, h), nn.ReLU(),
            nn.Dropout(0.3), nn.Linear(h, h), nn.ReLU(),
            nn.Linear(h, n_classes),
        )
        # conv1 starts near zero (a tenth of the default scale): what it learns from the
        # images in a short CPU training then dominates its random initialisation, and
        # the filters come out smooth, oriented and localized instead of noisy.
        with torch.no_grad():
            self.features[0].weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) for pixel-space images (N, 3, 64, 64) in [0, 1]."""
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(x, 1))

    def extra_repr(self) -> str:
        return f"width={self.width}" if self.width != 1 else ""
