"""The result of a synthesis: images, per-sample traces, settings; saves, loads and plots itself.

A :class:`insilico.results.Result` (the one result protocol: save, load,
concat, plot, versions): ONE file written by ``torch.save`` that holds only
tensors and plain data (read back through the one decoder,
:mod:`insilico.persistence`, with ``weights_only=True``; no pickled
callables). It records the library, torch, numpy and Python versions, the
seeds, and (unless ``state=False``) the engine's state, so a loaded result can
be continued with :meth:`insilico.synthesis.Synthesis.resume`. ``load`` also
reads the synthesis results' own format of earlier versions (``FORMAT`` 1).

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
import os
from typing import ClassVar, Sequence

import numpy as np
import torch

from .. import persistence
from ..errors import InsilicoError, SavedFileError
from ..results import Result, versions

#: The synthesis results' own file format of earlier versions, still read (they now save in
#: ``insilico.persistence.FORMAT``, the format of every result).
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
        """Write to ``path``: one file in insilico's result format (:meth:`insilico.results.Result.save`:
        tensors and plain data, the class, the versions), with the engine's state unless ``state=False``."""
        Result.save(self if state or self.state is None else dataclasses.replace(self, state=None), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SynthesisResult:
        """Read a result written by :meth:`save` (or by the generic :meth:`insilico.results.Result.save`)."""
        return cls._from_blob(persistence.read(path, "synthesis result"), os.fspath(path))

    @classmethod
    def _from_blob(cls, blob: dict, path: str) -> SynthesisResult:
        """The result in a file's contents: insilico's result format, or the synthesis results' own format 1
        (written before version 0.1.0's one decoder; read as data, see :data:`insilico.persistence.LEGACY_KINDS`)."""
        if "kind" in blob or blob.get("format") != FORMAT:
            if blob.get("format") is None:
                persistence.check_format(blob, path, persistence.FORMAT, what="synthesis result")
            return super()._from_blob(blob, path)
        fields = cls._fields_of(blob, path)
        return persistence.build(cls, fields, path, fields.get("versions"))

    @classmethod
    def _fields_of(cls, blob: dict, path: str) -> dict:
        """The constructor's fields held by a format-1 file."""
        missing = [k for k in ("images", "trace", "steps") if k not in blob]
        if missing:
            raise SavedFileError(f"{path!r} is a damaged synthesis result (no {', '.join(missing)})", path)
        return {"images": blob["images"], "trace": blob["trace"], "steps": blob["steps"], "state": blob.get("state"),
                **persistence.json_field(blob, "json", path)}

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
    def select(self, units: Sequence | None = None) -> list[int]:
        """Indices of the images of ``units``: unit addresses or labels (``"features.8[3]"`` picks every
        ``"features.8[3]#k"``), or image indices; default all."""
        if units is None:
            return list(range(len(self)))
        if isinstance(units, (str, int)):
            units = [units]
        chosen = []
        for u in units:
            if isinstance(u, (int, np.integer)):
                if not -len(self) <= int(u) < len(self):
                    raise InsilicoError(f"image {u} is out of range: the result has {len(self)} images")
                chosen.append(int(u) % len(self))
                continue
            name = str(u)
            hits = [i for i, label in enumerate(self.labels) if label == name or label.split("#")[0] == name]
            if not hits:
                known = list(dict.fromkeys(label.split("#")[0] for label in self.labels))
                raise InsilicoError(f"no image of {name!r} in this result; its units are {known[:8]}"
                                    + (" ..." if len(known) > 8 else ""))
            chosen.extend(hits)
        return chosen

    def plot(self, ax=None, ncols: int | None = None, titles: bool = True, max_images: int = 64,
             units: Sequence | None = None, page: int = 0):
        """The images in a grid, each titled with its label and final value; returns the Figure.

        A new figure has one panel per image (constrained layout: titles never
        overlap) sized so an image shows at its own pixel size up to 2.6 inches
        (a 224-px image at 224 px at 100 dpi), at least 1.2 inches.
        More images than ``max_images`` are paged: ``page=1`` shows the next
        ones, and the figure's title says which.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw the grid into this one axes (as a mosaic, titles in the gaps when they are readable
            there); default: a new figure.
        ncols : int, optional
            Columns of the grid (default: about square, at most 8).
        titles : bool
            Label each image (default True).
        max_images : int
            Images per page (default 64).
        units : list of addresses, labels or indices, optional
            Only these images (see :meth:`select`).
        page : int
            Which page of ``max_images`` (default 0, the first).
        """
        import matplotlib.pyplot as plt

        chosen = self.select(units)
        pages = max(1, -(-len(chosen) // max_images))
        if not 0 <= page < pages:
            raise InsilicoError(f"page {page} does not exist: {len(chosen)} images make {pages} page(s) of {max_images}")
        shown = chosen[page * max_images: (page + 1) * max_images]
        images = self.images[shown]
        n, c, h, w = images.shape
        ncols = ncols or min(8, int(np.ceil(np.sqrt(n))))
        nrows = int(np.ceil(n / ncols))
        values = self.values
        pictures = [img.permute(1, 2, 0).float().clamp(0, 1).numpy() if c == 3 else img[0].float().numpy()
                    for img in images]
        cmap = None if c == 3 else "gray"
        names = [f"{self.labels[i]}\n{float(values[i]):.3g}" for i in shown]
        if ax is None:
            side = float(np.clip(max(h, w) / 100, 1.2, 2.6))
            fig, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, (side + (0.35 if titles else 0)) * nrows),
                                     layout="constrained", squeeze=False)
            for k, a in enumerate(axes.flat):
                a.set_axis_off()
                if k < n:
                    a.imshow(pictures[k], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                    if titles:
                        a.set_title(names[k], fontsize=7)
            if pages > 1:
                fig.suptitle(f"images {page * max_images + 1}-{page * max_images + n} of {len(chosen)} "
                             f"(page {page + 1} of {pages}: plot(page=...))", fontsize=9)
            return fig
        pad = max(1, h // 16)
        gap = max(pad, int(0.3 * h)) if titles else pad  # room above each row for its two-line titles
        canvas = np.ones((nrows * (h + gap) - gap + (gap if titles else 0), ncols * (w + pad) - pad, 3 if c == 3 else 1))
        top = gap if titles else 0
        for i, picture in enumerate(pictures):
            r, q = divmod(i, ncols)
            y, x = top + r * (h + gap), q * (w + pad)
            canvas[y: y + h, x: x + w] = picture if c == 3 else picture[..., None]
        ax.imshow(canvas[..., 0] if c != 3 else canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:  # as large as the gaps allow (two lines of text in ``gap`` pixels); none if unreadable
            box = ax.get_window_extent()
            points_per_pixel = min(box.width / canvas.shape[1], box.height / canvas.shape[0]) * 72 / ax.figure.dpi
            fontsize = min(6.0, gap * points_per_pixel / 2.6)
            for i in range(n if fontsize >= 3.5 else 0):
                r, q = divmod(i, ncols)
                ax.text(q * (w + pad) + w / 2, top + r * (h + gap) - 0.5, names[i], ha="center", va="bottom",
                        fontsize=fontsize, clip_on=True)
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


__all__ = ["SynthesisResult", "versions"]
