"""Physiology's own definitions: F0/F1 and the simple/complex split, the OSI floor, the guarded SF bandwidth,
V1 comparisons on V1's selection, and the RF size's standard error.

Simple cell: an even Gabor conv on the centre pixel, then a ReLU. A full-field grating of phase phi drives the
centre neuron before the ReLU by ``A cos(phi)`` exactly (the kernel is even about the centre, zero-sum), so after
the ReLU the sampled responses are ``A max(cos phi_k, 0)``: F0 and F1 over the sampled phases follow exactly
(F1/F0 -> pi/2 as phases grow). Complex cell: the energy of a quadrature pair (even and odd Gabor),
``a^2 cos^2 phi + b^2 sin^2 phi``, has no first harmonic over evenly spaced phases: F1/F0 = 0 by construction.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from insilico.errors import InsilicoError
from insilico.experiments import TuningResult, orientation_tuning, receptive_field
from insilico.experiments.selectivity import (
    SF_EDGE, SF_NARROW, SF_OPEN, SF_WIDE, full_bandwidths_like_v1, phase_harmonics, sf_bandwidth_guard,
)

SIZE, K, CYCLES, THETA = 32, 15, 4.0, 30.0
ORIS = list(np.arange(0, 180, 15.0))
SFS = [2.0, 4.0, 8.0]
PHASES = list(np.arange(0, 360, 45.0))


def gabor(odd=False):
    c = K // 2
    i, j = np.mgrid[0:K, 0:K]
    x, y = j - c, -(i - c)  # y up, as stimuli.gratings
    env = np.exp(-(x**2 + y**2) / (2 * 3.0**2))
    arg = 2 * math.pi * CYCLES / SIZE * (x * math.cos(math.radians(THETA)) + y * math.sin(math.radians(THETA)))
    g = env * (np.sin(arg) if odd else np.cos(arg))
    return g - env * g.sum() / env.sum()  # zero-sum: no response to uniform grey


def conv(filters):
    layer = nn.Conv2d(1, len(filters), K, padding=K // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(np.array(filters), dtype=torch.float32)[:, None])
    return layer


class Energy(nn.Module):
    def forward(self, x):
        return (x**2).sum(1, keepdim=True)


def tune(net, unit):
    net = net.eval()
    net.input_size = (1, SIZE, SIZE)
    return orientation_tuning(net, unit, orientations=ORIS, sfs=SFS, phases=PHASES, progress=False)


def sampled_rectified_cosine(phases):
    """F0 and F1 of max(cos phi, 0) over the sampled phases, computed directly (no library code)."""
    phi = np.deg2rad(phases)
    r = np.maximum(np.cos(phi), 0.0)
    return r.mean(), 2 * abs(np.sum(r * np.exp(-1j * phi))) / len(phi)


def test_a_gabor_relu_unit_is_simple_with_the_rectified_cosine_f1_f0():
    res = tune(nn.Sequential(conv([gabor()]), nn.ReLU()), "0")
    f0, f1 = sampled_rectified_cosine(PHASES)
    peak = res.responses[0][ORIS.index(res.peak_orientation[0]), SFS.index(res.peak_sf[0])].max()  # A, at phase 0
    assert res.responsive[0] and res.baseline[0] == pytest.approx(0.0, abs=1e-5)
    assert res.f0[0] == pytest.approx(f0 * peak, rel=1e-4)
    assert res.f1[0] == pytest.approx(f1 * peak, rel=1e-4)
    assert res.modulation_ratio[0] == pytest.approx(f1 / f0, rel=1e-4)
    assert abs(f1 / f0 - math.pi / 2) < 0.1 and res.cell_type[0] == "simple"
    assert not res.osi_saturated[0] and res.osi[0] < 1.0   # a broad Gabor: the orthogonal response is above 0
    assert not res.spontaneous[0]                          # a blank of 0 is the ReLU's floor: nothing to inhibit


def test_a_quadrature_energy_unit_is_complex_with_no_first_harmonic():
    res = tune(nn.Sequential(conv([gabor(), gabor(odd=True)]), Energy()), "1")
    assert res.responsive[0] and res.cell_type[0] == "complex"
    assert res.f0[0] > 0 and res.modulation_ratio[0] == pytest.approx(0.0, abs=1e-4)


def test_skottun_reads_simple_units_by_f1_and_complex_units_by_f0():
    net = nn.Sequential(conv([gabor(), gabor(odd=True)]), Energy()).eval()
    net.input_size = (1, SIZE, SIZE)
    simple = tune(nn.Sequential(conv([gabor()]), nn.ReLU()), "0")
    by_type = orientation_tuning(nn.Sequential(conv([gabor()]), nn.ReLU()).eval(), "0", size=SIZE, orientations=ORIS,
                                 sfs=SFS, phases=PHASES, progress=False, phase_reduce="skottun")
    assert by_type.cell_type[0] == "simple"
    assert (by_type.tuning[0] - by_type.baseline[0]).max() == pytest.approx(simple.f1[0], rel=1e-6)
    energy = orientation_tuning(net, "1", orientations=ORIS, sfs=SFS, phases=PHASES, progress=False,
                                phase_reduce="skottun")
    assert energy.cell_type[0] == "complex"
    np.testing.assert_allclose(energy.tuning[0], energy.responses[0].mean(-1))
    with pytest.raises(InsilicoError, match="evenly spaced"):
        orientation_tuning(net, "1", orientations=ORIS, sfs=SFS, phases=[0, 90, 180], progress=False,
                           phase_reduce="skottun")


def test_f0_f1_need_evenly_spaced_phases():
    f0, f1 = phase_harmonics(np.ones((1, 3)), np.zeros(1), [0.0, 90.0, 180.0])
    assert np.isnan(f0[0]) and np.isnan(f1[0])


def synthetic(sf_curve, sfs, ori=(1.0, 0.6, 0.2, 0.1, 0.2, 0.6)):
    """A TuningResult from responses that are the product of an orientation curve ``ori`` (every 30 deg) and
    ``sf_curve``, the same at every phase (blank 0)."""
    ori = np.asarray(ori, float)
    grid = ori[:, None] * np.asarray(sf_curve, float)[None, :]
    responses = np.repeat(grid[None, :, :, None], 8, axis=3)
    settings = dict(orientations=list(np.arange(0, 180, 30.0)), sfs=list(sfs), phases=PHASES)
    return TuningResult.from_responses(responses, np.zeros(1), ["u"], settings)


def test_sf_bandwidth_is_refused_below_one_step_and_for_a_flat_low_pass_curve():
    sfs = [1.0, 2.0, 4.0, 8.0, 16.0]  # one-octave steps
    narrow = synthetic([0.0, 0.02, 1.0, 0.02, 0.0], sfs)  # log-Gaussian, full width 0.84 octave
    assert narrow.responsive[0] and np.isnan(narrow.sf_bandwidth[0]) and narrow.sf_bandwidth_reason[0] == SF_NARROW
    flat = synthetic([0.97, 0.98, 1.0, 0.95, 0.3], sfs)    # low-pass: never halves below the peak
    assert flat.responsive[0] and np.isnan(flat.sf_bandwidth[0]) and flat.sf_bandwidth_reason[0] == SF_OPEN
    resolved = synthetic([0.05, 0.4, 1.0, 0.4, 0.05], sfs)
    assert resolved.sf_bandwidth_reason[0] == "" and 1.0 < resolved.sf_bandwidth[0] < 4.0
    assert sf_bandwidth_guard(sfs, [0.1, 0.4, 1.0, 0.4, 0.1], 4.5) == SF_WIDE
    assert resolved.summary()["sf_bandwidth_refused"] == {}
    assert flat.summary()["sf_bandwidth_refused"] == {SF_OPEN: 1}


def test_v1_bandwidth_comparison_counts_untuned_units_at_360():
    full = full_bandwidths_like_v1(np.array([10.0, np.nan, np.nan, 20.0]), np.array([True, True, False, True]))
    assert full.tolist() == [20.0, 360.0, 40.0]


def test_osi_at_the_floor_is_flagged_and_drawn_apart():
    sfs = [1.0, 2.0, 4.0, 8.0, 16.0]
    floor = synthetic([0.05, 0.4, 1.0, 0.4, 0.05], sfs, ori=(1.0, 0.5, 0.0, 0.0, 0.0, 0.5))
    graded = synthetic([0.05, 0.4, 1.0, 0.4, 0.05], sfs, ori=(1.0, 0.5, 0.01, 0.01, 0.01, 0.5))
    assert floor.osi_saturated[0] and floor.osi[0] == 1.0
    assert not graded.osi_saturated[0] and graded.osi[0] < 1.0
    labels = [t.get_text() for t in floor.plot_population().axes[4].get_legend().get_texts()]
    assert "orthogonal at floor (1)" in labels and floor.summary()["osi_saturated"] == 1


class MaxOfConv(nn.Module):
    """A unit whose gradient footprint moves with the image: the max over a 3 x 3 pool of a 3 x 3 conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        self.pool = nn.MaxPool2d(5, stride=5)

    def forward(self, x):
        return self.pool(self.conv(x))


