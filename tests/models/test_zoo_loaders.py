"""Zoo models in one line (insilico.models.load("<zoo>:<name>")): pixel space, input_size, class names,
preprocessing, weight files, close matches, the CLI's routing. Random weights and small local files only:
never the network (a zoo's download is replaced by a local state_dict where "DEFAULT" is under test)."""
import json
import sys

import pytest
import torch

import insilico
import insilico.models as models
from insilico.errors import InsilicoError
from insilico.experiments.command import load_model, names_code
from insilico.models.zoo import Preprocessing, ZooModel, split

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _same(a, b):
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def _normalized(model, x):
    mean = torch.tensor(model.preprocessing.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.preprocessing.std).view(1, -1, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------
def test_torchvision_file_weights_round_trip_in_pixel_space(tmp_path):
    pytest.importorskip("torchvision")
    torch.manual_seed(0)
    first = models.load("torchvision:resnet18", weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(first.net.state_dict(), path)
    again = models.load("torchvision:resnet18", weights=path)
    assert isinstance(again, ZooModel) and not again.training and all(not m.training for m in again.modules())
    assert again.input_size == (3, 224, 224) and again.name == "torchvision:resnet18"
    p = again.preprocessing
    assert (p.resize, p.crop, p.mean, p.std, p.interpolation) == (256, (224, 224), IMAGENET_MEAN, IMAGENET_STD,
                                                                  "bilinear")
    assert again.class_names is None and not hasattr(again, "classes")  # a file does not say its classes
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _same(again(x), first(x))
        _same(again(x), again.net(_normalized(again, x)))  # the zoo's normalisation is inside, nothing else
    assert "net.layer4.1.conv2" in dict(again.named_modules())


def test_torchvision_named_weights_bring_categories_and_their_transforms(monkeypatch):
    tm = pytest.importorskip("torchvision.models")
    state = tm.resnet18().state_dict()
    monkeypatch.setattr(tm.ResNet18_Weights, "get_state_dict", lambda self, *a, **k: state)  # no download
    net = models.load("torchvision:resnet18")  # weights="DEFAULT"
    assert net.class_names == tm.ResNet18_Weights.IMAGENET1K_V1.meta["categories"] and len(net.class_names) == 1000
    assert net.classes == net.class_names  # what the tools read
    assert "IMAGENET1K_V1" in net.preprocessing.source
    with torch.no_grad():
        _same(net.net.fc.weight, state["fc.weight"])
    assert models.load("torchvision:resnet18", weights="ResNet18_Weights.IMAGENET1K_V1").class_names[0] == "tench"


def test_torchvision_bad_names_get_close_matches():
    pytest.importorskip("torchvision")
    with pytest.raises(InsilicoError, match=r"no model 'resnet81'.*'resnet18'.*list_models"):
        models.load("torchvision:resnet81", weights=None)
    with pytest.raises(InsilicoError, match=r"no weights 'IMAGENET1K_V9'.*IMAGENET1K_V1"):
        models.load("torchvision:resnet18", weights="IMAGENET1K_V9")


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    pytest.importorskip("torchvision")
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(InsilicoError, match=r"other\.pt.*do not fit torchvision's resnet18"):
        models.load("torchvision:resnet18", weights=path)
    with pytest.raises(InsilicoError, match="does not exist"):
        models.load("torchvision:resnet18", weights=str(tmp_path / "missing.safetensors"))


def test_a_misspelt_module_hints_the_net_prefix():
    pytest.importorskip("torchvision")
    net = models.load("torchvision:resnet18", weights=None)
    with pytest.raises(insilico.UnitError, match=r"'net\.layer4'"):
        insilico.Unit.parse("layer4").resolve(net)


# ---------------------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------------------
def test_timm_input_size_and_preprocessing_from_pretrained_cfg(tmp_path):
    timm = pytest.importorskip("timm")
    first = models.load("timm:test_resnet", weights=None)
    cfg = timm.data.resolve_data_config({}, model=first.net)
    assert first.input_size == tuple(cfg["input_size"])
    p = first.preprocessing
    assert p.crop == tuple(cfg["input_size"][1:]) and p.resize == int(cfg["input_size"][1] / cfg["crop_pct"])
    assert (p.mean, p.std, p.interpolation) == (tuple(cfg["mean"]), tuple(cfg["std"]), cfg["interpolation"])
    path = tmp_path / "w.safetensors"
    pytest.importorskip("safetensors.torch").save_file(first.net.state_dict(), str(path))
    again = models.load("timm:test_resnet", weights=path)
    x = torch.rand(2, *first.input_size)
    with torch.no_grad():
        _same(again(x), first(x))
        _same(again(x), again.net(_normalized(again, x)))


def test_timm_pretrained_brings_imagenet_names(monkeypatch):
    timm = pytest.importorskip("timm")
    import timm.models._builder as builder

    monkeypatch.setattr(builder, "load_pretrained", lambda *a, **k: None)  # no download
    net = models.load("timm:test_resnet.r160_in1k")
    assert len(net.class_names) == 1000 and net.class_names[1] == "goldfish"
    assert models.load("timm:test_resnet", weights="r160_in1k").class_names == net.class_names
    with pytest.raises(InsilicoError, match=r"no weights 'nope'.*r160_in1k"):
        models.load("timm:test_resnet", weights="nope")
    with pytest.raises(InsilicoError, match=r"no model 'resnet81'.*'resnet18'"):
        models.load("timm:resnet81", weights=None)


def test_maximize_reads_input_size_from_a_zoo_model():
    pytest.importorskip("timm")
    net = models.load("timm:test_resnet", weights=None)
    res = insilico.maximize(net, "net.layer1", steps=2, progress=False)  # no size=
    assert tuple(res.images.shape[-3:]) == net.input_size


# ---------------------------------------------------------------------------------------
# open_clip
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    oc = pytest.importorskip("open_clip")
    folder = tmp_path_factory.mktemp("open_clip")
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
                                           "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}
    (folder / "insilico-tiny-clip.json").write_text(json.dumps(cfg))
    oc.add_model_config(str(folder))
    return oc


def test_open_clip_image_tower_with_whole_model_or_tower_weights(tiny_clip, tmp_path):
    torch.manual_seed(0)
    first = models.load("open_clip:insilico-tiny-clip", weights=None)
    assert first.input_size == (3, 32, 32) and first.class_names is None
    assert first.preprocessing.interpolation == "bicubic" and first.preprocessing.crop == (32, 32)
    assert hasattr(first.net, "transformer") and not hasattr(first.net, "token_embedding")  # image tower only
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = first(x)
    assert want.shape == (2, 16)
    clip = tiny_clip.create_model("insilico-tiny-clip")
    clip.visual.load_state_dict(first.net.state_dict())
    whole, tower = tmp_path / "clip.pt", tmp_path / "visual.pt"
    torch.save(clip.state_dict(), whole)
    torch.save(first.net.state_dict(), tower)
    for path in (whole, tower):
        with torch.no_grad():
            _same(models.load("open_clip:insilico-tiny-clip", weights=path)(x), want)


def test_open_clip_names_tags_and_architectures(tiny_clip):
    with pytest.raises(InsilicoError, match=r"no weights 'laion9'.*laion2b_s34b_b79k"):
        models.load("open_clip:ViT-B-32/laion9", weights=None)
    with pytest.raises(InsilicoError, match=r"say which weights.*open_clip:ViT-B-32/"):
        models.load("open_clip:ViT-B-32")
    with pytest.raises(InsilicoError, match=r"no model 'ViT-B-23'.*'ViT-B-32'"):
        models.load("open_clip:ViT-B-23", weights=None)


# ---------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------
def _tiny(transformers, **more):
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                patch_size=8, **more)


def test_hf_classifier_folder_gives_logits_and_labels(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(**_tiny(transformers), id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})
    torch.manual_seed(0)
    original = transformers.ViTForImageClassification(config).eval()
    original.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no image processor"):
        net = models.load(f"hf:{tmp_path}")
    assert net.class_names == ["cat", "dog"] and net.classes == ["cat", "dog"]
    assert net.input_size == (3, 32, 32) and net.preprocessing.source.startswith("assumed")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _same(net(x), original(pixel_values=_normalized(net, x)).logits)
    assert "net.vit.layers.1.attention" in dict(net.named_modules())
    path = tmp_path / "weights.safetensors"
    pytest.importorskip("safetensors.torch").save_file(original.state_dict(), str(path))
    with pytest.warns(UserWarning):
        from_file = models.load(f"hf:{tmp_path}", weights=path)
    assert from_file.class_names is None  # labels come with the zoo's weights only
    with torch.no_grad():
        _same(from_file(x), net(x))


def test_hf_backbone_reads_its_image_processor_and_returns_tokens(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.Dinov2Config(**_tiny(transformers)).save_pretrained(tmp_path)  # config only: no head
    transformers.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                                   do_center_crop=True).save_pretrained(tmp_path)
    net = models.load(f"hf:{tmp_path}", weights=None)
    p = net.preprocessing
    assert (p.resize, p.crop, p.interpolation) == (36, (32, 32), "bicubic") and net.input_size == (3, 32, 32)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
        _same(out, net.net(pixel_values=_normalized(net, x)).last_hidden_state)
    assert out.shape == (2, 1 + 16, 32) and net.class_names is None
    with pytest.raises(InsilicoError, match="named by the spec"):
        models.load(f"hf:{tmp_path}", weights="main")


def test_hf_convnext_processor_resizes_by_crop_pct_then_crops(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=64).save_pretrained(tmp_path)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875).save_pretrained(tmp_path)
    net = models.load(f"hf:{tmp_path}", weights=None)
    assert (net.preprocessing.resize, net.preprocessing.crop, net.input_size) == (73, (64, 64), (3, 64, 64))


