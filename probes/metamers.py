#!/usr/bin/env python
"""Model metamers of held-out photo crops at one or more layers, with their validity report.

Writes one PNG per metamer and per reference, ``manifest.json`` (file, reference, layer, seed, final
relative error, stop reason), ``validity.json`` (null-distribution test, classes, distance per layer),
the result file ``metamers.pt`` (resumable with ``insilico.metamer(model, resume=...)``) and figures
(grid, loss traces, distance per layer). See :func:`insilico.design.metamers.metamer`.

Example::

    python probes/metamers.py --model minialex --layer features.3 --n 4 --out out/metamers
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from insilico.experiments import command
from insilico.jsonfiles import write_json
from insilico.design.metamers import DEFAULT_STEPS, DEFAULT_THRESHOLD, metamer


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minialex", help="a bundled model or 'package.module:callable'")
    p.add_argument("--weights", default=None)
    p.add_argument("--layer", nargs="+", default=["features.3"], help="one metamer per layer, all in one run")
    p.add_argument("--n", type=int, default=4, help="number of reference images (held-out photo crops)")
    p.add_argument("--seeds", type=int, default=1, help="metamers per reference and layer")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--optimizer", default="adam", choices=["adam", "lbfgs", "sgd"])
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    args = p.parse_args(argv)
    from skimage.io import imsave

    model = command.load_model(args.model, args.weights, args.device)
    x, _ = command.labelled_stimuli(max(1, -(-args.n // 16)), seed=args.seed)
    refs = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))[: args.n]]
    result = metamer(model, args.layer, refs, steps=args.steps, optimizer=args.optimizer, threshold=args.threshold,
                     n_seeds=args.seeds, seed=args.seed, progress=args.progress)
    report = result.validity()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def png(name, image):
        imsave(out / name, (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8).squeeze(),
               check_contrast=False)
        return name

    manifest = {"arguments": vars(args), "settings": result.settings, "references": [], "metamers": []}
    for r in range(refs.shape[0]):
        manifest["references"].append({"index": r, "file": png(f"reference_{r}.png", refs[r])})
    for i, label in enumerate(result.labels):
        manifest["metamers"].append({
            "label": label, "file": png(f"metamer_{i:03d}.png", result.images[i]),
            "reference": result.reference_index[i], "layer": result.layer_of(i), "seed": result.seeds[i],
            "final_error": float(result.final_errors[i]), "stop_reason": result.stop_reasons[i],
            "steps": int(result.steps[i]), "valid": bool(report.valid[i]),
        })
    write_json(out / "manifest.json", manifest)
    write_json(out / "validity.json", report.to_dict())
    result.save(out / "metamers.pt")
    import matplotlib.pyplot as plt

    for name, fig in (("grid", result.plot()), ("losses", result.plot_losses()), ("layers", report.plot())):
        fig.savefig(out / f"{name}.png", dpi=150, bbox_inches="tight")
        plt.close(fig)
    summary = {"metamers": len(result), "valid": int(report.valid.sum()),
               "same_class": None if report.same_class is None else int(report.same_class.sum()),
               "median_error": float(result.final_errors.median())}
    print(report)
    print(json.dumps(summary), f"-> {out}")
    return summary


if __name__ == "__main__":
    main()
