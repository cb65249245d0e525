#!/usr/bin/env bash
# Everything this project measures on a GPU, in one call of under 9 minutes on one GPU:
#
#   bash benchmarks/gpu_check.sh [--smoke] OUT
#
# Stages (STAGES=env,tests,throughput,concurrency,repro selects some; each one's exit status and
# wall time go to OUT/summary.json, and a failed stage does not stop the next):
#   env          GPU, driver, torch/CUDA/cuDNN versions, MPS, and whether CLIP weights, CIFAR-100 or
#                torchvision weights exist anywhere on the machine (a find bounded to 30 s)
#   tests        the CUDA tests (tests whose ids contain "cuda", in the files that skip without CUDA)
#   throughput   benchmarks/train_throughput.py: eager / vectorized MAML / channels_last / compiled,
#                episodes/s and the fraction of the measured compute limit
#   concurrency  benchmarks/concurrent_throughput.py: aggregate episodes/s of 1, 4 and 8 concurrent
#                ProtoNet training processes, with and without CUDA MPS where it starts
#   repro        benchmarks/reproduce_omniglot_gpu.sh (the Omniglot table, its own `fewshot report`),
#                with the training minutes that are left of TOTAL_MINUTES (default 9) after the
#                stages before it and REPRO_OVERHEAD_MINUTES (default 4.5: decoding, tests, evals,
#                report); TRAIN_MINUTES=N overrides that. The stages before it take about 4-5 minutes
#                (estimated, not yet measured on a GPU), which leaves the sweep about 1 minute of
#                training: for the table at its own budget run STAGES=repro in a call of its own.
#
# OUT gets at most 8 files, no folders (what a device call brings back): env.json, throughput.json,
# concurrency.json, report.md, results.tar.gz (the reproduction's metrics.json, overrides.yaml,
# train_history.jsonl, episode_accuracies.csv and report files per run, no checkpoints), log.txt
# (everything printed), summary.json (stages, exit statuses, wall times, git commit, command).
#
# --smoke: the same stages on the CPU with tiny budgets (synthetic images for the benchmarks, the
# reproduction's own --smoke), to check the script before spending GPU time; its numbers mean nothing.
#
# Environment: PYTHON (default python3), STAGES, TOTAL_MINUTES, TRAIN_MINUTES, REPRO_OVERHEAD_MINUTES,
# WORK (scratch, default a fresh /tmp/gpu_check.*), FEWSHOT_DATA_DIR / FEWSHOT_CACHE_DIR as for any run.
# benchmarks/gpu_carry.sh builds what a bare GPU machine needs (wheels, data) and prints the command.
set -uo pipefail
usage() { echo "usage: bash benchmarks/gpu_check.sh [--smoke] OUT" >&2; exit 2; }
smoke=0
case $# in
  1) out=$1 ;;
  2) [ "$1" = --smoke ] || usage; smoke=1; out=$2 ;;
  *) usage ;;
esac
[ "${out#-}" = "$out" ] || usage
cd "$(dirname "$0")/.." || exit 2
# This tree's code first, also for scripts under benchmarks/ (a carried fewshot_cli wheel may be older).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
stages=${STAGES:-env,tests,throughput,concurrency,repro}
total_minutes=${TOTAL_MINUTES:-9}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
work=${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$work"
exec > >(tee -a "$out/log.txt") 2>&1
start=$(date +%s)
deadline=$((start + ${total_minutes%.*} * 60))
export PYTHONUNBUFFERED=1
if [ $smoke = 1 ]; then device=cpu; else device=cuda; fi
# The benchmarks read Omniglot where it is, else they use random images of the same shape.
data=(--synthetic)
if [ $smoke = 0 ] && [ -d "${FEWSHOT_DATA_DIR:-data}/omniglot/omniglot-py/images_background" ]; then
  data=()
fi
echo "gpu_check: device=$device smoke=$smoke stages=$stages out=$out work=$work ($(date -u +%FT%TZ))"

statuses=()
stage() {  # stage NAME COMMAND...: run it if selected, record exit status and seconds
  local name=$1; shift
  case ",$stages," in *",$name,"*) ;; *) return 0 ;; esac
  local begun status=0
  begun=$(date +%s)
  echo; echo "=== $name ($(( begun - start )) s in) ==="
  "$@" || status=$?
  echo "=== $name: exit $status after $(( $(date +%s) - begun )) s ==="
  statuses+=("$name=$status:$(( $(date +%s) - begun ))")
}

