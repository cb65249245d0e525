"""git_commit and command in metrics.json: the commit of the checkout holding the package, never of
whatever repository happens to surround an installed copy."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot_cli.engine import provenance


@pytest.fixture
def package_at(monkeypatch: pytest.MonkeyPatch):
    """Point the provenance module at another package directory, with an empty cache."""
    def _at(path: Path) -> None:
        monkeypatch.setattr(provenance, "PACKAGE_DIR", path)
        provenance.code_commit.cache_clear()
    yield _at
    provenance.code_commit.cache_clear()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")
def test_commit_of_a_checkout_clean_then_dirty_and_none_when_untracked(tmp_path: Path, package_at) -> None:
    repo = tmp_path / "repo"
    package = repo / "fewshot_cli"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    git(repo, "init", "-q")
    git(repo, "add", "fewshot_cli/__init__.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    head = git(repo, "rev-parse", "--short", "HEAD")
    package_at(package)
    assert provenance.code_commit() == head
    (package / "__init__.py").write_text("# changed\n")
    package_at(package)
    assert provenance.code_commit() == head + "-dirty"
    # A new file git does not ignore (a method added as the README says) is not in the commit either;
    # an ignored one (run outputs) is no change.
    git(repo, "checkout", "-q", "--", "fewshot_cli/__init__.py")
    (repo / ".gitignore").write_text("outputs/\n")
    git(repo, "add", ".gitignore")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "ignore")
    head = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "outputs").mkdir()
    (repo / "outputs" / "metrics.json").write_text("{}")
    package_at(package)
    assert provenance.code_commit() == head
    (package / "my_method.py").write_text("class Mine: ...\n")
    package_at(package)
    assert provenance.code_commit() == head + "-dirty"
    # An installed copy inside an ignored folder of a checkout (a venv in the repo) is not the checkout.
    installed = repo / ".venv" / "site-packages" / "fewshot_cli"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    package_at(installed)
    assert provenance.code_commit() is None
    elsewhere = tmp_path / "wheel" / "fewshot_cli"
    elsewhere.mkdir(parents=True)
    (elsewhere / "__init__.py").write_text("")
    package_at(elsewhere)
    assert provenance.code_commit() is None


def test_command_is_the_typed_one_when_recorded(monkeypatch: pytest.MonkeyPatch, package_at) -> None:
    package_at(Path(provenance.__file__).parent.parent)
    monkeypatch.setattr(provenance, "_TYPED", [])
    monkeypatch.delenv(provenance.COMMAND_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "argv", ["python", "script.py"])
    assert provenance.command_line() == "python script.py"
    provenance.record_invocation(["fewshot", "train", "dataset.root=my images", "seed=1"])
    assert provenance.command_line() == "fewshot train 'dataset.root=my images' seed=1"
    # A launcher's worker process: no module state, the parent's environment.
    monkeypatch.setattr(provenance, "_TYPED", [])
    assert provenance.command_line() == "fewshot train 'dataset.root=my images' seed=1"
    assert shlex.split(provenance.command_line())[2] == "dataset.root=my images"
    assert set(provenance.run_provenance()) == {"git_commit", "command", "debug"}
    assert provenance.run_provenance()["debug"] is None  # outside a Hydra run
