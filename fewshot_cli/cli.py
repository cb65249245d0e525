"""The `fewshot` command: subcommand dispatch and the @hydra.main entry points, nothing else.

Hydra owns sys.argv, so the subcommand word is popped before the subcommand's @hydra.main function
runs; everything after it (overrides, -m, --cfg job, --info, --help) is Hydra's. A click or Fire
wrapper in front of Hydra would take `-m`, `--cfg job` and `--info` away from it.
"""

import logging
import os
import shutil
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from fewshot_cli.config import (
    key_help,  # noqa: F401  (registers the --help template's resolver)
    schema,  # noqa: F401  (registers the structured schemas)
)
from fewshot_cli.config.locate import config_path
from fewshot_cli.config.overrides import (
    add_to_checkpoint_nodes,
    check_override_keys,
    quote_override,
    typed_shapes_are_exact,
)
from fewshot_cli.config.resume import merge_resume_config
from fewshot_cli.engine.checkpoint import load_checkpoint
from fewshot_cli.engine.provenance import record_invocation
from fewshot_cli.engine.trainer import TrainingInterrupted
from fewshot_cli.errors import FewShotError
from fewshot_cli.sweep_summary import JobResult

log = logging.getLogger("fewshot_cli")

USAGE = """usage: fewshot <command> [hydra overrides and flags]

commands:
  train   train a few-shot method        e.g. fewshot train method=protonet dataset=omniglot
  eval    score a checkpoint on test episodes   e.g. fewshot eval ckpt_path=outputs/.../best.pt
  report  gather runs into one results table    e.g. fewshot report outputs/multirun
  predict classify your images with a checkpoint  e.g. fewshot predict ckpt_path=.../best.pt
          support_dir=DIR query=PATH [reject=auto]   (any method; pair=[a.png,b.png]: distance and
          same/different; CLIP needs no checkpoint: method=clip classes=[cat,dog] query=PATH)

Everything after the command goes to Hydra: key=value overrides, -m/--multirun for sweeps,
--cfg job to print the composed config, --info, and `fewshot <command> --help` for the common keys
(values and descriptions) and the config groups.
"""


@hydra.main(version_base="1.3", config_path=config_path(), config_name="train")
def train_command(cfg: DictConfig) -> float:
    """Entry point of `fewshot train`.

    Returns the best validation accuracy: what a sweeper (Optuna) may optimise without seeing test.
    """
    from fewshot_cli.tasks.train import train

    def run(config: DictConfig) -> dict[str, Any]:
        overrides = list(HydraConfig.get().overrides.task)
        if config.resume_from:
            saved = load_checkpoint(config.resume_from)["config"]
            config = merge_resume_config(config, saved, overrides)
        typed_shapes_are_exact(config, overrides)
        return train(config)

    return _report_errors(run, cfg, "val/best_acc")


@hydra.main(version_base="1.3", config_path=config_path(), config_name="eval")
def eval_command(cfg: DictConfig) -> float:
    """Entry point of `fewshot eval`; returns test accuracy."""
    from fewshot_cli.tasks.evaluate import evaluate

    typed_shapes_are_exact(cfg, list(HydraConfig.get().overrides.task))
    return _report_errors(evaluate, cfg, "test/acc")


@hydra.main(version_base="1.3", config_path=config_path(), config_name="predict")
def predict_command(cfg: DictConfig) -> float:
    """Entry point of `fewshot predict` (classify images against a support folder, compare pairs)."""
    from fewshot_cli.tasks.predict import predict

    return _report_errors(predict, cfg, "none")


def report_command() -> None:
    """Entry point of `fewshot report DIR`: plain argparse, no Hydra run directory."""
    from fewshot_cli.tasks.report import main as report_main

    try:
        report_main(sys.argv[1:])
    except FewShotError as error:
        print(f"fewshot report: {error}", file=sys.stderr)
        sys.exit(2)


COMMANDS: dict[str, Callable[[], Any]] = {
    "train": train_command,
    "eval": eval_command,
    "report": report_command,
    "predict": predict_command,
}


def _report_errors(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig, metric: str) -> float:
    """Run a task and return `metric` from its metrics.

    A user error becomes one logged sentence and exit code 2. In a sweep (-m) no job may take the
    others down: any failure is logged (with its traceback if it is a bug) and the job returns NaN,
    which sweepers record as a failed trial, carrying the error for the end-of-sweep summary
    (fewshot_cli/sweep_summary.py), which then makes the sweep exit non-zero.
    """
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    _TASK_STARTED.append(True)
    try:
        return JobResult(float(task(cfg).get(metric, float("nan"))), metric)
    except (FewShotError, TrainingInterrupted) as error:
        log.error("%s", error)
        if multirun and not isinstance(error, TrainingInterrupted):
            return JobResult.failed(error, user_error=True)
        if not isinstance(error, TrainingInterrupted):
            _discard_unused_run_dir()
        sys.exit(130 if isinstance(error, TrainingInterrupted) else 2)
    except Exception as error:
        if not multirun:
            raise
        log.exception("job failed; the sweep goes on with the other jobs")
        return JobResult.failed(error, user_error=False)


