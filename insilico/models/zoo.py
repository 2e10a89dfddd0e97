"""Models from the zoos users have, in one line: torchvision, timm, open_clip and Hugging Face.

``insilico.models.load("<zoo>:<name>", weights=...)`` (see :func:`load`) builds the zoo's model and wraps it
in a :class:`ZooModel`, which every tool takes as it is:

- **pixel space**: it takes images ``(N, C, H, W)`` in ``[0, 1]``; the zoo's normalisation is its
  ``normalize`` child (:class:`~insilico.models.normalize.Normalize`). Resizing is *not* inside the model:
  ``model.preprocessing(images)`` resizes and crops as the zoo does (:class:`Preprocessing`);
- ``input_size`` ``(C, H, W)``, so ``maximize(model, unit)`` needs no ``size=``;
- ``class_names`` (and ``classes``, which the tools read) where the weights have them: torchvision's
  ``weights.meta["categories"]``, timm's ImageNet labels, Hugging Face's ``config.id2label``; ``None`` for
  random weights, for a weight file (the file does not say; set ``model.class_names = [...]`` yourself) and
  for open_clip (a CLIP image tower has no classes);
- ``preprocessing``: the zoo's preprocessing as data (:class:`Preprocessing`: resize, crop, mean, std,
  interpolation, and the ``source`` it was read from);
- **unit addresses**: the zoo's model is the child ``net``, so its modules are addressed with the prefix
  ``net.`` (``"net.layer4.1.conv2"``, ``"net.blocks.3.attn"``); ``normalize`` is the other child;
- **one tensor out**: torchvision and timm models return theirs (logits); an open_clip image tower returns
  its image embedding ``(N, D)``; a Hugging Face model returns ``logits`` when it has a classification
  head (``...ForImageClassification``), else ``last_hidden_state`` (``(N, T, D)`` tokens for ViT-like
  models, ``(N, C, H, W)`` for convolutional ones); its other outputs stay addressable by module
  (e.g. ``"net.pooler"``).

========= ========================================== =============== ===============================
zoo       spec                                       extra           weights
========= ========================================== =============== ===============================
torchvision ``torchvision:resnet50``                 ``torchvision`` ``"DEFAULT"``, a name such as
                                                                     ``"IMAGENET1K_V2"``, a file, None
timm      ``timm:convnext_tiny`` (``.fb_in1k`` tag)  ``timm``        ``"DEFAULT"``, a tag, a file, None
open_clip ``open_clip:ViT-B-32/laion2b_s34b_b79k``   ``open_clip``   ``"DEFAULT"`` (the spec's tag), a
          (the image tower only)                                     tag, a file, None
hf        ``hf:facebook/dinov2-small`` or            ``hf``          ``"DEFAULT"`` (the hub's or the
          ``hf:/path/to/folder`` (``config.json``)                   folder's weights), a file, None
========= ========================================== =============== ===============================

``weights="DEFAULT"`` downloads from the zoo's hub on the user's machine (or reads its cache);
``weights=None`` gives random weights (tests, untrained controls); a path reads a ``state_dict`` or
``.safetensors`` file (:mod:`insilico.models.weightfiles`; pickles are refused). Nothing here trusts remote
code (Hugging Face ``trust_remote_code`` stays off).

Example
-------
>>> import torch, insilico.models as models
>>> net = models.load("torchvision:resnet18", weights=None)
>>> net.input_size, net.preprocessing.resize, net.preprocessing.crop, net.class_names
((3, 224, 224), 256, (224, 224), None)
>>> tuple(net(torch.rand(1, *net.input_size)).shape)
(1, 1000)
>>> "net.layer4.1.conv2" in dict(net.named_modules())
True
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import InsilicoError
from ..seeding import keep_global_rng
from . import weightfiles
from .normalize import Normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How the zoo prepares an image for the model: resize, centre crop, then normalise.

    The normalisation is already inside the :class:`ZooModel` (its ``normalize`` child); calling a
    ``Preprocessing`` on pixel-space images does the geometric part only, so its output goes to the model.

    Attributes
    ----------
    resize : int, (H, W) or None
        An int: the shorter side is resized to it (aspect kept); ``(H, W)``: resized to exactly that.
    crop : (H, W) or None
        The centre crop taken after resizing.
    mean, std : tuple of float
        Per channel, applied by the model to ``[0, 1]`` pixels.
    interpolation : str
        ``"bilinear"``, ``"bicubic"``, ``"nearest"`` (or a zoo's other name, which :meth:`__call__` refuses).
    source : str
        Where these numbers were read (the weights' transforms, the zoo's config, or a stated assumption).

    Examples
    --------
    >>> p = Preprocessing(resize=8, crop=(4, 4), mean=(0.5,), std=(0.5,), interpolation="bilinear", source="test")
    >>> tuple(p(torch.rand(2, 1, 16, 32)).shape)
    (2, 1, 4, 4)
    """

    resize: int | tuple[int, int] | None
    crop: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    source: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and centre-crop pixel-space images ``(N, C, H, W)`` in [0, 1]; the result stays in [0, 1]."""
        if self.interpolation not in _INTERPOLATIONS:
            raise InsilicoError(f"interpolation {self.interpolation!r} (from {self.source}) is not one torch "
                                f"resizes with ({', '.join(_INTERPOLATIONS)}): resize the images yourself")
        x = images
        if self.resize is not None:
            h, w = x.shape[-2:]
            if isinstance(self.resize, int):
                scale = self.resize / min(h, w)
                size = (max(1, round(h * scale)), max(1, round(w * scale)))
            else:
                size = tuple(self.resize)
            smooth = self.interpolation != "nearest"
            x = nn.functional.interpolate(x, size=size, mode=self.interpolation, antialias=smooth,
                                          **({"align_corners": False} if smooth else {}))
        if self.crop is not None:
            (h, w), (ch, cw) = x.shape[-2:], self.crop
            if ch > h or cw > w:
                raise InsilicoError(f"images of {h}x{w} are smaller than the crop {ch}x{cw} ({self.source})")
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top:top + ch, left:left + cw]
        return x.clamp(0, 1)

    def size(self) -> tuple[int, int]:
        """The ``(H, W)`` of the images the model gets (the crop, else the exact resize)."""
        if self.crop is not None:
            return tuple(self.crop)
        if isinstance(self.resize, int):
            return (self.resize, self.resize)
        return tuple(self.resize)


class ZooModel(nn.Module):
    """A zoo model on pixel-space images: ``normalize`` (the zoo's mean/std), then ``net`` (the zoo's model).

    Built by :func:`load`; see the module docstring for its attributes (``input_size``, ``class_names``,
    ``preprocessing``, ``name``) and what it returns.

    Parameters
    ----------
    net : nn.Module
        The zoo's model, addressed as ``net.<its module names>``.
    preprocessing : Preprocessing
    name : str
        The spec it was loaded from, e.g. ``"timm:convnext_tiny"``.
    class_names : list of str, optional
    output : str, optional
        The field of the zoo's output object to return (``"logits"``, ``"last_hidden_state"``); None: the
        output itself.

    Examples
    --------
    >>> p = Preprocessing(resize=None, crop=(8, 8), mean=(0.5,), std=(0.5,), interpolation="bilinear", source="test")
    >>> m = ZooModel(nn.Conv2d(1, 2, 3), p, "example")
    >>> m.input_size, [n for n, _ in m.named_children()]
    ((1, 8, 8), ['normalize', 'net'])
    """

    def __init__(self, net: nn.Module, preprocessing: Preprocessing, name: str,
                 class_names: Sequence[str] | None = None, output: str | None = None):
        super().__init__()
        dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
        self.normalize = Normalize(preprocessing.mean, preprocessing.std).to(dtype)  # a zoo may load in half
        self.net = net
        self.name, self.preprocessing, self.output = name, preprocessing, output
        self.input_size = (len(preprocessing.mean), *preprocessing.size())
        self.class_names = list(class_names) if class_names else None

    @property
    def classes(self) -> list[str]:
        """``class_names``, under the name the tools read (as on the bundled models); absent without names."""
        if not self.class_names:
            raise AttributeError(f"{self.name} has no class names (set model.class_names = [...] if you know them)")
        return self.class_names

    @classes.setter
    def classes(self, names: Sequence[str] | None) -> None:  # the tools' messages say "set model.classes = [...]"
        self.class_names = list(names) if names else None

    def forward(self, x: torch.Tensor) -> Any:
        out = self.net(self.normalize(x))
        if self.output is None:
            return out
        value = getattr(out, self.output, None) if not isinstance(out, tuple) else None
        if value is None:
            raise InsilicoError(f"{self.name} returned {type(out).__name__} without {self.output!r}: load the "
                                "model with return_dict=True in its config")
        return value

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}"


# ---------------------------------------------------------------------------------------
# Specs, packages, weights
# ---------------------------------------------------------------------------------------
#: zoo prefix -> (the package it imports, the pip extra that installs it)
ZOOS = {"torchvision": ("torchvision", "torchvision"), "timm": ("timm", "timm"),
        "open_clip": ("open_clip", "open_clip"), "hf": ("transformers", "hf")}


def split(spec: str) -> tuple[str, str] | None:
    """``(zoo, name)`` when ``spec`` names a zoo model (``"timm:resnet18"``), else None.

    >>> split("timm:resnet18"), split("torchvision.models:resnet18"), split("minialex")
    (('timm', 'resnet18'), None, None)
    """
    if not isinstance(spec, str) or ":" not in spec:
        return None
    zoo, name = spec.split(":", 1)
    return (zoo, name) if zoo in ZOOS else None


def _package(zoo: str):
    package, extra = ZOOS[zoo]
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise InsilicoError(f"{zoo} models need the {package} package, which is not installed: "
                            f'pip install "insilico-ephys[{extra}]" (or pip install {package})') from e


def _is_file(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return (os.path.exists(weights) or "/" in weights or os.sep in weights
            or weights.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt")))


def _closest(name: str, known: Sequence[str], what: str, listing: str) -> InsilicoError:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return InsilicoError(f"{what} has no model {name!r}.{hint} List them with {listing}.")


def load(spec: str, weights: str | os.PathLike | None = "DEFAULT",
         device: str | torch.device | None = None) -> ZooModel:
    """The zoo model named by ``spec`` on pixel-space images, in eval mode (see the module docstring).

    Parameters
    ----------
    spec : str
        ``"torchvision:NAME"``, ``"timm:NAME[.TAG]"``, ``"open_clip:ARCH[/TAG]"`` or ``"hf:REPO_OR_FOLDER"``.
    weights : "DEFAULT", a zoo's weight name, a path, or None
        ``"DEFAULT"``: the zoo's pretrained weights (downloaded on first use); a name: those weights
        (torchvision ``"IMAGENET1K_V2"``, a timm or open_clip tag); a path: a ``state_dict`` or
        ``.safetensors`` file for the zoo's model (for open_clip: the image tower's, or a whole CLIP
        model's with ``visual.`` keys); None: random weights.
    device : str or torch.device, optional
        Where to put the model (default: torch's default device, the CPU unless set; a model built under
        ``torch.device("meta")`` stays there, shapes without values, which the tools refuse).

    Raises
    ------
    InsilicoError
        The zoo's package is missing (the message names the extra to install), the model or weight name
        is unknown (with close matches from the zoo's own list), a weight file does not fit, or named weights
        could not be downloaded (no internet: the message says how to work offline).

    Examples
    --------
    >>> load("torchvision:resnet81", weights=None)
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: torchvision has no model 'resnet81'. Did you mean 'resnet18', ...
    """
    parts = split(spec)
    if parts is None:
        raise InsilicoError(f"{spec!r} names no zoo; write {' or '.join(z + ':NAME' for z in ZOOS)}")
    zoo, name = parts
    if not name:
        raise InsilicoError(f"{spec!r} names no model after '{zoo}:'")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise InsilicoError(f"weights= takes 'DEFAULT', a weight name, a file path or None, not "
                            f"{type(weights).__name__}")
    try:
        model = _LOADERS[zoo](_package(zoo), name, weights, spec)
    except OSError as e:  # a download that failed (no internet, a hub refusing); a file's errors are weightfiles'
        if not _named(weights):
            raise
        raise InsilicoError(f"{spec}: could not fetch its pretrained weights {weights!r} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'no message'}). Without internet give a "
                            "local file (weights='net.pt', --weights net.pt), fill the zoo's cache on a connected "
                            "machine (TORCH_HOME, HF_HOME), or take random weights (weights=None, "
                            "--weights random)") from e
    return model.to(device or torch.get_default_device()).eval()  # built under torch.device("meta"): stays there


def _initialised(weights, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()``; its random init does not move the caller's random stream when weights replace it."""
    if weights is None:
        return build()
    with keep_global_rng():
        return build()


def _named(weights) -> bool:
    """Whether ``weights`` names the zoo's own weights ("DEFAULT", a name or tag), not None or a file."""
    return weights is not None and not _is_file(weights)


# ---------------------------------------------------------------------------------------
# One adapter per zoo: (package, name, weights, spec) -> ZooModel
# ---------------------------------------------------------------------------------------
def _torchvision(tv, name: str, weights, spec: str) -> ZooModel:
    import torchvision.models as tm

    known = tm.list_models(module=tm)
    if name not in known:
        raise _closest(name, known, "torchvision", "torchvision.models.list_models(module=torchvision.models) "
                                                   "(image classification models)")
    enum = tm.get_model_weights(name)
    chosen = None
    if _named(weights):
        key = str(weights).split(".")[-1]
        chosen = enum.DEFAULT if key == "DEFAULT" else enum.__members__.get(key)
        if chosen is None or (str(weights).count(".") and str(weights).split(".")[0] != enum.__name__):
            raise InsilicoError(f"{spec}: torchvision has no weights {weights!r}; its weights are "
                                f"{', '.join(n for n in enum.__members__ if n != 'DEFAULT')} (or 'DEFAULT', a file "
                                "path, or None for random)")
    about = chosen or enum.DEFAULT  # metadata only: nothing is downloaded for it
    t = about.transforms()
    resize = [int(s) for s in t.resize_size]
    crop = [int(s) for s in t.crop_size]
    pre = Preprocessing(resize=resize[0] if len(resize) == 1 else tuple(resize),
                        crop=(crop[0], crop[-1]), mean=tuple(t.mean), std=tuple(t.std),
                        interpolation=t.interpolation.value, source=f"torchvision {about}.transforms()")
    net = _initialised(weights, lambda: tm.get_model(name, weights=chosen))
    if weights is not None and chosen is None:
        weightfiles.load_into(net, weights, f"torchvision's {name} (from {spec!r})")
    return ZooModel(net, pre, spec, chosen.meta.get("categories") if chosen else None)


def _timm(timm, name: str, weights, spec: str) -> ZooModel:
    arch = name
    if _named(weights) and weights != "DEFAULT":
        if "." in name and name.split(".", 1)[1] != weights:
            raise InsilicoError(f"{spec} names the tag {name.split('.', 1)[1]!r} and weights= names {weights!r}: "
                                "give the tag once")
        arch = f"{name.split('.', 1)[0]}.{weights}"
    base, _, tag = arch.partition(".")
    if not timm.is_model(base):
        raise _closest(base, timm.list_models(), "timm", "timm.list_models()")
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(base + ".*")]
    if tag and tag not in tags:
        raise InsilicoError(f"{spec}: timm has no weights {tag!r} for {base}; its tags are "
                            f"{', '.join(tags) or '(none)'}")
    net = _initialised(weights, lambda: timm.create_model(arch, pretrained=_named(weights)))
    if weights is not None and not _named(weights):
        weightfiles.load_into(net, weights, f"timm's {arch} (from {spec!r})")
    cfg = timm.data.resolve_data_config({}, model=net)
    (_, h, w), crop_pct, mode = cfg["input_size"], cfg.get("crop_pct") or 1.0, cfg.get("crop_mode", "center")
    scaled = (int(h / crop_pct), int(w / crop_pct))
    if mode not in ("center", "squash"):
        warnings.warn(f"{spec}: timm's crop_mode {mode!r} is not reproduced by model.preprocessing (it resizes "
                      "and centre-crops); resize the images as timm.data.create_transform does", stacklevel=3)
    resize = scaled[0] if mode == "center" and scaled[0] == scaled[1] else scaled
    pre = Preprocessing(resize=resize, crop=(h, w), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                        interpolation=cfg["interpolation"], source=f"timm pretrained_cfg of {arch}")
    return ZooModel(net, pre, spec, _timm_classes(timm, net) if _named(weights) else None)