def test_hf_missing_folder_or_text_model_says_what_to_give(tmp_path):
    transformers = pytest.importorskip("transformers")
    with pytest.raises(InsilicoError, match="local folder with config.json"):
        models.load(f"hf:{tmp_path / 'nothing'}", weights=None)
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(InsilicoError, match="bert model, which takes no images"):
        models.load(f"hf:{tmp_path}", weights=None)


# ---------------------------------------------------------------------------------------
# Packages, specs, the CLI, bundled models
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("zoo, package, extra", [("timm", "timm", "timm"), ("hf", "transformers", "hf"),
                                                 ("open_clip", "open_clip", "open_clip")])
def test_missing_zoo_package_names_the_extra(monkeypatch, zoo, package, extra):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as when it is not installed
    with pytest.raises(InsilicoError, match=rf'pip install "insilico-ephys\[{extra}\]"'):
        models.load(f"{zoo}:anything", weights=None)


def test_cli_routes_zoo_specs_to_the_zoo_loader(tmp_path):
    tm = pytest.importorskip("torchvision.models")
    assert split("torchvision:resnet18") == ("torchvision", "resnet18") and split("torchvision.models:resnet18") is None
    assert not names_code("torchvision:resnet18") and names_code("torchvision.models:resnet18")
    path = tmp_path / "w.pt"
    torch.save(tm.resnet18().state_dict(), path)
    zoo = load_model("torchvision:resnet18", str(path), "cpu")
    plain = load_model("torchvision.models:resnet18", str(path), "cpu")  # package:callable keeps working
    assert isinstance(zoo, ZooModel) and type(plain) is tm.ResNet
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        _same(zoo(x), plain(_normalized(zoo, x)))
    with pytest.raises(InsilicoError, match="for a zoo model write 'torchvision:resnet18'"):
        load_model("torchvison:resnet18", None, "cpu")


