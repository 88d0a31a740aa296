"""Image folders: decoding single images, class folders (plain, in archives), the decoded-folder cache."""

import io
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import CIFAR10_NAMES, image_bytes, tar_folder, write_class_folder, write_image
from PIL import Image

from resnetlab.data import decode_image, folders, load_dataset, scan_image_folder
from resnetlab.errors import ResnetlabError

CIFAR_JPEG = Path("/work/shared/data/cifar10-jpeg.tar.gz")

pytestmark = pytest.mark.usefixtures("isolated")

# --------------------------------------------------------------------------------------------------
# Decoding single images


@pytest.mark.parametrize("mode,fmt,channels", [
    ("L", "PNG", 1), ("LA", "PNG", 1), ("1", "PNG", 1), ("RGB", "PNG", 3), ("RGBA", "PNG", 3),
    ("P", "PNG", 3), ("L", "JPEG", 1), ("RGB", "JPEG", 3), ("CMYK", "JPEG", 3), ("RGB", "GIF", 3),
    ("RGB", "WEBP", 3), ("RGB", "BMP", 3), ("L", "BMP", 1), ("RGB", "TIFF", 3), ("L", "TIFF", 1),
])
def test_decode_image_channels(mode, fmt, channels):
    image = decode_image(image_bytes(mode, (6, 4), fmt), f"x.{fmt.lower()}")
    assert image.dtype == torch.uint8 and image.shape == (channels, 4, 6)


def test_decode_palette_gives_the_colours_not_the_indices():
    buffer = io.BytesIO()
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8))
    palette = rgb.convert("P")
    palette.save(buffer, "PNG")
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode_image(buffer.getvalue()), expected)


def test_decode_16_bit_png():
    buffer = io.BytesIO()
    Image.fromarray(np.full((3, 3), 0xABCD, dtype=np.uint16)).save(buffer, "PNG")
    image = decode_image(buffer.getvalue())
    assert image.shape == (1, 3, 3) and image.dtype == torch.uint8 and int(image[0, 0, 0]) == 0xAB


def test_decode_corrupt_image():
    with pytest.raises(ResnetlabError, match="bad.png: cannot decode"):
        decode_image(b"\x89PNG\r\n\x1a\n not really", "bad.png")

# --------------------------------------------------------------------------------------------------
# Image folders


def test_png_folder_with_train_and_val(tmp_path):
    write_class_folder(tmp_path / "set", {"zebra": 3, "ant": 2}, prefix="train")
    write_class_folder(tmp_path / "set", {"zebra": 1, "ant": 2}, prefix="val")
    (tmp_path / "set" / "train" / "ant" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "set" / "train" / "ant" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "set" / "train" / ".hidden" / "x.png")
    splits = load_dataset(str(tmp_path / "set"), data_dir=tmp_path / "cache")
    assert splits.classes == ["ant", "zebra"] and splits.name == str(tmp_path / "set")
    assert splits.train.images.shape == (5, 3, 4, 6) and splits.test.images.shape == (3, 3, 4, 6)
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 1] and splits.test.labels.tolist() == [0, 0, 1]
    expected = decode_image((tmp_path / "set" / "train" / "zebra" / "000.png").read_bytes())
    assert torch.equal(splits.train.images[2], expected)


def test_test_folder_counts_as_validation(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 2}, prefix="train")
    write_class_folder(tmp_path / "set", {"a": 1}, prefix="test")
    index = scan_image_folder(tmp_path / "set")
    assert index.classes == ["a", "b"] and len(index.train) == 4 and len(index.test) == 1


def test_flat_folder_split_by_fraction(tmp_path):
    write_class_folder(tmp_path / "flat", {"cat": 20, "dog": 10, "owl": 2}, ext="PNG")
    a = load_dataset(tmp_path / "flat", data_dir=tmp_path / "c", split_fraction=0.2, seed=1)
    assert len(a.train) + len(a.test) == 32
    assert a.test.labels.bincount().tolist() == [4, 2, 1]  # at least one per class
    b = scan_image_folder(tmp_path / "flat", split_fraction=0.2, seed=1)
    c = scan_image_folder(tmp_path / "flat", split_fraction=0.2, seed=2)
    assert [k for k, _ in b.test] == [k for k, _ in scan_image_folder(tmp_path / "flat", 0.2, 1).test]
    assert [k for k, _ in b.test] != [k for k, _ in c.test]
    assert not {k for k, _ in b.train} & {k for k, _ in b.test}


