"""What the subcommands write into ``--out``: the folder, PNG files, ``manifest.json``, and the chunks of a shared run.

Outputs are PNG files plus ``manifest.json`` (the command, its settings, library
versions, one entry per output). Commands that scale out keep their chunks in
``OUT/parts`` and remember their command line in ``OUT/command.json`` for
``insilico merge``; only the process that holds the whole result writes outputs.
"""
from __future__ import annotations

from pathlib import Path

from .._version import __version__
from ..errors import InsilicoError


def _out(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InsilicoError(f"cannot create output folder {path!r}: {e.strerror}") from None
    return out


def _manifest(out: Path, args, entries: list, **extra) -> None:
    """Write ``out/manifest.json``: the command, the model, library versions, and one entry per output."""
    import torch
    from ..sharding import write_json

    settings = {k: v for k, v in vars(args).items() if k not in ("run", "argv", "shard")}
    write_json(out / "manifest.json", {"command": args.command, "settings": settings, "outputs": entries,
                                       "versions": {"insilico": __version__, "torch": torch.__version__}, **extra})


def _save_png(path: Path, image) -> None:
    """Save one (C, H, W) tensor in [0, 1] as PNG."""
    import skimage.io

    from ..plot import as_images

    skimage.io.imsave(path, (as_images(image)[0] * 255).round().astype("uint8"), check_contrast=False)


def _file_name(unit: str) -> str:
    from ..gallery.stages import slug

    return slug(unit.replace("[", "_").replace("]", "").replace(",", "-").replace(":", "-"))


def _shared(args, out: Path, folder: str = "parts"):
    """Where the command keeps its work (an :class:`insilico.Job`: ``out/folder``, this process's ``--shard``,
    ``--force``); remembers the command for ``insilico merge``."""
    from ..options import Job
    from ..sharding import write_json

    write_json(out / "command.json", {"argv": args.argv})
    return Job(out / folder, shard=args.shard, overwrite=args.force)


def _writes_outputs(result) -> bool:
    """Whether this process writes the outputs: it holds the whole result, and is rank 0 of a process group."""
    from ..sharding import rank_world

    if result is None:
        print("this share is done; the outputs are written when every share is (or run `insilico merge OUT`)")
        return False
    return rank_world()[0] == 0
