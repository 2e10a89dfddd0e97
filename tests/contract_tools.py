"""The contract test's tiny runs of each tool (tests/contract/test_contract.py), himalaya-style.

The tools themselves, and the promises each keeps, are the library's registry
(:mod:`insilico.registry`: ``@register_tool`` where each tool is defined). This file adds only how to
run each one tiny: :data:`RUNNERS` maps a registered tool's name to a :class:`Runner` with
``run(model, images, samples=None) -> result`` (16x16 images, 2-3 steps), ``out(result) -> tensor``
that reads the result's per-sample main output (images, maps, responses), and the test's own knobs
(which models, the independence tolerance). :data:`TOOLS` joins the two; a registered tool without a
runner (or a runner without a tool) fails ``tests/contract/test_registry.py``, so a tool is checked by every
promise of the contract the day it is registered.

"A sample" is one index along the tool's batch axis: an image for tools that take images, a unit
for ``maximize`` and ``orientation_tuning``, a class pair for ``controversial``. ``samples`` picks
some of them (default: all of ``images``), in that order; ``out(result)[j]`` is sample
``samples[j]``.

Models (:func:`make_model`):

- ``"mixed"``: a small conv net in *mixed mode*, as when fine-tuning with a frozen BatchNorm:
  ``train()`` at the root, the first BatchNorm in eval with a frozen weight, dropout active.
- ``"resnet18"``: torchvision's ResNet-18 (random init, 4 classes) in train mode.
- ``"vit"``: torchvision's VisionTransformer at 16 px in train mode (dropout active), for the tools that
  need attention; a tool runs on the first model its runner names (``Runner.models``).

All have ``input_size = (3, 16, 16)`` and an :class:`Arch` that names the units the tools use.
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
from insilico.registry import tools as registered_tools
from insilico.encoding import fit_predictor
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
    "vit": Arch(layer="encoder.layers.encoder_layer_0", deeper="encoder.layers.encoder_layer_1", logits="heads.head",
                first="conv_proj", neuron="conv_proj[0,1,1]"),
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


def vit(seed: int = 0) -> nn.Module:
    """torchvision's VisionTransformer, tiny: 16x16 images in 8x8 patches (a 2x2 grid and a CLS token: (N, 5, 32)
    tokens), 2 layers of 2 heads, 4 classes (a random head); train mode, with dropout in the blocks
    and the attention (the tools must run it in eval mode)."""
    import torchvision

    torch.manual_seed(seed)
    m = torchvision.models.VisionTransformer(image_size=SIZE[-1], patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=32, mlp_dim=64, dropout=0.1, attention_dropout=0.1,
                                             num_classes=CLASSES)
    nn.init.normal_(m.heads.head.weight, std=0.2)  # torchvision zeroes the head: logits (and their gradients) 0
    m.train()
    m.input_size = SIZE
    return m


MODELS = {"mixed": mixed_model, "resnet18": resnet18, "vit": vit}


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
    if isinstance(model, nn.Sequential):
        return ARCHS["mixed"]
    return ARCHS["vit"] if hasattr(model, "conv_proj") else ARCHS["resnet18"]


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

def run_record_stimuli(model, images, samples=None, out=None):
    a = arch_of(model)
    return insilico.Probe(model).record_stimuli(_pick(images, samples), [a.layer], batch_size=2, progress=False,
                                                out=out)


def run_gradient_map(model, images, samples=None):
    a = arch_of(model)
    return insilico.gradient_map(model, _pick(images, samples), f"{a.logits}[1]")


def run_attention_rollout(model, images, samples=None):
    return insilico.attention_rollout(model, _pick(images, samples))


def run_top_exemplars(model, images, samples=None):
    a = arch_of(model)
    return insilico.top_exemplars(model, _pick(images, samples), f"{a.layer}[0]", k=2, batch_size=2,
                                  progress=False)


def run_project_exemplars(model, images, samples=None):
    a = arch_of(model)
    return insilico.project_exemplars(model, _pick(images, samples), f"{a.layer}[0]", k=2, batch_size=2,
                                      progress=False)


def run_maximize(model, images, samples=None, out=None):
    a = arch_of(model)
    units = [f"{a.logits}[{i % CLASSES}]" for i in _sample_ids(images, samples)]
    return insilico.maximize(model, units, size=SIZE, steps=2, batch_size=4, progress=False, out=out)


def run_metamer(model, images, samples=None, out=None):
    a = arch_of(model)
    return insilico.metamer(model, a.layer, _pick(images, samples), steps=2, progress=False, out=out)


def run_pgd(model, images, samples=None, out=None):
    return insilico.pgd(model, _pick(images, samples), _labels(_sample_ids(images, samples)), steps=2,
                        early_stop=False, progress=False, out=out)


def run_fgsm(model, images, samples=None):
    return insilico.fgsm(model, _pick(images, samples), _labels(_sample_ids(images, samples)), progress=False)


CLASS_PAIRS = [(0, 1), (2, 3), (1, 2), (3, 0)]


def run_controversial(model, images, samples=None, out=None):
    ids = _sample_ids(images, samples)
    pairs = [CLASS_PAIRS[i % len(CLASS_PAIRS)] for i in ids]
    return insilico.controversial([model, Partner(model)], pairs, init=_pick(images, samples), steps=2,
                                  progress=False, out=out)


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
    return E.receptive_field(model, a.neuron, size=SIZE[-1], method="gradient", n_images=2)


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
    return E.receptive_field_sizes(model, [a.layer], size=SIZE[-1], methods=("theoretical", "gradient"),
                                   n_images=2, progress=False)


def run_lesion(model, images, samples=None):
    """``Probe.lesion(mode="mean", reference=...)``: the reference means are computed when it is made."""
    a = arch_of(model)
    handle = insilico.Probe(model).lesion(f"{a.layer}[1]", mode="mean", reference=_pick(images, samples))
    with handle:
        pass
    return handle


def run_microstimulation(model, images, samples=None):
    a = arch_of(model)
    return E.microstimulation(model, f"{a.layer}[1]", _pick(images, samples), strengths=[0, 1], target=0,
                              batch_size=2, progress=False)  # target given: one stimulus cannot be split in halves


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


def run_model_rdms(model, images, samples=None):
    a = arch_of(model)
    return insilico.rsa.model_rdms(model, _pick(images, samples), units=[a.layer, a.logits], batch_size=2,
                                   progress=False)[a.layer]


def run_fit_predictor(model, images, samples=None):
    """A linear readout of 2 synthetic targets from the deeper layer's mean features, 2-fold CV; no held-out
    scores (4 images: scoring needs 3 held out and 3 to fit, ``fit_predictor`` refuses fewer)."""
    a = arch_of(model)
    x = _pick(images, samples)
    responses = torch.linspace(0, 1, len(x) * 2, dtype=x.dtype).reshape(len(x), 2)
    return fit_predictor(model, x, responses, a.deeper, reduce="mean", cv=2, held_out=0, batch_size=2,
                         progress=False)


def run_record(model, images, samples=None):
    """``Probe.record`` as a user writes it: the layer recorded over one forward pass."""
    a = arch_of(model)
    with session(model) as s, insilico.Probe(model).record(a.layer) as rec:
        model(s.inputs(_pick(images, samples)))
    return rec[a.layer]


def run_connection_lesions(model, images, samples=None):
    """Two groups of modules (the layer, the deeper layer) lesioned, the model's output as readout."""
    a = arch_of(model)
    x = _pick(images, samples)
    return E.connection_lesions(model, x, _labels(len(x)), connections={"shallow": [a.layer], "deep": [a.deeper]},
                                batch_size=2, progress=False)


