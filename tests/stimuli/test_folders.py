"""Folders, globs and lists of image files as stimulus sets (issue 26, item 1): decoded per chunk, fitted to
the model's input by its preprocessing, labelled by an ImageFolder layout, in the recording's identity."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.io
import torch
from torch import nn

import insilico
from insilico.errors import JobMismatchError, StimulusError
from insilico.recording import stimulus_source
from insilico.stimuli import files as files_module

# (H, W) of each file: torchvision's and the zoo's rules for the longer side agree on these (72 * long / short
# is a whole number), so both resize to the same grid.
SHAPES = {"cat/a.png": (36, 54), "cat/b.png": (90, 90), "dog/c.png": (54, 36), "dog/d.jpg": (80, 80)}


def _write(root, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    for name, (h, w) in shapes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # smooth images: JPEG artefacts stay small, and resizing kernels are compared, not noise
        y, x = np.mgrid[0:h, 0:w]
        base = rng.uniform(0, 1, 3)
        image = np.stack([0.5 + 0.4 * np.sin(x / (3 + c) + base[c] * 6) * np.cos(y / (4 + c)) for c in range(3)], -1)
        skimage.io.imsave(path, (image * 255).round().astype(np.uint8), check_contrast=False)
    return root


@pytest.fixture(scope="module")
def small_resnet():
    """torchvision's resnet18 (random weights) whose preprocessing is scaled down to 72 px then 64 px."""
    model = insilico.models.load("torchvision:resnet18", weights=None)
    model.preprocessing = dataclasses.replace(model.preprocessing, resize=72, crop=(64, 64))
    model.input_size = (3, 64, 64)
    return model.eval()


def _by_hand(root, names):
    """The files as torchvision's eval transform makes them: Resize(72) (antialiased bilinear) + CenterCrop(64)."""
    transforms = pytest.importorskip("torchvision.transforms")
    pipeline = transforms.Compose([transforms.Resize(72, antialias=True), transforms.CenterCrop(64)])
    images = []
    for name in names:
        array = skimage.io.imread(root / name)
        images.append(pipeline(torch.from_numpy(array).permute(2, 0, 1).float() / 255))
    return torch.stack(images)


def test_a_folder_records_as_torchvision_transforms_its_images(tmp_path, small_resnet):
    root = _write(tmp_path / "set")
    rec = insilico.Probe(small_resnet).record_stimuli(str(root), ["net.layer1", "net.fc"], batch_size=3,
                                                       progress=False)
    names = sorted(SHAPES)
    assert rec.ids == names and rec.labelled
    assert rec.labels == [0, 0, 1, 1] and rec.class_names == ["cat", "dog"]
    pixels = stimulus_source(root, model=small_resnet).batch(0, 4, None, None)
    by_hand = _by_hand(root, names)
    assert tuple(pixels.shape) == (4, 3, 64, 64)
    assert torch.allclose(pixels, by_hand.clamp(0, 1), atol=1e-5)
    ref = insilico.Probe(small_resnet).record_stimuli(by_hand.clamp(0, 1), ["net.layer1", "net.fc"], batch_size=4,
                                                       progress=False)
    for unit in ("net.layer1", "net.fc"):
        assert torch.allclose(rec[unit], ref[unit], rtol=1e-4, atol=1e-5)


def test_labels_survive_save_and_load(tmp_path):
    root = _write(tmp_path / "set", {"b/x.png": (8, 8), "a/y.png": (8, 8), "a/z.png": (8, 8)})
    model = nn.Conv2d(3, 2, 3)
    rec = insilico.Probe(model).record_stimuli(root, "", batch_size=2, progress=False, out=tmp_path / "rec")
    assert rec.ids == ["a/y.png", "a/z.png", "b/x.png"]
    assert rec.labels == [0, 0, 1] and rec.class_names == ["a", "b"]
    again = insilico.Recording.load(tmp_path / "rec").save(tmp_path / "copy")
    assert again.ids == rec.ids and again.labels == rec.labels and again.class_names == rec.class_names


def test_flat_folder_glob_and_list_have_no_labels(tmp_path):
    root = _write(tmp_path / "flat", {"p.png": (10, 10), "q.png": (10, 10), "r.jpg": (10, 10)})
    model = nn.Conv2d(3, 2, 3)
    probe = insilico.Probe(model)
    flat = probe.record_stimuli(root, "", progress=False)
    assert flat.ids == ["p.png", "q.png", "r.jpg"] and flat.labels is None and flat.class_names is None
    globbed = probe.record_stimuli(str(root / "*.png"), "", progress=False)
    assert globbed.ids == ["p.png", "q.png"]
    listed = probe.record_stimuli([root / "r.jpg", str(root / "p.png")], "", progress=False)
    assert listed.ids == ["r.jpg", "p.png"]
    assert torch.equal(listed[""][1], flat[""][0])


