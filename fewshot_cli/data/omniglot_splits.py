"""Class splits of Omniglot.

Vinyals et al. 2016 (and Snell et al. 2017, Finn et al. 2017): characters of these alphabets,
each character rotated by 0/90/180/270 degrees as four classes, give 4112 / 688 / 1692 classes.
The rule below reproduces jakesnell/prototypical-networks' split files (checked in the tests).
"""

VINYALS_VAL_ALPHABETS = frozenset(
    {"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"}
)
VINYALS_TEST_ALPHABETS = frozenset(
    {
        "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)",
        "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG",
    }
)
# Gurmukhi is cut inside the alphabet: characters 42-45 are test, 01-41 training.
VINYALS_GURMUKHI_FIRST_TEST_CHARACTER = 42
ROTATIONS = (0, 90, 180, 270)


def vinyals_split_of(alphabet: str, character: str) -> str:
    """'train', 'val' or 'test' for a character folder such as ('Gurmukhi', 'character42')."""
    if alphabet in VINYALS_VAL_ALPHABETS:
        return "val"
    if alphabet in VINYALS_TEST_ALPHABETS:
        return "test"
    if alphabet == "Gurmukhi" and int(character.removeprefix("character")) >= (
        VINYALS_GURMUKHI_FIRST_TEST_CHARACTER
    ):
        return "test"
    return "train"


def lake_splits_of(part: str) -> frozenset[str]:
    """Splits a character of `part` ('images_background' or 'images_evaluation') belongs to.

    Lake et al. 2015 has two parts: 30 background alphabets for training and 20 evaluation alphabets.
    With no separate validation part, val episodes come from the evaluation alphabets as well (drawn
    from another episode stream than test episodes), so best.pt is chosen on evaluation classes.
    """
    return frozenset({"train"}) if part == "images_background" else frozenset({"val", "test"})
