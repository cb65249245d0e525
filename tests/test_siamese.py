"""Siamese networks: losses and verification metrics against hand-computed values, pair sampling,
affine distortions, the Koch twin, within-alphabet episodes, figures, and a CLI run on AT&T-style
faces."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_att_faces import write_faces

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.backbones.koch import KochNet, feature_side
from fewshot_cli.data.augment import random_affine
from fewshot_cli.data.episode import Episode
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.omniglot import Omniglot
from fewshot_cli.data.pairs import balanced_pairs
from fewshot_cli.data.sampler import EpisodeSampler, episode_seed
from fewshot_cli.engine.figure_files import save_figure
from fewshot_cli.engine.pair_figures import dissimilarity_grid, loss_curve_figure
from fewshot_cli.engine.verification import best_accuracy_threshold, equal_error_rate, roc_auc
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.functional import class_max
from fewshot_cli.methods.pair_functional import (
    contrastive_loss,
    euclidean_distance,
    koch_bce_loss,
    weighted_l1_logit,
)
from fewshot_cli.methods.siamese import SiameseNetwork

# ---------------------------------------------------------------- losses, by hand


def test_contrastive_loss_by_hand() -> None:
    distance = torch.tensor([0.5, 1.5, 3.0])
    different = torch.tensor([0.0, 1.0, 1.0])
    # same: 0.5² = 0.25; different within the margin: (2 - 1.5)² = 0.25; beyond it: 0
    assert contrastive_loss(distance, different, margin=2.0).item() == pytest.approx(0.5 / 3)
    assert contrastive_loss(torch.tensor([1.0]), torch.tensor([1.0]), margin=3.0).item() == 4.0


def test_contrastive_loss_gradient_is_finite_for_identical_embeddings() -> None:
    a = torch.ones(2, 3, requires_grad=True)
    loss = contrastive_loss(euclidean_distance(a, torch.ones(2, 3)), torch.tensor([0.0, 1.0]))
    loss.backward()
    assert torch.isfinite(a.grad).all()
    assert loss.item() == pytest.approx(2.0, abs=1e-4)  # (0 + (2 - 0)²) / 2


def test_koch_weighted_l1_and_bce_by_hand() -> None:
    logit = weighted_l1_logit(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 1.0]]),
                              torch.tensor([[0.5, 2.0]]), torch.tensor([0.1]))
    assert logit.item() == pytest.approx(0.5 * 2 + 2.0 * 1 + 0.1)
    # target "same" = 1 - different: -log σ(0) = log 2; -log(1 - σ(2)) = log(1 + e²)
    loss = koch_bce_loss(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx((math.log(2) + math.log(1 + math.e ** 2)) / 2)


def test_class_max_takes_the_best_support_image() -> None:
    scores = torch.tensor([[1.0, 5.0, 2.0, 0.0], [-1.0, -3.0, -2.0, -0.5]])
    out = class_max(scores, torch.tensor([0, 0, 1, 1]), 2)
    assert torch.equal(out, torch.tensor([[5.0, 2.0], [-1.0, -0.5]]))


# ---------------------------------------------------------------- pair sampling


def test_balanced_pairs_are_balanced_and_valid() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3 has no partner for a same pair
    left, right, different = balanced_pairs(labels, 101, torch.Generator().manual_seed(0))
    assert different.tolist() == [0.0] * 50 + [1.0] * 51
    same = different == 0
    assert torch.equal(labels[left[same]], labels[right[same]])
    assert (left[same] != right[same]).all()
    assert (labels[left[~same]] != labels[right[~same]]).all()
    assert not (left[same] == 8).any()


def test_balanced_pairs_are_deterministic_and_leave_the_global_rng_alone() -> None:
    labels = torch.arange(6).repeat_interleave(3)
    state = torch.get_rng_state()
    first = balanced_pairs(labels, 64, torch.Generator().manual_seed(7))
    again = balanced_pairs(labels, 64, torch.Generator().manual_seed(7))
    other = balanced_pairs(labels, 64, torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_balanced_pairs_need_two_classes_and_a_partner() -> None:
    with pytest.raises(ConfigError, match="two images of one class"):
        balanced_pairs(torch.tensor([0, 1, 2]), 4, torch.Generator())
    with pytest.raises(ConfigError, match="at least 2"):
        balanced_pairs(torch.tensor([0, 0, 1]), 1, torch.Generator())
    with pytest.raises(ConfigError, match="two classes"):
        balanced_pairs(torch.tensor([4, 4, 4]), 4, torch.Generator())
    with pytest.raises(ConfigError, match="two classes"):
        balanced_pairs(torch.tensor([], dtype=torch.long), 4, torch.Generator())


def test_balanced_pairs_hold_their_contract_on_unsorted_labels_with_singletons() -> None:
    generator = torch.Generator().manual_seed(3)
    labels = torch.cat([torch.randint(-5, 20, (300,), generator=generator), torch.tensor([90, 91, -7])])
    labels = labels[torch.randperm(len(labels), generator=generator)]  # unsorted, negative ids
    singletons = [i for i in range(len(labels)) if int((labels == labels[i]).sum()) == 1]
    assert len(singletons) == 3  # classes of one image: different-pair anchors only
    left, right, different = balanced_pairs(labels, 2001, generator)
    same = different == 0
    assert (left != right).all()
    assert torch.equal(labels[left[same]], labels[right[same]])
    assert (labels[left[~same]] != labels[right[~same]]).all()
    assert not torch.isin(left[same], torch.tensor(singletons)).any()
    assert torch.isin(left[~same], torch.tensor(singletons)).any()  # still different-pair anchors


def test_balanced_pairs_draw_anchors_and_partners_uniformly() -> None:
    labels = torch.tensor([0, 0, 0, 5, 5, -2])
    n = 60_000
    left, right, _ = balanced_pairs(labels, 2 * n, torch.Generator().manual_seed(0))
    pairs = torch.stack([left, right], dim=1)

    def share(rows: torch.Tensor, pair: tuple[int, int]) -> float:
        return float((rows == torch.tensor(pair)).all(dim=1).float().mean())

    # same: anchor uniform over the 5 images with a partner, partner uniform over the rest of its class
    for pair, expected in (((0, 1), 1 / 5 / 2), ((2, 0), 1 / 5 / 2), ((3, 4), 1 / 5), ((5, 0), 0.0)):
        assert share(pairs[:n], pair) == pytest.approx(expected, abs=0.01)
    # different: anchor uniform over all 6, partner uniform over the N - k images of other classes
    for pair, expected in (((0, 5), 1 / 6 / 3), ((3, 1), 1 / 6 / 4), ((5, 4), 1 / 6 / 5), ((0, 1), 0.0)):
        assert share(pairs[n:], pair) == pytest.approx(expected, abs=0.01)


def test_balanced_pairs_scale_linearly_to_200k_labels() -> None:
    # An N x N bool mask of 200,000 labels would take 40 GB; per-class offsets need a few MB.
    labels = torch.randint(0, 20_000, (200_000,), generator=torch.Generator().manual_seed(0))
    left, right, different = balanced_pairs(labels, 1000, torch.Generator().manual_seed(1))
    same = different == 0
    assert (left != right).all()
    assert torch.equal(labels[left[same]], labels[right[same]])
    assert (labels[left[~same]] != labels[right[~same]]).all()


# ---------------------------------------------------------------- verification metrics, by hand


def test_roc_auc_by_hand() -> None:
    distances = torch.tensor([0.1, 0.4, 0.35, 0.8])
    different = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # different pairs should be farther: (0.35 > 0.1) + (0.35 < 0.4) + 2 of 2 for 0.8 -> 3 / 4
    assert roc_auc(distances, different) == pytest.approx(0.75)
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0])) == pytest.approx(0.5)  # tie
    assert roc_auc(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.0, 0.0, 1.0])) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.1]), torch.tensor([0.0, 1.0])) == 0.0


def test_equal_error_rate_by_hand() -> None:
    same = [0.1, 0.2, 0.3, 0.6]
    diff = [0.4, 0.5, 0.7, 0.9]
    distances = torch.tensor(same + diff)
    different = torch.tensor([0.0] * 4 + [1.0] * 4)
    # at t = 0.45: false accepts {0.4} = 1/4, false rejects {0.6} = 1/4
    rates = equal_error_rate(distances, different)
    assert rates.eer == pytest.approx(0.25)
    assert rates.threshold == pytest.approx(0.45)
    # best accuracy at t = 0.35: every different pair rejected, only the same pair at 0.6 missed
    threshold, accuracy = best_accuracy_threshold(distances, different)
    assert (threshold, accuracy) == (pytest.approx(0.35), pytest.approx(7 / 8))
    separable = equal_error_rate(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0.0, 0, 1, 1]))
    assert separable.eer == 0.0 and 0.2 < separable.threshold < 0.8


# ---------------------------------------------------------------- method


def _episode(n_way: int = 4, n_shot: int = 2, n_query: int = 2, side: int = 28) -> Episode:
    images = torch.rand(n_way * (n_shot + n_query), 1, side, side, generator=torch.Generator().manual_seed(0))
    return Episode(images[: n_way * n_shot], torch.arange(n_way).repeat_interleave(n_shot),
                   images[n_way * n_shot:], torch.arange(n_way).repeat_interleave(n_query),
                   torch.arange(10, 10 + n_way), tuple(f"c{i}" for i in range(n_way)),
                   n_way, n_shot, n_query)


@pytest.mark.parametrize("loss", ["contrastive", "bce"])
def test_siamese_logits_shape_gradients_and_determinism(loss: str) -> None:
    torch.manual_seed(0)
    model = SiameseNetwork(Conv4(), loss=loss, image_size=28, augment=True, pairs_per_episode=16)
    episode = _episode()
    state = torch.get_rng_state()
    output = model.loss_and_logits(episode)
    assert torch.equal(torch.get_rng_state(), state)  # pairs and distortions use their own generator
    assert output.logits.shape == (8, 4)
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        a, b = model.loss_and_logits(episode), model.loss_and_logits(episode)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.loss, b.loss)


def test_siamese_class_scores_match_episode_logits() -> None:
    torch.manual_seed(0)
    model = SiameseNetwork(Conv4(), loss="bce", image_size=28).eval()
    episode = _episode()
    with torch.no_grad():
        logits = model.loss_and_logits(episode).logits
        scores = model.class_scores(model.embed(episode.query_images), model.embed(episode.support_images),
                                    episode.support_labels, episode.n_way)
        distance = model.pair_distance(model.embed(episode.query_images[:2]),
                                       model.embed(episode.support_images[:2]))
    assert torch.allclose(logits, scores, atol=1e-5)
    assert ((distance >= 0) & (distance <= 1)).all()  # 1 - p(same)


def test_normalized_embeddings_have_unit_length_and_bounded_distances() -> None:
    torch.manual_seed(0)
    model = SiameseNetwork(Conv4(), loss="contrastive", normalize=True, margin=1.0).eval()
    episode = _episode()
    with torch.no_grad():
        embeddings = model.embed(episode.query_images)
        logits = model.loss_and_logits(episode).logits
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(len(embeddings)), atol=1e-5)
    assert ((logits >= -2.0 - 1e-5) & (logits <= 0.0)).all()  # -distance between unit vectors


def test_untrained_bce_head_scores_by_minus_the_mean_l1_distance() -> None:
    model = SiameseNetwork(Conv4(), loss="bce", image_size=28)
    left, right = torch.rand(3, 64), torch.rand(3, 64)
    with torch.no_grad():
        logit = model.same_logit(left, right)
    assert torch.allclose(logit, -(left - right).abs().mean(dim=1), atol=1e-6)


def _pairs_of(model: SiameseNetwork, episode: Episode) -> torch.Tensor:
    """The training pairs loss_and_logits draws for `episode`: [2, pairs_per_episode] indices."""
    labels = torch.cat([episode.support_labels, episode.query_labels])
    left, right, _ = balanced_pairs(labels, model.pairs_per_episode, model.pair_generator(episode))
    return torch.stack([left, right])


def test_siamese_pairs_are_seeded_by_the_episode_not_its_classes() -> None:
    # Two classes, both in every episode: many episode indices share their class ids in the same order.
    split = ImageSplit(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), torch.arange(2).repeat_interleave(4),
                       ["a", "b"], "toy/train")
    sampler = EpisodeSampler(split, 2, 2, 2, seed=0, stream="train")
    model = SiameseNetwork(Conv4(), pairs_per_episode=32)
    episodes = list(sampler.episodes(0, 8))
    twins = [(i, j) for i in range(8) for j in range(i + 1, 8)
             if torch.equal(episodes[i].class_ids, episodes[j].class_ids)]
    assert twins
    for i, j in twins:
        assert not torch.equal(_pairs_of(model, episodes[i]), _pairs_of(model, episodes[j]))
    # The same episode index, drawn again (as after a resume), gets the same pairs.
    assert torch.equal(_pairs_of(model, episodes[5]), _pairs_of(model, sampler.episode(5)))
    assert episodes[5].seed == sampler.episode(5).seed == episode_seed(0, "train", 5)
    # pair_seed still changes the pairs of one episode.
    other = SiameseNetwork(Conv4(), pairs_per_episode=32, pair_seed=1)
    assert not torch.equal(_pairs_of(model, episodes[5]), _pairs_of(other, episodes[5]))


def test_siamese_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match=r"method\.loss"):
        SiameseNetwork(Conv4(), loss="triplet")
    with pytest.raises(ConfigError, match="margin"):
        SiameseNetwork(Conv4(), margin=0.0)


# ---------------------------------------------------------------- Koch twin and distortions


def test_koch_net_shapes() -> None:
    assert feature_side(105) == 6
    net = KochNet(image_size=105)
    assert net(torch.rand(2, 1, 105, 105)).shape == (2, 4096)
    # The smallest input the error names really is the smallest that works.
    assert feature_side(65) == 1
    assert KochNet(image_size=65, embedding_dim=8)(torch.rand(1, 1, 65, 65)).shape == (1, 8)
    with pytest.raises(ConfigError, match="at least 65x65"):
        KochNet(image_size=64)
    with pytest.raises(ConfigError, match=r"backbone\.init"):
        KochNet(init="xavier")


def test_koch_paper_init_saturates_the_sigmoid_layer_and_the_default_does_not() -> None:
    """Why backbone.init defaults to pytorch: the paper's init drives most sigmoid units flat."""
    strokes = (torch.rand(4, 1, 105, 105, generator=torch.Generator().manual_seed(0)) < 0.1).float()

    def saturated_fraction(init: str) -> float:
        torch.manual_seed(0)
        net = KochNet(init=init)
        with torch.no_grad():
            pre_sigmoid = net.embedding[1](net.features(strokes).flatten(1))
        return (pre_sigmoid.abs() > 6).float().mean().item()

    assert saturated_fraction("paper") > 0.3
    assert saturated_fraction("pytorch") < 0.01


