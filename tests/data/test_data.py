import gzip
import struct

import numpy as np
import pytest
import torch

from deepscope.data import load_dataset


def test_digits_and_mnist1d_shapes_and_determinism():
    d = load_dataset("digits", seed=0)
    assert d.x_train.shape[1] == 64 and d.num_classes == 10
    assert float(d.x_train.max()) <= 1.0 and d.x_train.dtype == torch.float32
    assert len(d.x_train) + len(d.x_test) == 1797
    state = np.random.get_state()
    a = load_dataset("mnist1d", n=400, seed=1)
    b = load_dataset("mnist1d", n=400, seed=1)
    assert a.x_train.shape == (320, 40) and a.input_shape == (40,)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert np.array_equal(state[1], np.random.get_state()[1])  # the generator's reseeding is undone


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "imagenet"}, "dataset == 'imagenet' is unknown"),
        ({"name": "digits", "n": 100}, "n == 100 only applies to dataset='mnist1d'"),
        ({"name": "mnist1d", "n": 5}, "n == 5, must be >= 20"),
        ({"name": "digits", "test_fraction": 1.5}, "test_fraction == 1.5"),
        ({"name": "mnist"}, "pass data_root"),
    ],
)
def test_errors(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        load_dataset(name, **kwargs)


def _write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
    data = header + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.vision
def test_mnist_through_torchvision_from_tiny_local_files(tmp_path):
    pytest.importorskip("torchvision")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    ds = load_dataset("mnist", data_root=str(tmp_path))
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert ds.y_train.dtype == torch.int64 and ds.num_classes == 10


@pytest.mark.vision
def test_missing_image_files_say_what_to_put_where(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", data_root=str(tmp_path))
