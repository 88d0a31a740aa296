"""Property-based fuzzing of the readers a user can hand files to: any bytes give a result or
resnetlab's own one-line error (ResnetlabError), never another exception or a crash."""

import gzip
import io
import pickle

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from resnetlab import ResnetlabError
from resnetlab.data import read_cifar_batch, read_idx
from resnetlab.train.checkpoint import read_weights
from resnetlab.transfer import load_state_file

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_idx(n=3) -> bytes:
    body = np.arange(n * 4 * 4, dtype=np.uint8).tobytes()
    return bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (4).to_bytes(4, "big") * 2 + body


def valid_cifar() -> bytes:
    return pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [1, 2]})


def valid_safetensors() -> bytes:
    return save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.weight": torch.ones(4, 2)})


def valid_torch() -> bytes:
    buf = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(2, 1, 3, 3), "fc.bias": torch.zeros(3)}, buf)
    return buf.getvalue()


def mutated(seed: bytes):
    """Truncations, byte flips and splices of a valid file, plus arbitrary bytes."""
    flips = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
    return st.one_of(
        st.binary(max_size=400),
        st.integers(0, len(seed)).map(lambda k: seed[:k]),
        flips.map(lambda fs: bytes(_flip(seed, fs))),
        st.tuples(st.integers(0, len(seed)), st.binary(max_size=64)).map(lambda t: seed[:t[0]] + t[1]),
    )


def _flip(seed, flips):
    b = bytearray(seed)
    for i, v in flips:
        b[i] = v
    return b


def check(fn, path, data: bytes):
    path.write_bytes(data)
    try:
        fn(path)
    except ResnetlabError as e:
        assert str(e) and "\n" not in str(e).strip(), "errors are one line"


@SETTINGS
@given(data=mutated(valid_idx()))
def test_idx_reader(tmp_path, data):
    check(read_idx, tmp_path / "x-idx3-ubyte", data)


@SETTINGS
@given(data=mutated(gzip.compress(valid_idx())))
def test_idx_reader_gzip(tmp_path, data):
    check(read_idx, tmp_path / "x-idx3-ubyte.gz", data)


@SETTINGS
@given(data=mutated(valid_cifar()))
def test_cifar_reader(tmp_path, data):
    check(read_cifar_batch, tmp_path / "data_batch_1", data)


@SETTINGS
@given(data=mutated(valid_safetensors()))
def test_safetensors_checkpoint_loader(tmp_path, data):
    check(read_weights, tmp_path / "model.safetensors", data)


@SETTINGS
@given(data=mutated(valid_torch()))
def test_pth_weights_loader(tmp_path, data):
    check(load_state_file, tmp_path / "weights.pth", data)
