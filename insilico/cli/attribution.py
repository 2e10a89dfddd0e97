"""Attribution subcommands: ``gradient-map`` and ``deconv``, maps of what in each image file drives a unit."""
from __future__ import annotations

from .options import _load, _model_options, _resize_option, existing_file, library_value, read_images
from .outputs import _file_name, _manifest, _out


def _gradient_map(sub, name: str = "gradient-map", method: str = "gradient") -> None:
    p = sub.add_parser(name, help=f"{'deconvolution projections' if method == 'deconv' else 'gradient maps'} "
                                  "of a unit for image files",
                       description="What in each image drives a unit: maps saved as a PNG mosaic with a JSON "
                                   "sidecar (insilico.plot.save_maps), one overlay PNG, and manifest.json.")
    _model_options(p)
    p.add_argument("--unit", required=True, help="unit address, e.g. 'features.10[3]' or '[5]' (class logit 5)")
    p.add_argument("--images", nargs="+", type=existing_file, required=True, help="image files (PNG, JPEG, ...)")
    methods = library_value("attribution/gradients.py", "METHODS")
    p.add_argument("--method", choices=methods, default=method, metavar="METHOD",
                   help=f"one of {', '.join(methods)} (default %(default)s)")
    p.add_argument("--layer", default=None, help="gradcam only: the layer to weight (conv map, channels-last stage or ViT token layer)")
    _resize_option(p)
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
        maps = gradient_map(model, images, args.unit, method=args.method, layer=args.layer,
                            progress=not args.quiet).cpu()
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
