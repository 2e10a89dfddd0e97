"""The registry of tools for the contract test (tests/test_contract.py), himalaya-style.

One :class:`Tool` per tool: a name, ``run(model, images, samples=None) -> result`` that runs the
tool tiny (16x16 images, 2-3 steps), ``out(result) -> tensor`` that reads the result's per-sample
main output (images, maps, responses), and flags that say which promises apply. A tool added here
is checked by every promise of the contract the day it is registered.

"A sample" is one index along the tool's batch axis: an image for tools that take images, a unit
for ``maximize`` and ``orientation_tuning``, a class pair for ``controversial``. ``samples`` picks
some of them (default: all of ``images``), in that order; ``out(result)[j]`` is sample
``samples[j]``.

Models (:func:`make_model`):

- ``"mixed"``: a small conv net in *mixed mode*, as when fine-tuning with a frozen BatchNorm:
  ``train()`` at the root, the first BatchNorm in eval with a frozen weight, dropout active.
- ``"resnet18"``: torchvision's ResNet-18 (random init, 4 classes) in train mode.

Both have ``input_size = (3, 16, 16)`` and an :class:`Arch` that names the units the tools use.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Callable, Sequence

import torch
from torch import nn

import insilico
from insilico import experiments as E
from insilico.session import session

SIZE = (3, 16, 16)
N_IMAGES = 4
CLASSES = 4


@dataclasses.dataclass(frozen=True)
class Arch:
    """Unit addresses in one model: a layer (4-D output), a second, deeper layer, and the logits."""

    layer: str
    deeper: str
    logits: str
    first: str  # the first module a forward pass calls (the test's failing pre-hook goes there)
    neuron: str  # one neuron of ``layer`` (receptive fields)


ARCHS = {
    "mixed": Arch(layer="2", deeper="5", logits="9", first="0", neuron="2[0,4,4]"),
    "resnet18": Arch(layer="layer1", deeper="layer2", logits="fc", first="conv1", neuron="layer1[0,2,2]"),
}


def mixed_model(seed: int = 0) -> nn.Module:
    """The mixed-mode conv net: root in train mode, ``[1]`` a frozen BatchNorm (eval, no weight grad)."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8),
                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, CLASSES))
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so a reset would show
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.9, 1.1)
            bn.num_batches_tracked.fill_(7)
    m.train()
    m[1].eval()
    m[1].weight.requires_grad_(False)
    m.input_size = SIZE
    return m


def resnet18(seed: int = 0) -> nn.Module:
    import torchvision

    torch.manual_seed(seed)
    m = torchvision.models.resnet18(num_classes=CLASSES)
    m.train()
    m.input_size = SIZE
    return m


MODELS = {"mixed": mixed_model, "resnet18": resnet18}


@functools.lru_cache(maxsize=None)
def _template(kind: str, seed: int) -> nn.Module:
    return MODELS[kind](seed)


def make_model(kind: str = "mixed", seed: int = 0) -> tuple[nn.Module, Arch]:
    """A fresh model of ``kind`` (a deep copy of one built once: ResNet-18's init is slow) and its Arch."""
    return copy.deepcopy(_template(kind, seed)), ARCHS[kind]


def make_images(n: int = N_IMAGES, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SIZE, generator=g).to(dtype)


def arch_of(model: nn.Module) -> Arch:
    """The Arch of a model made by :func:`make_model` (also after ``.double()``)."""
    return ARCHS["mixed"] if isinstance(model, nn.Sequential) else ARCHS["resnet18"]


