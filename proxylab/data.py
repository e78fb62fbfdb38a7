"""Datasets: Fashion-MNIST (offline from Debian's dataset-fashion-mnist), Caltech101, CUB-200-2011
and Flowers102, all through torchvision's dataset classes where they exist.

Files live under ``data_root()`` (``$PROXYLAB_DATA``, default ``~/.cache/proxylab/data``).
A missing dataset raises :class:`DatasetMissing`, whose message says how to get it.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch
import torchvision
from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class DatasetMissing(FileNotFoundError):
    """A dataset is not on disk; the message says how to fetch it."""


def data_root() -> Path:
    """Where datasets are kept: ``$PROXYLAB_DATA`` or ``~/.cache/proxylab/data``."""
    return Path(os.environ.get("PROXYLAB_DATA", Path.home() / ".cache" / "proxylab" / "data")).expanduser()


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
            if src.exists() and not (raw / name).exists():
                tmp = raw / f".{name}.part"
                with gzip.open(src) as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                tmp.replace(raw / name)
    try:
        return torchvision.datasets.FashionMNIST(root, train=train, download=download)
    except RuntimeError:
        raise DatasetMissing(
            f"Fashion-MNIST not found under {raw}. Get it offline with "
            "'sudo apt-get install dataset-fashion-mnist' (Debian), or online with "
            "download=True / 'python -m proxylab data fashion-mnist --download'.") from None


def caltech101(root: Path | None = None, download: bool = False) -> torchvision.datasets.Caltech101:
    """Caltech101 via torchvision (the BACKGROUND_Google class is dropped by torchvision)."""
    root = Path(root or data_root())
    try:
        return torchvision.datasets.Caltech101(root, download=download)
    except RuntimeError:
        raise DatasetMissing(
            f"Caltech101 not found under {root / 'caltech101'}. Download it with "
            "'python -m proxylab data caltech101 --download' (needs internet).") from None


def caltech101_available(root: Path | None = None) -> bool:
    return (Path(root or data_root()) / "caltech101" / "101_ObjectCategories").is_dir()


class Gray3(torch.nn.Module):
    """Replicate a 1-channel image to 3 channels (Fashion-MNIST into an RGB network)."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.expand(3, *img.shape[-2:]) if img.shape[-3] == 1 else img


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
    to_tensor = T.Compose([T.PILToTensor(), T.ToDtype(torch.float32, scale=True), Gray3(),
                           T.Resize((size, size), antialias=True)])
    images, labels = [], []
    for i in idx:
        img, label = ds[i]
        images.append(to_tensor(img.convert("RGB") if dataset == "caltech101" else img))
        labels.append(label)
    x = torch.stack(images)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return x, torch.tensor(labels), dataset
