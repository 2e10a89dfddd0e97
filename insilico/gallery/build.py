"""Building a gallery: plan the work, compute what is missing (this rank's share), render the pages.

Rendering also writes ``units.csv`` at the site root: one row per unit with
the values its page shows (:data:`UNIT_COLUMNS`: layer, unit, max_activation,
top_exemplar_activation, responsive, osi, preferred_orientation, rf_size, ...;
selectivity cells are empty for units that fail the tuning criteria).

Work is cut into *chunks*: ``settings.chunk`` consecutive units of one layer
(aligned to multiples of ``chunk``, so every run and every rank cuts the same
chunks). For each chunk every stage (:data:`.stages.STAGES`) runs once, for
all its units together, and then logs the chunk as done in
``cache/<layer>/<stage>/progress-<rank>.json`` (:class:`insilico.sharding.ProgressLog`).
What is done is the union of all ranks' logs, so

- a rerun computes only the units whose stage is not logged (an interrupted
  chunk is recomputed; everything finished before stays);
- ranks (``torch.distributed`` or ``Job(folder, shard=(rank, world))``) take every
  ``world``-th chunk and never write the same file; any rank (and any rerun)
  renders the pages from whatever is on disk.

``gallery.json`` holds the settings the site was built with and ``job.json``
its job identity (:mod:`insilico.identity`): the model's fingerprint (its
parameters and buffers, not the path of its weights) and the settings that
change pages (steps, seed, ...). Building into it with another model or such
settings is refused, naming the differences (``Job(folder, overwrite=True)`` / ``--force``
starts over).
"""
from __future__ import annotations

import time
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError
from ..identity import check, job_identity
from ..layers import attention_modules, choose_layers, example_input, image_size, renamed
from ..options import Job
from ..registry import register_tool
from ..sharding import ProgressLog, chunks, create_once, missing, rank_world, read_identity, start_over, write_json
from . import brain, describe, pages, summary
from .settings import GallerySettings
from .stages import STAGES, Work, lesion_reliability, slug


@renamed(shape="size")
def discover_layers(model: nn.Module, size: int | tuple | None = None) -> list[str]:
    """Every Conv and Linear module, in call order; a module called T times is named at its last call (``@T-1``);
    and the heads of every attention module with per-head parts that runs once (``"blocks.3.attn:heads"``), after
    its own layers.

    The layer chooser's ``"conv_linear"`` kind (:func:`insilico.layers.choose_layers`)
    on a grey image of ``size`` (read by :func:`insilico.layers.image_size`; default ``model.input_size``),
    with outputs the gallery has units in (:class:`~insilico.gallery.view.LayerView`): maps, channels-last
    stages, token layers and vectors; the attention modules are those the registry knows with the layout
    ``"heads"`` (:func:`insilico.layers.attention_modules`; windowed attention has no head units).
    """
    from ..probe import Probe
    from ..units import Unit

    survey = Probe(model).survey(example_input(model, image_size(model, size)))
    layers = choose_layers(model, survey, kind="conv_linear", step="last",
                           layouts=("map", "channels_last", "tokens", "vector"))
    heads = [f"{name}:heads" for name, layout in attention_modules(model).items()
             if layout == "heads" and survey.count(name) == 1]
    rank = {name: i for i, name in enumerate(survey.modules())}  # call order (a module ends after its children)
    return sorted(layers + heads, key=lambda layer: rank[Unit.parse(layer).module])


