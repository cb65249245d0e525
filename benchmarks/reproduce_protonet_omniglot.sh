#!/usr/bin/env bash
# Reproduce Snell et al. 2017 (Prototypical Networks) on Omniglot, Vinyals split.
#
# As in the paper, one model is trained per shot (60-way, 5 queries, Adam 1e-3 halved every 2000
# episodes) and each is tested on 1000 5-way and 1000 20-way episodes with 15 queries per class.
#
#   bash benchmarks/reproduce_protonet_omniglot.sh [OUT_DIR] [extra overrides...]
#   PARALLEL=1 bash benchmarks/reproduce_protonet_omniglot.sh outputs/repro device=cuda
#
# PARALLEL=1 trains the two models at once (worth it on a GPU, not on a 2-core CPU).
set -euo pipefail
out=${1:-outputs/reproduce_protonet_omniglot}
shift || true
py=${PYTHON:-python}
train() {  # $1 = shot, then extra overrides
  local shot=$1; shift
  "$py" -m fewshot_cli train "experiment=protonet_omniglot_5w${shot}s" "hydra.run.dir=$out/train_${shot}shot" \
    trainer.progress_bar=false "$@"
}
start=$(date +%s)
if [ "${PARALLEL:-0}" = 1 ]; then
  train 1 "$@" > "$out.train_1shot.out" 2>&1 &
  train 5 "$@" > "$out.train_5shot.out" 2>&1 &
  mkdir -p "$out"; wait
else
  train 1 "$@"; train 5 "$@"
fi
# eval takes only the device, paths and eval.* overrides; the rest is in the checkpoint.
eval_args=()
for arg in "$@"; do case $arg in device=*|device.*|paths.*|eval.*) eval_args+=("$arg");; esac; done
for shot in 1 5; do
  for way in 5 20; do
    "$py" -m fewshot_cli eval "ckpt_path=$out/train_${shot}shot/checkpoints/best.pt" \
      "eval_episodes.n_way=$way" "eval_episodes.n_shot=$shot" "hydra.run.dir=$out/eval_${way}w${shot}s" \
      ${eval_args[@]+"${eval_args[@]}"}
  done
done
echo "total wall time: $(( $(date +%s) - start )) s"
"$py" benchmarks/collect_protonet_results.py "$out"
