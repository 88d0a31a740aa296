"""`resnetlab data list|fetch`, with no network and no system data."""

import gzip
import json
import struct

import numpy as np
import pytest

from resnetlab.cli import main

pytestmark = pytest.mark.usefixtures("isolated")


def write_mnist(folder):
    folder.mkdir(parents=True)
    for stem, shape in (("train-images-idx3-ubyte", (3, 28, 28)), ("train-labels-idx1-ubyte", (3,)),
                        ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))):
        header = bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}i", *shape)
        (folder / f"{stem}.gz").write_bytes(gzip.compress(header + np.zeros(shape, np.uint8).tobytes()))


def test_data_list_json(tmp_path, capsys):
    write_mnist(tmp_path / "mnist")
    assert main(["data", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mnist"]["found"] and rows["mnist"]["path"] == str(tmp_path / "mnist")
    assert not rows["cifar10"]["found"] and rows["cifar10"]["searched"][0] == str(tmp_path)


def test_data_list_table(tmp_path, capsys):
    write_mnist(tmp_path / "mnist")
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "found" in out and "missing" in out and f"looked in: {tmp_path}" in out


def test_data_fetch_present_prints_the_path(tmp_path, capsys):
    write_mnist(tmp_path / "mnist")
    assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mnist")


def test_data_fetch_offline_is_one_error_line(tmp_path, capsys):
    assert main(["data", "fetch", "fashion-mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot download fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in err[0]


def test_data_fetch_unknown_name(capsys):
    assert main(["data", "fetch", "imagenet"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown data set 'imagenet'")
