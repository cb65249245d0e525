"""Prototypes on frozen CLIP image features, blended with CLIP's zero-shot text classifier.

The embedding is CLIP's image encoder (Radford et al. 2021), frozen; class prototypes are the
renormalised means of the unit support embeddings, as in Prototypical Networks with cosine
similarity (Snell et al. 2017). In the spirit of Tip-Adapter (Zhang et al., "Tip-Adapter:
Training-free Adaption of CLIP for Few-shot Classification", ECCV 2022), the few-shot visual evidence
is added to the zero-shot text classifier without any training:

    logits[q, c] = s * ((1 - w) * cos(f(x_q), p_c) + w * cos(f(x_q), t_c))

with f the CLIP image encoder, p_c the prototype of class c, t_c its prompt-ensemble text embedding,
w = `text_weight` in [0, 1] (0: prototypes only, 1: zero-shot CLIP) and s = exp(CLIP's logit scale).
Tip-Adapter uses a cache of all support features with an exp(-beta (1 - cos)) affinity and a
residual weight alpha instead of one prototype per class; with one prototype per class and a linear
affinity it reduces to this blend. No parameters are added, so the method is not trainable.
"""

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import MethodOutput
from fewshot_cli.methods.clip_zero_shot import CLIPZeroShot
from fewshot_cli.methods.functional import class_prototypes


class CLIPProtoNet(CLIPZeroShot):
    """Cosine prototypes of frozen CLIP features + w x zero-shot text logits.

    Shapes: support [n_way * n_shot, C, H, W], query [n_way * n_query, C, H, W] -> logits
    [n_way * n_query, n_way].

    Args:
        text_weight: w in [0, 1], the share of the zero-shot text classifier in the logits.
        **clip_args: the arguments of CLIPZeroShot (model, templates, input_mean, ...).
    """

    trainable = False
    zero_shot: ClassVar[bool] = False  # needs a support set

    def __init__(self, text_weight: float = 0.5, **clip_args: Any) -> None:
        if not 0.0 <= text_weight <= 1.0:
            raise ConfigError(f"method.text_weight={text_weight} must be within [0, 1]")
        super().__init__(**clip_args)
        self.text_weight = float(text_weight)

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        n_support = episode.support_images.shape[0]
        images = torch.cat([episode.support_images, episode.query_images])
        features = self.encode_images(self.episode_pixels(images))  # [S + Q, D], unit
        support, query = features[:n_support], features[n_support:]
        prototypes = F.normalize(class_prototypes(support, episode.support_labels, episode.n_way), dim=-1)
        similarity = (1.0 - self.text_weight) * (query @ prototypes.T)  # [Q, n_way]
        if self.text_weight > 0:
            text = self.text_classifier(episode.class_names)  # [n_way, D]
            similarity = similarity + self.text_weight * (query @ text.T)
        return MethodOutput(None, self.logit_scale * similarity, {})