def zoo_layers(model: nn.Module, layers: list[str]) -> list[str]:
    """``layers`` as ``model`` addresses them: a zoo model (:class:`insilico.models.zoo.ZooModel`) keeps its
    network under ``net.`` beside ``normalize``, so a layer written as the zoo names it (``"layer1"``,
    ``"blocks.3.attn:heads"``) is read as ``"net.layer1"`` where the model has no such module (its only reading);
    the pages name the address read. Other models' layers are kept as written (an unknown one is refused later,
    with close matches).

    >>> import insilico
    >>> zoo = insilico.models.load("torchvision:resnet18", weights=None)
    >>> zoo_layers(zoo, ["layer1", "net.layer4", "layer2.0/add"])
    ['net.layer1', 'net.layer4', 'net.layer2.0/add']
    """
    from ..models.zoo import ZooModel
    from ..units import Unit

    if not isinstance(model, ZooModel):
        return list(layers)
    names = {name for name, _ in model.named_modules()}
    owners = [Unit.parse(layer).owner for layer in layers]
    return [f"net.{layer}" if owner not in names and f"net.{owner}" in names else layer
            for layer, owner in zip(layers, owners)]


def input_shape(model: nn.Module) -> tuple:
    shape = getattr(model, "input_size", None)
    if shape is None:
        raise InsilicoError(f"{type(model).__name__} has no input_size attribute; set model.input_size = (C, H, W) "
                            "in the callable that builds it, so the gallery knows the image size")
    return tuple(int(s) for s in shape)


def _check_site(root: Path, settings: GallerySettings, model: nn.Module, shard=None, overwrite: bool = False) -> None:
    """Write ``job.json`` (the job identity) and ``gallery.json`` once; refuse a site of another model or settings."""
    if overwrite:
        start_over(root, ["job.json", "gallery.json", "brain.json", "cache/**/progress-*.json"], shard)
    pages_change = {k: v for k, v in settings.content_key().items() if k not in ("model", "weights")}
    job = job_identity(model, pages_change)  # the model by content: its fingerprint, not its name or weights' path

    def create():
        write_json(root / "job.json", job)
        write_json(root / "gallery.json", settings.to_dict())

    if (root / "gallery.json").exists() and not (root / "job.json").exists():
        check(None, job, str(root))  # a site built before job identities: refused, naming the fix
    create_once(root, create, ready="gallery.json")
    check(read_identity(root / "job.json"), job, str(root / "job.json"))


def plan(work: Work, layers: list[str]) -> list[tuple[str, int, int]]:
    """Every chunk ``(layer, start, stop)`` of the selected units, in a fixed order."""
    items = []
    for layer in layers:
        picked = work.settings.selection(work.n_units(layer))
        items.extend((layer, a, b) for a, b in chunks([(picked.start, picked.stop)], work.settings.chunk))
    return items


def _todo(root: Path, layer: str, stage: str, start: int, stop: int, rank: int) -> list[tuple[int, int]]:
    done = ProgressLog(root / "cache" / slug(layer) / stage, rank).done()
    return [(max(a, start), b) for a, b in missing(done, stop) if b > start]


