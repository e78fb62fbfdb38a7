"""Datasets: Fashion-MNIST (offline from Debian's dataset-fashion-mnist), Caltech101, CUB-200-2011
and Flowers102, all through torchvision's dataset classes where they exist.

Files live under ``data_root()`` (``$PROXYLAB_DATA``, default ``~/.cache/proxylab/data``).
A missing dataset raises :class:`DatasetMissing`, whose message says how to get it.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import zlib
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

from .files import atomic_write, write_json_atomic

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class DatasetMissing(FileNotFoundError):
    """A dataset is not on disk; the message says how to fetch it."""


def staged_download(root: Path, folder: str, marker: str, fetch) -> None:
    """Download with ``fetch(staging)`` into ``root/.partial-FOLDER`` and move the finished
    ``FOLDER`` into ``root`` in one rename, unless ``root/FOLDER/MARKER`` shows it is there. An
    interrupted download (Ctrl-C, a lost connection) never leaves a half-filled ``root/FOLDER``
    that would later pass for the dataset; rerunning the download continues from the staging
    folder (torchvision re-checks its archive there)."""
    final = root / folder
    if (final / marker).exists():
        return
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()  # torchvision creates the empty folder when it only looks for the data
    elif final.exists():
        raise DatasetMissing(f"{final} holds an incomplete dataset (no {marker}); delete that folder and "
                             "rerun the download")
    staging = root / f".partial-{folder}"
    staging.mkdir(parents=True, exist_ok=True)
    fetch(staging)
    if not (staging / folder / marker).exists():
        raise DatasetMissing(f"the download into {staging} did not produce {folder}/{marker}; delete {staging} "
                             "and retry")
    os.replace(staging / folder, final)
    shutil.rmtree(staging, ignore_errors=True)


def data_root() -> Path:
    """Where datasets are kept: ``$PROXYLAB_DATA`` or ``~/.cache/proxylab/data``."""
    return Path(os.environ.get("PROXYLAB_DATA", Path.home() / ".cache" / "proxylab" / "data")).expanduser()


def _gunzip(src: Path, dest: Path) -> None:
    with gzip.open(src) as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def fashion_mnist(train: bool = True, root: Path | None = None, download: bool = False,
                  debian_dir: Path = DEBIAN_FASHION_MNIST) -> torchvision.datasets.FashionMNIST:
    """Fashion-MNIST via torchvision, seeded offline from Debian's gzip files when present.

    torchvision reads the unpacked IDX files under ``root/FashionMNIST/raw``; they are unpacked
    there from ``debian_dir`` once.
    """
    root = Path(root or data_root())
    raw = root / "FashionMNIST" / "raw"
    if not all((raw / f).exists() for f in FASHION_FILES) and debian_dir.is_dir():
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_FILES:
            src = debian_dir / f"{name}.gz"
            if src.exists() and not (raw / name).exists():  # concurrent jobs may unpack at once
                atomic_write(raw / name, lambda tmp: _gunzip(src, tmp), "Fashion-MNIST file")
    if download and not all((raw / f).exists() for f in FASHION_FILES):
        staging = root / ".partial-FashionMNIST"
        torchvision.datasets.FashionMNIST(staging, train=train, download=True)
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_FILES:
            if not (raw / name).exists():
                os.replace(staging / "FashionMNIST" / "raw" / name, raw / name)
        shutil.rmtree(staging, ignore_errors=True)
    try:
        return torchvision.datasets.FashionMNIST(root, train=train)
    except RuntimeError:
        raise DatasetMissing(
            f"Fashion-MNIST not found under {raw}. Get it offline with "
            "'sudo apt-get install dataset-fashion-mnist' (Debian), or online with "
            "download=True / 'python -m proxylab data fashion-mnist --download'.") from None


def caltech101(root: Path | None = None, download: bool = False) -> torchvision.datasets.Caltech101:
    """Caltech101 via torchvision (the BACKGROUND_Google class is dropped by torchvision)."""
    root = Path(root or data_root())
    if download:
        staged_download(root, "caltech101", "101_ObjectCategories", lambda staging: torchvision.datasets.Caltech101(staging, download=True))
    try:
        return torchvision.datasets.Caltech101(root)
    except RuntimeError:
        raise DatasetMissing(
            f"Caltech101 not found under {root / 'caltech101'}. Download it with "
            "'python -m proxylab data caltech101 --download' (needs internet).") from None


def caltech101_available(root: Path | None = None) -> bool:
    return (Path(root or data_root()) / "caltech101" / "101_ObjectCategories").is_dir()


def sample_batch(n: int = 32, size: int = 64, seed: int = 0, dataset: str = "auto",
                 root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A reproducible batch of real images, standardized per channel, for statistics of random
    networks (Figure 4, Table 5).

    Args:
        n: batch size. size: image side after resizing. seed: which images.
        dataset: ``"caltech101"``, ``"fashion-mnist"`` or ``"auto"`` (Caltech101 when on disk,
            the paper's choice, else the offline Fashion-MNIST).

    Returns:
        ``(images (n, 3, size, size), labels (n,), name of the dataset used)``.
    """
    if dataset == "auto":
        dataset = "caltech101" if caltech101_available(root) else "fashion-mnist"
    ds = caltech101(root) if dataset == "caltech101" else fashion_mnist(train=True, root=root)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    resize = T.Resize((size, size), antialias=True)
    images, labels = [], []
    for i in idx:
        img, label = ds[i]
        images.append(resize(_to_rgb_tensor(img)))  # gray images replicated to 3 channels
        labels.append(label)
    x = torch.stack(images)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return x, torch.tensor(labels), dataset


