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
predictor fits it well, plain maximization transfers badly).

The predictor of the options not named ``ensemble...`` or ``factorized`` is chosen by what transfers
(``--predictor pilot``, the default): :func:`insilico.design.transfer.rank_candidates` fits every network
of the pool (``--pool``: by default every bundled network but ``blt``, the different brain's, so that
brain stays a network the predictor is not; ``name=weights.pt`` adds another seed), runs a one-round
pilot per network on the brain (64 steps, 1 start) and ensembles the best 3 (``--top``) by their *recorded*
median stretch;
``--predictor minialex`` designs on ``minialex`` alone (the numbers before the pilot). Design options
for the different brain: ``default`` (``population_control``'s defaults: noise
start, 4 restarts, transforms), ``plain`` (one noise start, no transforms),
``transforms`` (one start, jitter/scale/rotate at every step), ``natural``
(start from the predicted best natural image, L2 budget), ``factorized``
(defaults on a factorized spatial x channel readout), ``ensemble`` (plain on
predictors from ``minialex``, ``b`` and ``bl``), ``ensemble+natural``,
``ensemble+default``; and the closed loops (:func:`insilico.design.closed_loop.closed_loop`,
``--rounds`` rounds of design, presentation to the brain and refit on its
recorded responses): ``loop`` (the defaults), ``natural+loop``,
``ensemble+natural+loop``, ``ensemble+default+loop``, ``best+loop`` and ``ensemble+best+loop`` (every round starts each
neuron from the image it answers best so far, by its recorded responses shrunk toward the round's predictor,
within the L2 budget, in pixels without transforms; with ``--candidates K`` from each of its K best: the
recipe for the different brain, ``--options best+loop --candidates 4 --budget 4 --rounds 5 --confirm 16 8``), ``best-robust+loop`` and ``ensemble+best-robust+loop`` (the same start, with the defaults'
Fourier parameterization and transforms); a loop's numbers are its last round's, with
``best`` (each neuron keeps the image the brain's recorded responses rank
best over the rounds), ``confirmed`` (after the loop's re-test, ``--confirm REPETITIONS TOP``: each
neuron's TOP images re-shown REPETITIONS times more, the pick on all recordings; default 16 4, ``0 0``
for none) with its extra presentations, and every round's in the JSON. Every option reports the
predicted fraction (on its predictor) beside the measured one, and the gap.
The matched brain runs ``default``, ``plain``, ``natural-unbounded`` and ``loop``.

Writes to ``--out``: ``population_control.json`` (every number, settings,
versions), ``population_control.csv`` (one row per brain and option),
``population_control.png`` (images and brain responses vs natural maxima).

Examples::

    python probes/population_control.py --out results/pc                      # full size (CPU: an hour or more)
    python probes/population_control.py --brains matched --out results/pc     # the matched brain only
    python probes/population_control.py --quick --out /tmp/pc                 # a smoke run
    python probes/population_control.py --brains different --options best+loop --candidates 4 \
        --budget 4 --rounds 5 --confirm 16 8 --out results/pc                    # the recipe (README)
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
from insilico.design.closed_loop import CLIMB, DEFAULT_CONFIRM, DEFAULT_ROUNDS, closed_loop
from insilico.design.transfer import DEFAULT_TOP, PILOT_OPTIONS, rank_candidates

OPTIONS = ("default", "plain", "transforms", "natural", "factorized", "ensemble", "ensemble+natural",
           "ensemble+default", "loop", "natural+loop", "ensemble+natural+loop", "ensemble+default+loop", "best+loop", "ensemble+best+loop", "best-robust+loop",
           "ensemble+best-robust+loop")
#: Options run on the matched brain.
MATCHED_OPTIONS = ("default", "plain", "natural-unbounded", "loop")
#: The columns of population_control.csv (besides brain, option, mode).
CSV_FIELDS = ("fraction_beyond_natural", "predicted_fraction_beyond_natural", "gap_beyond", "median_stretch",
              "fraction_control_beats_natural", "predicted_fraction_control_beats_natural", "gap_one_hot", "best",
              "confirmed", "confirm_presentations", "seconds")
#: The candidate networks (and layers) of the ensemble.
ENSEMBLE = (("minialex", "features.9"), ("b", "layers.2@-1"), ("bl", "layers.2@-1"))
#: The layer each bundled network is read at when named in ``--ensemble``.
LAYERS = {"minialex": "features.9", "b": "layers.2@-1", "bl": "layers.2@-1", "bt": "layers.2@-1"}
#: The pilot's candidate networks by default: every bundled network but the different brain's (blt).
POOL = tuple(LAYERS)


