"""Neural predictors, every tool on them, population control, and the simulated closed loop (small, CPU-fast)."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import insilico
from insilico.data.simulated import SimulatedBrain
from insilico.design.population_control import PopulationControlResult, controllability
from insilico.objectives import PopulationControl, control_score
from insilico.synthesis import ContrastBudget
from insilico.encoding import RidgeCV, fit_predictor, pearson_r
from insilico.errors import InsilicoError
from insilico.encoding import Ensemble, NeuralPredictor


class Net(nn.Module):
    """conv -> relu -> conv -> relu -> head; the head counts its calls (truncation must skip it)."""

    input_size = (3, 16, 16)

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(8 * 8 * 8, 2)
        self.head_calls = 0

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        self.head_calls += 1
        return self.head(x.flatten(1))


def smooth_images(n, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = Net().eval()
    images = smooth_images(400)
    brain = SimulatedBrain(net, "relu2", n_neurons=6, channels=2, rf_sigma=1.0, threshold=0.0,
                           calibration=images[:200], seed=1)
    responses = brain.respond(images, repetitions=4, seed=0)
    predictor = fit_predictor(net, images, responses, layers=["relu2"], progress=False)
    return net, images, brain, responses, predictor


# ---------------------------------------------------------------------------------------------
# the predictor
# ---------------------------------------------------------------------------------------------
def test_predictor_fits_a_known_readout_and_folds_the_standardisation():
    net = Net().eval()
    x = smooth_images(120, seed=3)
    with torch.no_grad():
        feats = net.relu1(net.conv1(x)).mean((2, 3))
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    y = feats @ w + 5.0
    p = fit_predictor(net, x, y, layers=["relu1"], reduce="mean", held_out=0.25, targets=["a", "b", "c"],
                      progress=False)
    assert isinstance(p, NeuralPredictor) and isinstance(p, nn.Module)
    assert p.targets == ["a", "b", "c"] and p.input_size == (3, 16, 16)
    assert set(p.scores) >= {"r", "r2", "alpha"} and p.scores["r"].shape == (3,)
    assert (p.scores["r"] > 0.99).all()
    with torch.no_grad():
        out = p(x)
    assert out.shape == (120, 3)
    # the folded linear layer equals ridge on standardised features (same per-target alphas)
    z = (feats - feats.mean(0)) / feats.std(0)
    from insilico.encoding import solve_ridge
    coef, intercept = solve_ridge(z, y, torch.as_tensor(p.scores["alpha"], dtype=torch.float32))
    assert torch.allclose(out, z @ coef + intercept, atol=1e-3, rtol=1e-3)
    assert float(pearson_r(y, out).min()) > 0.999


def test_predictor_stops_the_trunk_after_its_last_layer_and_leaves_no_hooks(setup):
    net, images, _, _, predictor = setup
    before = net.head_calls
    with torch.no_grad():
        predictor(images[:4])
        predictor(images[:4])
    assert net.head_calls - before <= 1     # at most the one learning pass, then every pass stops at relu2
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_repetitions_give_a_noise_ceiling_and_normalised_r(setup):
    _, _, _, _, predictor = setup
    s = predictor.scores
    assert s["ceiling"].shape == (6,) and (s["ceiling"] > 0.5).all()
    assert np.nanmedian(s["r"]) > 0.75
    assert np.allclose(s["normalized_r"], s["r"] / s["ceiling"], equal_nan=True)
    assert predictor.response_std.shape == (6,) and (predictor.response_max > predictor.response_mean).all()


def test_predictor_saves_and_loads_on_its_trunk(setup, tmp_path):
    net, images, _, _, predictor = setup
    predictor.save(tmp_path / "p.pt")
    back = NeuralPredictor.load(tmp_path / "p.pt", net)
    with torch.no_grad():
        assert torch.equal(back(images[:3]), predictor(images[:3]))
    assert back.targets == predictor.targets and np.array_equal(back.scores["r"], predictor.scores["r"])
    assert torch.equal(back.response_max, predictor.response_max)


def test_factorized_readout_is_rank_one_per_target(setup):
    net, images, _, responses, _ = setup
    p = fit_predictor(net, images, responses, layers=["relu2"], readout="factorized", progress=False)
    full = torch.linalg.svdvals(setup[4].readout.weight.detach().reshape(6, 8, 64))
    s = torch.linalg.svdvals(p.readout.weight.detach().reshape(6, 8, 64))
    assert (s[:, 1] / s[:, 0] < 1e-3).all() and (full[:, 1] / full[:, 0] > 0.1).all()
    assert np.nanmedian(p.scores["r"]) > 0.5


def test_bad_inputs_fail_with_the_fix():
    net = Net()
    x = smooth_images(20)
    with pytest.raises(InsilicoError, match="must match"):
        fit_predictor(net, x, torch.rand(19, 2), layers=["relu1"], progress=False)
    with pytest.raises(insilico.UnitError):
        fit_predictor(net, x, torch.rand(20, 2), layers=["relu9"], progress=False)
    with pytest.raises(InsilicoError, match="reduce"):
        fit_predictor(net, x, torch.rand(20, 2), layers=["relu1"], reduce="median", progress=False)


# ---------------------------------------------------------------------------------------------
# every tool works on a predictor
# ---------------------------------------------------------------------------------------------
def test_maximize_and_gradient_maps_work_on_a_predictor(setup):
    _, images, _, _, predictor = setup
    result = insilico.maximize(predictor, ["[0]", "[3]"], steps=24, progress=False)
    assert result.images.shape == (2, 3, 16, 16)
    with torch.no_grad():
        mei = predictor(result.images)
        grey = predictor(torch.full((1, 3, 16, 16), 0.5))
    assert mei[0, 0] > grey[0, 0] and mei[1, 3] > grey[0, 3]
    maps = insilico.gradient_map(predictor, images[:2], "[2]")
    assert maps.shape == (2, 3, 16, 16) and maps.abs().sum() > 0


def test_diverse_meis_metamers_and_controversial_stimuli_work_on_predictors(setup):
    net, images, _, responses, predictor = setup
    other = fit_predictor(net, images, responses, layers=["relu1"], reduce=2, progress=False)
    diverse = insilico.maximize(predictor, "[0]", images_per_unit=2, diversity=1.0, diversity_layer="trunk.relu2",
                                steps=5, progress=False)
    assert diverse.images.shape == (2, 3, 16, 16) and not torch.allclose(diverse.images[0], diverse.images[1])
    meta = insilico.metamer(predictor, "readout", images[:2], steps=5, progress=False)
    assert meta.images.shape == (2, 3, 16, 16)
    contested = insilico.controversial({"fine": predictor, "coarse": other}, [(0, 1)], steps=5, progress=False)
    assert contested.images.shape == (1, 3, 16, 16)


# ---------------------------------------------------------------------------------------------
# population control
# ---------------------------------------------------------------------------------------------
def test_control_score_is_the_softmax_style_score():
    r = torch.tensor([[3.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    got = control_score(r, torch.tensor([0, 2]), temperature=0.5)
    ref0 = 3.0 - 0.5 * np.log(np.mean(np.exp(np.array([0.0, 0.0]) / 0.5)))
    ref1 = 0.0 - 0.5 * np.log(np.mean(np.exp(np.array([1.0, 2.0]) / 0.5)))
    assert np.allclose(got.numpy(), [ref0, ref1], atol=1e-6)
    obj = PopulationControl([1, 0], "one_hot", temperature=0.5)
    assert torch.allclose(obj({"": r}), control_score(r, torch.tensor([1, 0]), temperature=0.5))
    assert obj.subset(torch.tensor([1])).targets.tolist() == [0]


def test_stretch_and_one_hot_beat_the_best_natural_image_on_the_predictor(setup):
    _, images, _, _, predictor = setup
    stretch = insilico.population_control(predictor, [0, 1, 2, 3], "stretch", natural=images, steps=40,
                                          progress=False)
    assert stretch.images.shape == (4, 3, 16, 16) and stretch.predicted.shape == (4, 6)
    assert (stretch.stretch > 1).float().mean() >= 0.75
    one_hot = insilico.population_control(predictor, [0, 1, 2, 3], "one_hot", natural=images, steps=40,
                                          progress=False)
    assert (one_hot.control > one_hot.natural_control).float().mean() >= 0.75
    assert one_hot.natural_images.shape == (4, 3, 16, 16) and one_hot.losses.shape == (4, 40)


def test_a_target_gets_the_same_image_alone_or_in_a_batch(setup):
    # float64: batch and single kernels round differently (~1 ulp), which optimisation steps amplify in float32
    # (machine-dependent); in float64 that stays below 1e-9, while a batch companion leaking in would not
    _, images, _, _, predictor = setup
    predictor, images = copy.deepcopy(predictor).double(), images.double()
    both = insilico.population_control(predictor, [1, 4], natural=images, steps=6, progress=False)
    alone = insilico.population_control(predictor, [4], natural=images, steps=6, progress=False)
    assert both.images.dtype == torch.float64
    torch.testing.assert_close(both.images[1], alone.images[0], rtol=0, atol=1e-9)


def test_restarts_keep_each_targets_best_predicted_start(setup):
    _, images, _, _, predictor = setup
    one = insilico.population_control(predictor, [0, 3], "one_hot", natural=images, steps=8, restarts=1, progress=False)
    four = insilico.population_control(predictor, [0, 3], "one_hot", natural=images, steps=8, restarts=4,
                                       progress=False)
    assert four.images.shape == one.images.shape and four.losses.shape == (2, 8)
    # restart 0 is the one-start run (same label, same seed): the kept start is at least as good
    assert (four.control >= one.control - 1e-4).all() and four.settings["restarts"] == 4
    with pytest.raises(InsilicoError, match="restarts"):
        insilico.population_control(predictor, [0], natural=images, steps=2, restarts=0, progress=False)


def test_contrast_budget_bounds_each_images_rms_contrast(setup):
    x = torch.rand(3, 3, 8, 8)
    y = ContrastBudget(0.1)(x)
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-6)
    assert (y.flatten(1).std(1, unbiased=False) <= 0.1 + 1e-6).all()
    _, images, _, _, predictor = setup
    r = insilico.population_control(predictor, [1, 2], natural=images, steps=6, restarts=1, contrast=0.05,
                                    progress=False)
    assert (r.images.flatten(1).std(1, unbiased=False) <= 0.05 + 1e-4).all()
    assert r.images.flatten(1).std(1).min() > 0.01


def test_natural_start_stays_within_the_budget(setup):
    _, images, _, _, predictor = setup
    r = insilico.population_control(predictor, [0, 5], natural=images, init="natural", budget=1.0,
                                    parameterization="pixel", steps=10, progress=False)
    dist = (r.images - r.natural_images).flatten(1).norm(dim=1)
    assert (dist <= 1.0 + 1e-3).all() and (dist > 0.1).all()
    assert (r.target_response >= r.natural_predicted.gather(1, r.targets[:, None])[:, 0]).all()
    with pytest.raises(InsilicoError, match="start"):
        insilico.population_control(predictor, [0], natural=images, budget=1.0, steps=2, progress=False)
    with pytest.raises(InsilicoError, match="mode"):
        insilico.population_control(predictor, [0], "two_hot", natural=images, steps=2, progress=False)
    with pytest.raises(InsilicoError, match="out of range"):
        insilico.population_control(predictor, [9], natural=images, steps=2, progress=False)


def test_result_saves_loads_concatenates_and_plots(setup, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    _, images, _, _, predictor = setup
    r = insilico.population_control(predictor, ["2", "3"], "one_hot", natural=images, steps=4, progress=False)
    assert r.labels == ["2", "3"] and r.targets.tolist() == [2, 3]
    r.save(tmp_path / "pc.pt")
    back = PopulationControlResult.load(tmp_path / "pc.pt")
    assert torch.equal(back.images, r.images) and back.mode == "one_hot" and back.target_names == r.target_names
    joined = PopulationControlResult.concat([r, back])
    assert joined.images.shape[0] == 4 and joined.predicted.shape == (4, 6) and joined.labels == ["2", "3"] * 2
    assert r.plot() is not None


def test_the_model_is_left_as_it_was(setup):
    net, images, _, _, predictor = setup
    net.train()
    flags = [p.requires_grad for p in net.parameters()]
    with torch.no_grad():
        insilico.population_control(predictor, [0], natural=images, steps=3, progress=False)
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in predictor.modules())
    net.eval()


# ---------------------------------------------------------------------------------------------
# the simulated closed loop
# ---------------------------------------------------------------------------------------------
def test_simulated_brain_is_poisson_around_its_rates(setup):
    _, images, brain, responses, _ = setup
    rates = brain.rates(images)
    assert responses.shape == (4, 400, 6) and torch.equal(responses, responses.round()) and (responses >= 0).all()
    assert torch.allclose(responses.mean(0).mean(0), rates.mean(0), rtol=0.15)
    assert float((rates.amax(0) / rates.median(0).values).min()) > 3       # sparse: a few images drive each neuron


def test_simulated_neurons_read_channels_natural_images_drive():
    images = smooth_images(200, seed=5)
    dead = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with torch.no_grad():
        dead[0].weight[0], dead[0].bias[0] = 0.0, -1.0      # channel 0 never fires on any image
    brain = SimulatedBrain(dead, "1", n_neurons=20, channels=7, calibration=images, seed=0)
    with torch.no_grad():
        std = dead(images).transpose(0, 1).flatten(1).std(1)
    live = std >= 0.1 * std.median()
    assert not live[0] and live.sum() >= 2
    reads = brain.weights.view(20, 8, -1).abs().sum(2) > 0
    assert not (reads & ~live).any() and (reads.sum(1) == min(7, int(live.sum()))).all()
    assert torch.isfinite(brain(images)).all()


def test_matched_loop_drives_the_brain_beyond_its_natural_maximum(setup):
    _, images, brain, _, predictor = setup
    r = insilico.population_control(predictor, None, "stretch", natural=images, init="natural",
                                    parameterization="pixel", steps=40, progress=False)
    report = r.check(brain, images)
    assert report["fraction_beyond_natural"] >= 0.8
    assert report["responses"].shape == (6, 6) and report["beyond_natural"].dtype == torch.bool
    # and from the defaults (noise start, restarts, transforms)
    noise = insilico.population_control(predictor, None, "stretch", natural=images, steps=40, progress=False)
    assert noise.check(brain, images)["fraction_beyond_natural"] >= 0.8


def test_ensemble_and_controllability(setup):
    net, images, brain, responses, predictor = setup
    other = fit_predictor(net, images, responses[:2], layers=["relu2"], reduce=4, seed=1, progress=False)
    ens = Ensemble([predictor, other])
    x = images[:3]
    with torch.no_grad():
        assert torch.allclose(ens(x), (predictor(x) + other(x)) / 2, atol=1e-5)
    score = controllability(ens, brain, images, targets=[0, 1], init="natural", parameterization="pixel",
                            steps=20, progress=False)
    assert 0.0 <= score <= 1.0 and score >= 0.5


def test_natural_images_pass_the_gate_by_name(setup):
    """Issue 23 item 6: ``natural=`` is gated like any image argument, and the message names it."""
    predictor = setup[-1]
    natural = smooth_images(4)
    with pytest.raises(insilico.StimulusError, match=r"^natural contain \d+ NaN"):
        insilico.population_control(predictor, [0], natural=natural.masked_fill(natural > 0.5, float("nan")),
                                    steps=1, progress=False)
