"""Neural predictors: a network's features plus a fitted linear readout, as one ``nn.Module``.

:func:`fit_predictor` records a network's layers over a stimulus set (streamed
in batches), standardises the features, fits a ridge readout per target with
its own penalty (:class:`insilico.encoding.RidgeCV`, one eigendecomposition
for every alpha), scores it on held-out stimuli, and folds the
standardisation into a single ``nn.Linear``. The result, a
:class:`NeuralPredictor`, is a model like any other: it takes pixel-space
images ``(N, C, H, W)`` and returns ``(N, targets)`` predicted responses in the
data's units, so every insilico tool works on it: ``maximize(predictor,
"[k]")`` is the most exciting image (MEI) of target ``k``,
``gradient_map(predictor, x, "[k]")`` shows what drives it, metamers and
controversial stimuli between two predictors work as they are, and
:func:`insilico.population_control` drives and silences targets.

The trunk runs only up to the last layer the readout reads (the forward pass
stops there through the Probe's ``record(..., stop=True)``), and nothing stays
attached to the network between calls.

Written here rather than with sinzlab's ``mei``/``nnfabrik`` (which need a
DataJoint pipeline) or Brain-Score (which scores but does not synthesize): the
predictor is a plain module, so the one synthesis engine drives it.

Example
-------
>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> x = torch.rand(80, 3, 12, 12)
>>> with torch.no_grad():
...     y = net[:2](x).mean((2, 3))[:, :3] * 2.0 + 1.0          # three "neurons" read out of layer 1
>>> p = fit_predictor(net, x, y, layers=["1"], reduce="mean", progress=False)
>>> tuple(p(x[:4]).shape), bool((p.scores["r"] > 0.95).all())
((4, 3), True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import persistence
from ..errors import InsilicoError, SavedFileError, StimulusError, UnitError
from ..identity import fingerprint_differences, model_fingerprint
from ..layers import channels_first, read_layout, unit_layout
from ..layout import pool
from ..neural import NeuralData
from ..options import Options
from ..performance import working_dtype
from ..plan import Plan
from ..probe import Probe
from ..registry import register_tool
from ..results import data_frame
from ..session import device_of, dtype_of, session
from ..units import need_tensor
from .ridge import RidgeCV, pearson_r, r2_score, solve_ridge, split_half_ceiling

#: Default ridge penalties (features are standardised, so these suit most layers).
DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-1, 7))
#: Alternating least-squares passes refining a factorized (channel x position) readout.
ALS_ITERATIONS = 4
#: Reductions of (N, C, H, W) features before the readout.
REDUCTIONS = (None, "mean", "max")
#: The format of a file written by :meth:`NeuralPredictor.save`.
PREDICTOR_FORMAT = 1
#: The kind that predictors saved before this module moved into ``insilico/encoding/`` record.
_FORMER_KIND = "insilico.predictor:NeuralPredictor"
#: Fewest stimuli the readout is fitted on, and fewest held out to score it (a correlation over 2 is +-1).
MIN_FIT, MIN_HELD_OUT = 3, 3


class NeuralPredictor(nn.Module):
    """A network trunk plus a linear readout: images ``(N, C, H, W)`` -> predicted responses ``(N, targets)``.

    Built by :func:`fit_predictor`; see the module docstring.

    Attributes
    ----------
    trunk : nn.Module
        The network whose features are read (run up to the last layer in ``layers``).
    layers : list of str
        Unit addresses of the layers read.
    reduce : None, "mean", "max", int or (int, int)
        How (N, C, H, W) features are pooled: None keeps every position,
        "mean"/"max" pool over positions, an int ``g`` average-pools to a
        ``g x g`` grid.
    readout : nn.Linear
        Features -> targets, the feature standardisation folded in.
    targets : list of str
        Target names.
    input_size : tuple (C, H, W)
        The trunk's input size (``maximize`` uses it).
    scores : dict of numpy arrays (n_targets,)
        ``"r"`` and ``"r2"`` on held-out stimuli, ``"alpha"``; with repetitions
        also ``"ceiling"`` (split-half noise ceiling of r on the held-out
        stimuli) and ``"normalized_r"`` (r / ceiling).
    response_mean, response_std, response_max : buffers (n_targets,)
        Statistics of the predicted responses to the fitted (natural)
        stimuli: :func:`insilico.population_control` standardises with them.
    """

    def __init__(self, trunk: nn.Module, layers: Sequence[str], reduce: Any, n_features: int,
                 targets: Sequence[str], input_size: Sequence[int] | None = None):
        super().__init__()
        if reduce not in REDUCTIONS and not isinstance(reduce, (int, tuple, list)):
            raise InsilicoError(f"reduce must be None, 'mean', 'max', an int or (h, w) grid, not {reduce!r}")
        self.trunk = trunk
        self.layers = [str(layer) for layer in layers]
        self.reduce = tuple(reduce) if isinstance(reduce, list) else reduce
        self.targets = [str(t) for t in targets]
        self.readout = _linear(int(n_features), len(self.targets))
        if input_size is not None:
            self.input_size = tuple(int(s) for s in input_size)
        for name in ("response_mean", "response_std", "response_max"):
            self.register_buffer(name, torch.zeros(len(self.targets)))
        self.scores: dict = {}
        self._plan = None  # the trunk's Plan: where its forward pass may stop, learned on the first pass

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The (pooled, flattened, concatenated) trunk features ``(N, n_features)`` of ``images``."""
        if self._plan is None:  # the trunk's Probe; its pass stops after the layers, where the first pass learned
            self._plan = Plan(self.trunk)
        values = self._plan.read(self.layers, images, keep_graph=torch.is_grad_enabled())
        parts = [_pool(value, self.reduce, layer, self.trunk) for value, layer in zip(values, self.layers)]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted responses ``(N, n_targets)`` in the data's units (float32 for a float16/bfloat16 model: the
        readout is fitted and run in :func:`~insilico.performance.working_dtype`).

        Raises InsilicoError when the trunk's layers give another number of features than the readout takes
        (a trunk other than the one the predictor was fitted on)."""
        features = self.features(images)
        if features.shape[1] != self.readout.in_features:
            raise InsilicoError(f"the trunk's layers {self.layers} give {features.shape[1]} features (reduce="
                                f"{self.reduce!r}) but the readout takes {self.readout.in_features}: this predictor "
                                "was fitted on another network (use the one it was fitted on)")
        return self.readout(features.to(self.readout.weight.dtype))  # a half trunk's features, read in float32

    def target_index(self, targets) -> list[int]:
        """Indices of ``targets`` (ints, names, or None for all), checked."""
        if targets is None:
            return list(range(self.n_targets))
        if isinstance(targets, (int, str)) or torch.is_tensor(targets) and targets.ndim == 0:
            targets = [targets]
        out = []
        for t in (targets.tolist() if torch.is_tensor(targets) or isinstance(targets, np.ndarray) else targets):
            if isinstance(t, str):
                if t not in self.targets:
                    raise InsilicoError(f"no target named {t!r}; targets are {self.targets[:5]}... "
                                        f"({self.n_targets}); or give indices")
                out.append(self.targets.index(t))
            else:
                t = int(t)
                if not -self.n_targets <= t < self.n_targets:
                    raise InsilicoError(f"target {t} is out of range: the predictor has {self.n_targets} targets")
                out.append(t % self.n_targets)
        if not out:
            raise InsilicoError("no targets given")
        return out

    def table(self) -> dict:
        """The scores, one row per target: ``target`` (its name), held-out ``r`` and ``r2`` (with
        ``held_out > 0``), the chosen ``alpha``, and ``ceiling`` / ``normalized_r`` (with repetitions)."""
        n = len(self.targets)
        return {"target": [str(t) for t in self.targets],
                **{k: np.asarray(v) for k, v in self.scores.items() if np.ndim(v) == 1 and len(v) == n}}

    def to_pandas(self):
        """:meth:`table` as a ``pandas.DataFrame`` (pandas is an optional extra; see :func:`insilico.results.data_frame`)."""
        return data_frame(self.table(), "NeuralPredictor.to_pandas")

    def save(self, path) -> None:
        """Write the readout, statistics, scores and settings (not the trunk) to one file; see :meth:`load`."""
        blob = {"format": PREDICTOR_FORMAT, "kind": persistence.kind_name(NeuralPredictor), "layers": self.layers,
                "reduce": list(self.reduce) if isinstance(self.reduce, tuple) else self.reduce,
                "targets": self.targets, "input_size": list(getattr(self, "input_size", ()) or ()),
                "state": {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("trunk.")},
                "trunk": model_fingerprint(self.trunk),
                "scores": persistence.pack(self.scores), "settings": persistence.pack(getattr(self, "settings", {})),
                "versions": persistence.pack(persistence.versions())}
        torch.save(blob, path)

    @classmethod
    def load(cls, path, model: nn.Module | None = None, *, strict: bool = True) -> NeuralPredictor:
        """A predictor saved by :meth:`save`, on the trunk ``model`` (``weights_only`` load: no code is unpickled).

        The trunk's weights are not in the file (a predictor shares its network): pass the same
        model the predictor was fitted on, e.g. ``NeuralPredictor.load(path, insilico.models.load("minialex"))``.
        The file holds the trunk's :func:`insilico.identity.model_fingerprint`; another trunk is refused.
        ``strict=False`` is the explicit escape for a trunk you know is right although its fingerprint
        differs (the same weights in another dtype, a file saved before fingerprints were kept): the
        layers and feature widths are still checked. With the trunk's ``input_size`` known (saved by
        :func:`fit_predictor`), loading runs one blank image through the trunk to check the widths.

        Raises
        ------
        SavedFileError
            A missing, damaged or foreign file, a newer format, a class not on the allow-list, a
            readout that does not fit this version (the message names the file and the versions),
            layers the trunk lacks or whose features are not as wide as the readout (an edited file
            or another network); with ``strict``, a trunk whose fingerprint differs from the saved
            one, or a file that saved none (the message names the file and the differences).
        """
        if model is None:
            raise InsilicoError(
                "NeuralPredictor.load needs the network it was fitted on (the file holds the readout, not the "
                "trunk's weights): NeuralPredictor.load(path, model)")
        blob = persistence.read(path, "predictor")
        kind = blob.get("kind", persistence.kind_name(cls))
        if kind not in (persistence.kind_name(NeuralPredictor), _FORMER_KIND) or not isinstance(blob.get("state"), dict):
            raise SavedFileError(f"{path!r} is not a predictor saved by NeuralPredictor.save (it holds {kind!r}; "
                                 "read results with insilico.load)", path)
        persistence.check_format(blob, path, PREDICTOR_FORMAT, what="predictor")
        recorded = blob.get("versions")
        scores, settings = persistence.unpack(blob.get("scores", {}), path, recorded), \
            persistence.unpack(blob.get("settings", {}), path, recorded)
        try:
            reduce = tuple(blob["reduce"]) if isinstance(blob["reduce"], list) else blob["reduce"]
            weight = blob["state"]["readout.weight"]
            predictor = cls(model, blob["layers"], reduce, weight.shape[1], blob["targets"], blob["input_size"] or None)
            predictor.to(device_of(model), dtype_of(model))
            predictor.readout.to(working_dtype(dtype_of(model)))  # fitted in float32 for a half model
            keys = predictor.load_state_dict(blob["state"], strict=False)  # the trunk's weights are the model's
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise SavedFileError(f"{path!r} holds a predictor this insilico cannot rebuild ({type(e).__name__}: {e}; "
                                 f"{persistence.versions_text(persistence.unpack(recorded, path))})", path) from e
        missing = [k for k in keys.missing_keys if not k.startswith("trunk.")]
        if missing or keys.unexpected_keys:  # a readout of another version: never half-loaded
            raise SavedFileError(f"{path!r} holds a predictor of another insilico version (missing {missing}, unknown "
                                 f"{list(keys.unexpected_keys)}; "
                                 f"{persistence.versions_text(persistence.unpack(recorded, path))})", path)
        predictor.scores, predictor.settings = scores, settings
        _check_trunk(predictor, blob.get("trunk"), path, strict)
        return predictor

    def extra_repr(self) -> str:
        r = self.scores.get("r")
        score = f", median held-out r={float(np.nanmedian(r)):.3f}" if r is not None and len(r) else ""
        return f"layers={self.layers}, reduce={self.reduce!r}, targets={self.n_targets}{score}"


def _check_trunk(predictor: NeuralPredictor, saved: Any, path, strict: bool) -> None:
    """Refuse a loaded predictor whose trunk is not the one it was fitted on, or whose layers do not feed its
    readout (a file edited by hand): the message names the file. ``strict=False`` skips the fingerprint only."""
    path = str(path)
    if strict:
        if not isinstance(saved, dict) or "digest" not in saved:
            raise SavedFileError(f"{path!r} records no fingerprint of the network it was fitted on (saved by an older "
                                 "insilico, or edited), so this trunk cannot be checked: pass strict=False if you "
                                 "know it is the one", path)
        differences = fingerprint_differences(saved, model_fingerprint(predictor.trunk))
        if differences:
            text = "; ".join(d.replace("(folder)", "(file)") for d in differences)
            raise SavedFileError(f"{path!r} was fitted on another network than the one given ({text}): load it on "
                                 "the network it was fitted on (strict=False accepts this one anyway)", path)
    try:
        Probe(predictor.trunk).units(*predictor.layers)
    except UnitError as e:
        raise SavedFileError(f"{path!r} reads layers {predictor.layers} that the network given lacks ({e}): the "
                             "file was edited or fitted on another network", path) from None
    size = getattr(predictor, "input_size", None)
    if size:
        with session(predictor) as s:
            try:
                predictor(s.inputs(torch.zeros(1, *size)))
            except (InsilicoError, RuntimeError) as e:  # RuntimeError: an input_size the trunk does not take
                raise SavedFileError(f"{path!r} does not fit the network given: {e}", path) from None


class Ensemble(nn.Module):
    """The mean prediction of several predictors of the same targets (Walker et al. 2019 used ensembles).

    Images synthesized for an ensemble must drive every member, so they rely
    less on any one network's idiosyncrasies and transfer better to the brain.

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> a = NeuralPredictor(nn.Conv2d(3, 2, 3), [""], "mean", 2, ["n0"], (3, 8, 8))
    >>> b = NeuralPredictor(nn.Conv2d(3, 2, 3), [""], "mean", 2, ["n0"], (3, 8, 8))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> torch.allclose(Ensemble([a, b])(x), (a(x) + b(x)) / 2)
    True
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if not members:
            raise InsilicoError("an Ensemble needs at least one predictor")
        counts = {len(getattr(m, "targets", [])) for m in members}
        if len(counts) != 1:
            raise InsilicoError(f"ensemble members predict different numbers of targets: {sorted(counts)}")
        self.members = nn.ModuleList(members)
        self.targets = list(members[0].targets)
        if hasattr(members[0], "input_size"):
            self.input_size = members[0].input_size
        for name in ("response_mean", "response_std", "response_max"):
            self.register_buffer(name, torch.stack([getattr(m, name) for m in members]).mean(0))
        rs = [m.scores["r"] for m in members if "r" in getattr(m, "scores", {})]
        self.scores = {"member_r": np.stack(rs)} if len(rs) == len(members) else {}

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    target_index = NeuralPredictor.target_index

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(images) for m in self.members]).mean(0)


