"""A two-minute tour: record, lesion and stimulate the bundled CNN, and show what changed.

Run it with ``insilico demo --out demo`` (the README's first command until the
gallery lands). It writes ``demo.png`` and ``demo.json`` and prints a summary:

1. **record**: first-layer responses to gratings at 12 orientations give each
   channel's orientation tuning (preferred orientation, selectivity);
2. **lesion**: silencing a seeded random half of the channels of ``features.3``
   costs held-out accuracy; silencing a layer's single most active channel
   costs less;
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

import json
from pathlib import Path

import numpy as np
import torch

from . import models, stimuli
from .probe import Probe

ORIENTATIONS = list(np.arange(0, 180, 15.0))


def orientation_tuning(probe: Probe, unit: str, size: int, channels: int) -> tuple[np.ndarray, dict]:
    """Mean response of each channel of ``unit`` to full-field gratings, max over phase and SF: (channels, orientations)."""
    gratings = stimuli.gratings(size=size, orientation=ORIENTATIONS, sf=[4.0, 8.0], phase=[0.0, 90.0, 180.0, 270.0],
                                channels=channels)
    rec = probe.record_stimuli(gratings, [unit], reduce="mean", progress=False)
    responses = rec[unit].numpy().reshape(len(ORIENTATIONS), -1, rec[unit].shape[-1])  # (orientation, sf*phase, C)
    tuning = responses.max(axis=1).T
    angles = np.deg2rad(2 * np.asarray(ORIENTATIONS))
    rates = np.clip(tuning - tuning.min(axis=1, keepdims=True), 0, None)
    vector = np.abs((rates * np.exp(1j * angles)).sum(axis=1)) / np.maximum(rates.sum(axis=1), 1e-12)
    preferred = np.asarray(ORIENTATIONS)[tuning.argmax(axis=1)]
    return tuning, {"preferred": preferred.tolist(), "selectivity": vector.tolist()}


def accuracy(model, images, labels) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def run_demo(model_name: str = "minialex", out: str | Path | None = "demo", progress: bool = True, seed: int = 0) -> dict:
    """Run the tour on a bundled model; returns (and writes to ``out``) a summary dict."""
    model = models.load(model_name)
    probe = Probe(model)
    channels, size, _ = model.input_size
    images, labels = models.photos.held_out(per_class=8, seed=1234)

    tuning, tuned = orientation_tuning(probe, "features.1", size, channels)

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
        "record": {"unit": "features.1", "orientations": ORIENTATIONS, **tuned},
        "lesion": {"unit": "features.3", "accuracy_intact": intact, "accuracy_half_lesioned": half,
                   "strongest_channel": strongest, "accuracy_strongest_lesioned": single},
        "stimulate": {"unit": f"{last_conv}[0]", "add": 20.0, "decisions_changed": changed,
                      "drawn_to": model.classes[int(drawn_to.argmax())] if changed else None},
    }
    print(_report(summary))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps(summary, indent=1))
        _figure(tuning, tuned, summary).savefig(out / "demo.png", dpi=120)
        print(f"wrote {out / 'demo.png'} and {out / 'demo.json'}")
    return summary


def _report(s: dict) -> str:
    sel = np.asarray(s["record"]["selectivity"])
    lesion, stim = s["lesion"], s["stimulate"]
    return "\n".join([
        f"record    features.1 (conv1 after ReLU): {int((sel > 0.3).sum())}/{len(sel)} channels orientation-tuned "
        f"(circular selectivity > 0.3; median {np.median(sel):.2f})",
        f"lesion    features.3: held-out accuracy {lesion['accuracy_intact']:.2f} intact, "
        f"{lesion['accuracy_half_lesioned']:.2f} with a random half of channels silenced, "
        f"{lesion['accuracy_strongest_lesioned']:.2f} without channel {lesion['strongest_channel']}",
        f"stimulate {stim['unit']} +{stim['add']:g}: {100 * stim['decisions_changed']:.0f}% of decisions changed"
        + (f", most toward '{stim['drawn_to']}'" if stim["drawn_to"] else ""),
    ])


def _figure(tuning: np.ndarray, tuned: dict, summary: dict):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    order = np.argsort(tuned["selectivity"])[::-1][:6]
    for c in order:
        curve = tuning[c]
        ax1.plot(ORIENTATIONS, curve / max(curve.max(), 1e-12), marker="o", label=f"channel {c}")
    ax1.set(xlabel="grating orientation (deg)", ylabel="normalised response", title="features.1: orientation tuning")
    ax1.legend(fontsize=7)
    lesion = summary["lesion"]
    ax2.bar(["intact", "random half\nlesioned", f"channel {lesion['strongest_channel']}\nlesioned"],
            [lesion["accuracy_intact"], lesion["accuracy_half_lesioned"], lesion["accuracy_strongest_lesioned"]],
            color=["0.4", "tab:red", "tab:orange"])
    ax2.axhline(1 / len(models.load(summary["model"]).classes), ls="--", color="k", lw=1, label="chance")
    ax2.set(ylabel="held-out accuracy", title="lesions of features.3", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    return fig
