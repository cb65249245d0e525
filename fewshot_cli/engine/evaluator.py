"""Scoring a method on fixed episodes: mean accuracy ± 95% CI."""

import torch
from tqdm import tqdm

from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.confidence import AccuracyEstimate, mean_and_ci95
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.functional import accuracy


def evaluate_episodes(
    model: FewShotMethod,
    sampler: EpisodeSampler,
    n_episodes: int,
    ctx: DeviceContext,
    description: str = "test",
    progress_bar: bool = True,
) -> AccuracyEstimate:
    """Accuracy over episodes 0..n_episodes-1 of `sampler`, in eval mode.

    Autograd stays on for methods that adapt by gradient at test time (MAML); per-episode accuracies
    stay on the device until the end, so the loop never waits on the GPU.
    """
    was_training = model.training
    model.eval()
    accuracies = torch.empty(n_episodes, device=ctx.device)
    grad_mode = torch.enable_grad if model.needs_grad_at_eval else torch.no_grad
    episodes = sampler.episodes(0, n_episodes)
    try:
        for i, episode in enumerate(tqdm(episodes, total=n_episodes, desc=description, unit="ep",
                                         disable=None if progress_bar else True,
                                         mininterval=1, leave=False)):
            with grad_mode(), ctx.autocast():
                output = model.loss_and_logits(episode)
            accuracies[i] = accuracy(output.logits.detach(), episode.query_labels)
    finally:
        model.train(was_training)
    return mean_and_ci95(accuracies)