def _timm_classes(timm, net: nn.Module) -> list[str] | None:
    """ImageNet class names for a timm model whose pretrained_cfg names its ImageNet subset, else None."""
    subset = timm.data.infer_imagenet_subset(net)
    if not subset:
        return None
    names = [d.split(",")[0] for d in timm.data.ImageNetInfo(subset).label_descriptions()]
    return names if len(names) == getattr(net, "num_classes", None) else None


def _open_clip(oc, name: str, weights, spec: str) -> ZooModel:
    arch, _, tag = name.partition("/")
    if arch not in oc.list_models():
        raise _closest(arch, oc.list_models(), "open_clip", "open_clip.list_models()")
    tags = oc.list_pretrained_tags_by_model(arch)
    if _named(weights) and weights != "DEFAULT":
        if tag and tag != weights:
            raise InsilicoError(f"{spec} names the tag {tag!r} and weights= names {weights!r}: give the tag once")
        tag = weights
    if tag and tag not in tags:
        raise InsilicoError(f"{spec}: open_clip has no weights {tag!r} for {arch}; its tags are "
                            f"{', '.join(tags) or '(none)'}")
    if _named(weights) and not tag:
        raise InsilicoError(f"{spec}: say which weights, e.g. open_clip:{arch}/{tags[0] if tags else 'TAG'} "
                            f"(tags: {', '.join(tags) or 'none'}), or give weights=None or a file")
    keys = ("mean", "std", "interpolation", "resize_mode")
    tag_cfg = {k: v for k, v in (oc.get_pretrained_cfg(arch, tag) if tag else {}).items() if k in keys}
    if _named(weights):
        clip = _initialised(weights, lambda: oc.create_model(arch, pretrained=tag))
    else:  # the tag's preprocessing without its download
        clip = _initialised(weights, lambda: oc.create_model(arch, pretrained=None, force_preprocess_cfg=tag_cfg))
    visual = clip.visual
    if weights is not None and not _named(weights):
        state = weightfiles.read(weights)
        if any(k.startswith("visual.") for k in state):
            state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        weightfiles.load_into(visual, weights, f"the image tower of open_clip's {arch} (from {spec!r})", state)
    cfg = visual.preprocess_cfg
    size = cfg["size"]
    side = (size, size) if isinstance(size, int) else tuple(size)
    if cfg.get("resize_mode", "shortest") not in ("shortest", "squash"):
        warnings.warn(f"{spec}: open_clip's resize_mode {cfg['resize_mode']!r} is not reproduced by "
                      "model.preprocessing (it resizes and centre-crops)", stacklevel=3)
    squash = cfg.get("resize_mode") == "squash"
    pre = Preprocessing(resize=side if squash or side[0] != side[1] else side[0], crop=None if squash else side,
                        mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), interpolation=cfg["interpolation"],
                        source=f"open_clip preprocess_cfg of {arch}" + (f"/{tag}" if tag else ""))
    return ZooModel(visual, pre, spec)


