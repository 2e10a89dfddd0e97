#!/usr/bin/env python
"""Recurrent dynamics: response time courses per step, and lateral vs top-down lesions on accuracy per step.

For models that call their layers once per time step (the bundled BLT
family). Stimuli are the bundled held-out photo crops. Writes
time_courses.npz/csv (mean response per layer and step),
connection_lesions.npz/csv (accuracy per step: intact, no lateral, no
top-down, neither) and the figures. See :func:`insilico.experiments.time_courses`
and :func:`insilico.experiments.connection_lesions`.

Example::

    python probes/dynamics.py --model blt --out out/dynamics
"""
from __future__ import annotations

import re

from insilico.experiments import command, connection_lesions, time_courses


def main(argv=None) -> dict:
    p = command.parser(__doc__.splitlines()[0], model="blt",
                       units_help="recurrent layers to follow (default: every module named layers.N)")
    p.add_argument("--per-class", type=int, default=16, help="held-out images per class")
    p.add_argument("--readout", default=None, help="module giving class scores at each step (default: readout)")
    args = p.parse_args(argv)
    model = command.load_model(args.model, args.weights, args.device)
    units = args.units or [n for n, _ in model.named_modules() if re.fullmatch(r"layers\.\d+", n)]
    if not units:
        raise SystemExit("no layers.N modules: pass --units with the recurrent layers to follow")
    x, y = command.labelled_stimuli(args.per_class, args.seed + 1)
    courses = time_courses(model, units, x, batch_size=args.batch_size, progress=args.progress)
    paths = command.write(args.out, "time_courses", courses, {"time_courses": courses.plot()}, args)
    lesions = connection_lesions(model, x, y, readout=args.readout, batch_size=args.batch_size,
                                 progress=args.progress)
    summary = {str(c): [round(float(a), 3) for a in acc] for c, acc in zip(lesions.conditions, lesions.accuracy)}
    paths += command.write(args.out, "connection_lesions", lesions, {"connection_lesions": lesions.plot()}, args,
                           summary)
    command.report(paths, summary)
    return summary


if __name__ == "__main__":
    main()
