"""Tests of the synthesis engine, its parts (parameterizations, transforms, stopping rules, results) and maximize."""
import os

import numpy as np
import pytest
import torch
from torch import nn

import insilico
from conftest import no_insilico_hooks
from insilico.errors import InsilicoError, StimulusError, UnitError
from insilico.objectives import Activation, Channel, Objective, inhibit
from insilico.synthesis import (Fourier, LinfBall, MaxSteps, Pixel, PixelChange, Plateau, StopState, Synthesis,
                                SynthesisResult, TargetReached, Transforms, derive_seed)
from insilico import maximize
from insilico.synthesis import color, stopping
from insilico.synthesis.lbfgs import BatchLBFGS
from insilico.synthesis.parameterization import gaussian_blur


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cnn(in_channels=3):
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3), nn.ReLU(),
    ).eval()


def trained_or_random_alexnet():
    """The bundled trained MiniAlexNet when its weights have shipped, else the same architecture at random init."""
    from insilico import models

    if "minialex" in models.available():
        return models.load("minialex"), "trained"
    torch.manual_seed(0)
    return models.MiniAlexNet().eval(), "random-init"


# ---------------------------------------------------------------------------------------
# The headline property: maximizing images beat natural images, inhibiting ones undercut them
# ---------------------------------------------------------------------------------------
def test_maximizing_and_inhibiting_images_beat_1000_natural_crops_and_noise():
    """Units chosen from natural images alone (weights may be retrained): per layer (conv2, conv4), the two
    channels that natural crops drive most (several conv4 channels of the trained net never go above 0)."""
    from insilico.models import photos

    model, kind = trained_or_random_alexnet()
    crops, _ = photos.held_out(63, seed=0)                                 # 1008 natural crops
    noise = torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    reference = torch.cat([crops, noise])
    with torch.no_grad(), insilico.Probe(model).record("features.3", "features.8", reduce="mean") as rec:
        model(crops)
    units = [f"{layer}[{int(c)}]" for layer in ("features.3", "features.8")
             for c in rec[layer].max(dim=0).values.topk(2).indices]
    objective = Objective.stack([Activation(u) for u in units] + [inhibit(Activation(u)) for u in units])
    result = maximize(model, objective, steps=128, lr=0.1, progress=False)
    with torch.no_grad(), insilico.Probe(model).record(*units) as rec:
        model(torch.cat([reference, result.images]))
    values = torch.stack([rec[u].flatten(1).mean(dim=1) for u in units], dim=1)
    ref, ours = values[: len(reference)], values[len(reference):]
    best, worst = ref.max(dim=0).values, ref.min(dim=0).values
    excite, inhibit_ = ours[:4].diag(), ours[4:].diag()
    assert (excite > best).all(), f"{kind} model, {units}: maximizing {excite.tolist()} vs best {best.tolist()}"
    assert (inhibit_ < worst).all(), f"{kind} model, {units}: inhibiting {inhibit_.tolist()} vs lowest {worst.tolist()}"
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1


