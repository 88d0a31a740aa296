import pytest
import torch

from resnetlab import ResnetlabError
from resnetlab.data.augment import Normalizer
from resnetlab.data.loader import BatchLoader, View


def labelled_images(n=100, size=8):
    """Each image is filled with its label's value (x 20): any crop/flip keeps the centre readable."""
    labels = torch.arange(n) % 10
    images = (labels * 20 + 10).to(torch.uint8)[:, None, None, None].expand(n, 1, size, size).contiguous()
    return images, labels


def loader(train=True, view=None, **kw):
    view = view or View("pad-crop-flip", pad=2)
    x, y = labelled_images()
    kw.setdefault("batch_size", 16)
    return BatchLoader(x, y, train=train, view=view, normalizer=Normalizer.fit(x, "none"), **kw)


def test_training_epoch_visits_each_image_at_most_once_and_drops_the_partial_batch():
    ld = loader()
    assert len(ld) == 100 // 16
    seen = torch.cat([ld.order(0)[b * 16:(b + 1) * 16] for b in range(len(ld))])
    assert len(set(seen.tolist())) == len(seen) == 96
    assert not torch.equal(ld.order(0), ld.order(1))
    assert torch.equal(ld.order(3), loader().order(3))


def test_augmentation_keeps_labels():
    for x, y in loader().epoch(0):
        centre = (x[:, 0, 4, 4] * 255).round().long()
        assert torch.equal(centre, y * 20 + 10)


def test_any_batch_can_be_rebuilt_alone_for_exact_resume():
    ld = loader(view=View("pad-crop-flip", pad=4))
    full = list(ld.epoch(2))
    resumed = list(ld.epoch(2, start=3))
    assert len(resumed) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_eval_loader_covers_every_image_in_order():
    ld = loader(train=False, view=View("none"), batch_size=30)
    ys = torch.cat([y for _, y in ld.epoch()])
    assert len(ld) == 4 and torch.equal(ys, torch.arange(100) % 10)


def test_ranks_split_the_global_batch():
    parts = [list(loader(rank=r, world_size=2).epoch(1)) for r in range(2)]
    whole = list(loader().epoch(1))
    for b in range(len(whole)):
        ys = torch.cat([parts[0][b][1], parts[1][b][1]])
        assert torch.equal(ys, whole[b][1])


def test_channels_last_output():
    x, _ = next(loader(channels_last=True).epoch(0))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32


def test_bad_batch_sizes_are_clear_errors():
    with pytest.raises(ResnetlabError, match="divisible"):
        loader(world_size=3)
    with pytest.raises(ResnetlabError, match="fewer than one batch"):
        loader(batch_size=128)


def test_ten_crop_view_yields_ten_crops_per_image():
    x, y = labelled_images(4, 40)
    ld = BatchLoader(x, y, 4, train=False, view=View("ten-crop", size=32),
                     normalizer=Normalizer.fit(x, "none"))
    xb, yb = next(ld.epoch())
    assert xb.shape == (40, 1, 32, 32) and yb.shape == (4,)


def test_flip_eval_view_yields_each_image_then_its_mirror():
    x = torch.randint(0, 256, (5, 3, 6, 7), dtype=torch.uint8)   # not mirror-symmetric
    y = torch.arange(5)
    for norm in (Normalizer.fit(x, "channel"), Normalizer.fit(x, "pixel-mean")):
        ld = BatchLoader(x, y, 5, train=False, view=View("flip"), normalizer=norm)
        xb, yb = next(ld.epoch())
        plain, _ = next(BatchLoader(x, y, 5, train=False, view=View("none"), normalizer=norm).epoch())
        assert xb.shape == (10, 3, 6, 7) and torch.equal(yb, y)
        assert torch.equal(xb[:5], plain)                  # crop-major: the images as "none" gives them,
        assert torch.equal(xb[5:], plain.flip(-1))         # then their mirrors (normalised, then mirrored)
        assert not torch.equal(xb[5:], xb[:5])


def test_flip_as_training_augmentation_still_flips_a_random_half():
    x = torch.arange(6, dtype=torch.uint8).view(1, 1, 1, 6).expand(64, 1, 6, 6).contiguous()
    ld = BatchLoader(x, torch.zeros(64, dtype=torch.int64), 64, train=True, view=View("flip"),
                     normalizer=Normalizer.fit(x, "none"))
    xb, _ = next(ld.epoch())
    mirrored = (xb[:, 0, 0, 0] > xb[:, 0, 0, -1]).sum().item()
    assert xb.shape == (64, 1, 6, 6) and 10 < mirrored < 54


def test_alternating_flip_mirrors_each_image_on_every_other_epoch():
    # Image i is the row 0..5 (not mirror-symmetric); labels carry the image's index.
    n = 64
    x = torch.arange(6, dtype=torch.uint8).view(1, 1, 1, 6).expand(n, 1, 6, 6).contiguous()
    ld = BatchLoader(x, torch.arange(n), 16, train=True, view=View("alt-flip"),
                     normalizer=Normalizer.fit(x, "none"))

    def mirrored(epoch):   # image index -> flipped in this epoch
        return {i: bool(xb[k, 0, 0, 0] > xb[k, 0, 0, -1]) for xb, yb in ld.epoch(epoch)
                for k, i in enumerate(yb.tolist())}

    e0, e1, e2 = mirrored(0), mirrored(1), mirrored(2)
    assert all(e1[i] != e0[i] for i in e0) and e2 == e0       # every image both ways in two epochs
    assert 10 < sum(e0.values()) < 54                          # the start is a random half
    resumed = {i: bool(xb[k, 0, 0, 0] > xb[k, 0, 0, -1]) for xb, yb in ld.epoch(1, start=2)
               for k, i in enumerate(yb.tolist())}
    assert all(resumed[i] == e1[i] for i in resumed)           # a resumed epoch flips the same images
    other = BatchLoader(x, torch.arange(n), 16, train=True, view=View("alt-flip"),
                        normalizer=Normalizer.fit(x, "none"), seed=1)
    assert sum(bool(xb[k, 0, 0, 0] > xb[k, 0, 0, -1]) != e0[i] for xb, yb in other.epoch(0)
               for k, i in enumerate(yb.tolist())) > 0        # the seed sets the start


def test_alternating_flip_is_the_same_over_ranks():
    x = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8)
    kw = dict(train=True, view=View("alt-flip"), normalizer=Normalizer.fit(x, "none"), seed=3)
    whole = list(BatchLoader(x, torch.arange(64), 16, **kw).epoch(1))
    parts = [list(BatchLoader(x, torch.arange(64), 16, rank=r, world_size=2, **kw).epoch(1))
             for r in range(2)]
    for b, (xb, _) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][b][0], parts[1][b][0]]), xb)