def test_rf_size_standard_error_is_zero_for_a_linear_unit_and_shrinks_with_more_images():
    linear = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2)).eval()
    rf = receptive_field(linear, "0[0,8,8]", size=16, method="gradient", n_images=4)
    assert rf.size == 5.0 and rf.size_se == 0.0 and rf.settings["measure"] == "linear (gradient) footprint"
    net = MaxOfConv().eval()
    few = receptive_field(net, "pool[0,1,1]", size=15, method="gradient", n_images=4, threshold=0.3)
    many = receptive_field(net, "pool[0,1,1]", size=15, method="gradient", n_images=256,
                           threshold=0.3)
    assert few.size_se > many.size_se
    default = receptive_field(net, "pool[0,1,1]", size=15, method="gradient", threshold=0.3)
    assert default.size_se <= 0.1 * default.size and default.settings["se_reached"]  # doubled until the target
    with pytest.raises(InsilicoError, match="n_images"):
        receptive_field(net, "pool[0,1,1]", size=15, method="gradient", n_images=1)


def test_the_rf_size_standard_error_matches_the_spread_between_fresh_noise_draws():
    """size_se (a bootstrap over groups of the images) against what it estimates: the SD of the size over
    independent draws of the same number of images. The former two-halves value was 0 in 8% of draws of minialex
    units whose size varies; a bootstrap over 8 groups is 0 only if every group gives the same size."""
    net, sizes, errors = MaxOfConv().eval(), [], []
    for seed in range(12):
        rf = receptive_field(net, "pool[0,1,1]", size=15, method="gradient", n_images=16, threshold=0.3, seed=seed)
        sizes.append(rf.size)
        errors.append(rf.size_se)
        assert rf.settings["se_groups"] == 8
    spread, typical = np.std(sizes, ddof=1), np.sqrt(np.mean(np.square(errors)))
    assert spread > 0 and 0.4 < typical / spread < 2.5  # 12 draws: the SD itself is known to about 20%


