"""Shared fixtures: a tiny synthetic Omniglot tree, Hydra compose helpers, and the real data dir.

The synthetic tree is written as real PNG files in torchvision's layout, with alphabet names that hit
every Vinyals rule (a validation alphabet, a test alphabet, Gurmukhi cut at character42, an
evaluation-set alphabet that is training data), so training runs end to end without real data.

Synthetic data uses its own temporary cache dir so tests leave nothing in FEWSHOT_CACHE_DIR. Cache
entries are keyed on the files they were decoded from (root, relative paths, sizes, modification
times), so sharing it would not load the wrong images, only fill it with entries of temporary trees.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image, ImageDraw

from fewshot_cli.config import schema  # noqa: F401  (registers train_schema / eval_schema)
from fewshot_cli.config.locate import source_config_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = source_config_dir()

# (part, alphabet, character numbers, Vinyals split of those characters)
SYNTHETIC_CHARACTERS = (
    ("images_background", "Alpha_Train", range(1, 6), "train"),
    ("images_background", "Armenian", range(1, 4), "val"),
    ("images_evaluation", "Gurmukhi", range(40, 43), None),  # 40, 41 train; 42 test
    ("images_evaluation", "Kannada", range(1, 4), "test"),
    ("images_evaluation", "Zeta_Eval", range(1, 3), "train"),  # evaluation part, Vinyals train
)
IMAGES_PER_CHARACTER = 10
SYNTHETIC_IMAGE_SIDE = 105
JITTER = 12  # pixels each stroke end moves between drawings
NOISE_BLOBS = 4  # random dots per drawing, so the task is not trivial
# Rotated classes per split of the synthetic tree (characters x 4 rotations).
SYNTHETIC_VINYALS_CLASSES = {"train": (5 + 2 + 2) * 4, "val": 3 * 4, "test": (1 + 3) * 4}
# Lake split: background alphabets train; Gurmukhi and Kannada (alphabets of Lake's one-shot runs)
# test; any other evaluation alphabet (Zeta_Eval) validates.
SYNTHETIC_LAKE_CLASSES = {"train": (5 + 3) * 4, "val": 2 * 4, "test": (3 + 3) * 4}


def _character_strokes(rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Three random strokes: a character's identity (not rotation-symmetric in practice)."""
    return [tuple(int(v) for v in rng.integers(15, 90, size=4)) for _ in range(3)]


def write_synthetic_omniglot(data_dir: Path) -> Path:
    """Write the synthetic tree under data_dir/omniglot/omniglot-py and return data_dir.

    Each character is three thick strokes; each of its drawings jitters the strokes by a few pixels.
    Like the real files, images are 105x105 mode-"1" PNGs with black strokes on white.
    """
    root = data_dir / "omniglot" / "omniglot-py"
    for char_seed, (part, alphabet, numbers, _) in enumerate(SYNTHETIC_CHARACTERS):
        for number in numbers:
            rng = np.random.default_rng(1000 * char_seed + number)
            strokes = _character_strokes(rng)
            folder = root / part / alphabet / f"character{number:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for drawing in range(IMAGES_PER_CHARACTER):
                image = Image.new("L", (SYNTHETIC_IMAGE_SIDE, SYNTHETIC_IMAGE_SIDE), 255)
                draw = ImageDraw.Draw(image)
                for x0, y0, x1, y1 in strokes:
                    jitter = rng.integers(-JITTER, JITTER + 1, size=4)
                    draw.line((x0 + jitter[0], y0 + jitter[1], x1 + jitter[2], y1 + jitter[3]),
                              fill=0, width=7)
                for x, y in rng.integers(0, SYNTHETIC_IMAGE_SIDE - 8, size=(NOISE_BLOBS, 2)):
                    draw.ellipse((int(x), int(y), int(x) + 8, int(y) + 8), fill=0)
                image.convert("1").save(folder / f"{number:04d}_{drawing + 1:02d}.png")
    return data_dir


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding only the synthetic Omniglot tree (read-only by convention)."""
    return write_synthetic_omniglot(tmp_path_factory.mktemp("synthetic_data"))


@pytest.fixture(scope="session")
def synthetic_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded-image cache for the synthetic tree only (never FEWSHOT_CACHE_DIR; see module doc)."""
    return tmp_path_factory.mktemp("synthetic_cache")


