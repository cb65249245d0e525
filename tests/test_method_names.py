"""methods.names: methods named by their conf/method option, with the variant that changes them."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fewshot_cli.config.locate import source_config_dir
from fewshot_cli.methods.names import method_name, method_name_from_class

METHOD_CONFIGS = sorted((source_config_dir() / "method").glob("*.yaml"))


def target(class_path: str, **options: object) -> dict:
    return {"_target_": f"fewshot_cli.methods.{class_path}", **options}


@pytest.mark.parametrize("config", METHOD_CONFIGS, ids=lambda path: path.stem)
def test_every_method_config_is_named_by_its_file(config: Path) -> None:
    node = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    # The shipped defaults are the plain methods, except Siamese, whose loss is always named.
    expected = "siamese (contrastive)" if config.stem == "siamese" else config.stem
    assert method_name(node) == expected


@pytest.mark.parametrize(("node", "expected"), [
    (target("maml.MAML", first_order=True), "maml (first-order)"),
    (target("maml.MAML", first_order=False, head="learned"), "maml"),
    (target("siamese.SiameseNetwork", loss="bce"), "siamese (bce)"),
    (target("siamese.SiameseNetwork"), "siamese (contrastive)"),  # the class default
    (target("matchingnet.MatchingNetworks", fce=True, distance="l2"), "matchingnet (fce, l2)"),
    (target("matchingnet.MatchingNetworks", fce=False, distance="l2"), "matchingnet (l2)"),
    (target("matchingnet.MatchingNetworks", fce=True, distance="cosine"), "matchingnet (fce)"),
    (target("protonet.PrototypicalNetworks", distance="cosine"), "protonet (cosine)"),
    (target("protonet.PrototypicalNetworks", distance="squared_euclidean", temperature=3.0),
     "protonet"),
    ({"_target_": "my_package.HyperNet"}, "HyperNet"),
    (None, "?"),
    ({"first_order": True}, "?"),  # an eval's override of a checkpoint's node: no _target_
])
def test_variants_that_change_the_method_are_named(node: dict | None, expected: str) -> None:
    assert method_name(node) == expected


def test_a_dictconfig_node_is_named_without_resolving_its_other_keys() -> None:
    # What train.py passes: cfg.method, whose backbone interpolation has nothing to resolve to here.
    cfg = OmegaConf.create({"method": target("maml.MAML", first_order=True, backbone="${backbone}")})
    assert method_name(cfg.method) == "maml (first-order)"


@pytest.mark.parametrize(("name", "expected"), [
    ("PrototypicalNetworks", "protonet"), ("MatchingNetworks", "matchingnet"),
    ("RelationNetworks", "relationnet"), ("MAML", "maml"), ("SiameseNetwork", "siamese"),
    ("CLIPZeroShot", "clip"), ("CLIPProtoNet", "clip_protonet"),
    ("maml (first-order)", "maml (first-order)"), ("HyperNet", "HyperNet"),
])
def test_class_names_of_old_metrics_map_to_config_names(name: str, expected: str) -> None:
    assert method_name_from_class(name) == expected


def test_a_method_added_under_conf_method_is_named_by_its_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A newcomer's conf/method/cosproto.yaml building my_methods.CosineProtos: reports said
    # "CosineProtos", not the `method=cosproto` they type.
    from fewshot_cli.config import overrides

    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "cosproto.yaml").write_text("_target_: my_methods.CosineProtos\n")
    monkeypatch.setattr(overrides, "_config_root", lambda: tmp_path)
    assert method_name({"_target_": "my_methods.CosineProtos"}) == "cosproto"
    assert method_name({"_target_": "elsewhere.Unlisted"}) == "Unlisted"  # no option builds it