@dataclass(frozen=True)
class FitOptions(Options):
    """How :func:`fit_predictor` fits and scores its ridge readout, checked when built.

    Attributes
    ----------
    alphas : sequence of float
        Ridge penalties tried per target (default 1e-1 .. 1e6).
    cv : None, int or splitter
        Inner cross-validation for the alphas (default: exact leave-one-out).
    held_out : float
        Fraction of stimuli held out (seeded) to score the readout, in [0, 1), at least
        :data:`MIN_HELD_OUT` of them; the returned readout is refitted on all
        stimuli with the chosen alphas. 0: no held-out scores. A target whose
        held-out responses or predictions are constant scores NaN, with a
        warning (r is undefined there). Default 0.2.
    n_targets_batch : int, optional
        Targets solved together (memory).

    Example
    -------
    >>> FitOptions(held_out=0).held_out
    0
    >>> FitOptions(held_out=1.0)
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: held_out is a fraction in [0, 1), not 1.0
    """

    alphas: Sequence[float] = DEFAULT_ALPHAS
    cv: Any = None
    held_out: float = 0.2
    n_targets_batch: int | None = None

    def validate(self) -> FitOptions:
        """Check the held-out fraction; returns ``self``."""
        if not 0.0 <= self.held_out < 1.0:
            raise InsilicoError(f"held_out is a fraction in [0, 1), not {self.held_out}")
        return self


