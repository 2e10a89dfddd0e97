"""Options shared by the subcommands, and the inputs they name: models, images, shards.

``--model`` takes a bundled name (``insilico models``), ``package.module:callable``
or ``path/file.py:callable`` (with ``--weights``); ``--device auto|cpu|cuda[:n]``;
``--seed``; ``--quiet``; ``--shard R/W``. Input images come from ``--images``
files or the bundled held-out crops.
"""
from __future__ import annotations

import argparse

from ..errors import InsilicoError, StimulusError


def _model_options(parser: argparse.ArgumentParser, default: str | None = "minialex") -> None:
    parser.add_argument("--model", default=default, required=default is None,
                        help="bundled model name (see `insilico models`), 'package.module:callable' or "
                             "'path/file.py:callable' returning an nn.Module on pixel-space images"
                             + (f" (default {default})" if default else ""))
    parser.add_argument("--weights", default=None, help="state_dict (.pt / .safetensors) for a --model spec")
    _run_options(parser)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _shard_option(parser: argparse.ArgumentParser) -> None:
    """The options of a resumable --out folder: --shard (this process's share) and --force (start over)."""
    parser.add_argument("--shard", default=None,
                        help="R/W: compute only share R of W (e.g. a SLURM array task; `insilico merge OUT` joins "
                             "them); default: the torchrun ranks share the work")
    parser.add_argument("--force", action="store_true",
                        help="start over: forget the work kept in --out (needed when it was made by another model, "
                             "other inputs or other settings)")


def _input_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", default=None, help="image files (default: held-out crops of the bundled photos)")
    p.add_argument("--per-class", type=int, default=1, help="held-out crops per class when no --images are given")


def _pair(text: str, sep: str, option: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(sep))
    except ValueError:
        raise InsilicoError(f"{option} must look like A{sep}B with integers, not {text!r}") from None
    return a, b


def _load(args):
    from ..experiments.command import load_model

    return load_model(args.model, args.weights, args.device)


def _read_input(args, model):
    """The images given with --images, else the bundled held-out crops (with their labels)."""
    from ..models import photos

    if args.images:
        return read_images(args.images, model), None
    return photos.held_out(args.per_class, seed=1234 + args.seed)


def read_images(paths: list[str], model, resize: bool = False):
    """Images (N, C, H, W) in [0, 1] from files, checked against ``model.input_size``."""
    import numpy as np
    import skimage.io
    import skimage.transform
    import torch

    size = getattr(model, "input_size", None)
    images = []
    for path in paths:
        try:
            array = skimage.io.imread(path)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StimulusError(f"cannot read image {path!r}: {reason}") from None
        array = array.astype(np.float32) / (65535.0 if array.dtype == np.uint16 else 255.0 if array.dtype.kind in "ui" else 1.0)
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        if size is not None and array.shape[:2] != tuple(size[1:]):
            if not resize:
                raise StimulusError(f"image {path!r} is {array.shape[0]}x{array.shape[1]}; the model takes "
                                    f"{size[1]}x{size[2]}: resize it, or pass --resize")
            array = skimage.transform.resize(array, tuple(size[1:]), anti_aliasing=True)
        images.append(torch.from_numpy(np.clip(array, 0, 1).astype(np.float32)).permute(2, 0, 1))
    if len({tuple(i.shape) for i in images}) > 1:
        raise StimulusError("the images have different sizes; pass --resize (needs a model with input_size)")
    return torch.stack(images)
