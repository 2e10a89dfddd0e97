"""A two-minute tour: record, lesion and stimulate the bundled CNN, and show what changed.

Run it with ``insilico demo --out demo`` (the README's first command until the
gallery lands). It writes ``demo.png`` and ``demo.json`` and prints a summary:

1. **record**: first-layer responses to gratings at 12 orientations give each
   channel's orientation tuning (:func:`insilico.experiments.orientation_tuning`);
2. **lesion**: silencing a seeded random half of the channels of ``features.3``
   costs held-out accuracy; silencing a layer's single most active channel
   costs less. Accuracy is measured on the model card's held-out set
   (:func:`held_out_set`: 512 class-balanced crops, 32 per photo, seed 1234,
   never seen in training), so the intact figure is the card's (61.5% for
   minialex) and the demo, the card and notebook 01 state one number;
3. **stimulate**: driving one channel of the last conv layer shifts the
   network's decisions toward particular classes.

Example
-------
>>> from insilico.demo import run_demo
>>> summary = run_demo(out=None, progress=False)          # doctest: +SKIP
>>> summary["lesion"]["accuracy_intact"] > summary["lesion"]["accuracy_half_lesioned"]   # doctest: +SKIP
True
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import models
from .experiments import orientation_tuning
from .jsonfiles import write_json
from .models.train import EVAL_SEED
from .probe import Probe

ORIENTATIONS = list(range(0, 180, 15))
#: Held-out crops per class of the model card's held-out set (:func:`insilico.models.train.main` evaluates on it).
HELD_OUT_PER_CLASS = 32


def held_out_set() -> tuple[torch.Tensor, torch.Tensor, str]:
    """The model card's held-out set: images (512, 3, 64, 64) in [0, 1], labels (512,), and its name as the
    demo states it.

    >>> x, y, name = held_out_set()
    >>> tuple(x.shape), name
    ((512, 3, 64, 64), "the model card's 512 held-out crops (32 per photo, seed 1234)")
    """
    images, labels = models.photos.held_out(per_class=HELD_OUT_PER_CLASS, seed=EVAL_SEED)
    return images, labels, (f"the model card's {len(labels)} held-out crops ({HELD_OUT_PER_CLASS} per photo, "
                            f"seed {EVAL_SEED})")


def accuracy(model, images, labels) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def run_demo(model_name: str = "minialex", out: str | Path | None = "demo", progress: bool = True, seed: int = 0) -> dict:
    """Run the tour on a bundled model; returns (and writes to ``out``) a summary dict."""
    model = models.load(model_name)
    probe = Probe(model)
    channels, size, _ = model.input_size
    images, labels, held_out = held_out_set()

    tuning = orientation_tuning(model, "features.1", orientations=ORIENTATIONS, sfs=[2, 4, 8], phases=[0, 90, 180, 270],
                                progress=False)

    intact = accuracy(model, images, labels)
    with probe.lesion("features.3", fraction=0.5, seed=seed):
        half = accuracy(model, images, labels)
    rec = probe.record_stimuli(images, ["features.3"], reduce="mean", progress=progress)
    strongest = int(rec["features.3"].mean(dim=0).argmax())
    with probe.lesion(f"features.3[{strongest}]"):
        single = accuracy(model, images, labels)

    last_conv = "features.10"
    with torch.no_grad():
        before = model(images).argmax(dim=1)
        with probe.stimulate(f"{last_conv}[0]", add=20.0):
            after = model(images).argmax(dim=1)
    changed = (before != after).float().mean().item()
    drawn_to = torch.bincount(after[before != after], minlength=len(model.classes))
    summary = {
        "model": model_name,
        "record": {"unit": "features.1", "orientations": ORIENTATIONS, "osi": tuning.osi.tolist(),
                   "preferred": tuning.preferred_orientation.tolist(), "tuned": int(tuning.tuned.sum())},
        "lesion": {"unit": "features.3", "held_out": held_out, "accuracy_intact": intact, "accuracy_half_lesioned": half,
                   "strongest_channel": strongest, "accuracy_strongest_lesioned": single},
        "stimulate": {"unit": f"{last_conv}[0]", "add": 20.0, "decisions_changed": changed,
                      "drawn_to": model.classes[int(drawn_to.argmax())] if changed else None},
    }
    print(_report(summary))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "demo.json", summary)  # strict JSON: an unresponsive channel's OSI (NaN) is null
        _figure(tuning, summary).savefig(out / "demo.png", dpi=120)
        print(f"wrote {out / 'demo.png'} and {out / 'demo.json'}")
    return summary


def _report(s: dict) -> str:
    osi = np.asarray(s["record"]["osi"])
    lesion, stim = s["lesion"], s["stimulate"]
    return "\n".join([
        f"record    features.1 (conv1 after ReLU): {s['record']['tuned']}/{len(osi)} channels orientation-tuned "
        f"(OSI >= 1/3; median OSI {np.nanmedian(osi):.2f})",
        f"lesion    features.3: held-out accuracy on {lesion.get('held_out', 'held-out crops')}: "
        f"{lesion['accuracy_intact']:.1%} intact, "
        f"{lesion['accuracy_half_lesioned']:.1%} with a random half of channels silenced, "
        f"{lesion['accuracy_strongest_lesioned']:.1%} without channel {lesion['strongest_channel']}",
        f"stimulate {stim['unit']} +{stim['add']:g}: {100 * stim['decisions_changed']:.0f}% of decisions changed"
        + (f", most toward '{stim['drawn_to']}'" if stim["drawn_to"] else ""),
    ])


def _figure(tuning, summary: dict):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    tuning.plot(units=np.argsort(np.nan_to_num(tuning.osi))[::-1][:6].tolist(), ax=ax1)
    ax1.set_title("features.1: the 6 most selective channels")
    lesion = summary["lesion"]
    ax2.bar(["intact", "random half\nlesioned", f"channel {lesion['strongest_channel']}\nlesioned"],
            [lesion["accuracy_intact"], lesion["accuracy_half_lesioned"], lesion["accuracy_strongest_lesioned"]],
            color=["0.4", "tab:red", "tab:orange"])
    ax2.axhline(1 / len(models.load(summary["model"]).classes), ls="--", color="k", lw=1, label="chance")
    ax2.set(ylabel="held-out accuracy", title="lesions of features.3", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    return fig