@register_tool("encoding", saves=False, follows_dtype=False)
def fit_predictor(
    model: nn.Module,
    stimuli: Any,
    responses,
    layers: str | Sequence[str],
    *,
    reduce: Any = None,
    targets: Sequence[str] | None = None,
    readout: str = "full",
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    options: FitOptions | None = None,
    **option_overrides,
) -> NeuralPredictor:
    """Fit a :class:`NeuralPredictor` of recorded responses from ``model``'s features.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images. It becomes the predictor's trunk (shared, not copied).
    stimuli : tensor (n_stimuli, C, H, W), array, StimulusSet or Dataset
        Read in batches of ``batch_size``.
    responses : tensor or array (n_stimuli, n_targets), or (n_repetitions, n_stimuli, n_targets), or NeuralData
        Measured responses; with repetitions the readout is fitted to their
        mean and ``scores`` gets a noise ceiling. Neural data (:func:`insilico.neural.read_neural`) are
        aligned to the stimuli by their ids and name the targets by their neuroid ids.
    layers : address or list of addresses
        Layers whose features the readout reads (e.g. ``["features.8"]``).
    reduce : None, "mean", "max", int or (h, w)
        Pooling of (N, C, H, W) features: None (default) keeps every position
        (the kernel form of ridge keeps this cheap while features outnumber
        stimuli); "mean"/"max" over positions; an int ``g``: average-pool to
        a ``g x g`` grid (memory for large layers). Channels-last stages
        (Swin) and token layers (ViT: over the tokens) are pooled per channel
        too (their layout from :mod:`insilico.layers`).
    targets : list of str, optional
        Target names (default ``"0"``, ``"1"``, ...).
    batch_size : int
        Stimuli per forward pass while recording features.
    seed : int
        Seeds the held-out split and the ceiling's splits.
    readout : {"full", "factorized"}
        "full" (default): a weight per feature. "factorized": per target and
        (N, C, H, W) layer, the ridge weights are cut to their best rank-1
        spatial x channel approximation (a receptive-field mask times channel
        weights, as in Klindt et al. 2017), refined by a few passes of
        alternating least squares (channels given the mask, mask given the
        channels) on the fitted stimuli, and the gain refitted: far fewer
        effective parameters, so less noise for gradients to exploit.
    progress : bool
        Progress bars (default True).
    options : FitOptions, optional
        The ridge fit: ``alphas``, ``cv``, ``held_out``, ``n_targets_batch``.
    **option_overrides
        Any field of :class:`FitOptions`, on top of ``options`` (``held_out=0``).

    Returns
    -------
    NeuralPredictor
        ``.scores`` holds held-out ``"r"``, ``"r2"``, ``"alpha"`` (and ``"ceiling"``, ``"normalized_r"``).

    Raises
    ------
    InsilicoError
        Fewer than ``MIN_FIT + MIN_HELD_OUT`` (6) stimuli with ``held_out > 0``, or
        fewer than ``MIN_FIT`` (3) with ``held_out=0``; unknown layers; responses
        that do not match the stimuli or are not finite.
    """
    from ..recording import stimulus_source

    options = FitOptions.from_kwargs("fit_predictor", None, options, **option_overrides)
    alphas, cv, held_out, n_targets_batch = options.alphas, options.cv, options.held_out, options.n_targets_batch
    layers = [layers] if isinstance(layers, str) else [str(layer) for layer in layers]
    if not layers:
        raise InsilicoError("fit_predictor needs at least one layer, e.g. layers=['features.8']")
    Probe(model).units(*layers)  # unknown addresses fail now
    source = stimulus_source(stimuli, name="stimuli", model=model)
    if isinstance(responses, NeuralData):  # the rows of these stimuli, in their order; targets named by neuroid
        responses = responses.aligned_to(source)
        targets = responses.neuroid_ids if targets is None else targets
    y, reps = _response_matrix(responses)
    n = len(source)
    if n == 0:
        raise StimulusError("fit_predictor: the stimulus set is empty: give at least one stimulus")
    if y.shape[0] != n:
        raise InsilicoError(f"{n} stimuli but responses for {y.shape[0]}: they must match (axis 0, or 1 with repetitions)")
    names = [str(t) for t in targets] if targets is not None else [str(i) for i in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise InsilicoError(f"{len(names)} target names for {y.shape[1]} targets")
    if readout not in ("full", "factorized"):
        raise InsilicoError(f"readout must be 'full' or 'factorized', not {readout!r}")
    n_test = _held_out_count(n, held_out)

    predictor = NeuralPredictor(model, layers, reduce, 1, names, getattr(model, "input_size", None))
    feats, blocks, input_size = _record_features(predictor, source, batch_size, progress, readout == "factorized")
    feats = feats.to(working_dtype(feats.dtype))  # a half model's features are fitted (and read out) in float32
    y = y.to(feats.device, feats.dtype)
    x, mean, scale = _standardized(feats)
    del feats
    ridge = dict(alphas=alphas, cv=cv, n_targets_batch=n_targets_batch, progress=progress)
    factorize = None if readout == "full" else (lambda x, y, coef: _factorize(x, y, coef, blocks, scale))
    scores: dict = {}
    if held_out > 0:
        alpha = _held_out_scores(x, y, reps, n_test, seed, ridge, factorize, scores)
        coef, intercept = solve_ridge(x, y, alpha, n_targets_batch=n_targets_batch)
    else:
        fitted = RidgeCV(**ridge).fit(x, y)
        alpha, coef, intercept = fitted._alpha.reshape(-1), fitted._coef, fitted._intercept
    if factorize is not None:
        coef, intercept = factorize(x, y, coef)
    scores["alpha"] = alpha.cpu().numpy()
    n_features = _fold_readout(predictor, x @ coef + intercept, coef, intercept, mean, scale)
    predictor.input_size = tuple(input_size)
    predictor.scores = scores
    predictor.settings = {"layers": layers, "reduce": reduce, "alphas": [float(a) for a in alphas],
                          "cv": cv if isinstance(cv, (int, type(None))) else repr(cv), "held_out": held_out,
                          "readout": readout, "n_stimuli": n, "n_features": n_features, "seed": seed,
                          "repetitions": None if reps is None else int(reps.shape[0])}
    return predictor


def _response_matrix(responses) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(y, reps)``: the responses as (n_stimuli, n_targets) float (their mean over repetitions), and the
    repetitions (n_repetitions, n_stimuli, n_targets) or None; InsilicoError for other shapes or NaN/inf."""
    y = responses.detach().cpu() if torch.is_tensor(responses) else torch.as_tensor(np.asarray(responses))
    y = y.to(torch.float64 if y.dtype == torch.float64 else torch.float32)
    reps = None
    if y.ndim == 3:
        reps, y = y, y.mean(0)
    elif y.ndim == 1:
        y = y[:, None]
    elif y.ndim != 2:
        raise InsilicoError(f"responses must be (n_stimuli, n_targets) or (n_repetitions, n_stimuli, n_targets), "
                            f"got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise InsilicoError("the responses contain NaN or inf; remove or impute them first")
    return y, reps


def _record_features(predictor: NeuralPredictor, source, batch_size: int, progress: bool, factorized: bool):
    """``(features (n, F), blocks, input_size)``: the predictor's features of every stimulus, in the one batch
    loop; ``blocks`` the layers' (C, H, W) blocks for a factorized readout (else None); ``input_size`` the
    model's, else the stimuli's (C, H, W)."""
    from ..recording import batches

    model, n = predictor.trunk, len(source)
    input_size, feats, blocks = getattr(model, "input_size", None), None, None
    with session(model) as s:
        for a, batch in batches(source, batch_size, s.device, s.dtype, progress, "features"):  # the one batch loop
            if input_size is None:
                input_size = tuple(batch.shape[1:])
            f = predictor.features(batch)
            if feats is None:
                blocks = _blocks(predictor, batch[:1]) if factorized else None
                feats = torch.empty(n, f.shape[1], dtype=f.dtype, device=f.device)
            feats[a:a + len(batch)] = f
    return feats, blocks, input_size


def _standardized(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, mean, scale)`` with ``x = (feats - mean) * scale``: the std floored at a tenth of the mean std, so
    near-constant features (dead positions) are not blown up into large raw weights that synthesized images
    could exploit."""
    mean, std = feats.mean(0), feats.std(0)
    scale = 1.0 / std.clamp_min(0.1 * std.mean().clamp_min(1e-30))
    return (feats - mean) * scale, mean, scale


def _held_out_scores(x, y, reps, n_test: int, seed: int, ridge: dict, factorize, scores: dict) -> torch.Tensor:
    """Fit on a seeded split, score the held-out stimuli into ``scores`` (``r``, ``r2``; ``ceiling`` and
    ``normalized_r`` with repetitions); returns the alphas chosen per target."""
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(x.shape[0], generator=gen)
    test, train = order[:n_test].to(x.device), order[n_test:].to(x.device)
    fitted = RidgeCV(**ridge).fit(x[train], y[train])
    coef, intercept = fitted._coef, fitted._intercept
    if factorize is not None:
        coef, intercept = factorize(x[train], y[train], coef)
    pred = x[test] @ coef + intercept
    scores["r"] = pearson_r(y[test], pred).cpu().numpy()
    scores["r2"] = r2_score(y[test], pred).cpu().numpy()
    if reps is not None and reps.shape[0] >= 2:
        ceiling = split_half_ceiling(reps[:, test.cpu()], seed=seed)
        scores["ceiling"] = ceiling.r
        scores["normalized_r"] = np.where(ceiling.r >= 0.1, scores["r"] / np.where(ceiling.r > 0, ceiling.r, 1), np.nan)
    return fitted._alpha.reshape(-1)


def _fold_readout(predictor: NeuralPredictor, predicted, coef, intercept, mean, scale) -> int:
    """Fold the standardisation into one linear readout (``w' = w * scale``, ``b' = b - w' . mean``) and set the
    predictor's response statistics from ``predicted`` (n, targets); returns the number of features."""
    weight = (coef * scale[:, None]).T
    bias = intercept - weight @ mean
    linear = _linear(weight.shape[1], weight.shape[0], weight.device, weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    predictor.readout = linear
    predictor.response_mean = predicted.mean(0).detach()
    predictor.response_std = predicted.std(0).clamp_min(1e-12).detach()
    predictor.response_max = predicted.amax(0).detach()
    return int(weight.shape[1])


def _held_out_count(n: int, held_out: float) -> int:
    """Stimuli held out to score the readout (at least MIN_HELD_OUT, or 0); InsilicoError if too few are left to fit."""
    n_test = max(MIN_HELD_OUT, int(round(held_out * n))) if held_out > 0 else 0
    if n - n_test >= MIN_FIT:
        return n_test
    if held_out == 0:
        raise InsilicoError(f"fit_predictor got {n} stimuli; with held_out=0 it needs at least {MIN_FIT} to fit the "
                            "readout. Record more stimuli")
    raise InsilicoError(
        f"fit_predictor got {n} stimuli; with held_out={held_out} it needs at least {MIN_FIT + MIN_HELD_OUT}: "
        f"{MIN_HELD_OUT} held out to score the readout (a correlation over 2 stimuli is +-1 whatever the fit) and "
        f"{MIN_FIT} to fit it. Record more stimuli, or pass held_out=0 to fit without held-out scores")


def _blocks(predictor: NeuralPredictor, one: torch.Tensor) -> list[tuple[int, int, int]]:
    """(offset, channels, positions) of each layer's block of the flattened features."""
    probe = Probe(predictor.trunk)
    with torch.no_grad(), probe.record(*predictor.layers, stop=True) as rec:
        rec.forward(one)
        blocks, offset = [], 0
        for layer in predictor.layers:
            value = need_tensor(rec._tap(layer).unit, rec[layer])
            pooled = _pool(value, predictor.reduce, layer, predictor.trunk)
            if value.ndim == 4 and predictor.reduce not in ("mean", "max") \
                    and unit_layout(predictor.trunk, layer, value.shape[1:]) == "map":
                c = value.shape[1]
                blocks.append((offset, c, pooled.shape[1] // c))
            offset += pooled.shape[1]
    if not blocks:
        raise InsilicoError("readout='factorized' needs (N, C, H, W) layers and reduce=None or a grid")
    return blocks


def _factorize(x: torch.Tensor, y: torch.Tensor, coef: torch.Tensor, blocks, scale: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-1 (channel x position) weights on the raw features per target and block; gains refitted by least squares.

    ``coef`` acts on standardised features ``x`` (raw features times ``scale``); the cut is made on the
    raw-feature weights ``coef * scale`` and mapped back.
    """
    coef = coef * scale[:, None]
    raw = x / scale  # centred raw features (x is standardised)
    yc = y - y.mean(0)
    for offset, c, positions in blocks:
        w = coef[offset:offset + c * positions].T.reshape(-1, c, positions)  # (targets, C, positions)
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, v = u[:, :, 0] * s[:, :1], vh[:, 0, :]
        block = raw[:, offset:offset + c * positions].reshape(len(raw), c, positions)
        step = max(1, int(2**25 // (len(raw) * max(c, positions))))  # targets per chunk (memory)
        for a in range(0, len(u), step):  # refine by alternating least squares: channels given space, and back
            uk, vk, yk = u[a:a + step], v[a:a + step], yc[:, a:a + step].T
            for _ in range(ALS_ITERATIONS):
                uk = _ridge_lstsq(torch.einsum("ncp,kp->knc", block, vk), yk)
                vk = _ridge_lstsq(torch.einsum("ncp,kc->knp", block, uk), yk)
            u[a:a + step], v[a:a + step] = uk, vk
        coef[offset:offset + c * positions] = (u[:, :, None] * v[:, None, :]).reshape(-1, c * positions).T
    coef = coef / scale[:, None]
    pred = x @ coef
    pc, yc = pred - pred.mean(0), y - y.mean(0)
    gain = (pc * yc).sum(0) / pc.pow(2).sum(0).clamp_min(1e-30)
    coef = coef * gain
    return coef, y.mean(0) - x.mean(0) @ coef


def _ridge_lstsq(design: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Per target ``k``: weights ``(d,)`` minimising ``|design[k] w - y[k]|^2 + ridge * trace/d * |w|^2``."""
    gram = design.transpose(1, 2) @ design  # (K, d, d)
    d = gram.shape[-1]
    lam = ridge * gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-30)
    gram = gram + lam[:, None, None] * torch.eye(d, dtype=gram.dtype, device=gram.device)
    rhs = (design.transpose(1, 2) @ y[:, :, None])[:, :, 0]
    return torch.linalg.solve(gram, rhs)


def _linear(n_in: int, n_out: int, device=None, dtype=None) -> nn.Linear:
    """A zero ``nn.Linear``, built without its random init (which would draw from torch's global generator)."""
    linear = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, device=device or "cpu", dtype=dtype)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    return linear


def _pool(value: torch.Tensor, reduce, layer: str, model: nn.Module | None = None) -> torch.Tensor:
    """``layer``'s features ``(N, F)``: pooled over positions (``reduce``), channels first
    (``"mean"``/``"max"``: :func:`insilico.layout.pool`, a Swin stage over ``H, W``, a ViT block over its
    patch tokens; a grid: :func:`insilico.layers.channels_first`, maps and channels-last stages)."""
    if not torch.is_tensor(value):
        raise InsilicoError(f"{layer} does not output a tensor; name a tensor part, e.g. '{layer}:0'")
    if value.ndim < 2:
        raise InsilicoError(f"{layer} gives shape {tuple(value.shape)}; a readout needs (N, features, ...)")
    if value.ndim > 2 and reduce is not None:
        if model is not None and reduce in ("mean", "max"):  # the one pooling rule (ViT: the patch tokens)
            return pool(value, reduce, *read_layout(model, layer, tuple(value.shape[1:])), layer)
        if model is not None:
            value = channels_first(value, unit_layout(model, layer, value.shape[1:]))
        if reduce == "mean":
            value = value.flatten(2).mean(2)
        elif reduce == "max":
            value = value.flatten(2).amax(2)
        else:
            grid = (reduce, reduce) if isinstance(reduce, int) else tuple(reduce)
            if value.ndim != 4:
                raise InsilicoError(f"a pooling grid needs (N, C, H, W) features; {layer} gives {tuple(value.shape)}")
            value = F.adaptive_avg_pool2d(value, grid)
    return value.flatten(1)


__all__ = ["DEFAULT_ALPHAS", "Ensemble", "FitOptions", "NeuralPredictor", "fit_predictor"]
