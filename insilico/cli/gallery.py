"""``insilico gallery build``: a static HTML gallery of a model's units (cached per unit, shardable)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import (_device_option, _labels_options, _quiet_option, _seed_option, _shard_option, existing_file,
                      library_value, positive_int, unit_range, weights_file)
from .outputs import _file_name


def _gallery(sub) -> None:
    p = sub.add_parser("gallery", help="build a static HTML gallery of a model's units",
                       description="Static HTML galleries (open OUT/index.html in a browser, no server).")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="build or continue a gallery (only missing parts are computed)",
                           description="Build a gallery: per layer a grid of units, per unit its maximizing, "
                                       "diverse and inhibiting images, top exemplars with deconvolution and "
                                       "gradient maps, tuning curves and RF map (spatial layers), lesion effects. "
                                       "Cached per unit: a rerun computes only what is missing. Options override "
                                       "the --definition file.")

    def default(name: str) -> str:  # the setting's default, where GallerySettings defines it
        return f"default: the definition's, else {library_value('gallery/settings.py', 'GallerySettings.' + name)}"

    b.add_argument("--definition", type=existing_file, default=None,
                   help="gallery definition JSON (e.g. gallery/minialex.json)")
    b.add_argument("--model", default=None, help="bundled name, zoo model ('timm:NAME', ...), "
                                                  "'package.module:callable' or 'file.py:callable' "
                                                  f"({default('model')})")
    b.add_argument("--weights", type=weights_file, default=None,
                   help="state_dict for a --model spec or zoo model, or 'random' (random weights)")
    b.add_argument("--layers", type=_layers, default=None,
                   help="comma-separated layers: module paths ('layer1'; a zoo model's may leave out 'net.'), "
                        "'PATH@T' for time step T of a recurrent layer, 'PATH:heads' for the heads of an attention "
                        "module (default: every conv and linear layer, and the heads of every attention module)")
    b.add_argument("--units", type=positive_int, default=None, help="only the first N units of each layer")
    b.add_argument("--unit-range", type=unit_range, default=None, help="only units START:STOP of each layer")
    b.add_argument("--steps", type=positive_int, default=None, help=f"maximization steps ({default('steps')})")
    b.add_argument("--stimuli", default=None,
                   help="exemplar stimuli: photos, natural, or a folder (DIR/<class>/<image> names the classes) or "
                        f"glob of image files, fitted to the model's input ({default('stimuli')})")
    _labels_options(b)
    b.add_argument("--exemplars", type=positive_int, default=None,
                   help=f"top exemplars per unit ({default('exemplars')})")
    b.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"units computed together, the definition's chunk ({default('chunk')})")
    b.add_argument("--out", default=None, help="site folder (default gallery/site/<model>)")
    _shard_option(b, "R/W: compute only share R of W (the pages show what is done so far); default: the "
                     "torchrun ranks share the work")
    _device_option(b)
    _seed_option(b, None, f"seed of every random choice ({default('seed')})")
    _quiet_option(b)
    b.set_defaults(run=_gallery_build)


def _gallery_build(args) -> None:
    from ..experiments.command import load_model
    from ..gallery import GallerySettings, build
    from ..options import Job

    overrides = dict(model=args.model, weights=args.weights, units=args.units, steps=args.steps,
                     exemplars=args.exemplars, chunk=args.batch_size, seed=args.seed, layers=args.layers,
                     unit_range=args.unit_range, stimuli=args.stimuli, labels=args.labels, class_names=args.class_names)
    if args.definition:
        settings = GallerySettings.from_file(args.definition, **overrides)
    else:
        settings = GallerySettings.from_dict({k: v for k, v in overrides.items() if v is not None})
    model = load_model(settings.model, settings.weights, args.device)
    out = args.out or str(Path("gallery") / "site" / _file_name(settings.model.split(":")[-1]))
    summary = build(settings, Job(out, shard=args.shard, overwrite=args.force), model=model, progress=not args.quiet)
    computed = ", ".join(f"{k} {v}" for k, v in summary["computed"].items())
    print(f"gallery of {len(summary['layers'])} layer(s) in {summary['seconds']:.0f} s "
          f"(computed now: {computed}); open {summary['index']}")


def _layers(text: str) -> list[str]:
    """``a,b,c``: layer addresses (an argparse type)."""
    layers = [t.strip() for t in text.split(",")]
    if not all(layers):
        raise argparse.ArgumentTypeError(f"must be comma-separated layer addresses, not {text!r}")
    return layers
