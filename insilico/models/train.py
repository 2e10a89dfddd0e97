"""Reproduce the bundled weights: ``python -m insilico.models.train NAME [--out DIR] [--seed S]``.

Trains model NAME (see :func:`insilico.models.available`) on the bundled-photo
task (:mod:`insilico.models.photos`) on the CPU, evaluates it on the held-out
regions, and writes ``NAME.pt`` (a float32 ``state_dict``) and ``NAME.json``
(its card) to DIR (default: the package's ``weights/`` folder). The recipe
(steps, learning rates, clutter, which time steps' readouts enter the loss of
a recurrent model) is the model's entry in ``insilico.models._REGISTRY``;
the card records it, the CPU minutes it took and the held-out accuracy (per
time step, clean and cluttered, for recurrent models).

Example
-------
>>> from insilico.models.train import main
>>> main(["blt", "--steps", "2", "--out", str(tmp)])        # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from ..jsonfiles import write_json
from ..seeding import keep_global_rng
from . import _REGISTRY, WEIGHTS_DIR, photos
from .filters import orientedness

EVAL_SEED = 1234     # held-out crops for the card (the tests draw another seed)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> list[float]:
    """Held-out accuracy; one value per time step for recurrent models (a list either way)."""
    model.eval()
    hits = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            out = model.forward_steps(xb) if hasattr(model, "forward_steps") else model(xb)[:, None]
            hits.append(out.argmax(-1) == y[i:i + batch, None])
    return torch.cat(hits).float().mean(0).tolist()


def step_weights(timesteps: int, spec: dict) -> list[float]:
    """Loss weight of each time step's readout: "equal" (summed over steps), "linear" or "geometric" (doubling with t)
    or "last" (the final step's readout only; earlier steps are read out with the same, shared readout)."""
    kind = spec.get("step_weights", "equal")
    if kind == "geometric":
        w = [2.0 ** t for t in range(timesteps)]
        return [timesteps * v / sum(w) for v in w]
    if kind == "last":
        return [0.0] * (timesteps - 1) + [float(timesteps)]
    if kind == "linear":
        return [timesteps * (t + 1) / (timesteps * (timesteps + 1) / 2) for t in range(timesteps)]
    return [1.0] * timesteps


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The model's first convolution (the one that sees the image)."""
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _optimizer(model: torch.nn.Module, spec: dict) -> torch.optim.Optimizer:
    """AdamW; the first convolution may get its own learning-rate factor and weight decay."""
    conv1 = list(first_conv(model).parameters())
    ids = {id(p) for p in conv1}
    rest = [p for p in model.parameters() if id(p) not in ids]
    lr = spec["lr"]
    groups = [dict(params=rest, lr=lr, weight_decay=spec["weight_decay"]),
              dict(params=conv1, lr=lr * spec.get("conv1_lr", 1.0),
                   weight_decay=spec.get("conv1_weight_decay", spec["weight_decay"]))]
    return torch.optim.AdamW(groups, lr=lr)


def training_text(spec: dict, steps: int, batch: int) -> str:
    """The card's one-line description of the training recipe."""
    text = (f"{steps} steps x {batch} augmented crops from the left {1 - photos.HELD_OUT:.0%} of each photo, "
            f"AdamW lr {spec['lr']} wd {spec['weight_decay']}, one-cycle")
    if spec.get("conv1_lr", 1.0) != 1.0 or "conv1_weight_decay" in spec:
        text += (f"; first conv lr x{spec.get('conv1_lr', 1.0)} "
                 f"wd {spec.get('conv1_weight_decay', spec['weight_decay'])}")
    if spec.get("gray", 0.5) != 0.5:
        text += f"; {spec['gray']:.0%} of crops gray"
    if spec.get("occlude"):
        text += f"; {spec['occlude']:.0%} of crops cluttered with 2 patches of other crops"
    if spec.get("step_weights", "equal") != "equal":
        text += ("; loss on the last time step's readout only" if spec["step_weights"] == "last"
                 else f"; loss summed over time steps with {spec['step_weights']} weights")
    return text


def train(name: str, seed: int = 0, steps: int | None = None, batch: int | None = None, threads: int = 2,
          progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train model ``name`` from scratch; returns the model (eval mode) and its card.

    The init and dropout draw from torch's global generator, seeded with ``seed`` inside a fork:
    the caller's global random state is as it was afterwards.
    """
    with keep_global_rng():
        return _train(name, seed, steps, batch, threads, progress)


def _train(name: str, seed: int, steps: int | None, batch: int | None, threads: int,
           progress: bool) -> tuple[torch.nn.Module, dict]:
    from tqdm.auto import tqdm

    spec = _REGISTRY[name]
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = spec["build"]()
    steps = steps or spec["steps"]
    batch = batch or spec.get("batch", 64)
    occlude = spec.get("occlude", 0.0)
    opt = _optimizer(model, spec)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    start, cpu_start = time.time(), time.process_time()
    model.train()
    bar = tqdm(range(steps), desc=f"train {name}", disable=not progress)
    for step in bar:
        x, y = photos.sample(batch, "train", generator=gen, occlude=occlude, gray=spec.get("gray", 0.5))
        if hasattr(model, "forward_steps"):
            out = model.forward_steps(x)
            loss = sum(w * F.cross_entropy(out[:, t], y) for t, w in enumerate(step_weights(out.shape[1], spec)))
        else:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    minutes = (time.time() - start) / 60
    cpu_minutes = (time.process_time() - cpu_start) / 60
    model.eval()
    xt, yt = photos.held_out(per_class=32, seed=EVAL_SEED)
    acc = accuracy(model, xt, yt)
    card = {
        "name": name,
        "description": spec["description"],
        "architecture": type(model).__name__,
        "input_size": list(model.input_size),
        "classes": list(model.classes),
        "chance": 1 / len(model.classes),
        "held_out_accuracy": acc[-1],
        "held_out_n": len(yt),  # images the accuracy is over: its interval (Wilson) on the gallery's model card
        "held_out": f"{len(yt)} class-balanced 64x64 crops from the right {photos.HELD_OUT:.0%} of each "
                    f"photo (never seen in training), seed {EVAL_SEED}",
        "training": training_text(spec, steps, batch),
        "train_command": f"python -m insilico.models.train {name} --seed {seed} --threads {threads}",
        "seed": seed,
        "train_minutes": round(minutes, 2),          # wall clock: grows when others share the CPU
        "train_cpu_minutes": round(cpu_minutes, 2),  # CPU time over all threads
        "threads": threads,
        "torch": torch.__version__,
    }
    if hasattr(model, "timesteps"):
        card["timesteps"] = model.timesteps
        card["variant"] = model.variant
        card["held_out_accuracy_per_step"] = acc
        xo = photos._occlude(xt, 1.0, torch.Generator().manual_seed(EVAL_SEED))
        card["held_out_cluttered_accuracy_per_step"] = accuracy(model, xo, yt)
    r = orientedness(first_conv(model).weight)
    card["conv1_orientedness_median"] = float(r.median())
    card["conv1_fraction_oriented"] = float((r > 0.4).float().mean())
    return model, card


def save(model: torch.nn.Module, card: dict, out: str) -> None:
    """Write ``<name>.pt`` (float32 state_dict) and ``<name>.json`` (card) into folder ``out``."""
    os.makedirs(out, exist_ok=True)
    state = {k: v.detach().float().clone() if v.is_floating_point() else v.clone()
             for k, v in model.state_dict().items()}
    torch.save(state, os.path.join(out, f"{card['name']}.pt"))
    write_json(os.path.join(out, f"{card['name']}.json"), card)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m insilico.models.train", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(_REGISTRY))
    parser.add_argument("--out", default=WEIGHTS_DIR, help="output folder (default: the package's weights/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped schedule)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    model, card = train(args.name, seed=args.seed, steps=args.steps, threads=args.threads)
    save(model, card, args.out)
    print(json.dumps({k: v for k, v in card.items() if k != "classes"}, indent=1))
    return card


if __name__ == "__main__":
    main()
