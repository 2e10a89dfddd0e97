#!/usr/bin/env python
"""Receptive-field mapping per layer: theoretical, gradient-based and sparse-noise RFs, size vs depth.

Writes rf_sizes.npz / rf_sizes.csv (one row per layer: RF size by each
method), rf_sizes.png/svg (RF size vs depth, the theoretical RF from kernel
sizes and strides beside the measured ones) and rf_maps.png/svg (the measured
map of the centre unit of each layer). See
:func:`insilico.experiments.receptive_field_sizes`.

Example::

    python probes/receptive_fields.py --model minialex --out out/rf --methods theoretical gradient sparse_noise
"""
from __future__ import annotations

import math

from insilico.experiments import command, receptive_field, receptive_field_sizes


def main(argv=None) -> dict:
    p = command.parser(__doc__.splitlines()[0],
                       units_help="layers (default: every conv and pooling layer that sees the image)")
    p.add_argument("--methods", nargs="+", default=["theoretical", "gradient", "sparse_noise"],
                   choices=["theoretical", "gradient", "sparse_noise"])
    p.add_argument("--threshold", type=float, default=0.1, help="fraction of the peak that counts as inside the RF")
    p.add_argument("--n-images", type=int, default=None,
                   help="white-noise images for the gradient method (default: doubled from 64 until the size is stable)")
    p.add_argument("--frames", type=int, default=4000, help="sparse-noise frames")
    p.add_argument("--dots", type=int, default=4, help="dots per sparse-noise frame")
    p.add_argument("--dot-size", type=int, default=2, help="sparse-noise dot side (pixels)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    args = p.parse_args(argv)
    model = command.load_model(args.model, args.weights, args.device)
    options = dict(threshold=args.threshold, n_images=args.n_images, n_frames=args.frames, dots=args.dots,
                   dot_size=args.dot_size, seed=args.seed, batch_size=args.batch_size)
    result = receptive_field_sizes(model, layers=args.units, size=args.size, methods=args.methods,
                                   progress=args.progress, **options)
    measured = [m for m in args.methods if m != "theoretical"] or ["theoretical"]
    figures = {"rf_sizes": result.plot(), "rf_maps": _maps(model, result.layers, measured[-1], options, args.size)}
    summary = {f"size_{m} ({layer})": round(float(v), 1)
               for m in args.methods for layer, v in zip(result.layers, result.arrays[f"size_{m}"])}
    paths = command.write(args.out, "rf_sizes", result, figures, args, summary)
    command.report(paths, summary)
    return summary


def _maps(model, layers, method, options, size=None):
    import matplotlib.pyplot as plt

    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        receptive_field(model, str(layer), size, method=method, **options).plot(ax=ax)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