class Partner(nn.Module):
    """A second model for two-model tools: a copy of the first (same modes, same hooks) whose
    logits go through a fixed permutation and scale, so the two disagree."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.input_size = model.input_size

    def forward(self, x):
        y = self.model(x)
        return 2.0 * y.flip(-1)


def _pick(images, samples):
    return images if samples is None else images[list(samples)]


def _labels(n_or_samples):
    idx = range(n_or_samples) if isinstance(n_or_samples, int) else n_or_samples
    return torch.tensor([i % CLASSES for i in idx])


def _sample_ids(images, samples):
    return list(range(len(images))) if samples is None else list(samples)


# ---------------------------------------------------------------------------------------------
# run functions: tiny calls of each tool
# ---------------------------------------------------------------------------------------------

def run_record_stimuli(model, images, samples=None):
    a = arch_of(model)
    return insilico.Probe(model).record_stimuli(_pick(images, samples), [a.layer], batch_size=2, progress=False)


def run_gradient_map(model, images, samples=None):
    a = arch_of(model)
    return insilico.gradient_map(model, _pick(images, samples), f"{a.logits}[1]")


def run_top_exemplars(model, images, samples=None):
    a = arch_of(model)
    return insilico.top_exemplars(model, _pick(images, samples), f"{a.layer}[0]", k=2, batch_size=2,
                                  progress=False)


def run_project_exemplars(model, images, samples=None):
    a = arch_of(model)
    return insilico.project_exemplars(model, _pick(images, samples), f"{a.layer}[0]", k=2, batch_size=2,
                                      progress=False)


def run_maximize(model, images, samples=None):
    a = arch_of(model)
    units = [f"{a.logits}[{i % CLASSES}]" for i in _sample_ids(images, samples)]
    return insilico.maximize(model, units, size=SIZE, steps=2, batch_size=4, progress=False)


def run_metamer(model, images, samples=None):
    a = arch_of(model)
    return insilico.metamer(model, a.layer, _pick(images, samples), steps=2, progress=False)


def run_pgd(model, images, samples=None):
    return insilico.pgd(model, _pick(images, samples), _labels(_sample_ids(images, samples)), steps=2,
                        early_stop=False, progress=False)


def run_fgsm(model, images, samples=None):
    return insilico.fgsm(model, _pick(images, samples), _labels(_sample_ids(images, samples)), progress=False)


CLASS_PAIRS = [(0, 1), (2, 3), (1, 2), (3, 0)]


def run_controversial(model, images, samples=None):
    ids = _sample_ids(images, samples)
    pairs = [CLASS_PAIRS[i % len(CLASS_PAIRS)] for i in ids]
    return insilico.controversial([model, Partner(model)], pairs, init=_pick(images, samples), steps=2,
                                  progress=False)


def run_mad(model, images, samples=None):
    a = arch_of(model)
    return insilico.mad(model, _pick(images, samples), (a.layer, a.deeper), steps=2, progress=False)


def run_eigendistortion(model, images, samples=None):
    a = arch_of(model)
    return insilico.eigendistortion(model, a.deeper, _pick(images, samples), k=1, iterations=3, progress=False)


def run_orientation_tuning(model, images, samples=None):
    a = arch_of(model)
    units = [f"{a.layer}[{i}]" for i in _sample_ids(images, samples)]
    return E.orientation_tuning(model, units, size=SIZE[-1], orientations=(0, 45, 90, 135), sfs=[4],
                                phases=(0, 180), progress=False)


def run_receptive_field(model, images, samples=None):
    a = arch_of(model)
    return E.receptive_field(model, a.neuron, input_size=SIZE[-1], method="gradient", n_images=2)


def run_lesion_sweep(model, images, samples=None):
    a = arch_of(model)
    x = _pick(images, samples)
    return E.lesion_sweep(model, a.layer, x, _labels(len(x)), groups=[[0], [1, 2]], batch_size=2, progress=False)


def run_cumulative_lesion(model, images, samples=None):
    a = arch_of(model)
    x = _pick(images, samples)
    return E.cumulative_lesion(model, a.layer, x, _labels(len(x)), n_points=3, batch_size=2, progress=False)


def run_receptive_field_sizes(model, images, samples=None):
    a = arch_of(model)
    return E.receptive_field_sizes(model, [a.layer], input_size=SIZE[-1], methods=("theoretical", "gradient"),
                                   n_images=2, progress=False)


def run_lesion_mean(model, images, samples=None):
    """``Probe.lesion(mode="mean", reference=...)``: the reference means are computed when it is made."""
    a = arch_of(model)
    handle = insilico.Probe(model).lesion(f"{a.layer}[1]", mode="mean", reference=_pick(images, samples))
    with handle:
        pass
    return handle


def run_microstimulation(model, images, samples=None):
    a = arch_of(model)
    return E.microstimulation(model, f"{a.layer}[1]", _pick(images, samples), strengths=[0, 1], batch_size=2,
                              progress=False)


def run_time_courses(model, images, samples=None):
    a = arch_of(model)
    return E.time_courses(model, a.layer, _pick(images, samples), batch_size=2, progress=False)


def run_stimulate(model, images, samples=None):
    """``Probe.stimulate`` as a user writes it: the model's logits with channel 1 of the layer driven."""
    a = arch_of(model)
    with session(model) as s, insilico.Probe(model).stimulate(f"{a.layer}[1]", add=1.0, gain=2.0):
        return model(s.inputs(_pick(images, samples)))


