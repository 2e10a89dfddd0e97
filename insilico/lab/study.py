"""A study of the four elements: train a grid of variants and rank them by their similarity to IT.

:func:`study` trains each :class:`~insilico.lab.Variant` (:func:`~insilico.lab.train_variant`), measures
its held-out task accuracy (:func:`~insilico.lab.accuracy`) and compares the RDM of every layer
(:func:`insilico.rsa.model_rdms`, correlation distance) on the 92 images of Kriegeskorte et al. (2008)
with human IT (mean over the 4 subjects, each the mean of its 2 sessions) and monkey IT
(:func:`insilico.rsa.compare_all`), beside the human-IT leave-one-subject-out noise ceiling. A
variant's brain similarity is its best layer's; choosing the best of several layers favours
networks with more layers a little (no held-out layer choice here: read the per-layer values too).

Each variant is one chunk of a resumable job (:func:`insilico.sharding.map_chunks`): with ``out=`` its
weights, history and scores are written when it is done, a rerun trains only the variants missing,
ranks of ``torchrun`` (or ``out=Job(folder, shard=(i, n))``) share the grid, and a folder made for
another grid, step count or seed is refused (:mod:`insilico.identity`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InsilicoError
from ..results import Result
from ..options import Job
from ..seeding import keep_global_rng, run_seed
from ..sharding import map_chunks
from . import inputs, training
from .variant import Variant, build

#: One variant per element beside the baseline (the bundled minialex recipe's task, classification, backprop):
#: architecture (recurrent BL), input statistics (blurred input), objective (sparse autoencoding), learning rule.
DEFAULT_GRID = (Variant(), Variant(architecture="bl"), Variant(blur=2.0), Variant(objective="sparse"),
                Variant(rule="feedback_alignment"))
REGIONS = ("human_it", "monkey_it")


def brain_similarity(model: torch.nn.Module, variant: Variant, compare: str = "spearman") -> dict:
    """Per layer, the similarity of the model's RDM with human IT (mean over subjects) and monkey IT.

    The layers are :func:`insilico.rsa.layer_units` (every activation, and the output), recorded once.
    A layer whose correlation RDM is undefined (an image with constant responses: a silent layer, as
    a strong sparsity penalty makes) gets NaN and is named in ``undefined``, never a made-up value.

    Returns
    -------
    dict
        ``human_it`` and ``monkey_it``: dict layer -> float (NaN where undefined), in layer order;
        ``undefined``: dict layer -> the reason.
    """
    from .. import rsa
    from ..data import kriegeskorte2008
    from ..probe import Probe

    data = kriegeskorte2008(size=64)
    images = inputs.resize(data.images, variant.size).to(next(model.parameters()).device)
    units = rsa.layer_units(model, images[:1])
    recording = Probe(model).record_stimuli(images, units, progress=False)
    layers, undefined = {}, {}
    for unit in units:
        try:
            layers[unit] = rsa.rdm(recording[unit].flatten(1), "correlation", labels=data.categories, name=unit)
        except InsilicoError as error:
            undefined[unit] = str(error)
    out = dict(human_it={u: float("nan") for u in units}, monkey_it={u: float("nan") for u in units},
               undefined=undefined)
    if layers:
        human = rsa.compare_all(layers, data.human_it_subjects(), compare).mean(1)
        monkey = rsa.compare_all(layers, [data.monkey_it], compare)[:, 0]
        out["human_it"].update(zip(layers, human.tolist()))
        out["monkey_it"].update(zip(layers, monkey.tolist()))
    return out


def ceiling(compare: str = "spearman") -> dict:
    """The human-IT noise ceiling (``lower``, ``upper``) of :func:`insilico.rsa.noise_ceiling`."""
    from .. import rsa
    from ..data import kriegeskorte2008

    lower, upper = rsa.noise_ceiling(kriegeskorte2008(size=64).human_it_subjects(), compare)
    return dict(lower=float(lower), upper=float(upper))


@dataclasses.dataclass
class StudyResult(Result):
    """What :func:`study` reports: one entry per variant, in grid order.

    Attributes
    ----------
    names : list of str
        The variants' names (:attr:`Variant.name`).
    variants : list of dict
        Every variant's settings.
    accuracy : list of dict
        ``readout`` (classification only, else None), ``probe`` (linear probe on the output), ``chance``.
    human_it, monkey_it : list of dict layer -> float
        RDM similarity of each layer with human IT (mean over subjects) and monkey IT; NaN for a layer whose
        RDM is undefined (a silent layer; :func:`brain_similarity`), never counted as any layer's best.
    ceiling : dict
        Human-IT noise ceiling, ``lower`` and ``upper``.
    histories : list of dict
        Each variant's training history (loss per step, cpu_seconds).
    settings : dict
        steps, batch, seed, compare.
    undefined : list of dict layer -> str
        Per variant, the layers whose RDM is undefined and why (see :func:`brain_similarity`).
    """

    names: list
    variants: list
    accuracy: list
    human_it: list
    monkey_it: list
    ceiling: dict
    histories: list
    settings: dict = dataclasses.field(default_factory=dict)
    undefined: list = dataclasses.field(default_factory=list)

    def best(self, region: str = "human_it") -> list[tuple[str, float]]:
        """Each variant's best layer and its similarity with ``region`` ("human_it" or "monkey_it")."""
        if region not in REGIONS:
            raise InsilicoError(f"region must be one of {', '.join(REGIONS)}, not {region!r}")
        best = []
        for layers in getattr(self, region):
            defined = {k: v for k, v in layers.items() if v == v}
            best.append(max(defined.items(), key=lambda kv: kv[1]) if defined else (None, float("nan")))
        return best

    def ranking(self, region: str = "human_it") -> list[str]:
        """Variant names from the most to the least similar to ``region`` (by their best layer)."""
        scores = np.nan_to_num([s for _, s in self.best(region)], nan=-np.inf)  # undefined last
        return [self.names[i] for i in np.argsort(-scores, kind="stable")]

    def table(self) -> list[dict]:
        """One row per variant: accuracies, best layer and similarity per region, the ceiling."""
        rows = []
        for i, name in enumerate(self.names):
            row = dict(variant=name, readout_accuracy=self.accuracy[i]["readout"],
                       probe_accuracy=self.accuracy[i]["probe"], chance=self.accuracy[i]["chance"])
            for region in REGIONS:
                layer, value = self.best(region)[i]
                row[f"{region}_layer"], row[region] = layer, value
            row.update(ceiling_lower=self.ceiling["lower"], ceiling_upper=self.ceiling["upper"])
            rows.append(row)
        return rows

    def to_pandas(self):
        """:meth:`table` as a pandas DataFrame (pandas is an optional dependency)."""
        import pandas as pd

        return pd.DataFrame(self.table())

    def plot(self, ax=None):
        """Variants ranked by their best layer's similarity with human IT (bars, the noise ceiling a grey
        band), beside monkey IT; returns the Figure. With ``ax``, the human-IT panel only."""
        import matplotlib.pyplot as plt

        from ..rsa import plot_comparison

        order = self.ranking("human_it")
        scores = {r: dict(zip(self.names, (s for _, s in self.best(r)))) for r in REGIONS}
        ceiling = (self.ceiling["lower"], self.ceiling["upper"])
        if ax is not None:
            return plot_comparison({n: scores["human_it"][n] for n in order}, ax=ax, ceiling=ceiling,
                                   title="variants vs human IT", ylabel=f"best layer ({self.settings.get('compare')})")
        fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(order) + 3), 3.6))
        plot_comparison({n: scores["human_it"][n] for n in order}, ax=axes[0], ceiling=ceiling,
                        title="variants vs human IT", ylabel=f"best layer ({self.settings.get('compare')})")
        plot_comparison({n: scores["monkey_it"][n] for n in order}, ax=axes[1], title="variants vs monkey IT",
                        ylabel=f"best layer ({self.settings.get('compare')})", color="tab:orange")
        fig.tight_layout()
        plt.close(fig)
        return fig

    def __repr__(self) -> str:
        best = dict(zip(self.names, (s for _, s in self.best("human_it"))))
        return f"StudyResult({len(self.names)} variants; by human-IT similarity: " + ", ".join(
            f"{n} {best[n]:.3f}" for n in self.ranking()) + ")"


