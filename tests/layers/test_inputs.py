"""``size=``: one name and one meaning for an image size across every tool (insilico.layers.inputs)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

import insilico
from insilico.errors import InsilicoError
from insilico.experiments import orientation_tuning, receptive_field
from insilico.layers import image_size
from insilico.registry import VOCABULARY, tools


def gray_net() -> nn.Module:
    """A 1-channel conv classifier (a bare int must give it 1-channel images, not 3)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


@pytest.mark.parametrize("size, expected", [
    (8, (1, 8, 8)), (np.int64(8), (1, 8, 8)), ((6, 10), (1, 6, 10)), ([6, 10], (1, 6, 10)), ((2, 6, 10), (2, 6, 10)),
])
def test_an_int_or_a_pair_takes_the_models_channels(size, expected):
    assert image_size(gray_net(), size) == expected


def test_the_model_input_size_is_the_default_and_gives_the_channels():
    net = gray_net()
    with pytest.raises(InsilicoError, match=r"Sequential has no input_size attribute: say the image size with size="):
        image_size(net)
    net.input_size = (4, 12, 12)  # the attribute wins over the first convolution
    assert image_size(net) == (4, 12, 12) and image_size(net, 5) == (4, 5, 5)
    assert image_size(nn.Linear(2, 2), 7) == (3, 7, 7)  # no convolution, no input_size: 3 channels


@pytest.mark.parametrize("bad", [0, -3, (0, 4), True, (4.5, 4), "224", (1, 2, 3, 4), (7,)])
def test_bad_sizes_are_refused_naming_the_option(bad):
    with pytest.raises(InsilicoError, match=r"--size="):
        image_size(gray_net(), bad, name="--size")


def test_square_tools_refuse_unequal_sides():
    assert image_size(gray_net(), (5, 5), square=True) == (1, 5, 5)
    with pytest.raises(InsilicoError, match=r"square images; give one side \(size=6\)"):
        image_size(gray_net(), (5, 6), square=True)


def test_every_tool_reads_an_int_size_the_same_way():
    net = gray_net()
    maximized = insilico.maximize(net, "0[1]", size=8, steps=1, progress=False)
    assert tuple(maximized.images.shape) == (1, 1, 8, 8)
    assert receptive_field(net, "0[0,4,4]", size=8).settings["input_size"] == [1, 8, 8]
    tuned = orientation_tuning(net, "1[0,4,4]", size=8, orientations=[0, 45, 90, 135], sfs=[2], phases=[0, 90],
                               raw=True, progress=False)
    assert tuned.settings["size"] == 8
    other = gray_net()
    other[0].weight.data.mul_(-1)
    contro = insilico.controversial([net, other], [(0, 1)], size=8, steps=1, progress=False)
    assert tuple(contro.images.shape) == (1, 1, 8, 8)


def test_no_registered_tool_takes_a_former_size_name():
    former = set(VOCABULARY["size"])
    for name, tool in tools().items():
        assert not former & set(inspect.signature(tool.load()).parameters), name


def test_a_former_name_is_refused_with_the_new_one():
    with pytest.raises(InsilicoError, match=r"controversial\(\): shape= is now size="):
        insilico.controversial([gray_net(), gray_net()], [(0, 1)], shape=(1, 8, 8), steps=1, progress=False)
    options = insilico.SynthesisOptions(transforms="default")
    with pytest.raises(InsilicoError, match=r"SynthesisOptions.make_transforms\(\): shape= is now size="):
        options.make_transforms(gray_net(), shape=(1, 8, 8))
    assert options.make_transforms(gray_net(), size=8).jitter == options.make_transforms(gray_net(), (1, 8, 8)).jitter


def test_the_engine_reads_size_by_the_same_rule():
    from insilico.objectives import Channel
    from insilico.synthesis import Synthesis

    net = gray_net()
    assert Synthesis(net, Channel("0", 1), n=2, size=8, progress=False).shape == (1, 8, 8)
    with pytest.raises(InsilicoError, match=r"Sequential has no input_size attribute: say the image size with size="):
        Synthesis(net, Channel("0", 1), n=2, progress=False)
    net.input_size = (1, 6, 6)
    assert Synthesis(net, Channel("0", 1), n=2, progress=False).shape == (1, 6, 6)
    with pytest.raises(InsilicoError, match=r"Synthesis\(\): shape= is now size="):
        Synthesis(net, Channel("0", 1), n=2, shape=(1, 6, 6))


#: Public signatures that keep another spelling on purpose: the predictor carries ``input_size`` as every model
#: does (the attribute ``size=None`` reads), and the null images have no model to take channels from (C, H, W).
OTHER_SPELLINGS = {("insilico.encoding", "NeuralPredictor", "input_size"),
                   ("insilico.design.metamers", "natural_null_images", "shape")}


def test_no_public_signature_spells_the_image_size_another_way():
    import json
    from pathlib import Path

    pinned = json.loads((Path(__file__).resolve().parents[1] / "contract" / "api.json").read_text())
    former = set(VOCABULARY["size"])
    found = {(namespace, name, p.split(":")[0].split("=")[0].strip(" *"))
             for namespace, names in pinned.items() for name, signature in names.items() for p in signature}
    assert {f for f in found if f[2] in former} == OTHER_SPELLINGS
