"""What every reader returns: the images of a split in memory (`ImageSet`, uint8 N x C x H x W) and
a data set's two splits (`DataSplits`); `restrict` narrows them to some classes (transfer studies)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ResnetlabError


@dataclass
class ImageSet:
    """Images and labels of one split: `images` uint8 N x C x H x W (contiguous), `labels` int64 N."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self):
        # Programming errors, not user errors: every reader builds these tensors itself.
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored images (StreamSet has the same property)."""
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        """The images at `index` (a slice, index tensor or boolean mask), same classes."""
        return ImageSet(self.images[index].contiguous(), self.labels[index].contiguous(),
                        list(self.classes))


@dataclass
class DataSplits:
    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    source: str



def restrict(splits: DataSplits, classes: list[int] | None = None, per_class: int | None = None,
             seed: int = 0) -> DataSplits:
    """Only the given classes (relabelled 0..k-1 in the order given), and at most `per_class`
    training images of each (a fixed random choice per seed): for transfer-learning studies."""
    if not classes and not per_class:
        return splits
    if not isinstance(splits.train, ImageSet):
        raise ResnetlabError("--classes / --per-class need the data in memory; use --stream off")
    names = splits.classes
    classes = list(classes) if classes else list(range(len(names)))
    bad = [c for c in classes if not 0 <= c < len(names)]
    if bad or len(set(classes)) != len(classes):
        raise ResnetlabError(f"--classes {classes}: give distinct class indices in 0..{len(names) - 1}")
    mapping = torch.full((len(names),), -1, dtype=torch.int64)
    mapping[classes] = torch.arange(len(classes))
    kept = [names[c] for c in classes]

    def pick(part: ImageSet, limit: int | None) -> ImageSet:
        new = mapping[part.labels]
        index = (new >= 0).nonzero().flatten()
        if limit:
            gen = torch.Generator().manual_seed(seed + 104729)
            chosen = []
            for c in range(len(classes)):
                members = index[new[index] == c]
                if len(members) < limit:
                    raise ResnetlabError(f"class {kept[c]!r} has {len(members)} training images, fewer "
                                         f"than --per-class {limit}")
                chosen.append(members[torch.randperm(len(members), generator=gen)[:limit]])
            index = torch.cat(chosen).sort().values
        sub = part.subset(index)
        return ImageSet(sub.images, mapping[sub.labels], kept)

    return DataSplits(splits.name, pick(splits.train, per_class), pick(splits.test, None), kept,
                      splits.source)