@register_tool("gallery", name="gallery", takes_images=False, saves=False, follows_dtype=False)
def build(settings: GallerySettings, out: str | Path | Job, model: nn.Module | None = None, progress: bool = True,
          render: bool = True) -> dict:
    """Build (or continue) the gallery of ``settings`` in ``out``.

    Parameters
    ----------
    settings : GallerySettings
    out : folder or Job
        The site; created. Rerunning into it computes only what is missing. ``Job(folder, shard=(rank,
        world))`` computes only this rank's chunks (default: the torch.distributed rank, else all);
        ``Job(folder, overwrite=True)`` forgets what the site holds (its progress logs and identity) and
        computes everything again (default: a site of another model or other page-changing settings is
        refused).
    model : nn.Module, optional
        Default: loaded from ``settings.model`` / ``settings.weights`` (on the CPU).
    progress : bool
        One progress bar per stage (units done; the tools inside the stages show none).
    render : bool
        Write the HTML pages after computing (default True); rendering first computes the model page's
        RSA with IT (``brain.json``, once per site: :func:`.brain.ensure`).

    Returns
    -------
    dict
        ``computed`` (stage -> units computed now), ``seconds`` (total), ``stage_seconds`` (stage ->
        seconds), ``layers``, ``index`` (path of index.html), ``rank``, ``world``.
    """
    t0 = time.perf_counter()
    if model is None:
        from ..experiments.command import load_model

        model = load_model(settings.model, settings.weights, "cpu")
    job = Job.of(out)
    root, shard = Path(job.path), job.shard
    _check_site(root, settings, model, shard, job.overwrite)
    work = Work(model, settings, root, input_shape(model), progress=False)  # the stages' own bars stay silent
    layers = zoo_layers(model, settings.layers) if settings.layers else discover_layers(model, work.shape)
    rank, world = rank_world(shard)
    mine = plan(work, layers)[rank::world]
    jobs = [(layer, stage, a, b) for layer, start, stop in mine for stage, (_, applies) in STAGES.items()
            if applies(work, layer) for a, b in _todo(root, layer, stage, start, stop, rank)]
    computed = {stage: 0 for stage in STAGES}
    seconds = {stage: 0.0 for stage in STAGES}
    bars = _stage_bars(jobs, progress)
    try:
        for layer, stage, a, b in jobs:
            bars[stage].set_postfix_str(f"{layer} {a}:{b}", refresh=False)
            started = time.perf_counter()
            results = STAGES[stage][0](work, layer, list(range(a, b)))
            for c, data in zip(range(a, b), results):
                folder = work.unit_dir(layer, c)
                folder.mkdir(parents=True, exist_ok=True)
                write_json(folder / f"{stage}.json", data)
            log_dir = root / "cache" / slug(layer) / stage
            log_dir.mkdir(parents=True, exist_ok=True)
            ProgressLog(log_dir, rank).add(a, b)
            computed[stage] += b - a
            seconds[stage] += time.perf_counter() - started
            bars[stage].update(b - a)
            if bars[stage].n >= bars[stage].total:
                bars[stage].close()  # its elapsed time stays that of the stage's last chunk
        if render:
            brain.ensure(work, layers, rank)
    finally:
        for bar in bars.values():
            bar.close()
        if render:
            render_site(work, layers)
    return {"computed": computed, "seconds": time.perf_counter() - t0, "stage_seconds": seconds, "layers": layers,
            "index": str(root / "index.html"), "rank": rank, "world": world}


def _stage_bars(jobs: list, progress: bool) -> dict:
    """One tqdm bar per stage with work to do (features, exemplars, tuning, rf, lesion), counting units.

    Chunks run every stage in turn, so each bar's rate is units of its stage
    per second of the whole build and its ETA the build's remaining time;
    ``smoothing=0`` averages over the whole run, so the ETA does not jump
    between a slow stage and a fast one.
    """
    totals = {stage: 0 for stage in STAGES}
    for _, stage, a, b in jobs:
        totals[stage] += b - a
    width = max(len(stage) for stage in STAGES)
    shown = [stage for stage in STAGES if totals[stage] and progress]
    return {stage: tqdm(total=totals[stage], unit="units", desc=f"gallery {stage:<{width}}",
                        position=shown.index(stage) if stage in shown else 0, leave=True, smoothing=0,
                        dynamic_ncols=True, disable=stage not in shown)
            for stage in STAGES}