# ---------------------------------------------------------------------------------------
# Batching and seeding
# ---------------------------------------------------------------------------------------
def test_batch_of_units_equals_single_runs():
    model = small_cnn().double()
    units = ["2[1]", "5[0]", "5[3]"]
    options = dict(size=(3, 16, 16), steps=8, progress=False, seed=3, pad=2, jitter=1.5)
    batch = maximize(model, units, **options)
    for i, unit in enumerate(units):
        single = maximize(model, unit, **options)
        assert single.labels == [batch.labels[i]]
        torch.testing.assert_close(single.images[0], batch.images[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(single.trace[:, 0], batch.trace[:, i], atol=1e-5, rtol=0)
    # chunking does not change the images either
    chunked = maximize(model, units, batch_size=2, **options)
    torch.testing.assert_close(chunked.images, batch.images, atol=1e-5, rtol=0)


def test_same_seed_same_images_different_seed_different_images():
    model = small_cnn()
    run = lambda seed: maximize(model, "5", size=16, steps=8, progress=False, seed=seed)
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.trace, b.trace)
    assert (a.images - c.images).abs().amax(dim=(1, 2, 3)).min() > 1e-3      # every image differs
    assert len(set(a.seeds)) == len(a) == 6 and a.seeds != c.seeds


def test_grayscale_non_square_images_stay_in_range():
    model = small_cnn(in_channels=1)
    for parameterization in ("fourier", "pixel"):
        result = maximize(model, ["2[0]", "5[1]"], size=(1, 18, 30), steps=10, lr=0.2, progress=False,
                          parameterization=parameterization, pad=3, jitter=2)
        assert tuple(result.images.shape) == (2, 1, 18, 30)
        assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
        assert (result.trace[-1] > result.trace[0]).all()           # the objective went up


def test_model_without_input_size_needs_size():
    with pytest.raises(StimulusError, match="size="):
        maximize(small_cnn(), "5")
    with pytest.raises(UnitError, match="has no module"):
        maximize(small_cnn(), "features.99", size=16)


# ---------------------------------------------------------------------------------------
# Parameterizations and colour
# ---------------------------------------------------------------------------------------
def test_parameterizations_start_exactly_at_given_images():
    images = torch.rand(3, 3, 17, 26) * 0.98 + 0.01
    for cls, options in ((Fourier, {}), (Fourier, {"color": None, "decay": 1.5}), (Pixel, {"squash": "sigmoid"}),
                         (Pixel, {})):
        param = cls.from_images(images, **options)
        assert torch.allclose(param().detach(), images, atol=1e-5), (cls, options)


def test_fourier_amplitude_follows_one_over_f_to_the_decay():
    for decay in (1.0, 2.0):
        param = Fourier(1, (1, 32, 32), decay=decay, color=None)
        assert param.scale[0, 2] / param.scale[0, 8] == pytest.approx(4.0**decay)


def test_fourier_blur_equals_circular_gaussian_blur_in_pixels():
    param = Fourier(1, (1, 24, 24), color=None, squash="clamp", generators=[torch.Generator().manual_seed(0)])
    with torch.no_grad():
        param.param.mul_(30)
        before = torch.fft.irfft2(torch.view_as_complex(param.param) * param.scale, s=(24, 24), norm="ortho")
        param.blur_(1.5)                       # sigma 1.5: the sampled kernel's aliasing is < 1e-4
        after = torch.fft.irfft2(torch.view_as_complex(param.param) * param.scale, s=(24, 24), norm="ortho")
    wrapped = torch.cat([before[..., -8:, :], before, before[..., :8, :]], dim=2)
    wrapped = torch.cat([wrapped[..., -8:], wrapped, wrapped[..., :8]], dim=3)
    t = torch.arange(-8, 9, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / 1.5) ** 2)
    k = k / k.sum()
    expected = nn.functional.conv2d(nn.functional.conv2d(wrapped, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-3)


def test_pixel_blur_smooths_and_keeps_the_mean():
    x = torch.rand(2, 3, 20, 20)
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape and torch.allclose(y.mean(), x.mean(), atol=2e-3)
    assert (y[..., 1:] - y[..., :-1]).abs().mean() < 0.5 * (x[..., 1:] - x[..., :-1]).abs().mean()


def test_decorrelation_matrix_reproduces_the_photos_colour_covariance():
    import skimage.data

    pixels = [getattr(skimage.data, n)()[..., :3].reshape(-1, 3) / 255.0 for n in color.PHOTOS]
    mean = np.mean([p.mean(0) for p in pixels], axis=0)
    cov = np.mean([np.cov((p - mean).T, bias=True) + np.outer(p.mean(0) - mean, p.mean(0) - mean) for p in pixels], 0)
    root = color.COLOR_SQRT.double().numpy()
    np.testing.assert_allclose(root @ root.T, cov, atol=1e-6)          # shipped constant
    torch.testing.assert_close(color.estimate_color_sqrt(), color.COLOR_SQRT, atol=1e-6, rtol=0)
    normalized = color.normalized_color_matrix()
    assert float(normalized.norm(dim=0).max()) == pytest.approx(1.0)
    # white noise through the matrix has the photos' colour correlations
    z = torch.randn(3, 200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rgb = normalized.double() @ z
    corr = np.corrcoef(rgb.numpy())
    photo_corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.testing.assert_allclose(corr, photo_corr, atol=0.01)


# ---------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------
def test_transforms_differ_per_sample_and_do_not_depend_on_the_batch():
    t = Transforms(pad=3, jitter=4, scale=(0.8, 1.2), rotate=20)
    generators = [torch.Generator().manual_seed(derive_seed(0, i)) for i in range(5)]
    params = t.draw(generators)
    assert params.shape == (5, 4) and len({tuple(p.tolist()) for p in params}) == 5
    assert params[:, :2].abs().max() <= 4 and params[:, 2].min() >= 0.8 and params[:, 3].abs().max() <= np.radians(20)
    same = torch.rand(1, 2, 16, 24).expand(5, -1, -1, -1)
    out = t.apply(same, params)
    assert out.shape == (5, 2, 22, 30)
    diffs = [(out[i] - out[j]).abs().max() for i in range(5) for j in range(i)]
    assert min(diffs) > 0.01                                         # every pair of samples was transformed differently
    alone = t.draw([torch.Generator().manual_seed(derive_seed(0, 3))])
    assert torch.equal(alone[0], params[3])


def test_transform_geometry_shift_and_identity():
    x = torch.zeros(1, 1, 9, 12)
    x[0, 0, 4, 5] = 1.0
    t = Transforms(pad=2, fill=0.0)
    identity = t.apply(x, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    assert torch.allclose(identity[0, 0, 2:-2, 2:-2], x[0, 0], atol=1e-6)
    shifted = t.apply(x, torch.tensor([[3.0, -1.0, 1.0, 0.0]]))       # 3 px right, 1 px up
    assert shifted[0, 0].argmax() == (4 - 1 + 2) * 16 + (5 + 3 + 2)
    quarter = t.apply(torch.ones(1, 1, 8, 8), torch.tensor([[0.0, 0.0, 1.0, np.pi / 2]]))
    assert float(quarter[0, 0, 2:-2, 2:-2].min()) > 0.99                  # a square turned by 90 degrees covers itself



def test_resized_transforms_resample_the_padded_canvas_to_the_given_size():
    x = torch.rand(2, 3, 16, 16)
    params = torch.tensor([[0.0, 0.0, 1.0, 0.0], [2.0, -1.0, 1.1, 0.2]], dtype=torch.float64)
    t = Transforms(pad=4, jitter=2, scale=(0.9, 1.1), rotate=10)
    padded, resized = t.apply(x, params), t.resized((16, 16)).apply(x, params)
    assert padded.shape == (2, 3, 24, 24) and resized.shape == (2, 3, 16, 16)
    # the same canvas at a lower resolution: bilinear area-shrink of the padded output
    shrunk = torch.nn.functional.interpolate(padded, size=(16, 16), mode="bilinear", align_corners=False,
                                             antialias=False)
    assert (resized - shrunk).abs().mean() < 0.05 and (resized - x).abs().mean() > 0.05
    assert Transforms(**t.resized((16, 16)).spec()) == t.resized((16, 16))  # settings round-trip (resume)


def test_fixed_input_size_models_take_the_default_transforms():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=16, mlp_dim=32).eval()
    with pytest.raises(Exception, match="Wrong image height"):
        vit(torch.rand(1, 3, 36, 36))                                # the padded canvas is refused
    result = maximize(vit, "conv_proj[7]", size=32, steps=12, progress=False)
    assert result.images.shape == (1, 3, 32, 32)
    assert result.settings["transforms"]["pad"] > 0 and result.settings["transforms"]["size"] == [32, 32]
    assert float(result.trace[-1, 0]) > float(result.trace[0, 0]) + 0.1   # the channel is driven up
    with pytest.raises(Exception, match="Wrong image height"):       # a size it cannot take still fails
        maximize(vit, "conv_proj[7]", size=40, steps=1, progress=False)


# ---------------------------------------------------------------------------------------
# Stopping rules (alone) and frozen samples
# ---------------------------------------------------------------------------------------
def test_stopping_rules_alone():
    state = lambda step, goal=1.0, change=(0.0, 0.0): StopState(step, goal, torch.tensor(change))
    trace = torch.tensor([[1.0, 1.5], [2.0, 1.5], [3.0, 1.5], [3.0, 1.55]])
    assert MaxSteps(4)(trace, state(3)).tolist() == [False, False]
    assert MaxSteps(4)(trace, state(4)).tolist() == [True, True]
    assert TargetReached(2.5)(trace, state(4)).tolist() == [True, False]
    assert TargetReached(1.2)(-trace, state(4, goal=-1.0)).tolist() == [True, True]
    assert TargetReached(-2.0)(-trace, state(4, goal=-1.0)).tolist() == [True, False]
    # plateau: means of the last two windows of 2 steps: [1.5, 1.5] then [3.0, 1.525]
    assert Plateau(tol=0.1, window=2)(trace, state(4)).tolist() == [False, True]
    assert Plateau(tol=0.1, window=2, relative=False)(trace, state(4)).tolist() == [False, True]
    assert Plateau(tol=0.1, window=3)(trace, state(4)).tolist() == [False, False]   # too short to judge
    assert PixelChange(1e-3)(trace, state(4, change=(1e-4, 1e-2))).tolist() == [True, False]
    assert stopping.rule_name(PixelChange()) == "pixel_change" and stopping.from_spec(stopping.rule_spec(Plateau(0.5))) == Plateau(0.5)


def test_frozen_sample_stops_changing_and_reports_its_rule():
    model = small_cnn()

    def freeze_first_after_3(trace, state):
        return (torch.arange(trace.shape[1]) == 0) & (state.step >= 3)

    common = dict(n=3, size=(3, 16, 16), progress=False, lr=0.1, transforms=Transforms(jitter=1))
    objective = Objective.stack([Channel("5", 0), Channel("5", 1), Channel("5", 2)])
    synth = Synthesis(model, objective, stop=[freeze_first_after_3, TargetReached(1e9)], **common)
    result = synth.run(10)
    short = Synthesis(model, objective, **common).run(3)
    assert result.stop_reasons == ["freeze_first_after_3", "steps", "steps"]
    assert result.steps.tolist() == [4, 10, 10] and len(result.traces[0]) == 4
    assert torch.isnan(result.trace[4:, 0]).all() and not torch.isnan(result.trace[:, 1:]).any()
    assert torch.equal(result.images[0], short.images[0])           # sample 0 kept its image after 3 updates
    assert not torch.equal(result.images[1], short.images[1])       # the others went on


def test_target_reached_stops_early_and_all_stopped_ends_the_run():
    model = small_cnn()
    synth = Synthesis(model, Channel("5", 0), n=2, size=(3, 16, 16), progress=False, lr=0.2, sync_every=4,
                      stop=[TargetReached(-1e9)])
    result = synth.run(50)
    assert result.stop_reasons == ["target_reached"] * 2 and synth.step == 4      # host checks every 4 steps
    assert result.steps.tolist() == [1, 1]


# ---------------------------------------------------------------------------------------
# Resuming, interruption, model hygiene, save/load
# ---------------------------------------------------------------------------------------
def _synth(model, **kw):
    objective = Objective.stack([Channel("5", 1), Channel("2", 3)])
    return Synthesis(model, objective, n=2, size=(3, 16, 16), progress=False, seed=5,
                     transforms=Transforms(pad=2, jitter=2, scale=(0.9, 1.1), rotate=5), schedule="cosine",
                     schedule_steps=20, **{"lr": 0.1, **kw})


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.1), ("lbfgs", 1.0)])
def test_resume_equals_uninterrupted_run(tmp_path, optimizer, lr):
    model = small_cnn()
    whole = _synth(model, optimizer=optimizer, lr=lr).run(20)
    synth = _synth(model, optimizer=optimizer, lr=lr)
    first = synth.run(8)
    second = synth.run(12)
    assert first.trace.shape[0] == 8 and second.trace.shape[0] == 20 and second.steps.tolist() == [20, 20]
    assert torch.equal(second.images, whole.images) and torch.equal(second.trace, whole.trace)
    # through a file: save after 8 steps, load, continue in a new Synthesis
    path = tmp_path / "half.pt"
    _synth(model, optimizer=optimizer, lr=lr).run(8).save(path)
    loaded = SynthesisResult.load(path)
    resumed = Synthesis.resume(loaded, model, Objective.stack([Channel("5", 1), Channel("2", 3)]), progress=False)
    assert resumed.step == 8 and resumed.optimizer_name == optimizer
    again = resumed.run(12)
    assert torch.equal(again.images, whole.images) and torch.equal(again.trace, whole.trace)


