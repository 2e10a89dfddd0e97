"""Options shared by the subcommands, their checks, and the inputs they name: models, images, shards.

One vocabulary for every subcommand: ``--model`` takes a bundled name (``insilico models``), a zoo model
(``torchvision:resnet50``, ``timm:NAME``, ``open_clip:ARCH/TAG``, ``hf:REPO``: :mod:`insilico.models.zoo`),
``package.module:callable`` or ``path/file.py:callable`` (with ``--weights``); ``--device
auto|cpu|cuda[:n]``; ``--seed`` (the seed), ``--quiet`` (no progress bars), ``--batch-size`` (work done
together, one chunk), ``--out`` (the output folder), ``--shard R/W``, ``--size`` (the image side).
Input images come from ``--images`` files or the bundled held-out crops.

Every option is checked by its argparse ``type`` or ``choices`` while the command line is parsed, so a
bad value ends at once (one line on stderr, exit status 2: :class:`Parser`), before torch is imported or
a model loaded. The defaults shown by ``--help`` are read from the library's source where the library
defines them (:func:`library_value`): one place, and no import of torch to print a help text.
"""
from __future__ import annotations

import argparse
import ast
import functools
import math
import operator
import re
from pathlib import Path

from ..errors import InsilicoError, StimulusError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``insilico: error: ...``, and exit status 2 (as for every
    other bad input); its subparsers are Parsers too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # one name per option: no silent prefixes
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:  # reported by the subcommand's parser, which names its own --help
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    def _chosen(self, parsed) -> argparse.ArgumentParser:
        """The innermost (sub)parser that ``parsed`` went through."""
        parser = self
        while parser._subparsers is not None:
            choices = parser._subparsers._group_actions[0]
            name = getattr(parsed, choices.dest, None)
            if name not in choices.choices:
                break
            parser = choices.choices[name]
        return parser

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f" (see `insilico {command} --help`)" if command else " (see `insilico --help`)"
        self.exit(2, f"insilico: error: {' '.join(message.split())}{where}\n")


# ---------------------------------------------------------------------------------------
# Types: each checks a value's range while the command line is parsed
# ---------------------------------------------------------------------------------------
def _number(kind, minimum, strict: bool, what: str, maximum=None):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum) or \
                (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
        return value

    check.__name__ = what
    return check


#: An integer >= 1 (steps, counts, batch sizes, image sides).
positive_int = _number(int, 1, False, "an integer >= 1")
#: An integer >= 0 (seeds).
nonnegative_int = _number(int, 0, False, "an integer >= 0")
#: A finite number > 0 (learning rates, radii).
positive_float = _number(float, 0.0, True, "a number > 0")
#: A finite number >= 0 (weights).
nonnegative_float = _number(float, 0.0, False, "a number >= 0")


def float_up_to(maximum: float, strict: bool = True):
    """The type of a finite number > 0 (``strict``; else >= 0) and <= ``maximum``: the library's largest
    learning rate, radius or weight (past them the float32 steps overflow), refused while parsing."""
    return _number(float, 0.0, strict, f"a number {'>' if strict else '>='} 0 and <= {maximum:g}", maximum)


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}")
    return value


def device(text: str) -> str:
    """auto, cpu, mps, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, not {text!r}")
    return text


def existing_file(text: str) -> str:
    """The path of a file that exists."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def weights_file(text: str) -> str:
    """``--weights``: a file that exists, or ``random`` (random weights; nothing is downloaded)."""
    random = library_value("experiments/command.py", "RANDOM_WEIGHTS")
    if text == random or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(f"no such file: {text!r} (or {random!r} for random weights)")


def shard(text: str) -> tuple[int, int]:
    """``R/W``: share R of W, ``0 <= R < W``."""
    rank, world = _pair_type(text, "/", "R/W")
    if not 0 <= rank < world:
        raise argparse.ArgumentTypeError(f"must be R/W with 0 <= R < W (e.g. 0/4), not {text!r}")
    return rank, world


def unit_range(text: str) -> tuple[int, int]:
    """``START:STOP`` with ``0 <= START < STOP``."""
    start, stop = _pair_type(text, ":", "START:STOP")
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"must be START:STOP with 0 <= START < STOP, not {text!r}")
    return start, stop