def _hf(transformers, source: str, weights, spec: str) -> ZooModel:
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        if os.path.isdir(source):
            where = "a local folder without a readable config.json"
        elif source.startswith(("/", ".", "~")) or os.path.isabs(source):
            where = "no such local folder"
        else:
            where = "no local folder, and the hub could not be reached (no internet?) or has no such id"
        first = str(e).splitlines()[0] if str(e) else repr(e)
        raise InsilicoError(f"{spec}: no Hugging Face model {source!r}: {where} ({first}). "
                            "Give a hub id (hf:facebook/dinov2-small) on a connected machine (or with HF_HOME "
                            "filled), or a local folder with config.json (save_pretrained writes one)") from e
    if not hasattr(config, "num_channels"):
        raise InsilicoError(f"{spec} is a {config.model_type} model, which takes no images (its config has no "
                            "num_channels): insilico loads Hugging Face vision models")
    if getattr(config, "vision_config", None) is not None:
        raise InsilicoError(f"{spec} is a {config.model_type} model with several towers: insilico loads vision "
                            "models (for a CLIP image tower use open_clip:ARCH/TAG)")
    if _named(weights) and weights != "DEFAULT":
        raise InsilicoError(f"{spec}: Hugging Face weights are named by the spec (hf:owner/repo or a folder); "
                            "give weights='DEFAULT', a file, or None")
    head = any(str(a).endswith("ForImageClassification") for a in (config.architectures or []))
    auto = transformers.AutoModelForImageClassification if head else transformers.AutoModel
    try:
        if weights == "DEFAULT":
            net = _initialised(weights, lambda: auto.from_pretrained(source))
        else:
            net = _initialised(weights, lambda: auto.from_config(config))
    except ValueError as e:
        raise InsilicoError(f"{spec}: transformers cannot build a vision model from this config ({e})") from e
    if weights is not None and weights != "DEFAULT":
        weightfiles.load_into(net, weights, f"the Hugging Face {type(net).__name__} (from {spec!r})")
    labels = [config.id2label[i] for i in sorted(config.id2label)] if head and weights == "DEFAULT" else None
    generic = labels is not None and all(str(n) == f"LABEL_{i}" for i, n in enumerate(labels))
    return ZooModel(net, _hf_preprocessing(transformers, source, config, spec), spec,
                    None if generic else labels, output="logits" if head else "last_hidden_state")


