#!/usr/bin/env bash
# The README's Omniglot table in one command on one GPU: ProtoNet, MatchingNet, RelationNet and MAML
# at 5w1s / 5w5s / 20w1s / 20w5s (one model per paper protocol, as conf/experiment says: ProtoNet
# trains one 60-way model per shot and tests it at 5 and 20 ways, the others one model per setting),
# plus Koch et al.'s Siamese twin (experiment=siamese_koch_omniglot: 105x105, 20-way one-shot within
# the alphabets of Lake's one-shot runs), whose best.pt is then scored on MNIST 10-way one-shot.
# Every test: 1000 episodes (600 for MAML, as Finn et al.) from the fixed eval_seed, so every
# method of a setting is scored on the same episodes and `fewshot report --paired` can pair them.
#
#   bash benchmarks/reproduce_omniglot_gpu.sh OUT [--smoke]
#
# The 15 training runs share the GPU as concurrent processes, REPRO_CONCURRENCY at a time (default
# 15: all at once; a waiting run starts when one ends). Each stops at the first of: its paper length
# (the preset's trainer.max_episodes), a validation plateau (trainer.early_stop_patience=PATIENCE
# validations without a new best, validation episodes only) or TRAIN_MINUTES of wall clock; then it
# validates, tests best.pt and metrics.json says which ended it (train/stopped_by). The default
# budget (TRAIN_MINUTES=4.5, all at once) is sized for about 9 minutes of one H200 in all, start-up,
# tests, evals and report included; it has not yet run on a GPU, so that is an estimate.
#
# OUT receives the results as data (the layout of benchmarks/results/<name>/): per run OUT/<run>/
# metrics.json (with git_commit and command), .hydra/{config,overrides}.yaml, run_config.yaml,
# train_history.jsonl and episode_accuracies.csv; OUT/report.md and report.csv (ours ± 95% CI, the paper's number, the
# difference, episodes trained, best.pt's episode, what ended training, wall time, hardware, commit),
# report_paired.md/.csv (each method minus ProtoNet on the same episodes) and
# reproduce_summary.json (wall time, settings, exit status per run). Checkpoints and logs stay in
# WORK (default outputs/reproduce_omniglot_gpu/<date>_<time>), where the runs are.
#
# --smoke: the same code path on the CPU with tiny budgets (two optimiser steps per run, 2 validation
# and 4 test episodes, MAML with a meta-batch of 2 and one inner step): a few minutes, to check the
# command before spending GPU time. Its numbers mean nothing.
#
# Environment: PYTHON (default python), DEVICE (default cuda; cpu with --smoke), REPRO_CONCURRENCY,
# TRAIN_MINUTES, PATIENCE (default 8), WORK, FEWSHOT_DATA_DIR / FEWSHOT_CACHE_DIR as for any run, and
# METHODS (default "maml siamese relationnet matchingnet protonet"): the jobs to run. Should the
# table not fit one GPU lot, split it into two commands sharing WORK, e.g. METHODS="maml siamese"
# then METHODS="relationnet matchingnet protonet"; the second one's report covers both.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ] || { [ $# -eq 2 ] && [ "$2" != --smoke ]; }; then
  echo "usage: bash benchmarks/reproduce_omniglot_gpu.sh OUT [--smoke]" >&2
  exit 2
fi
out=$1
smoke=0; [ "${2:-}" = --smoke ] && smoke=1
py=${PYTHON:-python}
if [ $smoke = 1 ]; then
  device=${DEVICE:-cpu}; concurrency=${REPRO_CONCURRENCY:-2}; minutes=${TRAIN_MINUTES:-0.5}
else
  device=${DEVICE:-cuda}; concurrency=${REPRO_CONCURRENCY:-15}; minutes=${TRAIN_MINUTES:-4.5}
fi
patience=${PATIENCE:-8}
work=${WORK:-outputs/reproduce_omniglot_gpu/$(date +%Y-%m-%d_%H-%M-%S)}
runs=$work/runs
start=$(date +%s)

common=(device="$device" logger=none trainer.progress_bar=false "trainer.max_minutes=$minutes"
        "trainer.early_stop_patience=$patience")

