"""``insilico merge OUT``: write the outputs of a sharded run once every share is done (computes nothing).

``OUT/command.json`` is data from a shared folder, so merge never lets it run code or steer writes: a saved
``--model``/``--models`` that names code (``package.module:callable`` or ``file.py:callable``) is loaded only
when the user passes it again on merge's own command line, and the outputs go into OUT whatever ``--out``
the file records.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InsilicoError, SavedFileError
from .options import _quiet_option

_RULE = ("OUT/command.json is data: merge never imports code it names and writes only into OUT. A run whose "
         "--model (or --models) was a 'package.module:callable' or 'file.py:callable' spec needs it again here "
         "(with --weights if the run had them); bundled and zoo model names (torchvision:resnet50) are taken from "
         "the file.")


def _merge(sub) -> None:
    p = sub.add_parser("merge", help="write the outputs of a run whose shards all finished",
                       description="Join the chunks that the shards (--shard R/W) of a record, maximize, metamer, "
                                   "adversarial or controversial run left in OUT, and write its outputs (PNGs, "
                                   "manifest.json) into OUT as a single run would. Computes nothing: a missing or "
                                   "damaged chunk is an error that names it (rerun the command without --shard to "
                                   "compute it). " + _RULE)
    p.add_argument("out", help="the --out folder of the sharded run (outputs are written there, and only there)")
    p.add_argument("--model", default=None,
                   help="the run's --model spec again, when it was 'package.module:callable' or 'file.py:callable'")
    p.add_argument("--weights", default=None, help="the run's --weights again (with --model)")
    p.add_argument("--models", nargs=2, default=None, help="controversial: the run's two --models again (specs)")
    _quiet_option(p)  # passed on to the saved command

    def run(args):
        from .. import persistence  # imports torch: only when the command runs
        from ..sharding import merge_only

        saved = Path(args.out) / "command.json"
        if not saved.exists():
            raise InsilicoError(f"{args.out} holds no sharded run (no command.json): give the --out folder of one")
        argv = persistence.read_json(saved, "saved command line").get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise SavedFileError(f"{saved} is damaged (no command line): rerun the command", saved)
        if "--shard" in argv:
            del argv[argv.index("--shard"): argv.index("--shard") + 2]
        argv = [a for a in argv if a != "--force"]  # joining the parts must never delete them
        if not argv or argv[0] not in sub.choices:  # the command's own parser, a sibling of this one
            raise InsilicoError(f"{saved} records no insilico command ({argv[:1]}): give the --out folder of a run")
        argv += ["--quiet"] * (args.quiet and "--quiet" not in argv)
        argv += ["--out", str(args.out)]  # the last --out wins: merge writes into the folder it was given
        original = sub.choices[argv[0]].parse_args(argv[1:])
        if not hasattr(original, "shard"):  # only the commands that scale out leave parts to join
            raise InsilicoError(f"{saved} records {argv[0]!r}, a command that does not scale out (no --shard): "
                                "insilico merge joins record, maximize, metamer, adversarial and controversial runs")
        _take_models(original, args, saved, argv)
        original.command, original.argv = argv[0], argv
        if original.command == "record":
            from ..recording import Recording

            if not Recording.load(Path(args.out) / "recording").complete:
                raise InsilicoError(f"the recording in {args.out} is not complete: "
                                    "rerun the command without --shard")
        with merge_only():
            original.run(original)

    p.set_defaults(run=run)


def _take_models(original, args, saved: Path, argv: list[str]) -> None:
    """Put merge's own --model/--weights/--models into the saved command (``argv`` is extended to record them);
    refuse a saved spec that imports code and was not given again, naming ``saved`` and the fix."""
    from ..experiments.command import names_code

    if args.weights is not None and args.model is None:
        raise InsilicoError("--weights goes with --model (the run's spec again)")
    for name, given in (("model", args.model), ("models", args.models)):
        if given is None:
            continue
        if not hasattr(original, name):
            raise InsilicoError(f"the saved command {argv[0]!r} has no --{name}: leave it out of insilico merge")
        setattr(original, name, given)
        argv += [f"--{name}", *([given] if isinstance(given, str) else given)]
    if args.model is not None and hasattr(original, "weights"):
        original.weights = args.weights  # the saved --weights went with the saved --model
        argv += ["--weights", args.weights] if args.weights else []
    for name in ("model", "models"):
        specs = getattr(original, name, None) if getattr(args, name) is None else None
        specs = [specs] if isinstance(specs, str) else list(specs or [])
        code = [spec for spec in specs if names_code(spec)]
        if code:
            weights = name == "model" and getattr(original, "weights", None)
            again = " ".join(specs) + (" --weights FILE" if weights else "")
            raise InsilicoError(f"{saved} names a model spec that imports code ({', '.join(map(repr, code))}); "
                                f"insilico merge never runs code a saved file names: if you trust it, pass it "
                                f"again: insilico merge {args.out} --{name} {again}")