_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _hf_preprocessing(transformers, source: str, config, spec: str) -> Preprocessing:
    """The image processor's resize, crop, mean and std; ImageNet's, stated and warned, when there is none."""
    def field(obj, key):
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    side = getattr(config, "image_size", 224)
    side = (side, side) if isinstance(side, int) else tuple(side)
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError):
        warnings.warn(f"{spec} has no image processor (preprocessor_config.json): insilico assumes ImageNet's "
                      f"mean and std and {side[0]}x{side[1]} images (model.preprocessing); set them right if "
                      "the model was trained otherwise", stacklevel=4)
        return Preprocessing(resize=side, crop=None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             interpolation="bilinear", source="assumed (no preprocessor_config.json): ImageNet")
    if field(proc, "do_rescale") is False or abs((field(proc, "rescale_factor") or 1 / 255) - 1 / 255) > 1e-9:
        raise InsilicoError(f"{spec}: its image processor does not scale pixels by 1/255, so the model does not "
                            "take [0, 1] images; wrap it yourself (insilico.models.from_spec)")
    normalise = field(proc, "do_normalize") is not False
    channels = getattr(config, "num_channels", 3)
    mean = tuple(proc.image_mean) if normalise else (0.0,) * channels
    std = tuple(proc.image_std) if normalise else (1.0,) * channels
    size, crop_size, resize, crop = field(proc, "size"), field(proc, "crop_size"), None, None
    if crop_size is not None and field(proc, "do_center_crop"):
        crop = (field(crop_size, "height"), field(crop_size, "width"))
    if size is not None and field(proc, "do_resize") is not False:
        h, w, short = field(size, "height"), field(size, "width"), field(size, "shortest_edge")
        resize = (h, w) if h and w else short
        if short and field(proc, "crop_pct") and short < 384:  # ConvNeXt's processors: resize, then crop the side
            resize, crop = int(short / field(proc, "crop_pct")), (short, short)
    if resize is None and crop is None:
        resize = side
    resample = field(proc, "resample")
    interpolation = _RESAMPLE.get(int(resample), str(resample)) if resample is not None else "bilinear"
    return Preprocessing(resize=resize, crop=crop, mean=mean, std=std, interpolation=interpolation,
                         source=f"Hugging Face {type(proc).__name__} of {source}")


_LOADERS = {"torchvision": _torchvision, "timm": _timm, "open_clip": _open_clip, "hf": _hf}

__all__ = ["Preprocessing", "ZooModel", "ZOOS", "load", "split"]