def trained(out) -> dict:
    """The trained variants kept in a study's ``out=`` folder, as observers: name -> model (eval mode) taking
    (N, 3, size, size) images and giving 16 class scores (:func:`insilico.lab.training.observer`: a
    non-classification variant comes with its linear probe).

    Raises
    ------
    InsilicoError
        ``out`` holds no finished study (run :func:`study` with this ``out=`` first).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> sparse = Variant(architecture="b", size=16, timesteps=1, objective="sparse")
    >>> _ = study([sparse], out=folder, steps=1, batch=4, progress=False)
    >>> observer = trained(folder)["b+timesteps1+size16+sparse"]      # the network and its linear probe
    >>> tuple(observer(torch.rand(2, 3, 16, 16)).shape)
    (2, 16)
    """
    from ..sharding import done_chunks, load_part, read_identity

    folder = Path(Job.of(out).path)
    if not (folder / "job.json").exists():
        raise InsilicoError(f"{folder} holds no study (no job.json): run insilico.lab.study(..., out={str(folder)!r})")
    grid = read_identity(folder / "job.json").get("settings", {}).get("grid", [])
    done = dict(done_chunks(folder))
    if not grid or len(done) < len(grid):
        raise InsilicoError(f"{folder} holds {len(done)} of {len(grid)} trained variants: rerun the study to finish it")
    models = {}
    for i, settings in enumerate(grid):
        part = load_part(folder / f"chunk-{i:08d}-{i + 1:08d}.pt")
        variant = Variant(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
        with keep_global_rng():
            model = build(variant, part["history"]["seed"])
        model.load_state_dict(part["state"])
        scores = part["accuracy"]
        if "probe_weight" not in scores and variant.objective != "classification":  # kept by insilico >= 0.1 lab
            scores = training.accuracy(model, variant)
        models[part["name"]] = training.observer(model.eval(), variant, scores)
    return models


def _run_one(variant: Variant, steps: int, seed: int, batch: int, compare: str, progress: bool, device) -> dict:
    """Train and score one variant: the part a study keeps per variant."""
    model, history = training.train_variant(variant, steps=steps, seed=seed, batch=batch, progress=progress,
                                            device=device)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return dict(name=variant.name, variant=variant.settings(), state=state, history=history,
                accuracy=training.accuracy(model, variant), **brain_similarity(model, variant, compare))


def study(variants: Sequence[Variant] | None = None, out=None, steps: int = 300, seed: int = 0, batch: int = 64,
          compare: str = "spearman", progress: bool = True, device=None) -> StudyResult | None:
    """Train a grid of variants and report each one's task accuracy and similarity to human and monkey IT.

    Parameters
    ----------
    variants : sequence of Variant, optional
        The grid (default :data:`DEFAULT_GRID`: the baseline and one variant per element); names must differ.
    out : folder or :class:`insilico.Job`, optional
        Keep each trained variant there (weights, history, scores); a rerun trains only the missing ones and
        refuses a folder of another grid, step count, batch, seed or comparison.
    steps, batch, seed : int
        Of every variant's training (:func:`~insilico.lab.train_variant`; one seed for all, so variants of
        one architecture start from the same weights).
    compare : str
        RDM comparison (:func:`insilico.rsa.compare`; default "spearman").
    device : str or torch.device, optional
        Where the networks train and are recorded (default: the CPU; not part of the folder's identity).

    Returns
    -------
    StudyResult, or None
        None when this process is a hand-made shard that finished before the others (rerun to collect).

    Raises
    ------
    JobMismatchError
        ``out`` holds another study (the message names each difference).

    Example
    -------
    >>> tiny = Variant(architecture="b", size=16, timesteps=1)
    >>> result = study([tiny, tiny.replace(rule="feedback_alignment")], steps=1, batch=4, progress=False)
    >>> result.names, sorted(result.ranking()) == sorted(result.names)
    (['b+timesteps1+size16', 'b+timesteps1+size16+feedback_alignment'], True)
    >>> row = result.table()[0]
    >>> sorted(row)[:4], 0 < row["ceiling_lower"] < row["ceiling_upper"] < 1
    (['ceiling_lower', 'ceiling_upper', 'chance', 'human_it'], True)
    """
    grid = list(DEFAULT_GRID if variants is None else variants)
    if not grid or not all(isinstance(v, Variant) for v in grid):
        raise InsilicoError("study(variants=...) takes a non-empty list of insilico.lab.Variant")
    names = [v.name for v in grid]
    if len(set(names)) != len(names):
        raise InsilicoError(f"study: the grid names a variant twice ({', '.join(sorted(set(n for n in names if names.count(n) > 1)))})")
    seed = run_seed(seed, out)
    settings = dict(tool="insilico.lab.study", grid=[v.settings() for v in grid], steps=steps, seed=seed, batch=batch,
                    compare=compare)
    parts = map_chunks(lambda a, b: _run_one(grid[a], steps, seed, batch, compare, progress, device), len(grid), 1,
                       out=out, job=settings)
    if parts is None:
        return None
    return StudyResult(names=[p["name"] for p in parts], variants=[p["variant"] for p in parts],
                       accuracy=[{k: v for k, v in p["accuracy"].items() if not k.startswith("probe_")} for p in parts], human_it=[p["human_it"] for p in parts],
                       monkey_it=[p["monkey_it"] for p in parts], ceiling=ceiling(compare),
                       histories=[p["history"] for p in parts],
                       settings=dict(steps=steps, batch=batch, seed=seed, compare=compare),
                       undefined=[p.get("undefined", {}) for p in parts])


__all__ = ["DEFAULT_GRID", "StudyResult", "brain_similarity", "ceiling", "study", "trained"]