def test_maximize_resume_continues_chunks():
    model = small_cnn()
    options = dict(size=16, steps=6, progress=False, batch_size=4)
    whole = maximize(model, "5", **{**options, "steps": 12})
    half = maximize(model, "5", **options)
    rest = maximize(model, "5", resume=half, **options)
    assert torch.equal(rest.images, whole.images) and rest.trace.shape[0] == 12


def test_interrupt_restores_model_and_keeps_state():
    model = small_cnn()
    model.train()
    model[0].weight.requires_grad_(False)

    class Interrupting(Objective):
        def __init__(self):
            self.inner, self.calls = Channel("5", 1), 0
            self.units = self.inner.units

        def forward(self, acts, images):
            self.calls += 1
            if self.calls == 6:        # call 1 is the validation pass: interrupt during step 5
                raise KeyboardInterrupt
            return self.inner(acts, images)

    objective = Interrupting()
    synth = Synthesis(model, objective, n=2, size=(3, 16, 16), progress=False, transforms=Transforms(jitter=2))
    with pytest.raises(KeyboardInterrupt):
        synth.run(10)
    assert no_insilico_hooks(model) and model.training and all(m.training for m in model.modules())
    assert model[0].weight.requires_grad is False and model[2].weight.requires_grad is True
    assert synth.step == 4 and synth.result().stop_reasons == ["running", "running"]
    synth.run(6)
    reference = Synthesis(model, Channel("5", 1), n=2, size=(3, 16, 16), progress=False,
                          transforms=Transforms(jitter=2)).run(10)
    assert torch.equal(synth.result().images, reference.images)
    assert model.training and no_insilico_hooks(model)
    assert all(p.grad is None for p in model.parameters())


