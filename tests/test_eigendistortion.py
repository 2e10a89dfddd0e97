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
