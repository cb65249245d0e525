"""Print the README results table from a reproduce_protonet_omniglot.sh output folder.

    python benchmarks/collect_protonet_results.py outputs/reproduce_protonet_omniglot
"""

import json
import sys
from pathlib import Path

PAPER = {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9}  # Snell et al. 2017, Table 1


def main(root: Path) -> None:
    print("| setting | ours (95% CI, episodes) | paper | difference | episodes trained "
          "| train wall time | device |")
    print("|---|---|---|---|---|---|---|")
    for setting, paper in PAPER.items():
        shot = setting.split("w")[1].rstrip("s")
        evaluation = json.loads((root / f"eval_{setting}" / "metrics.json").read_text())
        training = json.loads((root / f"train_{shot}shot" / "metrics.json").read_text())
        print(f"| {setting} | {evaluation['test/acc']:.2f} ± {evaluation['test/acc_ci95']:.2f} "
              f"({evaluation['test/n_episodes']}) | {paper} | {evaluation['test/acc'] - paper:+.2f} | "
              f"{training['train/episodes']} (best at {training['val/best_episode']}) | "
              f"{training['train/wall_time_s'] / 60:.1f} min | {training['device_name']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