# --------------------------------------------------------------------------- the training datasets
class CUB200(Dataset):
    """CUB-200-2011 from the standard tarball layout (``root/CUB_200_2011/``: images.txt,
    train_test_split.txt, image_class_labels.txt, images/): the official split, 5994 / 5794."""

    URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"

    def __init__(self, root: Path | None = None, train: bool = True, download: bool = False):
        base = Path(root or data_root()) / "CUB_200_2011"
        if download and not (base / "images.txt").exists():
            from torchvision.datasets.utils import download_and_extract_archive
            staged_download(base.parent, base.name, "images.txt", lambda staging: download_and_extract_archive(
                self.URL, str(staging), filename="CUB_200_2011.tgz"))
        needed = ["images.txt", "train_test_split.txt", "image_class_labels.txt"]
        if not all((base / f).exists() for f in needed):
            raise DatasetMissing(f"CUB-200-2011 not found under {base}. Download it with "
                                 "'python -m proxylab data cub200 --download' (needs internet) or unpack "
                                 f"CUB_200_2011.tgz into {base.parent}.")
        paths = dict(line.split(maxsplit=1) for line in (base / "images.txt").read_text().splitlines() if line.strip())
        is_train = dict(line.split() for line in (base / "train_test_split.txt").read_text().splitlines() if line.strip())
        labels = dict(line.split() for line in (base / "image_class_labels.txt").read_text().splitlines() if line.strip())
        keep = "1" if train else "0"
        ids = sorted((i for i in paths if is_train[i] == keep), key=int)
        self.samples = [(base / "images" / paths[i].strip(), int(labels[i]) - 1) for i in ids]
        self.classes = sorted({label for _, label in self.samples})

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        with Image.open(path) as img:
            return img.convert("RGB"), label


def caltech101_split(dataset, seed: int, n_train: int = 20, n_test: int = 10) -> tuple[list[int], list[int]]:
    """Per class, ``n_train`` training and ``n_test`` test images drawn reproducibly with ``seed``
    (the paper's protocol: Caltech101 has no official split)."""
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(dataset.y):
        by_class.setdefault(y, []).append(i)
    train, test = [], []
    for y in sorted(by_class):
        idx = by_class[y]
        if len(idx) < n_train + n_test:
            raise ValueError(f"class {y} has {len(idx)} images, fewer than {n_train} + {n_test}")
        order = torch.randperm(len(idx), generator=g).tolist()
        train += [idx[j] for j in order[:n_train]]
        test += [idx[j] for j in order[n_train:n_train + n_test]]
    return train, test


DATASETS = {"fashion-mnist": 10, "caltech101": 101, "cub200": 200, "flowers102": 102}
DEFAULT_SIZE = {"fashion-mnist": 32, "caltech101": 224, "cub200": 224, "flowers102": 224}