# Per run: its preset and how often to validate. The presets validate rarely (every 5,000 to 16,000
# episodes, made for runs of hours); within minutes a plateau needs a validation every few hundred
# optimiser steps. MAML's counts are multiples of its meta-batch (32 tasks at 5-way, 16 at 20-way).
budget() {  # budget TASKS_PER_STEP VAL_EVERY: the trainer counts of one run
  local tps=$1 every=$2
  if [ $smoke = 1 ]; then
    echo "trainer.max_episodes=$((2 * tps)) trainer.val_every=$tps trainer.checkpoint_every=$tps" \
         "trainer.log_every=$tps trainer.val_episodes=2"
  else
    echo "trainer.val_every=$every trainer.checkpoint_every=$every trainer.val_episodes=200"
  fi
}
test_episodes() {  # test_episodes N: N test episodes (4 with --smoke)
  if [ $smoke = 1 ]; then echo "eval.n_episodes=4"; else echo "eval.n_episodes=$1"; fi
}
# --smoke: MAML's meta-batch of 2 tasks (still vmap'd) and one inner step, else one second-order
# step of 16 20-way tasks takes minutes on a small CPU.
maml_smoke=()
if [ $smoke = 1 ]; then maml_smoke=(trainer.tasks_per_step=2 method.inner_steps=1 method.inner_steps_eval=1); fi

train() {  # train NAME OVERRIDES...: one training run into runs/NAME, logged to logs/NAME.out
  local name=$1; shift
  "$py" -m fewshot_cli train "$@" "${common[@]}" "hydra.run.dir=$runs/$name" > "$work/logs/$name.out" 2>&1
}
evaluate() {  # evaluate NAME CHECKPOINT_RUN OVERRIDES...: best.pt of runs/CHECKPOINT_RUN scored anew
  local name=$1 source=$2; shift 2
  "$py" -m fewshot_cli eval "ckpt_path=$runs/$source/checkpoints/best.pt" device="$device" \
    "$@" "hydra.run.dir=$runs/$name" > "$work/logs/$name.out" 2>&1
}

# One job per trained model (its evals follow it), longest first so that with fewer slots than jobs
# the long ones do not start last.
methods=" ${METHODS:-maml siamese relationnet matchingnet protonet} "
chosen() { [[ $methods == *" $1 "* ]]; }
jobs_list=()
for setting in 20w5s 20w1s 5w5s 5w1s; do if chosen maml; then jobs_list+=("maml $setting"); fi; done
if chosen siamese; then jobs_list+=("siamese koch"); fi
for setting in 20w5s 20w1s 5w5s 5w1s; do
  for method in relationnet matchingnet; do if chosen $method; then jobs_list+=("$method $setting"); fi; done
done
if chosen protonet; then jobs_list+=("protonet 1shot" "protonet 5shot"); fi
if [ ${#jobs_list[@]} = 0 ]; then
  echo "METHODS=\"${METHODS:-}\" names none of: maml siamese relationnet matchingnet protonet" >&2
  exit 2
fi

run_job() {  # run_job METHOD SETTING
  local method=$1 setting=$2
  case $method in
    maml)
      local tps=32 every=3200
      case $setting in 20w*) tps=16; every=1600 ;; esac
      if [ $smoke = 1 ]; then tps=2; fi
      # shellcheck disable=SC2046  # budget's words are separate overrides
      train "maml_omniglot_$setting" "experiment=maml_omniglot_$setting" $(budget $tps $every) \
        $(test_episodes 600) ${maml_smoke[@]+"${maml_smoke[@]}"} ;;
    relationnet|matchingnet)
      # shellcheck disable=SC2046
      train "${method}_omniglot_$setting" "experiment=${method}_omniglot_$setting" $(budget 1 500) \
        $(test_episodes 1000) ;;
    protonet)  # Snell et al.: one 60-way model per shot, tested at 20 ways (its preset) and at 5
      local shot=${setting%shot}
      # shellcheck disable=SC2046
      train "protonet_omniglot_20w${shot}s" "experiment=protonet_omniglot_20w${shot}s" $(budget 1 500) \
        $(test_episodes 1000) &&
      evaluate "protonet_omniglot_5w${shot}s_eval" "protonet_omniglot_20w${shot}s" \
        eval_episodes.n_way=5 "$(test_episodes 1000)" ;;
    siamese)  # Koch et al.: within-alphabet 20-way one-shot, then the same best.pt on MNIST 10-way
      # shellcheck disable=SC2046
      train siamese_koch_omniglot experiment=siamese_koch_omniglot $(budget 1 500) \
        $(test_episodes 1000) &&
      evaluate siamese_koch_omniglot_on_mnist siamese_koch_omniglot dataset=mnist \
        dataset.classes_split=all dataset.image_size=105 eval.within_group=false \
        eval_episodes.n_way=10 eval_episodes.n_shot=1 eval_episodes.n_query=1 "$(test_episodes 1000)" ;;
  esac
}

# Decode each dataset into the cache once, before the runs start: concurrent first decodes of the
# same files would each take the CPU time and write the same cache entry. An untrained model on two
# episodes reads exactly the dataset nodes the runs use.
prewarm() {  # prewarm NAME DATASET-OVERRIDES...
  local name=$1; shift
  "$py" -m fewshot_cli eval method=protonet backbone=conv4 eval.n_episodes=2 device="$device" "$@" \
    "hydra.run.dir=$work/prewarm/$name" > "$work/logs/prewarm_$name.out" 2>&1 ||
    { echo "decoding $name failed: $work/logs/prewarm_$name.out" >&2; tail -3 "$work/logs/prewarm_$name.out" >&2; exit 1; }
}
mkdir -p "$out" "$runs" "$work/logs" "$work/prewarm"
echo "reproduce_omniglot_gpu: ${#jobs_list[@]} jobs, $concurrency at a time, on $device; training up to" \
     "$minutes min each, early_stop_patience=$patience; runs in $work"
