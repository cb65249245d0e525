"""Writing a matplotlib figure of a run (CLIP's figures, the loss curve, the dissimilarity grid) as a
PNG, and the same pixels to TensorBoard when a writer is given."""

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def save_figure(figure: Figure, path: Path, writer: Any = None, tag: str | None = None) -> Path:
    """Write `figure` as a PNG at `path` and, given a SummaryWriter, log it as image `tag`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    if writer is not None:
        canvas = figure.canvas
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        writer.add_image(tag or path.stem, pixels, 0, dataformats="HWC")
    return path
