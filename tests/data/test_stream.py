"""Streaming image folders: the same batches as the in-memory loader, decoded in worker processes."""

import logging

import pytest
import torch
from fakedata import image_bytes, tar_folder, write_class_folder, write_image

from resnetlab.data import load_dataset, scan_image_folder, stream
from resnetlab.data.augment import Normalizer
from resnetlab.data.loader import BatchLoader, View
from resnetlab.data.stream import (
    StreamingLoader,
    estimate_folder_bytes,
    fits_in_memory,
    open_stream,
)
from resnetlab.errors import ResnetlabError

pytestmark = pytest.mark.usefixtures("isolated")

SPLIT = dict(split_fraction=0.25, seed=3)
TRAIN_VIEW = View("pad-crop-flip", pad=2)
EVAL_VIEW = View("center", size=6)


def mixed_folder(root):
    """39 images in 3 classes: RGB PNGs, RGB JPEGs of another size, and a few grayscale PNGs."""
    write_class_folder(root, {"ant": 9, "bee": 8, "cat": 7}, size=(10, 8))
    write_class_folder(root, {"ant": 3, "bee": 4, "cat": 5}, ext="jpg", fmt="JPEG", size=(12, 9))
    for i in range(3):
        write_image(root / "bee" / f"gray{i}.png", mode="L", size=(8, 8), seed=100 + i)
    return root


@pytest.fixture
def folder(tmp_path):
    return mixed_folder(tmp_path / "set")


def loaders(mem_set, stream_set, normalizer, num_workers, **kw):
    """A BatchLoader over the in-memory images and a StreamingLoader over the streamed ones, alike."""
    kw = dict(normalizer=normalizer, **kw)
    return (BatchLoader(mem_set.images, mem_set.labels, **kw),
            StreamingLoader(stream_set, num_workers=num_workers, **kw))


def assert_same_batches(a, b):
    a, b = list(a), list(b)
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == torch.float32 and xa.shape == xb.shape
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# --------------------------------------------------------------------------------------------------
# Opening a folder


@pytest.mark.parametrize("image_size,shape", [(8, (3, 8, 8)), (None, (3, 256, 256))])
def test_open_stream_holds_what_load_dataset_loads(tmp_path, folder, image_size, shape):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=image_size, **SPLIT)
    streamed = open_stream(folder, image_size=image_size, **SPLIT)
    assert streamed.classes == mem.classes == ["ant", "bee", "cat"] and streamed.source == mem.source
    assert streamed.shape == shape == tuple(mem.train.images.shape[1:])
    for s, m in ((streamed.train, mem.train), (streamed.test, mem.test)):
        assert len(s) == len(m) and torch.equal(s.labels, m.labels) and s.classes == m.classes
        assert torch.equal(s.read(range(len(s))), m.images)  # fitted and expanded alike, bit for bit
    assert len(streamed.train) + len(streamed.test) == 39


def test_common_size_is_kept_and_gray_stays_gray(tmp_path):
    write_class_folder(tmp_path / "gray", {"a": 3, "b": 3}, mode="L", size=(6, 4))
    streamed = open_stream(tmp_path / "gray", split_fraction=0)
    mem = load_dataset(tmp_path / "gray", data_dir=tmp_path / "c", split_fraction=0)
    assert streamed.shape == (1, 4, 6) and len(streamed.test) == 0
    assert torch.equal(streamed.train.read(torch.arange(6)), mem.train.images)


def test_known_data_sets_are_not_streamed():
    with pytest.raises(ResnetlabError, match="cifar10 is a known data set.*load_dataset"):
        open_stream("cifar10")


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ResnetlabError, match="no such folder or archive"):
        open_stream(tmp_path / "nope")


# --------------------------------------------------------------------------------------------------
# The same batches as BatchLoader


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_batches_are_bit_identical(tmp_path, folder, num_workers):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    streamed = open_stream(folder, image_size=8, **SPLIT)
    norm = Normalizer.fit(mem.train.images, "channel")
    ref, ld = loaders(mem.train, streamed.train, norm, num_workers, batch_size=8, train=True,
                      view=TRAIN_VIEW, seed=5)
    assert len(ld) == len(ref) == len(mem.train) // 8
    assert torch.equal(ld.order(1), ref.order(1))
    assert_same_batches(ref.epoch(1), ld.epoch(1))
    assert_same_batches(ref.epoch(2), ld.epoch(2))  # the workers persist: a second epoch works too


