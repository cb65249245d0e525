"""The end-of-sweep summary callback, driven as Hydra drives it (end-to-end runs: test_sweeps.py)."""

import json
import math
import pickle
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fewshot_cli.errors import ConfigError
from fewshot_cli.sweep_summary import JOB_RECORD, SUMMARY_FILE, JobResult, SweepSummary


def _config(sweep_dir: Path, num: int = 0, mode: RunMode = RunMode.MULTIRUN) -> DictConfig:
    return OmegaConf.create({"hydra": {
        "mode": mode, "sweep": {"dir": str(sweep_dir)},
        "job": {"num": num, "name": "train"}, "runtime": {"output_dir": str(sweep_dir / str(num))},
    }})


def _sweep(callback: SweepSummary, sweep_dir: Path, values: list, failed: int | None = None) -> None:
    """Run the callback's hooks over jobs returning `values` (job `failed` raised its value)."""
    callback.on_multirun_start(_config(sweep_dir))
    for num, value in enumerate(values):
        job = JobReturn(overrides=["logger=none", f"seed={num}"])
        job.status = JobStatus.FAILED if num == failed else JobStatus.COMPLETED
        job.return_value = value
        # A fresh copy per job, as a launcher worker gets (joblib, submitit).
        pickle.loads(pickle.dumps(callback)).on_job_end(_config(sweep_dir, num), job)
    callback.on_multirun_end(_config(sweep_dir))


def test_all_jobs_succeed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _sweep(SweepSummary(), tmp_path, [JobResult(50.0, "val/best_acc"), JobResult(61.25, "val/best_acc")])
    out = capsys.readouterr().out
    assert f"sweep summary ({tmp_path}): 2 of 2 jobs succeeded" in out
    assert "job   1  seed=1  val/best_acc 61.25" in out  # the shared logger=none is left out
    written = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert [r["value"] for r in written["records"]] == [50.0, 61.25]


def test_user_errors_only_exit_2_and_a_bug_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ok, user = JobResult(50.0, "val/best_acc"), JobResult.failed(ConfigError("n_way too large"), True)
    with pytest.raises(SystemExit) as stopped:
        _sweep(SweepSummary(), tmp_path / "a", [ok, user])
    assert stopped.value.code == 2
    bug = JobResult.failed(ValueError("boom"), False)
    with pytest.raises(SystemExit) as stopped:
        _sweep(SweepSummary(), tmp_path / "b", [ok, user, bug])
    assert stopped.value.code == 1
    captured = capsys.readouterr()
    assert "job   1  seed=1  FAILED: n_way too large\n" in captured.out
    assert f"FAILED: ValueError: boom (traceback in {tmp_path / 'b' / '2' / 'train.log'})" in captured.out
    assert "2 of 3 sweep jobs failed; the others kept their results" in captured.err


def test_a_job_that_raised_counts_as_a_bug(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        _sweep(SweepSummary(), tmp_path, [JobResult(1.0, "m"), RuntimeError("no memory")], failed=1)
    assert stopped.value.code == 1
    assert "FAILED: RuntimeError: no memory" in capsys.readouterr().out


def test_records_of_an_earlier_sweep_in_the_same_dir_are_ignored(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _sweep(SweepSummary(), tmp_path, [JobResult(1.0, "m"), JobResult(2.0, "m"),
                                          JobResult.failed(ConfigError("bad"), True)])
    _sweep(SweepSummary(), tmp_path, [JobResult(3.0, "m")])  # no SystemExit: job 2 is stale
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["jobs"] == 1


def test_a_single_run_writes_no_record(tmp_path: Path) -> None:
    job = JobReturn(overrides=[])
    job.status, job.return_value = JobStatus.COMPLETED, JobResult(1.0, "m")
    SweepSummary().on_job_end(_config(tmp_path, mode=RunMode.RUN), job)
    assert not list(tmp_path.rglob(JOB_RECORD))


def test_job_result_is_a_float_that_pickles_with_its_error() -> None:
    failed = pickle.loads(pickle.dumps(JobResult.failed(ConfigError("bad value"), True)))
    assert math.isnan(failed) and (failed.error, failed.user_error) == ("bad value", True)
    assert float(pickle.loads(pickle.dumps(JobResult(42.5, "test/acc")))) == 42.5
