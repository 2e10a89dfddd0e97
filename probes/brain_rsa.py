"""Which layer of a network best matches inferior temporal cortex? RSA on the 92 object images.

The analysis of Khaligh-Razavi & Kriegeskorte (2014), offline: record every
layer of a model on the 92 object images of Kriegeskorte et al. (2008), compute
one RDM per layer, and compare each with human IT (fMRI, 4 subjects, each the
mean of 2 sessions; mean similarity over subjects, with the leave-one-subject-
out noise ceiling) and monkey IT (674 neurons), with bootstrap confidence
intervals over stimuli.

Writes to ``--out``:

- ``brain_rsa.csv``   one row per layer and region: similarity, CI, bootstrap SE
- ``brain_rsa.json``  the same with the noise ceiling, settings and versions
- ``brain_rsa.png``   hIT, mIT and best-layer RDMs; bar plots of layer vs region with the ceiling
- ``rdms.npz``        the layer RDMs (condensed vectors, scipy order)

Examples::

    python probes/brain_rsa.py --model minialex --out results/minialex
    python probes/brain_rsa.py --model blt --compare kendall_a --n-boot 200 --out results/blt
    python probes/brain_rsa.py --model torchvision.models:alexnet --size 224 --out results/alexnet
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np
import torch

import insilico
from insilico import rsa
from insilico.errors import InsilicoError
from insilico.jsonfiles import write_json


def load_model(spec: str, weights: str | None, device: str):
    """A bundled model by name, or the user's ``package.module:callable`` / ``file.py:callable``."""
    from insilico import models

    if ":" in spec:
        return models.from_spec(spec, weights=weights, device=device)
    return models.load(spec, device=device)


