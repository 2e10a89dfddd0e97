"""Per-sample seeds that depend on the sample itself, never on its batch companions or its position.

:func:`insilico.synthesis.derive_seed` makes a sample's seed from the run's
``seed`` and a key. Syntheses whose samples are units or class pairs use their
label as the key; syntheses that start from a user's images (PGD's random
start, MAD's start noise) use :func:`content_key`, a digest of the image's
bytes, so an image gets the same random start alone, in any batch, at any
position and in any chunk of a sharded run. Both live in
:mod:`insilico.seeding` (a foundation: gradient maps and lesions use them too).

Example
-------
>>> import torch
>>> x = torch.rand(3, 1, 2, 2)
>>> content_key(x)[1] == content_key(x[1:2])[0] != content_key(x)[0]
True
"""
from __future__ import annotations

from ..seeding import content_key, derive_seed

__all__ = ["content_key", "derive_seed"]
