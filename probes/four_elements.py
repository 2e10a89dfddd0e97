#!/usr/bin/env python
"""The four elements: which architecture, input statistics, objective and learning rule make IT-like networks?

A thin call of ``insilico lab study`` (:mod:`insilico.cli.lab`, :func:`insilico.lab.study`): trains the
default grid (:data:`insilico.lab.DEFAULT_GRID`: the baseline, a bundled minialex-shaped network
classifying the bundled photos with backprop, and one variant per element: the recurrent BL
architecture, blurred input, a sparse-autoencoding objective, feedback alignment) and reports each
variant's held-out accuracy, its RSA with human and monkey IT (92 images, Kriegeskorte et al. 2008)
per layer with the human-IT noise ceiling, its behaviour (error consistency with the baseline and with
the other variants) and the V1-like tuning of its first convolution. Each trained variant is kept in
``OUT/parts``: a rerun trains only the missing ones, and ``torchrun --nproc-per-node N
probes/four_elements.py`` shares the grid between N processes.

Writes to ``--out`` (default ``four_elements``): ``study.pt``, ``study.csv``, ``study.png``, ``manifest.json``.

Example::

    python probes/four_elements.py --out results/four_elements
    python probes/four_elements.py --steps 20 --out /tmp/four   # a quick smoke run
"""
from __future__ import annotations

import sys

from insilico.cli import main as insilico


def main(argv=None) -> int:
    """``insilico lab study --out four_elements ARGV`` (a later ``--out`` in ``argv`` wins); the exit status."""
    return insilico(["lab", "study", "--out", "four_elements", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
