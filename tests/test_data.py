"""Dataset loading through torchvision's real classes, on files in their real on-disk format."""
import gzip
import struct
from pathlib import Path

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
    with pytest.raises(data.DatasetMissing) as err:
        data.fashion_mnist(root=tmp_path, debian_dir=tmp_path / "nowhere")
    assert str(err.value) == (
        f"Fashion-MNIST not found under {tmp_path / 'FashionMNIST' / 'raw'}. Get it offline with 'sudo apt-get install "
        "dataset-fashion-mnist' (Debian), or online with download=True / 'python -m proxylab data fashion-mnist "
        "--download'.")


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


# --------------------------------------------------------------------------- downloads and where files live
def test_data_root_is_the_environment_variable_or_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PROXYLAB_DATA", raising=False)
    assert data.data_root() == tmp_path / "home" / ".cache" / "proxylab" / "data"
    monkeypatch.setenv("PROXYLAB_DATA", "~/datasets")  # a tilde is the user's home, as in a shell
    assert data.data_root() == tmp_path / "home" / "datasets"


def test_staged_download_moves_only_a_finished_download_into_place(tmp_path):
    """The dataset folder appears in one rename once its marker is there; an interrupted download
    leaves only the staging folder, which the next try continues from."""
    root, calls = tmp_path / "root", []

    def cut(staging):  # the first file arrives, then the connection drops
        calls.append(staging)
        (staging / "ds" / "part").mkdir(parents=True)
        (staging / "ds" / "part" / "a.bin").write_text("a")
        raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        data.staged_download(root, "ds", "DONE", cut)
    assert calls == [root / ".partial-ds"] and not (root / "ds").exists()

    def complete(staging):  # continues where the cut one stopped
        calls.append(staging)
        assert (staging / "ds" / "part" / "a.bin").read_text() == "a"
        (staging / "ds" / "DONE").write_text("")

    data.staged_download(root, "ds", "DONE", complete)
    assert (root / "ds" / "DONE").exists() and (root / "ds" / "part" / "a.bin").read_text() == "a"
    assert sorted(p.name for p in root.iterdir()) == ["ds"]  # the staging folder is gone
    data.staged_download(root, "ds", "DONE", cut)  # there: nothing is fetched again
    assert len(calls) == 2


def test_staged_download_refuses_an_incomplete_dataset_and_a_download_without_its_marker(tmp_path):
    root = tmp_path / "root"
    (root / "ds").mkdir(parents=True)  # torchvision's empty folder, made when it only looked: replaced
    data.staged_download(root, "ds", "DONE", lambda s: (s / "ds").mkdir() or (s / "ds" / "DONE").write_text(""))
    assert (root / "ds" / "DONE").exists()
    (root / "other" / "half").mkdir(parents=True)  # a half-filled folder: kept and named, never fetched into
    with pytest.raises(data.DatasetMissing, match=r"^\S+other holds an incomplete dataset \(no DONE\); delete that "
                                                  r"folder and rerun the download$"):
        data.staged_download(root, "other", "DONE", lambda s: pytest.fail("fetched into an incomplete dataset"))
    assert (root / "other" / "half").is_dir()

    def wrong(staging):  # a download that does not produce the marker
        (staging / "new").mkdir()
        (staging / "new" / "README").write_text("")

    with pytest.raises(data.DatasetMissing, match=r"^the download into \S+\.partial-new did not produce new/DONE; "
                                                  r"delete \S+\.partial-new and retry$"):
        data.staged_download(root, "new", "DONE", wrong)
    assert not (root / "new").exists() and (root / ".partial-new" / "new" / "README").exists()


