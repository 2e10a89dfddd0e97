#!/usr/bin/env python
"""Adversarial stimuli: PGD on held-out photos at several epsilons; images, a JSON manifest and a success report.

Untargeted by default; ``--target runner-up`` aims each image at the model's
second choice, ``--target N`` at class N, and ``--silence 'layer[c]'``
silences a channel instead of attacking the label. Writes, in ``--out``:

- ``adversarial_eps<k>.png``: one PNG mosaic per epsilon (rows: clean |
  perturbation | adversarial, titled with predictions);
- ``adversarial_images.npz``: clean and adversarial images (uint8), labels;
- ``adversarial.json``: the manifest (settings, versions, files) with the
  per-epsilon report and the per-image rows;
- ``adversarial_success.png``: success rate against epsilon.

Example::

    python probes/adversarial.py --model minialex --eps 2,4,8,16 --out out/adversarial
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from insilico import __version__
from insilico.design.adversarial import pgd
from insilico.experiments import command
from insilico.jsonfiles import write_json
from insilico.objectives import Activation


def main(argv=None) -> dict:
    p = command.parser(__doc__.splitlines()[0], units_help="unused; see --silence")
    p.add_argument("--eps", type=command.floats, default=[2.0, 4.0, 8.0, 16.0], help="radii in 1/255 (L-inf) "
                   "or in pixel units (L2), comma-separated")
    p.add_argument("--norm", choices=["inf", "l2"], default="inf")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--per-class", type=int, default=2, help="held-out images per class")
    p.add_argument("--target", default=None, help="'runner-up' or a class index (default: untargeted)")
    p.add_argument("--silence", default=None, help="a unit to silence instead, e.g. 'features.9[12]'")
    p.add_argument("--show", type=int, default=6, help="images per figure")
    args = p.parse_args(argv)
    model = command.load_model(args.model, args.weights, args.device)
    x, y = command.labelled_stimuli(args.per_class, args.seed + 1)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    eps = [e / 255 for e in args.eps] if args.norm == "inf" else list(args.eps)
    target = None
    if args.silence:
        target = -Activation(args.silence)
    elif args.target == "runner-up":
        with torch.no_grad():
            target = model(x).topk(2, dim=1).indices[:, 1]
    elif args.target is not None:
        target = torch.full_like(y, int(args.target))
    result = pgd(model, x, None if target is not None and args.silence is None else y, eps=eps, steps=args.steps,
                 norm=args.norm, target=target, restarts=args.restarts, batch_size=args.batch_size, seed=args.seed,
                 progress=args.progress)

    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, e in enumerate(eps):
        fig = result.plot(n=args.show, eps=e)
        path = out / f"adversarial_eps{k}.png"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    fig = result.plot_success()
    files.append(out / "adversarial_success.png")
    fig.savefig(files[-1], dpi=150, bbox_inches="tight")
    plt.close(fig)
    to8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    images = result.all_images
    np.savez_compressed(out / "adversarial_images.npz", clean=to8(result.clean), adversarial=to8(images),
                        labels=y.cpu().numpy(), eps=np.array(eps))
    files.append(out / "adversarial_images.npz")
    report = result.report()
    manifest = {
        "what": "adversarial images (PGD)", "model": args.model, "settings": result.settings,
        "arguments": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, type(None)))},
        "versions": {"insilico": __version__, "torch": torch.__version__, "numpy": np.__version__},
        "files": [f.name for f in files], "report": report, "images": result.per_sample(),
    }
    write_json(out / "adversarial.json", manifest)
    files.append(out / "adversarial.json")
    summary = {f"success_at_{row['eps']:.4g}": round(row["success_rate"], 4) for row in report}
    command.report(files, summary)
    return summary


if __name__ == "__main__":
    main()