def test_split_fraction_out_of_range(tmp_path):
    write_class_folder(tmp_path / "flat", {"a": 2})
    with pytest.raises(ResnetlabError, match="split fraction"):
        scan_image_folder(tmp_path / "flat", split_fraction=1.5)


def test_jpeg_folder_in_a_tar_gz(tmp_path):
    src = tmp_path / "src"
    write_class_folder(src, {"b": 2, "a": 3}, prefix="train", ext="jpg", fmt="JPEG", size=(8, 8))
    write_class_folder(src, {"b": 1, "a": 1}, prefix="test", ext="JPG", fmt="JPEG", size=(8, 8))
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="myset")  # a wrapping folder, as archives often have
        odd = tarfile.TarInfo("myset/test//")  # the real CIFAR-10 JPEG archive has such an entry
        odd.type = tarfile.DIRTYPE
        tar.addfile(odd)
    splits = load_dataset(str(archive), data_dir=tmp_path / "c")
    assert splits.classes == ["a", "b"] and splits.source == str(archive.resolve())
    assert splits.train.images.shape == (5, 3, 8, 8) and splits.test.labels.tolist() == [0, 1]
    expected = decode_image((src / "train" / "a" / "000.jpg").read_bytes())
    assert torch.equal(splits.train.images[0], expected)


def test_folder_index_is_picklable_and_reads_archive_members(tmp_path):
    write_class_folder(tmp_path / "src", {"a": 3, "b": 2})
    archive = tar_folder(tmp_path / "src", tmp_path / "set.tgz", ".")
    index = scan_image_folder(archive)
    index.read_bytes(index.train[0][0])  # opens a handle, which must not be pickled
    clone = pickle.loads(pickle.dumps(index))
    assert clone.archive == str(archive.resolve())
    for key, label in reversed(index.train + index.test):  # out of order works too
        name = key.rsplit("/", 2)
        assert clone.read_bytes(key) == (tmp_path / "src" / name[1] / name[2]).read_bytes()
        assert label == index.classes.index(name[1])
    assert len(dict(clone.iter_bytes(k for k, _ in clone.train))) == len(clone.train)


def test_folder_index_of_a_directory(tmp_path):
    write_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    index = pickle.loads(pickle.dumps(scan_image_folder(tmp_path / "src", split_fraction=0.5)))
    assert index.archive is None and Path(index.train[0][0]).is_absolute()
    assert index.read_bytes(index.train[0][0])[:4] == b"\x89PNG"


def test_mixed_sizes_become_default_squares(tmp_path):
    write_image(tmp_path / "set" / "a" / "wide.png", size=(30, 10))
    write_image(tmp_path / "set" / "b" / "tall.png", size=(10, 20))
    splits = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0)
    assert splits.train.images.shape == (2, 3, 256, 256) and len(splits.test) == 0
    assert splits.test.images.shape == (0, 3, 256, 256)


def test_image_size_resizes_and_crops(tmp_path):
    write_image(tmp_path / "set" / "a" / "wide.png", size=(30, 10))
    write_image(tmp_path / "set" / "a" / "same.png", size=(30, 10))
    splits = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0, image_size=8)
    assert splits.train.images.shape == (2, 3, 8, 8)


def test_grayscale_stays_one_channel_only_if_all_are(tmp_path):
    write_class_folder(tmp_path / "gray", {"a": 2, "b": 2}, mode="L")
    assert load_dataset(tmp_path / "gray", data_dir=tmp_path / "c").train.images.shape[1] == 1
    write_image(tmp_path / "mixed" / "a" / "gray.png", mode="L")
    write_image(tmp_path / "mixed" / "a" / "rgba.png", mode="RGBA")
    write_image(tmp_path / "mixed" / "b" / "palette.png", mode="P")
    write_image(tmp_path / "mixed" / "b" / "gray_alpha.png", mode="LA")
    splits = load_dataset(tmp_path / "mixed", data_dir=tmp_path / "c", split_fraction=0)
    assert splits.train.images.shape == (4, 3, 4, 6)
    gray = splits.train.images[0]  # a/gray.png sorts first: its three channels are equal
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_a_few_corrupt_images_are_skipped_with_a_warning(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 60, "b": 60}, size=(2, 2))
    (tmp_path / "set" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match=r"skipped 1 of 121 .*broken.png"):
        splits = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0)
    assert len(splits.train) == 120


