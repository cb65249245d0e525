"""Each test episode's accuracy, kept beside metrics.json so that two runs can be paired.

Test episodes are a pure function of (eval_seed, split, episode index) and the episode shape
(data/sampler.py), so every method scored with the same shape on the same split is scored on the
same episodes. A paired comparison (`fewshot report --paired`) takes the difference episode by
episode, which removes the variation of episode difficulty that two independent CIs both carry.
It is only valid when the episodes really are the same: each episode's fingerprint is a hash of
the split-level class and image indices it drew, and metrics.json carries a hash of all of them.
"""

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.confidence import AccuracyEstimate

EPISODES_FILE = "episode_accuracies.csv"
COLUMNS = ("episode", "seed", "fingerprint", "accuracy")


def episode_fingerprints(sampler: EpisodeSampler, n_episodes: int) -> list[str]:
    """16-hex-digit hash of episode i's drawn classes and images, i = 0..n_episodes-1.

    What is hashed: the episode shape and, per class in episode order, the split-level class index
    and the split-level image rows (support first, then query). Two samplers give equal fingerprints
    exactly when they draw the same images into the same support/query places (up to hash
    collisions): another eval_seed, split, class split, shape or within-group setting changes them.
    Drawing the indices again is cheap (CPU generators, no images gathered).
    """
    prints = []
    for index in range(n_episodes):
        image_index, class_pick = sampler.sample_indices(index)
        class_ids = sampler.class_ids[class_pick]
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{sampler.n_way},{sampler.n_shot},{sampler.n_query};".encode())
        digest.update(class_ids.to(dtype=image_index.dtype).numpy().tobytes())
        digest.update(image_index.contiguous().numpy().tobytes())
        prints.append(digest.hexdigest())
    return prints


def run_fingerprint(fingerprints: list[str]) -> str:
    """One hash of a run's episode fingerprints in order (metrics.json's test/episodes_fingerprint)."""
    return hashlib.blake2b(",".join(fingerprints).encode(), digest_size=8).hexdigest()


def write_episode_accuracies(output_dir: Path, sampler: EpisodeSampler,
                             estimate: AccuracyEstimate) -> dict[str, Any]:
    """Write output_dir/episode_accuracies.csv and return the metrics.json entries that name it.

    The file has one row per test episode: its index, its 64-bit generator seed (from eval_seed,
    the split and the index), its fingerprint, and its accuracy as a fraction in [0, 1] (correct
    queries / queries, written in full). 1000 episodes take about 50 kB.

    Raises:
        ValueError: `estimate` has no per-episode accuracies.
    """
    if estimate.per_episode is None:
        raise ValueError("the accuracy estimate carries no per-episode accuracies")
    # Each accuracy is correct / (n_way * n_query) queries: written as that exact fraction rather
    # than the float32 it was averaged in (0.48, not 0.47999998927116394).
    queries = sampler.n_way * sampler.n_query
    accuracies = [round(value * queries) / queries for value in estimate.per_episode.tolist()]
    fingerprints = episode_fingerprints(sampler, len(accuracies))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for index, (fingerprint, value) in enumerate(zip(fingerprints, accuracies, strict=True)):
        writer.writerow([index, sampler.seed_of(index), fingerprint, repr(float(value))])
    (output_dir / EPISODES_FILE).write_text(buffer.getvalue())
    return {
        "test/episodes_file": EPISODES_FILE,
        "test/episodes_fingerprint": run_fingerprint(fingerprints),
        "test/eval_seed": sampler.seed,
    }


def read_episode_accuracies(path: Path) -> tuple[list[str], list[float]]:
    """(fingerprints, accuracies as fractions) of an episode_accuracies.csv, in episode order.

    Raises:
        OSError: the file cannot be read.
        ValueError: a row is malformed or the episodes are not numbered 0, 1, 2, ...
    """
    fingerprints, accuracies = [], []
    with path.open(newline="") as handle:
        for expected, row in enumerate(csv.DictReader(handle)):
            if int(row["episode"]) != expected:
                raise ValueError(f"{path}: episode {row['episode']} where {expected} was expected")
            fingerprints.append(row["fingerprint"])
            accuracies.append(float(row["accuracy"]))
    return fingerprints, accuracies