def render_site(work: Work, layers: list[str]) -> None:
    """Write style.css, index.html, model.html, one page per layer and one per unit from what is on disk."""
    root, s = work.root, work.settings
    title = s.name or f"{s.model} gallery"
    pages.write(root / "style.css", pages.STYLE + summary.TABLE_STYLE)
    index, table, layer_rows = [], [], []
    survey = describe.survey_model(work.model, work.shape)
    described = describe.describe_layers(work.model, work.shape, layers, survey)
    for layer in layers:
        shape = work.layer_shape(layer)
        channels = list(s.selection(work.n_units(layer)))
        reading = work.view(layer).describe(layer)  # how token, channels-last, head, recurrent units are read
        if reading:
            described[layer] = {**described[layer], "text": f"{described[layer]['text']}. {reading[0].upper()}"
                                                            f"{reading[1:]}"}
        stages = [st for st, (_, applies) in STAGES.items() if applies(work, layer)]
        ready, complete, rows, tunings = set(), 0, [], []
        datas = [pages.read_unit(work.unit_dir(layer, c), stages) for c in channels]
        classes = describe.output_classes(work.model, described[layer])
        context = pages.unit_context(layer, described[layer]["text"], classes, datas, work.shape, channels,
                                     work.view(layer).layout)
        for i, (c, data) in enumerate(zip(channels, datas)):
            data["_spatial"] = "tuning" in stages
            rows.append(unit_row(layer, c, data))
            tunings.append(data.get("tuning"))
            ready |= {c} if "features" in data else set()
            complete += all(st in data for st in stages)
            neighbours = (channels[i - 1] if i else None, channels[i + 1] if i + 1 < len(channels) else None)
            pages.write(root / "units" / slug(layer) / f"{c}.html",
                        pages.unit_page(title, layer, slug(layer), c, data, neighbours, context))
        pages.write(root / "layers" / f"{slug(layer)}.html",
                    pages.layer_page(title, layer, slug(layer), channels, ready, rows, tunings, work.shape[-1],
                                     UNIT_COLUMNS, described[layer]["text"], classes,
                                     lesion_reliability([d.get("lesion") for d in datas], s.seed)))
        table.extend(rows)
        layer_rows.append((layer, rows))
        index.append({"layer": layer, "slug": slug(layer), "n": len(channels), "done": complete,
                      "shape": tuple(shape), "thumbs": sorted(ready), "description": described[layer]["text"]})
    meta = {k: v for k, v in s.to_dict().items() if v is not None}
    card = describe.model_card(work.model, s, work.shape, layers, survey)
    pages.write(root / "index.html", pages.index_page(title, meta, index, card))
    pages.write(root / "model.html", brain.model_page(title, brain.read(root), layer_rows, work.shape[-1]))
    write_units_csv(root / "units.csv", table)


#: Columns of ``units.csv`` (one row per unit; empty cells: not computed, not applicable or not responsive).
UNIT_COLUMNS = ("layer", "unit", "page", "max_activation", "top_exemplar_activation", "maximizing_kind",
                "from_noise_activation", "responsive", "reason",
                "tuned_unit", "osi", "circular_variance", "preferred_orientation", "bandwidth", "preferred_sf",
                "sf_peak_at_edge", "preferred_colour", "rf_size", "f1_f0", "cell_type", "osi_at_floor", "spontaneous",
                "rf_size_se", "rf_n_images", "matched_activation", "photo_contrast", "matched_contrast",
                "lesion_bars", "lesion_nonzero")


