"""The ``insilico`` command line. ``insilico --help`` lists the subcommands; each has ``--help``.

Every subcommand is one small function ``_<name>(sub)`` that adds its parser
and sets ``run``; :data:`COMMANDS` lists them in ``--help`` order. A new tool
adds one such function and one line in the table.

Conventions shared by the subcommands: ``--model`` takes a bundled name
(``insilico models``), ``package.module:callable`` or ``path/file.py:callable``
(with ``--weights``); ``--device auto|cpu|cuda[:n]``; ``--seed``; outputs are
PNG files plus ``manifest.json`` in ``--out``. Bad input ends with one line on
stderr and exit status 2; Ctrl-C ends with status 130, keeping every output
already written (reruns continue where it stopped).

Scale-out: ``maximize``, ``metamer``, ``adversarial``, ``controversial`` and
``record`` cut their work into chunks kept in ``--out`` (``OUT/parts``,
``OUT/recording``). Under ``torchrun`` (``python -m insilico``) the ranks
share the chunks and rank 0 writes the outputs; ``--shard R/W`` runs one
share by hand (a SLURM array task), and ``insilico merge OUT`` writes the
outputs once every share is done. A rerun computes only missing chunks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InsilicoError, StimulusError


# ---------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------
def _model_options(parser: argparse.ArgumentParser, default: str | None = "minialex") -> None:
    parser.add_argument("--model", default=default, required=default is None,
                        help="bundled model name (see `insilico models`), 'package.module:callable' or "
                             "'path/file.py:callable' returning an nn.Module on pixel-space images"
                             + (f" (default {default})" if default else ""))
    parser.add_argument("--weights", default=None, help="state_dict (.pt / .safetensors) for a --model spec")
    _run_options(parser)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _shard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", default=None,
                        help="R/W: compute only share R of W (e.g. a SLURM array task; `insilico merge OUT` joins "
                             "them); default: the torchrun ranks share the work")


def _shared(args, out: Path) -> tuple[Path, tuple[int, int] | None]:
    """The folder of the command's chunks and this process's shard; remembers the command for ``insilico merge``."""
    from ..sharding import write_json

    write_json(out / "command.json", {"argv": args.argv})
    return out / "parts", _pair(args.shard, "/", "--shard") if args.shard else None


def _writes_outputs(result) -> bool:
    """Whether this process writes the outputs: it holds the whole result, and is rank 0 of a process group."""
    from ..sharding import rank_world

    if result is None:
        print("this share is done; the outputs are written when every share is (or run `insilico merge OUT`)")
        return False
    return rank_world()[0] == 0


def _load(args):
    from ..experiments.command import load_model

    return load_model(args.model, args.weights, args.device)


def _out(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InsilicoError(f"cannot create output folder {path!r}: {e.strerror}") from None
    return out


def _manifest(out: Path, args, entries: list, **extra) -> None:
    """Write ``out/manifest.json``: the command, the model, library versions, and one entry per output."""
    import torch

    from .. import __version__
    from ..sharding import write_json

    settings = {k: v for k, v in vars(args).items() if k not in ("run", "argv", "shard")}
    write_json(out / "manifest.json", {"command": args.command, "settings": settings, "outputs": entries,
                                       "versions": {"insilico": __version__, "torch": torch.__version__}, **extra})


def _save_png(path: Path, image) -> None:
    """Save one (C, H, W) tensor in [0, 1] as PNG."""
    import skimage.io

    from ..plot import as_images

    skimage.io.imsave(path, (as_images(image)[0] * 255).round().astype("uint8"), check_contrast=False)


def _file_name(unit: str) -> str:
    from ..gallery.stages import slug

    return slug(unit.replace("[", "_").replace("]", "").replace(",", "-").replace(":", "-"))


def read_images(paths: list[str], model, resize: bool = False):
    """Images (N, C, H, W) in [0, 1] from files, checked against ``model.input_size``."""
    import numpy as np
    import skimage.io
    import skimage.transform
    import torch

    size = getattr(model, "input_size", None)
    images = []
    for path in paths:
        try:
            array = skimage.io.imread(path)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StimulusError(f"cannot read image {path!r}: {reason}") from None
        array = array.astype(np.float32) / (65535.0 if array.dtype == np.uint16 else 255.0 if array.dtype.kind in "ui" else 1.0)
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        if size is not None and array.shape[:2] != tuple(size[1:]):
            if not resize:
                raise StimulusError(f"image {path!r} is {array.shape[0]}x{array.shape[1]}; the model takes "
                                    f"{size[1]}x{size[2]}: resize it, or pass --resize")
            array = skimage.transform.resize(array, tuple(size[1:]), anti_aliasing=True)
        images.append(torch.from_numpy(np.clip(array, 0, 1).astype(np.float32)).permute(2, 0, 1))
    if len({tuple(i.shape) for i in images}) > 1:
        raise StimulusError("the images have different sizes; pass --resize (needs a model with input_size)")
    return torch.stack(images)


# ---------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------
def _demo(sub) -> None:
    p = sub.add_parser("demo", help="record, lesion and stimulate a bundled model; print and plot what changed",
                       description="A tour on a bundled model: orientation tuning, lesions, stimulation.")
    p.add_argument("--model", default="minialex", help="bundled model name (see `insilico models`)")
    p.add_argument("--out", default="demo", help="folder for demo.png and demo.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        from ..demo import run_demo

        run_demo(args.model, out=args.out, progress=not args.quiet, seed=args.seed)

    p.set_defaults(run=run)


def _models(sub) -> None:
    p = sub.add_parser("models", help="list the bundled models with their cards",
                       description="List the bundled models with their held-out accuracy.")

    def run(args):
        from .. import models

        for name in models.available():
            card = models.card(name)
            print(f"{name:10s} {card['description']} (held-out accuracy {card['held_out_accuracy']:.2f}, "
                  f"chance {card['chance']:.3f})")

    p.set_defaults(run=run)


def _record(sub) -> None:
    p = sub.add_parser("record", help="record units over a stimulus set (resumable, on disk)",
                       description="Record units over a stimulus set into OUT/recording (memory-mapped arrays), "
                                   "with a PNG of the mean responses and manifest.json. Rerunning continues an "
                                   "interrupted recording.")
    _model_options(p)
    p.add_argument("--units", nargs="+", required=True, help="unit addresses, e.g. features.0 'features.3[5]'")
    p.add_argument("--stimuli", default="photos",
                   help="photos (the bundled held-out crops), gratings, natural, or a folder of images")
    p.add_argument("--per-class", type=int, default=16, help="photos: crops per class (default 16)")
    p.add_argument("--reduce", choices=["mean", "max", "center"], default=None,
                   help="spatial reduction of conv maps (default: keep every value); applies to every unit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..probe import Probe

        model, out = _load(args), _out(args.out)
        stimuli = _stimulus_set(args, model)
        _, shard = _shared(args, out)
        rec = Probe(model).record_stimuli(stimuli, args.units, out=out / "recording", reduce=args.reduce,
                                          batch_size=args.batch_size, progress=not args.quiet, shard=shard)
        if not _writes_outputs(rec if rec.complete else None):
            return
        entries = []
        for unit in args.units:
            values = rec[unit].float().reshape(len(rec), -1)
            _response_png(out / f"{_file_name(unit)}.png", values, unit)
            entries.append({"unit": unit, "file": f"{_file_name(unit)}.png", "shape": list(rec[unit].shape),
                            "mean": float(values.mean())})
        _manifest(out, args, entries, recording="recording", n_stimuli=len(rec))
        print(f"recorded {len(args.units)} unit(s) over {len(rec)} stimuli into {out}")

    p.set_defaults(run=run)


def _stimulus_set(args, model):
    from .. import stimuli
    from ..models import photos

    size = int(getattr(model, "input_size", (3, 64, 64))[-1])
    if args.stimuli == "photos":
        return photos.held_out(args.per_class, seed=1234 + args.seed)[0]
    if args.stimuli == "gratings":
        return stimuli.gratings(size=size, orientation=range(0, 180, 15), sf=[2, 4, 8], phase=[0, 90, 180, 270],
                                channels=3)
    if args.stimuli == "natural":
        return stimuli.natural_images(size=size, n_crops=4, seed=args.seed, crop=0.5)
    if Path(args.stimuli).is_dir():
        return stimuli.from_folder(args.stimuli, size=size)
    raise InsilicoError(f"--stimuli must be photos, gratings, natural or a folder of images, not {args.stimuli!r}")


def _response_png(path: Path, values, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    shown = values if values.shape[1] <= 512 else values[:, :512]
    image = ax.imshow(shown.T.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xlabel("stimulus")
    ax.set_ylabel("unit value")
    ax.set_title(unit)
    fig.colorbar(image, ax=ax)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _maximize(sub) -> None:
    p = sub.add_parser("maximize", help="activation-maximizing (or inhibiting) images, one PNG per unit",
                       description="Optimise images that drive each unit (a layer means all its channels). Writes "
                                   "one PNG per image and manifest.json; chunks of --batch-size images are kept "
                                   "in OUT/parts, so an interrupted run continues.")
    _model_options(p)
    p.add_argument("--units", nargs="+", required=True, help="unit addresses, e.g. 'features.3[5]' or a layer")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: maximize's, 512)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 0.05)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    p.add_argument("--images-per-unit", type=int, default=1)
    p.add_argument("--diversity", type=float, default=0.0, help="weight of the diversity term between a unit's images")
    p.add_argument("--negative", action="store_true", help="inhibiting images (minimize) instead")
    p.add_argument("--batch-size", type=int, default=64, help="images optimised together (one chunk)")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..sharding import done_chunks
        from ..design.maximize import maximize

        model, out = _load(args), _out(args.out)
        units = _expand_units(model, args.units, args.size)
        parts, shard = _shared(args, out)
        before = done_chunks(parts) if parts.exists() else []
        options = {k: v for k, v in dict(steps=args.steps, lr=args.lr, size=args.size).items() if v is not None}
        result = maximize(model, units, images_per_unit=args.images_per_unit, diversity=args.diversity,
                          negative=args.negative, seed=args.seed, progress=not args.quiet,
                          batch_size=args.batch_size, out=parts, shard=shard, **options)
        if not _writes_outputs(result):
            return
        entries = []
        for image, label, value in zip(result.images, result.labels, result.values.tolist()):
            name = _file_name(label.replace("#", "-")) + ".png"
            if not (out / name).exists():
                _save_png(out / name, image)
            entries.append({"image": label, "file": name, "value": value})
        _manifest(out, args, entries)
        kept = sum(b - a for a, b in before) // args.images_per_unit
        print(f"{len(units)} unit(s): {len(units) - kept} computed, {kept} already in {out}")

    p.set_defaults(run=run)


def _expand_units(model, specs: list[str], size) -> list[str]:
    """Unit addresses with whole layers expanded into their channels (bad addresses fail here, at once)."""
    import torch

    from ..probe import Probe

    probe = Probe(model)
    parsed = probe.units(*specs)
    shape = getattr(model, "input_size", None) or (3, size or 64, size or 64)
    with torch.no_grad(), probe.record(*parsed) as rec:  # one pass: an index out of range fails now
        model(torch.full((1, *shape), 0.5, device=probe.device, dtype=probe.dtype))
        shapes = {u.key: rec[u].shape[1] for u in parsed if u.index is None}
    units = []
    for unit in parsed:
        channels = range(shapes[unit.key]) if unit.index is None else [None]
        units.extend(str(unit) if c is None else str(unit.replace(index=(c,))) for c in channels)
    return units


def _gradient_map(sub, name: str = "gradient-map", method: str = "gradient") -> None:
    p = sub.add_parser(name, help=f"{'deconvolution projections' if method == 'deconv' else 'gradient maps'} "
                                  "of a unit for image files",
                       description="What in each image drives a unit: maps saved as a PNG mosaic with a JSON "
                                   "sidecar (insilico.plot.save_maps), one overlay PNG, and manifest.json.")
    _model_options(p)
    p.add_argument("--unit", required=True, help="unit address, e.g. 'features.10[3]' or '[5]' (class logit 5)")
    p.add_argument("--images", nargs="+", required=True, help="image files (PNG, JPEG, ...)")
    p.add_argument("--method", default=method, help=f"gradient, gradient_x_input, guided, deconv, integrated, "
                                                     f"smoothgrad, gradcam (default {method})")
    p.add_argument("--layer", default=None, help="gradcam only: the conv layer to weight")
    p.add_argument("--resize", action="store_true", help="resize images to the model's input size")
    p.add_argument("--out", required=True, help="output folder")

    def run(args):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..attribution.gradients import gradient_map
        from ..plot import map_overlay, save_maps
        from ..probe import Probe

        model = _load(args)
        Probe(model).units(args.unit)
        images = read_images(args.images, model, args.resize)
        out = _out(args.out)
        maps = gradient_map(model, images, args.unit, method=args.method, layer=args.layer).cpu()
        stem = f"{args.method}_{_file_name(args.unit)}".replace(".", "_")
        save_maps(out / f"{stem}.png", maps, unit=args.unit, method=args.method)
        fig = map_overlay(images, maps)
        fig.savefig(out / f"{stem}_overlay.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        _manifest(out, args, [{"image": i, "map": f"{stem}.png", "overlay": f"{stem}_overlay.png"}
                              for i in args.images])
        print(f"wrote {args.method} maps of {args.unit} for {len(images)} image(s) into {out}")

    p.set_defaults(run=run)


def _deconv(sub) -> None:
    _gradient_map(sub, "deconv", "deconv")


def _gallery(sub) -> None:
    p = sub.add_parser("gallery", help="build a static HTML gallery of a model's units",
                       description="Static HTML galleries (open OUT/index.html in a browser, no server).")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="build or continue a gallery (only missing parts are computed)",
                           description="Build a gallery: per layer a grid of units, per unit its maximizing, "
                                       "diverse and inhibiting images, top exemplars with deconvolution and "
                                       "gradient maps, tuning curves and RF map (conv layers), lesion effects. "
                                       "Cached per unit: a rerun computes only what is missing. Options override "
                                       "the --definition file.")
    b.add_argument("--definition", default=None, help="gallery definition JSON (e.g. gallery/minialex.json)")
    b.add_argument("--model", default=None, help="bundled name, 'package.module:callable' or 'file.py:callable' "
                                                  "(default: the definition's, else minialex)")
    b.add_argument("--weights", default=None, help="state_dict for a --model spec")
    b.add_argument("--layers", default=None, help="comma-separated layers (default: every conv and linear layer)")
    b.add_argument("--units", type=int, default=None, help="only the first N units of each layer")
    b.add_argument("--unit-range", default=None, help="only units START:STOP of each layer")
    b.add_argument("--steps", type=int, default=None, help="maximization steps (default 16)")
    b.add_argument("--exemplars", type=int, default=None, help="top exemplars per unit (default 9)")
    b.add_argument("--chunk", type=int, default=None, help="units computed together (default 256)")
    b.add_argument("--out", default=None, help="site folder (default gallery/site/<model>)")
    b.add_argument("--shard", default=None, help="R/W: compute only rank R's share of W (default: torch.distributed)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(run=_gallery_build)


def _gallery_build(args) -> None:
    from ..experiments.command import load_model
    from ..gallery import GallerySettings, build

    overrides = dict(model=args.model, weights=args.weights, units=args.units, steps=args.steps,
                     exemplars=args.exemplars, chunk=args.chunk, seed=args.seed,
                     layers=args.layers.split(",") if args.layers else None,
                     unit_range=_pair(args.unit_range, ":", "--unit-range") if args.unit_range else None)
    if args.definition:
        settings = GallerySettings.from_file(args.definition, **overrides)
    else:
        settings = GallerySettings.from_dict({k: v for k, v in overrides.items() if v is not None})
    model = load_model(settings.model, settings.weights, args.device)
    shard = _pair(args.shard, "/", "--shard") if args.shard else None
    out = args.out or str(Path("gallery") / "site" / _file_name(settings.model.split(":")[-1]))
    summary = build(settings, out, model=model, shard=shard, progress=not args.quiet)
    computed = ", ".join(f"{k} {v}" for k, v in summary["computed"].items())
    print(f"gallery of {len(summary['layers'])} layer(s) in {summary['seconds']:.0f} s "
          f"(computed now: {computed}); open {summary['index']}")


def _pair(text: str, sep: str, option: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(sep))
    except ValueError:
        raise InsilicoError(f"{option} must look like A{sep}B with integers, not {text!r}") from None
    return a, b


def _input_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", default=None, help="image files (default: held-out crops of the bundled photos)")
    p.add_argument("--per-class", type=int, default=1, help="held-out crops per class when no --images are given")


def _read_input(args, model):
    """The images given with --images, else the bundled held-out crops (with their labels)."""
    from ..models import photos

    if args.images:
        return read_images(args.images, model), None
    return photos.held_out(args.per_class, seed=1234 + args.seed)


def _metamer(sub) -> None:
    p = sub.add_parser("metamer", help="model metamers of images at a layer, with the validity report",
                       description="Images that LAYER cannot tell from each reference image. Writes one PNG per "
                                   "metamer, manifest.json with each metamer's relative error and validity.")
    _model_options(p)
    _input_images(p)
    p.add_argument("--layer", required=True, help="unit address of the matched layer, e.g. features.3")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16, help="references per chunk (default 16)")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..design.metamers import metamer

        model, out = _load(args), _out(args.out)
        references, _ = _read_input(args, model)
        parts, shard = _shared(args, out)
        result = metamer(model, args.layer, references, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                         out=parts, shard=shard, progress=not args.quiet)
        if not _writes_outputs(result):
            return
        report = result.validity(model)
        entries = []
        for i, (image, error, valid) in enumerate(zip(result.images, result.final_errors.tolist(),
                                                      report.valid.tolist())):
            _save_png(out / f"metamer_{i:03d}.png", image)
            entries.append({"file": f"metamer_{i:03d}.png", "reference": i, "relative_error": error,
                            "valid": bool(valid)})
        _manifest(out, args, entries)
        print(f"{len(entries)} metamer(s) of {args.layer}: {sum(e['valid'] for e in entries)} valid; written to {out}")

    p.set_defaults(run=run)


def _adversarial(sub) -> None:
    p = sub.add_parser("adversarial", help="PGD adversarial images (untargeted, targeted or silencing a unit)",
                       description="Projected gradient descent within an epsilon ball around each image. Writes one "
                                   "PNG per image and epsilon, and manifest.json with the success report.")
    _model_options(p)
    _input_images(p)
    p.add_argument("--eps", type=float, nargs="+", default=[8.0], help="radii, in 1/255 for L-inf (default 8)")
    p.add_argument("--norm", choices=["inf", "l2"], default="inf")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--target", default=None,
                   help="a class index, or a unit address driven up ('-' prefix: silenced, e.g. '-features.10[3]')")
    p.add_argument("--batch-size", type=int, default=64, help="images attacked together (one chunk)")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from .. import objectives
        from ..design.adversarial import pgd

        model, out = _load(args), _out(args.out)
        images, labels = _read_input(args, model)
        eps = [e / 255 if args.norm == "inf" else e for e in args.eps]
        target = args.target
        if target is not None and target.isdigit():
            target = int(target)
        elif target is not None:
            target = -objectives.activation(target[1:]) if target.startswith("-") else objectives.activation(target)
        parts, shard = _shared(args, out)
        result = pgd(model, images, labels, eps=eps if len(eps) > 1 else eps[0], steps=args.steps, norm=args.norm,
                     target=target, seed=args.seed, progress=not args.quiet, batch_size=args.batch_size,
                     out=parts, shard=shard)
        if not _writes_outputs(result):
            return
        entries = []
        for k, value in enumerate(args.eps):
            at = result.at(eps[k]) if len(eps) > 1 else result
            for i, (image, ok) in enumerate(zip(at.images, at.success.tolist())):
                name = f"eps{value:g}_{i:03d}.png"
                _save_png(out / name, image)
                entries.append({"file": name, "image": i, "eps": eps[k], "success": bool(ok)})
        _manifest(out, args, entries)
        rates = ", ".join(f"eps {v:g}: {100 * sum(e['success'] for e in entries if e['eps'] == eps[k]) / len(images):.0f}%"
                          for k, v in enumerate(args.eps))
        print(f"success {rates}; written to {out}")

    p.set_defaults(run=run)


def _controversial(sub) -> None:
    p = sub.add_parser("controversial", help="images two models classify differently (Golan et al. 2020)",
                       description="For each class pair i,j: images model A calls i and model B calls j. Writes "
                                   "one PNG per image and manifest.json with the controversiality scores.")
    p.add_argument("--models", nargs=2, default=["minialex", "blt"], help="two bundled names or specs, A and B")
    p.add_argument("--pairs", nargs="+", required=True, help="class pairs as i,j (indices or class names)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=1, help="images per pair")
    p.add_argument("--batch-size", type=int, default=4, help="class pairs per chunk (default 4)")
    _run_options(p)
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..design.controversial import controversial
        from ..experiments.command import load_model

        models = {spec: load_model(spec, None, args.device) for spec in args.models}
        pairs = [tuple(int(c) if c.isdigit() else c for c in _class_pair(text)) for text in args.pairs]
        out = _out(args.out)
        parts, shard = _shared(args, out)
        result = controversial(models, pairs, seeds=args.seeds, steps=args.steps, seed=args.seed,
                               progress=not args.quiet, out=parts, shard=shard, pairs_per_chunk=args.batch_size)
        if not _writes_outputs(result):
            return
        entries = []
        for i, (image, label, score) in enumerate(zip(result.images, result.labels, result.score.tolist())):
            _save_png(out / f"controversial_{i:03d}.png", image)
            entries.append({"file": f"controversial_{i:03d}.png", "label": label, "score": score})
        _manifest(out, args, entries)
        print(f"{len(entries)} image(s); best controversiality {max(e['score'] for e in entries):.2f}; written to {out}")

    p.set_defaults(run=run)


def _class_pair(text: str) -> list[str]:
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise InsilicoError(f"a class pair is written i,j (indices or class names), not {text!r}")
    return parts


def _merge(sub) -> None:
    p = sub.add_parser("merge", help="write the outputs of a run whose shards all finished",
                       description="Join the chunks that the shards (--shard R/W) of a record, maximize, metamer, "
                                   "adversarial or controversial run left in OUT, and write its outputs (PNGs, "
                                   "manifest.json) as a single run would. Computes nothing: a missing chunk is an "
                                   "error that names it (rerun the command without --shard to compute it).")
    p.add_argument("out", help="the --out folder of the sharded run")

    def run(args):
        from ..sharding import merge_only

        saved = Path(args.out) / "command.json"
        if not saved.exists():
            raise InsilicoError(f"{args.out} holds no sharded run (no command.json): give the --out folder of one")
        argv = [a for a in json.loads(saved.read_text())["argv"]]
        if "--shard" in argv:
            del argv[argv.index("--shard"): argv.index("--shard") + 2]
        original = build_parser().parse_args(argv)
        original.argv = argv
        if original.command == "record":
            from ..recording import Recording

            if not Recording.load(Path(args.out) / "recording").complete:
                raise InsilicoError(f"the recording in {args.out} is not complete: "
                                    "rerun the command without --shard")
        with merge_only():
            original.run(original)

    p.set_defaults(run=run)


#: The subcommands, in --help order.
COMMANDS = [_demo, _models, _record, _maximize, _gradient_map, _deconv, _metamer, _adversarial, _controversial,
            _gallery, _merge]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insilico", description="In-silico electrophysiology for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _join_torchrun() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (gloo: the ranks only meet at
    barriers); each rank uses GPU ``LOCAL_RANK`` when there are GPUs. Returns whether it joined."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or dist.is_initialized():
        return False
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("gloo")
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    joined = _join_torchrun()
    try:
        args.run(args)
    except InsilicoError as error:
        print(f"insilico: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insilico: interrupted; finished outputs are kept, rerun the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
