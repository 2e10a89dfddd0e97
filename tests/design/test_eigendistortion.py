"""Eigendistortions: eigenvalues equal the dense Jacobian's; batched images are independent; bundled model runs."""
import matplotlib

matplotlib.use("Agg")
import pytest
import torch
from torch import nn

import insilico
from insilico.design.eigendistortions import eigendistortion
from insilico.errors import InsilicoError, UnitError
from tests.conftest import no_insilico_hooks


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Conv2d(3, 4, 3, padding=1), nn.Softplus()).eval()


def dense_eigenvalues(model, layer_index, image):
    def f(z):
        return model[: layer_index + 1](z[None])[0].flatten()

    jac = torch.autograd.functional.jacobian(f, image).reshape(-1, image.numel())
    return torch.linalg.eigvalsh(jac.T @ jac).flip(0)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-4), (torch.float32, 1e-4)])
def test_lanczos_equals_dense_jacobian(dtype, rtol):
    model = small_model().to(dtype)
    x = torch.rand(3, 2, 6, 6, dtype=dtype)
    r = eigendistortion(model, "3", x, k=3, progress=False)
    assert r.eigenvalues.shape == (3, 6) and r.indices == [0, 1, 2, -3, -2, -1]
    for i in range(3):
        ev = dense_eigenvalues(model, 3, x[i])
        expected = torch.cat([ev[:3], ev[-3:]])
        assert torch.allclose(r.eigenvalues[i].double(), expected.double(), rtol=rtol, atol=rtol * float(ev[0]))
        # eigenvectors: unit norm, and |J e|^2 = lambda
        e = r.distortions[i].reshape(6, -1).double()
        assert torch.allclose(e.norm(dim=1), torch.ones(6, dtype=torch.float64), atol=1e-5)
    assert float(r.residuals.max()) < 1e-3


def test_power_method_top_eigenvalue():
    model = small_model().double()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    r = eigendistortion(model, "3", x, k=1, method="power", iterations=200, progress=False)
    for i in range(2):
        ev = dense_eigenvalues(model, 3, x[i])
        assert float(r.eigenvalues[i, 0]) == pytest.approx(float(ev[0]), rel=1e-4)
        assert float(r.eigenvalues[i, 1]) == pytest.approx(float(ev[-1]), abs=1e-3 * float(ev[0]))