def test_many_corrupt_images_are_an_error(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, size=(2, 2))
    (tmp_path / "set" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ResnetlabError, match=r"1 of 7 images cannot be decoded \(.*broken.jpg\)"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


def test_empty_class_is_an_error(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 2})
    (tmp_path / "set" / "b").mkdir()
    (tmp_path / "set" / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(ResnetlabError, match="class folder 'b' has no images"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


def test_folder_without_classes_is_an_error(tmp_path):
    write_image(tmp_path / "loose" / "x.png")
    write_image(tmp_path / "loose" / "y.png")
    with pytest.raises(ResnetlabError, match="no class sub-folders.*<folder>/<class>/<image>"):
        load_dataset(tmp_path / "loose", data_dir=tmp_path / "c")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ResnetlabError, match="no such folder or archive"):
        load_dataset(str(tmp_path / "nope"))

# --------------------------------------------------------------------------------------------------
# The decoded-folder cache


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, prefix="train")
    write_class_folder(tmp_path / "set", {"a": 1, "b": 1}, prefix="val")
    first = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    assert len(list((tmp_path / "c" / "folders").glob("*.safetensors"))) == 1

    def fail(data, name=""):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(folders, "decode_image", fail)
    second = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels) and second.classes == ["a", "b"]
    # A changed file changes the key: decoded again.
    write_image(tmp_path / "set" / "train" / "a" / "new.png", seed=5)
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


def test_archive_cache_skips_even_the_listing(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    archive = tar_folder(tmp_path / "src", tmp_path / "set.tar.gz", "set")
    first = load_dataset(archive, data_dir=tmp_path / "c", split_fraction=0.5)
    monkeypatch.setattr(folders, "scan_image_folder", lambda *a, **k: pytest.fail("archive listed again"))
    second = load_dataset(archive, data_dir=tmp_path / "c", split_fraction=0.5)
    assert torch.equal(first.train.images, second.train.images)


def test_open_data_lists_an_archive_once_and_a_cached_one_never(tmp_path, monkeypatch):
    from resnetlab.data import open as data_open

    write_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    archive = tar_folder(tmp_path / "src", tmp_path / "set.tar.gz", "set")
    scans = []
    real_scan = folders.scan_image_folder

    def counting_scan(*args, **kwargs):
        scans.append(args[0])
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(folders, "scan_image_folder", counting_scan)
    monkeypatch.setattr(data_open, "scan_image_folder", counting_scan)
    first = data_open.open_data(archive, data_dir=tmp_path / "c")    # --stream auto: fits, decoded, cached
    assert len(scans) == 1
    second = data_open.open_data(archive, data_dir=tmp_path / "c")
    assert len(scans) == 1                                            # from the cache, not listed
    assert torch.equal(first.train.images, second.train.images) and second.classes == ["a", "b"]


def test_corrupt_cache_is_rebuilt(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 2})
    first = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    (cache_file,) = (tmp_path / "c" / "folders").glob("*.safetensors")
    cache_file.write_bytes(b"garbage")
    second = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    assert torch.equal(first.train.images, second.train.images)
    assert cache_file.stat().st_size > 100  # rewritten


def test_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 2})
    monkeypatch.setattr(folders, "first_writable", lambda roots: None)
    assert len(load_dataset(tmp_path / "set", data_dir=tmp_path / "c").train) == 2
    assert not (tmp_path / "c").exists()

# --------------------------------------------------------------------------------------------------
# The real data set, where this machine has it


@pytest.mark.skipif(not CIFAR_JPEG.is_file(), reason="the CIFAR-10 JPEG archive is not here")
def test_real_cifar10_jpeg_archive(tmp_path):
    start = time.perf_counter()
    splits = load_dataset(str(CIFAR_JPEG), data_dir=tmp_path)
    first = time.perf_counter() - start
    assert splits.train.images.shape == (50000, 3, 32, 32) and splits.test.images.shape == (10000, 3, 32, 32)
    assert splits.classes == sorted(CIFAR10_NAMES)
    assert splits.train.labels.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    again = load_dataset(str(CIFAR_JPEG), data_dir=tmp_path)
    cached = time.perf_counter() - start
    assert torch.equal(again.test.images, splits.test.images)
    print(f"CIFAR-10 JPEG archive: first load {first:.1f} s, cached load {cached:.2f} s")
