"""Shared fixtures: small models with known answers, and the CUDA marker."""
import pytest
import torch
from torch import nn


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class KnownNet(nn.Module):
    """y = W2 relu(W1 x + b1): weights fixed so every value can be computed by hand."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(3, 1)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
            self.fc1.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
            self.fc2.bias.zero_()

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class Partly(nn.Module):
    """Uses one of its two modules: ``unused`` exists but never runs."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(2, 2), nn.ReLU()

    def forward(self, x):
        return self.used(x)


class Recurrent(nn.Module):
    """Calls one conv T times: h_t = relu(conv(x) + lateral(h_{t-1})), h_{-1} = 0."""

    def __init__(self, steps=4):
        super().__init__()
        self.steps = steps
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lateral = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.readout = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 4, *x.shape[2:])
        for _ in range(self.steps):
            h = self.act(self.conv(x) + self.lateral(h))
        return self.readout(h.mean(dim=(2, 3)))


@pytest.fixture
def known():
    return KnownNet().eval()


@pytest.fixture
def recurrent():
    return Recurrent().eval()


def no_insilico_hooks(model):
    """True when no module of ``model`` carries a hook."""
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules()
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of small convolutions: on a shared 2-core machine two threads spin on
    each other (OpenMP barriers) and run far slower. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: A tiny gallery (two layers, two units each, a few steps): the `site` fixture's settings.
GALLERY_TINY = dict(layers=["features.0", "classifier.6"], units=2, steps=2, exemplars=3, per_class=1,
                    lesion_per_class=1, orientations=4, phases=2, rf_images=1)


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """``(root, build summary)`` of the tiny gallery, built once per test run (tests/gallery/)."""
    from insilico.gallery import GallerySettings, build

    root = tmp_path_factory.mktemp("gallery") / "site"
    summary = build(GallerySettings(**GALLERY_TINY), root, progress=False)
    return root, summary
