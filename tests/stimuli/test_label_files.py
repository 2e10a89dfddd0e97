"""The user's labels (issue 26, item 1): a labels CSV (``image,label``) and a class-names file (JSON or one per
line) label a stimulus set through the one reader, over a folder's classes; for the library
(:func:`insilico.stimuli.labelled`), ``insilico record`` and the gallery (``--labels``, ``--class-names`` and
the definition's keys)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.io
import torch
from torch import nn

import insilico
from insilico.errors import InsilicoError, StimulusError
from insilico.recording import stimulus_source
from insilico.stimuli import labelled

NAMES = ("cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in NAMES:
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        skimage.io.imsave(tmp_path / "set" / name, rng.integers(0, 256, (9, 9, 3)).astype(np.uint8),
                          check_contrast=False)
    return tmp_path / "set"


def _write(path, text):
    path.write_text(text)
    return path


def test_a_labels_file_overrides_the_folder_classes(folder, tmp_path):
    csv = _write(tmp_path / "labels.csv", "image,label\ncat/a.png,owl\ncat/b.png,hen\n"
                                          f"{folder / 'dog' / 'c.png'},owl\ndog/d.png,owl\n")  # an id or a path
    source = stimulus_source(labelled(folder, csv))
    assert source.class_names == ["hen", "owl"] and source.labels == [1, 0, 1, 1]
    names = _write(tmp_path / "names.json", json.dumps(["owl", "cat", "hen"]))
    source = stimulus_source(labelled(folder, csv, names))
    assert source.class_names == ["owl", "cat", "hen"] and source.labels == [0, 2, 0, 0]
    indices = _write(tmp_path / "indices.csv", "cat/a.png,2\ncat/b.png,0\ndog/c.png,2\ndog/d.png,1\n")  # no header
    lines = _write(tmp_path / "names.txt", "zero\n\none\ntwo\n")
    source = stimulus_source(labelled(folder, indices, lines))
    assert source.labels == [2, 0, 2, 1] and source.class_names == ["zero", "one", "two"]
    # class names alone: the folder's classes matched to them by name
    renamed = stimulus_source(labelled(folder, class_names=_write(tmp_path / "n.txt", "bird\ndog\ncat\n")))
    assert renamed.labels == [2, 2, 1, 1] and renamed.class_names == ["bird", "dog", "cat"]


def test_wrong_label_files_are_refused_by_name(folder, tmp_path):
    extra = _write(tmp_path / "extra.csv", "".join(f"{n},x\n" for n in NAMES) + "cat/z.png,x\nq.png,y\n")
    with pytest.raises(StimulusError, match=r"2 labelled images are not among the 4 stimuli: \['cat/z.png', 'q.png'\]"):
        stimulus_source(labelled(folder, extra))
    short = _write(tmp_path / "short.csv", "cat/a.png,x\n")
    with pytest.raises(StimulusError, match=r"3 stimuli have no label in the labels file: \['cat/b.png', 'dog/c.png'"):
        stimulus_source(labelled(folder, short))
    with pytest.raises(StimulusError, match=r"bad.csv, line 2: .* is not 'image,label'"):
        stimulus_source(labelled(folder, _write(tmp_path / "bad.csv", "image,label\ncat/a.png\n")))
    with pytest.raises(StimulusError, match=r"classes \['cat'\] are not among the class names"):
        stimulus_source(labelled(folder, class_names=["dog", "owl"]))
    indices = _write(tmp_path / "indices.csv", "".join(f"{n},{i}\n" for i, n in enumerate(NAMES)))
    with pytest.raises(StimulusError, match=r"class indices \[2, 3\] have no name among the 2 class names"):
        stimulus_source(labelled(folder, indices, ["a", "b"]))
    with pytest.raises(StimulusError, match="these stimuli have none"):
        stimulus_source(labelled(torch.rand(4, 3, 9, 9), indices))


def test_tools_score_by_the_file_labels(folder, tmp_path):
    from insilico.experiments import lesion_sweep

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model.input_size, model.classes = (3, 9, 9), ["yes", "no"]
    csv = _write(tmp_path / "labels.csv", "cat/a.png,no\ncat/b.png,yes\ndog/c.png,yes\ndog/d.png,no\n")
    swept = lesion_sweep(model, "0", labelled(folder, csv), n_boot=10, progress=False)
    given = lesion_sweep(model, "0", folder, [1, 0, 0, 1], classes=["yes", "no"], n_boot=10, progress=False)
    assert list(swept.classes) == ["yes", "no"]
    assert np.array_equal(swept.class_accuracy, given.class_accuracy, equal_nan=True)
    rec = insilico.Probe(model).record_stimuli(labelled(folder, csv), "0", progress=False)
    assert rec.labels == [0, 1, 1, 0] and rec.class_names == ["no", "yes"]


def test_the_command_line_takes_labels_and_class_names(folder, tmp_path):
    from insilico.cli import main

    csv = _write(tmp_path / "labels.csv", "image,label\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(NAMES)))
    names = _write(tmp_path / "names.txt", "even\nodd\n")
    assert main(["record", "--units", "features.0[3]", "--stimuli", str(folder), "--labels", str(csv),
                 "--class-names", str(names), "--out", str(tmp_path / "rec"), "--quiet"]) == 0
    rec = insilico.Recording.load(tmp_path / "rec" / "recording")
    assert rec.labels == [0, 1, 0, 1] and rec.class_names == ["even", "odd"]


def test_the_gallery_takes_label_files_from_its_definition_and_the_command_line(folder, tmp_path):
    from insilico.cli.main import build_parser
    from insilico.gallery import GallerySettings
    from insilico.gallery.stages import _files

    csv = _write(tmp_path / "labels.csv", "".join(f"{n},{'xy'[i % 2]}\n" for i, n in enumerate(NAMES)))
    settings = GallerySettings.from_dict({"model": "minialex", "stimuli": str(folder), "labels": str(csv)})
    source, shown = _files(nn.Identity(), settings.stimuli, (3, 8, 8), settings.labels, settings.class_names)
    assert shown == ["x", "y", "x", "y"] and tuple(source.batch(0, 4, None, None).shape) == (4, 3, 8, 8)
    other = _write(tmp_path / "other.csv", "".join(f"{n},x\n" for n in NAMES))
    key = GallerySettings.from_dict({"model": "minialex", "stimuli": str(folder), "labels": str(other)}).content_key()
    assert key != settings.content_key()  # other labels: another site
    with pytest.raises(InsilicoError, match="labels the user's image files"):
        GallerySettings.from_dict({"model": "minialex", "labels": str(csv)})
    args = build_parser().parse_args(["gallery", "build", "--stimuli", str(folder), "--labels", str(csv),
                                      "--class-names", str(csv)])
    assert (args.labels, args.class_names) == (str(csv), str(csv))
