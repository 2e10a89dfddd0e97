#!/usr/bin/env python
"""Orientation and spatial-frequency tuning of every channel of a layer, with gratings.

Conv layers are tuned after their nonlinearity (``--raw`` keeps the address),
against a blank grey baseline; units that fail the responsiveness criteria get
a reason and no indices. Writes tuning.npz / tuning.csv (one row per unit:
responsive, reason, preferred orientation, bandwidth, OSI, circular variance,
preferred SF, sf_peak_at_edge, SF bandwidth), tuning curves,
SF curves and population histograms beside macaque V1 reference values
(PNG and SVG). See :func:`insilico.experiments.orientation_tuning`.

Example::

    python probes/tuning.py --model minialex --units features.0 --out out/tuning --fov 8
"""
from __future__ import annotations

import numpy as np

from insilico.experiments import command, orientation_tuning
from insilico.experiments.tuning import PHASE_REDUCTIONS, default_sfs
from insilico.layers import choose_layers, image_size


def main(argv=None) -> dict:
    p = command.parser(__doc__.splitlines()[0], units_help="layers to characterise (default: the first conv layer)")
    p.add_argument("--orientations", type=int, default=36, help="number of orientations over [0, 180)")
    p.add_argument("--sfs", type=command.floats, default=None,
                   help="spatial frequencies in cycles per image, comma-separated (default: 6 log-spaced)")
    p.add_argument("--phases", type=int, default=8, help="number of phases over [0, 360)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    p.add_argument("--contrast", type=float, default=1.0)
    p.add_argument("--fov", type=float, default=None,
                   help="degrees of visual angle the image spans: adds cycles/deg and the macaque V1 reference")
    p.add_argument("--phase-reduce", choices=list(PHASE_REDUCTIONS), default="max",
                   help="max (default), mean (F0), f1, or skottun: F1 for simple units, F0 for complex ones")
    p.add_argument("--raw", action="store_true",
                   help="tune the addresses as given (e.g. a conv before its ReLU), not after the nonlinearity")
    args = p.parse_args(argv)
    model = command.load_model(args.model, args.weights, args.device)
    units = args.units or [choose_layers(model, kind="conv", step="first")[0]]
    orientations = [180.0 * k / args.orientations for k in range(args.orientations)]
    phases = [360.0 * k / args.phases for k in range(args.phases)]
    side = image_size(model, args.size, name="--size", square=True)[-1]
    result = orientation_tuning(model, units, size=side, orientations=orientations, sfs=args.sfs or default_sfs(side),
                                phases=phases, contrast=args.contrast, fov=args.fov, phase_reduce=args.phase_reduce,
                                raw=args.raw, batch_size=args.batch_size, progress=args.progress)
    best = [int(i) for i in np.argsort(-np.nan_to_num(result.osi, nan=-1.0), kind="stable")[:6]]
    summary = result.summary()
    figures = {"tuning_curves": result.plot(units=best), "tuning_sf": result.plot_sf(units=best),
               "tuning_population": result.plot_population()}
    paths = command.write(args.out, "tuning", result, figures, args, summary)
    command.report(paths, summary)
    return summary


if __name__ == "__main__":
    main()
