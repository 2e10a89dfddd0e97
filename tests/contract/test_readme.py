"""Every ```python block of README.md runs on its own, as written.

Each block is self-contained (its imports and model inside it): it runs in a fresh namespace in an
empty folder, so a block that leans on an earlier one fails here as it would for a reader. The
shapes the README prints in comments (``x.shape   # (16, 14, 14)``) are checked too. To keep the
suite fast the blocks run *sized down*: the optimisation lengths written in the README
(``steps=N``, ``iterations=N``) and stimulus sets (``per_class=N``, ``n_stimuli=N``) are cut to
:data:`QUICK`, the one edit; the rest runs verbatim (about 50 s for the whole file on 2 CPU cores).
``INSILICO_README_FULL=1`` runs them exactly as written, each in a new interpreter (minutes: each
block says how long it takes on a laptop CPU). A block that downloads pretrained weights runs with
random ones when none are in the torch hub cache (no internet in CI).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FULL = os.environ.get("INSILICO_README_FULL") == "1"
#: Optimisation lengths of the sized-down run.
QUICK = {"steps": 2, "iterations": 4, "per_class": 1, "n_stimuli": 200}


def blocks() -> list[tuple[str, str]]:
    """(heading of the section, code) of every ```python block, in README order."""
    found, heading = [], "top"
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("# ").strip()
        if lines[i].strip() == "```python":
            j = lines.index("```", i + 1)
            found.append((heading, "\n".join(lines[i + 1: j]) + "\n"))
            i = j
        i += 1
    return found


def sized_down(code: str) -> str:
    """``code`` with every ``steps=N``, ``iterations=N``, ``per_class=N``, ``n_stimuli=N`` cut to :data:`QUICK`
    (unless FULL)."""
    if FULL:
        return code
    return re.sub(r"\b(steps|iterations|per_class|n_stimuli)=(\d+)", lambda m: f"{m[1]}={min(int(m[2]), QUICK[m[1]])}", code)


def with_shape_checks(code: str) -> str:
    """A line ``EXPR.shape   # (a, b, c)...`` also asserts that the shape is what the comment says."""
    def check(m):
        return f"{m[0]}\nassert tuple({m[1]}.shape) == {m[2]}, ({m[1]!r}, tuple({m[1]}.shape))"

    return re.sub(r"^(\S[^#\n]*?)\.shape\s+# (\([\d, ]+\))[^\n]*$", check, code, flags=re.M)


def needs_download(code: str) -> bool:
    """The block asks torchvision for pretrained weights and none are cached here."""
    if not re.search(r"weights=[\"'](DEFAULT|IMAGENET)", code):
        return False
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return not (checkpoints.is_dir() and any(checkpoints.iterdir()))


BLOCKS = blocks()


def test_the_readme_blocks_are_found_and_shapes_are_checked():
    headings = [h for h, _ in BLOCKS]
    assert len(BLOCKS) >= 5 and "A tour" in headings and "Designing stimuli with gradients" in headings
    tour = with_shape_checks(dict(BLOCKS)["A tour"])
    assert tour.count("assert tuple(") >= 3  # rec[...] (16, 14, 14), rec.steps (16, 4, 16), recording (36, 48)
    assert sized_down("f(steps=256, iterations=64, k=9)") == "f(steps=2, iterations=4, k=9)" or FULL


@pytest.mark.parametrize("heading,code", BLOCKS, ids=[re.sub(r"\W+", "-", h)[:30].strip("-") for h, _ in BLOCKS])
def test_block_runs_on_its_own(heading, code, tmp_path, monkeypatch):
    assert re.search(r"# about .+ on a laptop CPU", code), (
        f"the block under {heading!r} does not say how long it takes (a '# about ... on a laptop CPU' comment)")
    if re.search(r"^import .*\btorchvision\b", code, re.M):
        pytest.importorskip("torchvision")
    if needs_download(code):  # no internet here: the same block with random weights
        code = re.sub(r"weights=[\"'](DEFAULT|IMAGENET[\w.]*)[\"']", "weights=None", code)
    code = with_shape_checks(sized_down(code))
    monkeypatch.chdir(tmp_path)
    if FULL:  # a new interpreter, exactly as a reader runs it
        env = dict(os.environ, MPLBACKEND="Agg",
                   PYTHONPATH=os.pathsep.join([str(README.parent), os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"the README block under {heading!r} fails on its own:\n{done.stderr[-3000:]}"
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        exec(compile(code, f"README.md ({heading})", "exec"), {"__name__": "__main__"})
    finally:
        plt.close("all")
