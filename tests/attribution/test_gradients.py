"""Gradient maps: exact values on linear models, hand-written deconv/guided rules, captum as oracle."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import insilico
from insilico.errors import InsilicoError, StimulusError, UnitError
from insilico.attribution.gradients import ReluRule, gradient_map

from conftest import no_insilico_hooks


def small_cnn(functional=False):
    """conv -> relu -> maxpool -> conv -> relu -> linear; with functional=True the ReLUs are F.relu calls."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(5, 6, 3)
            self.relu2 = nn.ReLU()
            self.fc = nn.Linear(6 * 4 * 4, 4)

        def forward(self, x):
            act = F.relu if functional else None
            x = act(self.conv1(x)) if functional else self.relu1(self.conv1(x))
            x = self.pool(x)
            x = act(self.conv2(x)) if functional else self.relu2(self.conv2(x))
            return self.fc(x.flatten(1))

    return Net().eval()


def reference_map(net, images, channel, y, x, rule):
    """Deconv / guided backprop written out by hand for small_cnn's unit relu2[channel, y, x]."""
    w1, b1, w2, b2 = net.conv1.weight, net.conv1.bias, net.conv2.weight, net.conv2.bias
    with torch.no_grad():
        z1 = F.conv2d(images, w1, b1, padding=1)
        a1 = z1.clamp(min=0)
        n, c, h, w = a1.shape
        windows = a1.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        pooled, switch = windows.max(dim=-1)  # switches: which of the 4 window cells won
        z2 = F.conv2d(pooled, w2, b2)

        def relu_back(grad, pre):
            grad = grad.clamp(min=0)
            return grad * (pre > 0) if rule == "guided" else grad

        g = torch.zeros_like(z2)
        g[:, channel, y, x] = 1.0
        g = relu_back(g, z2)
        g = F.conv_transpose2d(g, w2)  # back through conv2 with the same filters
        cells = torch.zeros(n, c, h // 2, w // 2, 4)
        cells.scatter_(-1, switch.unsqueeze(-1), g.unsqueeze(-1))  # unpool through the switches
        g = cells.reshape(n, c, h // 2, w // 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
        g = relu_back(g, z1)
        return F.conv_transpose2d(g, w1, padding=1)


@pytest.fixture
def images():
    return torch.rand(6, 3, 12, 12)


def test_linear_model_gradient_is_the_weight_vector():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    images = torch.rand(4, 3, 2, 2)
    for method in ("gradient", "smoothgrad"):
        maps = gradient_map(model, images, "1[2]", method=method)
        assert maps.shape == images.shape
        for n in range(4):
            assert torch.allclose(maps[n].flatten(), model[1].weight[2], atol=1e-6), method
    exact = gradient_map(model, images, "1[2]")
    assert torch.equal(exact[1].flatten(), model[1].weight[2].detach())
    gxi = gradient_map(model, images, "1[2]", method="gradient_x_input")
    assert torch.allclose(gxi, images * model[1].weight[2].view(3, 2, 2))


def test_channel_units_sum_or_mean():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    images = torch.rand(2, 3, 2, 2)
    weights = model[1].weight.detach()
    summed = gradient_map(model, images, "1[0:2]")
    mean = gradient_map(model, images, "1[0:2]", reduce="mean")
    assert torch.allclose(summed[0].flatten(), weights[0] + weights[1], atol=1e-6)
    assert torch.allclose(mean, summed / 2, atol=1e-6)


@pytest.mark.parametrize("rule", ["deconv", "guided"])
def test_deconv_and_guided_match_hand_written_rules(images, rule):
    net = small_cnn()
    maps = gradient_map(net, images, "relu2[3,1,2]", method=rule)
    expected = reference_map(net, images, 3, 1, 2, rule)
    assert expected.abs().sum() > 0
    assert torch.allclose(maps, expected, atol=1e-6)
    plain = gradient_map(net, images, "relu2[3,1,2]")
    assert not torch.allclose(maps, plain, atol=1e-4)  # the rule really changed the backward pass


@pytest.mark.parametrize("rule", ["deconv", "guided"])
def test_functional_relu_gets_the_rule(images, rule):
    modules, functional = small_cnn(), small_cnn(functional=True)
    functional.load_state_dict(modules.state_dict())
    maps = gradient_map(functional, images, "conv2[3,1,2]", method=rule)
    expected = gradient_map(modules, images, "conv2[3,1,2]", method=rule)
    assert torch.allclose(maps, expected, atol=1e-6)
    class_maps = gradient_map(functional, images, "[1]", method=rule)
    from captum.attr import Deconvolution, GuidedBackprop

    oracle = (GuidedBackprop if rule == "guided" else Deconvolution)(modules)
    with pytest.warns(UserWarning):
        want = oracle.attribute(images.clone().requires_grad_(), target=1)
    assert torch.allclose(class_maps, want, atol=1e-6)


def test_class_maps_agree_with_captum(images):
    from captum.attr import Deconvolution, GuidedBackprop, Saliency

    net = small_cnn()
    x = images.clone().requires_grad_()
    for method, oracle in (("gradient", Saliency), ("guided", GuidedBackprop), ("deconv", Deconvolution)):
        kwargs = {"abs": False} if method == "gradient" else {}
        with pytest.warns(UserWarning) if method != "gradient" else _no_warning():
            want = oracle(net).attribute(x, target=2, **kwargs)
        got = gradient_map(net, images, "[2]", method=method)
        assert torch.allclose(got, want, atol=1e-6), method


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


def test_integrated_gradients_completeness_and_internal_batching(images):
    net = small_cnn()
    images = images[:3]
    ig = gradient_map(net, images, "[1]", method="integrated", n_steps=300)
    with torch.no_grad():
        delta = net(images)[:, 1] - net(torch.zeros_like(images))[:, 1]
    tolerance = 0.01 * delta.abs().max()
    assert torch.allclose(ig.sum(dim=(1, 2, 3)), delta, atol=tolerance)
    gxi = gradient_map(net, images, "[1]", method="gradient_x_input")  # not complete: the test can fail
    assert (gxi.sum(dim=(1, 2, 3)) - delta).abs().max() > tolerance
    whole = gradient_map(net, images, "conv2[2]", method="integrated", n_steps=40)
    batched = gradient_map(net, images, "conv2[2]", method="integrated", n_steps=40, internal_batch_size=25)
    assert torch.allclose(batched, whole, atol=1e-6)


def test_expanded_batches_are_sized_by_the_memory_budget_and_give_the_same_maps(images, monkeypatch, capsys):
    from captum.attr import IntegratedGradients, Saliency
    from insilico.attribution import gradients

    net = small_cnn()
    rows = gradients.rows_per_pass(insilico.Probe(net), images, memory_budget=2**18)
    # per image row: the image + 3 x every leaf output (conv1, relu1, pool, conv2, relu2, fc), float32
    per_row = 4 * (3 * 12 * 12 + 3 * (2 * 5 * 12 * 12 + 5 * 6 * 6 + 2 * 6 * 4 * 4 + 4))
    assert rows == 2**18 // per_row == 11
    seen = {"ig": [], "nt": []}
    real_ig, real_nt = IntegratedGradients.attribute, Saliency.attribute

    def spy_ig(self, inputs, *a, **k):
        seen["ig"].append((len(inputs), k["internal_batch_size"]))
        return real_ig(self, inputs, *a, **k)

    def spy_nt(self, inputs, *a, **k):  # SmoothGrad: one Saliency pass per chunk of noisy copies
        seen["nt"].append(len(inputs))
        return real_nt(self, inputs, *a, **k)

    monkeypatch.setattr(IntegratedGradients, "attribute", spy_ig)
    monkeypatch.setattr(Saliency, "attribute", spy_nt)
    whole = gradient_map(net, images, "conv2[2]", method="integrated", n_steps=50, internal_batch_size=10**6)
    budget = gradient_map(net, images, "conv2[2]", method="integrated", n_steps=50, memory_budget=2**18)
    assert seen["ig"][0] == (len(images), 10**6)
    assert len(seen["ig"]) > 2 and all(n * max(1, size // n) <= max(rows, n) for n, size in seen["ig"][1:])
    assert sum(n for n, _ in seen["ig"][1:]) == len(images)
    assert torch.allclose(budget, whole, atol=1e-6)              # the split changes nothing
    assert "6 images x 50 steps = 300 rows, in 30 forward/backward passes of up to 10 rows" in capsys.readouterr().err
    smooth = gradient_map(net, images, "conv2[2]", method="smoothgrad", nt_samples=50, memory_budget=2**18)
    # 3 groups of 2 images x 10 passes of 5 copies: 30 passes of 10 rows, each within the budget's 11 rows
    assert seen["nt"] == [10] * 30 and rows == 11
    one_pass = gradient_map(net, images, "conv2[2]", method="smoothgrad", nt_samples=50, internal_batch_size=300)
    assert seen["nt"][30:] == [300]
    # the same noise per image and copy whatever the split: rounding of the (image + noise) sums only
    torch.testing.assert_close(smooth, one_pass, rtol=1e-5, atol=1e-5 * float(one_pass.abs().max()))
    assert "6 images x 50 noisy copies" in capsys.readouterr().err


def test_smoothgrad_is_seeded_and_batched(images):
    net = small_cnn()
    a = gradient_map(net, images, "conv2[1]", method="smoothgrad", nt_samples=6, seed=3)
    b = gradient_map(net, images, "conv2[1]", method="smoothgrad", nt_samples=6, seed=3)
    c = gradient_map(net, images, "conv2[1]", method="smoothgrad", nt_samples=6, seed=4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_smoothgrad_noise_is_per_image_not_per_batch(images):
    """Issue 23 item 10: an image's SmoothGrad map is the same alone, at another position, and with another split.

    Each image's noise comes from its own generators (seed, image content, copy), so the only difference
    left is float rounding of batch-size-dependent kernels: ~1e-7 relative in float32 for this net; noise
    drawn per batch (captum's NoiseTunnel) differs by the order of the map itself (~0.3 relative here).
    """
    net = small_cnn()
    batch = gradient_map(net, images, "conv2[1]", method="smoothgrad", nt_samples=8, seed=5)
    scale = float(batch.abs().max())
    alone = gradient_map(net, images[2:3], "conv2[1]", method="smoothgrad", nt_samples=8, seed=5)
    flipped = gradient_map(net, images.flip(0), "conv2[1]", method="smoothgrad", nt_samples=8, seed=5,
                           internal_batch_size=3)
    torch.testing.assert_close(alone[0], batch[2], rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(flipped.flip(0), batch, rtol=1e-5, atol=1e-5 * scale)
    other = gradient_map(net, images[2:3], "conv2[1]", method="smoothgrad", nt_samples=8, seed=6)
    assert (other[0] - batch[2]).abs().max() > 100 * 1e-5 * scale  # the tolerance tells noise apart


def test_smoothgrad_leaves_the_global_random_state_alone(images):
    net = small_cnn()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = gradient_map(net, images, "conv2[1]", method="smoothgrad", nt_samples=4, seed=None)
    b = gradient_map(net, images, "conv2[1]", method="smoothgrad", nt_samples=4, seed=None)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.allclose(a, b)  # seed=None: fresh entropy per call


@pytest.mark.parametrize("bad,match", [
    (lambda x: torch.full_like(x, float("nan")), "baselines contain .* NaN"),
    (lambda x: x * 255, r"baselines must lie in pixel space \[0, 1\]"),
    (lambda x: x[:2], r"baselines has shape \(2, 3, 12, 12\).*one per image"),
    (lambda x: torch.rand(1, 3, 5, 5), r"baselines has shape \(1, 3, 5, 5\)"),
    (lambda x: (x * 255).to(torch.uint8), "baselines must be floating point"),
    (lambda x: 255.0, r"baselines=255.0 is not a pixel value"),
    (lambda x: float("nan"), r"baselines=nan is not a pixel value"),
    (lambda x: "black", r"baselines must be a grey level .* not str"),
    (lambda x: (x * 255).numpy(), r"baselines must lie in pixel space"),
])
def test_integrated_gradients_baselines_pass_the_image_gate(images, bad, match):
    """Issue 23 item 6: a NaN, 0..255 or wrong-sized baseline is refused, naming ``baselines``."""
    with pytest.raises(StimulusError, match=match):
        gradient_map(small_cnn(), images, "[1]", method="integrated", n_steps=4, baselines=bad(images))


def test_integrated_gradients_one_baseline_image_for_all(images):
    net = small_cnn()
    one = gradient_map(net, images, "[1]", method="integrated", n_steps=6, baselines=images[0])
    each = gradient_map(net, images, "[1]", method="integrated", n_steps=6, baselines=images[:1].repeat(6, 1, 1, 1))
    grey = gradient_map(net, images, "[1]", method="integrated", n_steps=6, baselines=0.5)
    assert torch.allclose(one, each, atol=1e-6)
    assert one[0].abs().max() == 0 and one[1].abs().max() > 0  # image 0 is its own baseline: no path
    assert torch.allclose(grey, gradient_map(net, images, "[1]", method="integrated", n_steps=6,
                                             baselines=torch.full_like(images, 0.5)), atol=1e-6)


def test_gradcam_probe_path_matches_captum_and_handles_steps(images, recurrent):
    from captum.attr import LayerGradCam

    net = small_cnn()
    cam = LayerGradCam(lambda x: net(x)[:, 0], net.conv2).attribute(images, relu_attributions=True)
    captum_path = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False).expand_as(images)
    plain = gradient_map(net, images, "[0]", method="gradcam", layer="conv2")
    step = gradient_map(net, images, "[0]", method="gradcam", layer="conv2@0")
    assert captum_path.min() >= 0 and captum_path.abs().sum() > 0
    assert torch.allclose(plain, captum_path, atol=1e-6) and torch.allclose(step, captum_path, atol=1e-6)
    one = torch.rand(3, 1, 8, 8)
    early = gradient_map(recurrent, one, "[1]", method="gradcam", layer="act@0")
    late = gradient_map(recurrent, one, "[1]", method="gradcam", layer="act@3")
    assert early.shape == one.shape and not torch.allclose(early, late)
    with pytest.raises(InsilicoError, match="layer="):
        gradient_map(net, images, "[0]", method="gradcam")


def _hand_gradcam(model, layer, images, target, to_grid):
    """Grad-CAM written out: the layer's output and gradient on a (C, h, w) grid, relu(sum_c mean_hw(grad) * act)."""
    kept = {}
    handle = layer.register_forward_hook(lambda module, args, out: kept.update(out=out))
    try:
        logits = model(images)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[:, target].sum(), kept["out"])
    act, grad = to_grid(kept["out"].detach()), to_grid(grad)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1, keepdim=True))
    return cam, F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False).expand_as(images)


def test_gradcam_reads_a_channels_last_layer_as_its_channels_first_twin():
    from torchvision.ops.misc import Permute

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), Permute([0, 2, 3, 1]), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 8 * 6, 3)).eval()
    images = torch.rand(2, 3, 16, 16)
    channels_last = gradient_map(net, images, "[2]", method="gradcam", layer="1")  # (N, 8, 8, 6)
    channels_first = gradient_map(net, images, "[2]", method="gradcam", layer="0")  # (N, 6, 8, 8)
    _, hand = _hand_gradcam(net, net[0], images, 2, lambda value: value)
    assert hand.abs().sum() > 0
    assert torch.allclose(channels_first, hand, atol=1e-6) and torch.allclose(channels_last, hand, atol=1e-6)


