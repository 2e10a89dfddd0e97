"""Module kinds: which modules are activations, pass-throughs, convolutions, spatial layers.

The one list of each kind, as classes and, for modules of libraries insilico
does not import (timm, Hugging Face transformers, torchvision's ops), as class
names. A module counts as a kind when it is an instance of one of the classes
or when its class, or one of its base classes, has one of the names (so a
subclass of timm's ``GELUTanh`` is an activation too).

============== =================================================================================
list           modules
============== =================================================================================
ACTIVATIONS    nonlinearities (ReLU ... Hardsigmoid, GLU); names: timm ``GELUTanh``, ``QuickGELU``,
               HF ``NewGELUActivation``, ``GELUActivation``, ``QuickGELUActivation``, ...
INERT          modules that leave values as they are in eval (Identity, Dropout, Flatten; names:
               timm ``DropPath``, torchvision ``StochasticDepth``)
PASS_THROUGH   per-channel modules that may sit between a layer and its nonlinearity: the norms
               over a batch or a group (BatchNorm, GroupNorm, InstanceNorm; name:
               torchvision ``FrozenBatchNorm2d``) and INERT
CONV           Conv1d/2d/3d (subclasses too: timm ``Conv2dSame``, ``StdConv2d``)
CONV_LINEAR    CONV and Linear (name: HF ``Conv1D``, GPT-2's linear layer)
SPATIAL        Conv2d and 2-d pooling (units with a receptive field)
LOCAL          SPATIAL without the adaptive pools (a local receptive field, not the whole image)
MAPS_1D        modules whose two-axis outputs are ``(C, L)`` maps, not ``(T, D)`` tokens
============== =================================================================================

Example
-------
>>> from torch import nn
>>> is_activation(nn.GELU()), is_activation(nn.Linear(2, 2)), is_pass_through(nn.BatchNorm2d(3))
(True, False, True)
>>> class GELUTanh(nn.Module):  # timm's, by name
...     pass
>>> is_activation(GELUTanh())
True
"""
from __future__ import annotations

from torch import nn

#: Nonlinearity modules (elementwise, and GLU, which halves its last axis).
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Mish, nn.Softplus, nn.Softsign, nn.Sigmoid, nn.LogSigmoid, nn.Tanh, nn.Tanhshrink, nn.Hardtanh,
               nn.Hardswish, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.GLU)
#: Class names of activation modules of other libraries (timm, Hugging Face transformers).
ACTIVATION_NAMES = frozenset({
    "GELUTanh", "QuickGELU", "GELU", "SiLU", "Swish", "Mish", "HardSwish", "HardSigmoid", "HardMish", "Sigmoid",
    "Tanh", "PReLU", "StarReLU", "SquaredReLU",                                                    # timm
    "NewGELUActivation", "GELUActivation", "FastGELUActivation", "QuickGELUActivation", "PytorchGELUTanh",
    "ClippedGELUActivation", "AccurateGELUActivation", "MishActivation", "SiLUActivation", "ReLUSquaredActivation",
    "LaplaceActivation",                                                                          # transformers
})
#: Modules that leave their input's values as they are in eval mode (they may reshape: Flatten).
INERT = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
         nn.Flatten, nn.Unflatten)
INERT_NAMES = frozenset({"DropPath", "StochasticDepth", "DropBlock2d"})
#: Per-channel modules that may sit between a conv / linear layer and its nonlinearity (and INERT).
PASS_THROUGH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d) + INERT
PASS_THROUGH_NAMES = frozenset({"FrozenBatchNorm2d"}) | INERT_NAMES
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_LINEAR = CONV + (nn.Linear,)
CONV_LINEAR_NAMES = frozenset({"Conv1D"})
LOCAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)
SPATIAL = LOCAL + (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
#: Modules whose two-axis outputs are ``(C, L)`` maps (channels, positions), not ``(T, D)`` tokens.
MAPS_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d,
           nn.BatchNorm1d, nn.InstanceNorm1d)


def _named(module, names: frozenset) -> bool:
    return any(cls.__name__ in names for cls in type(module).__mro__[:-2])  # not nn.Module, object


def is_activation(module: nn.Module | None) -> bool:
    """True for a nonlinearity module (:data:`ACTIVATIONS`, or a class named in :data:`ACTIVATION_NAMES`)."""
    return module is not None and (isinstance(module, ACTIVATIONS) or _named(module, ACTIVATION_NAMES))


def is_inert(module: nn.Module | None) -> bool:
    """True for a module that leaves values as they are in eval (:data:`INERT`: Identity, Dropout, Flatten...)."""
    return module is not None and (isinstance(module, INERT) or _named(module, INERT_NAMES))


def is_pass_through(module: nn.Module | None) -> bool:
    """True for a per-channel norm or an inert module (:data:`PASS_THROUGH`)."""
    return module is not None and (isinstance(module, PASS_THROUGH) or _named(module, PASS_THROUGH_NAMES))


def is_conv_linear(module: nn.Module | None) -> bool:
    """True for Conv1d/2d/3d and Linear modules (and subclasses; HF's ``Conv1D`` by name)."""
    return module is not None and (isinstance(module, CONV_LINEAR) or _named(module, CONV_LINEAR_NAMES))


def input_channels(model: nn.Module, default: int = 3) -> int:
    """``in_channels`` of the model's first convolution (module order); ``default`` without one."""
    for module in model.modules():
        if isinstance(module, CONV):
            return int(module.in_channels)
    return default


__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "INERT", "INERT_NAMES", "PASS_THROUGH", "PASS_THROUGH_NAMES", "CONV",
           "CONV_LINEAR", "CONV_LINEAR_NAMES", "LOCAL", "SPATIAL", "MAPS_1D", "is_activation", "is_inert",
           "is_pass_through", "is_conv_linear", "input_channels"]
