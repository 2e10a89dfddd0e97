"""``insilico lab study`` and ``insilico lab train``: the four elements' lab (:mod:`insilico.lab`) on the command line.

``lab study`` trains a grid of variants (the default grid, or a JSON file of variants) and writes, into
``--out``, ``study.pt`` (the :class:`insilico.lab.StudyResult`), ``study.csv`` (one row per variant),
``study.png`` (variants ranked by brain similarity) and ``manifest.json``; each trained variant is kept in
``OUT/parts`` (a rerun trains only the missing ones; ``--shard R/W`` or torchrun ranks share the grid and
``insilico merge OUT`` writes the outputs once every share is done). ``lab train`` is a study of one
variant, given as ``key=value`` pairs (``architecture=bl,width=0.5,objective=sparse``) or a JSON object.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from .options import _device_option, _quiet_option, _seed_option, _shard_option, library_value, positive_int
from .outputs import _manifest, _out, _shared, _writes_outputs


def _lab(sub) -> None:
    p = sub.add_parser("lab", help="train variants of the four elements and compare them with IT",
                       description="The four elements that make a network (architecture, input statistics, "
                                   "objective, learning rule) as named options (insilico.lab.Variant).")
    actions = p.add_subparsers(dest="action", required=True)
    s = actions.add_parser("study", help="train a grid of variants and rank them by their similarity to IT",
                           description="Train each variant of a grid and report its accuracy, its RSA with human "
                                       "and monkey IT per layer (with the noise ceiling), its behaviour (confusions, "
                                       "error consistency with the other variants) and the V1 tuning of its first "
                                       "convolution. Writes study.pt, study.csv, study.png and manifest.json; "
                                       "the trained variants stay in OUT/parts (a rerun trains only the missing).")
    s.add_argument("--grid", type=_grid, default="default",
                   help="'default' (insilico.lab.DEFAULT_GRID: the baseline and one variant per element) or a JSON "
                        "file holding a list of variants, each an object of Variant fields (default %(default)s)")
    _common(s)
    s.set_defaults(run=_study)
    t = actions.add_parser("train", help="train one variant (a study of one) and score it",
                           description="Train one variant and score it as lab study does (accuracy, IT similarity, "
                                       "behaviour, tuning); the network is kept in OUT/parts, "
                                       "insilico.lab.trained(OUT + '/parts') reads it back.")
    t.add_argument("--variant", type=_variant, required=True,
                   help="the variant's fields as key=value pairs, e.g. 'architecture=bl,width=0.5,blur=2' "
                        "(class_weights=[1,2,...]), or a JSON object")
    _common(t)
    t.set_defaults(run=_train)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=positive_int, default=library_value("lab/study.py", "study.steps"),
                   help="training steps per variant (default %(default)s)")
    p.add_argument("--batch", type=positive_int, default=library_value("lab/study.py", "study.batch"),
                   help="images per training step (default %(default)s)")
    p.add_argument("--compare", default=library_value("lab/study.py", "study.compare"),
                   help="RDM comparison (default %(default)s)")
    _seed_option(p)
    _device_option(p)
    _shard_option(p)
    _quiet_option(p)


def _variant(text: str) -> dict:
    """A variant's fields: a JSON object, or ``key=value`` pairs separated by commas (values read as JSON when
    they are, else as text). An argparse type: the fields' names and values are checked by Variant itself."""
    text = text.strip()
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"not a JSON object: {e}") from None
        if not isinstance(fields, dict):
            raise argparse.ArgumentTypeError("must be a JSON object of Variant fields")
        return fields
    fields = {}
    for pair in filter(None, (p.strip() for p in re.split(r",(?![^\[]*\])", text))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise argparse.ArgumentTypeError(f"{pair!r} is not key=value (e.g. architecture=bl,blur=2)")
        try:
            fields[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            fields[key.strip()] = value.strip()
    if not fields:
        raise argparse.ArgumentTypeError("name at least one field, e.g. architecture=bl")
    return fields


def _grid(text: str):
    """``default`` or a JSON file of a list of variants (objects of Variant fields)."""
    if text == "default":
        return text
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r} (or 'default')")
    try:
        grid = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise argparse.ArgumentTypeError(f"{text} is not JSON: {e}") from None
    if not isinstance(grid, list) or not grid or not all(isinstance(v, dict) for v in grid):
        raise argparse.ArgumentTypeError(f"{text} must hold a non-empty list of objects of Variant fields")
    return grid


def _variants(fields_list: list[dict]) -> list:
    from ..errors import InsilicoError
    from ..lab import Variant

    variants = []
    for fields in fields_list:
        try:
            variants.append(Variant(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}))
        except TypeError as e:  # Options names an unknown field itself; this is the rest (a wrong type)
            raise InsilicoError(f"variant {fields}: {e}") from None
    return variants


def _study(args) -> None:
    _run(args, None if args.grid == "default" else _variants(args.grid))


def _train(args) -> None:
    _run(args, _variants([args.variant]))


def _run(args, grid) -> None:
    from ..experiments.command import device
    from ..lab import study

    out = _out(args.out)
    result = study(grid, out=_shared(args, out, "parts"), steps=args.steps, batch=args.batch, seed=args.seed,
                   compare=args.compare, progress=not args.quiet, device=device(args.device))
    if not _writes_outputs(result):
        return
    result.save(out / "study.pt")
    result.to_csv(out / "study.csv")
    result.plot().savefig(out / "study.png", dpi=120)
    _manifest(out, args, [{"file": name} for name in ("study.pt", "study.csv", "study.png")],
              variants=result.names)
    print(result.report())
    print(f"wrote {out}/study.pt, study.csv, study.png")