def test_save_load_round_trip_and_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = maximize(small_cnn(), ["5[0]", "5[2]"], size=16, steps=5, progress=False, images_per_unit=2,
                      diversity=0.1)
    path = tmp_path / "r.pt"
    result.save(path)
    loaded = SynthesisResult.load(path)
    assert torch.equal(loaded.images, result.images) and torch.equal(loaded.trace, result.trace)
    assert loaded.labels == ["5[0]#0", "5[0]#1", "5[2]#0", "5[2]#1"] and loaded.seeds == result.seeds
    assert loaded.settings == result.settings and loaded.settings["optimizer"] == "adam"
    assert loaded.versions["torch"] == torch.__version__ and loaded.seed == 0
    raw = torch.load(path, weights_only=True)                        # nothing but tensors, numbers and strings
    assert raw["format"] == 2 and raw["kind"] == "insilico.synthesis.result:SynthesisResult"
    fig, ax = plt.subplots()
    assert result.plot(ax=ax) is fig and result.plot_traces() is not None
    plt.close("all")
    with pytest.raises(InsilicoError, match="not a synthesis result"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
        SynthesisResult.load(tmp_path / "other.pt")
    back = insilico.load(path)                                       # by its recorded type, no class needed
    assert type(back) is SynthesisResult and torch.equal(back.images, result.images)
    with pytest.raises(InsilicoError, match="no recorded type"):
        insilico.load(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------------
# The engine for other syntheses: minimize from given images, projection, L-BFGS
# ---------------------------------------------------------------------------------------
class MatchFeatures(Objective):
    """Squared distance of a layer's activation to a target (a metamer-style loss)."""

    def __init__(self, layer, target):
        self.layer, self.target, self.units = layer, target, (insilico.Unit.parse(layer),)

    def forward(self, acts, images):
        return (acts[self.layer] - self.target).pow(2).flatten(1).mean(dim=1)


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.02), ("lbfgs", 1.0)])
def test_minimize_from_given_images_with_projection(optimizer, lr):
    model = small_cnn()
    g = torch.Generator().manual_seed(0)
    start, goal_images = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        target = _layer(model, goal_images)
    objective = MatchFeatures("4", target)
    project = LinfBall(start, eps=0.1)
    synth = Synthesis(model, objective, "pixel", init=start, goal="minimize", optimizer=optimizer, lr=lr,
                      projection=project, progress=False)
    assert torch.equal(synth.images, start)
    result = synth.run(15)
    assert (result.trace[-1] < 0.8 * result.trace[0]).all()
    assert (result.images - start).abs().max() <= 0.1 + 1e-6
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1


