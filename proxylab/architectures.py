"""Networks for classification training (paper, section 6): ResNet18 and PFNet18.

PFNet18 follows Linse, Barth and Martinetz, "Convolutional Neural Networks Do Work with
Pre-Defined Filters" (IJCNN 2023): a ResNet18 whose spatial convolutions are depthwise with a
fixed set of 16 pre-defined 3x3 edge kernels (4 orientations x odd/even x both signs), each
followed by BatchNorm, the rectifier and a trainable 1x1 convolution. Only the 1x1 combinations
(and BatchNorm, and the classifier) learn.
"""
from __future__ import annotations

import math

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from .proxygrad import ActivationSpec, parse_activation
from .swap import rectifier_calls, swap_activations

ARCHS = ("resnet18", "pfnet18")


def resnet18(num_classes: int, spec: "str | ActivationSpec" = "relu") -> nn.Module:
    """torchvision's ResNet18 (its Kaiming-normal init) with rectifiers set by ``spec``."""
    return with_spec(torchvision.models.resnet18(num_classes=num_classes), spec)


def with_spec(model: nn.Module, spec: "str | ActivationSpec") -> nn.Module:
    """``model`` (built with ReLUs) with its rectifiers set by ``spec``, in place."""
    spec = parse_activation(spec)
    if spec.kind != "relu":
        swap_activations(model, spec)
    return model


# --------------------------------------------------------------------------- pre-defined filters
def edge_kernels(k: int = 3, n_angles: int = 4) -> torch.Tensor:
    """The 16 pre-defined kernels (k x k): for each of ``n_angles`` orientations an odd
    (step-like) and an even (line-like) edge filter, each with both signs; zero mean, L1 norm 1."""
    r = (k - 1) / 2
    y, x = torch.meshgrid(torch.linspace(-r, r, k, dtype=torch.float64),
                          torch.linspace(-r, r, k, dtype=torch.float64), indexing="ij")
    kernels = []
    for kind in ("odd", "even"):
        for phi in torch.arange(n_angles, dtype=torch.float64) * math.pi / n_angles:
            c = x * torch.cos(phi) + y * torch.sin(phi)  # signed distance across the edge
            if kind == "odd":
                w = torch.sign(c) * (1 - torch.exp(-0.5 * (c / (0.3 * k)) ** 2))
            else:
                w = 2 * torch.exp(-0.5 * (c / (0.15 * k)) ** 2)
            w = w - w.mean()
            w = w / w.abs().sum()
            kernels += [w, -w]
    return torch.stack(kernels).float()


def smoothing_kernel(k: int = 3) -> torch.Tensor:
    r = (k - 1) / 2
    y, x = torch.meshgrid(torch.linspace(-r, r, k), torch.linspace(-r, r, k), indexing="ij")
    w = torch.exp(-0.5 * (x ** 2 + y ** 2) / (0.25 * k) ** 2)
    return w / w.sum()


class PredefinedConv(nn.Module):
    """Depthwise k x k convolution with fixed kernels: every input channel is filtered by
    ``out // in`` of the pre-defined kernels (cycling through the 16). Not trainable."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1):
        super().__init__()
        if channels_out % channels_in:
            raise ValueError("channels_out must be a multiple of channels_in")
        bank = edge_kernels()
        weight = bank[torch.arange(channels_out) % len(bank)].unsqueeze(1)
        self.register_buffer("weight", weight)  # a buffer: never updated by the optimizer
        self.groups, self.stride = channels_in, stride

    def forward(self, x):
        return F.conv2d(x, self.weight, stride=self.stride, padding=self.weight.shape[-1] // 2, groups=self.groups)


class PFModule(nn.Module):
    """Pre-defined Filter Module: fixed depthwise conv -> BN -> rectifier -> 1x1 conv -> BN."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1, width: int = 1):
        super().__init__()
        mid = channels_in * width
        self.predefined = PredefinedConv(channels_in, mid, stride)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv1x1 = nn.Conv2d(mid, channels_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)

    def forward(self, x):
        return self.bn2(self.conv1x1(self.relu(self.bn1(self.predefined(x)))))


class SmoothDownsample(nn.Module):
    """Skip path with stride: Gaussian smoothing (fixed), then a 1x1 conv with stride and BN."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.register_buffer("smooth", smoothing_kernel().expand(channels_in, 1, 3, 3).clone())
        self.conv = nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(channels_out)

    def forward(self, x):
        x = F.conv2d(x, self.smooth, padding=1, groups=x.shape[1])
        return self.bn(self.conv(x))


class PFBlock(nn.Module):
    """ResNet's basic block with PF modules in place of the 3x3 convolutions."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1):
        super().__init__()
        self.pfm1 = PFModule(channels_in, channels_out, stride)
        self.relu1 = nn.ReLU(inplace=True)
        self.pfm2 = PFModule(channels_out, channels_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample = (SmoothDownsample(channels_in, channels_out, stride)
                           if stride > 1 or channels_in != channels_out else nn.Identity())

    def forward(self, x):
        out = self.pfm2(self.relu1(self.pfm1(x)))
        return self.relu2(out + self.downsample(x))


class PFNet18(nn.Module):
    """PFNet18: a PF stem (3 -> 48 -> 64 channels, stride 2), max pooling, four stages of two
    PF blocks (64, 128, 256, 512 channels), global average pooling, a linear classifier."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.stem = PFModule(3, 64, stride=2, width=16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths, layers, c_in = (64, 128, 256, 512), [], 64
        for i, c in enumerate(widths):
            layers.append(nn.Sequential(PFBlock(c_in, c, stride=1 if i == 0 else 2), PFBlock(c, c)))
            c_in = c
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # Kaiming init of the trainable 1x1 convs, unit BN
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.stem(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def pfnet18(num_classes: int, spec: "str | ActivationSpec" = "relu") -> nn.Module:
    """PFNet18 with rectifiers set by ``spec``."""
    return with_spec(PFNet18(num_classes), spec)


def build(arch: str, num_classes: int, spec: "str | ActivationSpec" = "relu") -> nn.Module:
    """``resnet18`` or ``pfnet18`` by name."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return (resnet18 if arch == "resnet18" else pfnet18)(num_classes, spec)


def sparsity(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Fraction of exactly-zero outputs of every rectifier call on the batch ``x`` (in forward
    order): ReLU and ProxyGrad keep sparse activations, a Leaky ReLU has none."""
    fractions = {}
    with torch.no_grad(), rectifier_calls(model, lambda key, out: fractions.__setitem__(
            key, (out == 0).float().mean().item())):
        model(x)
    return fractions