def run_population_control(model, images, samples=None):
    """A predictor of 4 synthetic neurons fitted on 12 images, then one stretch image per target."""
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


def _weights(predictor):
    return predictor.readout.weight.detach()


@dataclasses.dataclass(frozen=True)
class Runner:
    """How the contract test runs one registered tool tiny.

    Attributes
    ----------
    run : callable (model, images, samples=None) -> result
    out : callable result -> tensor, optional
        The per-sample main output (sample axis first); None where there is none to compare.
    models : which of MODELS it runs on cheaply enough for the cheap promises (hooks, modes, BN).
    rtol : float
        The relative tolerance of the registry's ``per_sample`` promise (default 1e-5; the absolute one
        is ``rtol`` times the output's largest magnitude). A larger one only with a comment that says why
        it is rounding and what amplifies it, and a test in the tool's own file that tells rounding from
        shared state.
    exact : bool
        ... and bit for bit, not only to ``rtol``: only where it holds by construction (kernels may pick
        another summation order for another batch size, so no tool claims it today).
    """

    run: Callable
    out: Callable | None = None
    models: Sequence[str] = ("mixed", "resnet18")
    rtol: float = 1e-5
    exact: bool = False


RUNNERS = {
    "record": Runner(run_record, lambda r: r),
    "record_stimuli": Runner(run_record_stimuli, _recording),
    "lesion": Runner(run_lesion),  # mode="mean": the reference means are computed when it is made
    "stimulate": Runner(run_stimulate, lambda r: r),
    "lesion_connections": Runner(run_lesion_connections, lambda r: r),
    "gradient_map": Runner(run_gradient_map, lambda r: r),
    "attention_rollout": Runner(run_attention_rollout, lambda r: r, models=("vit",)),  # needs attention
    "top_exemplars": Runner(run_top_exemplars, lambda r: r.activations),
    "project_exemplars": Runner(run_project_exemplars, lambda r: r.images[0]),
    "maximize": Runner(run_maximize, _images),
    # rtol 1e-4: float32 kernels round differently for another batch size (the conv's algorithm, and the
    # vectorised body vs the scalar tail of element-wise kernels such as the sigmoid's backward: ~1 ulp),
    # and L-BFGS amplifies that rounding through its curvature pairs (y = g1 - g0 is a difference of
    # nearly equal gradients): sample 2 alone vs in a batch ~3e-5 after 2 steps (Adam: ~3e-7). Not shared
    # state: the line search is per sample (tests/design/test_metamers.py::
    # test_alone_equals_in_a_batch_up_to_rounding_the_line_search_is_per_sample: in float64 the two agree
    # to 1e-12 although the batch made more line-search trials than the sample alone).
    "metamer": Runner(run_metamer, _images, rtol=1e-4),
    "pgd": Runner(run_pgd, _images),
    "fgsm": Runner(run_fgsm, _images),
    "controversial": Runner(run_controversial, _images),
    "mad": Runner(run_mad, _images),
    "eigendistortion": Runner(run_eigendistortion, lambda r: r.distortions),
    "population_control": Runner(run_population_control, _images),
    "orientation_tuning": Runner(run_orientation_tuning, lambda r: r.responses),
    "receptive_field": Runner(run_receptive_field, lambda r: r.map),
    "receptive_field_sizes": Runner(run_receptive_field_sizes),
    "lesion_sweep": Runner(run_lesion_sweep),
    # cumulative_lesion sweeps every channel first: too slow on ResNet-18's 64 channels
    "cumulative_lesion": Runner(run_cumulative_lesion, models=("mixed",)),
    "microstimulation": Runner(run_microstimulation, lambda r: r.arrays["probabilities"].swapaxes(0, 1)),
    "time_courses": Runner(run_time_courses, lambda r: r.arrays["responses_0"]),
    "connection_lesions": Runner(run_connection_lesions, lambda r: r.arrays["accuracy"]),
    "model_rdms": Runner(run_model_rdms, lambda r: r.matrix),
    "fit_predictor": Runner(run_fit_predictor, _weights),
    "gallery": Runner(run_gallery, models=("mixed",)),
}


