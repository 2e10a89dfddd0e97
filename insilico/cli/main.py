"""The parser of every subcommand, :func:`main` (the entry point), errors and exit codes, torchrun.

Bad input (a bad option while parsing, an :class:`~insilico.errors.InsilicoError` later) ends with one
line on stderr and exit status 2; Ctrl-C ends with status 130, keeping every output already written.
Parsing imports no torch: ``--help`` and a bad option answer at once; the subcommands import the
library inside their ``run``.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import InsilicoError
from .attribution import _deconv, _gradient_map
from .design import _adversarial, _controversial, _maximize, _metamer
from .gallery import _gallery
from .lab import _lab
from .merge import _merge
from .options import Parser
from .record import _record
from .tour import _demo, _models, _tools

#: The subcommands, in --help order.
COMMANDS = [_demo, _models, _tools, _record, _maximize, _gradient_map, _deconv, _metamer, _adversarial, _controversial,
            _gallery, _lab, _merge]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="insilico", description="In-silico electrophysiology for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _join_torchrun() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (gloo: the ranks only meet at
    barriers); each rank uses GPU ``LOCAL_RANK`` when there are GPUs. Returns whether it joined."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or dist.is_initialized():
        return False
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("gloo")
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status (0; 2: bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a bad option (2, its one line already on stderr)
        return done.code if isinstance(done.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    joined = _join_torchrun()
    try:
        args.run(args)
    except InsilicoError as error:
        print(f"insilico: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insilico: interrupted; finished outputs are kept, rerun the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