def test_random_affine_is_batched_deterministic_and_identity_when_off() -> None:
    images = torch.rand(6, 1, 20, 20)
    a = random_affine(images, torch.Generator().manual_seed(3))
    b = random_affine(images, torch.Generator().manual_seed(3))
    assert a.shape == images.shape and torch.equal(a, b)
    assert not torch.allclose(a, images)
    identity = random_affine(images, torch.Generator(), p_component=0.0)
    assert torch.allclose(identity, images, atol=1e-5)


# ---------------------------------------------------------------- within-alphabet episodes


def test_within_group_episodes_stay_in_one_alphabet(synthetic_data_dir: Path, tmp_path: Path) -> None:
    data = Omniglot(str(synthetic_data_dir), str(tmp_path / "cache"), split_scheme="lake",
                    image_size=28, rotations=False, download=False)
    split = data.load_split("test")
    assert split.class_groups is not None and split.class_groups.shape == (split.num_classes,)
    sampler = EpisodeSampler(split, 3, 1, 1, seed=0, stream="test", within_group=True)
    alphabets = set()
    for index in range(20):
        names = sampler.episode(index).class_names
        assert len({name.split("/")[1] for name in names}) == 1
        alphabets.add(names[0].split("/")[1])
    assert alphabets == {"Gurmukhi", "Kannada"}  # Zeta_Eval has only 2 characters: never 3-way
    with pytest.raises(ConfigError, match="no class group"):
        EpisodeSampler(split, 4, 1, 1, seed=0, stream="test", within_group=True)


