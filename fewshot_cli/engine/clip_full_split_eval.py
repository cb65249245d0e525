"""Zero-shot classification of a whole split (the protocol behind CLIP's benchmark numbers).

Radford et al. 2021 report zero-shot top-1 on full test sets (CIFAR-100: all 10,000 test images, 100
classes), not on episodes. `classify_split` runs every image of an ImageSplit through a CLIP method in
batches, scores it against the text classifiers of all the split's classes, and keeps top-1, top-5
and per-class accuracy plus each image's five best classes (for the figures).
"""

from dataclasses import dataclass

import torch
from tqdm import tqdm

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.methods.clip_zero_shot import CLIPZeroShot

TOP_K = 5


@dataclass(frozen=True)
class ZeroShotResult:
    """Accuracies in percent over the `n_images` images of one split.

    Attributes:
        top1, top5: accuracy of the best / any of the five best classes.
        per_class: float64 [K] top-1 accuracy of each class (NaN for classes without images).
        top5_classes: int64 [N, 5] the five best class indices of every image, best first.
        top5_probs: float32 [N, 5] their softmax probabilities over all K classes.
    """

    top1: float
    top5: float
    per_class: torch.Tensor
    top5_classes: torch.Tensor
    top5_probs: torch.Tensor
    n_images: int

    @property
    def mean_per_class(self) -> float:
        """Mean of the per-class accuracies (balanced accuracy)."""
        return float(self.per_class[~self.per_class.isnan()].mean())


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """bool [B]: whether labels[i] is among the k highest logits of row i ([B, K] logits)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


@torch.no_grad()
def classify_split(
    model: CLIPZeroShot,
    split: ImageSplit,
    batch_size: int = 256,
    progress_bar: bool = True,
) -> ZeroShotResult:
    """Zero-shot accuracy of `model` on every image of `split`, against all of its classes.

    Images travel to the model's device one batch at a time as uint8 and become [0, 1] floats there
    (CLIP's preprocessing then runs on the device); text classifiers are built once for all classes.
    """
    model.eval()
    device = model.device
    classes = model.text_classifier(split.class_names)  # [K, D]
    n, k = split.images.shape[0], len(split.class_names)
    correct1 = torch.zeros(n, dtype=torch.bool)
    correct5 = torch.zeros(n, dtype=torch.bool)
    top_classes = torch.empty(n, min(TOP_K, k), dtype=torch.long)
    top_probs = torch.empty(n, min(TOP_K, k), dtype=torch.float32)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, total=len(starts), desc=f"zero-shot {split.name}", unit="batch",
                      disable=None if progress_bar else True, mininterval=1, leave=False):
        stop = min(start + batch_size, n)
        pixels = split.images[start:stop].to(device, non_blocking=True).float().div_(255.0)
        labels = split.labels[start:stop].to(device)
        logits = model.logit_scale * model.encode_images(pixels) @ classes.T  # [B, K]
        probs, best = logits.softmax(dim=-1).topk(min(TOP_K, k), dim=-1)
        correct1[start:stop] = (best[:, 0] == labels).cpu()
        correct5[start:stop] = topk_correct(logits, labels, TOP_K).cpu()
        top_classes[start:stop] = best.cpu()
        top_probs[start:stop] = probs.float().cpu()
    hits = torch.bincount(split.labels[correct1], minlength=k).double()
    counts = torch.bincount(split.labels, minlength=k).double()
    per_class = torch.where(counts > 0, 100.0 * hits / counts.clamp_min(1), torch.nan)
    return ZeroShotResult(
        top1=100.0 * float(correct1.double().mean()),
        top5=100.0 * float(correct5.double().mean()),
        per_class=per_class,
        top5_classes=top_classes,
        top5_probs=top_probs,
        n_images=n,
    )
