import torch

from resnetlab.data.augment import (
    Normalizer,
    batch_seed,
    center_crop,
    random_crop,
    random_flip,
    scale_crop_flip,
    ten_crop,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_takes_a_window_of_the_zero_padded_image():
    x = torch.randint(1, 255, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, (8, 8), pad=2, gen=gen())
    assert out.shape == (16, 3, 8, 8) and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(16):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[i, :, dy:dy + 8, dx:dx + 8], out[i])]
        assert windows, f"image {i} is not a crop of its padded self"
        offsets.add(windows[0])
    assert len(offsets) > 3   # offsets really are random


def test_random_crop_without_padding_at_full_size_is_the_identity():
    x = torch.randint(0, 255, (4, 1, 6, 6), dtype=torch.uint8)
    assert torch.equal(random_crop(x, (6, 6), 0, gen()), x)


def test_random_flip_flips_about_half_and_nothing_else():
    x = torch.randint(0, 255, (400, 1, 4, 5), dtype=torch.uint8)
    out = random_flip(x, gen())
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert (same | flipped).all()
    assert 150 < int(flipped.sum()) < 250


def test_augmentation_is_reproducible_from_the_seed():
    x = torch.randint(0, 255, (32, 3, 8, 8), dtype=torch.uint8)
    a = random_flip(random_crop(x, (8, 8), 4, gen(5)), gen(6))
    b = random_flip(random_crop(x, (8, 8), 4, gen(5)), gen(6))
    assert torch.equal(a, b)
    seeds = {batch_seed(0, e, b, r) for e in range(5) for b in range(50) for r in range(3)}
    assert len(seeds) == 5 * 50 * 3


def test_pixel_mean_normalizer_subtracts_the_mean_image():
    x = torch.randint(0, 255, (50, 3, 4, 4), dtype=torch.uint8)
    norm = Normalizer.fit(x, "pixel-mean")
    assert norm.mean.shape == (3, 4, 4)
    out = norm(x)
    assert torch.allclose(out.mean(0), torch.zeros(3, 4, 4), atol=1e-5)
    assert torch.allclose(out, x.float() / 255 - (x.double() / 255).mean(0).float(), atol=1e-6)


def test_channel_normalizer_gives_zero_mean_unit_std():
    x = torch.randint(0, 200, (100, 3, 8, 8), dtype=torch.uint8)
    out = Normalizer.fit(x, "channel")(x)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std((0, 2, 3)), torch.ones(3), atol=1e-2)


def test_ten_crop_is_corners_centre_and_flips():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    crops = ten_crop(x, 4)
    assert crops.shape == (10, 2, 1, 4, 4)
    assert torch.equal(crops[0], x[..., :4, :4]) and torch.equal(crops[3], x[..., 2:, 2:])
    assert torch.equal(crops[4], center_crop(x, 4)) and torch.equal(crops[9], crops[4].flip(-1))


def test_scale_crop_flip_shapes_and_full_window_identity():
    x = torch.rand(3, 3, 32, 32)
    out = scale_crop_flip(x, 16, gen(), scale=(1.0, 2.0))
    assert out.shape == (3, 3, 16, 16)
    # L = size and no flip: the window is the whole image, resampled to the output size.
    same = scale_crop_flip(x, 32, gen(), scale=(1.0, 1.0), flip=False)
    assert torch.allclose(same, x, atol=1e-5)
