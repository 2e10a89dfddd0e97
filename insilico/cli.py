"""The ``insilico`` command line. ``insilico --help`` lists the subcommands.

Bad input ends with one clear line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from .errors import InsilicoError


def _demo(args) -> None:
    from .demo import run_demo

    run_demo(args.model, out=args.out, progress=not args.quiet, seed=args.seed)


def _models(args) -> None:
    from . import models

    for name in models.available():
        card = models.card(name)
        print(f"{name:10s} {card['description']} (held-out accuracy {card['held_out_accuracy']:.2f}, "
              f"chance {card['chance']:.3f})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insilico", description="In-silico electrophysiology for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="record, lesion and stimulate a bundled model; print and plot what changed")
    demo.add_argument("--model", default="minialex", help="bundled model name (see `insilico models`)")
    demo.add_argument("--out", default="demo", help="folder for demo.png and demo.json")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)
    listing = sub.add_parser("models", help="list the bundled models with their cards")
    listing.set_defaults(run=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except InsilicoError as error:
        print(f"insilico: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
