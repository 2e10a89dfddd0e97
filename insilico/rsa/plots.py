"""Figures of RDM comparisons: bars with confidence intervals and the noise ceiling.

RDM heat maps and MDS plots are methods of :class:`~insilico.rsa.RDM`
(:meth:`~insilico.rsa.RDM.plot`, :meth:`~insilico.rsa.RDM.mds`); every plot takes
``ax=`` and returns the Figure.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def plot_comparison(results, ax=None, ceiling: tuple | None = None, title: str | None = None,
                    ylabel: str | None = None, color: str = "tab:blue"):
    """Bar plot of model-to-brain similarities with error bars and the noise ceiling drawn.

    Parameters
    ----------
    results : BootstrapResult, or dict name -> float (or (value, ci_low, ci_high))
        One bar per model (layer).
    ax : matplotlib Axes, optional
    ceiling : NoiseCeiling or (lower, upper), optional
        Drawn as a grey band (default: the result's own ceiling).

    Returns
    -------
    matplotlib Figure
    """
    fig, ax = _axes(ax, (max(3.0, 0.45 * _count(results) + 1.5), 3.2))
    if not isinstance(results, Mapping):  # a BootstrapResult
        names, values = results.names, results.estimate
        err = np.abs(results.ci.T - values[None])
        ceiling = ceiling if ceiling is not None else results.ceiling
        ylabel = ylabel or f"RDM similarity ({results.method})"
    else:
        names = list(results)
        vals = [np.atleast_1d(np.asarray(v, dtype=float)) for v in results.values()]
        values = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1], v[2] - v[0]] if len(v) == 3 else [0, 0] for v in vals]).T
    x = np.arange(len(names))
    if ceiling is not None:
        lo, hi = tuple(ceiling)
        ax.axhspan(lo, hi, color="0.8", zorder=0, label="noise ceiling")
    ax.bar(x, values, color=color, zorder=2)
    if np.any(err):
        ax.errorbar(x, values, yerr=err, fmt="none", ecolor="k", capsize=2, zorder=3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel or "RDM similarity")
    if ceiling is not None:
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _count(results) -> int:
    return len(results) if isinstance(results, Mapping) else len(results.names)


def _axes(ax, size):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)  # returned, not shown: notebooks display the returned Figure
    return fig, ax