def test_bundled_models_take_random_or_file_weights(tmp_path):
    trained = models.load("minialex")
    path = tmp_path / "minialex.pt"
    torch.save(trained.state_dict(), path)
    x = torch.rand(2, *trained.input_size)
    with torch.no_grad():
        _same(models.load("minialex", weights=path)(x), trained(x))
        assert not torch.allclose(models.load("minialex", weights=None)(x), trained(x))
    with pytest.raises(InsilicoError, match="torchvision:NAME"):
        models.load("resnet50")


def test_preprocessing_resizes_the_shorter_side_then_crops_the_centre():
    p = Preprocessing(resize=8, crop=(6, 6), mean=(0.5,), std=(0.5,), interpolation="nearest", source="test")
    x = torch.arange(16 * 32, dtype=torch.float32).view(1, 1, 16, 32) / (16 * 32)
    out = p(x)
    assert out.shape == (1, 1, 6, 6) and p.size() == (6, 6)
    _same(out, x[..., ::2, ::2][..., 1:7, 5:11])  # 16x32 -> 8x16 (every other pixel), then the centre 6x6
    with pytest.raises(InsilicoError, match="smaller than the crop"):
        Preprocessing(None, (20, 20), (0.5,), (0.5,), "bilinear", "test")(x)


def test_the_command_line_runs_a_zoo_model_at_its_input_size(tmp_path):
    timm = pytest.importorskip("timm")
    from skimage.io import imread

    from insilico.cli import main

    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "w.pt")
    assert main(["maximize", "--model", "timm:test_resnet", "--weights", str(tmp_path / "w.pt"), "--units",
                 "net.layer1[0]", "--steps", "1", "--quiet", "--out", str(tmp_path / "run")]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["settings"]["model"] == "timm:test_resnet"
    assert imread(tmp_path / "run" / "net.layer1_0.png").shape == (160, 160, 3)  # the model's input_size, no --size


def test_classes_follow_class_names_and_are_absent_without_them():
    p = Preprocessing(None, (8, 8), (0.5,), (0.5,), "bilinear", "test")
    m = ZooModel(torch.nn.Conv2d(1, 2, 3), p, "example")
    assert getattr(m, "classes", "absent") == "absent"  # tools fall back to their own labels
    m.class_names = ["a", "b"]
    assert m.classes == ["a", "b"]
    m.classes = ("c", "d")  # what lesion_sweep's and the other tools' messages tell users to do
    assert m.class_names == ["c", "d"] and m.classes == ["c", "d"]


def test_a_download_that_fails_says_how_to_work_offline(monkeypatch):
    tm = pytest.importorskip("torchvision.models")
    import urllib.error

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tm.ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(InsilicoError, match=r"torchvision:resnet18: could not fetch its pretrained weights 'DEFAULT' "
                                            r"\(URLError: .*Name or service not known.*\)\. Without internet .*"
                                            r"weights=None, --weights random"):
        models.load("torchvision:resnet18")
    with pytest.raises(InsilicoError, match="could not fetch"):
        load_model("torchvision:resnet18", None, "cpu")  # the CLI's route


def test_the_command_line_takes_random_weights_for_zoo_bundled_and_spec_models(monkeypatch):
    tm = pytest.importorskip("torchvision.models")
    monkeypatch.setattr(tm.ResNet18_Weights, "get_state_dict", lambda *a, **k: pytest.fail("downloaded"))
    net = load_model("torchvision:resnet18", "random", "cpu")
    assert isinstance(net, ZooModel) and net.class_names is None and not net.training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        trained = models.load("minialex")
        assert not torch.allclose(load_model("minialex", "random", "cpu")(x), trained(x))
    assert type(load_model("torchvision.models:resnet18", "random", "cpu")) is tm.ResNet


def test_a_model_built_under_the_meta_device_stays_there_and_is_refused_with_the_fix():
    pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        zoo = models.load("torchvision:resnet18", weights=None)  # was: "Cannot copy out of meta tensor"
        bundled = models.load("minialex", weights=None)
    for net in (zoo, bundled):
        assert {p.device.type for p in net.parameters()} == {"meta"}
        with pytest.raises(InsilicoError, match="on the meta device: .*to_empty"):
            insilico.Probe(net).record_stimuli(torch.rand(1, *net.input_size), ["[0]"], progress=False)
    assert next(models.load("torchvision:resnet18", weights=None).parameters()).device.type == "cpu"
