"""Stimulus design subcommands: ``maximize``, ``metamer``, ``adversarial`` and ``controversial``.

Each runs one tool of :mod:`insilico.design` in chunks kept in ``OUT/parts``
(resumable, shardable) and writes one PNG per image plus ``manifest.json``.
"""
from __future__ import annotations

import argparse

from .options import (_batch_option, _input_images, _load, _model_options, _read_input, _run_options, _shard_option,
                      float_up_to, library_value, positive_int)

#: The largest --lr, --diversity and --eps (the library's bounds; past them float32 steps overflow).
LR_MAX = library_value("synthesis/optimizers.py", "LR_MAX")
EPS_MAX = library_value("design/adversarial.py", "EPS_MAX")
DIVERSITY_MAX = 1e6
from .outputs import _file_name, _manifest, _out, _save_png, _shared, _writes_outputs


def _maximize(sub) -> None:
    p = sub.add_parser("maximize", help="activation-maximizing (or inhibiting) images, one PNG per unit",
                       description="Optimise images that drive each unit (a layer means all its channels). Writes "
                                   "one PNG per image and manifest.json; chunks of --batch-size images are kept "
                                   "in OUT/parts, so an interrupted run continues.")
    _model_options(p)
    tool = "design/maximize.py"
    p.add_argument("--units", nargs="+", required=True, help="unit addresses, e.g. 'features.3[5]' or a layer")
    p.add_argument("--steps", type=positive_int, default=library_value(tool, "MAXIMIZE_DEFAULTS.steps"),
                   help="optimisation steps (default %(default)s)")
    p.add_argument("--lr", type=float_up_to(LR_MAX), default=library_value(tool, "MAXIMIZE_DEFAULTS.lr"),
                   help=f"learning rate, at most {LR_MAX:g} (default %(default)s)")
    p.add_argument("--size", type=positive_int, default=None, help="image side (default: the model's input size)")
    p.add_argument("--images-per-unit", type=positive_int, default=library_value(tool, "maximize.images_per_unit"),
                   help="images per unit (default %(default)s)")
    p.add_argument("--diversity", type=float_up_to(DIVERSITY_MAX, strict=False),
                   default=library_value(tool, "MaximizeOptions.diversity"),
                   help=f"weight of the diversity term between a unit's images, at most {DIVERSITY_MAX:g} "
                        "(default %(default)s)")
    p.add_argument("--negative", action="store_true", help="inhibiting images (minimize) instead")
    _batch_option(p, 64, "images")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..sharding import done_chunks
        from ..design.maximize import maximize

        model = _load(args)
        units = _expand_units(model, args.units, args.size)  # bad units or --size end here, before any write
        out = _out(args.out)
        job = _shared(args, out)
        before = done_chunks(job.path) if job.path.exists() and not args.force else []
        result = maximize(model, units, steps=args.steps, lr=args.lr, size=args.size,
                          images_per_unit=args.images_per_unit, diversity=args.diversity, negative=args.negative,
                          seed=args.seed, progress=not args.quiet, batch_size=args.batch_size, out=job)
        if not _writes_outputs(result):
            return
        entries = []
        for image, label, value in zip(result.images, result.labels, result.values.tolist()):
            name = _file_name(label.replace("#", "-")) + ".png"
            if args.force or not (out / name).exists():
                _save_png(out / name, image)
            entries.append({"image": label, "file": name, "value": value})
        _manifest(out, args, entries)
        kept = sum(b - a for a, b in before) // args.images_per_unit
        print(f"{len(units)} unit(s): {len(units) - kept} computed, {kept} already in {out}")

    p.set_defaults(run=run)


def _expand_units(model, specs: list[str], size) -> list[str]:
    """Unit addresses with whole layers expanded into their channels (bad addresses fail here, at once)."""
    import torch

    from ..layers import image_size, size_failure
    from ..probe import Probe
    from ..units import need_tensor

    probe = Probe(model)
    parsed = probe.units(*specs)
    shape = image_size(model, size, name="--size")
    with torch.no_grad(), probe.record(*parsed) as rec:  # one pass: an index out of range fails now
        try:
            model(torch.full((1, *shape), 0.5, device=probe.device, dtype=probe.dtype))
        except Exception as error:  # a size the model cannot take: a ModelInputError naming --size
            raise size_failure(error, (1, *shape), "--size")
        shapes = {u.key: need_tensor(u, rec[u]).shape[1] for u in parsed if u.index is None}  # a tuple: its parts
    units = []
    for unit in parsed:
        channels = range(shapes[unit.key]) if unit.index is None else [None]
        units.extend(str(unit) if c is None else str(unit.replace(index=(c,))) for c in channels)
    return units


