"""The plain layout rule (insilico.layout): record(reduce=), the Channel objective and a channel's index read a
layer in its layout: a Swin stage (N, H, W, C) over H, W; a ViT block (N, T, D) over its patch tokens."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import insilico
from insilico import layout
from insilico.errors import InsilicoError, UnitError
from insilico.objectives import Channel, Objective
from insilico.probe import Probe


@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    return torchvision.models.swin_t().eval()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=16, mlp_dim=32).eval()


def _recorded(model, x, unit, how):
    probe = insilico.Probe(model)
    with torch.no_grad(), probe.record(unit, reduce=how) as pooled, probe.record(unit) as whole:
        model(x)
    return pooled[unit], whole[unit]


@pytest.mark.parametrize("unit", ["features.1", "features.3.0.norm1"])
def test_reduce_on_a_swin_stage_pools_height_and_width_not_channels(swin, unit):
    x = torch.rand(2, 3, 64, 64)
    for how in ("mean", "max", "center"):
        pooled, whole = _recorded(swin, x, unit, how)
        n, h, w, c = whole.shape
        assert c in (96, 192) and h == w                        # channels last
        expected = {"mean": whole.mean(dim=(1, 2)), "max": whole.amax(dim=(1, 2)),
                    "center": whole[:, h // 2, w // 2, :]}[how]
        assert pooled.shape == (2, c)
        torch.testing.assert_close(pooled, expected)


def test_reduce_on_a_swin_conv_map_stays_channels_first(swin):
    pooled, whole = _recorded(swin, torch.rand(2, 3, 64, 64), "features.0.0", "center")   # the patch conv (N, C, H, W)
    torch.testing.assert_close(pooled, whole[:, :, whole.shape[2] // 2, whole.shape[3] // 2])


def test_reduce_on_vit_tokens_pools_the_patches_without_cls(vit):
    x = torch.rand(3, 3, 32, 32)
    unit = "encoder.layers.encoder_layer_0"
    for how in ("mean", "max", "center"):
        pooled, whole = _recorded(vit, x, unit, how)
        assert whole.shape == (3, 1 + 16, 16)                   # CLS, then a 4 x 4 grid
        patches = whole[:, 1:]
        expected = {"mean": patches.mean(dim=1), "max": patches.amax(dim=1),
                    "center": patches[:, 2 * 4 + 2]}[how]     # row 2, column 2 of the grid
        torch.testing.assert_close(pooled, expected)
    picked, _ = _recorded(vit, x, unit + "[5]", "mean")         # with reduce=, the index picks a feature
    torch.testing.assert_close(picked, whole[:, 1:, 5].mean(dim=1))


def test_record_stimuli_sizes_and_fills_a_reduced_swin_stage(swin):
    x = torch.rand(3, 3, 64, 64)
    rec = insilico.Probe(swin).record_stimuli(x, ["features.1"], reduce="mean", batch_size=2, progress=False)
    _, whole = _recorded(swin, x, "features.1", None)
    assert rec["features.1"].shape == (3, 96)
    torch.testing.assert_close(torch.as_tensor(rec["features.1"]), whole.mean(dim=(1, 2)))


def test_reduce_refuses_layouts_without_channels_over_positions(vit):
    probe = insilico.Probe(vit)
    for unit, said in [("heads.head", r"heads.head.*layout 'vector'.*without reduce="),
                       ("encoder.layers.encoder_layer_0.self_attention:weights", r":weights.*layout 'heads'")]:
        with pytest.raises(UnitError, match=said), torch.no_grad(), probe.record(unit, reduce="mean"):
            vit(torch.rand(1, 3, 32, 32))


def test_a_layout_without_a_reader_is_refused_not_guessed(monkeypatch, vit):
    monkeypatch.setattr(layout, "_READER", [])
    probe = Probe(vit)
    with pytest.raises(InsilicoError, match="import insilico.layers"), torch.no_grad(), \
            probe.record("encoder.layers.encoder_layer_0", reduce="mean") as rec:
        vit(torch.rand(1, 3, 32, 32))
        rec["encoder.layers.encoder_layer_0"]


def test_channel_objective_reads_the_layers_layout(swin, vit):
    x = torch.rand(2, 3, 64, 64)
    _, whole = _recorded(swin, x, "features.1", None)
    value = Channel("features.1", 7).evaluate(swin, x)
    torch.testing.assert_close(value, whole[..., 7].mean(dim=(1, 2)))
    stacked = Objective.stack([Channel("features.1", 7), Channel("features.1", 50)]).evaluate(swin, x)
    torch.testing.assert_close(stacked, torch.stack([whole[0, ..., 7].mean(), whole[1, ..., 50].mean()]))
    y = torch.rand(2, 3, 32, 32)
    _, tokens = _recorded(vit, y, "encoder.layers.encoder_layer_1", None)
    torch.testing.assert_close(Channel("encoder.layers.encoder_layer_1", 3).evaluate(vit, y),
                               tokens[:, 1:, 3].mean(dim=1))
    with pytest.raises(UnitError, match="layout 'heads'"):
        Channel("encoder.layers.encoder_layer_0.self_attention:weights", 0).evaluate(vit, y)


def test_channel_index_picks_what_positions_pools():
    value = torch.rand(2, 5, 4, 6)
    for name in ("map", "channels_last"):
        index = layout.channel_index(3, tuple(value.shape[1:]), name)
        torch.testing.assert_close(value[(slice(None),) + index].flatten(1).mean(1),
                                   layout.positions(value, name)[:, 3].mean(1))
    tokens = torch.rand(2, 1 + 9, 4)
    index = layout.channel_index(2, (10, 4), "tokens")
    torch.testing.assert_close(tokens[(slice(None),) + index].mean(1), layout.pool(tokens, "mean", "tokens")[:, 2])
    assert layout.channel_index(2, (10,), "vector") == (2,)


class _Recurrent(torch.nn.Module):
    """A channels-last Linear called twice per pass (a recurrent step), on an (N, H, W, C) map."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        h = x.permute(0, 2, 3, 1)[..., :4]
        for _ in range(2):
            h = torch.tanh(self.lin(h))
        return h.mean(dim=(1, 2))