def _layer(model, images):
    with insilico.Probe(model).record("4") as rec:
        model(images)
    return rec["4"]


def test_maximize_from_given_images_starts_exactly_there_and_ascends():
    model = small_cnn()
    start = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    units = ["5[0]", "5[4]"]
    result = maximize(model, units, size=16, init=start, transforms=None, steps=10, progress=False)
    with torch.no_grad():
        at_start = torch.stack([Activation(u).evaluate(model, start[i:i + 1])[0] for i, u in enumerate(units)])
    torch.testing.assert_close(result.trace[0], at_start, atol=1e-4, rtol=0)
    assert (result.trace[-1] > result.trace[0]).all()


def test_diversity_pushes_a_units_images_apart():
    model = small_cnn()
    options = dict(size=16, steps=30, lr=0.1, images_per_unit=3, progress=False, transforms=None)
    plain = maximize(model, ["2[1]"], **options)
    diverse = maximize(model, ["2[1]"], diversity=5.0, **options)

    def spread(images):
        with insilico.Probe(model).record("2") as rec, torch.no_grad():
            model(images)
        grams = torch.einsum("nchw,ndhw->ncd", rec["2"], rec["2"]).flatten(1)
        grams = torch.nn.functional.normalize(grams, dim=1)
        return 1 - (grams @ grams.T)[~torch.eye(3, dtype=torch.bool)].mean()

    assert spread(diverse.images) > 1.5 * spread(plain.images)


