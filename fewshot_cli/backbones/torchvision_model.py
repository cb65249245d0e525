"""Any torchvision classification model as a few-shot embedding network.

A checkpoint's config may only build classes of fewshot_cli.backbones (config/targets.py), never a
torchvision function, so torchvision models are reached through this class: the config names the model
and its weights as data (`backbone.name=resnet18 backbone.weights=IMAGENET1K_V1`), and only
`torchvision.models.get_model` with a name from torchvision's own list is ever called.
"""

import difflib
import os
import pickle
from collections import OrderedDict
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from fewshot_cli.errors import ConfigError

# Families whose top-level children, run in order up to `avgpool`, are the network's body, so their
# feature maps can be taken by cutting there (checked for resnet18; the others share the layout).
MAP_FAMILIES = ("resnet", "resnext", "wide_resnet", "regnet", "vgg", "efficientnet", "convnext",
                "mobilenet_v3", "alexnet")
# Models that add auxiliary classifiers in training mode unless told not to.
AUX_LOGITS = ("googlenet", "inception_v3")


def classification_models() -> list[str]:
    """torchvision's classification model names (resnet18, vit_b_16, ...)."""
    return torchvision.models.list_models(module=torchvision.models)


def weight_file(weights: torchvision.models.WeightsEnum) -> str:
    """Where torchvision looks for `weights` before downloading them: torch.hub.get_dir()/checkpoints/
    <basename of the weights' url> (torch.hub.get_dir() is $TORCH_HOME/hub, ~/.cache/torch/hub by
    default)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


class TorchvisionBackbone(nn.Module):
    """A torchvision classification model without its classifier: images -> [B, D] features.

    Built with `torchvision.models.get_model(name, weights=...)`; the model's last nn.Linear (ResNet's
    `fc`, the last layer of VGG's, EfficientNet's or MobileNet's `classifier`, ViT's `heads.head`) is
    replaced by nn.Identity, so D is that layer's input width (512 for resnet18, 4096 for vgg16).

    Grayscale images (`in_channels=1`) are repeated to three channels, so a pretrained first
    convolution is used unchanged (the same as summing its weights over RGB). Inputs are normalised
    with the dataset's own mean/std, not ImageNet's. ViT and Swin models need their native image size
    (224). Weights come through torchvision's own download into torch.hub.get_dir()/checkpoints; when
    that fails (offline) a ConfigError names the file and the folder to put it in.

    `use_feature_maps()` (called by Relation Networks) cuts the model before its global pooling:
    [B, C, H / 32, W / 32] maps (512 channels for resnet18), for the families in MAP_FAMILIES.

    Shapes: [B, in_channels, H, W] -> [B, D], or [B, C, H', W'] after `use_feature_maps()`.

    Args:
        name: a torchvision classification model, e.g. "resnet18" (torchvision.models.list_models).
        weights: a name of that model's weights enum ("IMAGENET1K_V1", "DEFAULT"), or None for random
            initialisation.
        in_channels: 1 (repeated to RGB) or 3 (the config passes ${dataset.channels}).
    """

    def __init__(self, name: str = "resnet18", weights: str | None = None, in_channels: int = 3) -> None:
        super().__init__()
        models = classification_models()
        if name not in models:
            close = difflib.get_close_matches(name, models, n=3)
            hint = (f"did you mean {' or '.join(close)}?" if close
                    else "torchvision.models.list_models() lists them")
            raise ConfigError(f"backbone.name={name!r} is not a torchvision classification model; {hint}")
        if in_channels not in (1, 3):
            raise ConfigError(f"backbone=torchvision takes 1- or 3-channel images, not "
                              f"in_channels={in_channels}")
        self.name = name
        self.in_channels = in_channels
        options = {"aux_logits": False} if name in AUX_LOGITS else {}
        self.model = self._build(name, weights, options)
        self.out_features = self._drop_classifier()

    @staticmethod
    def _build(name: str, weights: str | None, options: dict) -> nn.Module:
        if weights is None:
            return torchvision.models.get_model(name, weights=None, **options)
        enum = torchvision.models.get_model_weights(name)
        try:
            chosen = enum.verify(str(weights))
        except KeyError:
            raise ConfigError(f"backbone.weights={weights!r} is not a weight of {name}; use one of "
                              f"{', '.join(enum.__members__)} or null (random init)") from None
        path = weight_file(chosen)
        try:
            return torchvision.models.get_model(name, weights=chosen, progress=False, **options)
        except OSError as error:  # urllib's URLError (offline, no DNS) is an OSError
            raise ConfigError(
                f"backbone.weights={weights} of {name} needs torchvision's file "
                f"{os.path.basename(path)}, which could not be downloaded ({error}); put it at {path} "
                f"(torch.hub.get_dir()/checkpoints, under $TORCH_HOME when set) or use "
                f"backbone.weights=null for random weights"
            ) from error
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            if not os.path.exists(path):
                raise  # not about a file on disk (e.g. a hash mismatch while downloading)
            raise ConfigError(f"the weight file {path} could not be loaded into {name} ({error}); "
                              f"delete it so torchvision downloads it again, or replace it with "
                              f"{chosen.url}") from error

    def _drop_classifier(self) -> int:
        """Replace the model's last nn.Linear by nn.Identity; return its input width."""
        last = None
        for module_name, module in self.model.named_modules():
            if isinstance(module, nn.Linear):
                last = module_name
        if last is None:
            raise ConfigError(f"backbone.name={self.name} has no final linear classifier to remove; "
                              f"choose a model that ends in one (resnet18, vgg16, efficientnet_b0, ...)")
        parent_name, _, child = last.rpartition(".")
        parent = self.model.get_submodule(parent_name)
        width = parent.get_submodule(child).in_features
        setattr(parent, child, nn.Identity())
        return width

    def use_feature_maps(self) -> None:
        """Return the maps before global pooling from now on (the interface Relation Networks call).

        The model becomes an nn.Sequential of its children before `avgpool`, under the same names, so
        parameter names (state_dict keys) do not change and nothing after the cut is kept.
        """
        children = OrderedDict(self.model.named_children())
        if not self.name.startswith(MAP_FAMILIES) or "avgpool" not in children:
            raise ConfigError(f"backbone.name={self.name} gives no feature maps here; methods that need "
                              f"them (Relation Networks) take {', '.join(MAP_FAMILIES)} models")
        body = OrderedDict()
        for child_name, child in children.items():
            if child_name == "avgpool":
                break
            body[child_name] = child
        self.model = nn.Sequential(body)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)  # a view: no copy
        return self.model(images)
