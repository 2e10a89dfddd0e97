"""``insilico merge OUT``: write the outputs of a sharded run once every share is done (computes nothing)."""
from __future__ import annotations

from pathlib import Path

from ..errors import InsilicoError, SavedFileError


def _merge(sub) -> None:
    p = sub.add_parser("merge", help="write the outputs of a run whose shards all finished",
                       description="Join the chunks that the shards (--shard R/W) of a record, maximize, metamer, "
                                   "adversarial or controversial run left in OUT, and write its outputs (PNGs, "
                                   "manifest.json) as a single run would. Computes nothing: a missing chunk is an "
                                   "error that names it (rerun the command without --shard to compute it).")
    p.add_argument("out", help="the --out folder of the sharded run")

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
        original = sub.choices[argv[0]].parse_args(argv[1:])
        original.command, original.argv = argv[0], argv
        if original.command == "record":
            from ..recording import Recording

            if not Recording.load(Path(args.out) / "recording").complete:
                raise InsilicoError(f"the recording in {args.out} is not complete: "
                                    "rerun the command without --shard")
        with merge_only():
            original.run(original)

    p.set_defaults(run=run)