def test_losses_are_per_sample_traces():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3))  # linear units: never stuck at zero like a dead ReLU
    result = insilico.maximize(model, ["0[0]", "0[2]"], size=(1, 12, 12), steps=12, progress=False)
    assert result.losses.shape == (2, 12)
    assert torch.equal(result.losses[1], result.traces[1])
    assert (result.losses[:, -1] > result.losses[:, 0]).all()  # maximization raised each unit


def test_a_channel_slice_is_one_unit_of_maximize():
    """The docstring and README: a slice address is ONE unit (the mean over its channels), so one image."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3))
    result = insilico.maximize(model, ["0[0:4]", "0[5]"], size=10, steps=2, progress=False)
    assert result.images.shape == (2, 3, 10, 10) and result.labels == ["0[0:4]", "0[5]"]


def test_plot_pages_selects_units_and_keeps_titles_apart_and_images_readable():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 130
    r = SynthesisResult(torch.rand(n, 3, 64, 64), torch.rand(3, n), torch.full((n,), 3), ["steps"] * n,
                        [f"features.8[{i // 2}]#{i % 2}" for i in range(n)])
    panels = lambda fig: [a for a in fig.axes if a.images]
    first, last = r.plot(), r.plot(page=2)
    assert len(panels(first)) == 64 and len(panels(last)) == 2 and "page 3 of 3" in last._suptitle.get_text()
    with pytest.raises(InsilicoError, match="3 page"):
        r.plot(page=3)
    picked = r.plot(units=["features.8[3]", 0])
    assert [a.get_title().split("\n")[0] for a in panels(picked)] == ["features.8[3]#0", "features.8[3]#1",
                                                                        "features.8[0]#0"]
    with pytest.raises(InsilicoError, match="no image of 'features.9'"):
        r.plot(units=["features.9"])
    first.canvas.draw()                                     # titles never reach into the panel above
    renderer = first.canvas.get_renderer()
    above, below = panels(first)[0], panels(first)[8]       # 8 columns
    assert below.title.get_window_extent(renderer).y1 <= above.get_window_extent(renderer).y0 + 1
    one = SynthesisResult(torch.rand(1, 3, 224, 224), torch.rand(2, 1), torch.tensor([2]), ["steps"], ["a"]).plot()
    assert one.get_size_inches()[0] * one.dpi >= 224        # a 224-px image at (at least) its own size
    fig, ax = plt.subplots(figsize=(3, 3))
    assert r.plot(ax=ax) is fig and len(ax.texts) == 0      # no room for 64 titles: none rather than overlapping
    plt.close("all")


def test_optimizer_factory_is_used_and_named_in_settings():
    made = []

    def plain_sgd(params, lr):
        made.append(lr)
        return torch.optim.SGD(params, lr=lr)

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    synth = Synthesis(model, Channel("0", 1), "pixel", n=2, size=(1, 8, 8), optimizer=plain_sgd, lr=0.5, steps=3,
                      progress=False)
    reference = Synthesis(model, Channel("0", 1), "pixel", n=2, size=(1, 8, 8), optimizer="sgd", lr=0.5, steps=3,
                          progress=False)
    result = synth.run()
    assert made == [0.5] and result.settings["optimizer"] == "plain_sgd"
    assert torch.equal(result.images, reference.run().images)
    with pytest.raises(InsilicoError, match="factory"):
        Synthesis(model, Channel("0", 1), n=1, size=(1, 8, 8), optimizer="rmsprop")


# ---------------------------------------------------------------------------------------
# Per-sample L-BFGS
# ---------------------------------------------------------------------------------------
def _quadratics(conditions, dim=12, seed=0):
    """One convex quadratic 0.5 (x - c)' A (x - c) per condition number (random rotation, log-spaced spectrum)."""
    g = torch.Generator().manual_seed(seed)
    mats, centres = [], []
    for cond in conditions:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        mats.append(q @ torch.diag(torch.logspace(0, np.log10(cond), dim, dtype=torch.float64)) @ q.T)
        centres.append(torch.randn(dim, generator=g, dtype=torch.float64))
    return torch.stack(mats), torch.stack(centres)