def test_batched_equals_one_at_a_time():
    model = small_model().double()
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    batch = eigendistortion(model, "1", x, k=2, progress=False)
    one = eigendistortion(model, "1", x[1:2], k=2, progress=False)
    assert torch.allclose(batch.eigenvalues[1], one.eigenvalues[0], rtol=1e-8, atol=1e-12)
    # top eigenvectors are unique up to sign, and the sign is fixed (largest pixel positive); the
    # bottom ones span a degenerate null space (48 outputs for 72 pixels), so only their values are compared
    assert torch.allclose(batch.distortions[1, :2], one.distortions[0, :2], atol=1e-6)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_start_vectors_are_per_image_so_unconverged_results_match_alone_and_in_any_batch(method):
    """3 iterations are far from converged, so the result depends on the start: each image draws its start
    from its own generator (seed and the image's content), the same alone, in a batch, at any position."""
    model = small_model().double()
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    batch = eigendistortion(model, "3", x, k=1, method=method, iterations=3, progress=False)
    one = eigendistortion(model, "3", x[1:2], k=1, method=method, iterations=3, progress=False)
    flipped = eigendistortion(model, "3", x.flip(0), k=1, method=method, iterations=3, progress=False)
    for other in (one.distortions[0], flipped.distortions[1]):
        torch.testing.assert_close(other, batch.distortions[1], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(flipped.eigenvalues.flip(0), batch.eigenvalues, rtol=1e-8, atol=1e-12)
    reseeded = eigendistortion(model, "3", x[1:2], k=1, method=method, iterations=3, seed=1, progress=False)
    assert not torch.allclose(reseeded.distortions[0], one.distortions[0], atol=1e-4)  # the start does matter


def test_bundled_model_layer():
    net = insilico.models.load("minialex")
    net.train()
    x, _ = insilico.models.photos.held_out(1, seed=0)
    r = eigendistortion(net, "features.4", x[:2], k=1, iterations=24, progress=False)
    assert net.training and no_insilico_hooks(net)
    assert all(p.requires_grad for p in net.parameters())
    assert r.distortions.shape == (2, 2, 3, 64, 64)
    top, bottom = r.eigenvalues[:, 0], r.eigenvalues[:, 1]
    assert bool((top > 100 * bottom.abs()).all())
    assert r.images.shape == (2, 2, 3, 64, 64) and float(r.images.min()) >= 0 and float(r.images.max()) <= 1
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert r.plot(0, ax=ax) is fig
    plt.close("all")


def test_errors():
    model = small_model()
    x = torch.rand(1, 2, 6, 6)
    with pytest.raises(UnitError):
        eigendistortion(model, "nope", x, progress=False)
    with pytest.raises(InsilicoError, match="method"):
        eigendistortion(model, "1", x, method="svd", progress=False)
    with pytest.raises(InsilicoError, match="k must be"):
        eigendistortion(model, "1", x, k=100, progress=False)


# ---------------------------------------------------------------------------------------
# The tool contract: session, dtype, empty batches, results
# ---------------------------------------------------------------------------------------
from insilico.design.eigendistortions import EigendistortionResult  # noqa: E402
from insilico.errors import StimulusError  # noqa: E402
from tests.mixed_mode import arm, assert_unchanged, disarm, mixed_model, snapshot  # noqa: E402


def test_mixed_mode_model_under_no_grad_is_left_as_it_was_also_after_an_exception():
    m = mixed_model()
    before = snapshot(m)
    x = torch.rand(2, 3, 6, 6)
    with torch.no_grad():
        r = eigendistortion(m, "2", x, k=1, iterations=20, progress=False)
    assert_unchanged(m, before)
    assert bool((r.eigenvalues[:, 0] > 0).all())
    # in eval mode: the same as the model in eval (BatchNorm's running statistics, not the batch's)
    alone = eigendistortion(m.eval(), "2", x, k=1, iterations=20, progress=False)
    torch.testing.assert_close(alone.eigenvalues, r.eigenvalues)
    m.train()
    m[1].eval()
    arm(m, 1)
    with pytest.raises(RuntimeError, match="model failed mid-run"):
        eigendistortion(m, "2", x, k=1, iterations=20, progress=False)
    assert disarm(m) == 1
    assert_unchanged(m, before)


def test_empty_batch_is_a_stimulus_error_naming_the_fix():
    with pytest.raises(StimulusError, match="empty batch.*give at least one image"):
        eigendistortion(small_model(), "1", torch.rand(0, 2, 6, 6), progress=False)


def test_float64_in_float64_out():
    model = small_model().double()
    r = eigendistortion(model, "3", torch.rand(2, 2, 6, 6, dtype=torch.float64), k=1, progress=False)
    assert r.eigenvalues.dtype == r.distortions.dtype == r.reference.dtype == torch.float64


def test_result_saves_loads_concats_and_rechecks(tmp_path):
    model = small_model().double()
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    r = eigendistortion(model, "3", x, k=2, progress=False)
    r.save(tmp_path / "e.pt")
    back = EigendistortionResult.load(tmp_path / "e.pt")
    assert torch.equal(back.distortions, r.distortions) and torch.equal(back.eigenvalues, r.eigenvalues)
    assert back.indices == r.indices and back.unit == r.unit and back.alpha == r.alpha
    torch.testing.assert_close(back.check(model), r.eigenvalues, rtol=1e-6, atol=1e-9)  # |J e|^2 = lambda
    other = small_model().double()
    with torch.no_grad():
        other[0].weight.mul_(2)
    assert not torch.allclose(back.check(other), r.eigenvalues)  # a different model does not pass
    joined = EigendistortionResult.concat([r, eigendistortion(model, "3", x[:1], k=2, progress=False)])
    assert joined.distortions.shape == (4, 4, 2, 6, 6) and torch.equal(joined.reference[3], x[0])
