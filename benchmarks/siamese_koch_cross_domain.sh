#!/usr/bin/env bash
# Koch et al. 2015 on Omniglot (105x105, BCE, affine distortions), scored on 20-way one-shot tasks
# within each evaluation alphabet (paper 92.0%) and across domains on MNIST 10-way one-shot (paper
# 70.3%); then the reverse: the same twin trained on MNIST, scored on the Omniglot tasks.
#
#   bash benchmarks/siamese_koch_cross_domain.sh OUT_DIR OMNIGLOT_MINUTES MNIST_MINUTES [extra overrides]
#
# Training stops at trainer.max_episodes or after the given minutes, whichever is first (the paper
# budget is a GPU's: pass e.g. 240 60 device=cuda). EVAL_EPISODES (default 1000) sets every test.
# A scaled-down variant that fits a CPU: ... 8 4 backbone=conv4 dataset.image_size=28 optimizer.lr=1e-3
set -euo pipefail
out=$1; omniglot_minutes=$2; mnist_minutes=$3; shift 3
py=${PYTHON:-python}
episodes=${EVAL_EPISODES:-1000}
mkdir -p "$out"
# The extra overrides that also apply to the eval steps: data, device and paths. The model, optimiser
# and trainer come from the checkpoint (eval has no optimizer/trainer keys).
shared=()
for arg in "$@"; do
  case $arg in dataset.*|device=*|device.*|paths.*) shared+=("$arg") ;; esac
done
start=$(date +%s)
val=(trainer.val_every=500 trainer.val_episodes=200 trainer.checkpoint_every=250 trainer.progress_bar=false)
mnist_10w1s=(dataset=mnist dataset.classes_split=all dataset.image_size=105 eval.within_group=false
             eval_episodes.n_way=10 eval_episodes.n_shot=1 eval_episodes.n_query=1 "eval.n_episodes=$episodes")
omniglot_20w1s=(dataset=omniglot dataset.split_scheme=lake dataset.image_size=105 dataset.rotations=false
                eval.within_group=true eval_episodes.n_way=20 eval_episodes.n_shot=1 eval_episodes.n_query=1
                "eval.n_episodes=$episodes")
step() {  # step NAME fewshot-arguments...: run one command, log to OUT/NAME.out, print its test line
  local name=$1; shift
  echo "== $name"
  "$py" -m fewshot_cli "$@" > "$out/$name.out" 2>&1 || { echo "   failed: see $out/$name.out"; return 1; }
  grep -h "test/acc\|ROC AUC" "$out/$name.out" | sed 's/^/   /'
}

step train_omniglot train experiment=siamese_koch_omniglot "trainer.max_minutes=$omniglot_minutes" \
  "eval.n_episodes=$episodes" "${val[@]}" "hydra.run.dir=$out/train_omniglot" "$@"
step omniglot_on_mnist eval "ckpt_path=$out/train_omniglot/checkpoints/best.pt" "${mnist_10w1s[@]}" \
  "hydra.run.dir=$out/omniglot_on_mnist" ${shared[@]+"${shared[@]}"}

# The reverse: the same twin and loss trained on all ten MNIST digits (50k training images; the 10k
# validation images pick best.pt), then scored on the Omniglot evaluation alphabets.
step train_mnist train method=siamese backbone=koch method.loss=bce method.augment=true \
  method.pairs_per_episode=128 optimizer=adam optimizer.lr=6e-5 scheduler=constant \
  train_episodes.n_way=10 train_episodes.n_shot=3 train_episodes.n_query=3 "${mnist_10w1s[@]}" \
  trainer.max_episodes=50000 "trainer.max_minutes=$mnist_minutes" "${val[@]}" \
  "hydra.run.dir=$out/train_mnist" "$@"
step mnist_on_omniglot eval "ckpt_path=$out/train_mnist/checkpoints/best.pt" "${omniglot_20w1s[@]}" \
  "hydra.run.dir=$out/mnist_on_omniglot" ${shared[@]+"${shared[@]}"}
echo "total wall time: $(( $(date +%s) - start )) s"
"$py" -m fewshot_cli report "$out"
