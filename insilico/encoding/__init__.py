"""Encoding models: from a network's features to neural responses, and predictors that are networks.

=================== ===========================================================
module              concept
=================== ===========================================================
ridge               :class:`RidgeCV` (a ridge penalty per target, one
                    eigendecomposition per fold for every alpha), the solvers,
                    scores (:func:`r2_score`, :func:`pearson_r`), noise
                    ceilings (:func:`split_half_ceiling`), :func:`cross_validate`
                    and its :class:`EncodingResult`
predictor           :func:`fit_predictor`: a network's layers plus a fitted
                    ridge readout as one ``nn.Module``
                    (:class:`NeuralPredictor`), and :class:`Ensemble` of them
=================== ===========================================================

Every name is importable from here (``from insilico.encoding import RidgeCV, fit_predictor``).
"""
from .predictor import DEFAULT_ALPHAS, Ensemble, FitOptions, NeuralPredictor, fit_predictor
from .ridge import (MIN_SCORED, SOLVERS, Ceiling, EncodingResult, RidgeCV, cross_validate, kfold, pearson_r,
                    r2_score, solve_ridge, solve_ridge_cv, spearman_brown, split_half_ceiling)

__all__ = ["RidgeCV", "solve_ridge_cv", "solve_ridge", "kfold", "r2_score", "pearson_r", "MIN_SCORED", "spearman_brown",
           "split_half_ceiling", "Ceiling", "cross_validate", "EncodingResult", "SOLVERS",
           "DEFAULT_ALPHAS", "Ensemble", "FitOptions", "NeuralPredictor", "fit_predictor"]
