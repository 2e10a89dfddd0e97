"""The result of a synthesis: images, per-sample traces, settings; saves, loads and plots itself.

A :class:`insilico.results.Result` (the one result protocol: save, load,
concat, plot, versions). It keeps its own file format (``FORMAT`` 1, so files
written before the protocol still load): ONE file written by ``torch.save``
that holds only tensors, numbers, strings and a JSON string of the settings
(read back with ``weights_only=True``; no pickled callables). It records the
library, torch, numpy and Python versions (:func:`insilico.results.versions`),
the seeds, and (unless ``state=False``) the engine's state, so a loaded result
can be continued with :meth:`insilico.synthesis.Synthesis.resume`. ``load``
also reads a result written by the generic :meth:`Result.save
<insilico.results.Result.save>`.

Example
-------
>>> import torch, tempfile, os
>>> r = SynthesisResult(images=torch.rand(2, 1, 4, 4), trace=torch.tensor([[1.0, 2.0], [1.5, float("nan")]]),
...                     steps=torch.tensor([2, 1]), stop_reasons=["steps", "target_reached"], labels=["a", "b"])
>>> path = os.path.join(tempfile.mkdtemp(), "r.pt")
>>> r.save(path)
>>> SynthesisResult.load(path).traces[1].tolist()
[2.0]
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from .. import results as _results
from ..errors import InsilicoError
from ..results import Result, versions

#: This result's own file format (``insilico.results.FORMAT`` is the generic one's).
FORMAT = 1


@dataclasses.dataclass
class SynthesisResult(Result):
    """Images and how they were made.

    Attributes
    ----------
    images : tensor (N, C, H, W)
        Final images in [0, 1], on the CPU.
    trace : tensor (T, N)
        Objective value of every sample at every step (before that step's
        update); NaN after a sample stopped.
    steps : tensor (N,)
        Steps each sample took.
    stop_reasons : list of str
        Which rule stopped each sample (``"steps"``: the step budget ran out;
        ``"running"``: not stopped, e.g. interrupted).
    labels : list of str
        What each sample is (e.g. the unit address, ``"#k"`` for the k-th copy).
    settings : dict
        JSON-able settings (objective, parameterization, transforms, optimizer, seed ...).
    seeds : list of int
        The seed of each sample's generator.
    versions : dict
        Library versions that made it.
    state : dict, optional
        Engine state for resuming (parameters, optimizer state, generator states).
    """

    images: torch.Tensor
    trace: torch.Tensor
    steps: torch.Tensor
    stop_reasons: list
    labels: list
    settings: dict = dataclasses.field(default_factory=dict)
    seeds: list = dataclasses.field(default_factory=list)
    versions: dict = dataclasses.field(default_factory=versions)
    state: dict | None = None

    #: Fields with a sample axis first; ``trace`` (T, N) is joined along N by :meth:`concat`.
    sample_fields: ClassVar[tuple[str, ...]] = ("images", "steps", "stop_reasons", "labels", "seeds")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def traces(self) -> list[torch.Tensor]:
        """Per-sample traces, each as long as the steps that sample took."""
        return [self.trace[: int(s), i] for i, s in enumerate(self.steps)]

    @property
    def losses(self) -> torch.Tensor:
        """Per-sample traces as one tensor (N, T): row ``i`` is sample ``i``'s objective value at every step
        (the value maximized or minimized), NaN after the sample stopped."""
        return self.trace.T

    @property
    def values(self) -> torch.Tensor:
        """Each sample's last recorded objective value (N,)."""
        return torch.stack([t[-1] if len(t) else torch.tensor(float("nan")) for t in self.traces])

    @property
    def seed(self):
        return self.settings.get("seed")

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike, state: bool = True) -> None:
        """Write to ``path`` (one ``torch.save`` file of tensors + JSON settings)."""
        blob = {
            "format": FORMAT,
            "images": self.images.cpu(),
            "trace": self.trace.cpu(),
            "steps": self.steps.cpu(),
            "json": json.dumps({"stop_reasons": list(self.stop_reasons), "labels": list(self.labels),
                                "settings": self.settings, "seeds": [int(s) for s in self.seeds],
                                "versions": self.versions}),
            "state": _to_cpu(self.state) if state and self.state is not None else None,
        }
        torch.save(blob, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SynthesisResult:
        """Read a result written by :meth:`save` (or by the generic :meth:`insilico.results.Result.save`)."""
        if not os.path.exists(path):
            raise InsilicoError(f"no synthesis result at {os.fspath(path)!r}")
        try:
            blob = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise InsilicoError(f"{os.fspath(path)!r} is not a synthesis result saved by insilico: {e}") from e
        if isinstance(blob, dict) and blob.get("format") == _results.FORMAT and "result" in blob:
            return super().load(path)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise InsilicoError(f"{os.fspath(path)!r} is not a synthesis result (format {FORMAT}) saved by insilico")
        meta = json.loads(blob["json"])
        return cls(images=blob["images"], trace=blob["trace"], steps=blob["steps"], state=blob["state"], **meta)

    @classmethod
    def concat(cls, results: Sequence[SynthesisResult]) -> SynthesisResult:
        """Join results of chunks of one job along the sample axis (``sample_fields``; traces padded with NaN)."""
        results = list(results)
        if len(results) == 1:
            return results[0]
        joined = super().concat(results)
        length = max(r.trace.shape[0] for r in results)
        traces = [torch.cat([r.trace, r.trace.new_full((length - r.trace.shape[0], len(r)), float("nan"))])
                  for r in results]
        states = [r.state for r in results]
        return dataclasses.replace(joined, trace=torch.cat(traces, dim=1),
                                   state={"chunks": states} if all(s is not None for s in states) else None)

    # -- figures -------------------------------------------------------------------------
    def plot(self, ax=None, ncols: int | None = None, titles: bool = True, max_images: int = 64):
        """The images in a grid, each titled with its label and final value; returns the Figure.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw the grid into this one axes (as a mosaic); default: a new figure.
        ncols : int, optional
            Columns of the grid (default: about square).
        titles : bool
            Label each image (default True).
        max_images : int
            Show at most this many (default 64).
        """
        import matplotlib.pyplot as plt

        images = self.images[:max_images]
        n, c, h, w = images.shape
        ncols = ncols or int(np.ceil(np.sqrt(n)))
        nrows = int(np.ceil(n / ncols))
        pad = max(1, h // 16)
        canvas = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, 3 if c == 3 else 1))
        for i, img in enumerate(images):
            r, q = divmod(i, ncols)
            canvas[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = (
                img.permute(1, 2, 0).float().clamp(0, 1).numpy() if c in (1, 3) else img[:1].permute(1, 2, 0).numpy()
            )
        if ax is None:
            fig, ax = plt.subplots(figsize=(1.6 * ncols, 1.7 * nrows))
        ax.imshow(canvas[..., 0] if canvas.shape[2] == 1 else canvas, cmap="gray" if canvas.shape[2] == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            values = self.values
            for i in range(n):
                r, q = divmod(i, ncols)
                ax.text(q * (w + pad) + w / 2, r * (h + pad) - 0.5, f"{self.labels[i]}\n{float(values[i]):.3g}",
                        ha="center", va="bottom", fontsize=6)
        return ax.figure

    def plot_traces(self, ax=None):
        """Objective value against step, one line per sample; returns the Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        for label, trace in zip(self.labels, self.traces):
            ax.plot(trace.numpy(), lw=0.8, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("objective")
        if len(self) <= 10:
            ax.legend(fontsize=6)
        return ax.figure

    def __repr__(self) -> str:
        reasons = {r: self.stop_reasons.count(r) for r in dict.fromkeys(self.stop_reasons)}
        return (f"SynthesisResult({len(self)} images {tuple(self.images.shape[1:])}, "
                f"up to {int(self.steps.max()) if len(self) else 0} steps, stopped: {reasons})")


def _versions_of(self: SynthesisResult) -> dict:
    return self.__dict__.get("_versions") or versions()


def _set_versions(self: SynthesisResult, value: dict | None) -> None:
    self.__dict__["_versions"] = dict(value) if value else None


# ``versions`` is an init field here (saved in this result's own format) and a read-only property of
# Result: the dataclass removes the field's class attribute, so the property gets a setter, keeping the
# value where Result keeps it (``_versions``).
SynthesisResult.versions = property(_versions_of, _set_versions,
                                    doc="Versions of the libraries that made the result (the running ones if unknown).")


def _to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


__all__ = ["SynthesisResult", "versions"]