def raw_splits(name: str, seed: int = 0, root: Path | None = None, download: bool = False):
    """(train, test) datasets of PIL images and integer labels, in each dataset's official or the
    paper's split. Flowers102: train + val merged (2040) / test (6149)."""
    root = Path(root or data_root())
    if name == "fashion-mnist":
        return fashion_mnist(True, root, download), fashion_mnist(False, root, download)
    if name == "caltech101":
        full = caltech101(root, download)
        train, test = caltech101_split(full, seed)
        return torch.utils.data.Subset(full, train), torch.utils.data.Subset(full, test)
    if name == "cub200":
        return CUB200(root, True, download), CUB200(root, False, download)
    if name == "flowers102":
        if download:
            staged_download(root, "flowers-102", "setid.mat", lambda staging: torchvision.datasets.Flowers102(staging, download=True))
        try:
            splits = [torchvision.datasets.Flowers102(root, split=s) for s in ("train", "val", "test")]
        except RuntimeError:
            raise DatasetMissing(f"Flowers102 not found under {root / 'flowers-102'}. Download it with "
                                 "'python -m proxylab data flowers102 --download' (needs internet).") from None
        return torch.utils.data.ConcatDataset(splits[:2]), splits[2]
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _to_rgb_tensor(img) -> torch.Tensor:
    x = T.functional.pil_to_tensor(img.convert("RGB") if img.mode not in ("RGB", "L") else img)
    x = T.functional.to_dtype(x, torch.float32, scale=True)
    return x.expand(3, *x.shape[-2:]) if x.shape[0] == 1 else x


def split_key(name: str, dataset) -> str:
    """Names a training split: the dataset, its size and, for a drawn split (Caltech101's per
    seed), a checksum of the image indices, so that each split has statistics of its own."""
    key = f"{name}:{len(dataset)}"
    if isinstance(dataset, torch.utils.data.Subset):
        key += f":{zlib.crc32(','.join(map(str, dataset.indices)).encode()):08x}"
    return key


def channel_stats(name: str, dataset, size: int = 64, limit: int = 2000, cache: Path | None = None) -> tuple[list, list]:
    """The RGB mean and std of a training split (on up to ``limit`` of its images, resized to
    ``size`` px as training resizes them), computed once per split and size and cached in
    ``data_root()/stats.json``. Only training images enter: a drawn split's own test images never do."""
    cache = cache or data_root() / "stats.json"
    key = f"{split_key(name, dataset)}@{size}"
    table = json.loads(cache.read_text()) if cache.exists() else {}
    if key in table:
        return table[key]["mean"], table[key]["std"]
    n = min(limit, len(dataset))
    idx = torch.linspace(0, len(dataset) - 1, n).long().tolist()
    resize = T.Resize((size, size), antialias=True)
    x = torch.stack([resize(_to_rgb_tensor(dataset[i][0])) for i in idx])
    mean, std = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
    table = json.loads(cache.read_text()) if cache.exists() else {}  # another process may have added
    table[key] = {"mean": mean, "std": std}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(table, cache, "statistics cache")
    return mean, std


class Prepared(Dataset):
    """PIL dataset -> normalized tensors of one size; training augmentation (random crop with
    padding, horizontal flip) seeded per (seed, epoch, index), so that every process of a
    distributed run and every resumed run sees the same augmented images."""

    def __init__(self, base, indices, size: int, mean, std, augment: bool, seed: int = 0):
        self.base, self.indices, self.augment, self.seed, self.epoch = base, list(indices), augment, seed, 0
        self.resize = T.Resize((size, size), antialias=True)
        self.normalize = T.Normalize(mean, std)
        self.random = T.Compose([T.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect"),
                                 T.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        img, label = self.base[self.indices[i]]
        x = self.resize(_to_rgb_tensor(img))
        if self.augment:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
                x = self.random(x)
        return self.normalize(x), label


def load(name: str, image_size: int | None = None, seed: int = 0, subset: int | None = None,
         root: Path | None = None, download: bool = False) -> tuple[Prepared, Prepared, int]:
    """Training and test sets ready for a network, and the number of classes.

    Args:
        name: ``fashion-mnist``, ``caltech101``, ``cub200`` or ``flowers102``.
        image_size: side in pixels (default: 32 for Fashion-MNIST, 224 otherwise).
        seed: the Caltech101 split and the augmentation seed.
        subset: use only this many training and test images (a seeded choice), for quick runs.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    size = image_size or DEFAULT_SIZE[name]
    train, test = raw_splits(name, seed, root, download)
    mean, std = channel_stats(name, train, size=size, cache=Path(root or data_root()) / "stats.json")

    def pick(ds, salt):
        if not subset or subset >= len(ds):
            return range(len(ds))
        g = torch.Generator().manual_seed(seed * 7919 + salt)
        return sorted(torch.randperm(len(ds), generator=g)[:subset].tolist())

    return (Prepared(train, pick(train, 1), size, mean, std, augment=True, seed=seed),
            Prepared(test, pick(test, 2), size, mean, std, augment=False, seed=seed), DATASETS[name])
