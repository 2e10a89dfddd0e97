"""Per-sample seeds that depend on the sample itself, never on its batch companions or its position.

:func:`insilico.synthesis.derive_seed` makes a sample's seed from the run's
``seed`` and a key. Syntheses whose samples are units or class pairs use their
label as the key; syntheses that start from a user's images (PGD's random
start, MAD's start noise) use :func:`content_key`, a digest of the image's
bytes, so an image gets the same random start alone, in any batch, at any
position and in any chunk of a sharded run.

Example
-------
>>> import torch
>>> x = torch.rand(3, 1, 2, 2)
>>> content_key(x)[1] == content_key(x[1:2])[0] != content_key(x)[0]
True
"""
from __future__ import annotations

import hashlib

import torch


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


__all__ = ["content_key"]