def test_input_size_without_preprocessing_resizes_and_crops(tmp_path):
    root = _write(tmp_path / "set", {"a.png": (20, 30), "b.png": (40, 24)})
    model = nn.Conv2d(1, 2, 3)
    model.input_size = (1, 16, 16)  # a one-channel model gets luminance
    batch = stimulus_source(root, model=model).batch(0, 2, None, None)
    assert tuple(batch.shape) == (2, 1, 16, 16)
    image = files_module.read_image(root / "a.png")
    fitted = files_module.fit_image(image, (16, 16))
    transforms = pytest.importorskip("torchvision.transforms.functional")
    reference = transforms.center_crop(transforms.resize(image, 16, antialias=True), [16, 16])
    assert tuple(fitted.shape) == (3, 16, 16)
    assert torch.allclose(fitted, reference.clamp(0, 1), atol=1e-6)


def test_images_of_different_sizes_without_a_model_size_are_refused(tmp_path):
    root = _write(tmp_path / "set", {"a.png": (20, 30), "b.png": (40, 24)})
    with pytest.raises(StimulusError, match=r"b\.png.*input_size"):
        insilico.Probe(nn.Conv2d(3, 2, 3)).record_stimuli(root, "", batch_size=1, progress=False)


def test_files_are_decoded_one_chunk_at_a_time(tmp_path, monkeypatch):
    root = _write(tmp_path / "set", {f"{i}.png": (8, 8) for i in range(7)})
    decoded = []
    read = files_module.read_image
    monkeypatch.setattr(files_module, "read_image", lambda path, channels=3: decoded.append(path) or read(path))
    model = nn.Conv2d(3, 2, 3)
    seen = []
    model.register_forward_hook(lambda *_: seen.append(len(decoded)))
    source = stimulus_source(root, model=model)
    assert decoded == []  # listing decodes nothing
    insilico.Probe(model).record_stimuli(source, "", batch_size=3, progress=False)
    # the survey decodes stimulus 0; then each forward pass has decoded its chunk and nothing beyond it
    assert seen[-3:] == [1 + 3, 1 + 6, 1 + 7]
    alive = []
    original = source._get
    source._get = lambda a, b: alive.append(source._last) or original(a, b)
    source.read(0, 3), source.read(3, 6)
    assert alive[-1] is None  # the chunk before is let go before the next is decoded



class _CountingDataset(torch.utils.data.Dataset):
    """A Dataset that counts the items it has made (a stand-in for 50,000 decoded 224-px images)."""

    def __init__(self, n):
        self.n, self.made = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.made += 1
        return torch.full((3, 8, 8), i / self.n), i % 2


def test_a_dataset_is_read_one_batch_at_a_time_by_every_tool():
    from insilico.attribution import top_exemplars

    dataset = _CountingDataset(10)
    model = nn.Conv2d(3, 2, 3)
    seen = []
    model.register_forward_hook(lambda *_: seen.append(dataset.made))
    insilico.Probe(model).record_stimuli(dataset, "", batch_size=4, progress=False)
    # the survey reads item 0; then each forward pass has read its batch and nothing beyond it
    assert seen[-3:] == [1 + 4, 1 + 8, 1 + 10]
    dataset.made, seen[:] = 0, []
    top_exemplars(model, dataset, "[1]", k=2, batch_size=4, progress=False)
    assert seen == [4, 8, 10]

def test_a_changed_or_other_folder_is_refused_when_resuming(tmp_path):
    root = _write(tmp_path / "set", {f"c/{i}.png": (8, 8) for i in range(4)})
    model = nn.Conv2d(3, 2, 3)
    probe = insilico.Probe(model)
    out = tmp_path / "rec"
    probe.record_stimuli(root, "", batch_size=2, progress=False, out=out)
    probe.record_stimuli(root, "", batch_size=2, progress=False, out=out)  # the same job: nothing to do
    skimage.io.imsave(root / "c/1.png", np.zeros((8, 8, 3), np.uint8), check_contrast=False)
    with pytest.raises(JobMismatchError):
        probe.record_stimuli(root, "", batch_size=2, progress=False, out=out)
    other = _write(tmp_path / "other", {f"d/{i}.png": (8, 8) for i in range(4)})
    with pytest.raises(JobMismatchError):
        probe.record_stimuli(other, "", batch_size=2, progress=False, out=out)