def test_fashion_mnist_unpacks_only_the_missing_debian_files(tmp_path, fake_debian):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    with gzip.open(fake_debian / "t10k-labels-idx1-ubyte.gz") as f:
        (raw / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    write_idx(raw / "train-labels.gz", np.full(12, 7))  # an already unpacked file is kept as it is
    with gzip.open(raw / "train-labels.gz") as f:
        (raw / "train-labels-idx1-ubyte").write_bytes(f.read())
    ds = data.fashion_mnist(root=tmp_path / "root", debian_dir=fake_debian)  # the training split by default
    assert ds.targets.tolist() == [7] * 12
    with gzip.open(fake_debian / "train-images-idx3-ubyte.gz") as f:
        assert (raw / "train-images-idx3-ubyte").read_bytes() == f.read()


def test_fashion_mnist_download_fills_the_raw_folder_through_a_staging_folder(tmp_path, fake_debian, monkeypatch):
    import torchvision

    root, seen = tmp_path / "root", []

    def download(self):  # torchvision's download, offline: the unpacked files into its raw folder
        seen.append(Path(self.raw_folder))
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        for name in data.FASHION_FILES:
            with gzip.open(fake_debian / f"{name}.gz") as f:
                (Path(self.raw_folder) / name).write_bytes(f.read())

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", download)
    nowhere, real = tmp_path / "nowhere", data.fashion_mnist
    with pytest.raises(data.DatasetMissing):  # no download asked: nothing fetched
        data.fashion_mnist(root=root, debian_dir=nowhere)
    assert seen == []
    test = data.fashion_mnist(train=False, root=root, download=True, debian_dir=nowhere)
    assert seen == [root / ".partial-FashionMNIST" / "FashionMNIST" / "raw"] and len(test) == 5
    assert sorted(p.name for p in root.iterdir()) == ["FashionMNIST"]  # the staging folder is gone
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(data.FASHION_FILES)
    assert len(data.fashion_mnist(train=True, root=root, download=True, debian_dir=nowhere)) == 12
    assert len(seen) == 1  # all there: not downloaded again
    partial = write_raw(tmp_path / "partial")  # a raw folder with one file of its own: kept, the others moved in
    for name in data.FASHION_FILES[1:]:
        (partial / name).unlink()
    own = (partial / data.FASHION_FILES[0]).read_bytes()
    assert len(data.fashion_mnist(root=tmp_path / "partial", download=True, debian_dir=nowhere)) == 12
    assert (partial / data.FASHION_FILES[0]).read_bytes() == own and len(seen) == 2
    assert sorted(p.name for p in partial.iterdir()) == sorted(data.FASHION_FILES)
    monkeypatch.setattr(data, "fashion_mnist", lambda train, root, download: real(train, root, download, nowhere))
    train, test = data.raw_splits("fashion-mnist", root=tmp_path / "other", download=True)  # both splits at once
    assert (len(train), len(test)) == (12, 5) and len(seen) == 3


def test_caltech101_split_needs_enough_images_in_every_class():
    """A class with exactly n_train + n_test images is split whole; one image fewer is refused, naming
    the class (never a split with fewer test images there)."""
    from types import SimpleNamespace

    exact = SimpleNamespace(y=[0] * 31 + [1] * 30)
    train, test = data.caltech101_split(exact, seed=0)
    assert sorted(i for i in train + test if i >= 31) == list(range(31, 61))  # every image of class 1 used
    with pytest.raises(ValueError, match=r"^class 1 has 29 images, fewer than 20 \+ 10$"):
        data.caltech101_split(SimpleNamespace(y=[0] * 31 + [1] * 29), seed=0)
    train, test = data.caltech101_split(SimpleNamespace(y=[0] * 5 + [1] * 4), seed=0, n_train=2, n_test=2)
    assert len(train) == len(test) == 4


def test_missing_caltech101_names_its_folder_and_the_command(tmp_path):
    with pytest.raises(data.DatasetMissing) as err:
        data.caltech101(root=tmp_path)
    assert str(err.value) == (f"Caltech101 not found under {tmp_path / 'caltech101'}. Download it with "
                              "'python -m proxylab data caltech101 --download' (needs internet).")


def write_raw(root, n_train=12, n_test=5, seed=0):
    """Unpacked Fashion-MNIST IDX files under ``root/FashionMNIST/raw``, as torchvision reads them;
    training labels are 0..9 in turn, test labels all 9."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, n, labels in (("train", n_train, np.arange(n_train) % 10), ("t10k", n_test, np.full(n_test, 9))):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", labels)):
            write_idx(raw / "tmp.gz", array)
            with gzip.open(raw / "tmp.gz") as f:
                (raw / f"{split}-{kind}-ubyte").write_bytes(f.read())
    (raw / "tmp.gz").unlink()
    return raw


def test_fashion_mnist_splits_and_batches_come_from_the_root_given(tmp_path):
    write_raw(tmp_path / "root")
    train, test = data.raw_splits("fashion-mnist", root=tmp_path / "root")
    assert (len(train), len(test)) == (12, 5) and set(test.targets.tolist()) == {9}
    x, y, name = data.sample_batch(12, 8, dataset="fashion-mnist", root=tmp_path / "root")
    assert name == "fashion-mnist" and x.shape == (12, 3, 8, 8)
    assert sorted(y.tolist()) == sorted(i % 10 for i in range(12))  # all twelve training images


def test_missing_fashion_mnist_leaves_no_folder_behind(tmp_path):
    with pytest.raises(data.DatasetMissing):
        data.fashion_mnist(root=tmp_path / "root", debian_dir=tmp_path / "nowhere")
    assert not (tmp_path / "root" / "FashionMNIST").exists()


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "CMYK", "I;16"])
def test_images_of_every_mode_become_rgb_in_zero_one(mode):
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8))
    rgb.putpixel((0, 0), (255, 255, 255))
    img = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    x = data._to_rgb_tensor(img)
    assert x.shape == (3, 5, 4) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and torch.allclose(x[:, 0, 0], torch.ones(3), atol=1e-2)  # white is 1
    if mode != "I;16":
        expected = torch.tensor(np.asarray(img.convert("RGB")), dtype=torch.float32).permute(2, 0, 1) / 255
        assert torch.allclose(x, expected)


class Images:
    """An in-memory dataset of small random PIL images that records which ones are read."""

    def __init__(self, n, side=4, on_read=None):
        from PIL import Image

        rng = np.random.default_rng(1)
        self.images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(n)]
        self.read, self.on_read = [], on_read

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.on_read and not self.read:
            self.on_read()
        self.read.append(i)
        return self.images[i], 0


def test_statistics_read_at_most_the_limit_spread_over_the_whole_split(tmp_path):
    big = Images(2500)
    mean, std = data.channel_stats("big", big, size=4, cache=tmp_path / "stats.json")
    assert len(big.read) == 2000 and len(set(big.read)) == 2000  # the default limit, each image once
    assert big.read[0] == 0 and big.read[-1] == 2499 and max(b - a for a, b in zip(big.read, big.read[1:])) <= 2
    small = Images(30)
    data.channel_stats("small", small, size=4, limit=10, cache=tmp_path / "stats.json")
    assert len(small.read) == 10 and small.read[0] == 0 and small.read[-1] == 29
    x = torch.stack([data._to_rgb_tensor(small.images[i]) for i in small.read])
    assert data.channel_stats("small", small, size=4, limit=10, cache=tmp_path / "stats.json") == (
        pytest.approx(x.mean(dim=(0, 2, 3)).tolist()), pytest.approx(x.std(dim=(0, 2, 3)).tolist()))


def test_statistics_cache_keeps_what_another_process_wrote_meanwhile(tmp_path):
    import json

    cache = tmp_path / "new" / "folder" / "stats.json"  # made when missing

    def other_process():  # writes its own split's entry while this one computes
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"other:3@4": {"mean": [0.1] * 3, "std": [0.2] * 3}}))

    mean, std = data.channel_stats("mine", Images(3, on_read=other_process), size=4, cache=cache)
    table = json.loads(cache.read_text())
    assert table["other:3@4"] == {"mean": [0.1] * 3, "std": [0.2] * 3}
    assert table["mine:3@4"] == {"mean": mean, "std": std}
    fresh = tmp_path / "a" / "b" / "stats.json"
    data.channel_stats("mine", Images(3), size=4, cache=fresh)
    assert list(json.loads(fresh.read_text())) == ["mine:3@4"]
