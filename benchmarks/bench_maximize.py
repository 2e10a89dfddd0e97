"""Activation maximization: insilico.maximize side by side with lucent's render_vis.

Same model, same units (channels of conv4), same image size, one run each:

- lucent (torch-lucent): ``render_vis`` with ``param.image(size, batch=N, fft=True, decorrelate=True)``,
  its standard transforms (pad 12, jitter 8, scale 0.9-1.1, rotate +-10, jitter 4), Adam lr 0.05,
  ``--lucent-steps`` steps (default 128), one channel objective per batch entry (summed);
  ``preprocess=False`` because our models normalise inside.
- insilico: ``maximize`` with its defaults (Fourier + decorrelation, per-sample pad 12 / jitter 8 /
  scale / rotate, Adam lr 0.05) and ``--steps`` steps (default 64: half of lucent's).

Quality, measured identically on both sets of final images:

- robust activation: the unit's mean activation over ``--robust-draws`` random transforms of its
  image (jitter +-8 px, scale 0.9-1.1, rotation +-10 deg, the same draws for both), averaged over units;
- high-frequency fraction: the share of each image's spectral power (mean removed) above a quarter of
  the Nyquist frequency (radial frequency > 0.125 cycles/pixel), averaged over images;

plus wall time. Targets: insilico's time <= 1/2 of lucent's, robust activation >= lucent's, HF
fraction <= 1.25 x lucent's. If lucent cannot be imported, a minimal lucid-style loop written here
(same parameterization and transforms as lucent, one shared transform per batch) stands in.

Run (full, about 5 minutes on 2 shared CPU cores)::

    python benchmarks/bench_maximize.py
    python benchmarks/bench_maximize.py --size 96 --steps 16 --lucent-steps 32    # quick look

``pip install torch-lucent --no-deps`` (plus ``kornia kornia_rs --no-deps``) installs lucent without touching torch.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import insilico
from insilico.objectives import Activation
from insilico.synthesis import Transforms


def build_model(name: str):
    if name == "minialex":
        return insilico.models.load("minialex"), "features.8", "bundled trained MiniAlexNet (conv4 = features.8)"
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.alexnet().eval(), "features.8", "torchvision AlexNet, random init (conv4 = features.8)"


def _kornia_shim():
    """lucent 0.1.8 calls kornia.get_rotation_matrix2d / kornia.warp_affine, which kornia >= 0.7 only has
    under kornia.geometry.transform: alias them (same functions) so lucent runs unchanged."""
    import kornia
    from kornia.geometry import transform as kt

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kt, name))


def run_lucent(model, layer, channels, size, steps):
    _kornia_shim()
    from lucent.optvis import objectives, param, render, transform

    obj = sum(objectives.channel(layer.replace(".", "_"), c, batch=i) for i, c in enumerate(channels))
    torch.manual_seed(0)
    param_f = lambda: param.image(size, batch=len(channels), fft=True, decorrelate=True)
    images = render.render_vis(model, obj, param_f, transforms=transform.standard_transforms, thresholds=(steps,),
                               preprocess=False, progress=False, show_image=False, fixed_image_size=None)
    return torch.from_numpy(np.ascontiguousarray(images[-1])).permute(0, 3, 1, 2).float()


def run_reference_loop(model, layer, channels, size, steps):
    """A minimal lucid-style loop: fft + decorrelated colour + sigmoid, one random transform per batch."""
    from insilico.synthesis.parameterization import Fourier

    torch.manual_seed(0)
    p = Fourier(len(channels), (3, size, size))
    with torch.no_grad():
        p.param.normal_(0, 0.01)
    opt = torch.optim.Adam(p.parameters(), lr=0.05)
    probe = insilico.Probe(model)
    t = Transforms(pad=12, jitter=12, scale=(0.9, 1.1), rotate=10)
    for _ in range(steps):
        opt.zero_grad()
        x = t.apply(p(), t.draw([torch.default_generator]).expand(len(channels), -1))
        with probe.record(layer, keep_graph=True) as rec:
            try:
                model(x)
            except RuntimeError:
                pass
        act = rec[layer]
        loss = -sum(act[i, c].mean() for i, c in enumerate(channels))
        loss.backward()
        opt.step()
    return p().detach()


def run_insilico(model, layer, channels, size, steps, seed=0):
    result = insilico.maximize(model, [f"{layer}[{c}]" for c in channels], size=size, steps=steps, pad=12, jitter=8,
                               progress=False, seed=seed)
    return result.images


def robust_activation(model, layer, channels, images, draws=16):
    """Mean over units of the unit's activation under random jitter/scale/rotation of its own image."""
    t = Transforms(jitter=8, scale=(0.9, 1.1), rotate=10)
    values = []
    with torch.no_grad():
        for i, c in enumerate(channels):
            gens = [torch.Generator().manual_seed(1000 + k) for k in range(draws)]
            batch = t(images[i:i + 1].expand(draws, -1, -1, -1), gens)
            with insilico.Probe(model).record(f"{layer}[{c}]") as rec:
                try:
                    model(batch)
                except RuntimeError:
                    pass
                values.append(rec[f"{layer}[{c}]"].mean())
    return float(torch.stack(values).mean())