def reductions(text: str) -> str | dict:
    """``--reduce``: one reduction for every unit (``mean``), or ``unit=how,...`` per unit, as
    ``record_stimuli(reduce={unit: how})`` takes it (``none`` records a unit whole; ``*=how`` is a default where
    it is meaningful). Commas inside an address's brackets (``features.3[1,2]``) belong to the address; which
    units the keys name is checked where the dict is read (:func:`insilico.recording.record_stimuli`).

    >>> reductions("mean"), reductions("blocks.3=center,*=mean,head=none")
    ('mean', {'blocks.3': 'center', '*': 'mean', 'head': None})
    """
    pools = library_value("layout.py", "POOLS")
    text = text.strip()
    if text in pools:
        return text
    items, depth, start = [], 0, 0
    for i, c in enumerate(text + ","):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    if not all(re.fullmatch(r"[^=\s]+=[^=]+", item) for item in items):
        raise argparse.ArgumentTypeError(f"must be {', '.join(pools)}, or unit=reduction pairs separated by commas "
                                         f"(e.g. 'blocks.3=center,*=mean,head=none'), not {text!r}")
    out = {}
    for item in items:
        unit, how = (part.strip() for part in item.split("="))
        if how.lower() not in (*pools, "none"):
            raise argparse.ArgumentTypeError(f"{item!r}: a unit's reduction is one of {', '.join(pools)} or none")
        out[unit] = None if how.lower() == "none" else how.lower()
    return out


def _pair_type(text: str, sep: str, form: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(sep))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like {form} with integers, not {text!r}") from None
    return a, b


# ---------------------------------------------------------------------------------------
# Defaults and choices read from the library's source (without importing it, so without torch)
# ---------------------------------------------------------------------------------------
_PACKAGE = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def _module(path: str) -> ast.Module:
    return ast.parse((_PACKAGE / path).read_text(), filename=path)


def library_value(path: str, name: str):
    """The value that the library module at ``path`` (relative to the package) gives ``name``.

    ``name`` is a module constant (``"METHODS"``), a function's parameter default
    (``"pgd.steps"``), a class field's default (``"GallerySettings.steps"``) or a tool's option default
    (``"MAXIMIZE_DEFAULTS.lr"``: the key of that dict, else :class:`~insilico.synthesis.SynthesisOptions`');
    names of module constants are followed (``steps=DEFAULT_STEPS``). Read from the source so that ``--help`` shows the
    defaults the library really uses without importing torch; a name that is gone raises
    :class:`~insilico.errors.InsilicoError` (tests/cli/test_cli.py compares every value with the imported one).

    >>> library_value("gallery/settings.py", "GallerySettings.steps")
    24
    """
    tree = _module(path)
    constants = {t.id: node.value for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                 for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(t, ast.Name) and node.value is not None}
    owner, _, attr = name.rpartition(".")
    node = constants.get(attr) if not owner else _default_node(tree, owner, attr)
    if isinstance(constants.get(owner), ast.Dict):  # a tool's option defaults ("MAXIMIZE_DEFAULTS.steps")
        table = constants[owner]
        node = next((v for k, v in zip(table.keys, table.values) if isinstance(k, ast.Constant) and k.value == attr),
                    None)
        if node is None:  # where the tool's default is SynthesisOptions' own
            return library_value("synthesis/options.py", f"SynthesisOptions.{attr}")
    if node is None:
        raise InsilicoError(f"insilico/{path} defines no {name}: the command line reads its default there")
    return _evaluate(node, constants)


def _default_node(tree: ast.Module, owner: str, attr: str):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == owner:
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults))
            pairs += list(zip(a.kwonlyargs, a.kw_defaults))
            return next((d for arg, d in pairs if arg.arg == attr), None)
        if isinstance(node, ast.ClassDef) and node.name == owner:
            return next((f.value for f in node.body if isinstance(f, ast.AnnAssign)
                         and isinstance(f.target, ast.Name) and f.target.id == attr), None)
    return None


def _evaluate(node, constants: dict):
    if isinstance(node, ast.Name) and node.id in constants:
        return _evaluate(constants[node.id], constants)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:  # e.g. eps = 8 / 255
        return _OPERATORS[type(node.op)](_evaluate(node.left, constants), _evaluate(node.right, constants))
    return ast.literal_eval(node)


_OPERATORS = {ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Add: operator.add, ast.Sub: operator.sub}


# ---------------------------------------------------------------------------------------
# The shared options
# ---------------------------------------------------------------------------------------
def _model_options(parser: argparse.ArgumentParser, default: str | None = "minialex") -> None:
    parser.add_argument("--model", default=default, required=default is None,
                        help="bundled model name (see `insilico models`), a zoo model ('torchvision:resnet50', "
                             "'timm:NAME', 'open_clip:ARCH/TAG', 'hf:REPO_OR_FOLDER'), 'package.module:callable' "
                             "or 'path/file.py:callable' returning an nn.Module on pixel-space images"
                             + (" (default %(default)s)" if default else ""))
    parser.add_argument("--weights", type=weights_file, default=None,
                        help="state_dict (.pt / .safetensors) for a --model spec or zoo model (a zoo model "
                             "without it gets the zoo's pretrained weights, downloaded once), or 'random' "
                             "for random weights (an untrained control; offline)")
    _run_options(parser)