def test_within_group_needs_groups() -> None:
    split = ImageSplit(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]),
                       ["a", "b"], "plain/test")
    with pytest.raises(ConfigError, match="no class groups"):
        EpisodeSampler(split, 2, 1, 1, seed=0, stream="test", within_group=True)


# ---------------------------------------------------------------- figures


def test_figures_are_written(tmp_path: Path) -> None:
    history = [{"episode": 10, "train/loss": 1.0}, {"episode": 20, "train/loss": 0.5},
               {"episode": 20, "val/acc": 60.0}]
    curve = save_figure(loss_curve_figure(history), tmp_path / "loss_curve.png")
    images = torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8)
    grid = save_figure(dissimilarity_grid(images, images.flip(0), torch.tensor([0.1, 0.9, 0.3, 1.2]),
                                          torch.tensor([0.0, 1.0, 0.0, 1.0]), threshold=0.5),
                       tmp_path / "grid.png")
    for path in (curve, grid):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the CLI, end to end


@pytest.mark.slow
def test_cli_trains_siamese_on_faces(tmp_path: Path) -> None:
    data_dir = write_faces(tmp_path / "data", people=8, images=6)
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "fewshot_cli", "train", "experiment=siamese_att_faces", "method.loss=bce",
        f"paths.data_dir={data_dir}", f"paths.cache_dir={tmp_path / 'cache'}", "device=cpu",
        "dataset.image_size=28", "dataset.heldout=2", "dataset.val_people=2",
        "train_episodes.n_way=3", "train_episodes.n_shot=1", "train_episodes.n_query=2",
        "eval_episodes.n_way=2", "eval_episodes.n_query=3", "trainer.max_episodes=6",
        "trainer.val_every=3", "trainer.checkpoint_every=3", "trainer.log_every=1",
        "trainer.val_episodes=4", "eval.n_episodes=8", "trainer.progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/n_way"] == 2 and 0.0 <= metrics["test/acc"] <= 100.0
    assert 0.0 <= metrics["test/roc_auc"] <= 1.0 and 0.0 <= metrics["test/eer"] <= 1.0
    assert math.isfinite(metrics["val/pair_threshold"])
    for figure in ("loss_curve.png", "dissimilarity_grid.png"):
        assert (run_dir / figure).stat().st_size > 0
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["verification"]["threshold"] == metrics["val/pair_threshold"]
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
