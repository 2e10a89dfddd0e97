"""``insilico record``: record units over a stimulus set into ``OUT/recording`` (resumable, shardable)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import (_batch_option, _labels_options, _load, _model_options, _shard_option, labelled_stimuli,
                      positive_int, reductions)
from .outputs import _file_name, _manifest, _out, _shared, _writes_outputs


def _record(sub) -> None:
    p = sub.add_parser("record", help="record units over a stimulus set (resumable, on disk)",
                       description="Record units over a stimulus set into OUT/recording (memory-mapped arrays), "
                                   "with a PNG of the mean responses and manifest.json. Rerunning continues an "
                                   "interrupted recording.")
    _model_options(p)
    p.add_argument("--units", nargs="+", required=True, help="unit addresses, e.g. features.0 'features.3[5]'")
    p.add_argument("--stimuli", type=_stimuli, default="photos",
                   help="photos (the bundled held-out crops), gratings, natural, or a folder (DIR/<class>/<image> "
                        "gives labels) or glob ('DIR/*.png') of image files, streamed and fitted to the model's "
                        "input (default %(default)s)")
    p.add_argument("--per-class", type=positive_int, default=16, help="photos: crops per class (default %(default)s)")
    _labels_options(p)
    p.add_argument("--reduce", type=reductions, default=None,
                   help="mean, max or center: pool each channel over its positions, (N, C) per unit (default: keep "
                        "every value): a map (C, H, W) over H, W; a channels-last stage (H, W, C, Swin) over H, W; a "
                        "token layer (T, D, ViT) over its patch tokens, CLS and registers dropped ('center': the "
                        "centre patch); a vector is refused. One value applies to every unit; per unit: "
                        "'UNIT=HOW,...' ('none' keeps a unit whole; '*=mean' pools wherever pooling is meaningful)")
    _batch_option(p, 64, "stimuli")
    p.add_argument("--out", required=True, help="output folder")
    _shard_option(p)

    def run(args):
        from ..probe import Probe

        model = _load(args)
        stimuli = labelled_stimuli(args, _stimulus_set(args, model))
        probe = Probe(model)
        probe.units(*args.units)  # a bad address ends here, before anything is written
        out = _out(args.out)
        rec = probe.record_stimuli(stimuli, args.units, out=_shared(args, out, "recording"), reduce=args.reduce,
                                   batch_size=args.batch_size, progress=not args.quiet)
        if not _writes_outputs(rec if rec.complete else None):
            return
        entries = []
        for unit in args.units:
            values = rec[unit].float().reshape(len(rec), -1)
            _response_png(out / f"{_file_name(unit)}.png", values, unit)
            entries.append({"unit": unit, "file": f"{_file_name(unit)}.png", "shape": list(rec[unit].shape),
                            "mean": float(values.mean())})
        _manifest(out, args, entries, recording="recording", n_stimuli=len(rec))
        print(f"recorded {len(args.units)} unit(s) over {len(rec)} stimuli into {out}")

    p.set_defaults(run=run)


STIMULI = ("photos", "gratings", "natural")


def _stimuli(text: str) -> str:
    """photos, gratings, natural, a folder or a glob (an argparse type: checked while parsing)."""
    if text not in STIMULI and not Path(text).is_dir() and not any(c in text for c in "*?["):
        raise argparse.ArgumentTypeError(f"must be {', '.join(STIMULI)}, a folder of images or a glob, not {text!r}")
    return text


def _stimulus_set(args, model):
    from .. import stimuli
    from ..models import photos

    size = int(getattr(model, "input_size", (3, 64, 64))[-1])
    if args.stimuli == "photos":
        return photos.held_out(args.per_class, seed=1234 + args.seed)[0]
    if args.stimuli == "gratings":
        return stimuli.gratings(size=size, orientation=range(0, 180, 15), sf=[2, 4, 8], phase=[0, 90, 180, 270],
                                channels=3)
    if args.stimuli == "natural":
        return stimuli.natural_images(size=size, n_crops=4, seed=args.seed, crop=0.5)
    return args.stimuli  # a folder or glob: record_stimuli reads the files per batch, fitted to the model


def _response_png(path: Path, values, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    shown = values if values.shape[1] <= 512 else values[:, :512]
    image = ax.imshow(shown.T.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xlabel("stimulus")
    ax.set_ylabel("unit value")
    ax.set_title(unit)
    fig.colorbar(image, ax=ax)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