def design_options(option: str, steps: int | None, budget: float) -> dict:
    """``population_control``'s keywords for an option (its base, without ``+loop``); ``steps=None``: the default."""
    kwargs = {} if steps is None else dict(steps=steps)
    base = option[:-len("+loop")] if option.endswith("+loop") else option
    if base in ("default", "factorized", "ensemble+default", "loop"):  # population_control's own defaults
        pass
    elif base in ("plain", "ensemble"):  # plain gradient ascent: one start, no transforms, no contrast budget
        kwargs.update(transforms=None, contrast=None, restarts=1)
    elif base in ("best-robust", "ensemble+best-robust"):  # the best recorded start, the defaults' prior and transforms
        kwargs.update(init="best", budget=budget, restarts=1)
    elif base == "transforms":
        kwargs.update(transforms="default", contrast=None, restarts=1)
    elif base in ("best", "ensemble+best"):  # closed_loop's climb, at --budget
        kwargs.update(CLIMB, budget=budget)
    elif base in ("natural", "ensemble+natural", "natural-unbounded"):  # the climb's settings from one natural start
        kwargs.update(CLIMB, init="natural", budget=None if base == "natural-unbounded" else budget)
    else:
        raise InsilicoError(f"unknown option {option!r}; choose from {OPTIONS}")
    return kwargs


def design(predictor, option: str, mode: str, natural, steps: int | None, budget: float, seed: int, progress: bool):
    """``population_control`` with an option's settings; ``steps=None``: the function's default."""
    return insilico.population_control(predictor, None, mode, natural=natural, seed=seed, progress=progress,
                                       **design_options(option, steps, budget))


def loop_numbers(fit, exp, option: str, steps, budget: float, rounds: int, seed: int, progress: bool, out: str,
                 candidates: int = 1, confirm=DEFAULT_CONFIRM):
    """A closed loop of ``rounds`` rounds on the option's settings: per round and mode, the report's numbers;
    the option's numbers are the last round's (and ``best_*``: each target's best image over the rounds;
    ``confirmed``: the pick after the re-test, and its extra presentations)."""
    loop = closed_loop(fit, exp.brain, exp.images, exp.responses, exp.natural_images, rounds=rounds, seed=seed,
                       candidates=candidates, confirm=confirm, progress=progress,
                       out=os.path.join(out, "loops", f"{exp.kind}-{option}"), **design_options(option, steps, budget))
    numbers = {}
    for mode in ("stretch", "one_hot"):
        last = loop.report[-1][mode]
        numbers[mode] = {"fraction_beyond_natural": last["measured_beyond"],
                         "median_stretch": last["median_stretch"],
                         "fraction_control_beats_natural": last["measured_one_hot"],
                         "predicted_fraction_beyond_natural": last["predicted_beyond"],
                         "predicted_fraction_control_beats_natural": last["predicted_one_hot"],
                         "best": last.get("best_beyond" if mode == "stretch" else "best_one_hot"),
                         "confirmed": loop.confirmation.get(mode, {}).get(
                             "confirmed_beyond" if mode == "stretch" else "confirmed_one_hot"),
                         "confirm_presentations": loop.confirmation.get("presentations", 0),
                         "rounds": [entry[mode] for entry in loop.report]}
    return numbers


