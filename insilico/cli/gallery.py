"""``insilico gallery build``: a static HTML gallery of a model's units (cached per unit, shardable)."""
from __future__ import annotations

from pathlib import Path

from .options import _pair
from .outputs import _file_name


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
    b.add_argument("--force", action="store_true", help="start over: forget what the site holds (needed for "
                   "another model or settings that change pages)")
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
    summary = build(settings, out, model=model, shard=shard, progress=not args.quiet, overwrite=args.force)
    computed = ", ".join(f"{k} {v}" for k, v in summary["computed"].items())
    print(f"gallery of {len(summary['layers'])} layer(s) in {summary['seconds']:.0f} s "
          f"(computed now: {computed}); open {summary['index']}")