prewarm omniglot dataset=omniglot & decoders=($!)
prewarm omniglot_lake dataset=omniglot dataset.split_scheme=lake dataset.image_size=105 \
  dataset.rotations=false & decoders+=($!)
prewarm mnist dataset=mnist dataset.classes_split=all dataset.image_size=105 & decoders+=($!)
for pid in "${decoders[@]}"; do wait "$pid"; done  # set -e: a failed decode stops here
echo "datasets decoded after $(( $(date +%s) - start )) s"

declare -A job_of=()  # pid -> "method setting" of the running jobs
running=0             # (a count of its own: set -u rejects ${#job_of[@]} of an empty array in bash < 5.2)
statuses=()
finish_one() {  # wait for any job (bash >= 5.1: wait -n -p); record its status
  local pid status=0
  wait -n -p pid || status=$?
  statuses+=("${job_of[$pid]}=$status")
  echo "  done after $(( $(date +%s) - start )) s: ${job_of[$pid]} (exit $status)"
  unset "job_of[$pid]"
  running=$((running - 1))
}
for job in "${jobs_list[@]}"; do
  while [ "$running" -ge "$concurrency" ]; do finish_one; done
  # shellcheck disable=SC2086  # "method setting"
  run_job $job &
  job_of[$!]=$job
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do finish_one; done
train_end=$(date +%s)

# The results as data: what each run measured, never its checkpoints, logs or event files.
for run_dir in "$runs"/*/; do
  name=$(basename "$run_dir")
  [ -f "$run_dir/metrics.json" ] || continue
  mkdir -p "$out/$name"
  mkdir -p "$out/$name/.hydra"
  # The composed configs too: `fewshot report OUT` labels rows by them (Lake split, image size).
  for file in metrics.json train_history.jsonl episode_accuracies.csv run_config.yaml \
              .hydra/config.yaml .hydra/overrides.yaml; do
    if [ -f "$run_dir/$file" ]; then cp "$run_dir/$file" "$out/$name/$file"; fi
  done
done

report_status=0
"$py" -m fewshot_cli report "$runs" --out "$out" --paired protonet > "$out/report_stdout.txt" 2>&1 ||
  report_status=$?
if [ $report_status != 0 ]; then  # e.g. no ProtoNet run finished: the table without the pairing
  cat "$out/report_stdout.txt" >&2
  "$py" -m fewshot_cli report "$runs" --out "$out" > "$out/report_stdout.txt" 2>&1 || report_status=$?
fi
rm -f "$out/report_curves.png"  # a figure: regenerate it with `fewshot report WORK/runs`
cat "$out/report_stdout.txt"
end=$(date +%s)

failed=0
for s in "${statuses[@]}"; do [ "${s##*=}" = 0 ] || failed=$((failed + 1)); done
hardware=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
"$py" - "$out/reproduce_summary.json" "$smoke" "$device" "$hardware" "$concurrency" "$minutes" \
  "$patience" "$((end - start))" "$((train_end - start))" "$report_status" "$work" "${statuses[@]}" <<'EOF'
import json, os, platform, subprocess, sys
(path, smoke, device, hardware, concurrency, minutes, patience, total, trained, report, work,
 *statuses) = sys.argv[1:]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
summary = {
    "smoke": smoke == "1", "device": device, "hardware": hardware or f"{platform.machine()} CPU, {os.cpu_count()} cores",
    "concurrency": int(concurrency), "train_minutes": float(minutes),
    "early_stop_patience": int(patience),
    "wall_time_s": {"total": int(total), "until_every_job_ended": int(trained)},
    "exit_status": {job: int(status) for job, status in (s.rsplit("=", 1) for s in statuses)},
    "report_exit_status": int(report), "git_commit": commit.stdout.strip() or None, "work_dir": work,
}
open(path, "w").write(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
for log in "$work"/logs/*.out; do  # a run without metrics.json failed: say where to look
  name=$(basename "$log" .out)
  case $name in prewarm_*) continue ;; esac
  [ -f "$runs/$name/metrics.json" ] && continue
  echo "FAILED: $name (no metrics.json); the last lines of $log:" >&2
  tail -3 "$log" >&2
done
echo "total wall time: $((end - start)) s; $failed of ${#statuses[@]} jobs failed"
[ $failed = 0 ] && [ $report_status = 0 ]
