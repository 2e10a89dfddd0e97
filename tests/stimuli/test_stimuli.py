"""Tests for insilico.stimuli: numbers recovered from the images, not just shapes."""
import itertools
import math
import socket

import numpy as np
import pytest
import torch

import insilico.stimuli as S
from insilico.errors import StimulusError
from insilico.stimuli import StimulusSet


# --------------------------------------------------------------------------- helpers
def ref_grating(size, ori, sf, phase=0.0, contrast=1.0, mean=0.5, center=(0.5, 0.5)):
    """Per-stimulus numpy reference of the documented convention (0 deg = vertical bars, CCW, y up)."""
    j = np.arange(size)
    x = (j - size // 2) / size + 0.5 - center[0]
    y = -((j - size // 2) / size + 0.5 - center[1])
    X, Y = np.meshgrid(x, y)  # X[r, c] = x[c], Y[r, c] = y[r]
    th = np.deg2rad(ori)
    u = X * np.cos(th) + Y * np.sin(th)
    return mean * (1 + contrast * np.cos(2 * np.pi * sf * u + np.deg2rad(phase)))


def fft_peak(img, pad=1):
    """(orientation deg in [0, 180), sf cycles/image) of the strongest non-DC Fourier component."""
    img = np.asarray(img, dtype=np.float64)
    size = img.shape[0]
    n = size * pad
    spec = np.abs(np.fft.fft2(img - img.mean(), s=(n, n)))
    r, c = np.unravel_index(np.argmax(spec), spec.shape)
    fy = (r if r < n // 2 else r - n) / pad  # cycles per image along rows (downwards)
    fx = (c if c < n // 2 else c - n) / pad
    ori = math.degrees(math.atan2(-fy, fx)) % 180.0  # y up
    return ori, math.hypot(fx, fy), (fy, fx)


def ang_diff(a, b):
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


# --------------------------------------------------------------------------- gratings
def test_grating_fft_peak_on_exact_bins():
    # frequency vectors that fall exactly on DFT bins
    cases = [(0, 8, (0, 8)), (90, 8, (-8, 0)), (45, 8 * math.sqrt(2), (-8, 8)), (135, 5 * math.sqrt(2), (-5, -5))]
    for ori, sf, (fy, fx) in cases:
        img = S.gratings(size=64, orientation=ori, sf=sf).images[0, 0].numpy()
        o, f, bins = fft_peak(img)
        assert {bins, (-bins[0], -bins[1])} & {(fy, fx)}, (ori, bins)
        assert ang_diff(o, ori) < 1e-9 and abs(f - sf) < 1e-9


def test_grating_orientation_and_sf_recovered_within_one_degree_and_bin():
    oris = list(range(0, 180, 15)) + [7.5, 101.0]
    sfs = [6.0, 16.5]
    g = S.gratings(size=128, orientation=oris, sf=sfs)
    assert len(g) == len(oris) * len(sfs)
    for img, p in zip(g.images[:, 0].numpy(), g.params):
        o, f, _ = fft_peak(img)  # unpadded: within one frequency bin
        assert abs(f - p["sf"]) <= 1.0, p
        o8, f8, _ = fft_peak(img, pad=8)  # 1/8-bin resolution: within one degree
        assert ang_diff(o8, p["orientation"]) <= 1.0, (o8, p)
        assert abs(f8 - p["sf"]) <= 0.25, (f8, p)


def test_orientation_convention_vertical_horizontal_diagonal():
    g = S.gratings(size=32, orientation=[0, 90, 45], sf=3.3, phase=17)
    v, h, d = g.images[:, 0]
    assert torch.equal(v, v[:1].expand_as(v))  # 0 deg: constant down each column (vertical bars)
    assert v[0].std() > 0.2
    assert torch.equal(h, h[:, :1].expand_as(h))  # 90 deg: horizontal bars
    # 45 deg (counter-clockwise from vertical): bars run top-left to bottom-right
    assert torch.allclose(d[:-1, :-1], d[1:, 1:], atol=1e-5)
    assert not torch.allclose(d[:-1, 1:], d[1:, :-1], atol=1e-2)


def test_grating_matches_reference_formula_for_every_grid_point():
    kw = dict(orientation=[0, 30, 123.4], sf=[1, 2.5, 7], phase=[0, 45, 270], contrast=[0.3, 1.0], mean=[0.2, 0.5])
    g = S.gratings(size=24, center=(0.4, 0.55), **kw)
    assert len(g) == 3 * 3 * 3 * 2 * 2
    combos = list(itertools.product(*kw.values()))
    for i in (0, 1, 17, 50, 107):
        p = dict(zip(kw, combos[i]))
        assert {k: g.params[i][k] for k in kw} == p
        ref = ref_grating(24, p["orientation"], p["sf"], p["phase"], p["contrast"], p["mean"], center=(0.4, 0.55))
        np.testing.assert_allclose(g.images[i, 0].numpy(), ref, atol=2e-6)


@pytest.mark.parametrize("mean,contrast", [(0.5, 1.0), (0.5, 0.25), (0.3, 0.6), (0.8, 0.2), (0.1, 0.0)])
def test_contrast_and_mean_are_exact(mean, contrast):
    g = S.gratings(size=64, orientation=[0, 90], sf=4, contrast=contrast, mean=mean)
    imgs = g.images.double()
    assert imgs.amax().item() == pytest.approx(mean * (1 + contrast), abs=1e-6)
    assert imgs.amin().item() == pytest.approx(mean * (1 - contrast), abs=1e-6)
    assert imgs.mean(dim=(1, 2, 3)).numpy() == pytest.approx([mean, mean], abs=1e-6)
    michelson = (imgs.amax() - imgs.amin()) / (imgs.amax() + imgs.amin())
    assert michelson.item() == pytest.approx(contrast, abs=1e-6)


def test_square_wave_takes_exactly_two_values():
    g = S.gratings(size=64, orientation=[0, 30, 90], sf=[3, 4], contrast=0.6, mean=0.5, wave="square")
    for img in g.images:
        vals = sorted(img.unique().tolist())
        assert vals == pytest.approx([0.2, 0.8], abs=1e-7)
    frac = (g.images[3] > 0.5).float().mean().item()  # 0 deg, sf 4: half the columns bright (+-1 column)
    assert abs(frac - 0.5) <= 1 / 64 + 1e-9
    # sine and square in one sweep: the square one has the sine one's sign
    mix = S.gratings(size=32, sf=3, wave=["sine", "square"])
    assert torch.equal(mix.images[1] > 0.5, mix.images[0] >= 0.5)


def test_phase_zero_peaks_on_center():
    g = S.gratings(size=33, orientation=37, sf=5, phase=[0, 90, 180], contrast=0.5, center=(0.5, 0.5))
    c = g.images[:, 0, 16, 16]
    assert c.tolist() == pytest.approx([0.75, 0.5, 0.25], abs=1e-6)


def test_aperture_outside_is_mean_and_follows_center():
    size, r = 64, 0.25
    g = S.gratings(size=size, orientation=[0, 60], sf=6, mean=0.4, contrast=1.0, aperture=r,
                   center=[(0.5, 0.5), (0.25, 0.75)])
    rows, cols = np.mgrid[:size, :size]
    for img, p in zip(g.images[:, 0].numpy(), g.params):
        cx, cy = p["center"][0] * size, p["center"][1] * size
        d = np.hypot(cols - cx, rows - cy)
        outside = d > r * size + 1e-6
        assert np.all(img[outside] == np.float32(0.4))
        inside = d < r * size - 1
        assert np.ptp(img[inside]) > 0.7  # the grating is visible inside
    assert S.gratings(size=16, aperture=[None, 0.3]).images[0].eq(0.5).float().mean() < 0.5


def test_cycles_per_degree_equals_cycles_per_image_times_fov():
    a = S.gratings(size=64, orientation=[0, 45], sf=[0.5, 2.0], fov=8.0, sf_unit="cpd")
    b = S.gratings(size=64, orientation=[0, 45], sf=[4.0, 16.0])
    assert torch.equal(a.images, b.images)
    assert a.params[1]["sf"] == 2.0 and a.params[1]["sf_unit"] == "cpd" and a.params[1]["fov"] == 8.0


def test_factorial_grid_order_and_channels():
    g = S.gratings(size=16, orientation=[0, 45, 90], sf=[2, 4], phase=[0, 90, 180, 270], channels=3)
    assert tuple(g.images.shape) == (24, 3, 16, 16) and g.images.dtype == torch.float32
    got = [(p["orientation"], p["sf"], p["phase"]) for p in g.params]
    assert got == list(itertools.product([0, 45, 90], [2, 4], [0, 90, 180, 270]))
    assert torch.equal(g.images[:, 0], g.images[:, 2])
    assert set(g.params[0]) == {"size", "orientation", "sf", "phase", "contrast", "mean", "wave", "channels",
                                "aperture", "center", "fov", "sf_unit"}
    sweeps = S.gratings(size=16, orientation=(0, 90), sf=np.array([2.0, 3.0]), phase=range(0, 360, 120))
    assert [(p["orientation"], p["sf"], p["phase"]) for p in sweeps.params] == list(
        itertools.product([0, 90], [2.0, 3.0], [0, 120, 240]))
    single = S.gratings(size=16, orientation=45, sf=4, phase=180, channels=3)
    assert torch.equal(single.images[0], g.images[3 * 0 + 8 + 4 + 2])  # (45, 4, 180)


# --------------------------------------------------------------------------- gabors, plaids, bars, edges
def test_gabor_is_grating_times_gaussian_envelope():
    size = 48
    g = S.gabors(size=size, orientation=[0, 70], sf=[3, 6], sigma=[0.08, 0.15], contrast=0.8, mean=0.5)
    j = np.arange(size)
    x = (j - size // 2) / size
    X, Y = np.meshgrid(x, -x)
    for img, p in zip(g.images[:, 0].numpy(), g.params):
        env = np.exp(-(X ** 2 + Y ** 2) / (2 * p["sigma"] ** 2))
        wave = (ref_grating(size, p["orientation"], p["sf"], contrast=1.0, mean=1.0) - 1.0)
        np.testing.assert_allclose(img, 0.5 * (1 + 0.8 * env * wave), atol=2e-6)
        assert img[size // 2, size // 2] == pytest.approx(0.9, abs=1e-6)  # exact peak contrast at centre
    far = g.where(sigma=0.08).images[:, 0, 0, 0]
    assert torch.allclose(far, torch.full_like(far, 0.5), atol=1e-4)


def test_gabor_aspect_elongates_along_bars():
    g = S.gabors(size=64, orientation=0, sf=0.001, phase=0, sigma=0.1, aspect=[1.0, 2.0])
    # sf ~ 0: the image is the envelope; 0 deg bars are vertical, so aspect 2 stretches along y
    col = g.images[:, 0, :, 32] - 0.5
    row = g.images[:, 0, 32, :] - 0.5
    assert torch.allclose(col[0], row[0], atol=1e-6)
    assert (col[1][10] / col[1][32]).item() == pytest.approx(math.exp(-((22 / 64) / 0.2) ** 2 / 2), rel=1e-3)


def test_plaid_is_sum_of_component_gratings():
    p = S.plaids(size=64, orientation=[0, 30], angle=[90, 60], sf=[4, 8], contrast=0.25, mean=0.5)
    for img, q in zip(p.images[:, 0].numpy(), p.params):
        g1 = ref_grating(64, q["orientation"], q["sf"], contrast=0.25)
        g2 = ref_grating(64, q["orientation"] + q["angle"], q["sf"], contrast=0.25)
        np.testing.assert_allclose(img, g1 + g2 - 0.5, atol=2e-6)
    assert p.images.amax().item() == pytest.approx(0.75, abs=1e-6)
    # second component keeps its own sf/contrast when given
    q = S.plaids(size=64, orientation=0, angle=90, sf=4, sf2=8, contrast=0.3, contrast2=0.1).images[0, 0].numpy()
    ref = ref_grating(64, 0, 4, contrast=0.3) + ref_grating(64, 90, 8, contrast=0.1) - 0.5
    np.testing.assert_allclose(q, ref, atol=2e-6)


def test_bars_cover_exact_pixels_with_polarity():
    b = S.bars(size=32, orientation=[0, 90], length=16 / 32, width=[1 / 32, 3 / 32, 4 / 32],
               polarity=["light", "dark"], contrast=0.8, mean=0.5)
    assert len(b) == 12
    for img, p in zip(b.images[:, 0], b.params):
        w = round(p["width"] * 32)
        on = img != 0.5
        assert int(on.sum()) == 16 * w
        rows, cols = torch.nonzero(on, as_tuple=True)
        extent = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
        assert extent == ((16, w) if p["orientation"] == 0 else (w, 16))
        val = 0.9 if p["polarity"] == "light" else 0.1
        assert img[on].unique().tolist() == pytest.approx([val])
    moved = S.bars(size=32, width=1 / 32, center=(0.75, 0.5)).images[0, 0]
    assert torch.nonzero(moved != 0.5)[:, 1].unique().tolist() == [24]


def test_edges_two_values_side_and_position():
    e = S.edges(size=32, orientation=[0, 90], position=[0.0, 0.25], polarity=[1, -1], contrast=0.5, mean=0.4)
    for img, p in zip(e.images[:, 0], e.params):
        assert sorted(img.unique().tolist()) == pytest.approx([0.2, 0.6])
    v = e.images[0, 0]  # 0 deg, position 0, light on the right of the centre pixel column
    assert (v[:, 16:] == np.float32(0.6)).all() and (v[:, :16] == np.float32(0.2)).all()
    shifted = e.images[2, 0]  # position 0.25 -> edge moves 8 px to the right
    assert (shifted[:, 24:] == np.float32(0.6)).all() and (shifted[:, :24] == np.float32(0.2)).all()
    h = e.images[4, 0]  # 90 deg: light above (y up)
    assert (h[:17] == np.float32(0.6)).all() and (h[17:] == np.float32(0.2)).all()
    assert torch.equal(e.images[1, 0] > 0.4, v < 0.4)  # polarity -1 swaps light and dark


# --------------------------------------------------------------------------- noise
@pytest.mark.parametrize("dots,dot_size,size", [(1, 4, 32), (5, 3, 31), (12, 1, 16)])
def test_sparse_noise_exact_dots_at_recorded_positions(dots, dot_size, size):
    s = S.sparse_noise(size=size, n_frames=40, dots=dots, dot_size=dot_size, seed=3, contrast=1.0, mean=0.5)
    assert tuple(s.images.shape) == (40, 1, size, size)
    for img, p in zip(s.images[:, 0], s.params):
        assert len(p["positions"]) == dots == len(p["signs"])
        assert int((img != 0.5).sum()) == dots * dot_size ** 2
        expect = torch.full_like(img, 0.5)
        for (x, y), sign in zip(p["positions"], p["signs"]):
            assert 0 <= x <= size - dot_size and 0 <= y <= size - dot_size
            expect[y:y + dot_size, x:x + dot_size] = 1.0 if sign > 0 else 0.0
        assert torch.equal(img, expect)
    signs = np.concatenate([p["signs"] for p in s.params])
    assert set(signs.tolist()) == {-1, 1}


def test_sparse_noise_seed_polarity_and_limits():
    a = S.sparse_noise(size=16, n_frames=10, dots=2, dot_size=2, seed=7)
    b = S.sparse_noise(size=16, n_frames=10, dots=2, dot_size=2, seed=7)
    c = S.sparse_noise(size=16, n_frames=10, dots=2, dot_size=2, seed=8)
    assert torch.equal(a.images, b.images) and a.params == b.params and not torch.equal(a.images, c.images)
    light = S.sparse_noise(size=16, n_frames=10, dots=3, dot_size=2, polarity="light", mean=0.5, contrast=0.4)
    assert all(p["signs"] == [1, 1, 1] for p in light.params)
    assert sorted(light.images.unique().tolist()) == pytest.approx([0.5, 0.7])
    full = S.sparse_noise(size=8, n_frames=2, dots=16, dot_size=2, polarity="dark")
    assert (full.images == 0).all()
    with pytest.raises(StimulusError, match="fit"):
        S.sparse_noise(size=8, dots=17, dot_size=2)


def test_white_noise_distributions_and_seed():
    u = S.white_noise(size=64, n=8, seed=1)
    assert u.images.mean().item() == pytest.approx(0.5, abs=0.01)
    assert u.images.std().item() == pytest.approx(1 / math.sqrt(12), abs=0.01)
    assert torch.equal(u.images, S.white_noise(size=64, n=8, seed=1).images)
    b = S.white_noise(size=32, n=4, seed=2, distribution="binary", contrast=0.5, mean=0.5)
    assert sorted(b.images.unique().tolist()) == [0.25, 0.75]
    rgb = S.white_noise(size=32, n=2, channels=3)
    assert not torch.equal(rgb.images[:, 0], rgb.images[:, 1])
    px = u.images[:, 0].reshape(8, -1)
    assert abs(np.corrcoef(px[:, :-1].flatten(), px[:, 1:].flatten())[0, 1]) < 0.05  # spatially white


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_pink_noise_spectral_slope(exponent):
    size = 128
    p = S.pink_noise(size=size, n=8, exponent=exponent, seed=0, mean=0.5, contrast=0.9)
    imgs = p.images[:, 0].double().numpy()
    dev = np.abs(imgs - 0.5).reshape(8, -1).max(axis=1)
    assert dev == pytest.approx(np.full(8, 0.45), abs=1e-6)  # peak deviation = mean * contrast exactly
    amp = np.abs(np.fft.fft2(imgs - imgs.mean(axis=(1, 2), keepdims=True))).mean(axis=0)
    f = np.fft.fftfreq(size) * size
    radius = np.hypot(f[:, None], f[None, :])
    bins = np.arange(2, size // 2)
    radial = np.array([amp[(radius >= k - 0.5) & (radius < k + 0.5)].mean() for k in bins])
    slope = np.polyfit(np.log(bins), np.log(radial), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)


def test_pink_noise_exponent_sweep_order():
    p = S.pink_noise(size=16, n=3, exponent=[0.0, 1.0], seed=4)
    assert [(q["exponent"], q["frame"]) for q in p.params] == list(itertools.product([0.0, 1.0], range(3)))


# --------------------------------------------------------------------------- photos and folders
@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("SKIMAGE_DATADIR", "/nonexistent")  # pooch cache unusable: only bundled files may load


def test_natural_images_offline_all_photos(no_network):
    s = S.natural_images(size=32)
    assert tuple(s.images.shape) == (len(S.PHOTOS), 3, 32, 32)
    assert [p["name"] for p in s.params] == list(S.PHOTOS)
    assert 0.0 <= s.images.min().item() and s.images.max().item() <= 1.0
    assert (s.images.std(dim=(1, 2, 3)) > 0.02).all()  # real content, not blank
    g = S.natural_images(["astronaut", "camera"], size=20, gray=True)
    assert tuple(g.images.shape) == (2, 1, 20, 20)


def test_natural_images_exact_pixels_without_resize(no_network):
    import skimage.data
    import skimage.io

    raw = skimage.io.imread(S.bundled_photo_path("camera.png")).astype(np.float32) / 255
    full = S.natural_images("camera", size=512, gray=True)  # 512x512 photo: centre crop = whole photo
    np.testing.assert_array_equal(full.images[0, 0].numpy(), raw)
    crops = S.natural_images("camera", size=128, n_crops=5, crop=0.25, seed=11, gray=True)
    assert len(crops) == 5
    for img, p in zip(crops.images[:, 0].numpy(), crops.params):
        x0, y0, side = p["box"]
        assert side == 128 and 0 <= x0 <= 384 and 0 <= y0 <= 384
        np.testing.assert_array_equal(img, raw[y0:y0 + side, x0:x0 + side])
    again = S.natural_images("camera", size=128, n_crops=5, crop=0.25, seed=11, gray=True)
    assert torch.equal(again.images, crops.images)
    drawn = S.natural_images("camera", size=16, n_crops=3, crop=0.5, seed=None)
    seed = drawn.params[0]["seed"]
    assert isinstance(seed, int) and torch.equal(
        S.natural_images("camera", size=16, n_crops=3, crop=0.5, seed=seed).images, drawn.images)
    rgb = skimage.io.imread(S.bundled_photo_path("astronaut.png")).astype(np.float64) / 255
    lum = rgb @ np.array([0.2125, 0.7154, 0.0721])
    a = S.natural_images("astronaut", size=512, gray=True, channels=3).images[0].numpy()
    np.testing.assert_allclose(a[0], lum, atol=1e-5)
    assert np.array_equal(a[0], a[2])


def test_natural_images_unknown_name_suggests(no_network):
    with pytest.raises(StimulusError, match="camera"):
        S.natural_images("camra")
    with pytest.raises(StimulusError, match="from_folder"):
        S.natural_images("my_dog")


def test_from_folder_crops_resizes_and_orders(tmp_path):
    import skimage.io

    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # centre square white, sides black
    skimage.io.imsave(tmp_path / "b_wide.png", wide, check_contrast=False)
    gray = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    skimage.io.imsave(tmp_path / "a_gray.png", gray, check_contrast=False)
    rgba = np.full((30, 30, 4), 128, np.uint8)
    skimage.io.imsave(tmp_path / "c_rgba.png", rgba, check_contrast=False)
    (tmp_path / "notes.txt").write_text("not an image")
    s = S.from_folder(tmp_path, size=16)
    assert [p["file"] for p in s.params] == ["a_gray.png", "b_wide.png", "c_rgba.png"]
    assert tuple(s.images.shape) == (3, 3, 16, 16)
    assert torch.allclose(s.images[1], torch.ones(3, 16, 16), atol=1e-6)  # centre crop: only the white square
    assert torch.allclose(s.images[2], torch.full((3, 16, 16), 128 / 255))
    same = S.from_folder(tmp_path, size=64, gray=True)
    np.testing.assert_array_equal(same.images[0, 0].numpy(), gray / np.float32(255))
    with pytest.raises(StimulusError, match="not a folder"):
        S.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StimulusError, match="no image files"):
        S.from_folder(tmp_path / "empty")


# --------------------------------------------------------------------------- StimulusSet
def test_indexing_returns_stimulus_sets():
    g = S.gratings(size=8, orientation=[0, 45, 90, 135], sf=[1, 2])
    assert len(g) == 8
    one = g[3]
    assert isinstance(one, StimulusSet) and len(one) == 1 and one.params[0] == g.params[3]
    assert torch.equal(g[-1].images, g.images[7:])
    sl = g[1:7:2]
    assert [p["orientation"] for p in sl.params] == [0, 45, 90] and torch.equal(sl.images, g.images[1:7:2])
    mask = torch.tensor([p["sf"] == 2 for p in g.params])
    assert [p["sf"] for p in g[mask].params] == [2] * 4 and torch.equal(g[mask].images, g.images[mask])
    lst = g[[5, 0, 5]]
    assert [p["orientation"] for p in lst.params] == [90, 0, 90]
    assert len(g[np.array([], dtype=int)]) == 0
    with pytest.raises(IndexError):
        g[8]
    with pytest.raises(IndexError):
        g[[True, False]]


def test_concat_add_where_table():
    a = S.gratings(size=8, orientation=[0, 90])
    b = S.gabors(size=8, orientation=[45])
    c = a + b
    assert len(c) == 3 and torch.equal(c.images[2], b.images[0]) and c.params[2]["sigma"] == b.params[0]["sigma"]
    assert torch.equal(StimulusSet.concat([a, b, a]).images, torch.cat([a.images, b.images, a.images]))
    with pytest.raises(StimulusError, match="same size"):
        a + S.gratings(size=16)
    g = S.gratings(size=8, orientation=[0, 45, 90], sf=[1, 2], contrast=[0.5, 1.0])
    assert [p["orientation"] for p in g.where(orientation=45).params] == [45] * 4
    assert len(g.where(orientation=[0, 90], sf=2, contrast=lambda c: c > 0.7)) == 2
    assert len(g.where(lambda p: p["sf"] * p["contrast"] == 2)) == 3
    with pytest.raises(StimulusError, match="available"):
        g.where(orientaton=45)
    t = g.table()
    assert t["orientation"].tolist() == [p["orientation"] for p in g.params]
    assert t["center"].shape == (12, 2)
    assert t["aperture"].dtype == object
    tc = c.table()
    assert tc["sigma"][0] is None and tc["sigma"][2] == b.params[0]["sigma"]


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_save_load_round_trip_is_exact(tmp_path, suffix):
    s = S.gratings(size=16, orientation=[0, 33.3], sf=[1.5], aperture=[None, 0.3], center=[(0.5, 0.5), (0.2, 0.7)],
                   channels=3) + S.sparse_noise(size=16, n_frames=2, dots=2, channels=3)
    path = s.save(tmp_path / f"set{suffix}")
    back = StimulusSet.load(path)
    assert back.images.dtype == torch.float32 and torch.equal(back.images, s.images)
    assert back.params == s.params
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:  # nothing pickled
            assert set(z.files) >= {"images", "params"}
    with pytest.raises(StimulusError, match=".npz or .pt"):
        s.save(tmp_path / "set.pkl")


def test_truncated_npz_stimulus_set_is_a_saved_file_error_naming_it(tmp_path):
    """Issue 23 (kind 3): a cut-short .npz is refused through insilico.persistence, naming the file."""
    from insilico.errors import SavedFileError

    path = StimulusSet(torch.rand(3, 3, 8, 8), None).save(tmp_path / "s.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SavedFileError, match="s.npz"):  # was a raw zipfile.BadZipFile
        StimulusSet.load(path)


@pytest.mark.parametrize("bad", [dict(images=torch.full((3, 3, 8, 8), float("nan"))),
                                 dict(images=torch.zeros(3, 3, 8, 8, dtype=torch.uint8)),
                                 dict(params='[{"a": 1}]'), dict(images="not images")],
                         ids=["nan", "uint8", "params_count", "images_string"])
def test_stimulus_set_file_with_bad_contents_is_refused_naming_it(tmp_path, bad):
    """Issue 23 (kind 3): contents a StimulusSet refuses are a SavedFileError that names the file."""
    from insilico.errors import SavedFileError

    path = StimulusSet(torch.rand(3, 3, 8, 8), None).save(tmp_path / "s.pt")
    blob = torch.load(path, weights_only=True)
    blob.update(bad)
    torch.save(blob, path)
    with pytest.raises(SavedFileError, match="s.pt"):
        StimulusSet.load(path)


def test_plot_grid_titles_and_ax():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = S.gratings(size=16, orientation=[0, 45, 90], sf=[2, 4])
    fig = g.plot(n=5)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 5
    titles = [a.get_title() for a in fig.axes]
    assert titles[1] == "orientation=0, sf=4" and titles[4] == "orientation=90, sf=2"
    plt.close(fig)
    fig2, ax = plt.subplots()
    g2 = S.gratings(size=16, orientation=list(range(0, 180, 18)))
    assert g2.plot(n=10, ax=ax) is fig2 and len(ax.images) == 1  # one montage, 8 per row
    assert ax.images[0].get_array().shape == (2 * 17 - 1, 8 * 17 - 1)
    plt.close(fig2)


def test_to_device_keeps_params():
    g = S.gratings(size=8, orientation=[0, 90])
    h = g.to("cpu", dtype=torch.float64)
    assert h.images.dtype == torch.float64 and h.params == g.params and torch.equal(h.images.float(), g.images)


@pytest.mark.parametrize("images,msg", [
    (torch.rand(8, 8), "4-D"),
    (torch.rand(3, 8, 8), "unsqueeze"),
    (torch.randint(0, 255, (1, 1, 4, 4), dtype=torch.uint8), "/ 255"),
    (torch.full((1, 1, 4, 4), float("nan")), "NaN"),
    (torch.full((1, 1, 4, 4), float("inf")), r"\[0, 1\]"),
    (torch.full((1, 1, 4, 4), 1.5), "clamp"),
    (torch.full((1, 1, 4, 4), -0.1), r"\[0, 1\]"),
])
def test_constructor_rejects_bad_images(images, msg):
    with pytest.raises(StimulusError, match=msg):
        StimulusSet(images)


def test_constructor_checks_params():
    with pytest.raises(StimulusError, match="len\\(params\\) = 1"):
        StimulusSet(torch.zeros(2, 1, 4, 4), [{}])
    with pytest.raises(StimulusError, match="JSON"):
        StimulusSet(torch.zeros(1, 1, 4, 4), [{"f": object()}])
    s = StimulusSet(np.zeros((1, 1, 4, 4), np.float32), [{"a": np.float64(0.5), "b": (1, 2), "c": torch.tensor(3)}])
    assert s.params == [{"a": 0.5, "b": [1, 2], "c": 3}] and type(s.params[0]["a"]) is float


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,msg", [
    (lambda: S.gratings(size=-4), "positive integer"),
    (lambda: S.gratings(size=[32, 64]), "positive integer"),
    (lambda: S.gratings(contrast=1.5), r"contrast must lie in \[0.0, 1.0\]"),
    (lambda: S.gratings(contrast=[0.5, -0.1]), "contrast"),
    (lambda: S.gratings(mean=0.7, contrast=0.8), "exceeds 1"),
    (lambda: S.gratings(wave="sqaure"), "Did you mean 'square'"),
    (lambda: S.gratings(orientation=[]), "empty"),
    (lambda: S.gratings(orientation=float("nan")), "finite"),
    (lambda: S.gratings(size=32, sf=17), "Nyquist"),
    (lambda: S.gratings(sf=2, sf_unit="cpd"), "fov"),
    (lambda: S.gratings(sf_unit="cycles"), "sf_unit"),
    (lambda: S.gratings(channels=2), "channels"),
    (lambda: S.gratings(center=(0.5,)), "pair"),
    (lambda: S.gratings(aperture=-0.2), "aperture"),
    (lambda: S.gabors(sigma=0), "sigma"),
    (lambda: S.plaids(contrast=0.6), "contrast"),
    (lambda: S.bars(polarity="grey"), "polarity"),
    (lambda: S.sparse_noise(n_frames=0), "n_frames"),
    (lambda: S.white_noise(distribution="normal"), "distribution"),
    (lambda: S.white_noise(seed="abc"), "seed"),
    (lambda: S.natural_images(crop=1.5), "crop"),
])
def test_bad_input_raises_stimulus_error(call, msg):
    with pytest.raises(StimulusError, match=msg):
        call()
