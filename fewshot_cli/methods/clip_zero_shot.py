"""CLIP zero-shot classification (Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision", ICML 2021).

Each class is represented by the text embedding of prompts such as "a photo of a {class}." (a prompt
ensemble, see `clip_prompts.py`); an image is assigned to the class whose text embedding has the
highest cosine similarity with its image embedding. Nothing is learned: the method is not trainable
and ignores the support set, so on few-shot episodes it scores the queries against the episode's
class names, and `fewshot eval method=clip dataset=cifar100` classifies a whole test set
(`tasks/zero_shot.py`). Paper CIFAR-100 top-1 with the 18-template ensemble: RN50 41.6,
ViT-B/32 65.1.
"""

import contextlib
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.clip_model import import_clip, load_clip
from fewshot_cli.methods.clip_preprocess import clip_preprocess
from fewshot_cli.methods.clip_prompts import ensemble_text_features, fill_templates, resolve_templates

PRECISIONS = ("fp16", "fp32")


class CLIPZeroShot(FewShotMethod):
    """Zero-shot CLIP on episodes: logits[q, c] = s * cos(image(x_q), text(class c)).

    Shapes: query [n_way * n_query, C, H, W] (C = 1 or 3, any H, W; the dataset's mean/std undone,
    then CLIP's own preprocessing) -> logits [n_way * n_query, n_way]; s = exp(CLIP's logit_scale)
    (100 for OpenAI's models).

    Class text embeddings are cached per class name: they depend only on the frozen weights and the
    templates, so the cache is a memo, not state between episodes.

    Args:
        model: `clip.available_models()` name (default ViT-B/32) or a local .pt path.
        download_root: where named models' weight files are kept / downloaded to.
        templates: built-in prompt set "cifar100" (18 templates), "mnist", or "single".
        template: the template of templates="single".
        template_file: file with one template per line; overrides `templates`.
        input_mean, input_std: the dataset normalisation the episode sampler applied (undone here
            so CLIP sees [0, 1] pixels); None when the dataset has none.
        precision: "fp16" runs the encoders under fp16 autocast on CUDA (as clip.load's fp16
            weights do); "fp32" never. CPU always computes in float32.
        batch_size: images or prompts per encoder call.
    """

    trainable = False
    #: classifies from class names alone, so it can score whole test sets (eval.protocol=full)
    zero_shot: ClassVar[bool] = True

    def __init__(
        self,
        model: str = "ViT-B/32",
        download_root: str = "~/.cache/clip",
        templates: str = "cifar100",
        template: str = "a photo of a {}.",
        template_file: str | None = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        precision: str = "fp16",
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(f"method.precision={precision!r}; use one of {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise ConfigError(f"method.batch_size={batch_size} must be at least 1")
        self.model_name = model
        self.templates = resolve_templates(templates, template, template_file)
        self.clip = load_clip(model, download_root)
        self.input_resolution = int(self.clip.visual.input_resolution)
        self.precision = precision
        self.batch_size = batch_size
        self._input_mean = tuple(input_mean) if input_mean is not None else None
        self._input_std = tuple(input_std) if input_std is not None else None
        self._text_cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "CLIPZeroShot":
        """CLIP stays in eval mode (frozen BatchNorm statistics in the ResNet encoders)."""
        super().train(mode)
        self.clip.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned temperature exp(t) (0-d)."""
        return self.clip.logit_scale.detach().float().exp()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp16" and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings.

        Args:
            pixels: [B, C, H, W] float in [0, 1] (C = 1 or 3), on any device.
        Returns:
            [B, D] float32 unit vectors.
        """
        outputs = []
        for start in range(0, pixels.shape[0], self.batch_size):
            batch = clip_preprocess(pixels[start : start + self.batch_size].to(self.device),
                                    self.input_resolution)
            with self._autocast():
                outputs.append(self.clip.encode_image(batch).float())
        return F.normalize(torch.cat(outputs), dim=-1)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """[P] sentences -> [P, D] float32 text embeddings (not normalised)."""
        clip = import_clip()
        outputs = []
        for start in range(0, len(prompts), self.batch_size):
            tokens = clip.tokenize(prompts[start : start + self.batch_size], truncate=True)
            with self._autocast():
                outputs.append(self.clip.encode_text(tokens.to(self.device)).float())
        return torch.cat(outputs)

    def text_classifier(self, class_names: Sequence[str]) -> torch.Tensor:
        """Zero-shot classifier weights: [K] class names -> [K, D] unit prompt-ensemble embeddings."""
        new = [name for name in dict.fromkeys(class_names) if name not in self._text_cache]
        if new:
            per_template = self.encode_prompts(fill_templates(new, self.templates))
            features = ensemble_text_features(per_template.view(len(new), len(self.templates), -1))
            self._text_cache.update(zip(new, features, strict=True))
        return torch.stack([self._text_cache[name].to(self.device) for name in class_names])

    def zero_shot_logits(self, image_features: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """[B, D] unit image embeddings x K class names -> [B, K] logits s * cos."""
        return self.logit_scale * image_features @ self.text_classifier(class_names).T

    def episode_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the sampler's (x - mean) / std: [B, C, H, W] -> [0, 1] pixels."""
        if self._input_mean is None or self._input_std is None:
            return images
        channels = images.shape[1]
        mean = torch.tensor(self._input_mean, device=images.device, dtype=torch.float32)
        std = torch.tensor(self._input_std, device=images.device, dtype=torch.float32)
        if mean.numel() != channels or std.numel() != channels:
            raise ConfigError(f"method.input_mean/input_std need {channels} values, one per channel")
        return images.float() * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        """Zero-shot logits of the queries over the episode's class names (support set unused)."""
        features = self.encode_images(self.episode_pixels(episode.query_images))
        logits = self.zero_shot_logits(features, episode.class_names)
        return MethodOutput(None, logits, {})

