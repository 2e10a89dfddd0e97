#!/usr/bin/env python
"""Microstimulation: stimulate a unit group with increasing strength; shift in class probabilities.

Stimuli are the bundled held-out photo crops. Writes microstimulation.npz /
microstimulation.csv (one row per strength: mean probability of every class,
the target class's choice rate) and psychometric-style curves. See
:func:`insilico.experiments.microstimulation`.

Example::

    python probes/microstimulation.py --model minialex --units "features.10[5]" --strengths 0,1,2,4,8 --scale std --out out/micro
"""
from __future__ import annotations

from insilico.experiments import command, microstimulation
from insilico.layers import choose_layers


def main(argv=None) -> dict:
    p = command.parser(__doc__.splitlines()[0],
                       units_help="the stimulated group, e.g. 'features.10[5]' (default: channel 0 of the last conv)")
    p.add_argument("--strengths", type=command.floats, default=[0, 0.5, 1, 2, 4, 8], help="comma-separated")
    p.add_argument("--scale", choices=["absolute", "std"], default="std",
                   help="strengths in activity units or in SDs of the units' responses")
    p.add_argument("--per-class", type=int, default=8, help="held-out images per class")
    p.add_argument("--target", type=int, default=None, help="class index of the psychometric curve")
    p.add_argument("--output", default=None, help="read class scores from this unit (e.g. readout@2)")
    args = p.parse_args(argv)
    model = command.load_model(args.model, args.weights, args.device)
    units = args.units or [choose_layers(model, kind="conv", step="every")[-1] + "[0]"]
    x, _ = command.labelled_stimuli(args.per_class, args.seed + 1)
    result = microstimulation(model, units, x, strengths=args.strengths, scale=args.scale, target=args.target,
                              output=args.output, batch_size=args.batch_size, progress=args.progress)
    target = result.target_class
    summary = {"units": units, "target_class": str(result.classes[target]),
               "target_choice_rate": [round(float(v), 3) for v in result.psychometric()],
               "target_probability": [round(float(v), 3) for v in result.mean_probability[:, target]],
               "target_chosen": result.settings["target_chosen"], "p_value": [round(float(v), 4) for v in result.p_value]}
    paths = command.write(args.out, "microstimulation", result, {"microstimulation": result.plot()}, args, summary)
    command.report(paths, summary)
    return summary


if __name__ == "__main__":
    main()
