"""Figures of a training run: the loss curve and a dissimilarity grid of test pairs (matplotlib, Agg).

The grid is the classic Siamese-tutorial figure: each test pair shown side by side with the model's
predicted dissimilarity and the truth underneath. PNGs are written with `engine.figure_files.save_figure`,
which also logs them to TensorBoard when a writer is given.
"""

import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def read_history(history_path: Path) -> list[dict]:
    """The records of a run's train_history.jsonl (one JSON object per line)."""
    if not history_path.is_file():
        return []
    return [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]


def loss_curve_figure(history: list[dict]) -> Figure:
    """Training loss (left axis) and validation accuracy (right axis) against episodes."""
    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    train = [(r["episode"], r["train/loss"]) for r in history if "train/loss" in r]
    if train:
        # Markers: a history of one record has no segment to draw, only a point. At most ~50 of
        # them, so a long run's curve stays a line.
        ax.plot(*zip(*train, strict=True), color="tab:blue", label="train loss", marker="o",
                markersize=3, markevery=max(1, len(train) // 50))
    ax.set_xlabel("episode")
    ax.set_ylabel("training loss", color="tab:blue")
    val = [(r["episode"], r["val/acc"]) for r in history if "val/acc" in r]
    if val:
        twin = ax.twinx()
        twin.plot(*zip(*val, strict=True), color="tab:orange", marker="o", label="val accuracy")
        twin.set_ylabel("validation accuracy (%)", color="tab:orange")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _display(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """uint8 [C, H, W] -> an array imshow accepts, and its colormap."""
    array = image.detach().cpu().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


def dissimilarity_grid(left: torch.Tensor, right: torch.Tensor, distances: torch.Tensor,
                       different: torch.Tensor, threshold: float | None = None,
                       columns: int = 4) -> Figure:
    """Pairs of images side by side with their predicted dissimilarity.

    Args:
        left, right: uint8 [P, C, H, W] the two images of each pair.
        distances: [P] predicted dissimilarities (lower = more alike).
        different: [P] 1.0 where the pair shows two classes.
        threshold: decision threshold; when given, each caption says whether the call is right.
        columns: pairs per row.
    """
    n = left.shape[0]
    rows = (n + columns - 1) // columns
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows))
    FigureCanvasAgg(figure)
    for i in range(n):
        ax = figure.add_subplot(rows, columns, i + 1)
        a, cmap = _display(left[i])
        b, _ = _display(right[i])
        gap = np.full((a.shape[0], max(2, a.shape[1] // 10), *a.shape[2:]), 255, dtype=a.dtype)
        ax.imshow(np.concatenate([a, gap, b], axis=1), cmap=cmap, vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        truth = "different" if float(different[i]) > 0.5 else "same"
        caption = f"dissimilarity {float(distances[i]):.3g}\n(truth: {truth})"
        colour = "black"
        if threshold is not None:
            called_same = float(distances[i]) <= threshold
            colour = "tab:green" if called_same == (truth == "same") else "tab:red"
        ax.set_xlabel(caption, fontsize=9, color=colour)
    figure.suptitle("Test pairs and predicted dissimilarity", fontsize=11)
    figure.tight_layout()
    return figure
