"""What a gallery shows and how it is computed: one :class:`GallerySettings`, read from a definition file.

A definition (``gallery/minialex.json``) is a JSON object whose keys are the
fields below; command-line options override it. The defaults are chosen so
that the bundled ``minialex`` (8 layers, 1,024 units) builds on two CPU cores
in under ten minutes.

Example
-------
>>> s = GallerySettings.from_dict({"model": "minialex", "layers": ["features.0"], "steps": 4})
>>> s.steps, s.diverse, s.exemplars
(4, 3, 9)
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..errors import InsilicoError
from ..identity import value_digest
from ..stimuli.files import image_files


@dataclasses.dataclass
class GallerySettings:
    """Everything that decides a gallery's content (stored in ``gallery.json`` of the site).

    Attributes
    ----------
    model, weights : str
        A bundled model name or ``package.module:callable`` / ``file.py:callable``, and its state_dict.
    name : str, optional
        Title of the site (default: the model).
    layers : list of str, optional
        Unit addresses of whole layers (default: every Conv2d and Linear module, and the heads of every attention
        module): ``"PATH@T"`` is time step ``T`` of a recurrent layer (its pages add each unit's time course),
        ``"PATH:heads"`` the heads of an attention module (one unit per head,
        :class:`~insilico.gallery.view.LayerView`); a zoo model's paths may leave out its ``net.``.
    units : int, optional
        Only the first ``units`` units of each layer (default: all).
    unit_range : (start, stop), optional
        Only units ``start <= c < stop`` of each layer (a shard by hand).
    steps, lr : int, float
        Activation maximization: Adam steps and learning rate (Fourier 1/f parameterization).
    settle : int
        The last ``settle`` of the ``steps`` (all of them if fewer) run without transforms, and each image
        is its best iterate among them (measured as shown); 0: transforms on every step, the last iterate.
    stretch_steps : int
        Steps of the *stretched exemplar*: each unit's top exemplar, ascended on its best neuron without
        transforms, keeping the best iterate (so it drives the unit at least as much as the exemplar); it is
        the page's maximizing image where the image from noise falls short of the exemplar. 0: none.
    diverse : int
        Images per unit that maximize it (:func:`insilico.maximize`), pushed apart from each other by a
        Gram-matrix diversity term of weight ``diversity``; the one that drives the unit most is shown as
        the maximizing image, the others as the diverse set.
    exemplars : int
        Top exemplars per unit, each with its deconvolution projection and gradient map.
    per_class : int
        Held-out photo crops per class in the exemplar stimulus set (16 classes).
    stimuli : {"photos", "natural"} or a folder or glob of image files
        Exemplar stimuli: the bundled photos' held-out crops, random crops of
        scikit-image's photos (:func:`insilico.stimuli.natural_images`), or the
        user's images (a folder, ``DIR/<class>/<image>`` naming each exemplar's class,
        or a glob; relative to the working directory), streamed and fitted to the
        model's input (:func:`insilico.recording.stimulus_source`).
    labels, class_names : path, optional
        With the user's files: a labels CSV (``image,label`` rows) over the folder's classes, and a
        class-names file (JSON list or one per line) naming each class index
        (:func:`insilico.stimuli.labelled`); relative to the working directory.
    lesion_per_class : int
        Held-out crops per class on which each unit's lesion is measured; with the user's files, the first
        ``lesion_per_class`` images of each class folder (the panels are per class of the folders: the true
        class's probability where the folders name the model's ``classes``, else the model's own choice's), or
        the first ``16 * lesion_per_class`` files without classes (one bar per output unit). With 3 or more per
        class each per-class bar gets a 95% bootstrap interval (:data:`insilico.gallery.stages.LESION_MIN_PER_CLASS`;
        fewer: no interval, the panel says so) and the layer page the split-half reliability of its lesion matrix.
    orientations, phases, rf_images : int
        Tuning gratings (orientations over 180 deg, phases; 6 or more phases let the phase-reliability
        criterion apply) and white-noise images per RF map (default 4, cheap; the RF records carry the size's
        standard error ``size_se``; None: :func:`insilico.experiments.receptive_field`'s default, 64 doubled until
        the size's standard error is within 10% of the size, about 0.8 s per unit of a 64-px CNN on one core).
    colour_gratings : bool
        Also show red-green and blue-yellow gratings (3-channel models): each unit is tuned on the colour
        axis that drives it most (:func:`insilico.experiments.orientation_tuning`, ``colours=``).
    chunk : int
        Units computed together (one synthesis, one exemplar pass); also the unit of resumption and sharding.
    seed : int
        Seeds every random choice.
    """

    model: str = "minialex"
    weights: str | None = None
    name: str | None = None
    layers: list | None = None
    units: int | None = None
    unit_range: tuple | None = None
    steps: int = 24
    lr: float = 0.1
    settle: int = 6
    stretch_steps: int = 8
    diverse: int = 3
    diversity: float = 1.0
    exemplars: int = 9
    per_class: int = 16
    stimuli: str = "photos"
    labels: str | None = None
    class_names: str | None = None
    lesion_per_class: int = 5
    orientations: int = 12
    phases: int = 8
    rf_images: int | None = 4
    colour_gratings: bool = True
    chunk: int = 256
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> GallerySettings:
        """Settings from a dict (unknown keys are an error naming the valid ones)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InsilicoError(f"unknown gallery setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        settings = cls(**data)
        settings.check()
        return settings

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides) -> GallerySettings:
        """Settings from a JSON definition, with ``overrides`` (None values ignored) on top."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise InsilicoError(f"cannot read gallery definition {str(path)!r}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise InsilicoError(f"gallery definition {str(path)!r} is not valid JSON: {e}") from None
        data.pop("comment", None)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def check(self) -> None:
        """Fail early, with the fix, on values that cannot work."""
        for key in ("steps", "diverse", "exemplars", "per_class", "lesion_per_class", "chunk", "rf_images"):
            if getattr(self, key) is not None and int(getattr(self, key)) < 1:  # rf_images None: the tool's default
                raise InsilicoError(f"gallery setting {key} must be at least 1, not {getattr(self, key)}")
        for key in ("settle", "stretch_steps"):
            if int(getattr(self, key)) < 0:
                raise InsilicoError(f"gallery setting {key} must be at least 0, not {getattr(self, key)}")
        if not 0 < float(self.lr) < float("inf") or not 0 <= float(self.diversity) < float("inf"):
            raise InsilicoError(f"gallery settings lr must be > 0 and diversity >= 0 (finite), not lr={self.lr}, "
                                f"diversity={self.diversity}")
        if self.orientations < 4:
            raise InsilicoError("gallery setting orientations must be at least 4 (a tuning curve is fitted)")
        if self.stimuli not in ("photos", "natural"):
            image_files(self.stimuli)  # a StimulusError naming the folder or glob that holds no images
        _check_label_files(self)
        if self.units is not None and self.units < 1:
            raise InsilicoError(f"units must be at least 1, not {self.units}")
        if self.unit_range is not None:
            start, stop = (int(v) for v in self.unit_range)
            if not 0 <= start < stop:
                raise InsilicoError(f"unit_range must be start:stop with 0 <= start < stop, not {self.unit_range}")
            self.unit_range = (start, stop)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def content_key(self) -> dict:
        """The settings that change computed pages (a site built with other values is not reused)."""
        skip = {"name", "layers", "units", "unit_range", "chunk"}
        key = {k: v for k, v in self.to_dict().items() if k not in skip}
        key = {k: v for k, v in key.items() if v is not None or k not in ("labels", "class_names")}  # sites as before
        if self.stimuli not in ("photos", "natural"):  # the user's files: another or a changed file is another site
            files = image_files(self.stimuli)
            key["stimulus_files"] = value_digest([[i, p.stat().st_size, p.stat().st_mtime_ns]
                                                  for i, p in zip(files.ids, files.paths)])
            key.update({f"{k}_file": value_digest(Path(getattr(self, k)).read_text()) for k in ("labels", "class_names")
                        if getattr(self, k) is not None})  # another labels file is another site
        return key

    def selection(self, n_units: int) -> range:
        """The units of a layer with ``n_units`` units that this build covers."""
        start, stop = self.unit_range or (0, n_units)
        stop = min(stop, n_units, start + self.units if self.units is not None else n_units)
        return range(min(start, stop), stop)


def _check_label_files(settings: GallerySettings) -> None:
    """labels / class_names: readable files (:mod:`insilico.stimuli.labels`), and only with the user's files."""
    from ..stimuli.labels import read_class_names, read_labels

    for key, read in (("labels", read_labels), ("class_names", read_class_names)):
        if getattr(settings, key) is None:
            continue
        if settings.stimuli in ("photos", "natural"):
            raise InsilicoError(f"gallery setting {key} labels the user's image files: give stimuli a folder or "
                                f"glob too (not {settings.stimuli!r})")
        read(getattr(settings, key))  # a StimulusError naming the file or line


__all__ = ["GallerySettings"]
