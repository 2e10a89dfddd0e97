"""Every result whose data are tabular becomes a pandas DataFrame through the one protocol (issue 26, item 6):
``Result.table()`` (columns or rows) read by ``Result.to_pandas()`` / :func:`insilico.results.data_frame`; pandas
is an optional extra, and its absence is a clear error naming the extra."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from insilico.attribution.exemplars import Exemplars
from insilico.behaviour.consistency import ConsistencyResult
from insilico.behaviour.psychometric import PsychometricResult
from insilico.behaviour.reaction_times import ReactionTimeResult
from insilico.encoding import fit_predictor
from insilico.encoding.ridge import EncodingResult, split_half_ceiling
from insilico.errors import InsilicoError
from insilico.experiments import cumulative_lesion
from insilico.pixels import raw
from insilico.rsa import RDM, NoiseCeiling, bootstrap, time_resolved

pd = pytest.importorskip("pandas")


def test_encoding_scores_and_ceilings_are_one_row_per_target():
    rng = np.random.default_rng(0)
    enc = EncodingResult(np.array([0.5, 0.1, -0.2]), np.array([0.2, 0.0, -0.1]), np.array([[1.0, 10, 100], [2, 20, 200]]),
                         np.zeros((4, 3)))
    frame = enc.to_pandas()
    assert list(frame.columns) == ["target", "r", "r2", "alpha_0", "alpha_1"]
    assert frame["r"].tolist() == [0.5, 0.1, -0.2] and frame["alpha_1"].tolist() == [2, 20, 200]
    ceiling = split_half_ceiling(rng.normal(size=(4, 10, 3)))
    frame = ceiling.to_pandas()
    assert len(frame) == 3 and np.allclose(frame["reliability"], ceiling.reliability)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    x = torch.rand(30, 5)
    y = x @ torch.rand(5, 2) + 0.01 * torch.randn(30, 2)
    predictor = fit_predictor(net, raw(x), y.numpy(), "1", targets=["v1_a", "v1_b"], progress=False)
    frame = predictor.to_pandas()
    assert frame["target"].tolist() == ["v1_a", "v1_b"]
    assert np.array_equal(frame["r"], predictor.scores["r"]) and np.array_equal(frame["alpha"], predictor.scores["alpha"])


def test_rdms_comparisons_and_ceilings_are_tables():
    rdm = RDM.from_matrix([[0, 1, 2], [1, 0, 3], [2, 3, 0]], labels=["a", "b", "c"])
    frame = rdm.to_pandas()
    assert frame.values.tolist() == [["a", "b", 1.0], ["a", "c", 2.0], ["b", "c", 3.0]]
    assert NoiseCeiling(0.25, 0.5, "spearman").to_pandas().iloc[0].tolist() == [0.25, 0.5, "spearman"]
    rng = np.random.default_rng(1)
    data = RDM(rng.random(10))
    models = {"good": RDM(data.vector + 0.01 * torch.as_tensor(rng.random(10))), "bad": RDM(rng.random(10))}
    result = bootstrap(models, data, n_boot=20, progress=False)
    frame = result.to_pandas()
    assert frame["name"].tolist() == ["good", "bad"] and np.allclose(frame["estimate"], result.estimate)
    series = time_resolved(rng.random((2, 6)), rng.random((3, 6)), times=[0.1, 0.2, 0.3])
    frame = series.to_pandas()
    assert len(frame) == 6 and frame["step"].tolist() == ["0"] * 3 + ["1"] * 3
    assert np.allclose(frame["similarity"], series.similarity.reshape(-1).numpy())
    assert np.allclose(frame["time"], [0.1, 0.2, 0.3] * 2) and frame["ceiling_lower"].isna().all()


def test_exemplars_and_lesion_curves_are_one_row_per_exemplar_or_size():
    ex = Exemplars("conv[3]", torch.tensor([4, 0]), torch.tensor([2.5, 1.0]), ids=["x.png", "y.png"], n_stimuli=5)
    frame = ex.to_pandas()
    assert frame.to_dict("list") == {"unit": ["conv[3]"] * 2, "rank": [0, 1], "index": [4, 0],
                                     "activation": [2.5, 1.0], "id": ["x.png", "y.png"]}
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x, y = torch.rand(20, 4), torch.randint(0, 2, (20,))
    curve = cumulative_lesion(net, "1", raw(x), y, n_points=3, n_random=2, progress=False)
    frame = curve.to_pandas()
    assert frame["n_lesioned"].tolist() == [0, 3, 6] and np.array_equal(frame["accuracy_most"], curve.accuracy_most)
    assert np.array_equal(frame["random_high"], curve.accuracy_random_band[:, 1])


def test_behaviour_results_are_tables():
    levels = torch.tensor([0.1, 0.5, 1.0])
    psy = PsychometricResult(levels, torch.tensor([0.5, 0.75, 1.0]), torch.ones(3, 4, dtype=torch.bool),
                             torch.tensor([0.4, 0.6, 1.0]), torch.tensor([0.6, 0.9, 1.0]), 0.4, 0.1, 0.0, 0.45,
                             [0.3, 0.6], 0.5, 0.75, "contrast")
    frame = psy.to_pandas()
    assert frame["contrast"].tolist() == pytest.approx([0.1, 0.5, 1.0]) and frame["accuracy"].tolist() == [0.5, 0.75, 1]
    assert np.allclose(frame["fitted"], psy.fitted(levels.double().numpy()))
    rts = ReactionTimeResult(torch.tensor([2, 5]), torch.tensor([1, 0]), torch.tensor([True, False]),
                             torch.rand(2, 6, 2), torch.tensor([1, 1]), torch.tensor([0.5]), torch.tensor([3.5]),
                             torch.tensor([0.5]), 0.5, "confidence", ["cat", "dog"], ["a.png", "b.png"])
    assert rts.to_pandas().to_dict("list") == {"image": ["a.png", "b.png"], "label": ["dog", "dog"],
                                               "choice": ["dog", "cat"], "rt": [2, 5], "decided": [True, False]}
    kappa = ConsistencyResult(0.3, 0.1, 0.5, "error_consistency", ["net", "people"], 40)
    assert kappa.to_pandas().iloc[0].tolist() == ["error_consistency", "net", "people", 0.3, 0.1, 0.5, 40]


def test_without_pandas_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    with pytest.raises(InsilicoError, match=r"NoiseCeiling.to_pandas needs pandas: pip install 'insilico-ephys\[xarray\]'"):
        NoiseCeiling(0.25, 0.5, "spearman").to_pandas()


def test_a_result_without_a_table_says_so():
    from insilico.synthesis import SynthesisResult

    result = SynthesisResult(torch.rand(1, 1, 4, 4), torch.zeros(2, 1), torch.tensor([2]), ["steps"], ["a"])
    with pytest.raises(InsilicoError, match="SynthesisResult.to_pandas: this result has no table"):
        result.to_pandas()
