"""ResNet-12 and torchvision backbones: shapes, structure, bad options, offline weights (no download is
ever attempted: torch.hub's downloader is replaced), their config options, and the feature-map switch
that Relation Networks use (Conv4's equals conv4_maps)."""

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import CONF_DIR, compose_config
from torch import nn

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.backbones.koch import KochNet
from fewshot_cli.backbones.resnet12 import ResidualBlock, ResNet12
from fewshot_cli.backbones.torchvision_model import TorchvisionBackbone
from fewshot_cli.config.targets import check_role
from fewshot_cli.errors import CheckpointError, ConfigError

RESNET18_FILE = "resnet18-f37072fd.pth"  # basename of ResNet18_Weights.IMAGENET1K_V1.url


# --- ResNet-12 -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("side", "maps"), [(84, 5), (32, 2), (28, 1)])
def test_resnet12_shapes_at_full_width(side: int, maps: int) -> None:
    # On the meta device: full MetaOptNet widths, shapes only, no arithmetic.
    with torch.device("meta"):
        net = ResNet12(in_channels=3)
        images = torch.empty(2, 3, side, side)
        assert net(images).shape == (2, 640)
        net.use_feature_maps()
        assert net(images).shape == (2, 640, maps, maps)
        assert ResNet12(3, pool="none")(images).shape == (2, 640, maps, maps)


def test_resnet12_structure_follows_metaoptnet() -> None:
    net = ResNet12(in_channels=1, channels=[4, 5, 6, 7])
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    three = [c for c in convs if c.kernel_size == (3, 3)]
    one = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(three) == 12 and len(one) == 4  # ResNet-12: 12 conv layers + 4 shortcuts
    assert [c.out_channels for c in three] == [4] * 3 + [5] * 3 + [6] * 3 + [7] * 3
    assert [c.in_channels for c in one] == [1, 4, 5, 6]
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.1}
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 4
    assert ResNet12().out_channels == 640


def test_residual_block_adds_the_shortcut_before_the_last_activation() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(2, 3).eval()  # BN in eval at its initial stats: identity affine map
    nn.init.zeros_(block.conv3.weight)  # the main path then contributes bn3(0) = 0
    x = torch.randn(1, 2, 8, 8)
    expected = nn.functional.max_pool2d(nn.functional.leaky_relu(block.shortcut(x), 0.1), 2)
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize(("options", "message"), [
    ({"channels": [8, 8, 8]}, r"backbone\.channels=\[8, 8, 8\] must be four positive widths"),
    ({"channels": [8, 0, 8, 8]}, "must be four positive widths"),
    ({"pool": "max"}, r"backbone\.pool='max'; use one of avg, none"),
])
def test_resnet12_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ResNet12(**options)


# --- torchvision models ----------------------------------------------------------------------------

