"""Where a result came from: the git commit of the code that ran and the command line as typed.

Both go into every metrics.json, so a stored result names what produced it without a separate note.
"""

import os
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent.parent

# Set by the `fewshot` console script before Hydra rewrites sys.argv (it pops the subcommand and
# appends run-directory overrides), so that metrics.json shows what the user typed.
_TYPED: list[str] = []
# The same, for the jobs of a sweep that a launcher runs in other processes (joblib workers,
# submitit/SLURM jobs), which inherit the environment but not this module's state or sys.argv.
COMMAND_VARIABLE = "FEWSHOT_COMMAND_LINE"


def record_invocation(argv: list[str]) -> None:
    """Remember the command line as typed (`["fewshot", "train", "key=value", ...]`) and pin the
    commit now: a long run's code is the code at its start, whatever is committed meanwhile."""
    _TYPED[:] = argv
    os.environ[COMMAND_VARIABLE] = shlex.join(argv)
    code_commit()


def command_line() -> str:
    """The command line as typed, shell-quoted (`fewshot train 'dataset.root=my images'`); in a sweep
    job run by a launcher in another process, the one its parent recorded; outside the console
    script (a Python caller) the process's own sys.argv."""
    if _TYPED:
        return shlex.join(_TYPED)
    return os.environ.get(COMMAND_VARIABLE) or shlex.join(sys.argv)


@cache
def code_commit() -> str | None:
    """Short hash of the checkout holding this package, with "-dirty" when its files differ from it
    (tracked files changed, or new files git does not ignore: a method added as the README says is
    an untracked file the commit does not hold); None when the package is not a tracked file of a
    git checkout (an installed wheel, even one inside a virtualenv that sits in a checkout) or git
    is not available."""
    try:
        tracked = _git("ls-files", "--error-unmatch", "__init__.py")
        if tracked is None:
            return None
        commit = _git("rev-parse", "--short", "HEAD")
        changes = _git("status", "--porcelain", "--untracked-files=normal")
    except (OSError, subprocess.TimeoutExpired):  # no git executable, or a hung file system
        return None
    if not commit or changes is None:
        return None
    return commit + ("-dirty" if changes else "")


def _git(*args: str) -> str | None:
    """stdout of `git -C <package dir> args`, or None when git fails (not a checkout, not tracked)."""
    done = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True,
                          timeout=30, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def run_provenance() -> dict[str, Any]:
    """The metrics.json fields naming what produced a result: `git_commit`, `command` and `debug`
    (the debug preset of the run, e.g. "fast", else null: `fewshot report` leaves such runs out)."""
    return {"git_commit": code_commit(), "command": command_line(), "debug": debug_preset()}


def debug_preset() -> str | None:
    """The `debug=` option this Hydra run composed (conf/debug/), None for none or outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("debug")
    return None if choice in (None, "none") else str(choice)