def test_time_courses_pool_a_channels_last_module_over_its_positions():
    torch.manual_seed(0)
    model, x = _Recurrent().eval(), torch.rand(3, 4, 5, 6)
    result = insilico.experiments.time_courses(model, "lin", x, progress=False)
    with torch.no_grad(), insilico.Probe(model).record("lin") as rec:
        model(x)
    whole = rec.steps("lin")                                     # (N, T, H, W, C)
    assert whole.shape == (3, 2, 5, 6, 4)
    np.testing.assert_allclose(result.arrays["responses_0"], whole.mean(dim=(2, 3)).numpy(), rtol=1e-6, atol=1e-7)


def test_direction_and_diversity_read_channels_in_the_layout(swin):
    from insilico.objectives import Direction, Diversity

    x = torch.rand(2, 3, 64, 64)
    _, whole = _recorded(swin, x, "features.1", None)             # (N, H, W, C)
    v = torch.rand(96)
    hand = (whole @ (v / v.norm())).mean(dim=(1, 2))
    torch.testing.assert_close(Direction("features.1", v).evaluate(swin, x), hand)
    flat = whole.flatten(1, 2).transpose(1, 2)                    # (N, C, H * W)
    gram = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
    torch.testing.assert_close(Diversity("features.1").evaluate(swin, x), -(gram[0] @ gram[1]).expand(2))


@pytest.mark.filterwarnings("ignore:r is undefined")
def test_a_predictors_mean_pool_is_the_same_rule(vit):
    from insilico.encoding import fit_predictor

    x, y = torch.rand(6, 3, 32, 32), torch.rand(6, 2)
    predictor = fit_predictor(vit, x, y, layers=["encoder.layers.encoder_layer_1"], reduce="mean", progress=False)
    _, tokens = _recorded(vit, x[:2], "encoder.layers.encoder_layer_1", None)
    with torch.no_grad():
        torch.testing.assert_close(predictor.features(x[:2]), tokens[:, 1:].mean(dim=1))
