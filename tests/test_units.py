import pytest
import torch
from torch import nn

from insilico import Unit, UnitError
from insilico.units import check_index


@pytest.mark.parametrize(
    "text",
    ["features.8", "features.8[12]", "features.8[12,6,6]", "features.8[12, 6, 6]", "blt.conv2@3[12]",
     "cell@-1", "lstm:0[3]", "enc:hidden@2[0,1:5]", "[281]", "x[...,2]", "x[[1,4,7]]", "x[::2,1:]"],
)
def test_string_form_round_trips(text):
    unit = Unit.parse(text)
    assert str(unit) == text
    assert Unit.parse(unit.key) == unit
    assert Unit.parse(unit.key).key == unit.key


def test_fields_and_equivalent_spellings():
    unit = Unit.parse("blt.conv2:1@3[12, :, 2:5]")
    assert unit.module == "blt.conv2" and unit.output == 1 and unit.step == 3
    assert unit.index == (12, slice(None), slice(2, 5))
    assert unit == "blt.conv2:1@3[12,:,2:5]"
    assert hash(unit) == hash(Unit("blt.conv2", 3, (12, slice(None), slice(2, 5)), 1))
    assert str(Unit("features.8", index=(12, 6, 6))) == "features.8[12,6,6]"
    assert len({Unit.parse("a[1, 2]"), Unit.parse("a[1,2]")}) == 1


@pytest.mark.parametrize("bad", ["features.8[12", "a@b", "a[1;2]", "a[x]", "a[1:2:3:4]", 42])
def test_unreadable_addresses_fail_clearly(bad):
    with pytest.raises(UnitError, match="unit address|index|string"):
        Unit.parse(bad)


def test_unknown_module_lists_close_matches():
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    with pytest.raises(UnitError) as info:
        Unit.parse("feature.0").resolve(model)
    assert "'features.0'" in str(info.value) and "names()" in str(info.value)
    assert Unit.parse("features.1").resolve(model) is model.features[1]
    assert Unit.coerce(model.features[0], model) == "features.0"
    with pytest.raises(UnitError, match="not part of this model"):
        Unit.coerce(nn.ReLU(), model)


def test_select_shapes_and_values():
    x = torch.arange(2 * 5 * 4 * 4).reshape(2, 5, 4, 4)
    assert Unit.parse("m[3]").select(x).shape == (2, 4, 4)
    assert torch.equal(Unit.parse("m[3,1,2]").select(x), x[:, 3, 1, 2])
    assert torch.equal(Unit.parse("m[[0,4],1]").select(x), x[:, [0, 4], 1])
    assert torch.equal(Unit.parse("m[...,-1]").select(x), x[..., -1])
    assert torch.equal(Unit.parse("m[1:3,::2]").select(x), x[:, 1:3, ::2])


@pytest.mark.parametrize("index,match", [((5,), "axis 0 of size 5"), ((0, 4), "axis 1 of size 4"),
                                         ((0, 0, 0, 0), "4 entries"), (((1, 9),), "index 9")])
def test_index_out_of_range_shows_shape(index, match):
    with pytest.raises(UnitError, match=match) as info:
        check_index(index, (5, 4, 4), "m")
    assert "(5, 4, 4)" in str(info.value)
