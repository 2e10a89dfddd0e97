"""A study of the four elements: train a grid of variants and rank them by their similarity to IT.

:func:`study` trains each :class:`~insilico.lab.Variant` (:func:`~insilico.lab.train_variant`), measures
its held-out task accuracy (:func:`~insilico.lab.accuracy`) and compares the RDM of every layer
(:func:`insilico.rsa.model_rdms`, correlation distance) on the 92 images of Kriegeskorte et al. (2008)
with human IT (mean over the 4 subjects, each the mean of its 2 sessions) and monkey IT
(:func:`insilico.rsa.compare_all`), beside the human-IT leave-one-subject-out noise ceiling. A
variant's brain similarity is its best layer's; choosing the best of several layers favours
networks with more layers a little (no held-out layer choice here: read the per-layer values too).

Beside the brain, each variant is an observer (:func:`insilico.lab.observer`: a non-classification
variant with its linear probe) whose behaviour on the 256 held-out crops of its accuracy is kept
(:func:`insilico.behaviour.confusion`: accuracy and confusion matrix) and compared with every other
variant's (:func:`insilico.behaviour.error_consistency`: Cohen's kappa of trial-wise correctness), and
whose first convolution gets a V1-like tuning summary (:func:`insilico.experiments.orientation_tuning`
at the cheap grid :data:`TUNING_GRID`: fraction of orientation-tuned channels, median OSI). The study
composes these tools, so :mod:`insilico.lab` sits on the faces row of :mod:`insilico.layering`.

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
#: The gratings of each variant's V1 summary: orientations every 15 deg, 4 spatial frequencies
#: (:func:`insilico.experiments.tuning.default_sfs` of the input side), 6 phases: 288 gratings, seconds on a CPU.
TUNING_GRID = dict(orientations=tuple(range(0, 180, 15)), n_sfs=4, phases=(0, 60, 120, 180, 240, 300))


def behaviour_of(observer: torch.nn.Module, variant: Variant) -> dict:
    """The observer's behaviour on the held-out crops of :func:`insilico.lab.accuracy` (16 per class): its
    ``accuracy``, ``confusion`` (16 x 16, normalised per true class) and ``predicted`` (one class per crop)."""
    from .. import behaviour
    from ..models import photos

    x, y = photos.held_out(per_class=16, seed=training.EVAL_SEED)
    images = inputs.resize(x, variant.size).to(next(observer.parameters()).device)
    seen = behaviour.confusion(observer, images, y, class_names=list(photos.CLASSES),
                               image_ids=[f"crop{k}" for k in range(len(y))], n_boot=0, progress=False)
    return dict(accuracy=float(seen.accuracy), confusion=seen.matrix.float().cpu(),
                predicted=[int(k) for k in seen.predicted], truth=[int(k) for k in seen.truth])


def tuning_of(model: torch.nn.Module, variant: Variant) -> dict:
    """The V1-like tuning of the model's first convolution (its last call in a recurrent network) at
    :data:`TUNING_GRID`: ``layer``, ``fraction_tuned``, ``median_osi``, ``units``, ``responsive``."""
    from ..experiments import orientation_tuning
    from ..experiments.tuning import default_sfs
    from ..layers import choose_layers

    layer = choose_layers(model, (3, variant.size, variant.size), "conv")[0]
    grid = dict(TUNING_GRID)
    sfs = default_sfs(variant.size, grid.pop("n_sfs"))
    summary = orientation_tuning(model, layer, size=variant.size, sfs=sfs, progress=False, **grid).summary()
    return dict(layer=layer, fraction_tuned=float(summary["fraction_tuned"]), median_osi=float(summary["median_osi"]),
                units=int(summary["units"]), responsive=int(summary["responsive"]))


def consistency(behaviours: Sequence[dict], names: Sequence[str]) -> torch.Tensor:
    """Error consistency (Cohen's kappa, :func:`insilico.behaviour.error_consistency`) of every pair of variants
    on the same crops, (V, V) float64; NaN where it is undefined (both always right, or always wrong)."""
    from ..behaviour import Trials, error_consistency

    trials = [Trials.from_predictions([f"crop{k}" for k in range(len(b["truth"]))], b["truth"], b["predicted"],
                                      name=n) for b, n in zip(behaviours, names)]
    kappa = torch.full((len(trials), len(trials)), float("nan"), dtype=torch.float64)
    for i, a in enumerate(trials):
        for j, b in enumerate(trials):
            try:
                kappa[i, j] = error_consistency(a, b, n_boot=0).value
            except InsilicoError:  # undefined: stays NaN
                pass
    return kappa


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
    behaviour : list of dict
        Per variant, :func:`behaviour_of`: ``accuracy``, ``confusion`` (16 x 16 tensor), ``predicted``, ``truth``.
    kappa : tensor (V, V) float64
        Error consistency of every pair of variants on the same crops (:func:`consistency`; NaN: undefined).
    tuning : list of dict
        Per variant, :func:`tuning_of`: the first convolution's ``layer``, ``fraction_tuned``, ``median_osi``.
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
    behaviour: list = dataclasses.field(default_factory=list)
    kappa: torch.Tensor | None = None
    tuning: list = dataclasses.field(default_factory=list)

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
        """One row per variant: accuracies, best layer and similarity per region, the ceiling; the behaviour
        (``behaviour_accuracy``; ``kappa_first``: error consistency with the grid's first variant, the
        baseline of :data:`DEFAULT_GRID`; ``kappa_others``: its mean with every other variant) and the first
        convolution's tuning (``tuning_layer``, ``fraction_tuned``, ``median_osi``)."""
        rows = []
        for i, name in enumerate(self.names):
            row = dict(variant=name, readout_accuracy=self.accuracy[i]["readout"],
                       probe_accuracy=self.accuracy[i]["probe"], chance=self.accuracy[i]["chance"])
            for region in REGIONS:
                layer, value = self.best(region)[i]
                row[f"{region}_layer"], row[region] = layer, value
            row.update(ceiling_lower=self.ceiling["lower"], ceiling_upper=self.ceiling["upper"])
            if self.behaviour:
                others = [float(self.kappa[i, j]) for j in range(len(self.names)) if j != i]
                row.update(behaviour_accuracy=self.behaviour[i]["accuracy"], kappa_first=float(self.kappa[i, 0]),
                           kappa_others=float(np.nanmean(others)) if np.isfinite(others).any() else float("nan"))
            if self.tuning:
                row.update(tuning_layer=self.tuning[i]["layer"], fraction_tuned=self.tuning[i]["fraction_tuned"],
                           median_osi=self.tuning[i]["median_osi"])
            rows.append(row)
        return rows

    def to_csv(self, path) -> None:
        """Write :meth:`table` to ``path`` as CSV (one row per variant, in grid order)."""
        import csv

        rows = self.table()
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def report(self) -> str:
        """The table as text, variants ranked by human-IT similarity (best layer), with the noise ceiling."""
        def number(v, width=6):
            return f"{'-':>{width}s}" if v is None or v != v else f"{v:{width}.3f}"

        width = max(len(n) for n in [*self.names, "variant"])
        lines = [f"human-IT noise ceiling [{self.ceiling['lower']:.3f}, {self.ceiling['upper']:.3f}] "
                 f"({self.settings.get('compare')})",
                 f"{'variant':{width}s} {'readout':>7s} {'probe':>6s} {'hIT':>6s} {'(layer)':18s} {'mIT':>6s} "
                 f"{'(layer)':18s} {'kappa1':>6s} {'kappa':>6s} {'tuned':>6s} {'OSI':>6s}"]
        rows = self.table()
        for row in (rows[self.names.index(name)] for name in self.ranking()):
            lines.append(f"{row['variant']:{width}s} {number(row['readout_accuracy'], 7)} {number(row['probe_accuracy'])} "
                         f"{number(row['human_it'])} {row['human_it_layer'] or '-':18s} {number(row['monkey_it'])} "
                         f"{row['monkey_it_layer'] or '-':18s} {number(row.get('kappa_first'))} "
                         f"{number(row.get('kappa_others'))} {number(row.get('fraction_tuned'))} "
                         f"{number(row.get('median_osi'))}")
        return "\n".join(lines)

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
        models[part["name"]] = _observer_of(part, _variant(settings))[0]
    return models


def _variant(settings: dict) -> Variant:
    """The Variant of its :meth:`Variant.settings`."""
    return Variant(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


def _observer_of(part: dict, variant: Variant) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The observer (:func:`insilico.lab.observer`) and the bare network of a study's kept part."""
    with keep_global_rng():
        model = build(variant, part["history"]["seed"])
    model.load_state_dict(part["state"])
    scores = part["accuracy"]
    if "probe_weight" not in scores and variant.objective != "classification":  # kept by insilico >= 0.1 lab
        scores = training.accuracy(model, variant)
    return training.observer(model.eval(), variant, scores), model


def _observed(part: dict) -> dict:
    """A part's behaviour and tuning: as kept, or measured now for a part kept before the study measured them."""
    if "behaviour" in part and "tuning" in part:
        return part
    variant = _variant(part["variant"])
    observer, model = _observer_of(part, variant)
    return dict(part, behaviour=behaviour_of(observer, variant), tuning=tuning_of(model, variant))


def _run_one(variant: Variant, steps: int, seed: int, batch: int, compare: str, progress: bool, device) -> dict:
    """Train and score one variant: the part a study keeps per variant."""
    model, history = training.train_variant(variant, steps=steps, seed=seed, batch=batch, progress=progress,
                                            device=device)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    scores = training.accuracy(model, variant)
    return dict(name=variant.name, variant=variant.settings(), state=state, history=history, accuracy=scores,
                behaviour=behaviour_of(training.observer(model, variant, scores), variant),
                tuning=tuning_of(model, variant), **brain_similarity(model, variant, compare))


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
    >>> 0 < row["ceiling_lower"] < row["ceiling_upper"] < 1, row["kappa_first"], 0 <= row["fraction_tuned"] <= 1
    (True, 1.0, True)
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
    parts = [_observed(p) for p in parts]
    names = [p["name"] for p in parts]
    return StudyResult(names=names, variants=[p["variant"] for p in parts],
                       accuracy=[{k: v for k, v in p["accuracy"].items() if not k.startswith("probe_")} for p in parts],
                       human_it=[p["human_it"] for p in parts], monkey_it=[p["monkey_it"] for p in parts],
                       ceiling=ceiling(compare), histories=[p["history"] for p in parts],
                       settings=dict(steps=steps, batch=batch, seed=seed, compare=compare),
                       undefined=[p.get("undefined", {}) for p in parts],
                       behaviour=[p["behaviour"] for p in parts],
                       kappa=consistency([p["behaviour"] for p in parts], names),
                       tuning=[p["tuning"] for p in parts])


__all__ = ["DEFAULT_GRID", "TUNING_GRID", "StudyResult", "behaviour_of", "brain_similarity", "ceiling", "consistency",
           "study", "trained", "tuning_of"]