env_stage() {
  local found
  # Bounded: a slow or huge file system must not eat the GPU time (-xdev: no /proc, /sys, mounts).
  # Test fixtures (pytest's temporary folders) are not weights: pruned, and sizes tell the rest.
  found=$(timeout 30 find / -xdev \( -path /proc -o -path /sys -o -path '/tmp/pytest-of-*' \) -prune -o \
          \( -name 'ViT-B-32.pt' -o -name 'ViT-*.pt' -o -name 'RN50*.pt' -o -name 'cifar-100-python*' \
             -o -path '*hub/checkpoints/*.pth' \) -print 2>/dev/null | head -50)
  nvidia-smi || true
  "$py" - "$out/env.json" "$found" <<'EOF'
import json, os, platform, shutil, subprocess, sys
import torch
path, found = sys.argv[1], [line for line in sys.argv[2].splitlines() if line]
def size(name):
    target = os.path.join(name, "train") if os.path.isdir(name) else name
    try:
        return os.path.getsize(target)
    except OSError:
        return 0
sized = {name: size(name) for name in found}
def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable: {error}"
versions = {}
for name in ("hydra-core", "omegaconf", "torchvision", "clip-anytorch", "tensorboard", "numpy", "pillow"):
    try:
        from importlib.metadata import version
        versions[name] = version(name)
    except Exception as error:  # not installed: say so
        versions[name] = f"missing ({type(error).__name__})"
env = {
    "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
    "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    "gpu_memory_gib": (torch.cuda.get_device_properties(0).total_memory / 2**30
                       if torch.cuda.is_available() else None),
    "nvidia_smi": run("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                      "--format=csv,noheader") if shutil.which("nvidia-smi") else "not found",
    "mps_control": shutil.which("nvidia-cuda-mps-control"),
    "git_commit": run("git", "rev-parse", "HEAD") or os.environ.get("FEWSHOT_GIT_COMMIT"),
    "packages": versions,
    "found_weights_and_data": sized,
    # Real files only: a CLIP model is 100s of MB, CIFAR-100's training pickle 150 MB (folder: its
    # 'train' file), a torchvision classifier's weights MBs; fakes and stubs are bytes.
    "clip_weights_found": [f for f, n in sized.items() if ("ViT-" in f or "RN50" in f) and n > 10**8],
    "cifar100_found": [f for f, n in sized.items() if "cifar-100-python" in f and n > 10**8],
    "torchvision_weights_found": [f for f, n in sized.items() if f.endswith(".pth") and n > 10**6],
}
open(path, "w").write(json.dumps(env, indent=1) + "\n")
print(json.dumps(env, indent=1))
EOF
}

tests_stage() {
  local files
  # The CUDA tests are the ones skipped without a GPU; their ids name cuda (e.g. [cuda]).
  mapfile -t files < <(grep -l "torch.cuda.is_available()" tests/test_*.py)
  echo "CUDA tests in: ${files[*]}"
  "$py" -m pytest -q -rs -p no:cacheprovider "${files[@]}" -k cuda
}