@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """TORCH_HOME in a temp dir and a torch.hub downloader that fails as it does offline; returns the
    URLs it was asked for."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    asked: list[str] = []

    def no_network(url: str, *args, **kwargs) -> None:
        asked.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return asked


def test_torchvision_random_init_builds_and_runs_on_grayscale() -> None:
    torch.manual_seed(0)
    gray = TorchvisionBackbone("resnet18", weights=None, in_channels=1).eval()
    assert isinstance(gray.model.fc, nn.Identity) and gray.out_features == 512
    images = torch.rand(2, 1, 32, 32)
    features = gray(images)
    assert features.shape == (2, 512)
    # Grayscale is the image repeated to RGB through the unchanged first convolution.
    rgb = TorchvisionBackbone("resnet18", weights=None, in_channels=3).eval()
    rgb.load_state_dict(gray.state_dict())
    torch.testing.assert_close(features, rgb(images.repeat(1, 3, 1, 1)))
    assert gray.model.conv1.in_channels == 3


def test_torchvision_drops_the_last_linear_of_a_classifier_sequence() -> None:
    net = TorchvisionBackbone("mobilenet_v3_small", weights=None, in_channels=3).eval()
    assert isinstance(net.model.classifier[-1], nn.Identity)
    assert isinstance(net.model.classifier[0], nn.Linear)  # the hidden layer stays
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, net.out_features) == (2, 1024)


def test_named_weights_offline_give_one_sentence_naming_the_file(offline_hub: list[str],
                                                                 tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        TorchvisionBackbone("resnet18", weights="IMAGENET1K_V1", in_channels=1)
    message = str(error.value)
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert f"needs torchvision's file {RESNET18_FILE}, which could not be downloaded" in message
    assert f"put it at {folder / RESNET18_FILE}" in message
    assert "backbone.weights=null" in message and "\n" not in message
    assert offline_hub == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "DEFAULT"])
def test_a_weight_file_in_torch_home_is_loaded_without_download(offline_hub: list[str], tmp_path: Path,
                                                                weights: str) -> None:
    # torchvision checks the hash only when it downloads; a file already in place is loaded as is.
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference.state_dict(), folder / RESNET18_FILE)
    torch.manual_seed(2)  # a random init would differ from the file
    net = TorchvisionBackbone("resnet18", weights=weights, in_channels=3)
    assert offline_hub == []
    torch.testing.assert_close(net.model.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(net.model.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert isinstance(net.model.fc, nn.Identity)


def test_an_unreadable_weight_file_is_named(offline_hub: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / RESNET18_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=rf"weight file .*{RESNET18_FILE} could not be loaded into "
                                          rf"resnet18 .*; delete it"):
        TorchvisionBackbone("resnet18", weights="IMAGENET1K_V1")


@pytest.mark.parametrize(("options", "message"), [
    ({"name": "resnet81"}, r"backbone\.name='resnet81' is not a torchvision classification model; "
                           r"did you mean resnet18"),
    ({"name": "fasterrcnn_resnet50_fpn"}, "is not a torchvision classification model"),
    ({"weights": "IMAGENET22K"}, r"backbone\.weights='IMAGENET22K' is not a weight of resnet18; use "
                                 r"one of IMAGENET1K_V1, DEFAULT or null"),
    ({"in_channels": 2}, "takes 1- or 3-channel images, not in_channels=2"),
    ({"name": "squeezenet1_1"}, "squeezenet1_1 has no final linear classifier"),
])
def test_torchvision_bad_options(options: dict, message: str, offline_hub: list[str]) -> None:
    with pytest.raises(ConfigError, match=message):
        TorchvisionBackbone(**{"name": "resnet18", **options})
    assert offline_hub == []  # refused before any download


def test_torchvision_feature_maps_keep_parameter_names() -> None:
    net = TorchvisionBackbone("resnet18", weights=None, in_channels=1)
    before = dict(net.state_dict())
    net.use_feature_maps()
    after = net.state_dict()
    assert set(after) == set(before)  # the removed fc was an Identity: nothing lost, nothing renamed
    torch.testing.assert_close(after["model.layer4.1.conv2.weight"], before["model.layer4.1.conv2.weight"])
    assert net.eval()(torch.rand(2, 1, 128, 128)).shape == (2, 512, 4, 4)


def test_torchvision_models_without_maps_are_refused_for_maps() -> None:
    with pytest.raises(ConfigError, match=r"backbone\.name=mobilenet_v2 gives no feature maps here"):
        TorchvisionBackbone("mobilenet_v2", weights=None).use_feature_maps()


def test_checkpoints_may_build_our_wrapper_but_not_torchvision_functions() -> None:
    check_role({"_target_": "fewshot_cli.backbones.torchvision_model.TorchvisionBackbone",
                "name": "resnet18"}, "backbone", "backbone")
    check_role({"_target_": "fewshot_cli.backbones.resnet12.ResNet12"}, "backbone", "backbone")
    with pytest.raises(CheckpointError, match="not a network module of fewshot-cli"):
        check_role({"_target_": "torchvision.models.resnet18"}, "backbone", "backbone")
    with pytest.raises(CheckpointError, match="not a network module of fewshot-cli"):
        check_role({"_target_": "fewshot_cli.backbones.torchvision_model.classification_models"},
                   "backbone", "backbone")


# --- the feature-map switch of Conv4 and Koch ------------------------------------------------------

def test_conv4_feature_maps_are_the_conv4_maps_network() -> None:
    torch.manual_seed(0)
    switched = Conv4(in_channels=1)
    switched.use_feature_maps()
    torch.manual_seed(0)
    maps = Conv4(in_channels=1, pooled_blocks=2, flatten=False)
    assert list(switched.state_dict()) == list(maps.state_dict())
    for key, value in maps.state_dict().items():
        torch.testing.assert_close(switched.state_dict()[key], value)
    images = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(switched(images), maps(images))
    assert switched(images).shape == (4, 64, 7, 7)


def test_conv4_map_pooled_blocks_is_an_option() -> None:
    net = Conv4(in_channels=1, map_pooled_blocks=3)
    net.use_feature_maps()
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 64, 3, 3)
    fewer = Conv4(in_channels=1, pooled_blocks=1)  # never pools more than it was built to
    fewer.use_feature_maps()
    assert fewer(torch.rand(2, 1, 28, 28)).shape == (2, 64, 14, 14)
    with pytest.raises(ConfigError, match=r"backbone\.map_pooled_blocks=5 must be 0 to 4"):
        Conv4(map_pooled_blocks=5)


def test_koch_feature_maps_drop_the_sigmoid_layer() -> None:
    with torch.device("meta"):
        net = KochNet(in_channels=1, image_size=105)
        net.use_feature_maps()
        assert net(torch.empty(2, 1, 105, 105)).shape == (2, 256, 6, 6)
    assert not any(isinstance(m, nn.Linear) for m in net.modules())


# --- configs ---------------------------------------------------------------------------------------

def test_resnet12_config_defaults_to_metaoptnet() -> None:
    cfg = compose_config("train", ["backbone=resnet12"], None)
    assert cfg.backbone._target_ == "fewshot_cli.backbones.resnet12.ResNet12"
    assert list(cfg.backbone.channels) == [64, 160, 320, 640]
    assert cfg.backbone.pool == "avg"
    assert cfg.backbone.in_channels == 1  # omniglot, through ${dataset.channels}
    assert compose_config("train", ["backbone=resnet12", "dataset=cifar_fs"], None).backbone.in_channels == 3
    tadam = compose_config("train", ["backbone=resnet12", "backbone.channels=[64,128,256,512]",
                                     "backbone.pool=none"], None)
    assert list(tadam.backbone.channels) == [64, 128, 256, 512] and tadam.backbone.pool == "none"


def test_torchvision_config_names_model_and_weights() -> None:
    cfg = compose_config("train", ["backbone=torchvision"], None)
    assert cfg.backbone._target_ == "fewshot_cli.backbones.torchvision_model.TorchvisionBackbone"
    assert (cfg.backbone.name, cfg.backbone.weights, cfg.backbone.in_channels) == ("resnet18", None, 1)
    chosen = compose_config("train", ["backbone=torchvision", "backbone.name=resnet50",
                                      "backbone.weights=IMAGENET1K_V2", "dataset=cifar_fs"], None)
    assert (chosen.backbone.name, chosen.backbone.weights, chosen.backbone.in_channels) == (
        "resnet50", "IMAGENET1K_V2", 3)


@pytest.mark.parametrize("name", ["resnet12.yaml", "torchvision.yaml"])
def test_every_key_of_the_new_backbone_configs_is_commented(name: str) -> None:
    path = CONF_DIR / "backbone" / name
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and not line.startswith("_target_"):
            assert "#" in line, line


@pytest.mark.parametrize(("backbone", "target"), [
    ([], "fewshot_cli.backbones.conv4.Conv4"),
    (["backbone=resnet12"], "fewshot_cli.backbones.resnet12.ResNet12"),
    (["backbone=torchvision"], "fewshot_cli.backbones.torchvision_model.TorchvisionBackbone"),
])
def test_relationnet_takes_the_top_level_backbone(backbone: list[str], target: str) -> None:
    cfg = compose_config("train", ["method=relationnet", *backbone], None)
    assert cfg.method.backbone._target_ == target
    assert cfg.method.backbone == cfg.backbone


@pytest.mark.slow
def test_a_checkpoint_from_pretrained_weights_evaluates_without_the_weight_file(
        offline_hub: list[str], tmp_path: Path, tiny_train_overrides: list[str]) -> None:
    """A newcomer's input: a model trained from IMAGENET1K_V1 could not be evaluated or used for
    predict where the weight file is missing, although best.pt holds every weight."""
    from fewshot_cli.tasks.evaluate import evaluate
    from fewshot_cli.tasks.train import train

    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), folder / RESNET18_FILE)
    backbone = ["backbone=torchvision", "backbone.name=resnet18", "backbone.weights=IMAGENET1K_V1"]
    trained = train(compose_config("train", [*tiny_train_overrides, *backbone, "trainer.max_episodes=2",
                                             "trainer.val_every=2"], tmp_path / "run"))
    (folder / RESNET18_FILE).unlink()  # another machine
    evaluation = evaluate(compose_config("eval", [o for o in tiny_train_overrides if o.startswith("paths.")]
                                         + [f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'best.pt'}",
                                            "eval.n_episodes=10", "device=cpu"], tmp_path / "eval"))
    assert evaluation["test/acc"] == pytest.approx(trained["test/acc"])  # same model, same episodes
    assert offline_hub == []  # nothing was fetched
