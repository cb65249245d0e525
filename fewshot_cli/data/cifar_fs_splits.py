"""Class splits of CIFAR-FS (Bertinetto, Henriques, Torr, Vedaldi, ICLR 2019).

CIFAR-FS divides the 100 fine classes of CIFAR-100 into 64 training, 16 validation and 20 test
classes, each with all 600 of its images (CIFAR's 500 training + 100 test images pooled). The lists
below are the published split files (`data/CIFAR_FS/splits/bertinetto/{train,val,test}.txt` of the
R2D2 code, also shipped by torchmeta and learn2learn), spelled as CIFAR-100's `meta` file spells the
fine label names (underscores, e.g. ``sweet_pepper``).
"""

CIFAR_FS_TEST_CLASSES = (
    "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain",
    "poppy", "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe", "whale",
    "woman", "worm",
)
CIFAR_FS_VAL_CLASSES = (
    "beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish", "lamp",
    "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor",
)
CIFAR_FS_TRAIN_CLASSES = (
    "apple", "aquarium_fish", "bear", "bee", "bottle", "bowl", "boy", "bridge", "bus", "can",
    "castle", "caterpillar", "chair", "clock", "cloud", "cockroach", "couch", "cup", "dinosaur",
    "dolphin", "elephant", "forest", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lawn_mower", "lion", "lizard", "lobster", "mountain", "mouse", "mushroom", "oak_tree",
    "orange", "orchid", "palm_tree", "pear", "pine_tree", "plate", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "seal", "shrew", "skunk", "skyscraper", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "tank", "tiger", "train", "trout", "tulip", "turtle",
    "willow_tree", "wolf",
)

CIFAR_FS_SPLITS: dict[str, tuple[str, ...]] = {
    "train": CIFAR_FS_TRAIN_CLASSES,
    "val": CIFAR_FS_VAL_CLASSES,
    "test": CIFAR_FS_TEST_CLASSES,
}