def run(model_spec: str = "minialex", out: str = "brain_rsa", units=None, method: str = "correlation",
        compare: str = "spearman", n_boot: int = 1000, size: int | None = None, weights: str | None = None,
        device: str = "cpu", seed: int = 0, progress: bool = True) -> dict:
    """Run the analysis and write the files; returns the JSON summary as a dict."""
    start = time.time()
    model = load_model(model_spec, weights, device)
    if size is None:
        size = int(getattr(model, "input_size", (3, 64, 64))[-1])
    data = insilico.data.kriegeskorte2008(size=size)
    layers = rsa.model_rdms(model, data.images, units=units, method=method, labels=data.categories,
                            progress=progress)
    layers = {name: r.to("cpu") for name, r in layers.items()}
    subjects = data.human_it_subjects()
    human = rsa.bootstrap(layers, subjects, compare, over="stimuli", n_boot=n_boot, seed=seed, progress=progress)
    monkey = rsa.bootstrap(layers, [data.monkey_it], compare, over="stimuli", n_boot=n_boot, seed=seed + 1,
                           progress=progress)
    ceiling = rsa.noise_ceiling(subjects, compare)
    mit_vs_hit = rsa.compare(data.monkey_it, data.human_it, compare)

    os.makedirs(out, exist_ok=True)
    rows = []
    for region, res in (("hIT", human), ("mIT", monkey)):
        for row in res.table():
            rows.append(dict(layer=row["name"], region=region, method=compare, similarity=row["estimate"],
                             ci_low=row["ci_low"], ci_high=row["ci_high"], bootstrap_se=row["std"]))
    with open(os.path.join(out, "brain_rsa.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    np.savez(os.path.join(out, "rdms.npz"), **{name: r.numpy() for name, r in layers.items()})
    best_h = human.names[int(np.argmax(human.estimate))]
    best_m = monkey.names[int(np.argmax(monkey.estimate))]
    summary = dict(
        model=model_spec, layers=list(layers), rdm_method=method, compare_method=compare, n_boot=n_boot,
        image_size=size, seed=seed,
        human_it={n: dict(similarity=float(e), ci=[float(c[0]), float(c[1])])
                  for n, e, c in zip(human.names, human.estimate, human.ci)},
        monkey_it={n: dict(similarity=float(e), ci=[float(c[0]), float(c[1])])
                   for n, e, c in zip(monkey.names, monkey.estimate, monkey.ci)},
        human_it_noise_ceiling=dict(lower=ceiling.lower, upper=ceiling.upper),
        monkey_it_vs_human_it=mit_vs_hit,
        best_layer=dict(human_it=best_h, monkey_it=best_m),
        seconds=round(time.time() - start, 1),
        versions=dict(insilico=insilico.__version__, torch=torch.__version__, numpy=np.__version__),
    )
    write_json(os.path.join(out, "brain_rsa.json"), summary)
    figure(layers[best_h], data, human, monkey, ceiling, model_spec).savefig(
        os.path.join(out, "brain_rsa.png"), dpi=120)
    return summary


def figure(best, data, human, monkey, ceiling, title):
    """Top: hIT, mIT and the best layer's RDMs (percentiles); bottom: similarity per layer."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.1])
    for k, (r, name) in enumerate(((data.human_it, "human IT"), (data.monkey_it, "monkey IT"),
                                   (best, f"{title}: {best.name}"))):
        r.plot(ax=fig.add_subplot(grid[0, k]), rank=True, title=name)
    rsa.plot_comparison(human, ax=fig.add_subplot(grid[1, :2]), ceiling=ceiling, title="layer vs human IT")
    rsa.plot_comparison(monkey, ax=fig.add_subplot(grid[1, 2]), title="layer vs monkey IT", color="tab:orange")
    fig.suptitle(f"{title} on the 92 images (Kriegeskorte et al. 2008)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="RSA of every layer of a model against human and monkey IT on the 92 object images "
                    "(Khaligh-Razavi & Kriegeskorte 2014), offline.")
    parser.add_argument("--model", default="minialex",
                        help="bundled model name (minialex, blt, ...) or 'package.module:callable' / 'file.py:callable'")
    parser.add_argument("--weights", help="state_dict file for a --model spec")
    parser.add_argument("--out", default="brain_rsa", help="output folder (default: brain_rsa)")
    parser.add_argument("--units", nargs="+", help="unit addresses to use (default: every activation and the output)")
    parser.add_argument("--method", default="correlation", choices=[m for m in rsa.RDM_METHODS if m != "crossnobis"],
                        help="RDM dissimilarity (default: correlation)")
    parser.add_argument("--compare", default="spearman", choices=rsa.COMPARE_METHODS,
                        help="RDM comparison (default: spearman; Khaligh-Razavi & Kriegeskorte used kendall_a)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap samples over stimuli (default 1000)")
    parser.add_argument("--size", type=int, help="image size (default: the model's input_size, else 64)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        summary = run(args.model, args.out, args.units, args.method, args.compare, args.n_boot, args.size,
                      args.weights, args.device, args.seed, progress=not args.quiet)
    except InsilicoError as error:
        print(f"brain_rsa: error: {error}", file=sys.stderr)
        return 2
    ceiling = summary["human_it_noise_ceiling"]
    print(f"{summary['model']}: {summary['compare_method']} similarity of layer RDMs ({summary['rdm_method']}) "
          f"with IT; human-IT noise ceiling [{ceiling['lower']:.3f}, {ceiling['upper']:.3f}], "
          f"mIT vs hIT {summary['monkey_it_vs_human_it']:.3f}")
    print(f"{'layer':24s} {'hIT':>7s} {'95% CI':>17s} {'mIT':>7s} {'95% CI':>17s}")
    for name in summary["layers"]:
        h, m = summary["human_it"][name], summary["monkey_it"][name]
        print(f"{name:24s} {h['similarity']:7.3f} [{h['ci'][0]:6.3f}, {h['ci'][1]:6.3f}] "
              f"{m['similarity']:7.3f} [{m['ci'][0]:6.3f}, {m['ci'][1]:6.3f}]")
    print(f"best layer: hIT {summary['best_layer']['human_it']}, mIT {summary['best_layer']['monkey_it']}; "
          f"wrote {args.out}/brain_rsa.csv, .json, .png, rdms.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
