"""Why does Koch-twin training lower 20-way within-alphabet accuracy? Two shortcut checks.

For the first 60 validation episodes of `experiment=siamese_koch_omniglot` (20-way one-shot, one
alphabet per episode) and each model (`untrained` = the preset's initialisation with seed 0, or a
checkpoint path), print the accuracy, how often the best-scored support is also the support whose
total ink is closest to the query's (chance 5%: an ink-amount shortcut would raise it), and the
largest number of an episode's 20 queries won by one support (hubness; 1 would be a perfect model).

    FEWSHOT_DATA_DIR=... python benchmarks/diagnose_ranking.py untrained path/to/last.pt
"""

import sys

import torch
from hydra import compose, initialize_config_dir

from fewshot_cli.config import schema  # noqa: F401  (registers the structured configs)
from fewshot_cli.config.locate import source_config_dir
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.tasks.build import build_dataset, build_method, build_sampler

EPISODES = 60


def main(models: list[str]) -> None:
    with initialize_config_dir(str(source_config_dir()), version_base=None):
        cfg = compose("train", ["experiment=siamese_koch_omniglot", "device=cpu"])
    ctx = DeviceContext.from_config(cfg.device)
    dataset = build_dataset(cfg.dataset)
    sampler = build_sampler(dataset, "val", cfg.eval_episodes, cfg.eval_seed, ctx, "eval_episodes",
                            within_group=True)
    for name in models:
        torch.manual_seed(0)
        model = build_method(cfg.method, ctx).eval()
        if name != "untrained":
            model.load_state_dict(torch.load(name, map_location="cpu", weights_only=False)["model"])
        correct = ink_match = hub = total = 0
        with torch.no_grad():
            for index in range(EPISODES):
                episode = sampler.episode(index)
                scores = model.similarity_matrix(model.embed(episode.query_images),
                                                 model.embed(episode.support_images))  # [Q, S]
                best = scores.argmax(dim=1)
                ink_support = episode.support_images.flatten(1).sum(dim=1)
                ink_query = episode.query_images.flatten(1).sum(dim=1)
                closest_ink = (ink_query[:, None] - ink_support[None, :]).abs().argmin(dim=1)
                correct += int((episode.support_labels[best] == episode.query_labels).sum())
                ink_match += int((best == closest_ink).sum())
                hub += int(torch.bincount(best, minlength=scores.shape[1]).max())
                total += len(best)
        print(f"{name}: accuracy {100 * correct / total:.1f}%, best support = closest ink "
              f"{100 * ink_match / total:.1f}% (chance 5%), most queries won by one support "
              f"{hub / EPISODES:.2f} of 20")


if __name__ == "__main__":
    main(sys.argv[1:])