class Fits:
    """The predictors of one experiment: the main fit, the factorized one, the ensemble, and the factories of loops."""

    def __init__(self, exp, main, device: str, progress: bool, ensemble=ENSEMBLE, pool=None, pilot_steps=None,
                 top=DEFAULT_TOP):
        self.exp, self.main, self.device, self.progress, self.members = exp, main, device, progress, ensemble
        self.ensemble, self.scores, self.pool, self.pilot_steps, self.ranking = None, {}, pool, pilot_steps, None
        self.top = top

    def _fit(self, name: str, layer: str, images, responses, weights="DEFAULT", **kwargs):
        return fit_predictor(insilico.models.load(name, device=self.device, weights=weights), images, responses,
                             layers=[layer], progress=self.progress, **kwargs)

    def pilot(self):
        """The pool ranked by a one-round pilot on the brain (recorded responses only); its top ensemble."""
        if self.ranking is None:
            fits = {label: (lambda x, y, n=name, w=weights: self._fit(n, LAYERS[n], x, y, weights=w))
                    for label, (name, weights) in self.pool.items()}
            steps = PILOT_OPTIONS["steps"] if self.pilot_steps is None else min(self.pilot_steps, PILOT_OPTIONS["steps"])
            self.ranking = rank_candidates(fits, self.exp.brain, self.exp.images, self.exp.responses,
                                           self.exp.natural_images, top=self.top, steps=steps,
                                           progress=self.progress)
            self.scores["pilot"] = {"rows": self.ranking.rows, "chosen": self.ranking.chosen}
            print("pilot: " + ", ".join(f"{row['name']} {row['score']:.2f} (r {row['held_out_r']:.2f})"
                                        for row in self.ranking.rows) + f"; chosen {self.ranking.chosen}", flush=True)
        return self.ranking

    def predictor(self, option: str):
        """The predictor an option designs on."""
        if option == "factorized":
            predictor = self._fit("minialex", "features.9", self.exp.images, self.exp.responses, readout="factorized")
            self.scores["factorized_median_r"] = float(np.median(predictor.scores["r"]))
            return predictor
        if option.startswith("ensemble"):
            if self.ensemble is None:
                members = [self.main if name == "minialex" else self._fit(name, layer, self.exp.images,
                                                                            self.exp.responses)
                           for name, layer in self.members]
                self.ensemble = Ensemble(members)
                self.scores["ensemble_member_median_r"] = [float(np.median(m.scores["r"])) for m in members]
            return self.ensemble
        return self.main if self.pool is None else self.pilot().ensemble

    def factory(self, option: str):
        """``fit(images, responses)`` of a loop option: the main network's, or the ensemble's."""
        members = self.members if option.startswith("ensemble") else ENSEMBLE[:1]
        if self.pool is not None and not option.startswith("ensemble"):
            return self.pilot().fit

        def fit(images, responses):
            fitted = [self._fit(name, layer, images, responses) for name, layer in members]
            return fitted[0] if len(fitted) == 1 else Ensemble(fitted)
        return fit


def design_numbers(predictor, option: str, mode: str, exp, steps, budget: float, seed: int, progress: bool,
                   shown: dict) -> dict:
    """One design of an option on ``predictor``, shown to the brain: measured and predicted success."""
    natural = exp.natural_images
    result = design(predictor, option, mode, natural, steps, budget, seed, progress)
    report = result.check(exp.brain, natural)
    if mode == "stretch":
        shown[(exp.kind, option)] = (result, report)
    return {"fraction_beyond_natural": report["fraction_beyond_natural"],
            "median_stretch": report["median_stretch"],
            "fraction_control_beats_natural": report["fraction_control_beats_natural"],
            "median_control_gain": report["median_control_gain"],
            "predicted_fraction_beyond_natural": float((result.stretch > 1).float().mean()),
            "predicted_fraction_control_beats_natural": float((result.control > result.natural_control).float().mean())}


