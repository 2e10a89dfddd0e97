"""Recurrent convolutional networks with bottom-up, lateral and top-down connections.

After Spoerer, McClure & Kriegeskorte (2017), "Recurrent convolutional neural
networks: a better model of biological object recognition", Front. Psychol. 8:1551.
Layer ``i`` at time step ``t`` computes

    h[i, t] = act(norm(bottom_up(pool(h[i-1, t])) + lateral(h[i, t-1]) + top_down(h[i+1, t-1])))

with ``h[-1, t]`` the (normalised) image, presented at every step, and a readout
(global average pool + linear) of the top layer at every step. Variants drop
connections: "B" (feed-forward, unrolled), "BL", "BT", "BLT".

Every submodule is called exactly once per time step, t = 0 .. T-1, including
t = 0, where ``lateral`` and ``top_down`` act on a zero state and, having no
bias, contribute exactly zero. So a module's call index equals the time step
and ``"layers.1.lateral@3"`` is layer 1's lateral input at step 3. Only
``normalize`` runs once per forward pass (step 0).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InsilicoError
from . import photos
from .minialex import scaled_width
from .normalize import Normalize

VARIANTS = ("B", "BL", "BT", "BLT")


class BLTLayer(nn.Module):
    """One recurrent convolutional layer (see the module docstring for the update rule).

    Parameters
    ----------
    in_channels, channels : int
        Channels of the input from below and of this layer's state.
    above : int or None
        Channels of the layer above (for top-down input), or None for no top-down.
    lateral : bool
        Whether the layer has lateral (same layer, previous step) connections.
    kernel_size, stride : int
        Of the bottom-up convolution.
    pool : bool
        Max-pool (2 x 2) the input from below before the bottom-up convolution.
    """

    def __init__(self, in_channels: int, channels: int, above: int | None, lateral: bool,
                 kernel_size: int = 3, stride: int = 1, pool: bool = True):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bottom_up = nn.Conv2d(in_channels, channels, kernel_size, stride, padding=kernel_size // 2)
        self.lateral = nn.Conv2d(channels, channels, 3, padding=1, bias=False) if lateral else None
        self.top_down = (nn.Sequential(nn.Conv2d(above, channels, 3, padding=1, bias=False),
                                       nn.Upsample(scale_factor=2, mode="nearest"))
                         if above is not None else None)
        self.norm = nn.GroupNorm(4, channels)
        self.act = nn.ReLU()

    def forward(self, below: torch.Tensor, state: torch.Tensor | None,
                above: torch.Tensor | None) -> torch.Tensor:
        """One time step; ``state``/``above`` are this/the upper layer's previous output (zeros at t=0)."""
        z = self.bottom_up(self.pool(below))
        if self.lateral is not None:
            z = z + self.lateral(state if state is not None else z.new_zeros(z.shape))
        if self.top_down is not None:
            if above is None:
                n, _, h, w = z.shape
                c = self.top_down[0].in_channels
                above = z.new_zeros(n, c, h // 2, w // 2)
            z = z + self.top_down(above)
        return self.act(self.norm(z))


class BLTNet(nn.Module):
    """Recurrent CNN ("B", "BL", "BT" or "BLT") for 3 x 64 x 64 input, unrolled over ``timesteps``.

    ========= ==================================== ===========
    unit      bottom-up                            state
    ========= ==================================== ===========
    layers.0  Conv 3->32, 7x7, stride 4            32 x 16 x 16
    layers.1  MaxPool 2, Conv 32->64, 3x3          64 x 8 x 8
    layers.2  MaxPool 2, Conv 64->128, 3x3         128 x 4 x 4
    readout   global average pool, Linear 128->16  logits
    ========= ==================================== ===========

    Lateral convolutions are 3x3 within a layer; top-down convolutions are
    3x3 on the layer above, then nearest-neighbour upsampled by 2. With
    ``width=w`` the layers have ``w`` times the channels, rounded to a
    multiple of 4 (the GroupNorm's groups; :func:`~insilico.models.minialex.scaled_width`).
    With ``depth=d`` there are ``d`` layers, each (after the first) pooling by 2
    and doubling the channels (``layers.3``: 256 x 2 x 2 at 64 px); the input
    side must then be a multiple of ``4 * 2**(d - 1)`` for top-down to match.

    Parameters
    ----------
    variant : {"B", "BL", "BT", "BLT"}
        Which connections exist (case-insensitive).
    timesteps : int
        Number of time steps T the network is unrolled for.
    n_classes : int
        Output logits.
    width : float
        Factor on the layers' channels (default 1: 32, 64, 128, the bundled weights' shapes).
    depth : int
        Number of recurrent layers (default 3, the bundled networks; at least 1).

    Raises
    ------
    InsilicoError
        An unknown variant, ``timesteps < 1``, ``depth < 1`` or a ``width`` that is not a positive number.

    Examples
    --------
    >>> net = BLTNet("BLT", timesteps=4).eval()
    >>> tuple(net(torch.rand(2, 3, 64, 64)).shape)          # last step's logits
    (2, 16)
    >>> tuple(net.forward_steps(torch.rand(2, 3, 64, 64)).shape)   # every step
    (2, 4, 16)
    >>> BLTNet("BL", width=0.5).readout[-1].in_features
    64
    >>> deeper = BLTNet("BT", depth=4).eval()                 # layers.3: 256 x 2 x 2
    >>> tuple(deeper(torch.rand(1, 3, 64, 64)).shape), deeper.readout[-1].in_features
    ((1, 16), 256)
    """

    input_size = (3, 64, 64)

    def __init__(self, variant: str = "BLT", timesteps: int = 4, n_classes: int = len(photos.CLASSES),
                 classes: list[str] | None = None, width: float = 1.0, depth: int = 3):
        super().__init__()
        variant = str(variant).upper()
        if variant not in VARIANTS:
            raise InsilicoError(f"unknown BLT variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if timesteps < 1:
            raise InsilicoError(f"timesteps must be >= 1, got {timesteps}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise InsilicoError(f"depth={depth!r}: the number of layers must be an int >= 1 (3: the bundled networks)")
        self.variant, self.timesteps, self.width, self.depth = variant, int(timesteps), width, depth
        self.classes = list(classes) if classes is not None else list(photos.CLASSES)[:n_classes]
        lat, td = "L" in variant, "T" in variant
        widths = tuple(scaled_width(32 * 2 ** i, width, multiple=4) for i in range(depth))
        self.normalize = Normalize(photos.MEAN, photos.STD)
        self.layers = nn.ModuleList()
        for i, c in enumerate(widths):
            above = widths[i + 1] if td and i + 1 < len(widths) else None
            if i == 0:
                layer = BLTLayer(3, c, above, lat, kernel_size=7, stride=4, pool=False)
            else:
                layer = BLTLayer(widths[i - 1], c, above, lat)
            self.layers.append(layer)
        self.readout = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], n_classes))

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every time step, (N, T, n_classes), for pixel-space images in [0, 1]."""
        x = self.normalize(x)
        states: list[torch.Tensor | None] = [None] * len(self.layers)
        logits = []
        for _ in range(self.timesteps):
            below, new = x, []
            for i, layer in enumerate(self.layers):
                above = states[i + 1] if i + 1 < len(self.layers) else None
                below = layer(below, states[i], above)
                new.append(below)
            states = new
            logits.append(self.readout(states[-1]))
        return torch.stack(logits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The LAST time step's logits (N, n_classes); record ``readout@t`` for step t."""
        return self.forward_steps(x)[:, -1]

    def extra_repr(self) -> str:
        extra = [f"width={self.width}"] * (self.width != 1) + [f"depth={self.depth}"] * (self.depth != 3)
        return ", ".join([f"variant={self.variant!r}", f"timesteps={self.timesteps}", *extra])
