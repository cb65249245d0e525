"""benchmarks/gpu_check.sh's scaffolding, cheaply: usage errors exit 2, and a run of no stage still
writes OUT/summary.json and OUT/log.txt. (Its stages run in `gpu_check.sh --smoke`: minutes, not CI.)"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


@needs_bash
@pytest.mark.parametrize("arguments", [[], ["--smoke"], ["--fast", "out"], ["a", "b", "c"]])
def test_usage_errors_exit_2(arguments: list[str], tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(SCRIPT), *arguments], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "usage: bash benchmarks/gpu_check.sh [--smoke] OUT" in done.stderr


@needs_bash
def test_no_stage_still_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(SCRIPT), "--smoke", str(out)], capture_output=True, text=True,
                          timeout=60, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                           "PYTHON": sys.executable, "STAGES": "none",
                                           "WORK": str(tmp_path / "work")})
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] is True and summary["device"] == "cpu" and summary["stages"] == {}
    assert "gpu_check: device=cpu smoke=1 stages=none" in (out / "log.txt").read_text()