def test_fewer_images_than_groups_bootstrap_over_each_image():
    net = MaxOfConv().eval()
    rf = receptive_field(net, "pool[0,1,1]", size=15, method="gradient", n_images=3, threshold=0.3)
    assert rf.settings["se_groups"] == 3 and np.isfinite(rf.size_se)


def phase_modulated(sf_curve, sfs):
    """A TuningResult of a half-wave rectified cosine over phase (F1/F0 pi/2-like: simple) whose amplitude is an
    orientation curve times ``sf_curve`` (blank 0)."""
    ori = np.array([1.0, 0.6, 0.2, 0.1, 0.2, 0.6])
    modulation = np.maximum(np.cos(np.deg2rad(PHASES)), 0.0)
    responses = (ori[:, None, None] * np.asarray(sf_curve, float)[None, :, None] * modulation)[None]
    settings = dict(orientations=list(np.arange(0, 180, 30.0)), sfs=list(sfs), phases=PHASES)
    return TuningResult.from_responses(responses, np.zeros(1), ["u"], settings)


def test_no_simple_complex_call_where_the_sf_peak_is_at_the_edge_of_the_tested_range():
    """Skottun et al. (1991) read F1/F0 at the optimal SF: at either end of the tested SFs the optimum is not
    bracketed, so the unit gets no call, by the rule that withholds its SF bandwidth (the same reason)."""
    sfs = [1.0, 2.0, 4.0, 8.0, 16.0]
    inside = phase_modulated([0.05, 0.4, 1.0, 0.4, 0.05], sfs)
    assert inside.cell_type[0] == "simple" and inside.cell_type_reason[0] == ""
    for curve in ([1.0, 0.6, 0.3, 0.1, 0.05], [0.05, 0.1, 0.3, 0.6, 1.0]):  # low edge, high edge
        edge = phase_modulated(curve, sfs)
        assert edge.sf_peak_at_edge[0] and edge.cell_type[0] == "unresolved"
        assert edge.cell_type_reason[0] == edge.sf_bandwidth_reason[0] == SF_EDGE
        assert edge.modulation_ratio[0] == pytest.approx(inside.modulation_ratio[0])  # measured, not called
        assert edge.summary()["unresolved"] == 1 and edge.summary()["simple"] == 0


def test_a_gabor_unit_tested_only_above_its_sf_gets_no_call():
    res = orientation_tuning(nn.Sequential(conv([gabor()]), nn.ReLU()).eval(), "0", size=SIZE, orientations=ORIS,
                             sfs=[CYCLES, 2 * CYCLES, 4 * CYCLES], phases=PHASES, progress=False)
    assert res.responsive[0] and res.peak_sf[0] == CYCLES and res.cell_type[0] == "unresolved"
    assert res.modulation_ratio[0] > 1  # what would have been called simple
