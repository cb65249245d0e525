"""Where the Hydra configs live: inside the installed wheel, or at the top of a source checkout."""

import importlib.util
from pathlib import Path

PACKAGED_CONFIG_PACKAGE = "fewshot_cli.conf"


def config_path() -> str:
    """Return the `config_path` for `@hydra.main` / `initialize_config_dir`.

    An installed wheel carries conf/ as the package `fewshot_cli.conf` (a relative
    `config_path="../conf"` works in an editable install and breaks after `pip install .`, where no
    conf/ sits beside the package); an editable install or a source checkout
    reads the top-level conf/ directly, so edits to YAML take effect without reinstalling.
    """
    if importlib.util.find_spec(PACKAGED_CONFIG_PACKAGE) is not None:
        return f"pkg://{PACKAGED_CONFIG_PACKAGE}"
    return str(source_config_dir())


def source_config_dir() -> Path:
    """The top-level conf/ of a source checkout."""
    return Path(__file__).resolve().parents[2] / "conf"
