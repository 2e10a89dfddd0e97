"""Closed-loop stimulus design on a simulated brain: fit a predictor, synthesize, present, count.

The experiment of Bashivan, Kar & DiCarlo (2019) and Walker et al. (2019), with
a ground truth we know (:mod:`insilico.data.simulated`): a population of model
neurons responds, with Poisson noise over repeated presentations, to natural
images; a :class:`~insilico.encoding.NeuralPredictor` is fitted from
``minialex`` features on those responses; stretch (most exciting) and one-hot
images are synthesized on the predictor and shown to the brain. Reported per
brain and per design option:

- the fraction of neurons driven beyond their maximal response to every
  natural image (the fitted ones and the held-out ones), and the median
  stretch (response / natural maximum);
- one-hot: the fraction of neurons whose brain control score beats that of
  their best natural image.

Two brains: ``matched`` reads ``minialex``'s own ``features.9`` (a correct loop
must succeed); ``different`` reads the recurrent ``blt``'s top layer (the
predictor fits it well, plain maximization transfers badly). Design options
for the different brain: ``default`` (``population_control``'s defaults: noise
start, 4 restarts, transforms), ``plain`` (one noise start, no transforms),
``transforms`` (one start, jitter/scale/rotate at every step), ``natural``
(start from the predicted best natural image, L2 budget), ``factorized``
(defaults on a factorized spatial x channel readout), ``ensemble`` (plain on
predictors from ``minialex``, ``b`` and ``bl``), ``ensemble+natural``,
``ensemble+default``. The matched brain runs ``default``, ``plain`` and
``natural-unbounded``.

Writes to ``--out``: ``population_control.json`` (every number, settings,
versions), ``population_control.csv`` (one row per brain and option),
``population_control.png`` (images and brain responses vs natural maxima).

Examples::

    python probes/population_control.py --out results/pc                      # full size (CPU: an hour or more)
    python probes/population_control.py --brains matched --out results/pc     # the matched brain only
    python probes/population_control.py --quick --out /tmp/pc                 # a smoke run
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import torch

import insilico
from insilico.experiments import command
from insilico.data.simulated import simulated_experiment
from insilico.encoding import fit_predictor
from insilico.errors import InsilicoError
from insilico.encoding import Ensemble
from insilico.jsonfiles import write_json

OPTIONS = ("default", "plain", "transforms", "natural", "factorized", "ensemble", "ensemble+natural",
           "ensemble+default")
#: Options run on the matched brain.
MATCHED_OPTIONS = ("default", "plain", "natural-unbounded")
#: The candidate networks (and layers) of the ensemble.
ENSEMBLE = (("minialex", "features.9"), ("b", "layers.2@-1"), ("bl", "layers.2@-1"))


def design(predictor, option: str, mode: str, natural, steps: int | None, budget: float, seed: int, progress: bool):
    """``population_control`` with an option's settings; ``steps=None``: the function's default."""
    kwargs = dict(natural=natural, seed=seed, progress=progress)
    if steps is not None:
        kwargs.update(steps=steps)
    if option in ("default", "factorized", "ensemble+default"):  # population_control's own defaults
        pass
    elif option in ("plain", "ensemble"):  # plain gradient ascent: one start, no transforms, no contrast budget
        kwargs.update(transforms=None, contrast=None, restarts=1)
    elif option == "transforms":
        kwargs.update(transforms="default", contrast=None, restarts=1)
    elif option in ("natural", "ensemble+natural", "natural-unbounded"):
        kwargs.update(init="natural", parameterization="pixel", transforms=None, lr=0.01, contrast=None,
                      restarts=1, budget=None if option == "natural-unbounded" else budget)
    else:
        raise InsilicoError(f"unknown option {option!r}; choose from {OPTIONS}")
    return insilico.population_control(predictor, None, mode, **kwargs)


def run(out: str = "population_control", brains=("matched", "different"), options=OPTIONS, n_stimuli: int = 1000,
        n_neurons: int = 32, repetitions: int = 4, steps: int | None = None, budget: float = 4.0, seed: int = 0,
        device: str = "cpu", progress: bool = True) -> dict:
    """Run the experiment and write the files; returns the JSON summary as a dict."""
    start = time.time()
    os.makedirs(out, exist_ok=True)
    summary = {"settings": dict(n_stimuli=n_stimuli, n_neurons=n_neurons, repetitions=repetitions, steps=steps,
                                budget=budget, seed=seed, options=list(options)),
               "brains": {}, "versions": dict(insilico=insilico.__version__, torch=torch.__version__)}
    rows, shown = [], {}
    for kind in brains:
        t0 = time.time()
        exp = simulated_experiment(kind, n_stimuli=n_stimuli, n_neurons=n_neurons, repetitions=repetitions,
                                   seed=seed)
        exp.brain.to(device)
        natural = exp.natural_images
        t1 = time.time()
        main = fit_predictor(insilico.models.load("minialex", device=device), exp.images, exp.responses,
                             layers=["features.9"], progress=progress)
        fit_s = time.time() - t1
        with torch.no_grad():
            held = insilico.encoding.pearson_r(exp.brain.rates(exp.held_out_images).cpu(),
                                               main(exp.held_out_images.to(device)).cpu())
        entry = {"layer": exp.brain.layer, "fit_seconds": round(fit_s, 1),
                 "median_r": float(np.median(main.scores["r"])),
                 "median_normalized_r": float(np.nanmedian(main.scores["normalized_r"])),
                 "median_r_held_out_photos_vs_truth": float(held.median()),
                 "experiment_seconds": round(t1 - t0, 1), "options": {}}
        ensemble = None
        for option in (options if kind == "different" else MATCHED_OPTIONS):
            predictor = main
            if option == "factorized":
                predictor = fit_predictor(insilico.models.load("minialex", device=device), exp.images,
                                          exp.responses, layers=["features.9"], readout="factorized",
                                          progress=progress)
                entry["factorized_median_r"] = float(np.median(predictor.scores["r"]))
            if option.startswith("ensemble"):
                if ensemble is None:
                    members = [main] + [fit_predictor(insilico.models.load(name, device=device), exp.images,
                                                      exp.responses, layers=[layer], progress=progress)
                                        for name, layer in ENSEMBLE[1:]]
                    ensemble = Ensemble(members)
                    entry["ensemble_member_median_r"] = [float(np.median(m.scores["r"])) for m in members]
                predictor = ensemble
            numbers = {}
            for mode in ("stretch", "one_hot"):
                t2 = time.time()
                result = design(predictor, option, mode, natural, steps, budget, seed, progress)
                report = result.check(exp.brain, natural)
                numbers[mode] = {
                    "fraction_beyond_natural": report["fraction_beyond_natural"],
                    "median_stretch": report["median_stretch"],
                    "fraction_control_beats_natural": report["fraction_control_beats_natural"],
                    "median_control_gain": report["median_control_gain"],
                    "predicted_fraction_beyond_natural": float((result.stretch > 1).float().mean()),
                    "seconds": round(time.time() - t2, 1)}
                if mode == "stretch":
                    shown[(kind, option)] = (result, report)
                rows.append(dict(brain=kind, option=option, mode=mode, **{k: v for k, v in numbers[mode].items()}))
            entry["options"][option] = numbers
            print(f"{kind:9s} {option:18s} stretch beyond natural {numbers['stretch']['fraction_beyond_natural']:.0%}"
                  f"  one-hot beats natural {numbers['one_hot']['fraction_control_beats_natural']:.0%}", flush=True)
        summary["brains"][kind] = entry
    summary["seconds"] = round(time.time() - start, 1)
    write_json(os.path.join(out, "population_control.json"), summary)
    with open(os.path.join(out, "population_control.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure(shown).savefig(os.path.join(out, "population_control.png"), dpi=110)
    return summary


def figure(shown: dict):
    """Per brain and option: brain response of each neuron to its stretch image vs its natural maximum."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), squeeze=False)
    for ax, ((kind, option), (result, report)) in zip(axes[0], shown.items()):
        nat, got = report["natural_max"].numpy(), report["target_response"].numpy()
        ax.scatter(nat, got, s=12, c=np.where(got > nat, "tab:red", "tab:gray"))
        low = float(max(min(nat.min(), got.min()), 1e-3)) * 0.8
        top = float(max(nat.max(), got.max())) * 1.25
        ax.plot([low, top], [low, top], "k--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{kind}: {option}\n{report['fraction_beyond_natural']:.0%} beyond natural", fontsize=9)
        ax.set_xlabel("natural maximum")
        ax.set_ylabel("response to stretch image")
    fig.tight_layout()
    plt.close(fig)
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Closed-loop population control on a simulated brain "
                                                 "(predictor fit, stretch and one-hot synthesis, transfer options)")
    parser.add_argument("--out", default="population_control")
    parser.add_argument("--brains", nargs="+", default=["matched", "different"], choices=["matched", "different"])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--stimuli", type=int, default=1000, help="natural images shown for fitting")
    parser.add_argument("--neurons", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="synthesis steps (default: population_control's)")
    parser.add_argument("--budget", type=float, default=4.0, help="L2 distance budget of natural starts (pixels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 stimuli, 8 neurons, 8 steps")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    device = command.device(args.device)  # the kit's one reading of --device (auto: CUDA when available)
    sizes = dict(n_stimuli=200, n_neurons=8, steps=8) if args.quick else dict(
        n_stimuli=args.stimuli, n_neurons=args.neurons, steps=args.steps)
    try:
        summary = run(args.out, args.brains, args.options, repetitions=args.repetitions, budget=args.budget,
                      seed=args.seed, device=device, progress=not args.quiet, **sizes)
    except InsilicoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "versions"}, indent=1)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
