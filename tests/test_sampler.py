"""EpisodeSampler: shapes, label remapping, disjoint support/query, determinism, errors, scaling."""

import logging

import pytest
import torch

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler, episode_seed
from fewshot_cli.errors import ConfigError

NUM_CLASSES = 12
PER_CLASS = 9  # class c has PER_CLASS images, except class 0 which has 4


def make_split(channels: int = 1) -> ImageSplit:
    """A split whose every image is unique and encodes its own index and class.

    Pixel [0, 0, 0] holds the class, pixel [0, 0, 1] the image's row in the split, so an episode's
    images can be traced back to the split (all values < 256).
    """
    labels = [c for c in range(NUM_CLASSES) for _ in range(PER_CLASS if c else 4)]
    # Interleave classes so that rows of one class are not contiguous.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    labels_t = torch.tensor(labels)[order]
    n = labels_t.numel()
    images = torch.zeros(n, channels, 4, 4, dtype=torch.uint8)
    images[:, :, 0, 0] = labels_t[:, None].to(torch.uint8)
    images[:, :, 0, 1] = torch.arange(n, dtype=torch.uint8)[:, None]
    images[:, :, 3, 3] = 255
    names = [f"class{c:02d}" for c in range(NUM_CLASSES)]
    return ImageSplit(images, labels_t, names, "toy/train")


def sampler(split: ImageSplit | None = None, **kwargs) -> EpisodeSampler:
    settings = {"n_way": 5, "n_shot": 2, "n_query": 3, "seed": 7, "stream": "train",
                "config_key": "train_episodes"}
    settings.update(kwargs)
    return EpisodeSampler(split if split is not None else make_split(), **settings)


def pixel_class(images: torch.Tensor) -> torch.Tensor:
    """Dataset class of each episode image (pixel [0, 0, 0], undoing the [0, 1] scaling)."""
    return torch.round(images[:, 0, 0, 0] * 255).long()


def pixel_row(images: torch.Tensor) -> torch.Tensor:
    return torch.round(images[:, 0, 0, 1] * 255).long()


def test_shapes_and_dtypes() -> None:
    episode = sampler().episode(0)
    assert episode.support_images.shape == (5 * 2, 1, 4, 4)
    assert episode.query_images.shape == (5 * 3, 1, 4, 4)
    assert episode.support_images.dtype == torch.float32
    assert episode.support_labels.shape == (10,)
    assert episode.query_labels.shape == (15,)
    assert episode.class_ids.shape == (5,)
    assert len(episode.class_names) == 5
    assert (episode.n_way, episode.n_shot, episode.n_query) == (5, 2, 3)


def test_labels_are_remapped_class_major() -> None:
    episode = sampler().episode(3)
    assert episode.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert episode.query_labels.tolist() == [c for c in range(5) for _ in range(3)]


@pytest.mark.parametrize("index", range(20))
def test_class_ids_match_the_images_true_classes(index: int) -> None:
    split = make_split()
    episode = sampler(split).episode(index)
    # Episode label c stands for dataset class class_ids[c] in every support and query image.
    assert torch.equal(pixel_class(episode.support_images), episode.class_ids[episode.support_labels])
    assert torch.equal(pixel_class(episode.query_images), episode.class_ids[episode.query_labels])
    assert len(set(episode.class_ids.tolist())) == 5
    assert list(episode.class_names) == [split.class_names[c] for c in episode.class_ids.tolist()]
    # Every picked image really is a row of that class in the split.
    rows = torch.cat([pixel_row(episode.support_images), pixel_row(episode.query_images)])
    classes = torch.cat([episode.class_ids[episode.support_labels],
                         episode.class_ids[episode.query_labels]])
    assert torch.equal(split.labels[rows], classes)


@pytest.mark.parametrize("index", range(20))
def test_support_and_query_never_share_an_image(index: int) -> None:
    episode = sampler(n_shot=3, n_query=6).episode(index)  # 9 of 9 images of each class
    support = set(pixel_row(episode.support_images).tolist())
    query = set(pixel_row(episode.query_images).tolist())
    assert len(support) == 5 * 3
    assert len(query) == 5 * 6
    assert not support & query


def test_classes_with_too_few_images_are_never_drawn() -> None:
    # Class 0 has 4 images: it can serve 1-shot 3-query episodes but not 2-shot 3-query ones.
    drawn = set()
    for i in range(200):
        drawn |= set(sampler(n_shot=2, n_query=3).episode(i).class_ids.tolist())
    assert 0 not in drawn
    assert drawn == set(range(1, NUM_CLASSES))
    assert sampler(n_shot=1, n_query=3).num_classes == NUM_CLASSES


def test_classes_left_out_of_episodes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fewshot_cli.data.sampler"):
        sampler(n_shot=2, n_query=3)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "1 of 12 classes of toy/train" in message
    assert "train_episodes.n_shot + train_episodes.n_query = 5" in message
    assert message.endswith(": class00")


def test_many_short_classes_are_counted_and_a_few_named(caplog: pytest.LogCaptureFixture) -> None:
    labels = torch.tensor([c for c in range(8) for _ in range(3 if c < 7 else 6)])
    split = ImageSplit(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels,
                       [f"c{c}" for c in range(8)], "toy/val")
    with caplog.at_level(logging.WARNING, logger="fewshot_cli.data.sampler"):
        sampler(split, n_way=1, n_shot=1, n_query=4, config_key="eval_episodes")
    message = caplog.records[0].getMessage()
    assert "7 of 8 classes of toy/val" in message and "eval_episodes.n_query" in message
    assert message.endswith(": c0, c1, c2, c3, c4, ...")


