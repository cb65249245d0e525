"""The end-of-sweep summary of `fewshot <command> -m ...`: one line per job and a non-zero exit status
when any job failed.

A failed job must not take the other jobs down (their results are kept and the sweeper sees NaN), so
`_report_errors` in cli.py returns a `JobResult`: a float for the sweepers that also carries the
metric's name, or the error. `SweepSummary`, a Hydra callback registered in conf/hydra/default.yaml,
turns those into the summary.

Why files: `on_job_end` runs in the job's own process (a joblib worker, a SLURM node), where this
callback object is a pickled copy, while `on_multirun_end` runs once in the launching process and is
given only the config. So each job writes its record beside its outputs (`sweep_job.json`), and the
end of the sweep reads them back from the sweep directory, whatever the launcher.

Exit status of a sweep with failed jobs: 2 when every failure was a user error (FewShotError: a bad
value, missing data), like a single run; 1 when any job failed on a bug. Jobs that finished keep
their run directories either way, and `<sweep dir>/sweep_summary.json` lists every job.
"""

import json
import math
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

JOB_RECORD = "sweep_job.json"
SUMMARY_FILE = "sweep_summary.json"


class JobResult(float):
    """A job's return value: the metric (NaN when the job failed), with its name or the error.

    A float subclass, so that sweepers (Optuna) keep reading a plain number; the extra fields are
    instance attributes, which pickle carries back from launcher workers.
    """

    metric: str
    error: str | None
    user_error: bool

    def __new__(cls, value: float, metric: str = "", error: str | None = None,
                user_error: bool = False) -> "JobResult":
        result = super().__new__(cls, value)
        result.metric, result.error, result.user_error = metric, error, user_error
        return result

    @classmethod
    def failed(cls, error: BaseException, user_error: bool) -> "JobResult":
        return cls(math.nan, error=str(error) if user_error else f"{type(error).__name__}: {error}",
                   user_error=user_error)


class SweepSummary(Callback):
    """Records every job of a multirun and prints/writes the summary when the sweep ends."""

    def __init__(self) -> None:
        # Tells this sweep's records from those of an earlier sweep run into the same directory.
        # Set before the launcher starts, so the copies in launcher workers carry it too.
        self.sweep_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_id = uuid.uuid4().hex

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        record = {"job": config.hydra.job.num, "sweep_id": self.sweep_id,
                  "overrides": list(job_return.overrides or []),
                  "output_dir": config.hydra.runtime.output_dir,
                  "log": f"{config.hydra.job.name}.log"}
        value = job_return._return_value  # the property would re-raise a failed job's exception
        if job_return.status != JobStatus.COMPLETED:  # raised past _report_errors: a bug
            record.update(status="failed", error=f"{type(value).__name__}: {value}", user_error=False)
        elif isinstance(value, JobResult) and value.error is not None:
            record.update(status="failed", error=value.error, user_error=value.user_error)
        else:
            number = float(value) if isinstance(value, (int, float)) else None
            record.update(status="ok", metric=getattr(value, "metric", ""),
                          value=None if number is None or math.isnan(number) else number)
        path = Path(record["output_dir"]) / JOB_RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = self._records(sweep_dir)
        failed = [job for job in jobs if job["status"] == "failed"]
        summary = {"sweep_dir": str(sweep_dir), "jobs": len(jobs), "failed": len(failed),
                   "records": jobs}
        if jobs:
            (sweep_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        # print, not logging: in this process the job logging of the last job may still be configured,
        # and the summary belongs on the terminal, not in that job's log file.
        print(format_summary(jobs, sweep_dir), flush=True)
        if failed:
            print(f"{len(failed)} of {len(jobs)} sweep jobs failed; the others kept their results "
                  f"(summary in {sweep_dir / SUMMARY_FILE})", file=sys.stderr, flush=True)
            raise SystemExit(2 if all(job["user_error"] for job in failed) else 1)

    def _records(self, sweep_dir: Path) -> list[dict[str, Any]]:
        records = []
        for path in sweep_dir.rglob(JOB_RECORD):
            record = json.loads(path.read_text())
            if record.get("sweep_id") == self.sweep_id:
                records.append(record)
        return sorted(records, key=lambda record: record["job"])


def format_summary(jobs: list[dict[str, Any]], sweep_dir: Path) -> str:
    """A table of job number, the overrides that differ between jobs, and the metric or error."""
    if not jobs:
        return f"sweep summary: no job records under {sweep_dir}"
    shared = set.intersection(*(set(job["overrides"]) for job in jobs)) if len(jobs) > 1 else set()
    rows = []
    for job in jobs:
        swept = " ".join(o for o in job["overrides"] if o not in shared) or "(no overrides)"
        if job["status"] == "failed":
            where = Path(job["output_dir"]) / job["log"]
            result = (f"FAILED: {job['error']}" if job["user_error"]
                      else f"FAILED: {job['error']} (traceback in {where})")
        elif job["value"] is None:
            result = f"{job['metric'] or 'result'} n/a"
        else:
            result = f"{job['metric'] or 'result'} {job['value']:.2f}"
        rows.append((str(job["job"]), swept, result))
    width = max(len(swept) for _, swept, _ in rows)
    lines = [f"sweep summary ({sweep_dir}): {sum(j['status'] == 'ok' for j in jobs)} of {len(jobs)} "
             "jobs succeeded"]
    lines += [f"  job {num:>3}  {swept:<{width}}  {result}" for num, swept, result in rows]
    return "\n".join(lines)