def run(out: str = "population_control", brains=("matched", "different"), options=OPTIONS, n_stimuli: int = 1000,
        n_neurons: int = 32, repetitions: int = 4, steps: int | None = None, budget: float = 4.0, seed: int = 0,
        device: str = "cpu", progress: bool = True, rounds: int = DEFAULT_ROUNDS, candidates: int = 1,
        ensemble=ENSEMBLE, pool: dict | None = None, top: int = DEFAULT_TOP, confirm=DEFAULT_CONFIRM) -> dict:
    """Run the experiment and write the files; returns the JSON summary as a dict. ``pool``: label -> (network,
    weights) of the pilot (:func:`pool_of`), whose best ``top`` form the ensemble; None: design on ``minialex`` alone."""
    start = time.time()
    os.makedirs(out, exist_ok=True)
    summary = {"settings": dict(n_stimuli=n_stimuli, n_neurons=n_neurons, repetitions=repetitions, steps=steps,
                                budget=budget, seed=seed, options=list(options), rounds=rounds,
                                candidates=candidates, confirm=confirm, ensemble=[name for name, _ in ensemble],
                                pool=None if pool is None else {k: [n, str(w)] for k, (n, w) in pool.items()}, top=top),
               "brains": {}, "versions": dict(insilico=insilico.__version__, torch=torch.__version__)}
    rows, shown = [], {}
    for kind in brains:
        t0 = time.time()
        exp = simulated_experiment(kind, n_stimuli=n_stimuli, n_neurons=n_neurons, repetitions=repetitions,
                                   seed=seed)
        exp.brain.to(device)
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
        fits = Fits(exp, main, device, progress, ensemble, pool, steps, top)
        for option in (options if kind == "different" else MATCHED_OPTIONS):
            t2 = time.time()
            if option.endswith("+loop") or option == "loop":
                numbers = loop_numbers(fits.factory(option), exp, option, steps, budget, rounds, seed, progress, out,
                                       candidates, confirm)
            else:
                numbers = {mode: design_numbers(fits.predictor(option), option, mode, exp, steps, budget, seed,
                                                progress, shown) for mode in ("stretch", "one_hot")}
            for mode in ("stretch", "one_hot"):
                numbers[mode]["seconds"] = round(time.time() - t2, 1)
                numbers[mode]["gap_beyond"] = (numbers[mode]["predicted_fraction_beyond_natural"]
                                               - numbers[mode]["fraction_beyond_natural"])
                numbers[mode]["gap_one_hot"] = (numbers[mode]["predicted_fraction_control_beats_natural"]
                                                - numbers[mode]["fraction_control_beats_natural"])
                rows.append(dict(brain=kind, option=option, mode=mode,
                                 **{k: v for k, v in numbers[mode].items() if k in CSV_FIELDS}))
            entry["options"][option] = numbers
            print(f"{kind:9s} {option:22s} stretch beyond natural {numbers['stretch']['fraction_beyond_natural']:.0%}"
                  f"  one-hot beats natural {numbers['one_hot']['fraction_control_beats_natural']:.0%}"
                  + (f"  (best over rounds: {numbers['stretch']['best']:.0%} / {numbers['one_hot']['best']:.0%})"
                     if "best" in numbers["stretch"] else "")
                  + (f"  (confirmed: {numbers['stretch']['confirmed']:.0%} / {numbers['one_hot']['confirmed']:.0%},"
                     f" {numbers['stretch']['confirm_presentations']} presentations)"
                     if numbers["stretch"].get("confirmed") is not None else ""), flush=True)
        entry.update(fits.scores)
        summary["brains"][kind] = entry
    summary["seconds"] = round(time.time() - start, 1)
    write_json(os.path.join(out, "population_control.json"), summary)
    with open(os.path.join(out, "population_control.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["brain", "option", "mode", *CSV_FIELDS])
        writer.writeheader()
        writer.writerows(rows)
    if shown:
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


def pool_of(items) -> dict:
    """``--pool`` items (``name``: a bundled network's shipped weights; ``label=weights.pt``: the network named
    before any ``@`` in the label, e.g. ``b@seed1=seed1/b.pt``) as label -> (network, weights)."""
    pool = {}
    for item in items:
        label, _, weights = item.partition("=")
        name = label.split("@")[0]
        if name not in LAYERS:
            raise InsilicoError(f"--pool {item!r}: the network must be one of {', '.join(LAYERS)}")
        pool[label] = (name, weights or "DEFAULT")
    return pool


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
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="design rounds of the +loop options")
    parser.add_argument("--ensemble", nargs="+", default=[name for name, _ in ENSEMBLE], choices=list(LAYERS),
                        help="networks of the ensemble options (default minialex b bl)")
    parser.add_argument("--predictor", default="pilot", choices=["pilot", "minialex"],
                        help="the predictor of the options not named ensemble...: the pool's pilot-ranked "
                             "ensemble (default) or minialex alone")
    parser.add_argument("--pool", nargs="+", default=list(POOL),
                        help="the pilot's candidate networks: NAME or LABEL=WEIGHTS.pt (e.g. b@seed1=w/b.pt); "
                             "default every bundled network but blt (the different brain's)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="members of the pilot's ensemble (default 3)")
    parser.add_argument("--candidates", type=int, default=1, help="designs per neuron and mode in each loop round")
    parser.add_argument("--confirm", type=int, nargs=2, default=list(DEFAULT_CONFIRM), metavar=("REPETITIONS", "TOP"),
                        help="the loops' re-test: each neuron's TOP images re-shown REPETITIONS times (0 0: none)")
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
                      rounds=args.rounds, candidates=args.candidates,
                      confirm=tuple(args.confirm) if min(args.confirm) > 0 else None,
                      ensemble=tuple((name, LAYERS[name]) for name in args.ensemble),
                      pool=pool_of(args.pool) if args.predictor == "pilot" else None, top=args.top,
                      seed=args.seed, device=device, progress=not args.quiet, **sizes)
    except InsilicoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "versions"}, indent=1)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