@dataclasses.dataclass(frozen=True)
class Tool:
    """One tool as the contract test sees it: the registry's record (:class:`insilico.registry.Tool`)
    joined with its :class:`Runner`.

    ``images`` (the image gate and the empty-batch promise apply), ``saves`` (``result.save(p)``,
    ``type(result).load(p)``), ``independent`` (a sample's result is the same alone and in a batch) and
    ``follows_dtype`` (``out(result)`` is float64 for a float64 model) are the registry's
    ``takes_images``, ``saves``, ``per_sample`` and ``follows_dtype``; ``kind``, ``resumes`` (``out=``),
    ``random`` (``seed=``) and ``two_models`` come from the registry too; the rest from the runner.
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
    kind: str = ""
    resumes: bool = False
    random: bool = False
    two_models: bool = False


def _join(tool, runner: Runner) -> Tool:
    return Tool(name=tool.name, run=runner.run, out=runner.out, images=tool.takes_images, saves=tool.saves,
                independent=tool.per_sample, exact=runner.exact, follows_dtype=tool.follows_dtype,
                models=runner.models, rtol=runner.rtol, kind=tool.kind, resumes=tool.resumes, random=tool.random,
                two_models=tool.two_models)


#: Every registered tool that has a runner, in the registry's order (tests/contract/test_registry.py fails on the others).
TOOLS = {name: _join(tool, RUNNERS[name]) for name, tool in registered_tools().items() if name in RUNNERS}
