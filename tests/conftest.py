import os
import urllib.error

import pytest
import torch

# Tests run on CPU with a fixed thread count so timings and numerics are repeatable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own engine cache: no test reads or writes the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(run folder, data dir): resnet8 trained for 2 epochs on 256 12x12 images of fake Fashion-MNIST
    (the real trainer, fixed engine flags). Shared by the tests of what reads a trained run; tests that
    change the run work on a copy."""
    from fakedata import write_fashion_like

    from resnetlab.train.loop import TrainConfig, train
    from resnetlab.train.recipe import get_recipe

    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        write_fashion_like(root / "data", n_train=256, n_test=64, size=12)
        recipe = get_recipe("fast", epochs=2, batch_size=32, lr=0.2, precision="fp32", channels_last="off",
                            compile="off")
        train(TrainConfig(model="resnet8", data="fashion-mnist", data_dir=str(root / "data"),
                          out=str(root / "run"), recipe=recipe), progress=False)
    return root / "run", str(root / "data")


@pytest.fixture(scope="session")
def tiny_flip(tmp_path_factory):
    """(run folder, data dir): `tiny` with the fast-training options on: evaluated on each image and
    its mirror (--eval-view flip) with a per-pixel mean (the case where the mirror's statistics
    matter), weight EMA, no weight decay on BatchNorm weights and biases."""
    from fakedata import write_fashion_like

    from resnetlab.train.loop import TrainConfig, train
    from resnetlab.train.recipe import get_recipe

    root = tmp_path_factory.mktemp("tiny-flip")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        write_fashion_like(root / "data", n_train=256, n_test=64, size=12)
        recipe = get_recipe("fast", epochs=2, batch_size=32, lr=0.2, precision="fp32", channels_last="off",
                            compile="off", eval_view="flip", normalize="pixel-mean", ema=0.9,
                            bn_weight_decay=0.0)
        train(TrainConfig(model="resnet8", data="fashion-mnist", data_dir=str(root / "data"),
                          out=str(root / "run"), recipe=recipe), progress=False)
    return root / "run", str(root / "data")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No network, no system data, a private cache: tests see only the data they write."""
    from resnetlab.data import known as sources

    monkeypatch.delenv("RESNETLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_ROOTS", ())

    def offline(url, dest):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(sources, "_download_file", offline)
