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


# Lake et al. 2015 split Omniglot into 30 background alphabets (training) and 20 evaluation alphabets.
# Their one-shot classification benchmark (the 20 within-alphabet 20-way runs of
# brendenlake/omniglot, one-shot-classification/all_runs.zip) draws from 10 of the 20 evaluation
# alphabets, two runs each; the alphabet of each run was established by jvlmdr/omniglot-eval
# (lake-evaluation/run_alphabets.txt). Koch et al. 2015 (sec. 4.1) kept those 10 as the evaluation
# (test) set and used the other alphabets to train and validate. So the Lake split here is: train on
# the 30 background alphabets, validate on the 10 evaluation alphabets outside the one-shot runs,
# test on the 10 alphabets of the runs; best.pt and the Siamese verification threshold are never
# chosen on test classes.
LAKE_TEST_ALPHABETS = frozenset(
    {
        "Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
        "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan",
    }
)
LAKE_VAL_ALPHABETS = frozenset(
    {
        "Angelic", "Atemayar_Qelisayer", "Aurek-Besh", "Avesta", "Keble", "Mongolian", "Oriya",
        "Sylheti", "Syriac_(Serto)", "ULOG",
    }
)


def lake_split_of(part: str, alphabet: str) -> str:
    """'train', 'val' or 'test' for an alphabet of `part` ('images_background' or 'images_evaluation').

    Background alphabets train; evaluation alphabets of Lake's one-shot runs test; every other
    evaluation alphabet (the 10 named in LAKE_VAL_ALPHABETS, or any alphabet of a non-standard
    tree) validates.
    """
    if part == "images_background":
        return "train"
    return "test" if alphabet in LAKE_TEST_ALPHABETS else "val"