def test_alternating_flip_streams_the_same_batches(tmp_path, folder):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    streamed = open_stream(folder, image_size=8, **SPLIT)
    norm = Normalizer.fit(mem.train.images, "channel")
    ref, ld = loaders(mem.train, streamed.train, norm, 0, batch_size=8, train=True, view=View("alt-flip"),
                      seed=5)
    assert_same_batches(ref.epoch(1), ld.epoch(1))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_eval_batches_are_bit_identical(tmp_path, folder, num_workers):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    streamed = open_stream(folder, image_size=8, **SPLIT)
    norm = Normalizer.fit(mem.train.images, "pixel-mean")
    ref, ld = loaders(mem.train, streamed.train, norm, num_workers, batch_size=7, train=False,
                      view=EVAL_VIEW, channels_last=True)
    assert len(ld) == len(ref) == -(-len(mem.train) // 7)  # the last, partial batch is kept
    assert_same_batches(ref.epoch(), ld.epoch())
    ys = torch.cat([y for _, y in ld.epoch()])
    assert torch.equal(ys, mem.train.labels)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_gives_the_remaining_batches(tmp_path, folder, num_workers):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    streamed = open_stream(folder, image_size=8, **SPLIT)
    norm = Normalizer.fit(mem.train.images, "channel")
    ref, ld = loaders(mem.train, streamed.train, norm, num_workers, batch_size=4, train=True,
                      view=TRAIN_VIEW, seed=1)
    abandoned = ld.epoch(0)
    next(abandoned)  # an epoch left half-read (a run stopped mid-epoch) ...
    abandoned.close()
    resumed = list(ld.epoch(2, start=3))  # ... does not disturb the next one
    assert len(resumed) == len(ref) - 3
    assert_same_batches(list(ref.epoch(2))[3:], resumed)


def test_ranks_read_their_slices(tmp_path, folder):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    streamed = open_stream(folder, image_size=8, **SPLIT)
    norm = Normalizer.fit(mem.train.images, "channel")
    whole = list(BatchLoader(mem.train.images, mem.train.labels, 8, train=True, view=TRAIN_VIEW,
                             normalizer=norm, seed=2).epoch(0))
    parts = []
    for rank in range(2):
        ref, ld = loaders(mem.train, streamed.train, norm, 0, batch_size=8, train=True, view=TRAIN_VIEW,
                          seed=2, rank=rank, world_size=2)
        assert_same_batches(ref.epoch(0), ld.epoch(0))
        parts.append(list(ld.epoch(0)))
    for b, (_, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), y)
        assert len(parts[0][b][1]) == len(parts[1][b][1]) == 4


def test_one_epoch_at_a_time(tmp_path, folder):
    streamed = open_stream(folder, image_size=8, **SPLIT)
    norm = Normalizer.fit(streamed.train.sample_images(8), "none")
    ld = StreamingLoader(streamed.train, 4, train=True, view=TRAIN_VIEW, normalizer=norm, num_workers=2)
    first = ld.epoch(0)
    next(first)
    second = list(ld.epoch(1))
    assert len(second) == len(ld)
    with pytest.raises(RuntimeError, match="one epoch at a time"):
        next(first)
    ld.close()
    assert len(list(ld.epoch(0))) == len(ld)  # new workers after close()


@pytest.mark.parametrize("gz", [True, False])
def test_archives_stream_correctly(tmp_path, folder, gz, caplog):
    archive = tar_folder(folder, tmp_path / ("set.tar.gz" if gz else "set.tar"), "set", gz=gz)
    mem = load_dataset(archive, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    with caplog.at_level(logging.WARNING, logger="resnetlab.data.stream"):
        streamed = open_stream(archive, image_size=8, **SPLIT)
    assert ("gzip-compressed" in caplog.text) == gz
    assert streamed.train.index.archive == str(archive.resolve())
    norm = Normalizer.fit(mem.train.images, "channel")
    ref, ld = loaders(mem.train, streamed.train, norm, 2, batch_size=8, train=True, view=TRAIN_VIEW,
                      seed=4)
    assert_same_batches(ref.epoch(0), ld.epoch(0))  # shuffled reads: backward seeks in the archive


# --------------------------------------------------------------------------------------------------
# Unreadable images: the in-memory policy, settled when the folder is opened


def test_a_few_corrupt_images_are_skipped_with_a_warning(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 60, "b": 60}, size=(2, 2))
    (tmp_path / "set" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match=r"skipped 1 of 121 .*broken.png"):
        streamed = open_stream(tmp_path / "set", split_fraction=0)
    with pytest.warns(UserWarning, match=r"skipped 1 of 121 .*broken.png"):
        mem = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0)
    assert len(streamed.train) == len(mem.train) == 120
    assert torch.equal(streamed.train.labels, mem.train.labels)
    assert torch.equal(streamed.train.read(range(120)), mem.train.images)


def test_many_corrupt_images_are_an_error(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, size=(2, 2))
    (tmp_path / "set" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ResnetlabError, match=r"1 of 7 images cannot be decoded \(.*broken.jpg\)"):
        open_stream(tmp_path / "set")


