"""The ``insilico`` command line. ``insilico --help`` lists the subcommands; each has ``--help``.

Every subcommand is one small function ``_<name>(sub)`` that adds its parser
and sets ``run``; :data:`COMMANDS` (in :mod:`.main`) lists them in ``--help``
order. A new tool adds one such function, in the module of its concept, and
one line in the table.

Conventions shared by the subcommands: ``--model`` takes a bundled name
(``insilico models``), a zoo model (``torchvision:resnet50``, ``timm:NAME``,
``open_clip:ARCH/TAG``, ``hf:REPO``), ``package.module:callable`` or
``path/file.py:callable`` (with ``--weights``); ``--device auto|cpu|cuda[:n]``; ``--seed``; ``--quiet``;
``--batch-size``; ``--shard R/W``; outputs are PNG files plus ``manifest.json``
(strict JSON, :mod:`insilico.jsonfiles`) in ``--out``. Every option is checked
while the command line is parsed (range types and ``choices`` in
:mod:`.options`), before torch is imported or a model loaded; defaults shown
by ``--help`` are read from the library. Bad input ends with one line on
stderr and exit status 2; Ctrl-C ends with status 130, keeping every output
already written (reruns continue where it stopped).

Scale-out: ``maximize``, ``metamer``, ``adversarial``, ``controversial`` and
``record`` cut their work into chunks kept in ``--out`` (``OUT/parts``,
``OUT/recording``). Under ``torchrun`` (``python -m insilico``) the ranks
share the chunks and rank 0 writes the outputs; ``--shard R/W`` runs one
share by hand (a SLURM array task), and ``insilico merge OUT`` writes the
outputs once every share is done. A rerun computes only missing chunks.

============ ==================================================================
module       concept
============ ==================================================================
main         the parser, :func:`main` (entry point), errors and exit codes
options      shared options and their checks (argparse types); reading input images
outputs      the output folder, PNGs, ``manifest.json``, shard bookkeeping
tour         ``demo``, ``models``, ``tools``
record       ``record``
attribution  ``gradient-map``, ``deconv``
design       ``maximize``, ``metamer``, ``adversarial``, ``controversial``
gallery      ``gallery build``
merge        ``merge``
============ ==================================================================
"""
from __future__ import annotations

from .main import COMMANDS, build_parser, main
from .options import read_images

__all__ = ["COMMANDS", "build_parser", "main", "read_images"]