def test_bad_files_name_the_path(tmp_path):
    model = nn.Conv2d(3, 2, 3)
    probe = insilico.Probe(model)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StimulusError, match="holds no image files"):
        probe.record_stimuli(empty, "", progress=False)
    with pytest.raises(StimulusError, match="matches no image file"):
        probe.record_stimuli(str(tmp_path / "*.png"), "", progress=False)
    with pytest.raises(StimulusError, match="no folder, file or glob"):
        probe.record_stimuli(str(tmp_path / "nowhere"), "", progress=False)
    root = _write(tmp_path / "set", {"a.png": (8, 8)})
    (root / "b.png").write_bytes(b"")
    with pytest.raises(StimulusError, match=r"b\.png is empty"):
        probe.record_stimuli(root, "", progress=False)
    (root / "b.png").write_bytes(b"not an image")
    with pytest.raises(StimulusError, match=r"cannot read image .*b\.png"):
        probe.record_stimuli(root, "", progress=False)
    mixed = _write(tmp_path / "mixed", {"top.png": (8, 8), "cls/in.png": (8, 8)})
    with pytest.raises(StimulusError, match="both at its top"):
        stimulus_source(mixed)


def test_files_whose_pixel_values_mean_something_else_are_refused_not_misread(tmp_path):
    """Before: a CMYK JPEG was read as RGBA (C, M, Y as R, G, B: inverted colours), a float TIFF in 0..255
    clipped to white, an int32 TIFF divided by 2**31 (black) -- all recorded without a word, by both readers
    (the files of record_stimuli and stimuli.from_folder)."""
    from PIL import Image
    import tifffile

    rng = np.random.default_rng(0)
    good = tmp_path / "good"
    good.mkdir()
    rgb = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(good / "a.png")
    tifffile.imwrite(good / "f.tif", rgb.astype(np.float32) / 255, photometric="rgb")  # float in [0, 1]: as it is
    tifffile.imwrite(good / "s.tif", rgb.astype(np.uint16) * 257, photometric="rgb")   # 16 bit: scaled by 65535
    read = [files_module.read_image(good / n) for n in ("a.png", "f.tif", "s.tif")]
    assert all(torch.allclose(r, read[0], atol=1e-6) for r in read)
    bad = {"cmyk.jpg": (lambda p: Image.fromarray(rgb).convert("CMYK").save(p), "CMYK"),
           "f255.tif": (lambda p: tifffile.imwrite(p, rgb.astype(np.float32), photometric="rgb"),
                        r"float .*values up to 255"),
           "nan.tif": (lambda p: tifffile.imwrite(p, np.full((4, 4), np.nan, np.float32)), "NaN"),
           "i32.tif": (lambda p: tifffile.imwrite(p, rgb[..., 0].astype(np.int32)), "int32")}
    for name, (write, said) in bad.items():
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        write(folder / name)
        with pytest.raises(StimulusError, match=f"{name}.*{said}"):
            files_module.read_image(folder / name)
        with pytest.raises(StimulusError, match=f"{name}.*{said}"):
            insilico.stimuli.from_folder(folder, size=8)


def test_an_object_on_a_transparent_background_is_refused_opaque_alpha_is_dropped(tmp_path):
    """Before: an object PNG on a transparent background was read with its alpha dropped, so the model saw whatever
    colour lies under alpha 0 (black here; anything in other files) -- without a word. An alpha that hides (almost)
    nothing is still dropped: opaque, half-opaque, or a few see-through pixels (scikit-image's horse photo)."""
    from PIL import Image

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[2:8, 2:8] = (200, 30, 30, 255)                                      # a red square, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    with pytest.raises(StimulusError, match=r"cut\.png.*64% of its pixels are see-through.*alpha_composite"):
        files_module.read_image(tmp_path / "cut.png")
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0                                                          # 1 pixel in 100: kept
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    torch.testing.assert_close(files_module.read_image(tmp_path / "opaque.png"),
                               torch.from_numpy(rgba[..., :3] / np.float32(255)).permute(2, 0, 1))