# Set once a task starts: a SystemExit(1) from Hydra before that is its answer to a bad command line
# (a wrong type, a missing config), which is a user error like the others (exit code 2).
_TASK_STARTED: list[bool] = []
# What Hydra and a task write before doing any work: a run directory holding only these was made by
# a command that was refused, and is removed with it (nothing half-written is left behind).
RUN_RECORD_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}


def _discard_unused_run_dir() -> None:
    """Remove what this invocation wrote if it did no work: the run directory Hydra made, or, when it
    resumed into an existing run, only its own `.hydra/resume_<time>/` record."""
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    record = run_dir / str(hydra_config.output_subdir) if hydra_config.output_subdir else None
    if record is None or not record.is_dir() or {p.name for p in record.iterdir()} - RUN_RECORD_FILES:
        return
    made_now = {".hydra", f"{hydra_config.job.name}.log", "run_config.yaml"}
    if record.parent == run_dir and not {p.name for p in run_dir.iterdir()} - made_now:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif record.parent != run_dir:
        shutil.rmtree(record, ignore_errors=True)  # a resume refused in an existing run directory


MULTIRUN_FLAGS = ("-m", "--multirun")


def main() -> None:
    """Console-script entry point: `fewshot <train|eval> [overrides]`."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
        print(USAGE, end="")
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    command = sys.argv.pop(1)
    if command not in COMMANDS:
        print(f"fewshot: unknown command {command!r}; choose one of {', '.join(COMMANDS)}\n\n{USAGE}",
              file=sys.stderr, end="")
        sys.exit(2)
    if command in ("train", "eval"):
        record_invocation(["fewshot", command, *sys.argv[1:]])  # as typed, for metrics.json
    sys.argv[0] = f"fewshot {command}"
    sys.argv[1:] = multirun_flag_first(sys.argv[1:])
    try:
        # Before Hydra: its own error for a typo'd key suggests `+key=value`, which then runs and
        # silently ignores the value.
        check_override_keys(command, sys.argv[1:])
        sys.argv[1:] = add_to_checkpoint_nodes(command, sys.argv[1:])
    except FewShotError as error:
        print(f"fewshot {command}: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv.extend(_torchrun_overrides(command))
    sys.argv.extend(_resume_in_its_run_dir(command, sys.argv[1:]))
    try:
        COMMANDS[command]()
    except SystemExit as stop:
        if stop.code == 1 and not _TASK_STARTED:
            sys.exit(2)  # Hydra refused the command line (its message is printed above)
        raise


def _resume_in_its_run_dir(command: str, args: list[str]) -> list[str]:
    """`fewshot train resume_from=<run>/checkpoints/last.pt` continues in <run> (one TensorBoard run,
    one history, one train.log), unless hydra.run.dir is given or it is a sweep. The resume's own
    composed config goes to <run>/.hydra/resume_<time>/, so the run's original .hydra/ is kept."""
    if command != "train" or any(a in MULTIRUN_FLAGS or a.startswith("hydra.run.dir=") for a in args):
        return []
    path = resume_path(args)
    if path is None or path.parent.name != "checkpoints" or not path.is_file():
        return []  # not a run's checkpoint: Hydra's new run directory (train() copies best.pt over)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return [quote_override("hydra.run.dir", str(path.parent.parent)),
            f"hydra.output_subdir=.hydra/resume_{stamp}"]


def resume_path(args: list[str]) -> Path | None:
    """The checkpoint named by a `resume_from=` override (Hydra's quoting undone), if any."""
    parser = OverridesParser.create()
    for text in args:
        if text.startswith("resume_from="):
            try:
                value = parser.parse_override(text).value()
            except HydraException:
                return None
            return Path(str(value)).expanduser() if value else None
    return None


def multirun_flag_first(args: list[str]) -> list[str]:
    """Move -m/--multirun before the overrides: Hydra's argparse rejects overrides on both sides of
    it (`fewshot train method=maml -m seed=0,1` would fail with "unrecognized arguments")."""
    flags = [arg for arg in args if arg in MULTIRUN_FLAGS]
    return flags + [arg for arg in args if arg not in MULTIRUN_FLAGS]


def _torchrun_overrides(command: str) -> list[str]:
    """Under torchrun every rank is its own `fewshot` process: give all ranks one run directory and
    let only rank 0 write Hydra's .hydra/ folder and log file."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return []
    extra = []
    if not any(arg.startswith("hydra.run.dir=") for arg in sys.argv):
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if run_id == "none":
            print("fewshot: under torchrun, pass hydra.run.dir=<dir> (or use torchrun --standalone or "
                  "--rdzv-id) so that all processes share one run directory", file=sys.stderr)
            sys.exit(2)
        extra.append(f"hydra.run.dir=outputs/{command}/torchrun_{run_id}")
    if int(os.environ.get("RANK", "0")) > 0:
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return extra
