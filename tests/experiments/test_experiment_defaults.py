"""Experiment defaults sized for the model: the time-budgeted grating grid, the centre rule for conv maps and
token sequences (centre patch, CLS), recordings that stop after the unit, and the gallery's per-stage bars."""
import warnings

import pytest
import torch
from torch import nn

from insilico import Probe
from insilico.experiments import orientation_tuning, receptive_field
from insilico.experiments.budget import fit, forward_flops
from insilico.experiments.receptive_fields import locate
from insilico.experiments.runs import record_units
from insilico.layers import at_centre, centre_token
from insilico.experiments.tuning import GRIDS, default_grid
from insilico.units import Unit


class TinyViT(nn.Module):
    """A ViT from torch.nn layers: 4x4 patches of a 16-px image (a 4x4 grid), a CLS token first, one block."""

    def __init__(self, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.conv_proj = nn.Conv2d(1, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.Sequential(nn.TransformerEncoderLayer(dim, 2, 16, dropout=0.0, batch_first=True))
        self.head = nn.Linear(dim, 3)
        self.input_size = (1, 16, 16)

    def forward(self, x):
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], 1)
        return self.head(self.blocks(tokens)[:, 0])


class Counter(nn.Module):
    """Identity that logs the batch size of every call."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(len(x))
        return x


def conv_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    net.input_size = (1, 24, 24)
    return net


# -- the centre rule ------------------------------------------------------------------------------------------------
def test_centre_token_is_the_centre_patch_with_cls_first_or_the_middle():
    assert centre_token(197) == 1 + 7 * 14 + 7      # ViT-B/16 at 224 px: CLS + 14 x 14 patches
    assert centre_token(196) == 7 * 14 + 7          # no CLS
    assert centre_token(17) == 1 + 2 * 4 + 2        # CLS + 4 x 4
    assert centre_token(10) == 5                    # neither: the middle token


@pytest.mark.parametrize("address, shape, expected", [
    ("c", (8, 7, 9), "c[:,3,4]"),                       # a conv layer: every channel at the centre
    ("c[3]", (8, 7, 9), "c[3,3,4]"),                    # a channel
    ("c[3,1,2]", (8, 7, 9), "c[3,1,2]"),                # a neuron, as written
    ("c[3,2:5,:]", (8, 7, 9), "c[3,2:5,4]"),            # a range is kept, an open axis is centred
    ("t", (17, 8), "t[11,:]"),                          # tokens: every feature of the centre patch
    ("t[:, 0:4]", (17, 8), "t[11,0:4]"),
    ("t[..., 2]", (17, 8), "t[11,2]"),
    ("t[0, 0:4]", (17, 8), "t[0,0:4]"),                 # the CLS token, as written
    ("fc", (10,), "fc"),                                # a vector: as written
])
def test_at_centre_reads_open_position_axes_at_the_centre(address, shape, expected):
    assert at_centre(Unit.parse(address), shape).key == expected


def test_a_conv1d_map_is_centred_on_its_position_axis_not_read_as_tokens():
    assert at_centre(Unit.parse("c[2]"), (6, 11), nn.Conv1d(1, 6, 3)).key == "c[2,5]"
    assert at_centre(Unit.parse("c[2]"), (6, 11)).key == "c[2,:]"   # without the module: token 2, every feature


def test_token_layer_is_recorded_at_the_centre_patch_and_cls_when_asked():
    vit = TinyViT()
    x = torch.rand(5, 1, 16, 16)
    with Probe(vit).record("blocks.0") as rec:
        vit.eval()(x)
    full = rec["blocks.0"]                                                          # (5, 17, 8)
    values, names = record_units(vit, x, ["blocks.0[:, 0:4]", "blocks.0[0, 0:2]"], progress=False)
    assert names == [f"blocks.0[11,{f}]" for f in range(4)] + ["blocks.0[0,0]", "blocks.0[0,1]"]
    torch.testing.assert_close(values[:, :4], full[:, 11, :4])
    torch.testing.assert_close(values[:, 4:], full[:, 0, :2])


def test_conv_proj_centre_and_the_centre_token_are_the_same_patch():
    vit = TinyViT()
    neuron, _ = locate(vit, "conv_proj[0]", 1, 16)
    token, _ = locate(vit, "blocks.0[:, 0]", 1, 16)
    assert neuron.key == "conv_proj[0,2,2]" and token.key == "blocks.0[11,0]"
    assert 1 + neuron.index[1] * 4 + neuron.index[2] == token.index[0]
    rf = receptive_field(vit, "conv_proj[0]", method="theoretical")
    assert rf.box.tolist() == [8, 11, 8, 11]                                      # patch (2, 2) of 4 px


def test_tuning_a_token_layer_gives_one_unit_per_feature_not_tokens_x_features():
    res = orientation_tuning(TinyViT(), "blocks.0[:, 0:3]", orientations=[0, 45, 90, 135], sfs=[2, 4],
                             phases=[0, 90, 180, 270], progress=False)
    assert [str(u) for u in res.units] == ["blocks.0[11,0]", "blocks.0[11,1]", "blocks.0[11,2]"]
    assert res.curves.shape == (3, 4)


# -- recordings stop after the unit -----------------------------------------------------------------------------------
def test_record_units_does_not_run_the_layers_above_the_unit_on_the_stimuli():
    counter = Counter()
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), counter, nn.Flatten(), nn.LazyLinear(2))
    net(torch.rand(1, 1, 8, 8))
    counter.sizes.clear()
    values, names = record_units(net, torch.rand(12, 1, 8, 8), ["1"], batch_size=4, progress=False)
    assert values.shape == (12, 2) and names == ["1[0,3,3]", "1[1,3,3]"]
    assert counter.sizes and set(counter.sizes) == {1}        # only the one-stimulus passes that learn the stop


def test_forward_flops_count_the_pass_up_to_the_unit_only():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 100))
    conv = 2 * 8 * 14 * 14 * 3 * 3 * 3
    assert forward_flops(net, ["1"], torch.rand(1, 3, 16, 16)) == conv
    assert forward_flops(net, ["3"], torch.rand(1, 3, 16, 16)) == conv + 2 * 8 * 14 * 14 * 100


# -- the budgeted grid ------------------------------------------------------------------------------------------------
def _count(grid, colours=1):
    return grid[0] * grid[1] * grid[2] * colours + 1


def test_the_default_grid_is_the_largest_that_fits_the_budget():
    net, blank = conv_net(), torch.full((1, 1, 24, 24), 0.5)
    seconds = default_grid(net, [Unit.parse("3")], blank, budget=1e9)[3]["seconds_per_stimulus"]
    assert seconds > 0
    for n_colours in (1, 3):
        for allowed in (200, 700, 3000):
            o, s, p, record = default_grid(net, [Unit.parse("3")], blank, n_colours=n_colours,
                                           budget=allowed * seconds)
            grid = (len(o), len(s), len(p))
            assert record["rule"] == "budget" and record["fits"] and tuple(record["grid"]) == grid
            assert record["stimuli"] == _count(grid, n_colours) <= allowed
            larger = GRIDS[:GRIDS.index(grid)]
            assert all(_count(g, n_colours) > allowed for g in larger)      # the largest that fits
    o, s, p, record = default_grid(net, [Unit.parse("3")], blank, budget=1e9)
    assert (len(o), len(s), len(p)) == GRIDS[0] and o[:3] == [0.0, 5.0, 10.0] and p[:2] == [0.0, 45.0]


def test_a_budget_too_small_takes_the_smallest_grid_and_says_so():
    net, blank = conv_net(), torch.full((1, 1, 24, 24), 0.5)
    with pytest.warns(UserWarning, match="over the budget"):
        o, s, p, record = default_grid(net, [Unit.parse("3")], blank, budget=1e-9)
    assert (len(o), len(s), len(p)) == GRIDS[-1] and not record["fits"]


def test_explicit_grids_win_and_budget_none_is_the_full_grid():
    net = conv_net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = orientation_tuning(net, "2", orientations=[0, 45, 90, 135], budget=1e-9, progress=False)
    assert res.settings["grid"] == {"rule": "explicit"}
    assert len(res.settings["phases"]) == 8 and len(res.settings["sfs"]) == 8     # the others: full defaults
    o, s, p, record = default_grid(net, [Unit.parse("3")], torch.full((1, 1, 24, 24), 0.5), budget=None)
    assert (len(o), len(s), len(p)) == GRIDS[0] and record == {"rule": "full"}


def test_orientation_tuning_records_the_budgeted_choice():
    res = orientation_tuning(conv_net(), "2", budget=0.05, progress=False)
    grid = res.settings["grid"]
    assert grid["rule"] == "budget" and grid["estimated_s"] <= 0.05 or not grid["fits"]
    assert [len(res.settings[k]) for k in ("orientations", "sfs", "phases")] == grid["grid"]
    assert res.settings["tuned_units"] == ["3"] and res.curves.shape == (4, grid["grid"][0])


def test_fit_rejects_a_meaningless_budget():
    with pytest.raises(ValueError, match="positive"):
        fit(GRIDS, _count, 0.1, -1.0)


# -- the gallery's progress bars --------------------------------------------------------------------------------------
def test_gallery_shows_one_bar_per_stage_counting_units():
    from insilico.gallery.build import _stage_bars

    jobs = [("a", "features", 0, 2), ("a", "tuning", 0, 2), ("a", "features", 2, 4), ("b", "lesion", 0, 3)]
    bars = _stage_bars(jobs, progress=True)
    try:
        shown = {k: b for k, b in bars.items() if not b.disable}
        assert set(shown) == {"features", "tuning", "lesion"}
        assert {k: b.total for k, b in shown.items()} == {"features": 4, "tuning": 2, "lesion": 3}
        assert {b.unit for b in shown.values()} == {"units"} and all(k in b.desc for k, b in shown.items())
    finally:
        for bar in bars.values():
            bar.close()
    assert all(b.disable for b in _stage_bars(jobs, progress=False).values())
