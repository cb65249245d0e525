#!/usr/bin/env bash
# Build what a bare GPU machine (the lent nvidia-h200: torch, torchvision, numpy, pillow, tqdm,
# tensorboard, matplotlib and regex installed, no network) needs to run benchmarks/gpu_check.sh from
# this checkout, then print the exact device command:
#
#   bash benchmarks/gpu_carry.sh            # then pass the printed command and carry to the device
#
#   .whl/     wheels of what that machine lacks (hydra-core, omegaconf, antlr4-python3-runtime,
#             clip-anytorch, ftfy, wcwidth, setuptools<82 for clip's pkg_resources) at the versions
#             installed here, and this project's own wheel (pip wheel --no-deps .). All pure Python:
#             built or downloaded here with pip, they install there with --no-index.
#   .devdata/ data.tar.gz: Omniglot (PNGs and the Vinyals split files) and MNIST's raw files from
#             $FEWSHOT_DATA_DIR, with their modification times (tar --format=posix keeps them to the
#             nanosecond), unpacked there at the same path, so the decode-cache keys (root, relative
#             paths, sizes, mtimes: fewshot_cli/data/cache.py) are the ones computed here; and
#             cache/omniglot-<key>.pt, the decoded 28x28 Omniglot entry of that tree, so that runs
#             there skip decoding it. Lake's and MNIST's 105x105 entries (350 and 740 MB) do not fit
#             the 64 MiB a call carries: they are decoded there from the PNGs (seconds on 16 cores).
#
# Both folders are listed in .git/info/exclude, so git ignores them and only `carry` sends them.
# Environment: PYTHON (default python), FEWSHOT_DATA_DIR (default ../shared/data), FEWSHOT_CACHE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
data=$(cd "${FEWSHOT_DATA_DIR:-../shared/data}" && pwd)
cache=${FEWSHOT_CACHE_DIR:-$HOME/.cache/fewshot_cli}
limit=$((64 * 1024 * 1024))

mkdir -p .git/info
for path in /.whl/ /.devdata/; do
  grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done
rm -rf .whl .devdata
mkdir -p .whl .devdata/cache

# The versions installed here, so the device runs what the tests here ran.
packages=()
for name in hydra-core omegaconf antlr4-python3-runtime clip-anytorch ftfy wcwidth setuptools; do
  version=$("$py" -c "from importlib.metadata import version; print(version('$name'))")
  packages+=("$name==$version")
done
echo "wheels: ${packages[*]} and this project"
"$py" -m pip wheel -q --no-deps -w .whl "${packages[@]}"
"$py" -m pip wheel -q --no-deps -w .whl .

tar --format=posix -czf .devdata/data.tar.gz -C "$data" omniglot/omniglot-py omniglot/splits mnist/MNIST/raw
# The decoded entry this tree maps to (the path fewshot_cli computes for dataset=omniglot, 28x28).
entry=$("$py" - "$data" "$cache" <<'EOF'
import sys
from fewshot_cli.data.omniglot import Omniglot
data, cache = sys.argv[1:]
dataset = Omniglot(root=data, cache_dir=cache, download=False)
dataset.load_split("train")  # builds the entry if it is not there yet
from fewshot_cli.data.cache import cache_file, file_fingerprint
from fewshot_cli.data.omniglot import _list_characters
folder = dataset._find_or_download()
files, _, _ = _list_characters(folder)
key = {"dataset": "omniglot", "image_size": dataset.image_size, **file_fingerprint(folder, files)}
print(cache_file(cache, "omniglot", key))
EOF
)
cp "$entry" .devdata/cache/

# The device copy has no .git: the commit travels as a file (with a flag for uncommitted changes).
commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || commit="$commit+uncommitted changes"
echo "$commit" > .devdata/commit.txt

carried=$(du -cb .whl .devdata | tail -1 | cut -f1)
echo "carried: $((carried / 1024 / 1024)) MiB in .whl and .devdata (limit 64 MiB with the working tree)"
ls -la .whl .devdata .devdata/cache
if [ "$carried" -gt "$limit" ]; then
  echo "over the 64 MiB a device call carries" >&2
  exit 1
fi

prefix="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1; mkdir -p $data && tar -xzf .devdata/data.tar.gz -C $data && export FEWSHOT_DATA_DIR=$data FEWSHOT_CACHE_DIR=/tmp/fewshot_cache PYTHON=python3 FEWSHOT_GIT_COMMIT=\"\$(cat .devdata/commit.txt)\" && mkdir -p /tmp/fewshot_cache && cp .devdata/cache/*.pt /tmp/fewshot_cache/ || exit 1;"
cat <<EOF

Device call (the run tool; timeout_s 570 leaves a rerun no time: with 15 device minutes in all,
split the stages over two calls if one fails, e.g. STAGES=repro for the second):
  carry:   [".whl", ".devdata"]
  command: $prefix bash benchmarks/gpu_check.sh \$OUT
Smoke test here first: bash benchmarks/gpu_check.sh --smoke /tmp/gpu_smoke
EOF
