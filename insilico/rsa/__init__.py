"""Representational similarity analysis: RDMs, RDM comparison, bootstrap, noise ceilings.

Responses flow in as they come out of a probe: a :class:`~insilico.Recording`
(one RDM per unit, many layers in one call), a dict of tensors, or one tensor or
array (stimuli, ...) whose trailing axes are flattened into features. The work
runs on the device of the input tensors (or ``device=``), in float64 unless
``dtype=`` says otherwise; RDMs are small and come back as :class:`RDM` objects
holding a condensed vector on that device. An :class:`RDM` is an insilico result
(:class:`insilico.results.Result`): ``rdm.save(path)``, ``RDM.load(path)``.

Dissimilarities (``rdm(..., method=)``)

=============== ================================================================
correlation     1 - Pearson r between the two response patterns (scipy's ``correlation``)
cosine          1 - cosine similarity (scipy's ``cosine``)
euclidean       plain Euclidean distance ||x_i - x_j|| (scipy's ``euclidean``)
sqeuclidean     squared Euclidean; with ``per_feature=True`` divided by the number
                of features, which is what rsatoolbox calls "euclidean"
crossnobis      cross-validated squared Mahalanobis distance over runs, with a
                shrinkage noise covariance (Walther et al. 2016); divided by the
                number of features like rsatoolbox's, unless ``per_feature=False``
=============== ================================================================

Comparisons (``compare(a, b, method=)``): ``spearman``, ``kendall_a`` (Kendall's
tau-a), ``rho_a`` (Spearman's rho-a, the expected rho under random tie
breaking), ``pearson``, ``cosine``, ``whitened_pearson`` and
``whitened_cosine`` (Diedrichsen et al. 2021; rsatoolbox's ``corr_cov`` and
``cosine_cov`` for i.i.d. patterns). rsatoolbox's names (``corr``, ``tau-a``,
``rho-a``, ``corr_cov``, ``cosine_cov``) are accepted as aliases.

Modules, one concept each: :mod:`~insilico.rsa.rdm` (the RDM object, computing
RDMs), :mod:`~insilico.rsa.crossnobis` (crossnobis, noise covariances),
:mod:`~insilico.rsa.compare` (comparing RDMs), :mod:`~insilico.rsa.noise_ceiling`,
:mod:`~insilico.rsa.bootstrap` (inference), :mod:`~insilico.rsa.models` (model
RDMs through a Probe), :mod:`~insilico.rsa.time_resolved` (model steps x brain
times), :mod:`~insilico.rsa.plots`, :mod:`~insilico.rsa.arrays`
(condensed vectors, ranks). Every public name is importable from ``insilico.rsa``.

Why by hand: rsatoolbox, the reference, is NumPy-only and forms the features x
features noise covariance (657 GiB for one crossnobis RDM in a user report);
here every RDM is one Gram matrix on the device, and the shrinkage noise
precision is applied through the Woodbury identity, never as a P x P matrix
when there are fewer residuals than features.

Example
-------
>>> import torch
>>> from insilico import rsa
>>> x = torch.randn(6, 20, dtype=torch.float64)
>>> r = rsa.rdm(x, "correlation")
>>> tuple(r.matrix.shape), tuple(r.vector.shape)
((6, 6), (15,))
>>> round(rsa.compare(r, r, "spearman"), 6)
1.0
"""
from .bootstrap import BootstrapResult, _similarity_masked, bootstrap  # noqa: F401 (_similarity_masked: tests)
from .compare import COMPARE_METHODS, compare, compare_all
from .crossnobis import NOISE_METHODS, noise_covariance
from .models import layer_units, model_rdms
from .noise_ceiling import NoiseCeiling, noise_ceiling
from .plots import plot_comparison
from .rdm import RDM, RDM_METHODS, mds_coordinates, rdm
from .time_resolved import EPOCHS_METHODS, TimeResolvedResult, epochs_rdms, simulate_brain, time_resolved

__all__ = ["RDM", "rdm", "compare", "compare_all", "noise_ceiling", "NoiseCeiling", "bootstrap", "BootstrapResult",
           "plot_comparison", "mds_coordinates", "time_resolved", "TimeResolvedResult", "simulate_brain", "epochs_rdms", "EPOCHS_METHODS", "noise_covariance", "layer_units", "model_rdms", "RDM_METHODS",
           "COMPARE_METHODS", "NOISE_METHODS"]