def _metamer(sub) -> None:
    p = sub.add_parser("metamer", help="model metamers of images at a layer, with the validity report",
                       description="Images that LAYER cannot tell from each reference image. Writes one PNG per "
                                   "metamer, manifest.json with each metamer's relative error and validity.")
    _model_options(p)
    _input_images(p)
    p.add_argument("--layer", required=True, help="unit address of the matched layer, e.g. features.3")
    p.add_argument("--steps", type=positive_int, default=library_value("design/metamers.py", "METAMER_DEFAULTS.steps"),
                   help="most optimisation steps (default %(default)s)")
    _batch_option(p, 16, "references")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..design.metamers import metamer

        model = _load(args)
        references, _ = _read_input(args, model)
        out = _out(args.out)
        result = metamer(model, args.layer, references, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                         out=_shared(args, out), progress=not args.quiet)
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
    p.add_argument("--eps", type=float_up_to(EPS_MAX), nargs="+", default=[8.0],
                   help=f"radii, in 1/255 for L-inf, at most {EPS_MAX:g} (default 8)")
    norms = sorted(set(library_value("synthesis/optimizers.py", "NORMS").values()))
    p.add_argument("--norm", choices=norms, default=library_value("design/adversarial.py", "AttackOptions.norm"),
                   help="the ball's norm (default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=library_value("design/adversarial.py", "AttackOptions.steps"),
                   help="PGD steps (default %(default)s)")
    p.add_argument("--target", default=None,
                   help="a class index, or a unit address driven up ('-' prefix: silenced, e.g. '-features.10[3]')")
    _batch_option(p, 64, "images")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from .. import objectives
        from ..design.adversarial import pgd

        model = _load(args)
        images, labels = _read_input(args, model)
        eps = [e / 255 if args.norm == "inf" else e for e in args.eps]
        target = args.target
        if target is not None and target.isdigit():
            target = int(target)
        elif target is not None:
            target = -objectives.activation(target[1:]) if target.startswith("-") else objectives.activation(target)
        out = _out(args.out)  # after the inputs are read and the target parsed: a bad one writes nothing
        result = pgd(model, images, labels, eps=eps if len(eps) > 1 else eps[0], steps=args.steps, norm=args.norm,
                     target=target, seed=args.seed, progress=not args.quiet, batch_size=args.batch_size,
                     out=_shared(args, out))
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
    tool = "design/controversial.py"
    p.add_argument("--models", nargs=2, default=["minialex", "blt"],
                   help="two bundled names or specs, A and B (default: minialex blt)")
    p.add_argument("--pairs", nargs="+", type=_class_pair, required=True,
                   help="class pairs as i,j (indices or class names)")
    p.add_argument("--steps", type=positive_int, default=library_value(tool, "CONTROVERSIAL_DEFAULTS.steps"),
                   help="most optimisation steps (default %(default)s)")
    p.add_argument("--images-per-pair", type=positive_int, default=library_value(tool, "controversial.seeds"),
                   help="images per class pair, each from its own start (default %(default)s)")
    _batch_option(p, 4, "class pairs")
    _run_options(p)
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..design.controversial import controversial
        from ..experiments.command import load_model

        models = {spec: load_model(spec, None, args.device) for spec in args.models}
        out = _out(args.out)
        result = controversial(models, args.pairs, seeds=args.images_per_pair, steps=args.steps, seed=args.seed,
                               progress=not args.quiet, out=_shared(args, out), batch_size=args.batch_size)
        if not _writes_outputs(result):
            return
        entries = []
        for i, (image, label, score) in enumerate(zip(result.images, result.labels, result.score.tolist())):
            _save_png(out / f"controversial_{i:03d}.png", image)
            entries.append({"file": f"controversial_{i:03d}.png", "label": label, "score": score})
        _manifest(out, args, entries)
        print(f"{len(entries)} image(s); best controversiality {max(e['score'] for e in entries):.2f}; written to {out}")

    p.set_defaults(run=run)


def _class_pair(text: str) -> tuple:
    """``i,j``: two class indices or names (an argparse type: checked while parsing)."""
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"a class pair is written i,j (indices or class names), not {text!r}")
    return tuple(int(c) if c.isdigit() else c for c in parts)
