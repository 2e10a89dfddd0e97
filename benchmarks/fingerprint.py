"""What a job identity costs: fingerprinting a ResNet-50 and hashing 10,000 stimuli, against the job itself.

    python benchmarks/fingerprint.py [--stimuli 10000] [--size 224] [--batch 16] [--device cpu] [--threads 2]

Prints, for torchvision ResNet-50 (random weights; 25.6 M parameters, 100 MB in float32):

- ``model fingerprint``: :func:`insilico.identity.model_fingerprint` (every parameter and buffer,
  copied to the CPU and hashed), best of ``--repeats``;
- ``stimulus digests``: :func:`insilico.identity.digest` of ``--stimuli`` stimuli of 3 x size x size
  float32 in batches of 64 (what a recording stores per batch, and what a resume reads again for the
  recorded ranges). One batch buffer is hashed stimuli/64 times over, so 10,000 stimuli at 224 px
  (6 GB) need only 38 MB of memory; hashing reads every byte either way;
- ``job``: the ResNet-50 forward pass (no grad) of ``--batch`` stimuli, extrapolated to ``--stimuli``
  (the cheapest job over them: a recording; pgd, metamers and maximize run tens to thousands of forward
  and backward passes per stimulus);
- the ratios fingerprint / job and digests / job; then ``record_stimuli(out=)`` of ``--record``
  stimuli, and the same call again on the complete folder (fingerprint, one survey pass, every
  stimulus re-read and re-hashed, nothing recorded): the price of a refused or resumed job.

Timings on a shared machine vary from run to run; the ratios are what to read. Measured on 2 CPU
cores shared with other jobs (load 4-7), no GPU (2026-12-04):

    model fingerprint       0.04 s  (0.05-0.49 s over three runs under varying load)
    stimulus digests        1.5 s   (4.1 GB/s, two threads; 2.8-23.5 s on one busy core)
    job (forward)           711 s   (71 ms per stimulus; 3,110-11,570 s under heavier load)
    ratio (fingerprint + digests) / job   0.0021   (0.0009-0.0021 over the runs)
    rerun of a complete 32-stimulus folder: 0.11 s vs 1.65 s to record it (ratio 0.07)

On a GPU the digests run on the CPU while the accelerator computes each batch (a recording hashes a
batch after launching its forward pass), in up to 16 threads; this was not measured here.
"""
import argparse
import os
import tempfile
import time

import torch
import torchvision

from insilico import Probe
from insilico.identity import digest, model_fingerprint

from _threads import limit_threads
from _timing import best_of


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16, help="stimuli per timed forward pass")
    parser.add_argument("--record", type=int, default=32, help="stimuli of the record_stimuli overhead run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    limit_threads(args.threads)

    model = torchvision.models.resnet50().eval().to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    fingerprint, _ = best_of(lambda: model_fingerprint(model), args.repeats)

    chunk = torch.rand(64, 3, args.size, args.size)
    n_chunks = -(-args.stimuli // 64)
    per_chunk, _ = best_of(lambda: digest(chunk), args.repeats)
    digests = per_chunk * n_chunks

    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    with torch.no_grad():
        model(x)  # warm-up
        forward, _ = best_of(lambda: (model(x), torch.cuda.synchronize() if x.is_cuda else None), args.repeats)
    job = forward / args.batch * args.stimuli

    stimuli = torch.rand(args.record, 3, args.size, args.size)
    probe = Probe(model)
    options = dict(batch_size=16, reduce="mean", progress=False)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        probe.record_stimuli(stimuli, ["layer4"], out=folder, **options)
        record = time.perf_counter() - start
        start = time.perf_counter()  # a complete folder asked again: fingerprint, re-read and re-hash, no forward
        probe.record_stimuli(stimuli, ["layer4"], out=folder, **options)
        rerun = time.perf_counter() - start
    mb = args.stimuli * 3 * args.size ** 2 * 4 / 1e6
    print(f"ResNet-50 ({n_params / 1e6:.1f} M parameters), {args.stimuli} stimuli of 3x{args.size}x{args.size} "
          f"float32 ({mb / 1e3:.1f} GB), device {args.device}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPU cores (digest threads: up to 16)")
    print(f"model fingerprint          {fingerprint:8.3f} s")
    print(f"stimulus digests           {digests:8.3f} s  ({mb / digests / 1e3:.2f} GB/s)")
    print(f"job (forward, extrapolated) {job:7.1f} s  ({forward / args.batch * 1e3:.1f} ms per stimulus)")
    print(f"ratio fingerprint / job    {fingerprint / job:8.4f}")
    print(f"ratio digests / job        {digests / job:8.4f}")
    print(f"ratio (fingerprint + digests) / job {(fingerprint + digests) / job:.4f}")
    print(f"record_stimuli(out=) of {args.record} stimuli {record:.2f} s; the same call again on the complete folder "
          f"(identity checked, nothing recorded) {rerun:.2f} s (ratio {rerun / record:.4f})")

if __name__ == "__main__":
    main()
