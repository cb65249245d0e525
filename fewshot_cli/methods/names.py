"""Methods named as users type them: the `conf/method/<name>.yaml` group option, plus the variant.

`fewshot train method=protonet` should be reported as `protonet`, not as the class it builds
(`PrototypicalNetworks`). Where an option turns the method into a different algorithm with different
published numbers (first-order MAML, Matching Networks with full-context embeddings, a Siamese
network trained with BCE instead of the contrastive loss), the variant follows in parentheses:
`maml (first-order)`, `matchingnet (fce, l2)`, `siamese (bce)`. Options that only tune a method
(learning rates, temperatures, step counts) do not change its name.
"""

from collections.abc import Callable, Mapping
from typing import Any

from fewshot_cli.config.overrides import option_name

# Class name (the last component of `_target_`) -> config-group option in conf/method/.
CONFIG_NAMES: dict[str, str] = {
    "PrototypicalNetworks": "protonet",
    "MatchingNetworks": "matchingnet",
    "RelationNetworks": "relationnet",
    "MAML": "maml",
    "SiameseNetwork": "siamese",
    "CLIPZeroShot": "clip",
    "CLIPProtoNet": "clip_protonet",
}


def _protonet_variants(node: Mapping[str, Any]) -> list[str]:
    # Snell et al.'s method is squared Euclidean; cosine prototypes are a different classifier.
    return ["cosine"] if node.get("distance") == "cosine" else []


def _matchingnet_variants(node: Mapping[str, Any]) -> list[str]:
    # Vinyals et al.'s defaults (and the class's): cosine attention, no full-context embeddings.
    variants = ["fce"] if node.get("fce") is True else []
    return variants + (["l2"] if node.get("distance") == "l2" else [])


def _maml_variants(node: Mapping[str, Any]) -> list[str]:
    # FOMAML drops the second-order terms: Finn et al. report it separately from MAML.
    return ["first-order"] if node.get("first_order") is True else []


def _siamese_variants(node: Mapping[str, Any]) -> list[str]:
    # The two losses are two papers (Hadsell et al. 2006 / Koch et al. 2015), so always named;
    # a node without the key is built with SiameseNetwork's default, contrastive.
    return [str(node.get("loss") or "contrastive")]


VARIANTS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "protonet": _protonet_variants,
    "matchingnet": _matchingnet_variants,
    "maml": _maml_variants,
    "siamese": _siamese_variants,
}


def method_name_from_class(name: str) -> str:
    """The config-group name of a method class name, e.g. "PrototypicalNetworks" -> "protonet".

    For metrics.json files written before methods were stored by config name (they hold only the
    class name, so no variant is known). A name that is not a known class, including one that is
    already a config name such as "maml (first-order)", is returned unchanged.
    """
    return CONFIG_NAMES.get(name, name)


def method_name(method_node: Mapping[str, Any] | None) -> str:
    """The method as a user types it, with its variant: "protonet", "maml (first-order)", ...

    Args:
        method_node: the run's `method` config node (a dict or DictConfig, as in
            .hydra/config.yaml or a checkpoint's config) with its `_target_`; None or a node
            without `_target_` (e.g. `method: null` of a checkpoint eval) gives "?".

    Returns:
        The conf/method option for a known `_target_` class plus " (variant, ...)" where an option
        changes the algorithm; for another class, the conf/method option that builds it (a method
        added by a user), else the class name itself.
    """
    if not method_node or not method_node.get("_target_"):
        return "?"
    class_name = str(method_node["_target_"]).rsplit(".", 1)[-1]
    name = method_name_from_class(class_name)
    if name == class_name:  # not one of ours: a method added under conf/method/ is named by its file
        name = option_name("method", str(method_node["_target_"])) or class_name
    variants = VARIANTS.get(name, lambda node: [])(method_node)
    return f"{name} ({', '.join(variants)})" if variants else name
