"""Several models side by side as one ``nn.Module``: what model-comparing tools (controversial stimuli, MAD) run.

One :class:`insilico.Probe` and one synthesis record and optimise through all
the models at once, since each model is a submodule named by its name.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import InsilicoError


class ModelGroup(nn.Module):
    """Several models side by side on the same input; ``forward`` returns the tuple of their outputs.

    The models become submodules named by ``names`` (so ``"blt.layers.2"``
    is a unit of model ``blt``), which lets one :class:`insilico.Probe` and
    one synthesis run record and optimise through all of them.

    Parameters
    ----------
    models : dict name -> nn.Module, or list of nn.Module
        A list is named by each model's ``.name`` (bundled models have one),
        else ``model0``, ``model1``, ...

    Example
    -------
    >>> g = ModelGroup([torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)])
    >>> g.names, [tuple(o.shape) for o in g(torch.rand(5, 2))]
    (['model0', 'model1'], [(5, 3), (5, 4)])
    """

    def __init__(self, models: Mapping[str, nn.Module] | Sequence[nn.Module]):
        super().__init__()
        if isinstance(models, ModelGroup):
            models = {n: getattr(models, n) for n in models.names}
        if isinstance(models, Mapping):
            items = [(str(k), m) for k, m in models.items()]
        else:
            items, seen = [], set()
            for k, m in enumerate(models):
                name = str(getattr(m, "name", "") or f"model{k}")
                while name in seen:
                    name = f"{name}_{k}"
                seen.add(name)
                items.append((name, m))
        if len(items) < 2:
            raise InsilicoError(f"need two or more models, got {len(items)}")
        ids = [id(m) for _, m in items]
        if len(set(ids)) != len(ids):
            raise InsilicoError("the same model object was given twice; pass different models "
                                "(copy.deepcopy(model) for a copy)")
        self.names = []
        for name, m in items:
            if not isinstance(m, nn.Module):
                raise InsilicoError(f"model {name!r} is a {type(m).__name__}, not a torch.nn.Module")
            if not name.isidentifier():
                raise InsilicoError(f"model name {name!r} must be an identifier (letters, digits, _): it becomes "
                                    "a module path")
            self.add_module(name, m)
            self.names.append(name)

    def forward(self, x: torch.Tensor) -> tuple:
        return tuple(getattr(self, name)(x) for name in self.names)

    def extra_repr(self) -> str:
        return f"names={self.names}"


__all__ = ["ModelGroup"]
