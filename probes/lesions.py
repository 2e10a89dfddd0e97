#!/usr/bin/env python
"""Lesion study: lesion each channel (or group) of a layer; per-class accuracy, dissociation matrix, cumulative curves.

Stimuli are the bundled models' held-out photo crops
(:func:`insilico.models.photos.held_out`). Writes lesions.npz / lesions.csv
(one row per lesioned group: accuracy, importance), lesions_dissociation.csv
(groups x classes: change in accuracy), cumulative.npz/csv (accuracy as
channels are lesioned most-important-first, least-important-first and in a
random order) and the figures. See :func:`insilico.experiments.lesion_sweep`.

Example::

    python probes/lesions.py --model minialex --units features.10 --out out/lesions
"""
from __future__ import annotations

from insilico.experiments import command, cumulative_lesion, lesion_sweep
from insilico.layers import choose_layers


def main(argv=None) -> dict:
    p = command.parser(__doc__.splitlines()[0], units_help="the layer to lesion (default: the last conv layer)")
    p.add_argument("--per-class", type=int, default=16, help="held-out images per class")
    p.add_argument("--group-size", type=int, default=1, help="channels lesioned together (consecutive groups)")
    p.add_argument("--mode", choices=["zero", "mean"], default="zero")
    p.add_argument("--points", type=int, default=12, help="lesion sizes on the cumulative curves (0 to skip)")
    p.add_argument("--output", default=None, help="read class scores from this unit (e.g. readout@2)")
    args = p.parse_args(argv)
    model = command.load_model(args.model, args.weights, args.device)
    layer = (args.units or [choose_layers(model, kind="conv", step="every")[-1]])[0]
    x, y = command.labelled_stimuli(args.per_class, args.seed + 1)
    groups = args.group_size if args.group_size > 1 else None  # consecutive runs of channels (lesion_sweep)
    sweep = lesion_sweep(model, layer, x, y, groups=groups, mode=args.mode, output=args.output,
                         batch_size=args.batch_size, progress=args.progress)
    figures = {"lesions_dissociation": sweep.plot()}
    summary = {"layer": layer, "baseline_accuracy": round(float(sweep.baseline), 4),
               "largest_single_drop": round(float(sweep.importance.max()), 4),
               "most_important": str(sweep.groups[sweep.ranking()[0]]),
               "mean_drop": round(float(sweep.importance.mean()), 4),
               "split_half_r": round(float(sweep.split_half_r), 4), "reliability": round(float(sweep.reliability), 4),
               "dissociable_entries": int(sweep.dissociable.sum())}
    paths = command.write(args.out, "lesions", sweep, figures, args, summary)
    if args.points > 1 and args.group_size == 1:
        curve = cumulative_lesion(model, layer, x, y, sweep=sweep, n_points=args.points, mode=args.mode,
                                  output=args.output, batch_size=args.batch_size, seed=args.seed,
                                  progress=args.progress)
        half = len(curve.fraction) // 2
        summary.update({f"accuracy_{k}_first_at_{curve.fraction[half]:.2f}": round(float(curve.arrays[f'accuracy_{k}'][half]), 4)
                        for k in ("most", "least", "random")})
        paths += command.write(args.out, "cumulative", curve, {"lesions_cumulative": curve.plot()}, args, summary)
    command.report(paths, summary)
    return summary


if __name__ == "__main__":
    main()
