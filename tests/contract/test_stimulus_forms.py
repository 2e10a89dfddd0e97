"""Every tool that takes a stimulus set takes every form of one (issue 26, item 1): a folder of images (the
ImageFolder layout), a glob, a list of paths, a torch Dataset of images or of (image, label) pairs, and a tensor,
all through the one reader (:func:`insilico.recording.stimulus_source`). Each tool gives, for every form, what it
gives for the tensor of the same pixels (the files fitted to the model's input by hand, in the files' order)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import torch
from torch import nn

import insilico
from insilico.attribution import top_exemplars
from insilico.behaviour.confusion import confusion
from insilico.behaviour.psychometric import psychometric
from insilico.behaviour.reaction_times import reaction_times
from insilico.encoding import fit_predictor
from insilico.experiments import cumulative_lesion, lesion_sweep, microstimulation
from insilico.recording import stimulus_source
from insilico.rsa.models import model_rdms

# files of several sizes: each form must fit them to the model's 12 x 12 input, none may read them as they are
SHAPES = {"cat/a.png": (12, 20), "cat/b.png": (16, 16), "cat/e.png": (14, 17), "dog/c.png": (30, 12),
          "dog/d.png": (12, 12), "dog/f.png": (13, 12)}
LABELS = [0, 0, 0, 1, 1, 1]  # the folder's classes in file order (cat, dog)


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model.input_size = (3, 12, 12)
    return model.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("forms") / "set"
    rng = np.random.default_rng(0)
    for name, (h, w) in SHAPES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        skimage.io.imsave(root / name, rng.integers(0, 256, (h, w, 3)).astype(np.uint8), check_contrast=False)
    return root


class _Pairs(torch.utils.data.Dataset):
    """A Dataset of ``(image, label)`` pairs (no ``targets``), or of images alone."""

    def __init__(self, images, labels=None):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i] if self.labels is None else (self.images[i], self.labels[i])


def _forms(root) -> dict:
    root = Path(root)
    pixels = stimulus_source(root, model=_model()).batch(0, len(SHAPES), None, None)
    return {"folder": str(root), "glob": str(root / "*" / "*.png"),
            "paths": [root / name for name in sorted(SHAPES)], "dataset": _Pairs(pixels),
            "pairs": _Pairs(pixels, LABELS), "tensor": pixels}


def _record(s):
    return insilico.Probe(_model()).record_stimuli(s, ["0", "4"], batch_size=4, progress=False)["0"]


def _exemplars(s):
    ex = top_exemplars(_model(), s, "0[1]", k=3, batch_size=4, progress=False)
    return torch.cat([ex.indices.double(), ex.activations.double()])


def _lesion(s):
    return lesion_sweep(_model(), "0", s, LABELS, batch_size=4, n_boot=10, progress=False).accuracy


def _cumulative(s):
    return cumulative_lesion(_model(), "0", s, LABELS, n_points=2, n_random=1, batch_size=4,
                             progress=False).accuracy_most


def _microstimulation(s):
    return microstimulation(_model(), "0[1]", s, strengths=[0, 2], labels=LABELS, batch_size=4,
                            progress=False).probabilities


def _predictor(s):
    responses = np.random.default_rng(1).normal(size=(len(SHAPES), 3))
    predictor = fit_predictor(_model(), s, responses, "2", reduce="mean", held_out=0, batch_size=4, progress=False)
    with torch.no_grad():  # the readout's predictions for fixed images: the same features, the same fit
        return predictor(torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0)))


def _rdm(s):
    return model_rdms(_model(), s, units=["2"], batch_size=4, progress=False)["2"].vector


def _psychometric(s):
    return psychometric(_model(), s, LABELS, levels=[0.1, 0.5, 1.0], batch_size=4, n_boot=5, progress=False).accuracy


class _Steps(nn.Module):
    """A 'recurrent' classifier: its readout is called at 3 steps on growing evidence (reaction times)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.readout, self.input_size = nn.Conv2d(3, 4, 3), nn.Linear(4, 2), (3, 12, 12)

    def forward(self, x):
        evidence = torch.relu(self.conv(x)).mean((2, 3))
        return [self.readout(evidence * (t + 1)) for t in range(3)][-1]


def _reaction_times(s):
    return reaction_times(_Steps().eval(), s, LABELS, batch_size=4, progress=False).probabilities


def _confusion(s):
    return confusion(_model(), s, LABELS, batch_size=4, n_boot=10, progress=False).counts


TOOLS = {"record_stimuli": _record, "top_exemplars": _exemplars, "lesion_sweep": _lesion,
         "cumulative_lesion": _cumulative, "microstimulation": _microstimulation, "fit_predictor": _predictor,
         "model_rdms": _rdm, "confusion": _confusion, "psychometric": _psychometric,
         "reaction_times": _reaction_times}
FORMS = ("folder", "glob", "paths", "dataset", "pairs")


@functools.lru_cache(maxsize=None)
def _reference(tool: str, root: str):
    return np.asarray(TOOLS[tool](_forms(root)["tensor"]), dtype=float)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_tool_takes_every_form_of_a_stimulus_set(tool, form, folder):
    got = np.asarray(TOOLS[tool](_forms(folder)[form]), dtype=float)
    want = _reference(tool, str(folder))
    assert got.shape == want.shape and got.size > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_the_model_rdms_of_a_folder_find_their_layers_without_units(folder):
    forms = _forms(folder)
    from_files = model_rdms(_model(), forms["folder"], progress=False)
    from_tensor = model_rdms(_model(), forms["tensor"], progress=False)
    assert list(from_files) == list(from_tensor) and len(from_files) >= 2
    for name in from_files:
        np.testing.assert_allclose(from_files[name].vector, from_tensor[name].vector, rtol=1e-5, atol=1e-6)
