"""Render ``alexnet_conv1.png``: the bundled MiniAlexNet's first-layer filters next to a random init.

Run: ``python gallery/readme/alexnet_conv1.py`` (a few seconds on a CPU).
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import insilico.models as models
from insilico.models.filters import orientedness, plot_filters

HERE = os.path.dirname(os.path.abspath(__file__))

trained = models.load("minialex").features[0].weight
torch.manual_seed(0)
random = models.MiniAlexNet().features[0].weight
fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
for ax, w, title in ((axes[0], trained, "trained (minialex features.0)"), (axes[1], random, "random init")):
    r = orientedness(w)
    plot_filters(w, ncols=8, ax=ax)
    ax.set_title(f"{title}\norientedness median {r.median():.2f}, {float((r > 0.4).float().mean()):.0%} > 0.4",
                 fontsize=9)
fig.tight_layout()
fig.savefig(os.path.join(HERE, "alexnet_conv1.png"), dpi=130)
print("wrote", os.path.join(HERE, "alexnet_conv1.png"))