def high_frequency_fraction(images: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of spectral power above ``cutoff`` x Nyquist (0.5 cycles/pixel), mean over images."""
    h, w = images.shape[-2:]
    x = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).sum(dim=1)  # (N, H, W), summed over colour channels
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.fftfreq(w).view(1, -1)
    high = (fy**2 + fx**2).sqrt() > cutoff * 0.5
    return float((power[:, high].sum(dim=1) / power.flatten(1).sum(dim=1)).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["minialex", "torchvision"], default="minialex")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--steps", type=int, default=64, help="insilico steps (default 64)")
    ap.add_argument("--lucent-steps", type=int, default=128)
    ap.add_argument("--robust-draws", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1: shared CPUs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, layer, description = build_model(args.model)
    channels = list(range(args.channels))
    try:
        import lucent  # noqa: F401
        from lucent.optvis import render  # noqa: F401

        peer, run_peer = f"lucent {getattr(lucent, '__version__', '')}".strip(), run_lucent
    except Exception as e:  # pragma: no cover - depends on the environment
        print(f"lucent not importable ({type(e).__name__}: {e}); using the lucid-style reference loop")
        peer, run_peer = "lucid-style reference loop", run_reference_loop

    print(f"model: {description}; {args.channels} channels of {layer}; {args.size} px; "
          f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    run_insilico(model, layer, channels[:1], 32, 1)  # warm-up (imports, allocator)
    t0 = time.perf_counter()
    theirs = run_peer(model, layer, channels, args.size, args.lucent_steps)
    t_peer = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = run_insilico(model, layer, channels, args.size, args.steps)
    t_ours = time.perf_counter() - t0

    rows = []
    for name, images, steps, seconds in ((peer, theirs, args.lucent_steps, t_peer), ("insilico", ours, args.steps, t_ours)):
        rows.append((name, steps, seconds, robust_activation(model, layer, channels, images, args.robust_draws),
                     high_frequency_fraction(images)))
    print(f"{'':28s} {'steps':>6s} {'time s':>8s} {'robust act':>11s} {'HF frac':>8s}")
    for name, steps, seconds, robust, hf in rows:
        print(f"{name:28s} {steps:6d} {seconds:8.1f} {robust:11.4f} {hf:8.4f}")
    (_, _, tp, rp, hp), (_, _, to, ro, ho) = rows
    time_ratio, hf_ratio = to / tp, ho / hp
    robust_gain = ro - rp
    print(f"time ratio insilico/{peer}: {time_ratio:.2f} (target <= 0.5)  "
          f"{'OK' if time_ratio <= 0.5 else 'MISSED'}")
    print(f"robust activation insilico - {peer}: {robust_gain:+.4f} (ratio {ro / rp if rp else math.nan:.2f}; "
          f"target >= 0)  {'OK' if robust_gain >= 0 else 'MISSED'}")
    print(f"HF fraction ratio insilico/{peer}: {hf_ratio:.2f} (target <= 1.25)  {'OK' if hf_ratio <= 1.25 else 'MISSED'}")


if __name__ == "__main__":
    main()
