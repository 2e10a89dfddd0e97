"""insilico.experiments: tuning, receptive fields, lesions, microstimulation, recurrent dynamics."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from insilico import InsilicoError, models
from insilico.pixels import raw
from insilico.experiments import (
    LesionResult, TuningResult, connection_lesions, cumulative_lesion, lesion_sweep, microstimulation,
    orientation_tuning, receptive_field, receptive_field_sizes, time_courses,
)
from insilico.experiments.tuning import circular_variance, fit_log_gaussian, selectivity_index, von_mises_hwhm


def bundled(name):
    """The bundled model with its trained weights, or its architecture untrained while weights are pending."""
    if name in models.available():
        return models.load(name)
    return models.MiniAlexNet().eval() if name == "minialex" else models.BLTNet(name.upper()).eval()


# ---------------------------------------------------------------------------------- tuning
def gabor_net(thetas=(30.0, 120.0), size=64, cycles=8.0, sigma=4.0, k=31):
    """Conv channels that are zero-mean cosine Gabors at ``thetas`` (grating convention), then ReLU."""
    c = k // 2
    i, j = np.mgrid[0:k, 0:k]
    x, y = j - c, -(i - c)  # pixels; y up, as stimuli.gratings
    env = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    f = cycles / size
    weights = []
    for theta in thetas:
        th = math.radians(theta)
        g = env * np.cos(2 * math.pi * f * (x * math.cos(th) + y * math.sin(th)))
        weights.append(g - env * g.sum() / env.sum())  # no response to uniform gray
    conv = nn.Conv2d(1, len(thetas), k, padding=c, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(np.array(weights), dtype=torch.float32)[:, None])
    kappa = 4 * math.pi**2 * sigma**2 * f**2  # |FT| on the ring |k| = f: exp(-kappa (1 - cos d_theta))
    return nn.Sequential(conv, nn.ReLU()).eval(), math.degrees(math.acos(1 - math.log(2) / kappa))


def test_gabor_preferred_orientation_and_bandwidth():
    net, analytic_hwhm = gabor_net()
    res = orientation_tuning(net, "1", size=64, sfs=[4, 5.66, 8, 11.31, 16], progress=False)
    assert list(res.units) == ["1[0,32,32]", "1[1,32,32]"]
    assert res.curves.shape == (2, 36)
    # exact to the 5 deg grid step (in fact to a small fraction of it)
    np.testing.assert_allclose(res.preferred_orientation, [30.0, 120.0], atol=0.5)
    assert analytic_hwhm == pytest.approx(21.6, abs=0.1)
    np.testing.assert_allclose(res.bandwidth, analytic_hwhm, atol=1.0)
    assert (res.osi > 0.99).all() and res.tuned.all()
    assert (res.circular_variance < 0.3).all()
    np.testing.assert_array_equal(res.sf_curves.argmax(1), [2, 2])  # the Gabor's 8 cycles per image
    np.testing.assert_allclose(res.preferred_sf, 8.0, rtol=0.1)
    assert (res.orientation_r2 > 0.99).all()


def test_tuning_of_a_single_neuron_and_units_list():
    net, _ = gabor_net(thetas=(60.0,))
    res = orientation_tuning(net, ["1[0,32,32]", "0[0]"], size=64, sfs=[4, 8, 16], phases=[0, 90, 180, 270],
                             progress=False)
    # the conv address is tuned after its ReLU (the unit a neuroscientist means); raw=True keeps it
    assert list(res.units) == ["1[0,32,32]", "1[0,32,32]"] and res.settings["units"] == ["1[0,32,32]", "0[0]"]
    np.testing.assert_allclose(res.preferred_orientation, 60.0, atol=0.5)
    raw = orientation_tuning(net, "0[0]", size=64, sfs=[4, 8, 16], phases=[0, 90, 180, 270], raw=True,
                             progress=False)
    assert list(raw.units) == ["0[0,32,32]"]
    np.testing.assert_allclose(raw.preferred_orientation, 60.0, atol=0.5)
    fig = res.plot()
    assert fig.axes and len(fig.axes[0].lines) == 2 * 2 + 1   # dots and fit per unit, the blank level
    assert len(res.plot_population().axes) == 5


def test_untuned_unit_and_indices():
    oris = np.arange(0, 180, 10.0)
    flat = np.ones((1, len(oris)))
    assert circular_variance(oris, flat)[0] == pytest.approx(1.0)
    assert selectivity_index(oris, flat)[0] == pytest.approx(0.0)
    peaked = np.where(oris == 40, 1.0, 0.0)[None]
    assert circular_variance(oris, peaked)[0] == pytest.approx(0.0, abs=1e-12)
    assert selectivity_index(oris, peaked)[0] == pytest.approx(1.0)
    assert von_mises_hwhm(0.1) == 90.0
    sfs = 2.0 ** np.arange(0, 6)
    f0, bw, r2, *_ = fit_log_gaussian(sfs, np.exp(-((np.log2(sfs) - 3.3) ** 2) / (2 * 0.8**2)))
    assert f0 == pytest.approx(2**3.3, rel=1e-3) and bw == pytest.approx(2 * 0.8 * math.sqrt(2 * math.log(2)), rel=1e-3)


def test_tuning_result_round_trip(tmp_path):
    net, _ = gabor_net(thetas=(0.0, 90.0))
    res = orientation_tuning(net, "1", size=64, orientations=range(0, 180, 15), sfs=[4, 8, 16, 24],
                             phases=[0, 180], fov=4.0, progress=False)
    paths = res.export(tmp_path / "tuning")
    assert [p.suffix for p in paths] == [".npz", ".csv"]
    first = (tmp_path / "tuning.csv").read_text().splitlines()[0]
    assert first.startswith("# {") and '"fov": 4.0' in first
    back = TuningResult.load(tmp_path / "tuning.npz")
    np.testing.assert_array_equal(back.preferred_orientation, res.preferred_orientation)
    np.testing.assert_allclose(back.preferred_sf_cpd, res.preferred_sf / 4.0)
    # the one result protocol: one file, weights_only load, versions, concat over chunks of units, plot(ax=)
    res.save(tmp_path / "tuning.pt")
    whole = TuningResult.load(tmp_path / "tuning.pt")
    assert isinstance(whole, TuningResult) and whole.settings == res.settings
    assert list(whole.units) == list(res.units) and whole.units.dtype == res.units.dtype
    for key, value in res.arrays.items():
        np.testing.assert_array_equal(whole.arrays[key], value)
    assert set(whole.versions) >= {"insilico", "torch"}
    assert torch.load(tmp_path / "tuning.pt", weights_only=True)["kind"].endswith(":TuningResult")
    first_half = TuningResult(dict(res.arrays, **{k: res.arrays[k][:1] for k in TuningResult.sample_arrays
                                                  if k in res.arrays}), res.settings)
    second_half = TuningResult(dict(res.arrays, **{k: res.arrays[k][1:] for k in TuningResult.sample_arrays
                                                   if k in res.arrays}), res.settings)
    joined = TuningResult.concat([first_half, second_half])
    for key, value in res.arrays.items():
        np.testing.assert_array_equal(joined.arrays[key], value)
    with pytest.raises(InsilicoError, match="export"):
        res.save(tmp_path / "tuning.npz")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert whole.plot(ax=ax) is fig
    plt.close(fig)


def test_tuning_errors():
    net, _ = gabor_net(thetas=(0.0,))
    with pytest.raises(InsilicoError, match="phase_reduce"):
        orientation_tuning(net, "1", size=64, phase_reduce="median")
    with pytest.raises(InsilicoError, match="size="):
        orientation_tuning(net, "1")
    with pytest.raises(InsilicoError, match="no module"):
        orientation_tuning(net, "conv9", size=64, progress=False)


# ---------------------------------------------------------------------------------- receptive fields
def two_layer_net():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=2))
    with torch.no_grad():  # positive weights, no bias: a linear map on [0, 1] images, every pixel counts
        for conv in (net[0], net[2]):
            conv.weight.uniform_(0.5, 1.0)
            conv.bias.zero_()
    return net.eval()


@pytest.mark.parametrize("method", ["theoretical", "gradient", "sparse_noise"])
def test_first_layer_rf_is_the_kernel(method):
    net = two_layer_net()
    rf = receptive_field(net, "0[1,6,5]", size=32, method=method, dots=1, n_frames=3000)
    assert rf.size == 5.0 and tuple(rf.extent) == (5.0, 5.0)
    # conv 5x5, stride 2, padding 1: unit (6, 5) sees rows 2*6-1 .. 2*6+3, columns 2*5-1 .. 2*5+3
    assert rf.center == (13.0, 11.0)


@pytest.mark.parametrize("method", ["theoretical", "gradient", "sparse_noise"])
def test_second_layer_rf_center_follows_stride_arithmetic(method):
    net = two_layer_net()
    y, x = 3, 2
    # layer 2 (3x3, stride 2) unit (y, x) <- layer-1 rows 2y..2y+2 <- input rows 2(2y)-1 .. 2(2y+2)-1+4
    lo_y, hi_y, lo_x, hi_x = 4 * y - 1, 4 * y + 7, 4 * x - 1, 4 * x + 7
    rf = receptive_field(net, f"2[0,{y},{x}]", size=32, method=method, dots=4, n_frames=4000)
    assert rf.size == 9.0
    assert rf.center == ((lo_y + hi_y) / 2, (lo_x + hi_x) / 2)
    assert tuple(rf.box) == (lo_y, hi_y, lo_x, hi_x)


def test_rf_sizes_per_layer_minialex():
    net = models.MiniAlexNet().eval()
    res = receptive_field_sizes(net, methods=("theoretical",), progress=False)
    assert list(res.layers) == ["features.0", "features.2", "features.3", "features.5", "features.6",
                                "features.8", "features.10", "features.12"]
    # 9 (conv1) -> +2*2 (pool, stride 2) -> +4*4 (conv2 5x5 at stride 4) -> ...
    np.testing.assert_array_equal(res.size_theoretical, [9, 13, 29, 37, 53, 69, 85, 101])
    assert len(res.plot().axes[0].lines) >= 2


def test_recurrent_rf_grows_over_time_steps():
    net = models.BLTNet("BLT", timesteps=3).eval()
    sizes = [receptive_field(net, f"layers.0@{t}").size for t in range(3)]
    assert sizes[0] == 7.0                       # bottom-up 7x7 only at step 0
    assert sizes[1] > sizes[0] and sizes[2] > sizes[1]  # lateral and top-down inputs widen it
    ff = models.BLTNet("B", timesteps=3).eval()
    assert [receptive_field(ff, f"layers.0@{t}").size for t in range(3)] == [7.0, 7.0, 7.0]


def test_rf_of_a_linear_unit_is_the_whole_image():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 14 * 14, 3))
    rf = receptive_field(net, "2[1]", size=16)
    assert rf.size == 16.0 and rf.center == (7.5, 7.5)


def test_rf_of_a_range_of_positions_is_the_hull_of_their_boxes():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, stride=2), nn.ReLU(), nn.Conv2d(2, 2, 3))
    rf = receptive_field(net, "2[0,0:2,1]", size=16)  # rows 0-1 of layer 2 <- 0-3 of layer 1 <- pixels 0-10
    assert tuple(rf.box) == (0, 10, 2, 10) and tuple(rf.extent) == (11.0, 9.0)


def _positive_patch_embedding(model, conv):
    with torch.no_grad():  # every pixel of a patch drives its token (no pixel below the threshold)
        conv.weight.uniform_(0.5, 1.0)
    return model.eval()


def test_rf_of_token_and_channels_last_layers_reads_the_centre_patch():
    """A token layer is read at its centre patch token (CLS dropped); a channels-last stage at its centre position:
    the gradient RF is that patch; the theoretical one the whole image (reshape / permute: an upper bound)."""
    import torchvision
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                               mlp_dim=32)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                           window_size=[2, 2])
    vit, swin = _positive_patch_embedding(vit, vit.conv_proj), _positive_patch_embedding(swin, swin.features[0][0])
    # ViT: (5, 16) tokens after the position embedding: CLS, then 2 x 2 patches; the centre patch is (1, 1)
    rf = receptive_field(vit, "encoder.dropout", size=16, method="gradient", n_images=2)
    assert rf.settings["neuron"] == "encoder.dropout[4,:]" and tuple(rf.box) == (8, 15, 8, 15)
    # Swin: (4, 4, 8) channels last after its patch embedding: position (2, 2) is pixels 8-11
    rf = receptive_field(swin, "features.0.1[:, :, 3]", size=16, method="gradient", n_images=2)
    assert rf.settings["neuron"] == "features.0.1[2,2,3]" and tuple(rf.box) == (8, 11, 8, 11)
    for model, layer in ((vit, "encoder.layers.encoder_layer_0"), (swin, "features.1")):
        sizes = receptive_field_sizes(model, [layer], size=16, methods=("theoretical", "gradient"), n_images=2,
                                      progress=False)
        assert sizes.size_theoretical[0] == 16.0 and 0 < sizes.size_gradient[0] <= 16.0


# ---------------------------------------------------------------------------------- lesions
@pytest.fixture(scope="module")
def photos_set():
    return models.photos.held_out(3, seed=99)


def test_lesioning_nothing_changes_nothing(photos_set):
    x, y = photos_set
    net = bundled("minialex")
    res = lesion_sweep(net, "classifier.4", x, y, groups=[[]], progress=False)
    assert res.accuracy[0] == res.baseline and res.changed[0] == 0.0
    np.testing.assert_array_equal(res.effect, 0.0)


def test_lesioning_the_whole_penultimate_layer_gives_chance(photos_set):
    x, y = photos_set
    net = bundled("minialex")
    res = lesion_sweep(net, "classifier.5", x, y, groups=[list(range(256))], progress=False)
    # every prediction becomes the class with the largest output bias: chance on a balanced set
    only = int(net.classifier[6].bias.argmax())
    assert res.accuracy[0] == pytest.approx(1 / 16)
    np.testing.assert_array_equal(np.isnan(res.class_accuracy[0]), False)
    assert res.class_accuracy[0, only] == 1.0 and res.class_accuracy[0].sum() == 1.0


def test_grouped_sweep_dissociation_matrix(photos_set, tmp_path):
    x, y = photos_set
    net = bundled("minialex")
    groups = [list(range(s, s + 16)) for s in range(0, 96, 16)]
    sweep = lesion_sweep(net, "features.10", x, y, groups=groups, progress=False)
    assert sweep.class_accuracy.shape == (6, 16) and sweep.effect.shape == (6, 16)
    assert list(sweep.groups)[0] == ",".join(map(str, range(16)))
    np.testing.assert_allclose(sweep.importance, float(sweep.baseline) - sweep.accuracy)
    np.testing.assert_allclose(sweep.effect.mean(1), sweep.accuracy - float(sweep.baseline), atol=1e-12)
    paths = sweep.export(tmp_path / "lesions")
    assert (tmp_path / "lesions_dissociation.csv").exists() and len(paths) == 3
    assert LesionResult.load(paths[0]).class_accuracy.shape == (6, 16)
    sweep.save(tmp_path / "lesions.pt")
    back = LesionResult.load(tmp_path / "lesions.pt")
    np.testing.assert_array_equal(back.effect, sweep.effect)
    halves = [lesion_sweep(net, "features.10", x, y, groups=part, progress=False) for part in (groups[:2], groups[2:])]
    joined = LesionResult.concat(halves)
    assert list(joined.groups) == list(sweep.groups)
    np.testing.assert_allclose(joined.class_accuracy, sweep.class_accuracy)
    assert sweep.plot() is not None


def test_cumulative_lesion_orders():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    x = torch.randn(90, 5)
    with torch.no_grad():
        y = net(x).argmax(1)  # the intact net is 100% right
    curve = cumulative_lesion(net, "1", raw(x), y, n_points=4, progress=False)
    assert list(curve.n_lesioned) == [0, 4, 8, 12]
    assert curve.accuracy_most[0] == curve.accuracy_least[0] == 1.0
    assert curve.accuracy_most[-1] == curve.accuracy_least[-1] == curve.accuracy_random[-1]
    # removing the most important units first hurts at least as much as removing the least important
    assert np.all(curve.accuracy_most <= curve.accuracy_least + 1e-12)
    assert curve.plot() is not None


def test_lesion_errors(photos_set):
    x, y = photos_set
    net = bundled("minialex")
    with pytest.raises(InsilicoError, match="labels"):
        lesion_sweep(net, "features.10", x, y[:5], progress=False)
    with pytest.raises(InsilicoError, match="groups="):
        lesion_sweep(net, "features.10[3]", x, y, progress=False)


# ---------------------------------------------------------------------------------- microstimulation
def test_microstimulation_drives_choices_to_the_units_class():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        net[2].weight.copy_(torch.eye(3, 4))
        net[2].bias.zero_()
    x = torch.rand(50, 3)
    res = microstimulation(net, "1[2]", raw(x), strengths=[0, 1, 4, 16, 64], progress=False)
    assert res.target_class == 2
    curve = res.psychometric()
    assert np.all(np.diff(curve) >= 0) and curve[-1] == 1.0
    assert np.all(np.diff(res.mean_probability[:, 2]) > 0)
    np.testing.assert_allclose(res.shift[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(res.probabilities.sum(-1), 1.0, rtol=1e-5)


def test_microstimulation_keeps_a_float64_models_dtype():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    x = torch.rand(6, 3)
    res64 = microstimulation(net.double(), "1[2]", raw(x.double()), strengths=[0, 2], progress=False)
    assert res64.probabilities.dtype == res64.mean_probability.dtype == np.float64
    res32 = microstimulation(net.float(), "1[2]", raw(x), strengths=[0, 2], progress=False)
    assert res32.probabilities.dtype == np.float32
    np.testing.assert_allclose(res64.probabilities, res32.probabilities, atol=1e-6)


def test_microstimulation_std_scale_on_a_conv_channel(photos_set):
    x, _ = photos_set
    net = bundled("minialex")
    res = microstimulation(net, "features.10[5]", x[:16], strengths=[0, 2, 8], scale="std", progress=False)
    assert res.probabilities.shape == (3, 16, 16) and res.settings["unit_scale"] > 0
    assert np.abs(res.shift[-1]).sum() > np.abs(res.shift[1]).sum() > 0


# ---------------------------------------------------------------------------------- dynamics
def test_time_courses_and_connection_lesions(photos_set):
    x, y = photos_set
    net = bundled("blt")
    courses = time_courses(net, ["layers.0", "layers.2"], x, progress=False)
    assert courses.arrays["responses_0"].shape == (48, 4, 32)
    assert courses.arrays["responses_1"].shape == (48, 4, 128)
    res = connection_lesions(net, x, y, progress=False)
    assert list(res.conditions) == ["intact", "no lateral", "no top-down", "no lateral + top-down"]
    assert res.accuracy.shape == (4, 4)
    # at step 0 lateral and top-down inputs act on a zero state: the lesions change nothing yet
    assert np.all(res.accuracy[:, 0] == res.accuracy[0, 0])
    assert courses.plot() is not None and res.plot() is not None
    with pytest.raises(InsilicoError, match="lateral"):
        connection_lesions(models.BLTNet("B").eval(), x, y, progress=False)


# ---------------------------------------------------------------------- size=: one name, one meaning (issue 24)
def test_receptive_field_reads_size_as_every_tool_does():
    net = nn.Sequential(nn.Conv2d(3, 2, 5), nn.ReLU(), nn.MaxPool2d(2))
    by_shape = receptive_field(net, "2[0,2,2]", size=(3, 16, 16))
    by_side = receptive_field(net, "2[0,2,2]", size=16)  # the side, with the model's channels
    by_pair = receptive_field(net, "2[0,2,2]", size=(16, 16))
    assert by_shape.size == by_side.size == by_pair.size == 6.0
    assert np.array_equal(by_shape.box, by_side.box)
    assert by_shape.settings["input_size"] == by_side.settings["input_size"] == [3, 16, 16]
    net.input_size = (3, 16, 16)
    assert receptive_field(net, "2[0,2,2]").size == 6.0
    sizes = receptive_field_sizes(net, size=(3, 16, 16), methods=["theoretical"], progress=False)
    assert list(sizes.layers) == ["0", "2"] and sizes.size_theoretical.tolist() == [5.0, 6.0]
    with pytest.raises(InsilicoError, match="square"):
        receptive_field(net, "2[0,2,2]", size=(3, 16, 20))
    with pytest.raises(InsilicoError, match=r"size= must be an int side, \(H, W\) or \(C, H, W\)"):
        receptive_field(net, "2[0,2,2]", size=(1, 3, 16, 16))
    for tool, args in ((receptive_field, ("2[0,2,2]",)), (receptive_field_sizes, ())):
        with pytest.raises(InsilicoError, match=r"input_size= is now size="):  # the former name, refused by name
            tool(net, *args, input_size=16)


class _Layouts(nn.Module):
    """Pixels -> 4x4 patches of 5 channels, as tokens (N, 16, 5) or channels-last (N, 4, 4, 5) out of a LayerNorm
    (named ``norm``) -> mean over positions -> 3 class scores."""

    def __init__(self, layout):
        super().__init__()
        torch.manual_seed(0)
        self.layout, self.patch, self.norm, self.head = layout, nn.Conv2d(3, 5, 4, stride=4), nn.LayerNorm(5), nn.Linear(5, 3)

    def forward(self, x):
        z = self.patch(x).permute(0, 2, 3, 1)  # (N, 4, 4, 5)
        z = self.norm(z.flatten(1, 2) if self.layout == "tokens" else z)
        return self.head(z.flatten(1, -2).mean(1))


@pytest.mark.parametrize("layout", ["tokens", "channels_last"])
def test_lesion_sweep_lesions_the_channels_of_token_and_channels_last_layers(layout):
    """One group per channel (the feature / last axis: 5), not per token (16) or row (4), and each group's accuracy
    is that of the model with that channel zeroed at every position, computed by hand."""
    net = _Layouts(layout).eval()
    x = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = net(x).argmax(1).roll(1).numpy()  # labels the intact model partly gets right
    result = lesion_sweep(net, "norm", raw(x), labels=y, n_boot=0, progress=False)
    assert list(result.groups) == ["0", "1", "2", "3", "4"]
    for c in range(5):
        hook = net.norm.register_forward_hook(lambda m, i, out: out.index_fill(-1, torch.tensor([c]), 0.0))
        with torch.no_grad():
            expected = (net(x).argmax(1).numpy() == y).mean()
        hook.remove()
        assert result.accuracy[c] == pytest.approx(expected)
