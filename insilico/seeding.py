"""Randomness that stays the user's: every tool draws from generators of its own.

No insilico tool reads or changes torch's (CPU or CUDA), numpy's or Python's
global random state: a seeded script gives the same numbers after a tool call
as without it. Tools take ``seed=``; ``seed=None`` means fresh entropy from
the operating system (:func:`fresh_seed`, via :mod:`secrets`), never a draw
from, or a re-seeding of, the global generators (``torch.seed()`` re-seeds
torch's global generator).

- :func:`generator`: a ``torch.Generator`` on a device, seeded (``None``: fresh).
- :func:`derive_seed`: a sample's seed from a run's ``seed`` and the sample's
  key (its index, label or :func:`content_key`), so a sample's random draws do
  not depend on its batch companions, its position or the batch size.
- :func:`keep_global_rng`: for code that must draw from torch's global
  generator (a module's random init before its weights are loaded, training):
  the caller's state is put back afterwards.
- :func:`content_key`: a digest of each image's bytes, the key for tools that
  start from a user's images (PGD's random start, MAD's start noise,
  SmoothGrad's noise): an image gets the same noise alone, in any batch, at
  any position and in any chunk of a sharded run.

Example
-------
>>> import torch
>>> state = torch.get_rng_state()
>>> g = generator(None)                      # fresh entropy, the global state untouched
>>> torch.equal(state, torch.get_rng_state())
True
>>> x = torch.rand(3, 1, 2, 2, generator=generator(0))
>>> content_key(x)[1] == content_key(x[1:2])[0] != content_key(x)[0]
True
"""
from __future__ import annotations

import contextlib
import hashlib
import numbers
import secrets
from typing import Iterator

import torch

from .errors import InsilicoError


def fresh_seed() -> int:
    """A seed from the operating system's entropy (62 bits); the global generators are not touched.

    Example
    -------
    >>> 0 <= fresh_seed() < 2**62
    True
    """
    return secrets.randbits(62)


def generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: :func:`fresh_seed`).

    Example
    -------
    >>> a = torch.rand(2, generator=generator(3)); b = torch.rand(2, generator=generator(3))
    >>> torch.equal(a, b)
    True
    """
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) if seed is not None else fresh_seed())
    return g


@contextlib.contextmanager
def keep_global_rng() -> Iterator[None]:
    """Torch's global generators (CPU, and CUDA once initialised) are as they were after the block.

    Example
    -------
    >>> state = torch.get_rng_state()
    >>> with keep_global_rng():
    ...     layer = torch.nn.Linear(3, 2)          # its init draws from the global generator
    >>> torch.equal(state, torch.get_rng_state())
    True
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        yield


def run_seed(seed: int | None, out=None) -> int:
    """A run's seed: ``seed`` itself, or fresh entropy from the OS for ``None`` (:func:`fresh_seed`; the global
    generators are never read). A resumable ``out=`` job needs a fixed seed, so ``seed=None`` with ``out``
    is refused: a rerun would draw another seed and the folder's identity would refuse it.

    Raises
    ------
    InsilicoError
        ``seed`` is not an int (or None), or is None with ``out``.

    Example
    -------
    >>> run_seed(7), isinstance(run_seed(None), int)
    (7, True)
    """
    if seed is None:
        if out is not None:
            raise InsilicoError("seed=None draws a fresh seed on every run, so an out= folder could never be "
                                "resumed: pass seed=<int> with out=")
        return fresh_seed()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InsilicoError(f"seed must be an int (or None for fresh entropy), not {seed!r}")
    return int(seed)


def derive_seed(seed: int, key: int | str) -> int:
    """A sample's seed from a run's ``seed`` and the sample's index or label (stable across runs and machines).

    Example
    -------
    >>> derive_seed(0, "features.3[5]") == derive_seed(0, "features.3[5]") != derive_seed(1, "features.3[5]")
    True
    """
    digest = hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 62) - 1)


def content_key(images: torch.Tensor) -> list[str]:
    """One short hex digest (16 characters) per image of ``images`` (N, ...), from its dtype, shape and bytes."""
    flat = images.detach().cpu().contiguous()
    keys = []
    for image in flat:
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{image.dtype}|{tuple(image.shape)}|".encode())
        digest.update(image.numpy().tobytes() if image.dtype != torch.bfloat16 else image.float().numpy().tobytes())
        keys.append(digest.hexdigest())
    return keys


__all__ = ["content_key", "derive_seed", "fresh_seed", "generator", "keep_global_rng"]