def run_lesion_connections(model, images, samples=None):
    """``Probe.lesion_connections``: the logits with input channels 0-1 of the first conv cut from output 2."""
    a = arch_of(model)
    with session(model) as s, insilico.Probe(model).lesion_connections(a.first, outputs=[2], inputs=[0, 1]):
        return model(s.inputs(_pick(images, samples)))


def run_rsa(model, images, samples=None):
    a = arch_of(model)
    return insilico.rsa.model_rdms(model, _pick(images, samples), units=[a.layer, a.logits], batch_size=2,
                                   progress=False)[a.layer]


def run_encoding(model, images, samples=None):
    a = arch_of(model)
    x = _pick(images, samples)
    rec = insilico.Probe(model).record_stimuli(x, [a.logits], batch_size=2, progress=False)
    responses = torch.linspace(0, 1, len(x) * 2).reshape(len(x), 2)
    return insilico.encoding.cross_validate(rec, responses, cv=2, inner_cv=None)[a.logits]


def run_population_control(model, images, samples=None):
    """A predictor of 4 synthetic neurons fitted on 12 images, then one stretch image per target."""
    from insilico.predictor import fit_predictor

    arch = arch_of(model)
    stimuli = make_images(12, seed=1, dtype=images.dtype)
    responses = torch.randn(12, CLASSES, generator=torch.Generator().manual_seed(2), dtype=images.dtype)
    predictor = fit_predictor(model, stimuli, responses, arch.deeper, reduce="mean", cv=3, progress=False)
    targets = list(range(CLASSES)) if samples is None else list(samples)
    return insilico.population_control(predictor, targets, natural=stimuli, steps=2, progress=False)


def run_gallery(model, images, samples=None, out=None):
    import tempfile

    from insilico.gallery import GallerySettings, build

    a = arch_of(model)
    settings = GallerySettings(layers=[a.layer], units=1, steps=2, diverse=1, exemplars=2, per_class=1,
                               lesion_per_class=1, orientations=4, phases=2, rf_images=1)
    with tempfile.TemporaryDirectory() as root:
        return build(settings, out or f"{root}/site", model=model, progress=False, render=False)


# ---------------------------------------------------------------------------------------------
# reading results
# ---------------------------------------------------------------------------------------------

def _images(r):
    return r.images


def _recording(r):
    return r[r.units[0]]


