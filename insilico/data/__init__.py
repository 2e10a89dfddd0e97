"""Neural data: loading recorded responses and RDMs, and the data sets shipped with insilico.

Files are read with NumPy (``.npy``, ``.npz``) or scipy.io (``.mat``, MATLAB
v5/v7; v7.3 files are HDF5: open them with h5py and pass the arrays) into the
containers the rest of insilico uses: a :class:`~insilico.Recording` of
responses (one "unit" per variable: a brain region, an electrode array) or
:class:`~insilico.rsa.RDM` objects.

Shipped data (no download):

- :func:`kriegeskorte2008`: the 92 object images with human IT (4 subjects x 2
  sessions, fMRI) and monkey IT (674 neurons) RDMs of Kriegeskorte et al. (2008),
  MIT licence via rsatoolbox; see ``kriegeskorte2008/README.md``.

Examples
--------
>>> from insilico import data
>>> d = data.kriegeskorte2008(size=64)
>>> tuple(d.images.shape), d.monkey_it.n, len(d.human_it_sessions), len(d.human_it_sessions[0])
((92, 3, 64, 64), 92, 4, 2)
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InsilicoError

DATA_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass
class Kriegeskorte2008:
    """The 92-image data set (see :func:`kriegeskorte2008`).

    Attributes
    ----------
    images : tensor (92, 3, size, size)
        Pixel space, float32 in [0, 1], on the original grey background.
    categories : list of str
        One of "human bodypart", "human face", "nonhuman bodypart", "nonhuman face",
        "natural inanimate", "artificial inanimate" per image.
    animate : ndarray of bool (92,)
        Animate (first 48) versus inanimate (last 44).
    flags : dict of str -> ndarray (92,)
        The 12 category vectors of the original (animate, inanim, human, nonhumani,
        body, face, natObj, artiObj, rand24, rand48, other48, monkeyape).
    monkey_it : RDM
        Monkey IT, 674 neurons (Kiani et al. 2007), as in Fig. 1 of the paper.
    human_it : RDM
        Human IT (316 voxels), the group average of Fig. 1.
    human_it_sessions : list of 4 lists of 2 RDM
        Human IT per subject (BE, KO, SN, TI) and session.
    """

    images: torch.Tensor
    categories: list
    animate: np.ndarray
    flags: dict
    monkey_it: object
    human_it: object
    human_it_sessions: list

    @property
    def subjects(self) -> list[str]:
        return [s[0].name.split("|")[1].strip() for s in self.human_it_sessions]

    def __repr__(self) -> str:  # a summary, not every array
        return (f"Kriegeskorte2008({len(self.images)} images {tuple(self.images.shape[1:])}, "
                f"{len(set(self.categories))} categories, {int(self.animate.sum())} animate; RDMs: monkey_it, "
                f"human_it, human_it_sessions ({len(self.human_it_sessions)} subjects x "
                f"{len(self.human_it_sessions[0]) if self.human_it_sessions else 0} sessions))")

    def human_it_subjects(self) -> list:
        """Four RDMs, one per subject, each the mean of its two sessions (for noise ceilings)."""
        from ..rsa import RDM

        return [RDM((a.vector + b.vector) / 2, a.labels, a.method, f"hIT {name}")
                for (a, b), name in zip(self.human_it_sessions, self.subjects)]


def kriegeskorte2008(size: int = 64) -> Kriegeskorte2008:
    """The 92 object images with human and monkey IT RDMs (Kriegeskorte et al. 2008), offline.

    Parameters
    ----------
    size : int
        The images (175 x 175) are resized (bilinear, anti-aliased) to ``size x size``
        (64 for the bundled models; 224 for ImageNet networks).

    Returns
    -------
    Kriegeskorte2008

    Examples
    --------
    >>> d = kriegeskorte2008(32)
    >>> d.categories[0], int(d.animate.sum()), round(float(d.images.max()), 2) <= 1.0
    ('human bodypart', 48, True)
    >>> d.subjects
    ['BE', 'KO', 'SN', 'TI']
    """
    from ..rsa import RDM

    if int(size) < 8:
        raise InsilicoError(f"size must be at least 8 pixels, not {size}")
    raw = _raw_kriegeskorte()
    images = torch.from_numpy(_resized(raw["images"], int(size)))
    categories = list(raw["categories"])
    fig1 = {r.name: np.asarray(r.RDM, dtype=np.float64) for r in raw["fig1"]}
    monkey = RDM(torch.from_numpy(fig1["mIT_674neurons"]), categories, "correlation", "mIT")
    human = RDM(torch.from_numpy(fig1["hITvisStim_316vx"]), categories, "correlation", "hIT")
    sessions = [[RDM.from_matrix(np.asarray(r.RDM, dtype=np.float64), categories, "correlation", r.name, check=False)
                 for r in row] for row in raw["sessions"]]
    flags = {str(k): np.asarray(v, dtype=bool) for k, v in zip(raw["flag_names"], raw["flags"].T)}
    return Kriegeskorte2008(images, categories, np.array(raw["animate"], dtype=bool), flags, monkey, human, sessions)


@functools.lru_cache(maxsize=1)
def _raw_kriegeskorte() -> dict:
    from scipy.io import loadmat

    folder = DATA_DIR / "kriegeskorte2008"
    paths = [folder / "Kriegeskorte_Neuron2008_supplementalData.mat", folder / "92_brainRDMs.mat"]
    for p in paths:
        if not p.exists():
            raise InsilicoError(f"{p} is missing: the package data were not installed; reinstall insilico")
    sup = loadmat(paths[0], squeeze_me=True, struct_as_record=False)
    brain = loadmat(paths[1], squeeze_me=True, struct_as_record=False)
    stim = sup["stimuli_92objs"]
    return dict(
        images=np.stack([s.image for s in stim]),
        categories=[str(s.category) for s in stim],
        animate=[bool(s.animal) for s in stim],
        fig1=list(sup["RDMs_mIT_hIT_fig1"]),
        flags=np.asarray(sup["categoryVectors"]),
        flag_names=[str(n) for n in sup["categoryLabels"]],
        sessions=[list(row) for row in np.asarray(brain["RDMs"]).reshape(4, 2)],
    )


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:  # bilinear with an antialiasing filter when shrinking
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).contiguous().numpy()


# ---------------------------------------------------------------------------------------
# Loading the user's data
# ---------------------------------------------------------------------------------------
def load_responses(path: str | os.PathLike, keys: Sequence[str] | None = None, ids: Sequence | None = None,
                   stimulus_axis: int = 0):
    """Responses from a ``.npy``, ``.npz`` or ``.mat`` file as a :class:`~insilico.Recording`.

    Parameters
    ----------
    path : file
        ``.npy``: one array, stored under the file's stem; ``.npz`` / ``.mat``:
        every numeric array (or ``keys``) becomes a unit of the recording.
    keys : list of str, optional
        The variables to read (default: all numeric arrays with the same number
        of stimuli as the first).
    ids : sequence, optional
        Stimulus labels.
    stimulus_axis : int
        The axis of each array that runs over stimuli (MATLAB users often store
        neurons x stimuli: pass 1); it is moved to the front.

    Returns
    -------
    Recording

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "it.npz")
    >>> np.savez(path, IT=np.ones((10, 5)), V4=np.zeros((10, 7)))
    >>> rec = load_responses(path)
    >>> rec.units, tuple(rec["V4"].shape)
    (['IT', 'V4'], (10, 7))
    """
    from ..recording import Recording

    arrays = _read_arrays(Path(path), keys)
    arrays = {k: np.ascontiguousarray(np.moveaxis(v, stimulus_axis, 0)) for k, v in arrays.items()}
    n = {k: v.shape[0] for k, v in arrays.items()}
    first = next(iter(n.values()))
    if keys is None:
        arrays = {k: v for k, v in arrays.items() if v.shape[0] == first}
    elif len(set(n.values())) > 1:
        raise InsilicoError(f"the arrays hold different numbers of stimuli ({n}); check stimulus_axis= or keys=")
    if ids is not None and len(ids) != first:
        raise InsilicoError(f"{len(ids)} ids for {first} stimuli")
    return Recording(arrays, ids=ids, meta={"source": os.fspath(path)})


def load_rdms(path: str | os.PathLike, key: str | None = None, labels: Sequence | None = None) -> list:
    """RDMs from a file: square matrices or condensed vectors, or MATLAB structs with an ``RDM`` field.

    Parameters
    ----------
    path : ``.npy``, ``.npz`` or ``.mat`` file
    key : str, optional
        The variable to read (default: the only one, or the first holding RDMs).
    labels : sequence, optional
        Stimulus labels.

    Returns
    -------
    list of RDM
        Stacks (k, n, n), (k, n(n-1)/2) and struct arrays give one RDM each, in order.

    Examples
    --------
    >>> rdms = load_rdms(DATA_DIR / "kriegeskorte2008" / "92_brainRDMs.mat")
    >>> len(rdms), rdms[0].n, rdms[0].name
    (8, 92, 'hIT | BE | Session: 1')
    """
    from ..rsa import RDM

    path = Path(path)
    if path.suffix == ".mat":
        from scipy.io import loadmat

        content = {k: v for k, v in loadmat(path, squeeze_me=True, struct_as_record=False).items()
                   if not k.startswith("__")}
    else:
        content = _read_arrays(path, None, numeric_only=False)
    if key is not None:
        if key not in content:
            raise InsilicoError(f"{path} has no variable {key!r}; it holds {', '.join(content)}")
        content = {key: content[key]}
    for name, value in content.items():
        items = np.atleast_1d(np.asarray(value, dtype=object if _is_struct(value) else None)).ravel() \
            if _is_struct(value) else None
        if items is not None and hasattr(items[0], "RDM"):
            return [_to_rdm(np.asarray(s.RDM, dtype=np.float64), labels, str(getattr(s, "name", f"{name} {i}")))
                    for i, s in enumerate(items)]
        arr = np.asarray(value)
        if arr.dtype.kind in "fiu" and arr.ndim in (1, 2, 3):
            if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[0] == arr.shape[1]):
                return [_to_rdm(arr, labels, name)]
            return [_to_rdm(a, labels, f"{name} {i}") for i, a in enumerate(arr)]
    raise InsilicoError(f"found no RDMs in {path}: expected n x n matrices, condensed vectors, or structs with .RDM")


def _to_rdm(a: np.ndarray, labels, name):
    from ..rsa import RDM

    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        return RDM.from_matrix(torch.from_numpy(a), labels, None, name, check=False)
    return RDM(torch.from_numpy(a), labels, None, name)


def _is_struct(value) -> bool:
    first = np.atleast_1d(np.asarray(value, dtype=object)).ravel()[0] if np.size(value) else None
    return hasattr(value, "_fieldnames") or hasattr(first, "_fieldnames")


def _read_arrays(path: Path, keys, numeric_only: bool = True) -> dict:
    if not path.exists():
        raise InsilicoError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        out = {path.stem: np.load(path)}
    elif suffix == ".npz":
        with np.load(path) as f:
            out = {k: f[k] for k in f.files}
    elif suffix == ".mat":
        from scipy.io import loadmat

        try:
            out = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
        except NotImplementedError as e:
            raise InsilicoError(f"{path} is a MATLAB v7.3 (HDF5) file: read it with h5py and pass the arrays") from e
    else:
        raise InsilicoError(f"cannot read {path.suffix or 'extensionless'} files; use .npy, .npz or .mat")
    if keys is not None:
        missing = [k for k in keys if k not in out]
        if missing:
            raise InsilicoError(f"{path} has no variable(s) {missing}; it holds {', '.join(out)}")
        out = {k: out[k] for k in keys}
    if numeric_only:
        out = {k: np.asarray(v) for k, v in out.items()
               if isinstance(v, np.ndarray) and v.dtype.kind in "fiub" and v.ndim >= 1}
        if not out:
            raise InsilicoError(f"{path} holds no numeric arrays")
    return out


__all__ = ["kriegeskorte2008", "Kriegeskorte2008", "load_responses", "load_rdms", "DATA_DIR"]
from .simulated import SimulatedBrain, simulated_brain, simulated_experiment  # noqa: E402,F401