throughput_stage() {
  if [ $smoke = 1 ]; then
    "$py" benchmarks/train_throughput.py --device cpu "${data[@]}" --threads 1 \
      --cases protonet_5w1s15q,maml_5w1s_mb32 --variants eager,vectorized,channels_last,floor \
      --seconds 0.5 --warmup 1 --note "gpu_check --smoke" --out "$out/throughput.json"
  else
    # One compiled case: each compile costs tens of seconds of the 9 minutes.
    "$py" benchmarks/train_throughput.py --device cuda "${data[@]}" --seconds 2 --rounds 2 --warmup 5 \
      --compiled-cases protonet_5w1s15q --note "gpu_check" --out "$out/throughput.json"
  fi
}

concurrency_stage() {
  if [ $smoke = 1 ]; then
    "$py" benchmarks/concurrent_throughput.py --device cpu "${data[@]}" --processes 1,2 --seconds 1 \
      --out "$out/concurrency.json"
  else
    "$py" benchmarks/concurrent_throughput.py --device cuda "${data[@]}" --processes 1,4,8 --seconds 5 \
      --mps --out "$out/concurrency.json"
  fi
}

repro_stage() {
  local script=benchmarks/reproduce_omniglot_gpu.sh minutes status=0
  if [ ! -f $script ]; then
    echo "$script does not exist in this checkout: the reproduction sweep is skipped"
    return 3
  fi
  # A copy runs: bash reads a script while running it, so an edit of the checkout's file during the
  # sweep (seen here, with another session editing it) would run half of each version.
  cp $script "$work/reproduce_omniglot_gpu.sh"
  script=$work/reproduce_omniglot_gpu.sh
  if [ $smoke = 1 ]; then
    PYTHON=$py WORK=$work/repro bash $script "$work/repro_out" --smoke || status=$?
  else
    # The training minutes left: what remains of TOTAL_MINUTES minus the sweep's fixed costs.
    minutes=${TRAIN_MINUTES:-$("$py" -c "import sys; left = ($deadline - $(date +%s)) / 60 \
      - float(sys.argv[1]); print(f'{max(left, 1.0):.1f}')" "${REPRO_OVERHEAD_MINUTES:-4.5}")}
    echo "reproduction: TRAIN_MINUTES=$minutes"
    PYTHON=$py WORK=$work/repro TRAIN_MINUTES=$minutes bash $script "$work/repro_out" || status=$?
  fi
  if [ -d "$work/repro_out" ]; then
    if [ ! -f "$work/repro_out/report.md" ] && [ -d "$work/repro/runs" ]; then
      "$py" -m fewshot_cli report "$work/repro/runs" --out "$work/repro_out" || true
    fi
    [ -f "$work/repro_out/report.md" ] && cp "$work/repro_out/report.md" "$out/report.md"
    tar czf "$out/results.tar.gz" -C "$work" repro_out
  fi
  return $status
}

stage env env_stage
stage tests tests_stage
stage throughput throughput_stage
stage concurrency concurrency_stage
stage repro repro_stage

end=$(date +%s)
"$py" - "$out/summary.json" "$smoke" "$device" "$((end - start))" "$work" "$*" "${statuses[@]}" <<'EOF'
import json, os, subprocess, sys
path, smoke, device, wall, work, arguments, *statuses = sys.argv[1:]
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
commit = commit or os.environ.get("FEWSHOT_GIT_COMMIT")  # the device copy has no .git
stages = {}
for entry in statuses:
    name, rest = entry.split("=", 1)
    status, seconds = rest.split(":")
    stages[name] = {"exit_status": int(status), "wall_s": int(seconds)}
summary = {"script": "benchmarks/gpu_check.sh", "command": f"bash benchmarks/gpu_check.sh {arguments}",
           "smoke": smoke == "1", "device": device, "git_commit": commit or None, "wall_s": int(wall),
           "work_dir": work, "stages": stages}
open(path, "w").write(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
EOF
failed=0
for entry in "${statuses[@]}"; do
  rest=${entry#*=}; [ "${rest%%:*}" = 0 ] || failed=$((failed + 1))
done
echo "gpu_check: $failed stage(s) failed; $(( end - start )) s; files in $out: $(ls "$out" | tr '\n' ' ')"
[ $failed = 0 ]
