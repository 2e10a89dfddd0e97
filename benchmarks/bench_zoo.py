"""The zoo harness on a larger sample: the smallest model of every timm family (issue 25, item 7).

    python benchmarks/bench_zoo.py [--limit 30] [--families vit resnet ...] [--size 64] [--timeout 300] [--threads 1]

The harness of tests/models/test_zoo.py (tests/zoo_checks.py: record, lesion, heads, gradient maps,
Grad-CAM, maximize, tuning, each against a hand reference) on random-weight timm models: for every
family (a timm module, in alphabetical order, the first ``--limit``), the model with the fewest
parameters (counted on the meta device, nothing downloaded; timm's own ``test_*`` models first, big
variants left out by name). A model is built at ``--size`` px when it
takes that size (``img_size=`` for the transformers), else at its own input size. The layer is the
middle one with a grid (the layer chooser), the attention module the first with a ``:weights`` part.

Prints one row per model (the checks' verdicts: ``.`` passed, ``R`` refused with an InsilicoError,
``F`` failed: a wrong answer or a crash, ``-`` not applicable) and a tally: checks x passed / refused /
failed, with the first line of each refusal and failure. No timing is asserted anywhere.
"""
import argparse
import collections
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _threads import limit_threads  # noqa: E402
from zoo_checks import CHECKS, subject, verdict  # noqa: E402

SKIP_MODULES = {"_builder", "_registry", "_helpers", "_features", "_manipulate", "_efficientnet_blocks",
                "_efficientnet_builder", "_hub", "_pretrained", "_factory", "_features_fx", "_prune"}


BIG = ("large", "huge", "giant", "gigantic", "xlarge", "base", "medium", "_big", "plus", "448", "384", "512")


def families(timm, only=None) -> list[str]:
    """The timm modules that define models, alphabetically (``only``: these)."""
    modules = sorted(m for m in timm.list_modules() if m not in SKIP_MODULES and timm.list_models(module=m))
    return [m for m in modules if only is None or m in set(only)]


def smallest(timm, module: str) -> str | None:
    """The model of a timm module with the fewest parameters, counted on the meta device (nothing is
    downloaded or initialised); timm's own ``test_*`` models first, names of big variants left out."""
    names = timm.list_models(module=module)
    candidates = [n for n in names if n.startswith("test_")] or \
        [n for n in names if not any(word in n for word in BIG)] or names
    best = None
    for name in candidates:
        try:
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False)
        except Exception:  # noqa: BLE001 - a model that cannot be built on meta is not a candidate
            continue
        count = sum(p.numel() for p in model.parameters())
        if best is None or count < best[0]:
            best = (count, name)
    return None if best is None else best[1]


def build(timm, name, size):
    """The model at ``size`` px when it takes it, else at its own input size; ``(model, side)``."""
    for kwargs in ({"img_size": size}, {}):
        try:
            model = timm.create_model(name, pretrained=False, **kwargs).eval()
        except Exception:  # noqa: BLE001 - no img_size= (a conv net) or a size it refuses
            continue
        for side in (size, model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]):
            try:
                with torch.no_grad():
                    model(torch.rand(1, 3, side, side))
                return model, side
            except Exception:  # noqa: BLE001 - a fixed-size model
                continue
    raise RuntimeError(f"{name} runs at neither {size} px nor its own size")


class Timeout(BaseException):
    """A model past ``--timeout`` (a BaseException, so that no check's verdict takes it for its own failure)."""


def _alarm(*_):
    raise Timeout("took longer than --timeout")


def run_model(timm, family, name, args):
    """The verdicts of one model: ``{check: (status, detail)}``."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(args.timeout)
    results, side = {}, None
    try:
        torch.manual_seed(0)
        model, side = build(timm, name, args.size)
        s = subject(f"timm:{name}", model, side)
        for check, fn in CHECKS.items():
            results[check] = ("n/a", "") if check == "heads" and s.attention is None else verdict(fn, s)
    except Timeout:
        results.update({c: ("failed", f"timeout ({args.timeout} s)") for c in CHECKS if c not in results})
    except Exception as error:  # noqa: BLE001 - the model could not be prepared: every check failed
        status = ("failed", f"setup: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        results = {check: status for check in CHECKS}
    finally:
        signal.alarm(0)
    return side, results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many families")
    parser.add_argument("--families", nargs="*", default=None, help="only these timm modules (e.g. vit resnet)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    import timm

    tally = {check: collections.Counter() for check in CHECKS}
    notes = collections.defaultdict(list)
    sample = []
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"{'family':<22} {'model':<34} {'px':>4}  " + " ".join(c[:4] for c in CHECKS) + "  s")
    try:
        run_sample(timm, args, tally, notes, sample)
    except KeyboardInterrupt:  # a long run stopped by hand (or SIGTERM) still prints its tally
        print("stopped: the tally of the models run so far")
    report(tally, notes, sample)


def run_sample(timm, args, tally, notes, sample) -> None:
    marks = {"passed": ".", "refused": "R", "failed": "F", "n/a": "-"}
    for family in families(timm, args.families):
        if args.limit is not None and len(sample) >= args.limit:
            break
        start = time.perf_counter()
        name = smallest(timm, family)
        if name is None:
            continue
        side, results = run_model(timm, family, name, args)
        sample.append(name)
        for check, (status, detail) in results.items():
            tally[check][status] += 1
            if status != "passed" and detail:
                notes[check].append(f"{name}: {detail[:160]}")
        row = " ".join(f"{marks[results[c][0]]:<4}" for c in CHECKS)
        print(f"{family:<22} {name:<34} {side or '?':>4}  {row}  {time.perf_counter() - start:.0f}", flush=True)


def report(tally, notes, sample) -> None:
    print(f"\n{len(sample)} models (the smallest of each timm family), checks x verdicts:")
    print(f"{'check':<10} {'passed':>7} {'refused':>8} {'failed':>7} {'n/a':>5}")
    for check, counts in tally.items():
        print(f"{check:<10} {counts['passed']:>7} {counts['refused']:>8} {counts['failed']:>7} {counts['n/a']:>5}")
    for check, lines in notes.items():
        print(f"\n{check}:")
        for line in lines:
            print(f"  {line}")


if __name__ == "__main__":
    main()
