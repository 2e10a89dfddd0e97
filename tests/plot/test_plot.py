"""Plots return Figures, draw into a given ax, and saved maps round-trip."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import insilico  # noqa: E402
from insilico import plot  # noqa: E402
from insilico.errors import InsilicoError, StimulusError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_image_grid_tiles_and_titles():
    images = torch.rand(5, 3, 4, 6)
    fig = plot.image_grid(images, titles=[f"t{i}" for i in range(5)], ncols=3)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid.shape == (2 * 5 - 1, 3 * 7 - 1, 3)
    assert np.allclose(grid[:4, 7:13], images[1].permute(1, 2, 0).numpy())  # tile 1 sits at row 0, column 1
    assert [t.get_text() for t in ax.texts] == [f"t{i}" for i in range(5)]
    with pytest.raises(InsilicoError, match="titles"):
        plot.image_grid(images, titles=["a"])
    with pytest.raises(StimulusError, match="C = 1 or 3"):
        plot.image_grid(torch.rand(2, 4, 3, 3))


def test_plots_draw_into_a_given_ax():
    fig, (left, right) = plt.subplots(1, 2)
    assert plot.image_grid(torch.rand(2, 1, 3, 3), ax=right) is fig
    assert len(right.images) == 1 and len(left.images) == 0
    assert plot.map_overlay(torch.rand(2, 3, 5, 5), torch.randn(2, 3, 5, 5), ax=left) is fig
    assert len(left.images) == 2
    fig2, ax2 = plt.subplots()
    assert plot.exemplar_grid([torch.rand(2, 3, 4, 4)], ax=ax2) is fig2


def test_map_overlay_normalises_each_map_signed():
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, :, 1, 1] = 5.0
    maps[1, 0, 2, 2] = -0.1
    fig = plot.map_overlay(torch.rand(2, 3, 4, 4), maps, ncols=2)
    heat = fig.axes[0].images[1].get_array()
    assert heat[1, 1] == pytest.approx(1.0) and heat[2, 5 + 2] == pytest.approx(-1.0)
    with pytest.raises(InsilicoError, match="differ"):
        plot.map_overlay(torch.rand(2, 3, 4, 4), torch.rand(3, 3, 4, 4))


def test_exemplar_grid_from_projections():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2)).eval()
    stimuli = torch.rand(30, 1, 12, 12)
    proj = insilico.project_exemplars(model, stimuli, ["2[0]", "2[1]"], k=3, progress=False)
    fig = plot.exemplar_grid(proj)
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    size = proj.map_crops[0].shape[-1]
    assert grid.shape[:2] == (2 * (size + 1) - 1, 6 * (size + 1) - 1)  # 2 units x (3 maps + 3 images)
    assert [t.get_text() for t in ax.texts] == ["2[0]", "2[1]"]
    only_maps = proj.plot(show="maps")
    assert only_maps.axes[0].images[0].get_array().shape[1] == 3 * (size + 1) - 1


def test_save_maps_png_and_sidecar_round_trip(tmp_path):
    maps = torch.randn(5, 3, 6, 7)
    settings = {"n_steps": 50, "baselines": 0.0, "note": "black"}
    png = plot.save_maps(tmp_path / "sub" / "unit12", maps, unit="features.8[12]", method="deconv", settings=settings)
    assert png.suffix == ".png" and png.exists()
    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["unit"] == "features.8[12]" and meta["method"] == "deconv" and meta["settings"] == settings
    loaded, meta2 = plot.load_maps(png)
    assert meta2 == meta
    assert loaded.shape == maps.shape
    scale = maps.abs().flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    assert (loaded - maps).abs().le(scale / 255 + 1e-6).all()  # 8-bit precision of each map's range
    grey = plot.save_maps(tmp_path / "g.png", torch.randn(2, 1, 3, 3), unit=["a[0]", "a[1]"])
    loaded, meta = plot.load_maps(grey)
    assert loaded.shape == (2, 1, 3, 3) and meta["unit"] == ["a[0]", "a[1]"]
    with pytest.raises(InsilicoError, match="sidecar"):
        (tmp_path / "x.png").write_bytes(png.read_bytes())
        plot.load_maps(tmp_path / "x.png")


def test_lazy_module_export():
    assert insilico.plot is plot
