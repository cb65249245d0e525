"""Published accuracies (percent) that `fewshot report` compares runs with.

Keys: (method class name, dataset label as `collect.dataset_label` writes it, n_way, n_shot).
Sources: Snell et al. 2017 (ProtoNet), Vinyals et al. 2016 (Matching Networks), Finn et al. 2017
(MAML), Sung et al. 2018 (Relation Network) on Omniglot (Vinyals split); CIFAR-FS numbers as run by
Bertinetto et al. 2019 (R2D2 paper); Koch et al. 2015 (Siamese, 20-way within-alphabet Omniglot,
10-way MNIST).
"""

PAPER_ACCURACY: dict[tuple[str, str, int, int], float] = {
    ("PrototypicalNetworks", "omniglot", 5, 1): 98.8,
    ("PrototypicalNetworks", "omniglot", 5, 5): 99.7,
    ("PrototypicalNetworks", "omniglot", 20, 1): 96.0,
    ("PrototypicalNetworks", "omniglot", 20, 5): 98.9,
    ("MatchingNetworks", "omniglot", 5, 1): 98.1,
    ("MatchingNetworks", "omniglot", 5, 5): 98.9,
    ("MatchingNetworks", "omniglot", 20, 1): 93.8,
    ("MatchingNetworks", "omniglot", 20, 5): 98.5,
    ("MAML", "omniglot", 5, 1): 98.7,
    ("MAML", "omniglot", 5, 5): 99.9,
    ("MAML", "omniglot", 20, 1): 95.8,
    ("MAML", "omniglot", 20, 5): 98.9,
    ("RelationNetworks", "omniglot", 5, 1): 99.6,
    ("RelationNetworks", "omniglot", 5, 5): 99.8,
    ("RelationNetworks", "omniglot", 20, 1): 97.6,
    ("RelationNetworks", "omniglot", 20, 5): 99.1,
    ("PrototypicalNetworks", "cifar_fs", 5, 1): 55.5,
    ("PrototypicalNetworks", "cifar_fs", 5, 5): 72.0,
    ("MAML", "cifar_fs", 5, 1): 58.9,
    ("MAML", "cifar_fs", 5, 5): 71.5,
    ("RelationNetworks", "cifar_fs", 5, 1): 55.0,
    ("RelationNetworks", "cifar_fs", 5, 5): 69.3,
    # Koch et al. 2015, Table 2 and §4.4: trained on the background alphabets (Lake split, 105x105).
    ("SiameseNetwork", "omniglot (within alphabet)", 20, 1): 92.0,
    ("SiameseNetwork", "omniglot→mnist", 10, 1): 70.3,
}


def paper_accuracy(method: str, dataset: str, n_way: int, n_shot: int) -> float | None:
    """The published number for this setting, or None when the paper has none."""
    return PAPER_ACCURACY.get((method, dataset, n_way, n_shot))
