"""Dataset loading through torchvision's real classes, on files in their real on-disk format."""
import gzip
import struct

import numpy as np
import pytest
import torch

from proxylab import data


def write_idx(path, array):
    """Write an IDX file (the MNIST format), gzip-compressed like Debian ships it."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.tobytes())


@pytest.fixture
def fake_debian(tmp_path):
    d = tmp_path / "debian"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return d


def test_fashion_mnist_from_debian_gzip_files(tmp_path, fake_debian):
    ds = data.fashion_mnist(train=True, root=tmp_path / "root", debian_dir=fake_debian)
    assert len(ds) == 12
    test = data.fashion_mnist(train=False, root=tmp_path / "root", debian_dir=fake_debian)
    assert len(test) == 5
    img, label = ds[0]
    assert img.size == (28, 28) and 0 <= label < 10


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist(root=tmp_path, debian_dir=tmp_path / "nowhere")


def test_missing_caltech101_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetMissing, match="--download"):
        data.caltech101(root=tmp_path)


def test_sample_batch_is_reproducible_and_standardized(tmp_path, fake_debian, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", fake_debian)
    monkeypatch.setattr(data.fashion_mnist, "__defaults__", (True, None, False, fake_debian))
    x, y, name = data.sample_batch(8, 16, seed=3, root=tmp_path)
    x2, y2, _ = data.sample_batch(8, 16, seed=3, root=tmp_path)
    assert name == "fashion-mnist" and x.shape == (8, 3, 16, 16)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.equal(x[:, 0], x[:, 1])  # gray replicated to 3 channels