@pytest.fixture(scope="session")
def data_overrides(synthetic_data_dir: Path, synthetic_cache_dir: Path) -> list[str]:
    """Overrides that point a run at the synthetic tree, offline, on the CPU, without TensorBoard."""
    return [
        f"paths.data_dir={synthetic_data_dir}",
        f"paths.cache_dir={synthetic_cache_dir}",
        "dataset.download=false",
        "device=cpu",
    ]


@pytest.fixture(scope="session")
def tiny_train_overrides(data_overrides: list[str]) -> list[str]:
    """A training run of a few seconds on the synthetic tree: debug=fast (4 episodes, validation
    every 2 on 5 episodes, 10 test episodes, no TensorBoard; conf/debug/fast.yaml), 5-way 1-shot,
    5 queries."""
    return [
        *data_overrides,
        "debug=fast",
        "train_episodes.n_way=5",
        "train_episodes.n_shot=1",
        "train_episodes.n_query=5",
        "eval_episodes.n_way=5",
        "eval_episodes.n_shot=1",
        "eval_episodes.n_query=5",
        # Typed shapes are exact, as `fewshot train` makes them (config/overrides.py).
        "train_episodes.fit_to_split=false",
        "eval_episodes.fit_to_split=false",
    ]


@contextmanager
def _hydra() -> Iterator[None]:
    # A context manager, so GlobalHydra is cleared even when compose() raises: a second
    # initialize_config_dir would otherwise fail with "GlobalHydra is already initialized".
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="test"):
        yield


def compose_config(config_name: str, overrides: list[str], output_dir: Path | None = None,
                   return_hydra_config: bool = False) -> DictConfig:
    """Compose conf/<config_name>.yaml like the CLI does, minus HydraConfig: the one compose helper
    of the test suite (`return_hydra_config`: keep the `hydra` node, e.g. its group choices).

    compose() sets no HydraConfig, and paths.output_dir defaults to `${hydra:runtime.output_dir}`,
    which cannot resolve without one, so it is always set: to `output_dir` when given, else to the
    test's own `paths.output_dir=` override, else to a placeholder (a test that never writes).
    """
    if output_dir is not None or not any(o.startswith("paths.output_dir=") for o in overrides):
        overrides = [*overrides, f"paths.output_dir={output_dir or Path('unused-output-dir')}"]
    with _hydra():
        return compose(config_name=config_name, overrides=list(overrides),
                       return_hydra_config=return_hydra_config)


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_train(overrides, output_dir=tmp_path/'train') -> the composed train config."""

    def _compose(overrides: list[str] = (), output_dir: Path | None = None) -> DictConfig:
        return compose_config("train", list(overrides), output_dir or tmp_path / "train")

    return _compose


@pytest.fixture
def compose_eval(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_eval(overrides, output_dir=tmp_path/'eval') -> the composed eval config."""

    def _compose(overrides: list[str] = (), output_dir: Path | None = None) -> DictConfig:
        return compose_config("eval", list(overrides), output_dir or tmp_path / "eval")

    return _compose


def find_shared_data(marker: str) -> Path | None:
    """The data dir (FEWSHOT_DATA_DIR, else ../shared/data beside the repository) holding `marker`."""
    for candidate in (os.environ.get("FEWSHOT_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / marker).exists():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def real_att_faces() -> Path:
    """The data dir holding real AT&T faces (att_faces/s1..s40); skips the test without them."""
    found = find_shared_data("att_faces/s40/10.pgm")
    if found is None:
        pytest.skip("real AT&T faces not found under ../shared/data/att_faces (or FEWSHOT_DATA_DIR)")
    return found


def find_real_data_dir() -> Path | None:
    """The data dir when it holds real Omniglot."""
    return find_shared_data("omniglot/omniglot-py/images_background")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real datasets (skips the test when this machine has none)."""
    found = find_real_data_dir()
    if found is None:
        pytest.skip("real Omniglot not found (set FEWSHOT_DATA_DIR or provide ../shared/data)")
    return found


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FEWSHOT_CACHE_DIR when set (decoding real Omniglot takes ~12 s), else a fresh temp dir."""
    from_env = os.environ.get("FEWSHOT_CACHE_DIR")
    return Path(from_env).expanduser() if from_env else tmp_path_factory.mktemp("real_cache")
