"""The result of an attack (:func:`insilico.pgd`, :func:`insilico.fgsm`): images, success, norms, per epsilon.

An :class:`AdversarialResult` follows the one result protocol
(:class:`insilico.results.Result`): ``save(path)`` / ``AdversarialResult.load(path)``
(``weights_only``), ``concat`` of the chunks of one job, ``plot(ax=)``, and
``check(model)``, which re-evaluates success on a model. Arrays have a
leading epsilon axis ``(E, N, ...)``; the sample axis is the next one.

Example
-------
>>> import os, tempfile, torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> r = insilico.pgd(model, torch.rand(4, 3, 2, 2), eps=0.1, steps=3, progress=False)
>>> path = os.path.join(tempfile.mkdtemp(), "pgd.pt")
>>> r.save(path)
>>> back = AdversarialResult.load(path)
>>> torch.equal(back.images, r.images), bool((back.check(model) == r.success).all())
(True, True)
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Sequence

import torch
from torch import nn

from .. import evaluate
from ..errors import InsilicoError
from ..plan import Plan
from ..results import Result, join
from ..synthesis.result import SynthesisResult


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256, plan: Plan | None = None) -> torch.Tensor:
    """The model's predicted class (N,) for ``images`` (N, C, H, W), on the CPU: the argmax of
    :func:`insilico.evaluate.predict` (batches, eval mode; ``plan``: the call's :class:`~insilico.plan.Plan`)."""
    return evaluate.predict(model, images, batch_size=batch_size, plan=plan).argmax(dim=1)


@dataclasses.dataclass
class AdversarialResult(Result):
    """Adversarial images and a per-sample, per-epsilon success report.

    Arrays have a leading epsilon axis ``(E, N, ...)``; when ``eps`` was one
    number that axis is dropped from the public attributes (``images`` is
    then (N, C, H, W) and ``success`` (N,)). ``result.at(eps)`` picks one
    epsilon.

    Attributes
    ----------
    images : tensor ([E,] N, C, H, W)
        Adversarial images in [0, 1].
    success : bool tensor ([E,] N)
        Class attacks: prediction != label (untargeted) or == target
        (targeted). Objective attacks: objective reached ``target_value``
        (or, without one, went up from the clean image).
    prediction, confidence : tensors ([E,] N)
        Predicted class and its softmax probability on the adversarial
        images (when the model outputs logits; else -1 / NaN).
    objective : tensor ([E,] N)
        The attack objective on the adversarial images.
    linf, l2 : tensors ([E,] N)
        Perturbation norms.
    clean, labels, target : the inputs (``labels``/``target`` may be None).
    clean_prediction, clean_confidence, clean_objective : tensors (N,)
    eps : list of float
    norm : str
    synthesis : SynthesisResult
        The engine's result (all restarts; traces, steps, stop reasons).

    Images and clean images keep the model's dtype (float64 in, float64 out);
    every tensor is on the model's device.
    """

    #: Fields with the sample axis first (joined by :meth:`concat`).
    sample_fields: ClassVar[tuple[str, ...]] = ("clean", "labels", "target", "clean_prediction", "clean_confidence",
                                                "clean_objective")
    #: Fields shaped (E, N, ...): the sample axis is the second one.
    eps_fields: ClassVar[tuple[str, ...]] = ("all_images", "all_success", "all_prediction", "all_confidence",
                                             "all_objective", "steps_taken")

    eps_list: list
    norm: str
    clean: torch.Tensor
    labels: torch.Tensor | None
    target: torch.Tensor | None
    all_images: torch.Tensor
    all_success: torch.Tensor
    all_prediction: torch.Tensor
    all_confidence: torch.Tensor
    all_objective: torch.Tensor
    clean_prediction: torch.Tensor
    clean_confidence: torch.Tensor
    clean_objective: torch.Tensor
    steps_taken: torch.Tensor
    synthesis: SynthesisResult | None
    settings: dict
    scalar: bool = False
    classes: list | None = None

    @classmethod
    def concat(cls, results: Sequence[AdversarialResult]) -> AdversarialResult:
        """Join the results of consecutive chunks of images of one attack (same epsilons)."""
        results = list(results)
        if not results:
            raise InsilicoError("AdversarialResult.concat needs at least one result")
        if any(r.eps_list != results[0].eps_list for r in results):
            raise InsilicoError("only results of the same epsilons can be joined: "
                                f"{sorted({tuple(r.eps_list) for r in results})}")
        if len(results) == 1:
            return results[0]
        joined = {name: join([getattr(r, name) for r in results]) for name in cls.sample_fields}
        joined.update({name: torch.cat([getattr(r, name) for r in results], dim=1) for name in cls.eps_fields})
        syn = [r.synthesis for r in results]
        joined["synthesis"] = None if any(s is None for s in syn) else SynthesisResult.concat(syn)
        return dataclasses.replace(results[0], **joined)

    def check(self, model: nn.Module, batch_size: int = 256) -> torch.Tensor:
        """Success ([E,] N) re-evaluated on ``model`` from the saved images (class attacks).

        Untargeted: the model's prediction differs from the label (or, without
        labels, from its prediction on the clean image); targeted: it equals
        the target. Equal to :attr:`success` when ``model`` is the attacked one.

        Raises
        ------
        InsilicoError
            For attacks on an objective (only its description is saved: evaluate
            it on :attr:`images` yourself).
        """
        if self.settings.get("objective"):
            raise InsilicoError(f"this attack maximized {self.settings['objective']}, which is not saved with the "
                                "result: evaluate that objective on result.images to re-check it")
        e, n = self.all_images.shape[:2]
        pred = predict(model, self.all_images.flatten(0, 1), batch_size).view(e, n)
        if self.target is not None:
            success = pred == self.target.to(pred.device)[None]
        else:
            ref = self.labels if self.labels is not None else predict(model, self.clean, batch_size)
            success = pred != ref.to(pred.device)[None]
        return self._view(success)

    def _view(self, x):
        return x[0] if self.scalar else x

    @property
    def eps(self):
        return self.eps_list[0] if self.scalar else list(self.eps_list)

    @property
    def images(self):
        return self._view(self.all_images)

    @property
    def success(self):
        return self._view(self.all_success)

    @property
    def prediction(self):
        return self._view(self.all_prediction)

    @property
    def confidence(self):
        return self._view(self.all_confidence)

    @property
    def objective(self):
        return self._view(self.all_objective)

    @property
    def perturbation(self) -> torch.Tensor:
        """``images - clean``."""
        return self.images - (self.clean if self.scalar else self.clean[None])

    @property
    def all_linf(self) -> torch.Tensor:
        return (self.all_images.double() - self.clean[None].double()).flatten(2).abs().amax(dim=2)

    @property
    def all_l2(self) -> torch.Tensor:
        return (self.all_images.double() - self.clean[None].double()).flatten(2).norm(dim=2)

    @property
    def linf(self):
        return self._view(self.all_linf)

    @property
    def l2(self):
        return self._view(self.all_l2)

    @property
    def success_rate(self):
        """Fraction of successful samples (a float, or a list per epsilon)."""
        rates = self.all_success.float().mean(dim=1).tolist()
        return rates[0] if self.scalar else rates

    def at(self, eps: float) -> AdversarialResult:
        """The result for one of the epsilons."""
        matches = [k for k, e in enumerate(self.eps_list) if math.isclose(e, float(eps), rel_tol=1e-9)]
        if not matches:
            raise InsilicoError(f"eps={eps} was not attacked; eps: {self.eps_list}")
        k = matches[0]
        pick = lambda x: x[k: k + 1]
        return dataclasses.replace(
            self, eps_list=[self.eps_list[k]], all_images=pick(self.all_images), all_success=pick(self.all_success),
            all_prediction=pick(self.all_prediction), all_confidence=pick(self.all_confidence),
            all_objective=pick(self.all_objective), steps_taken=pick(self.steps_taken), scalar=True)

    def report(self) -> list[dict]:
        """One dict per epsilon: success rate, perturbation norms, confidences, steps (JSON-able).

        Example
        -------
        >>> import insilico
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
        >>> r = insilico.fgsm(model, torch.rand(5, 3, 1, 1), eps=0.5, progress=False)
        >>> row = r.report()[0]
        >>> row["eps"], row["linf_max"] <= 0.5, 0.0 <= row["success_rate"] <= 1.0
        (0.5, True, True)
        """
        out = []
        linf, l2 = self.all_linf, self.all_l2
        for k, eps in enumerate(self.eps_list):
            row = {
                "eps": eps, "norm": self.norm, "n": int(self.clean.shape[0]),
                "success_rate": float(self.all_success[k].float().mean()),
                "linf_mean": float(linf[k].mean()), "linf_max": float(linf[k].max()),
                "l2_mean": float(l2[k].mean()), "l2_max": float(l2[k].max()),
                "confidence_mean": float(self.all_confidence[k].nanmean()),
                "clean_confidence_mean": float(self.clean_confidence.nanmean()),
                "objective_mean": float(self.all_objective[k].mean()),
                "clean_objective_mean": float(self.clean_objective.mean()),
                "steps_mean": float(self.steps_taken[k].float().mean()),
            }
            if self.labels is not None:
                row["clean_accuracy"] = float((self.clean_prediction == self.labels).float().mean())
                row["accuracy"] = float((self.all_prediction[k] == self.labels).float().mean())
            out.append(row)
        return out

    def per_sample(self) -> list[dict]:
        """One dict per (epsilon, image): success, predictions, confidences, norms (JSON-able)."""
        linf, l2 = self.all_linf, self.all_l2
        rows = []
        for k, eps in enumerate(self.eps_list):
            for i in range(self.clean.shape[0]):
                rows.append({
                    "eps": eps, "index": i, "success": bool(self.all_success[k, i]),
                    "label": None if self.labels is None else int(self.labels[i]),
                    "target": None if self.target is None else int(self.target[i]),
                    "clean_prediction": int(self.clean_prediction[i]),
                    "prediction": int(self.all_prediction[k, i]),
                    "clean_confidence": float(self.clean_confidence[i]), "confidence": float(self.all_confidence[k, i]),
                    "clean_objective": float(self.clean_objective[i]), "objective": float(self.all_objective[k, i]),
                    "linf": float(linf[k, i]), "l2": float(l2[k, i]), "steps": int(self.steps_taken[k, i]),
                })
        return rows

    def _name(self, c: int) -> str:
        if c < 0:
            return "-"
        return self.classes[c] if self.classes and c < len(self.classes) else str(c)

    def plot(self, ax=None, n: int = 6, eps: float | None = None, gain: float | None = None):
        """Rows of clean image | perturbation (amplified, grey = 0) | adversarial image, titled with predictions.

        Parameters
        ----------
        n : int
            How many images (default 6).
        eps : float, optional
            Which epsilon (default: the largest).
        ax : matplotlib Axes, optional
            Draw the mosaic into this axes.
        gain : float, optional
            Perturbation shown as ``0.5 + gain * delta`` (default: 0.5 / max |delta|).

        Returns
        -------
        matplotlib Figure
        """
        from .. import plot

        k = self.eps_list.index(eps) if eps is not None else int(torch.tensor(self.eps_list).argmax())
        n = min(n, self.clean.shape[0])
        clean, adv = self.clean[:n].float().cpu(), self.all_images[k, :n].float().cpu()
        delta = adv - clean
        g = gain if gain is not None else 0.5 / max(float(delta.abs().max()), 1e-12)
        tiles, titles = [], []
        for i in range(n):
            tiles += [clean[i], (0.5 + g * delta[i]).clamp(0, 1), adv[i]]
            truth = "" if self.labels is None else f"y={self._name(int(self.labels[i]))}: "
            titles += [f"{truth}{self._name(int(self.clean_prediction[i]))} {float(self.clean_confidence[i]):.2f}",
                       f"x{g:.3g} eps={self.eps_list[k]:.3g}",
                       f"{self._name(int(self.all_prediction[k, i]))} {float(self.all_confidence[k, i]):.2f}"
                       + (" ✓" if bool(self.all_success[k, i]) else " ✗")]
        return plot.image_grid(torch.stack(tiles), titles=titles, ncols=3, ax=ax)

    def plot_success(self, ax=None):
        """Success rate against epsilon; returns the Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(3.5, 2.8))
        rates = self.all_success.float().mean(dim=1).cpu().numpy()
        ax.plot(self.eps_list, rates, "o-")
        ax.set_xlabel(f"eps (L{'∞' if self.norm == 'inf' else '2'})")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        return ax.figure

    def __repr__(self) -> str:
        rates = ", ".join(f"{e:.4g}: {r:.0%}" for e, r in zip(self.eps_list, self.all_success.float().mean(1).tolist()))
        return f"AdversarialResult({self.clean.shape[0]} images, L{self.norm}, success {{{rates}}})"



__all__ = ["AdversarialResult"]
