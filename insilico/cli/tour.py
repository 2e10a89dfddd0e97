"""Getting started: ``insilico demo`` (a tour on a bundled model), ``insilico models`` (the bundled models) and
``insilico tools`` (the registered tools)."""
from __future__ import annotations

from .options import _quiet_option, _seed_option


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="record, lesion and stimulate a bundled model; print and plot what changed",
                       description="A tour on a bundled model: orientation tuning, lesions, stimulation.")
    p.add_argument("--model", default="minialex", help="bundled model name (see `insilico models`; default %(default)s)")
    p.add_argument("--out", default="demo", help="folder for demo.png and demo.json (default %(default)s)")
    _seed_option(p, text="seed of the random lesion (default %(default)s)")
    _quiet_option(p)

    def run(args):
        from ..demo import run_demo

        run_demo(args.model, out=args.out, progress=not args.quiet, seed=args.seed)

    p.set_defaults(run=run)


def _models(sub) -> None:
    p = sub.add_parser("models", help="list the bundled models with their cards",
                       description="List the bundled models with their held-out accuracy, and the zoos --model "
                                   "reads.")
    _quiet_option(p)  # accepted as in every subcommand (nothing here shows progress)

    def run(args):
        from .. import models

        for name in models.available():
            card = models.card(name)
            print(f"{name:10s} {card['description']} (held-out accuracy {card['held_out_accuracy']:.2f}, "
                  f"chance {card['chance']:.3f})")
        print("zoo models (--model): torchvision:NAME, timm:NAME, open_clip:ARCH/TAG, hf:REPO_OR_FOLDER; "
              "see insilico.models.zoo")

    p.set_defaults(run=run)


def _tools(sub) -> None:
    from ..registry import KINDS

    p = sub.add_parser("tools", help="list the tools: name, kind, the promises that apply, what each does",
                       description="List the registered tools (insilico.registry): name, kind, the contract "
                                   "promises that apply, and the first line of each docstring.")
    p.add_argument("--kind", choices=list(KINDS), help="only the tools of this kind")
    _quiet_option(p)  # accepted as in every subcommand (nothing here shows progress)

    def run(args):
        from ..registry import describe

        print(describe(args.kind))

    p.set_defaults(run=run)