def unit_row(layer: str, channel: int, data: dict) -> dict:
    """One unit's ``units.csv`` row from its stage JSON (the values its page shows): ``max_activation`` and
    ``maximizing_kind`` are those of the image the page calls maximizing, the most activating *synthesized* one
    (:func:`insilico.gallery.pages.ranked_images`; a stretched exemplar above the image from noise is it, though
    ``max.png`` shows the image from noise wherever that beats the best photo); the tuning record's physiology
    (``f1_f0``: F1/F0, empty where F0 <= 0; ``cell_type``: simple, complex or unresolved (SF peak at the edge of the
    tested range: no call); ``osi_at_floor``: OSI 1 because the
    orthogonal response equals the blank's; ``spontaneous``) for responsive units only, like the indices, and the RF
    size's standard error ``rf_size_se`` (pixels) over ``rf_n_images`` white-noise images; the image from noise
    synthesized under a contrast budget equal to the best photo's RMS contrast (``matched_activation``; the photo's
    and the image's RMS contrast ``photo_contrast``, ``matched_contrast``: pixel std in [0, 1] units); the lesion
    panel's bars (``lesion_bars``) and how many of them have a 95% interval that excludes 0 (``lesion_nonzero``).

    >>> row = unit_row("conv", 3, {"tuning": {"responsive": True, "osi": 1.0, "osi_saturated": True,
    ...                "modulation_ratio": 1.6, "cell_type": "simple", "spontaneous": False},
    ...                "rf": {"size": 9.0, "size_se": 0.5, "n_images": 16}})
    >>> [row[k] for k in ("f1_f0", "cell_type", "osi_at_floor", "spontaneous", "rf_size_se", "rf_n_images")]
    [1.6, 'simple', True, False, 0.5, 16]
    """
    feats, ex, tun, rf = (data.get(k) or {} for k in ("features", "exemplars", "tuning", "rf"))
    acts = [a for a in ex.get("activations", []) if a is not None]
    responsive = tun.get("responsive")
    shown = bool(responsive)
    best = next((r for r in pages.ranked_images(feats) if r["maximizing"]), {}) if feats else {}
    return {
        "layer": layer, "unit": channel, "page": f"units/{slug(layer)}/{channel}.html",
        "max_activation": best.get("value"), "top_exemplar_activation": acts[0] if acts else None,
        "maximizing_kind": best.get("kind"), "from_noise_activation": _from_noise(feats),
        "responsive": responsive, "reason": tun.get("reason") if tun else None, "tuned_unit": tun.get("unit"),
        "osi": tun.get("osi") if shown else None,
        "circular_variance": tun.get("circular_variance") if shown else None,
        "preferred_orientation": tun.get("preferred_orientation") if shown else None,
        "bandwidth": tun.get("bandwidth") if shown and tun.get("bandwidth_resolved", True) else None,
        "preferred_sf": tun.get("preferred_sf") if shown else None,
        "sf_peak_at_edge": tun.get("sf_peak_at_edge") if shown else None,
        "preferred_colour": tun.get("preferred_colour") if shown else None, "rf_size": rf.get("size"),
        "f1_f0": tun.get("modulation_ratio") if shown else None, "cell_type": (tun.get("cell_type") or None) if shown
        else None, "osi_at_floor": tun.get("osi_saturated") if shown else None,
        "spontaneous": tun.get("spontaneous") if shown else None,
        "rf_size_se": rf.get("size_se") if rf.get("size") is not None else None, "rf_n_images": rf.get("n_images"),
        **_matched_and_lesion(feats.get("matched") or {}, data.get("lesion") or {}),
    }


def _matched_and_lesion(matched: dict, lesion: dict) -> dict:
    """The appended ``units.csv`` cells of the contrast-matched image and of the lesion panel's intervals."""
    nonzero = lesion.get("nonzero")
    return {"matched_activation": matched.get("value"), "photo_contrast": matched.get("photo_contrast"),
            "matched_contrast": matched.get("contrast"),
            "lesion_bars": len(lesion["probability_change"]) if nonzero is not None else None,
            "lesion_nonzero": sum(map(bool, nonzero)) if nonzero is not None else None}


def _from_noise(feats: dict) -> float | None:
    """The activation of the unit's best image synthesized from noise (the maximizing image, or the other one)."""
    if feats.get("maximizing_kind", "from noise") == "from noise":
        return feats.get("maximizing")
    other = feats.get("other") or {}
    return other.get("value") if other.get("kind") == "from noise" else None


def write_units_csv(path: Path, rows: list[dict]) -> None:
    """``units.csv``: :data:`UNIT_COLUMNS`, booleans as true/false, missing values empty."""
    import csv
    import io

    def cell(value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:.6g}" if value == value else ""
        return str(value)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(UNIT_COLUMNS)
    for row in rows:
        writer.writerow([cell(row.get(k)) for k in UNIT_COLUMNS])
    pages.write(path, text.getvalue())


__all__ = ["UNIT_COLUMNS", "build", "discover_layers", "plan", "render_site", "unit_row", "write_units_csv",
           "zoo_layers"]