def damaged_after_the_header(path):
    """A PNG whose header is whole but whose pixel data is cut short."""
    data = image_bytes("RGB", (8, 8), "PNG", seed=7)
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_damage_past_the_header_stops_the_epoch_with_one_clear_error(tmp_path, num_workers):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, size=(8, 8))
    damaged_after_the_header(tmp_path / "set" / "a" / "cut.png")
    streamed = open_stream(tmp_path / "set", split_fraction=0)  # the header check lets it through
    assert len(streamed.train) == 7
    ld = StreamingLoader(streamed.train, 7, train=False, view=View("none"),
                         normalizer=Normalizer.fit(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "none"),
                         num_workers=num_workers)
    with pytest.raises(ResnetlabError) as e:
        list(ld.epoch())
    message = str(e.value)
    assert "cut.png: cannot decode" in message and "fix or remove" in message and "\n" not in message


def test_decode_check_finds_damage_past_the_header(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, size=(8, 8))
    damaged_after_the_header(tmp_path / "set" / "a" / "cut.png")
    with pytest.raises(ResnetlabError, match=r"1 of 7 images cannot be decoded \(.*cut.png\)"):
        open_stream(tmp_path / "set", check="decode")
    with pytest.raises(ResnetlabError, match="1 of 7 images cannot be decoded"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


# --------------------------------------------------------------------------------------------------
# Samples, subsets, memory estimates


def test_sample_images_is_a_fixed_sample(tmp_path, folder):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    train = open_stream(folder, image_size=8, **SPLIT).train
    sample = train.sample_images(10, seed=1)
    assert sample.shape == (10, 3, 8, 8) and sample.dtype == torch.uint8
    assert torch.equal(sample, train.sample_images(10, seed=1, num_workers=2))
    assert not torch.equal(sample, train.sample_images(10, seed=2))
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:10].sort().values
    assert torch.equal(sample, mem.train.images[picked])
    assert torch.equal(train.sample_images(1000), mem.train.images)  # asking for more gives all
    assert Normalizer.fit(sample, "channel").mean.shape == (3, 1, 1)


def test_subset_like_imageset(tmp_path, folder):
    mem = load_dataset(folder, data_dir=tmp_path / "c", image_size=8, **SPLIT)
    train = open_stream(folder, image_size=8, **SPLIT).train
    pick = torch.tensor([5, 0, 3])
    part = train.subset(pick)
    assert torch.equal(part.labels, mem.train.labels[pick]) and part.shape == train.shape
    assert torch.equal(part.read(range(3)), mem.train.subset(pick).images)
    assert len(train.subset(slice(0, 4))) == 4


def test_a_header_that_misleads_is_covered(tmp_path, caplog):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 1}, size=(6, 4))
    train = open_stream(tmp_path / "set", split_fraction=0).train
    assert train.shape == (3, 4, 6)
    wrong = stream.StreamSet(train.index, train.items, (1, 5, 5), None, train.source)
    with caplog.at_level(logging.WARNING, logger="resnetlab.data.stream"):
        images = wrong.read([0, 2])
    assert images.shape == (2, 1, 5, 5) and "not as its header promised" in caplog.text


def test_memory_estimate_and_decision(tmp_path, folder, monkeypatch):
    index = scan_image_folder(folder, **SPLIT)
    n = len(index.train) + len(index.test)
    assert estimate_folder_bytes(index, 8) == n * 3 * 8 * 8
    assert estimate_folder_bytes(index, None) == n * 3 * 256 * 256  # sizes differ: default squares
    write_class_folder(tmp_path / "gray", {"a": 4, "b": 4}, mode="L", size=(6, 4))
    gray = scan_image_folder(tmp_path / "gray")
    assert estimate_folder_bytes(gray, None) == 8 * 1 * 4 * 6
    need = n * 3 * 8 * 8
    assert fits_in_memory(index, 8, memory_bytes=4 * need)
    assert not fits_in_memory(index, 8, memory_bytes=4 * need - 1)
    assert fits_in_memory(index, 8, budget_fraction=0.5, memory_bytes=2 * need)
    monkeypatch.setattr(stream, "total_memory", lambda: 1000)  # a fake, tiny machine
    assert not fits_in_memory(index, 8)
    monkeypatch.setattr(stream, "total_memory", lambda: 1 << 40)
    assert fits_in_memory(index, 8)


def test_total_memory_is_this_machines():
    assert stream.total_memory() > 1 << 26


def test_estimate_of_an_archive(tmp_path, folder):
    archive = tar_folder(folder, tmp_path / "set.tgz", "set")
    index = scan_image_folder(archive, **SPLIT)
    assert estimate_folder_bytes(index, 8) == (len(index.train) + len(index.test)) * 3 * 64