@dataclasses.dataclass(frozen=True)
class Tool:
    """One tool as the contract test sees it.

    Attributes
    ----------
    name : str
    run : callable (model, images, samples=None) -> result
    out : callable result -> tensor, optional
        The per-sample main output (sample axis first); None where there is none to compare.
    images : bool
        Takes images (the image gate and the empty-batch promise apply).
    saves : bool
        Its result saves and loads (``result.save(p)``, ``type(result).load(p)``).
    independent : bool
        A sample's result is the same alone and in a batch.
    exact : bool
        ... and bit for bit, not only to ``rtol``: only where it holds by construction (kernels may pick
        another summation order for another batch size, so no tool claims it today).
    rtol : float
        The relative tolerance of ``independent`` (default 1e-5; the absolute one is ``rtol`` times the
        output's largest magnitude). A larger one only with a comment that says why it is rounding and
        what amplifies it, and a test in the tool's own file that tells rounding from shared state.
    follows_dtype : bool
        ``out(result)`` is images/maps/responses that must be float64 for a float64 model.
    models : which of MODELS it runs on cheaply enough for the cheap promises (hooks, modes, BN).
    """

    name: str
    run: Callable
    out: Callable | None = None
    images: bool = True
    saves: bool = True
    independent: bool = False
    exact: bool = False
    follows_dtype: bool = True
    models: Sequence[str] = ("mixed", "resnet18")
    rtol: float = 1e-5


TOOLS = {t.name: t for t in [
    Tool("record_stimuli", run_record_stimuli, _recording, independent=True),
    Tool("gradient_map", run_gradient_map, lambda r: r, saves=False, independent=True),
    Tool("top_exemplars", run_top_exemplars, lambda r: r.activations),
    Tool("project_exemplars", run_project_exemplars, lambda r: r.images[0]),
    Tool("maximize", run_maximize, _images, images=False, independent=True),
    # rtol 1e-4: float32 kernels round differently for another batch size (the conv's algorithm, and the
    # vectorised body vs the scalar tail of element-wise kernels such as the sigmoid's backward: ~1 ulp),
    # and L-BFGS amplifies that rounding through its curvature pairs (y = g1 - g0 is a difference of
    # nearly equal gradients): sample 2 alone vs in a batch ~3e-5 after 2 steps (Adam: ~3e-7). Not shared
    # state: the line search is per sample (tests/test_metamers.py::
    # test_alone_equals_in_a_batch_up_to_rounding_the_line_search_is_per_sample: in float64 the two agree
    # to 1e-12 although the batch made more line-search trials than the sample alone).
    Tool("metamer", run_metamer, _images, independent=True, rtol=1e-4),
    Tool("pgd", run_pgd, _images, independent=True),
    Tool("fgsm", run_fgsm, _images, independent=True),
    Tool("controversial", run_controversial, _images, independent=True),
    Tool("mad", run_mad, _images, independent=True),
    Tool("eigendistortion", run_eigendistortion, lambda r: r.distortions, independent=True),
    Tool("orientation_tuning", run_orientation_tuning, lambda r: r.responses, images=False, independent=True),
    Tool("receptive_field", run_receptive_field, lambda r: r.map, images=False),
    Tool("lesion_sweep", run_lesion_sweep, None, follows_dtype=False),
    # cumulative_lesion sweeps every channel first: too slow on ResNet-18's 64 channels
    Tool("cumulative_lesion", run_cumulative_lesion, None, follows_dtype=False, models=("mixed",)),
    Tool("receptive_field_sizes", run_receptive_field_sizes, None, images=False, follows_dtype=False),
    Tool("lesion_mean", run_lesion_mean, None, saves=False, follows_dtype=False),
    Tool("microstimulation", run_microstimulation, lambda r: r.arrays["probabilities"].swapaxes(0, 1),
         independent=True),
    Tool("time_courses", run_time_courses, lambda r: r.arrays["responses_0"], independent=True),
    Tool("stimulate", run_stimulate, lambda r: r, images=False, saves=False, independent=True),
    Tool("lesion_connections", run_lesion_connections, lambda r: r, images=False, saves=False, independent=True),
    Tool("rsa", run_rsa, lambda r: r.matrix, follows_dtype=False),
    Tool("encoding", run_encoding, lambda r: r.predictions),
    Tool("population_control", run_population_control, _images, images=False, independent=True),
    Tool("gallery", run_gallery, None, images=False, saves=False, follows_dtype=False, models=("mixed",)),
]}