def _minimise(make_opt, a, c, steps):
    """Run an optimizer on the quadratics ``a``, ``c`` from 0; returns (x, optimizer)."""
    x = torch.zeros_like(c, requires_grad=True)
    opt = make_opt([x])

    def closure():
        opt.zero_grad()
        e = x - c
        losses = 0.5 * torch.einsum("nd,nde,ne->n", e, a, e)
        losses.sum().backward()
        return losses.detach() if isinstance(opt, BatchLBFGS) else losses.detach().sum()  # torch's: a number

    for _ in range(steps):
        opt.step(closure)
    return x.detach(), opt


def test_batch_lbfgs_finds_each_quadratics_minimiser():
    a, c = _quadratics([1.0, 30.0, 1e3, 1e5], dim=8)
    x, opt = _minimise(BatchLBFGS, a, c, steps=150)
    assert (x - c).abs().max() < 1e-9
    # a sample's path alone equals its path in the batch (torch's L-BFGS shares one line search instead)
    for i in range(4):
        alone, _ = _minimise(BatchLBFGS, a[i:i + 1], c[i:i + 1], steps=150)
        torch.testing.assert_close(alone[0], x[i], atol=1e-12, rtol=0)
    shared, _ = _minimise(lambda p: torch.optim.LBFGS(p, max_iter=1, line_search_fn="strong_wolfe"), a, c, 150)
    assert (shared - c).abs().max() > 1e-3  # one step size for all: the ill-conditioned samples lag