def _run_options(parser: argparse.ArgumentParser) -> None:
    _device_option(parser)
    _seed_option(parser)
    _quiet_option(parser)


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device, default="auto",
                        help="auto (CUDA when available), cpu, cuda or cuda:N (default %(default)s)")


def _seed_option(parser: argparse.ArgumentParser, default: int | None = 0, text: str | None = None) -> None:
    parser.add_argument("--seed", type=nonnegative_int, default=default,
                        help=text or "seed of every random choice (default %(default)s)")


def _quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _batch_option(parser: argparse.ArgumentParser, default: int | None, what: str) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=default,
                        help=f"{what} computed together, one chunk (default %(default)s)")


def _shard_option(parser: argparse.ArgumentParser, text: str | None = None) -> None:
    """The options of a resumable --out folder: --shard (this process's share) and --force (start over)."""
    parser.add_argument("--shard", type=shard, default=None,
                        help=text or "R/W: compute only share R of W (e.g. a SLURM array task; `insilico merge OUT` "
                                     "joins them); default: the torchrun ranks share the work")
    parser.add_argument("--force", action="store_true",
                        help="start over: forget the work kept in --out (needed when it was made by another model, "
                             "other inputs or other settings)")


def _input_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", type=existing_file, default=None,
                   help="image files (default: held-out crops of the bundled photos)")
    p.add_argument("--per-class", type=positive_int, default=1,
                   help="held-out crops per class when no --images are given (default %(default)s)")
    _resize_option(p)


def _labels_options(p: argparse.ArgumentParser) -> None:
    """--labels and --class-names: the user's labels of a stimulus set (:func:`insilico.stimuli.labelled`)."""
    p.add_argument("--labels", type=existing_file, default=None,
                   help="a CSV of 'image,label' rows (image: its path relative to the --stimuli folder, or its "
                        "path; label: a class name or index): the stimuli's labels, over a folder's classes")
    p.add_argument("--class-names", type=existing_file, default=None,
                   help="the name of each class index, a JSON list or one name per line (a folder's classes are "
                        "matched to them by name)")


def labelled_stimuli(args, stimuli):
    """``stimuli`` with the labels of ``--labels`` and the names of ``--class-names``, when given."""
    if getattr(args, "labels", None) is None and getattr(args, "class_names", None) is None:
        return stimuli
    from ..stimuli.labels import labelled

    return labelled(stimuli, args.labels, args.class_names)


def _resize_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resize", action="store_true",
                   help="fit --images to the model's input as --stimuli folders are: by its preprocessing (resize, "
                        "centre crop) or to cover its input_size and crop the centre")


def _load(args):
    from ..experiments.command import load_model

    return load_model(args.model, args.weights, args.device)


def _read_input(args, model):
    """The images given with --images, else the bundled held-out crops (with their labels)."""
    from ..models import photos

    if args.images:
        return read_images(args.images, model, args.resize), None
    return photos.held_out(args.per_class, seed=1234 + args.seed)


def read_images(paths: list[str], model, resize: bool = False):
    """Images (N, C, H, W) in [0, 1] from files, checked against ``model.input_size``; with ``resize``, fitted to
    the model's input by the one file reader (:func:`insilico.recording.stimulus_source`: the model's
    ``preprocessing``, resize then centre crop; else cover ``input_size`` and crop the centre)."""
    import torch

    from ..recording import stimulus_source
    from ..stimuli.files import read_image

    if resize:
        source = stimulus_source(list(paths), name="--images", model=model)
        return source.batch(0, len(source), None, None)
    size = getattr(model, "input_size", None)
    images = [read_image(path) for path in paths]  # the one decoder of image files: (3, H, W) in [0, 1]
    for path, image in zip(paths, images):
        if size is not None and tuple(image.shape[1:]) != tuple(size[1:]):
            raise StimulusError(f"image {path!r} is {image.shape[1]}x{image.shape[2]}; the model takes "
                                f"{size[1]}x{size[2]}: resize it, or pass --resize")
    if len({tuple(i.shape) for i in images}) > 1:
        raise StimulusError("the images have different sizes; pass --resize (needs a model with input_size)")
    return torch.stack(images)
