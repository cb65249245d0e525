"""The two figures of CLIP's "Interacting with CLIP" notebook, drawn with matplotlib (no pyplot).

* `similarity_figure`: cosine similarities between a handful of images and text descriptions, as a
  matrix with one row per description, the images shown along the top axis, values in the cells.
* `top5_figure`: every image beside a horizontal bar chart of its five most probable classes.

PNGs are written with `engine.figure_files.save_figure`. The Agg canvas is used directly, so nothing
depends on a display or on pyplot's global state.
"""

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _as_display(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """uint8 [C, H, W] -> ([H, W] or [H, W, 3] array, colormap)."""
    array = image.detach().cpu().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


def similarity_figure(
    images: torch.Tensor,
    texts: list[str],
    similarity: torch.Tensor,
    title: str = "Cosine similarity between text and image features",
) -> Figure:
    """Matrix of cos(text_t, image_i) with the images along the top and values printed in cells.

    Args:
        images: uint8 [N, C, H, W] (C = 1 or 3), shown above the columns.
        texts: T descriptions, one per row.
        similarity: [T, N] cosine similarities.
    """
    sims = similarity.detach().float().cpu().numpy()
    n_texts, n_images = sims.shape
    if len(texts) != n_texts or images.shape[0] != n_images:
        raise ValueError(f"similarity {sims.shape} does not match {len(texts)} texts x "
                         f"{images.shape[0]} images")
    figure = Figure(figsize=(1.5 + 1.05 * n_images + 0.1 * max(len(t) for t in texts),
                             2.2 + 1.0 * n_texts))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    low, high = float(sims.min()), float(sims.max())
    ax.imshow(sims, vmin=low, vmax=high if high > low else low + 1e-6, cmap="viridis")
    ax.set_yticks(range(n_texts), labels=texts, fontsize=12)
    ax.set_xticks([])
    for i in range(n_images):
        display, cmap = _as_display(images[i])
        ax.imshow(display, extent=(i - 0.5, i + 0.5, -1.6, -0.6), origin="upper", cmap=cmap,
                  vmin=0, vmax=255, interpolation="nearest")
    middle = (low + high) / 2
    for row in range(n_texts):
        for col in range(n_images):
            value = sims[row, col]
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=11,
                    color="black" if value > middle else "white")
    for side in ("left", "top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(-0.5, n_images - 0.5)
    ax.set_ylim(n_texts - 0.5, -1.6)
    ax.set_title(title, fontsize=14)
    figure.tight_layout()
    return figure


def top5_figure(
    images: torch.Tensor,
    true_names: list[str],
    top_names: list[list[str]],
    top_probs: torch.Tensor,
    columns: int = 2,
) -> Figure:
    """Each image beside horizontal bars of its top-5 class probabilities (true class in orange).

    Args:
        images: uint8 [N, C, H, W].
        true_names: N true class names (image titles).
        top_names: N lists of the k best class names, best first.
        top_probs: [N, k] their probabilities.
    """
    probs = top_probs.detach().float().cpu().numpy()
    n = images.shape[0]
    rows = (n + columns - 1) // columns
    figure = Figure(figsize=(8.0 * columns, 2.6 * rows))
    FigureCanvasAgg(figure)
    for i in range(n):
        ax_image = figure.add_subplot(rows, 2 * columns, 2 * i + 1)
        display, cmap = _as_display(images[i])
        ax_image.imshow(display, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ax_image.set_title(true_names[i], fontsize=10)
        ax_image.axis("off")
        ax_bars = figure.add_subplot(rows, 2 * columns, 2 * i + 2)
        positions = np.arange(len(top_names[i]))
        colours = ["tab:orange" if name == true_names[i] else "tab:blue" for name in top_names[i]]
        ax_bars.barh(positions, probs[i], color=colours)
        ax_bars.invert_yaxis()
        ax_bars.set_axisbelow(True)
        ax_bars.grid(axis="x", alpha=0.3)
        ax_bars.set_yticks(positions, labels=top_names[i], fontsize=9)
        ax_bars.set_xlim(0.0, 1.0)
        ax_bars.set_xlabel("probability", fontsize=9)
    figure.tight_layout()
    return figure