def test_gradcam_at_a_swin_stage_weights_its_channels():
    import torchvision

    torch.manual_seed(0)
    swin = torchvision.models.swin_t(num_classes=3).eval()
    images = torch.rand(2, 3, 32, 32)
    maps = gradient_map(swin, images, "[1]", method="gradcam", layer="features.1")  # (N, 8, 8, 96)
    _, hand = _hand_gradcam(swin, swin.features[1], images, 1, lambda value: value.permute(0, 3, 1, 2))
    assert hand.abs().sum() > 0 and torch.allclose(maps, hand, atol=1e-6, rtol=1e-4)


def test_gradcam_at_a_vit_token_layer_drops_cls_and_draws_the_patch_grid():
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=3).eval()
    nn.init.normal_(vit.heads.head.weight)  # torchvision's head starts at zero
    images = torch.rand(2, 3, 32, 32)
    # the last block's first norm (pytorch-grad-cam's choice: after it only CLS reaches the head)
    layer = vit.encoder.layers.encoder_layer_0.ln_1  # (N, 1 + 16, 16): CLS, then the 4 x 4 patches
    maps = gradient_map(vit, images, "[0]", method="gradcam", layer="encoder.layers.encoder_layer_0.ln_1")
    small, hand = _hand_gradcam(vit, layer, images, 0, lambda value: value[:, 1:].transpose(1, 2).reshape(-1, 16, 4, 4))
    assert small.shape == (2, 1, 4, 4) and hand.abs().sum() > 0
    assert torch.allclose(maps, hand, atol=1e-6, rtol=1e-4)
    with pytest.raises(UnitError, match="prefix tokens .* only, not on its patch tokens"):  # the block's output
        gradient_map(vit, images, "[0]", method="gradcam", layer="encoder.layers.encoder_layer_0")


