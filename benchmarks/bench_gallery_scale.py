"""What a full gallery of a 224-px ResNet-50 ``layer4`` and a ViT-B/16 block costs: measured on CPU, extrapolated.

    PYTHONPATH=. python benchmarks/bench_gallery_scale.py [--models resnet50 vit] [--images 10000] [--threads 1]

Each gallery stage (:data:`insilico.gallery.stages.STAGES`, the functions ``insilico gallery build`` runs per
chunk of units) runs on the real architecture with random weights (torchvision ``resnet50``, timm
``vit_base_patch16_224``; nothing downloaded) at reduced settings: 1 and then :data:`UNITS_HIGH` units, few
steps, :data:`N_IMAGES` exemplar images (random images of the model's input size), each run the best of
:data:`REPEATS`. The difference of the two runs is a stage's cost per unit; the rest is its cost per chunk
(the gratings, the lesion set's intact pass, fixed costs). The ranking of the exemplars (one pass over them
per chunk, which the features and exemplars stages share) is timed as a row of its own. Each cost is then
scaled to the full settings by the number of images it pushes through the model (:func:`scale`, the cost
model), and to whole layers: ``layer4``'s 2,048 channels; a ViT block's 768 features and its attention's
12 heads (``net.blocks.6.attn:heads``, the gallery's head units), in chunks of 256 units over ``--images``
exemplar images. On a shared, loaded machine the split into per-unit and per-chunk costs is noisy (a
difference of two timings); the totals are estimates to within a factor of about 2.

The GPU column is an ESTIMATE, not a measurement (no GPU was lent to this benchmark's author): the CPU's
rate is measured here (FLOPs of one forward + backward pass of the model, counted by
``torch.utils.flop_counter``, per second), the GPU's is assumed: :data:`GPU_FLOPS`, half of an H200's
published FP32 (non-tensor) peak of 67 TFLOP/s (the gallery's default precision is fp32; TF32/bf16 tensor
cores would be faster). CPU time x (CPU rate / GPU rate) is the GPU time; it ignores the GPU's fixed costs per
step (small for chunks of 256 units, hundreds of images per batch). A gallery shards over ``torch.distributed``
as today (``torchrun --nproc-per-node G ... gallery build``: each rank takes every G-th chunk): G GPUs divide
the time by about G.

Timings are printed, never asserted; the numbers of a run are in the README (gallery scale).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _threads import limit_threads  # noqa: E402

import insilico  # noqa: E402
from insilico.gallery.settings import GallerySettings  # noqa: E402
from insilico.gallery.stages import STAGES, Work  # noqa: E402
from insilico.experiments.tuning import GRIDS  # noqa: E402

UNITS_HIGH = 4     # the second run's units (the first has 1)
REPEATS = 2        # each run's best of (a shared machine's load only slows a run down)
N_IMAGES = 4       # exemplar images at reduced settings
LESION_IMAGES = 4  # lesion images at reduced settings
GPU_FLOPS = 33.5e12  # assumed sustained fp32 rate of one H200: half its published 67 TFLOP/s FP32 peak
MODELS = {"resnet50": ("torchvision:resnet50", {"net.layer4": 2048}),
          "vit": ("timm:vit_base_patch16_224", {"net.blocks.6": 768, "net.blocks.6.attn:heads": 12})}

#: reduced settings (measured) and the full ones (the gallery's defaults)
REDUCED = dict(steps=2, settle=1, stretch_steps=1, diverse=1, exemplars=2, orientations=4, phases=1,
               rf_images=1, colour_gratings=False, lesion_per_class=1, per_class=1)
FULL = {f: getattr(GallerySettings(), f) for f in REDUCED} | {"colour_gratings": True}


def images_per_unit(stage: str, s: dict) -> float:
    """Images a stage pushes through the model per unit (a forward + backward pass counts as one image)."""
    return {"ranking": 0,
            "features": (s["diverse"] + 1) * s["steps"] + s["stretch_steps"],  # diverse + inhibiting + stretched
            "exemplars": 2 * s["exemplars"],                                     # deconvolution + gradient map
            "rf": s["rf_images"],
            "lesion": s["lesion_images"],
            "tuning": 0}[stage]


def images_per_chunk(stage: str, s: dict) -> float:
    """Images a stage pushes through the model per chunk of units (a pass shared by the chunk's units)."""
    gratings = s["orientations"] * GRIDS[0][1] * s["phases"] * (3 if s["colour_gratings"] else 1) + 1  # + blank
    return {"ranking": s["n_images"],        # the top exemplars of the chunk's units, read by features and exemplars
            "features": 0,
            "exemplars": 0,
            "tuning": gratings + s["n_images"],  # the gratings (x the default SFs) + the natural range
            "rf": 0,
            "lesion": s["lesion_images"]}[stage]  # the intact pass


def scale(stage: str, per_unit: float, per_chunk: float, reduced: dict, full: dict, units: int, chunk: int
          ) -> tuple[float, float]:
    """Seconds of a stage for ``units`` units at ``full`` settings, from its measured costs at ``reduced`` ones:
    each part scaled by its count of images (the cost model of :func:`images_per_unit`, :func:`images_per_chunk`).
    Returns (the units' part, the chunks' part)."""
    def ratio(count):
        return count(stage, full) / max(count(stage, reduced), 1e-9)

    chunks = math.ceil(units / chunk)
    unit_part = per_unit * ratio(images_per_unit) if images_per_unit(stage, reduced) else 0.0
    chunk_part = per_chunk * ratio(images_per_chunk) if images_per_chunk(stage, reduced) else per_chunk
    return units * unit_part, chunks * chunk_part


def time_stages(model, layer: str, settings: GallerySettings, units: int, x: torch.Tensor) -> dict:
    """Seconds of each stage that applies to ``layer`` for channels ``0..units-1`` (one chunk)."""
    with tempfile.TemporaryDirectory() as root:
        work = Work(model, settings, Path(root), tuple(x.shape[1:]))
        work.__dict__["photos"] = (x, [f"image {i}" for i in range(len(x))])  # random images, no files
        work.__dict__["lesion_set"] = (x[:LESION_IMAGES], None, None)
        work.view(layer)  # the layer's survey: once per build, not a stage
        start = time.perf_counter()
        work.top_exemplars(layer, list(range(units)))  # one pass over the exemplars, cached for the chunk's stages
        seconds = {"ranking": time.perf_counter() - start}
        for stage, (run, applies) in STAGES.items():
            if applies(work, layer):
                start = time.perf_counter()
                run(work, layer, list(range(units)))
                seconds[stage] = time.perf_counter() - start
    return seconds


def cpu_flops_per_second(model, x: torch.Tensor) -> tuple[float, float]:
    """(FLOPs of one image's forward + backward, FLOP/s this CPU sustains on them at batch ``len(x)``)."""
    from torch.utils.flop_counter import FlopCounterMode

    image = x[:1].clone().requires_grad_()
    with FlopCounterMode(display=False) as counter:
        model(image).sum().backward()
    flops = counter.get_total_flops()
    batch = x.clone().requires_grad_()
    model(batch).sum().backward()  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        model(batch).sum().backward()
        best = min(best, time.perf_counter() - start)
    return flops, flops * len(x) / best


def measure(name: str, images: int, chunk: int) -> None:
    zoo_name, layers = MODELS[name]
    model = insilico.models.load(zoo_name, weights=None).eval()
    shape = tuple(model.input_size)
    torch.manual_seed(0)
    x = torch.rand(N_IMAGES, *shape)
    flops, rate = cpu_flops_per_second(model, x)
    print(f"\n{name}: {zoo_name}, input {shape}; one image forward+backward {flops / 1e9:.1f} GFLOP; this CPU "
          f"sustains {rate / 1e9:.1f} GFLOP/s; GPU factor {GPU_FLOPS / rate:,.0f}x "
          f"(assumed {GPU_FLOPS / 1e12:.1f} TFLOP/s)")
    total = 0.0
    for layer, units in layers.items():
        total += measure_layer(model, layer, units, x, images, chunk, rate)
    if len(layers) > 1:
        print(f"{name} all layers: CPU {total / 3600:.1f} h, GPU {total * rate / GPU_FLOPS / 60:.1f} min (estimate)")


def measure_layer(model, layer: str, units: int, x: torch.Tensor, images: int, chunk: int, rate: float) -> float:
    """Print one layer's table; its CPU seconds at full settings."""
    settings = GallerySettings(**REDUCED, chunk=UNITS_HIGH)
    runs = {u: [time_stages(model, layer, settings, u, x) for _ in range(REPEATS)] for u in (1, UNITS_HIGH)}
    low, high = ({k: min(r[k] for r in runs[u]) for k in runs[u][0]} for u in (1, UNITS_HIGH))
    reduced = REDUCED | {"n_images": N_IMAGES, "lesion_images": LESION_IMAGES}
    full = FULL | {"n_images": images, "lesion_images": 16 * FULL["lesion_per_class"]}
    print(f"{layer}: {units} units")
    print(f"{'stage':<10} {'1 unit s':>9} {f'{UNITS_HIGH} units s':>10} {'per unit s':>11} {'per chunk s':>12} "
          f"{'layer CPU h':>12} {'(units':>7} {'chunks)':>8} {'layer GPU min':>14}")
    total = 0.0
    for stage in low:
        per_unit = max(high[stage] - low[stage], 0.0) / (UNITS_HIGH - 1)
        per_chunk = max(low[stage] - per_unit, 0.0)
        if not images_per_unit(stage, REDUCED | {"lesion_images": 1}):  # a pass shared by the chunk: no unit part
            per_unit, per_chunk = 0.0, (low[stage] + high[stage]) / 2
        unit_part, chunk_part = scale(stage, per_unit, per_chunk, reduced, full, units, chunk)
        cpu = unit_part + chunk_part
        total += cpu
        print(f"{stage:<10} {low[stage]:9.1f} {high[stage]:10.1f} {per_unit:11.2f} {per_chunk:12.2f} "
              f"{cpu / 3600:12.1f} {unit_part / 3600:7.1f} {chunk_part / 3600:8.1f} "
              f"{cpu * rate / GPU_FLOPS / 60:14.1f}")
    print(f"{'all':<10} {'':9} {'':10} {'':11} {'':12} {total / 3600:12.1f} {'':7} {'':8} "
          f"{total * rate / GPU_FLOPS / 60:14.1f}")
    return total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=int, default=10_000, help="exemplar images of the full gallery")
    parser.add_argument("--chunk", type=int, default=256, help="units per chunk of the full gallery")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    print(f"reduced settings {REDUCED}, {N_IMAGES} exemplar and {LESION_IMAGES} lesion images")
    print(f"full settings {FULL}, {args.images} exemplar images, {16 * FULL['lesion_per_class']} lesion images, "
          f"chunks of {args.chunk} units")
    for name in args.models:
        measure(name, args.images, args.chunk)


if __name__ == "__main__":
    main()
