"""Prompt templates and the prompt ensemble of CLIP zero-shot classification (Radford et al. 2021).

A class is described to CLIP's text encoder by sentences such as "a photo of a {class}.". The paper
(Sec. 3.1.4) builds each class's classifier weight from several such templates: encode every
template filled with the class name, L2-normalise each embedding, average them, renormalise. On
CIFAR-100 the 18 templates below are the ones the authors published (CLIP repo,
`data/prompts.md` and the notebook "Prompt_Engineering_for_ImageNet.ipynb"); one template alone
costs about 3 points of top-1.
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot_cli.errors import ConfigError

CIFAR100_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
)
# CLIP's MNIST prompt (data/prompts.md), used with the digits '0'..'9' as class names.
MNIST_TEMPLATES: tuple[str, ...] = ('a photo of the number: "{}".',)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"cifar100": CIFAR100_TEMPLATES, "mnist": MNIST_TEMPLATES}
TEMPLATE_CHOICES = (*TEMPLATE_SETS, "single")


def resolve_templates(templates: str, template: str, template_file: str | None) -> tuple[str, ...]:
    """The prompt templates a CLIP method uses.

    Args:
        templates: a built-in set ("cifar100": 18 templates, "mnist": 1) or "single".
        template: the one template used when templates="single", e.g. "a photo of a {}.".
        template_file: a text file with one template per line (blank lines and lines starting
            with '#' skipped); when given it wins over `templates`.

    Raises:
        ConfigError: unknown set, unreadable file, or a template without exactly one '{}'.
    """
    if template_file:
        path = Path(template_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ConfigError(f"method.template_file={template_file!r} cannot be read ({error})") from error
        chosen = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        if not chosen:
            raise ConfigError(f"method.template_file={template_file!r} holds no templates")
        source = "method.template_file"
    elif templates == "single":
        chosen, source = (template,), "method.template"
    elif templates in TEMPLATE_SETS:
        chosen, source = TEMPLATE_SETS[templates], "method.templates"
    else:
        raise ConfigError(f"method.templates={templates!r}; use one of {', '.join(TEMPLATE_CHOICES)} "
                          f"(or method.template_file=<file>)")
    for text in chosen:
        if text.count("{}") != 1:
            raise ConfigError(f"{source}: template {text!r} must contain '{{}}' exactly once "
                              f"(where the class name goes)")
    return chosen


def fill_templates(class_names: list[str] | tuple[str, ...], templates: tuple[str, ...]) -> list[str]:
    """Prompts ordered class-major: prompt c * T + t is template t filled with class c."""
    return [template.format(name) for name in class_names for template in templates]


def ensemble_text_features(per_template: torch.Tensor) -> torch.Tensor:
    """Prompt ensemble (Radford et al. 2021, Sec. 3.1.4): normalise, average, renormalise.

    Args:
        per_template: [K, T, D] text embeddings of K classes under T templates (any scale).
    Returns:
        [K, D] float32 unit vectors: normalize(mean_t(normalize(e_{k,t}))).
    """
    if per_template.ndim != 3:
        raise ValueError(f"expected [K, T, D] text embeddings, got {tuple(per_template.shape)}")
    return F.normalize(F.normalize(per_template.float(), dim=-1).mean(dim=1), dim=-1)