def test_no_warning_when_every_class_is_big_enough(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fewshot_cli.data.sampler"):
        sampler(n_shot=1, n_query=3)
    assert not caplog.records


def test_same_seed_stream_index_gives_the_same_episode() -> None:
    a, b = sampler(), sampler()  # independent samplers: no shared state
    for index in (0, 5, 123):
        ea, eb = a.episode(index), b.episode(index)
        assert torch.equal(ea.support_images, eb.support_images)
        assert torch.equal(ea.query_images, eb.query_images)
        assert torch.equal(ea.class_ids, eb.class_ids)


def _fingerprint(s: EpisodeSampler, index: int) -> tuple:
    e = s.episode(index)
    return tuple(pixel_row(e.support_images).tolist() + pixel_row(e.query_images).tolist())


def test_stream_seed_and_index_each_change_the_episode() -> None:
    base = [_fingerprint(sampler(), i) for i in range(10)]
    other_stream = [_fingerprint(sampler(stream="val"), i) for i in range(10)]
    other_seed = [_fingerprint(sampler(seed=8), i) for i in range(10)]
    assert base != other_stream
    assert base != other_seed
    assert len(set(base)) == 10  # consecutive indices differ too
    assert episode_seed(7, "train", 0) != episode_seed(7, "val", 0)
    assert episode_seed(7, "train", 0) == episode_seed(7, "train", 0)


def test_global_rng_does_not_change_episodes() -> None:
    torch.manual_seed(0)
    first = _fingerprint(sampler(), 4)
    torch.manual_seed(999)
    torch.rand(100)
    assert _fingerprint(sampler(), 4) == first


def test_episodes_from_any_start_equal_single_episodes() -> None:
    """What resume relies on: episodes(start, n) is episode(start), ..., episode(start+n-1),
    across the index-chunk boundary too."""
    s = sampler()
    start, count = 60, 10  # spans INDEX_CHUNK = 64
    batch = list(s.episodes(start, count))
    assert len(batch) == count
    for offset, episode in enumerate(batch):
        single = s.episode(start + offset)
        assert torch.equal(episode.support_images, single.support_images)
        assert torch.equal(episode.query_images, single.query_images)
        assert torch.equal(episode.class_ids, single.class_ids)
    # ...and a stream restarted half-way matches the uninterrupted one.
    whole = [e.class_ids.tolist() for e in s.episodes(0, 8)]
    resumed = [e.class_ids.tolist() for e in s.episodes(0, 4)] + [
        e.class_ids.tolist() for e in s.episodes(4, 4)]
    assert whole == resumed


def test_n_way_larger_than_the_split_names_key_and_numbers() -> None:
    with pytest.raises(ConfigError) as error:
        sampler(n_way=13, config_key="train_episodes")
    message = str(error.value)
    assert "train_episodes.n_way=13" in message
    assert "12 classes" in message
    assert "toy/train" in message
    assert "at most 12" in message


def test_too_many_images_per_class_names_keys_and_numbers() -> None:
    with pytest.raises(ConfigError) as error:
        sampler(n_shot=5, n_query=5, config_key="eval_episodes")
    message = str(error.value)
    assert "eval_episodes.n_shot + eval_episodes.n_query = 5 + 5 = 10" in message
    assert "none of its classes has that many" in message  # was "only 0 classes"
    assert "largest class: 9 images" in message
    assert "lower n_shot + n_query to at most 9" in message  # what would fit, not only what fails


def test_enough_images_but_too_few_such_classes() -> None:
    # 2 + 3 = 5 images: 11 classes qualify (class 0 has 4), so 12-way is impossible.
    with pytest.raises(ConfigError, match=r"only 11 of its classes") as error:
        sampler(n_way=12, n_shot=2, n_query=3)
    assert "for 12-way episodes lower n_shot + n_query to at most 4" in str(error.value)


@pytest.mark.parametrize(("key", "value", "text"), [
    ("n_way", 0, "n_way=0 must be at least 1"),
    ("n_shot", 0, "n_shot=0 must be at least 1"),
    ("n_query", -1, "n_query=-1 must be 0 or more"),
])
def test_non_positive_shape_is_refused(key: str, value: int, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        sampler(**{key: value})


def test_pixels_scaled_to_unit_range_without_normalisation() -> None:
    episode = sampler().episode(0)
    assert torch.all(episode.support_images[:, :, 3, 3] == 1.0)
    assert episode.support_images.min() >= 0.0
    assert episode.support_images.max() <= 1.0


def test_mean_std_normalisation_per_channel() -> None:
    split = make_split(channels=3)
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    s = EpisodeSampler(split, 5, 1, 1, seed=0, stream="test", mean=mean, std=std)
    episode = s.episode(0)
    raw = split.images[pixel_row_raw(episode.support_images, mean, std)].float() / 255
    expected = (raw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(episode.support_images, expected, atol=1e-6)
    # White pixel 255: (1 - mean) / std.
    assert torch.allclose(episode.support_images[0, :, 3, 3], torch.tensor([1.0, 3.0, 0.5]))


def pixel_row_raw(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """Undo normalisation on channel 0 to read the row index."""
    return torch.round((images[:, 0, 0, 1] * std[0] + mean[0]) * 255).long()


def test_mean_std_with_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="1 values, one per image channel"):
        EpisodeSampler(make_split(), 5, 1, 1, seed=0, stream="test", mean=(0.5, 0.5), std=(1.0, 1.0))


def test_channels_last_layout() -> None:
    episode = sampler(split=make_split(channels=3), channels_last=True).episode(0)
    assert episode.support_images.is_contiguous(memory_format=torch.channels_last)
    assert episode.query_images.is_contiguous(memory_format=torch.channels_last)


def test_zero_queries_allowed() -> None:
    episode = sampler(n_query=0).episode(0)
    assert episode.query_images.shape[0] == 0
    assert episode.support_images.shape[0] == 10