def _classifier(classes=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model.input_size = (3, 12, 12)
    if classes is not None:
        model.classes = classes
    return model.eval()


def test_tools_take_a_folder_through_the_one_source(tmp_path):
    from insilico.attribution import top_exemplars
    from insilico.experiments import lesion_sweep

    shapes = {"cat/a.png": (12, 20), "cat/b.png": (16, 16), "dog/c.png": (30, 12), "dog/d.png": (12, 12)}
    root = _write(tmp_path / "set", shapes)
    pixels = stimulus_source(root, model=_classifier()).batch(0, 4, None, None)
    ex = top_exemplars(_classifier(), root, "0[1]", k=2, progress=False)
    by_hand = top_exemplars(_classifier(), pixels, "0[1]", k=2, progress=False)
    assert torch.equal(ex.indices, by_hand.indices) and torch.allclose(ex.activations, by_hand.activations)
    assert ex.ids == [sorted(shapes)[i] for i in ex.indices.tolist()]
    # the folder's labels, matched to the model's classes by name (the model names them in another order)
    swept = lesion_sweep(_classifier(["dog", "cat"]), "0", root, progress=False)
    given = lesion_sweep(_classifier(["dog", "cat"]), "0", pixels, [1, 1, 0, 0], progress=False)
    assert np.array_equal(swept.class_accuracy, given.class_accuracy, equal_nan=True)
    assert list(swept.classes) == ["dog", "cat"]
    # a model that names no classes: the folder's order, when it has as many outputs as the folder classes
    plain = lesion_sweep(_classifier(), "0", root, progress=False)
    assert list(plain.classes) == ["cat", "dog"]
    assert np.array_equal(plain.class_accuracy, lesion_sweep(_classifier(), "0", pixels, [0, 0, 1, 1],
                                                             progress=False).class_accuracy, equal_nan=True)
    three = _write(tmp_path / "three", {**shapes, "owl/e.png": (12, 12)})
    with pytest.raises(insilico.InsilicoError, match="3 classes .* 2 outputs"):
        lesion_sweep(_classifier(), "0", three, progress=False)
    with pytest.raises(insilico.InsilicoError, match=r"\['owl'\] are not among the model's classes"):
        lesion_sweep(_classifier(["dog", "cat"]), "0", three, progress=False)
    with pytest.raises(insilico.InsilicoError, match="labels are needed"):
        lesion_sweep(_classifier(), "0", pixels, progress=False)


def test_the_command_line_records_a_folder_and_a_glob(tmp_path):
    from insilico.cli import main

    root = _write(tmp_path / "set", {"cat/a.png": (40, 70), "dog/b.png": (64, 64), "dog/c.jpg": (90, 50)})
    assert main(["record", "--units", "features.0[3]", "--stimuli", str(root), "--out", str(tmp_path / "rec"),
                 "--quiet"]) == 0
    rec = insilico.Recording.load(tmp_path / "rec" / "recording")
    assert rec.ids == ["cat/a.png", "dog/b.png", "dog/c.jpg"] and rec.class_names == ["cat", "dog"]
    assert tuple(rec["features.0[3]"].shape[:1]) == (3,)
    assert main(["record", "--units", "features.0[3]", "--stimuli", str(root / "dog" / "*.png"),
                 "--out", str(tmp_path / "glob"), "--quiet"]) == 0
    assert insilico.Recording.load(tmp_path / "glob" / "recording").ids == ["b.png"]


def test_the_gallery_takes_a_folder_as_its_exemplar_set(tmp_path):
    import json

    from insilico.cli import main
    from insilico.gallery import GallerySettings

    root = _write(tmp_path / "set", {"cat/a.png": (40, 70), "cat/b.png": (64, 64), "dog/c.png": (90, 50),
                                     "dog/d.png": (70, 70)})
    out = tmp_path / "site"
    assert main(["gallery", "build", "--model", "minialex", "--layers", "classifier.6", "--units", "1",
                 "--steps", "2", "--exemplars", "3", "--stimuli", str(root), "--out", str(out), "--quiet"]) == 0
    pages = [json.loads(p.read_text()) for p in out.glob("units/classifier.6/*/exemplars.json")]
    assert len(pages) == 1 and pages[0]["n_stimuli"] == 4
    names = ["cat", "cat", "dog", "dog"]  # the folder's class of each stimulus, in id order
    assert pages[0]["labels"] == [names[i] for i in pages[0]["indices"]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StimulusError, match="empty holds no image files"):
        GallerySettings.from_dict({"model": "minialex", "stimuli": str(tmp_path / "empty")})



def test_a_torchvision_image_folder_dataset_brings_its_classes_and_concat_keeps_labels(tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    root = _write(tmp_path / "set", {"cat/a.png": (8, 8), "dog/b.png": (8, 8), "dog/c.png": (8, 8)})
    folder = datasets.ImageFolder(root, transform=transforms.ToTensor())
    source = stimulus_source(folder)
    assert source.labels == [0, 1, 1] and source.class_names == ["cat", "dog"]
    probe = insilico.Probe(nn.Conv2d(3, 2, 3))
    parts = [probe.record_stimuli(stimulus_source(root), "", progress=False) for _ in range(2)]
    joined = insilico.Recording.concat(parts)
    assert joined.labels == [0, 1, 1, 0, 1, 1] and joined.class_names == ["cat", "dog"]
    plain = probe.record_stimuli(torch.rand(2, 3, 8, 8), "", progress=False)
    assert insilico.Recording.concat([parts[0], plain]).labels is None  # labels of some stimuli only: none
