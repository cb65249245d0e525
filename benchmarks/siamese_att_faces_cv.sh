#!/usr/bin/env bash
# Siamese (contrastive, normalised contrastive, BCE) vs ProtoNet vs an untrained Conv-4 on AT&T faces,
# 4-fold cross-validated over people (10 held-out test people and 5 validation people per fold, 25
# training people), then one summary table.
#
#   bash benchmarks/siamese_att_faces_cv.sh OUT_DIR EPISODES [extra overrides, e.g. dataset.image_size=50]
#
# Each model is one `-m dataset.fold=0,1,2,3` sweep in OUT_DIR/<model>/. With 5-10 test people the
# accuracy depends more on who is held out than on the episodes, hence the folds. ONLY="bce protonet"
# reruns just those models (the summary then covers every model folder already in OUT_DIR).
set -euo pipefail
out=$1; episodes=$2; shift 2
py=${PYTHON:-python}
mkdir -p "$out"
folds=(dataset.fold=0,1,2,3 dataset.heldout=10 dataset.val_people=5 eval.n_episodes=600)
train=("trainer.max_episodes=$episodes" trainer.val_every=100 trainer.checkpoint_every=100
       trainer.val_episodes=100 trainer.progress_bar=false)
episodes5w1s=(eval_episodes.n_way=5 eval_episodes.n_shot=1 eval_episodes.n_query=9)
sweep() {  # sweep NAME SUBCOMMAND overrides...
  local name=$1 command=$2; shift 2
  [[ -z ${ONLY:-} || " $ONLY " == *" $name "* ]] || return 0
  echo "== $name"
  "$py" -m fewshot_cli "$command" -m "$@" "${folds[@]}" "hydra.sweep.dir=$out/$name" > "$out/$name.out" 2>&1 \
    || echo "   failed: see $out/$name.out"
}
start=$(date +%s)
sweep untrained eval method=protonet backbone=conv4 dataset=att_faces "${episodes5w1s[@]}" "$@"
sweep contrastive_m2 train experiment=siamese_att_faces method.margin=2.0 method.normalize=false "${train[@]}" "$@"
sweep contrastive_unit_m1 train experiment=siamese_att_faces method.margin=1.0 method.normalize=true "${train[@]}" "$@"
sweep bce train experiment=siamese_att_faces method.loss=bce "${train[@]}" "$@"
sweep protonet train method=protonet dataset=att_faces optimizer=adam optimizer.lr=5e-4 scheduler=constant \
  train_episodes.n_way=5 train_episodes.n_shot=1 train_episodes.n_query=5 "${episodes5w1s[@]}" "${train[@]}" "$@"
echo "total wall time: $(( $(date +%s) - start )) s"
models=()
for name in untrained contrastive_m2 contrastive_unit_m1 bce protonet; do
  [[ -d $out/$name ]] && models+=("$out/$name")
done
"$py" "$(dirname "$0")/summarize_folds.py" "${models[@]}"
