#!/usr/bin/env python
"""The four elements: which architecture, input statistics, objective and learning rule make IT-like networks?

Trains the default grid of :mod:`insilico.lab` (the baseline, a bundled minialex-shaped network
classifying the bundled photos with backprop, and one variant per element: the recurrent BL
architecture, blurred input, a sparse-autoencoding objective, feedback alignment) and reports each
variant's held-out accuracy and its RSA with human and monkey IT (92 images, Kriegeskorte et al.
2008) per layer, with the human-IT noise ceiling; beside them, from the tools above the lab, each
variant's behaviour (accuracy on 256 held-out crops through :func:`insilico.behaviour.confusion`, and
its error consistency with the baseline, Cohen's kappa, :func:`insilico.behaviour.error_consistency`)
and the V1-like tuning of its first convolution (:func:`insilico.experiments.orientation_tuning`:
fraction of orientation-tuned channels, median OSI). Each trained variant is kept in ``--out``: a rerun
trains only the missing ones, and ``torchrun --nproc-per-node N probes/four_elements.py`` shares the
grid between N processes.

Writes to ``--out``: one ``chunk-*.pt`` per variant (weights, history, scores), ``job.json``,
``four_elements.pt`` (the :class:`insilico.lab.StudyResult`), ``four_elements.csv`` (one row per
variant) and ``four_elements.png`` (variants ranked by their best layer's similarity with IT).

Example::

    python probes/four_elements.py --out results/four_elements
    python probes/four_elements.py --steps 20 --out /tmp/four   # a quick smoke run
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import torch

from insilico import behaviour, experiments, lab
from insilico.experiments import command
from insilico.layers import choose_layers  # the first convolution, at its last call in a recurrent network
from insilico.models import photos
from insilico.errors import InsilicoError


def observe(out: str, seed: int) -> list[dict]:
    """Per variant (grid order): behaviour on held-out crops (accuracy, error consistency with the first variant)
    and the orientation tuning of its first convolution."""
    x, y = photos.held_out(per_class=16, seed=seed + 1234)
    rows, first = [], None
    for name, net in lab.trained(out).items():
        size = net.input_size[-1] if hasattr(net, "input_size") else 64
        images = torch.nn.functional.interpolate(x, size=(size, size), mode="area") if size != x.shape[-1] else x
        seen = behaviour.confusion(net, images, y, n_boot=0, progress=False)
        first = first or seen
        kappa = behaviour.error_consistency(first, seen, n_boot=0)
        tuning = experiments.orientation_tuning(net, choose_layers(net, (3, size, size), "conv")[0], size=size,
                                                progress=False).summary()
        rows.append(dict(behaviour_accuracy=float(seen.accuracy), kappa_vs_baseline=float(kappa.value),
                         fraction_tuned=float(tuning["fraction_tuned"]), median_osi=float(tuning["median_osi"])))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="four_elements", help="output folder (default: four_elements)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per variant (default 300)")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", default="spearman", help="RDM comparison (default spearman)")
    parser.add_argument("--device", default="cpu", help="where the networks train: cpu (default), cuda, or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    device = command.device(args.device)  # the kit's one reading of --device (auto: CUDA when available)
    try:
        result = lab.study(out=args.out, steps=args.steps, batch=args.batch, seed=args.seed, compare=args.compare,
                           progress=not args.quiet, device=device)
    except InsilicoError as error:
        print(f"four_elements: error: {error}", file=sys.stderr)
        return 2
    if result is None:
        print(f"four_elements: this shard is done; rerun when the others are to collect {args.out}")
        return 0
    rows = result.table()
    for row, extra in zip(rows, observe(args.out, args.seed)):
        row.update(extra)
    result.save(os.path.join(args.out, "four_elements.pt"))
    with open(os.path.join(args.out, "four_elements.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result.plot().savefig(os.path.join(args.out, "four_elements.png"), dpi=120)
    print(f"human-IT noise ceiling [{result.ceiling['lower']:.3f}, {result.ceiling['upper']:.3f}] ({args.compare})")
    print(f"{'variant':20s} {'readout':>7s} {'probe':>6s} {'hIT':>6s} {'(layer)':16s} {'mIT':>6s} {'(layer)':16s} "
          f"{'kappa':>6s} {'tuned':>6s} {'OSI':>6s}")
    for row in (rows[result.names.index(name)] for name in result.ranking()):
        readout = "-" if row["readout_accuracy"] is None else f"{row['readout_accuracy']:.3f}"
        print(f"{row['variant']:20s} {readout:>7s} {row['probe_accuracy']:6.3f} {row['human_it']:6.3f} "
              f"{row['human_it_layer'] or '-':16s} {row['monkey_it']:6.3f} {row['monkey_it_layer'] or '-':16s} "
              f"{row['kappa_vs_baseline']:6.3f} {row['fraction_tuned']:6.3f} {row['median_osi']:6.3f}")
    print(f"wrote {args.out}/four_elements.pt, .csv, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
