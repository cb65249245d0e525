"""Episode sampler: N-way K-shot tasks drawn by tensor indexing from an ImageSplit.

Every episode is a pure function of (seed, stream, episode index): its classes and images come from a
`torch.Generator` seeded with a hash of those three values. Consequences worth having:

* no global RNG is touched, so model code cannot perturb which episodes are drawn;
* a resumed run draws exactly the episodes the uninterrupted run would have drawn, with no sampler
  state in the checkpoint;
* validation and test episodes depend only on `eval_seed`, so every method and seed of a sweep is
  scored on the same episodes (a paired comparison).

Indices are drawn on the CPU (cheap, device-independent, identical on CPU and GPU runs), moved to the
device in chunks, and the images are gathered there from a uint8 tensor: no per-episode decoding.
"""

import hashlib
import logging
from collections.abc import Callable, Iterator

import torch

from fewshot_cli.data.episode import Episode
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.normalise import normalisation
from fewshot_cli.errors import ConfigError

log = logging.getLogger(__name__)

INDEX_CHUNK = 64  # episodes whose indices travel to the device in one copy
SHORT_CLASSES_NAMED = 5  # class names listed in the warning about classes left out of episodes


def episode_seed(seed: int, stream: str, index: int) -> int:
    """64-bit seed of episode `index` of `stream` ("train", "val", "test") under `seed`."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class EpisodeSampler:
    """Draws N-way K-shot episodes from one split.

    Args:
        split: the images and labels to draw from.
        n_way, n_shot, n_query: episode shape; query labels are remapped to 0..n_way-1.
        seed: base seed of this stream (training: `seed`; val/test: `eval_seed`).
        stream: name mixed into every episode's seed so train/val/test never share episodes.
        device: where images live and episodes are assembled.
        config_key: the config node the shape came from, named in error messages.
        mean, std: per-channel normalisation applied after scaling pixels to [0, 1].
        channels_last: return images in channels-last memory format.
        within_group: draw all n_way classes of an episode from one class group of the split
            (Omniglot: one alphabet, Lake et al.'s and Koch et al.'s within-alphabet tasks); the group
            is drawn uniformly among groups with at least n_way eligible classes.
        within_group_key: the config switch behind `within_group`, named in error messages.
        augment: called as augment(images, episode_seed) on each episode's float [N, C, H, W]
            images in [0, 1], before normalisation, returning them transformed (training streams
            only: data/natural_augment.py); None: images as stored.
    """

    def __init__(
        self,
        split: ImageSplit,
        n_way: int,
        n_shot: int,
        n_query: int,
        seed: int,
        stream: str,
        device: torch.device | str = "cpu",
        config_key: str = "episodes",
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        channels_last: bool = False,
        within_group: bool = False,
        within_group_key: str = "eval.within_group",
        augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> None:
        self.n_way, self.n_shot, self.n_query = n_way, n_shot, n_query
        self.seed, self.stream = seed, stream
        self.device = torch.device(device)
        self.split_name = split.name
        self._check_shape(split, config_key)
        counts = split.class_counts()
        eligible = torch.nonzero(counts >= n_shot + n_query).flatten()
        short = torch.nonzero(counts < n_shot + n_query).flatten().tolist()
        if short:
            # Said once per sampler: otherwise a class silently vanishing from every episode looks
            # like a smaller dataset (e.g. a person folder with few photos).
            names = ", ".join(split.class_names[i] for i in short[:SHORT_CLASSES_NAMED])
            more = ", ..." if len(short) > SHORT_CLASSES_NAMED else ""
            log.warning("%d of %d classes of %s have fewer than %s.n_shot + %s.n_query = %d images and "
                        "are left out of its episodes: %s%s", len(short), split.num_classes,
                        split.name, config_key, config_key, n_shot + n_query, names, more)
        self._class_ids = eligible  # split-level class index of each eligible class
        self._class_names = [split.class_names[i] for i in eligible.tolist()]
        self._counts = counts[eligible]
        self._class_table = _class_index_table(split.labels, eligible, int(self._counts.max()))
        self._images = split.images.to(self.device)
        self._scale = normalisation(split.images.shape[1], mean, std, self.device)
        self._channels_last = channels_last
        self._augment = augment
        self._support_labels = torch.arange(n_way, device=self.device).repeat_interleave(n_shot)
        self._query_labels = torch.arange(n_way, device=self.device).repeat_interleave(n_query)
        self._groups = (_class_groups(split, eligible, n_way, config_key, within_group_key)
                        if within_group else None)

    def _check_shape(self, split: ImageSplit, key: str) -> None:
        """Reject shapes the split cannot supply, naming the config key and the allowed range."""
        for name, value in (("n_way", self.n_way), ("n_shot", self.n_shot)):
            if value < 1:
                raise ConfigError(f"{key}.{name}={value} must be at least 1")
        if self.n_query < 0:
            raise ConfigError(f"{key}.n_query={self.n_query} must be 0 or more")
        if self.n_way > split.num_classes:
            raise ConfigError(
                f"{key}.n_way={self.n_way} is larger than the {split.num_classes} classes of "
                f"{split.name}; use at most {split.num_classes}"
            )
        counts = split.class_counts()
        per_class = self.n_shot + self.n_query
        enough = int((counts >= per_class).sum())
        if enough < self.n_way:
            # The most images per class an n_way-way episode can take: its n_way-th largest class.
            fits = int(counts.sort(descending=True).values[self.n_way - 1])
            have = f"only {enough} of its classes have" if enough else "none of its classes has"
            raise ConfigError(
                f"{key}.n_shot + {key}.n_query = {self.n_shot} + {self.n_query} = {per_class} images "
                f"per class, but {have} that many in {split.name} (largest class: "
                f"{int(counts.max())} images); for {self.n_way}-way episodes lower n_shot + n_query to "
                f"at most {fits}, or lower n_way"
            )

    @property
    def num_classes(self) -> int:
        """Classes this sampler can draw from."""
        return len(self._class_names)

    @property
    def class_ids(self) -> torch.Tensor:
        """int64 [num_classes]: the split-level class index of each class this sampler draws from
        (class_pick of sample_indices indexes it)."""
        return self._class_ids

    def seed_of(self, index: int) -> int:
        """The 64-bit generator seed of episode `index` of this stream."""
        return episode_seed(self.seed, self.stream, index)

    def sample_indices(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and class indices of episode `index`, on the CPU.

        Returns:
            image_index: int64 [n_way, n_shot + n_query] rows of the split's image tensor
            class_pick: int64 [n_way] positions in this sampler's class list
        """
        generator = torch.Generator().manual_seed(episode_seed(self.seed, self.stream, index))
        if self._groups is None:
            class_pick = torch.randperm(self.num_classes, generator=generator)[: self.n_way]
        else:
            members = self._groups[int(torch.randint(len(self._groups), (1,), generator=generator))]
            class_pick = members[torch.randperm(len(members), generator=generator)[: self.n_way]]
        counts = self._counts[class_pick]
        table = self._class_table[class_pick]
        # Random keys per slot; padding slots get keys above 1 so they sort last and are never picked.
        keys = torch.rand(table.shape, generator=generator)
        keys.masked_fill_(torch.arange(table.shape[1]) >= counts[:, None], 2.0)
        slots = keys.argsort(dim=1)[:, : self.n_shot + self.n_query]
        return table.gather(1, slots), class_pick

    def episodes(self, start: int, count: int) -> Iterator[Episode]:
        """Yield episodes start, start+1, ..., start+count-1."""
        for chunk_start in range(start, start + count, INDEX_CHUNK):
            chunk = range(chunk_start, min(chunk_start + INDEX_CHUNK, start + count))
            picks = [self.sample_indices(i) for i in chunk]
            image_index = torch.stack([p[0] for p in picks])
            if self.device.type == "cuda":
                image_index = image_index.pin_memory().to(self.device, non_blocking=True)
            for offset, (_, class_pick) in enumerate(picks):
                yield self._assemble(image_index[offset], class_pick, chunk[offset])

    def episode(self, index: int) -> Episode:
        """Episode number `index` of this stream."""
        return next(self.episodes(index, 1))

    def _assemble(self, image_index: torch.Tensor, class_pick: torch.Tensor, index: int) -> Episode:
        """Gather [n_way, K+Q] images on the device and split them into support and query; the
        Episode carries episode `index`'s seed."""
        seed = episode_seed(self.seed, self.stream, index)
        images = self._to_float(self._images[image_index], seed)  # [n_way, K+Q, C, H, W]
        shape = images.shape[2:]
        support = images[:, : self.n_shot].reshape(-1, *shape)
        query = images[:, self.n_shot :].reshape(-1, *shape)
        if self._channels_last:
            support = support.contiguous(memory_format=torch.channels_last)
            query = query.contiguous(memory_format=torch.channels_last)
        return Episode(
            support_images=support,
            support_labels=self._support_labels,
            query_images=query,
            query_labels=self._query_labels,
            class_ids=self._class_ids[class_pick],
            class_names=tuple(self._class_names[i] for i in class_pick.tolist()),
            n_way=self.n_way,
            n_shot=self.n_shot,
            n_query=self.n_query,
            seed=seed,
        )

    def _to_float(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """uint8 [..., C, H, W] -> float32 in [0, 1], augmented when this sampler augments (`seed`:
        the episode's), then (x - mean) / std when configured."""
        scale, shift = self._scale
        if self._augment is None:
            return images.float().mul_(scale).add_(shift)
        # Before normalising: colour jitter is defined on (and clamps to) the [0, 1] pixel range.
        unit = images.float().div_(255.0)
        augmented = self._augment(unit.reshape(-1, *unit.shape[-3:]), seed).reshape(unit.shape)
        return augmented.mul_(scale * 255.0).add_(shift)


def _class_index_table(labels: torch.Tensor, classes: torch.Tensor, width: int) -> torch.Tensor:
    """int64 [len(classes), width]: row c lists the image indices of class classes[c], zero-padded."""
    table = torch.zeros(len(classes), width, dtype=torch.long)
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(torch.bincount(labels), 0) - torch.bincount(labels)
    counts = torch.bincount(labels)
    for row, cls in enumerate(classes.tolist()):
        begin, n = int(starts[cls]), int(counts[cls])
        table[row, :n] = order[begin : begin + n]
    return table


def _class_groups(split: ImageSplit, eligible: torch.Tensor, n_way: int, key: str,
                  group_key: str) -> list[torch.Tensor]:
    """Positions (in the sampler's eligible-class list) of each group with >= n_way eligible classes.

    `key` names the episode-shape config node and `group_key` the switch that asked for groups, so
    the error names what to change."""
    if split.class_groups is None:
        raise ConfigError(f"{group_key}=true, but {split.name} has no class groups (only "
                          f"Omniglot's alphabets so far); set {group_key}=false")
    groups = split.class_groups[eligible]
    members = [torch.nonzero(groups == g).flatten() for g in torch.unique(groups).tolist()]
    members = [m for m in members if len(m) >= n_way]
    if not members:
        raise ConfigError(f"{key}.n_way={n_way}: no class group of {split.name} has that many "
                          f"classes; lower n_way or set {group_key}=false")
    return members
