#!/usr/bin/env bash
# Train the episodic methods' Omniglot presets side by side under one wall-clock budget, then print
# the `fewshot report` table (ours vs the papers).
#
#   bash benchmarks/reproduce_methods_omniglot.sh OUT_DIR MINUTES "preset preset ..." [extra overrides]
#   bash benchmarks/reproduce_methods_omniglot.sh outputs/methods 6.5 \
#        "matchingnet_omniglot_5w1s relationnet_omniglot_5w1s maml_omniglot_5w1s" device=cuda
#
# Every preset trains in its own process (all at once: meant for a GPU with many CPU cores) until its
# trainer.max_episodes or MINUTES, whichever comes first, then tests best.pt on its own setting.
set -euo pipefail
out=$1; minutes=$2; presets=$3; shift 3
py=${PYTHON:-python}
mkdir -p "$out"
start=$(date +%s)
for preset in $presets; do
  "$py" -m fewshot_cli train "experiment=$preset" "hydra.run.dir=$out/$preset" trainer.progress_bar=false \
    "trainer.max_minutes=$minutes" "$@" > "$out/$preset.out" 2>&1 &
done
status=0
wait || status=$?
echo "total wall time: $(( $(date +%s) - start )) s (exit status $status)"
grep -h "test/acc\|max_minutes\|ERROR" "$out"/*.out || true
"$py" -m fewshot_cli report "$out"