def test_batch_lbfgs_agrees_with_torch_lbfgs_without_line_search():
    """With every first trial accepted (no backtracking), the iterates are torch's with line_search_fn=None."""
    a, c = _quadratics([4.0], seed=2)
    ours, opt = _minimise(BatchLBFGS, a, c, steps=10)
    assert opt.evaluations == 11  # the start, then one trial per step (the accepted point is reused): no backtracking
    torch_lbfgs = lambda p: torch.optim.LBFGS(p, max_iter=1, tolerance_grad=0, tolerance_change=0)
    theirs, _ = _minimise(torch_lbfgs, a, c, steps=10)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    assert (ours - c).abs().max() < 1e-4


def test_batch_lbfgs_safeguards_and_frozen_samples():
    x = torch.tensor([[1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    opt = BatchLBFGS([x])

    def closure():
        opt.zero_grad()
        losses = (x ** 2).sum(dim=1) + torch.tensor([0.0, 1.0]) * x[:, 0] ** 4
        losses.sum().backward()
        return losses.detach()

    start = opt.step(closure, active=torch.tensor([True, False]))
    assert start.tolist() == [2.0, 3.0] and x[1].tolist() == [1.0, 1.0]  # the inactive sample did not move
    pairs = lambda: (opt.state[x]["rho"] > 0).sum(dim=0).tolist()
    assert pairs() == [1, 0] and opt.state[x]["s"].shape == (10, 2, 2)
    # a non-descent direction (corrupted history: H = -I) clears that sample's history; the step still goes down
    opt.state[x]["gamma"][0], opt.state[x]["rho"][0, 0] = -1.0, 0.0
    before = closure()
    opt.step(closure)
    assert (closure() < before).all() and pairs() == [1, 1]
    saved = opt.state_dict()
    again = BatchLBFGS([x.detach().clone().requires_grad_()])
    again.load_state_dict(saved)
    assert torch.equal(again.state[again.param_groups[0]["params"][0]]["s"], opt.state[x]["s"])


def test_lbfgs_synthesis_sample_alone_equals_sample_in_batch():
    model = small_cnn().double()
    g = torch.Generator().manual_seed(0)
    start, goal_images = torch.rand(3, 3, 16, 16, generator=g).double(), torch.rand(3, 3, 16, 16, generator=g).double()
    with torch.no_grad():
        target = _layer(model, goal_images)
    run = lambda rows: Synthesis(model, MatchFeatures("4", target[rows]), "pixel", init=start[rows], goal="minimize",
                                 optimizer="lbfgs", lr=1.0, param_options={"squash": "sigmoid"}, labels=[str(i) for i in rows],
                                 progress=False).run(25)
    batch = run([0, 1, 2])
    assert (batch.trace[-1] < 0.05 * batch.trace[0]).all()
    for i in range(3):
        alone = run([i])
        torch.testing.assert_close(alone.trace[:, 0], batch.trace[:, i], atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(alone.images[0], batch.images[i], atol=1e-6, rtol=0)


def test_compaction_runs_only_the_running_samples_and_changes_nothing():
    model = small_cnn()
    objective = Objective.stack([Channel("5", 1), Channel("5", 3), Channel("2", 0)])
    stops = lambda trace, state: torch.tensor([state.step >= 2, False, state.step >= 5])  # samples 0, 2 stop early
    run = lambda compact: Synthesis(model, objective, n=3, size=(3, 16, 16), stop=[stops], lr=0.1, seed=1,
                                    transforms=Transforms(jitter=2), compact=compact, progress=False).run(8)
    batches = []
    handle = model[0].register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:
        full, compact = run(False), run(True)
    finally:
        handle.remove()
    assert batches[1:9] == [3] * 8  # (after the validation pass) every sample, every step
    assert batches[10:] == [3, 3, 3, 2, 2, 2, 1, 1]  # then only the running ones
    assert compact.steps.tolist() == full.steps.tolist() == [3, 8, 6]
    torch.testing.assert_close(compact.images, full.images, atol=1e-5, rtol=0)
    torch.testing.assert_close(compact.trace, full.trace, atol=1e-5, rtol=1e-5, equal_nan=True)