def test_gradcam_refuses_layers_without_a_grid():
    net = small_cnn()
    with pytest.raises(UnitError, match=r"fc gives \(4,\) per image, layout 'vector'.*conv/map layer"):
        gradient_map(net, torch.rand(2, 3, 12, 12), "[0]", method="gradcam", layer="fc")

    class Tokens(nn.Module):  # 7 tokens: neither a square grid nor a CLS token and a square grid
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Linear(12, 5), nn.Linear(5, 2)

        def forward(self, x):
            return self.head(self.embed(x.reshape(-1, 7, 12)).mean(1))  # (N, 3, 4, 7) -> (N, 7, 12)

    with pytest.raises(UnitError, match=r"embed: its 7 tokens .*not 0 or 1 prefix token then a square"):
        gradient_map(Tokens(), torch.rand(2, 3, 4, 7), "[0]", method="gradcam", layer="embed")


class _Twice(nn.Module):
    """One conv called twice (a shared block), then a tuple-output module, then a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.pair = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.pair(torch.relu(self.conv(torch.relu(self.conv(x)))))
        return self.head(y.mean((2, 3)))


def test_gradcam_layer_goes_through_the_unit_checks():
    """layer= (an address or a module object) takes the Probe's unit path: one call of a module called
    twice must be named (negative steps count from the last), a layer the unit does not depend on is refused."""
    torch.manual_seed(0)
    net = _Twice().eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with pytest.raises(UnitError, match=r"layer 'conv' is called 2 times per forward pass: name one call, e.g\. "
                                        r"layer='conv@1'"):
        gradient_map(net, images, "[0]", method="gradcam", layer=net.conv)  # was: captum's silent last call
    last = gradient_map(net, images, "[0]", method="gradcam", layer="conv@-1")
    second = gradient_map(net, images, "[0]", method="gradcam", layer="conv@1")
    first = gradient_map(net, images, "[0]", method="gradcam", layer="conv@0")
    assert torch.equal(last, second) and not torch.allclose(first, second)
    by_object = gradient_map(net, images, "[0]", method="gradcam", layer=net.pair)
    _, hand = _hand_gradcam(net, net.pair, images, 0, lambda value: value)
    assert hand.abs().sum() > 0 and torch.allclose(by_object, hand, atol=1e-6)
    with pytest.raises(UnitError, match="does not depend on pair"):
        gradient_map(net, images, "conv@0[0]", method="gradcam", layer="pair")
    assert no_insilico_hooks(net)


def test_gradcam_layer_with_a_tuple_output_names_its_parts():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y, torch.relu(y)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.head = Pair(), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.pair(x)[0].mean((2, 3)))  # part 1 is not used

    torch.manual_seed(0)
    net = Net().eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with pytest.raises(UnitError, match=r"'pair' reads \(Tensor\[1, 4, 8, 8\], Tensor\[1, 4, 8, 8\]\), not one tensor for "
                                        r"Grad-CAM's layer=: name one of its parts: 'pair:0' .*'pair:1'"):
        gradient_map(net, images, "[0]", method="gradcam", layer="pair")  # was: 'tuple' object has no attribute 'shape'
    part = gradient_map(net, images, "[0]", method="gradcam", layer="pair:0")
    _, hand = _hand_gradcam(net, net.pair.conv, images, 0, lambda value: value)  # pair:0 is the conv's output
    assert hand.abs().sum() > 0 and torch.allclose(part, hand, atol=1e-6)
    with pytest.raises(UnitError, match="does not depend on pair:1"):
        gradient_map(net, images, "[0]", method="gradcam", layer="pair:1")
    with pytest.raises(UnitError, match=r"'pair\[0\]' reads .*'pair:0\[0\]'"):
        gradient_map(net, images, "pair[0]")


def test_recurrent_time_step_matches_unrolled_gradient(recurrent):
    images = torch.rand(3, 1, 8, 8)
    for step in (0, 2, 3):
        maps = gradient_map(recurrent, images, f"act@{step}[1,3,4]")
        x = images.clone().requires_grad_()
        h = torch.zeros(3, 4, 8, 8)
        for _ in range(step + 1):
            h = torch.relu(recurrent.conv(x) + recurrent.lateral(h))
        (want,) = torch.autograd.grad(h[:, 1, 3, 4].sum(), x)
        assert torch.allclose(maps, want, atol=1e-6), step
    deconv = gradient_map(recurrent, images, "act@-1[1]", method="deconv")
    assert deconv.shape == images.shape and deconv.abs().sum() > 0
    with pytest.raises(UnitError, match="@"):
        gradient_map(recurrent, images, "act[1]")


def test_one_unit_per_image_in_one_batch(images):
    net = small_cnn()
    units = ["relu2[0,1,1]", "relu2[3,0,2]", "conv1[2]", "[1]", "relu2[0,1,1]", "pool[1,2,2]"]
    for method, options in (("gradient", {}), ("deconv", {}), ("integrated", {"n_steps": 8, "internal_batch_size": 20})):
        batched = gradient_map(net, images, units, method=method, **options)
        for n, unit in enumerate(units):
            alone = gradient_map(net, images[n : n + 1], unit, method=method, **options)
            assert torch.allclose(batched[n : n + 1], alone, atol=1e-6), (method, unit)


def test_inplace_relu_resnet_gives_the_same_deconv_map():
    torchvision = pytest.importorskip("torchvision")
    inplace = torchvision.models.resnet18(weights=None).eval()
    plain = copy.deepcopy(inplace)
    for module in plain.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    assert any(getattr(m, "inplace", False) for m in inplace.modules())
    images = torch.rand(1, 3, 48, 48)
    for method in ("deconv", "guided"):
        a = gradient_map(inplace, images, "layer2.1[5,2,3]", method=method)
        b = gradient_map(plain, images, "layer2.1[5,2,3]", method=method)
        assert a.abs().sum() > 0
        assert torch.allclose(a, b, atol=1e-6), method


def test_eval_mode_restored_and_hooks_removed_also_on_errors(images):
    net = small_cnn().train()
    net.pool.eval()
    gradient_map(net, images, "relu2[0]", method="guided")
    assert net.training and net.conv1.training and not net.pool.training
    assert no_insilico_hooks(net)
    with pytest.raises(UnitError, match="out of range"):
        gradient_map(net, images, "relu2[99]", method="deconv")
    assert no_insilico_hooks(net) and net.training
    with pytest.raises(UnitError, match="no module"):
        gradient_map(net, images, "relu9[0]")


def test_images_are_validated():
    net = small_cnn()
    with pytest.raises(StimulusError, match="4-D"):
        gradient_map(net, torch.rand(3, 12, 12), "[0]")
    with pytest.raises(StimulusError, match="NaN"):
        gradient_map(net, torch.full((1, 3, 12, 12), float("nan")), "[0]")
    with pytest.raises(StimulusError, match=r"\[0, 1\]"):
        gradient_map(net, torch.randn(1, 3, 12, 12) * 3, "[0]")
    with pytest.raises(InsilicoError, match="unknown method"):
        gradient_map(net, torch.rand(1, 3, 12, 12), "[0]", method="lrp")
    with pytest.raises(UnitError, match="one per image"):
        gradient_map(net, torch.rand(2, 3, 12, 12), ["[0]", "[1]", "[2]"])


def test_relu_rule_counts_and_warns_without_relus():
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    with ReluRule("guided") as rule:
        y = F.relu(x.clone(), inplace=True)
    assert rule.count == 1
    y.backward(torch.tensor([3.0, -4.0]))
    assert x.grad.tolist() == [0.0, 0.0]
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    with pytest.warns(UserWarning, match="no ReLU"):
        gradient_map(model, torch.rand(1, 3, 2, 2), "1[0]", method="deconv")


def test_lazy_export():
    assert insilico.gradient_map is gradient_map


@pytest.mark.cuda
def test_follows_the_model_to_cuda(images):
    net = small_cnn().cuda()
    maps = gradient_map(net, images, ["relu2[0,1,1]"] * 6, method="deconv")
    assert maps.device.type == "cuda"
    assert torch.allclose(maps.cpu(), reference_map(small_cnn_cpu(net), images, 0, 1, 1, "deconv"), atol=1e-5)


def small_cnn_cpu(net):
    cpu = small_cnn()
    cpu.load_state_dict({k: v.cpu() for k, v in net.state_dict().items()})
    return cpu
