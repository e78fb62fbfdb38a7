"""The white-image problems of section 3 (Table 1): AM should find the all-white image x = 1.

Each problem is a tiny network built with an activation spec (``"relu"``, ``"leaky:A"``,
``"proxygrad:B"``, ``"proxygrad:B:A"``), so the same problem runs with ReLU, Leaky ReLU and
ProxyGrad. Its value is always the spec's FORWARD function (ProxyGrad only changes gradients).

(a) sparse gradients  f(x) = Σ ReLU(x)                         -> ``sum_problem("relu")``
(b) race of patterns  f(x) = Σ LReLU_a(x)                      -> ``sum_problem("leaky:a")``
(c) local maxima      g(x) = Σ LReLU_a(x) + b·LReLU_a(−x)      -> ``local_maxima_problem(spec, b)``
(d) convolution       f(x) = Σ LReLU_a(k*x) + b·LReLU_a(−k*x)  -> ``conv_problem(spec, b)``
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .ascent import ascend
from .proxygrad import ActivationSpec, parse_activation

DEFAULT_SIZE = 16  # pixels per side of the toy images
DEFAULT_LR = 0.5   # L2 length of one normalized step (the image has DEFAULT_SIZE**2 pixels)

# (d): a non-negative plus-shaped 3x3 kernel (sum 1). Non-negative weights keep |k*x| <= 1, so
# g <= 1 per pixel and the white image is the global maximum (circular padding: no borders);
# yet each pixel is pulled by five overlapping neighbourhoods, and with b = 0.7 mixed ones lock
# into a black-and-white pattern.
CONV_KERNEL = torch.tensor([
    [0., 1., 0.],
    [1., 1., 1.],
    [0., 1., 0.],
]) / 5.0
CONV_B = 0.7


class ToyProblem(nn.Module):
    """A white-image problem: ``forward(x)`` maps images ``(N, 1, H, W)`` to one value each."""

    def __init__(self, name: str, spec: ActivationSpec, branches: tuple[float, ...] = (1.0,),
                 kernel: torch.Tensor | None = None):
        super().__init__()
        self.name, self.spec = name, spec
        # branch i: weight w_i into the rectifier, weight |w_i| (1 or b) out of it (Table 1)
        self.weights_in = torch.tensor([1.0] + [-1.0] * (len(branches) - 1))
        self.weights_out = torch.tensor(branches)
        self.kernel = kernel
        self.act = spec.module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:  # (d): circular padding, so there are no borders
            k = self.kernel.to(x)
            pad = k.shape[-1] // 2
            x = F.conv2d(F.pad(x, (pad,) * 4, mode="circular"), k[None, None])
        h = self.act(x * self.weights_in.to(x).view(1, -1, 1, 1))  # 1x1 layer: channels +x, -x
        return (h * self.weights_out.to(x).view(1, -1, 1, 1)).sum(dim=1).flatten(1).sum(dim=1)

    def optimum(self, size: int = DEFAULT_SIZE) -> float:
        """The value of the white image, the global maximum."""
        with torch.no_grad():
            return self(torch.ones(1, 1, size, size)).item()


def sum_problem(spec: "str | ActivationSpec") -> ToyProblem:
    """(a)/(b): f(x) = Σ act(x). ReLU: sparse gradients; Leaky ReLU: race of patterns."""
    return ToyProblem("sum", parse_activation(spec))


def local_maxima_problem(spec: "str | ActivationSpec", b: float = 0.5) -> ToyProblem:
    """(c): g(x) = Σ act(x) + b·act(−x), as Table 1's network: one input channel, a 1x1 layer
    with weights +1 and −1, the rectifier, then a weighted sum with weights 1 and b."""
    if not 0 < b < 1:
        raise ValueError(f"b must lie in (0, 1), got {b}")
    return ToyProblem("local maxima", parse_activation(spec), branches=(1.0, b))


def conv_problem(spec: "str | ActivationSpec", b: float = CONV_B,
                 kernel: torch.Tensor = CONV_KERNEL) -> ToyProblem:
    """(d): g applied to a convolution of the image with a non-negative kernel: maximal for the
    white image, yet AM from noise ends in a patterned local maximum."""
    if not 0 < b < 1:
        raise ValueError(f"b must lie in (0, 1), got {b}")
    return ToyProblem("convolution", parse_activation(spec), branches=(1.0, b), kernel=kernel)


def g_formula(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """g(x) = LReLU_a(x) + b·LReLU_a(−x) per pixel (Figure 1), the closed form of (c)."""
    return F.leaky_relu(x, a) + b * F.leaky_relu(-x, a)


def g_derivative(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """dg/dx = 1 − a·b for x > 0 and a − b for x < 0: with a < b a negative pixel runs to black."""
    return torch.where(x > 0, 1 - a * b, a - b)


def random_image(size: int = DEFAULT_SIZE, seed: int = 0, std: float = 0.5) -> torch.Tensor:
    """A seeded start: Gaussian noise (std ``std``) on gray, clipped to [-1, 1], shape (1, 1, H, W)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 1, size, size, generator=g) * std).clamp(-1, 1)


@dataclass
class ToyResult:
    """What a toy AM run returns."""

    problem: str
    spec: str
    images: dict[int, torch.Tensor]  # step -> (H, W) image, including step 0 and the last step
    values: torch.Tensor             # value after each step, shape (steps + 1,)
    optimum: float
    final: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.final = self.images[max(self.images)]

    @property
    def value(self) -> float:
        return self.values[-1].item()

    @property
    def fraction(self) -> float:
        """The value reached as a fraction of the optimum (1 = white image found)."""
        return self.value / self.optimum

    def steps_to(self, fraction: float = 0.99) -> int | None:
        """The first step at which the value reaches ``fraction`` of the optimum (None: never)."""
        hit = (self.values >= fraction * self.optimum).nonzero()
        return int(hit[0]) if len(hit) else None


def run_toy(problem: ToyProblem, steps: int = 100, lr: float = DEFAULT_LR, size: int = DEFAULT_SIZE,
            seed: int = 0, snapshot_steps: tuple[int, ...] = (), x0: torch.Tensor | None = None) -> ToyResult:
    """Normalized gradient ascent on a toy problem from a seeded random start.

    Args:
        problem: a :class:`ToyProblem`.
        steps: number of ascent steps.
        lr: step length (L2 norm of each update before clipping).
        size: image side in pixels.
        seed: seed of the random start.
        snapshot_steps: extra steps at which to keep the image (0 and ``steps`` are always kept).
        x0: an explicit start image ``(1, 1, H, W)`` instead of the random one.

    Returns:
        A :class:`ToyResult` with the images over iterations, the value per step and the
        fraction of the optimum reached.
    """
    x0 = random_image(size, seed) if x0 is None else x0
    keep = tuple(sorted({0, steps, *snapshot_steps}))
    _, values, snaps = ascend(problem, x0, steps, lr, snapshot_steps=keep)
    return ToyResult(problem.name, str(problem.spec), {k: v[0, 0] for k, v in snaps.items()},
                     values[:, 0], problem.optimum(x0.shape[-1]))


def slope_sweep(make_problem, slopes, steps: int = 100, seeds=(0,), lr: float = DEFAULT_LR,
                size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Fraction of the optimum reached for each slope (rows) and seed (columns), as :func:`run_toy`
    would give for each pair; the seeds' starts run as one batch (the ascent normalizes each image's
    step on its own), which is what makes a sweep cheap.

    ``make_problem(slope)`` builds the problem for one slope, e.g.
    ``lambda s: local_maxima_problem(f"proxygrad:{s}", b=0.5)``.
    """
    x0 = torch.cat([random_image(size, seed) for seed in seeds])
    rows = []
    for slope in slopes:
        problem = make_problem(slope)
        _, values, _ = ascend(problem, x0, steps, lr)
        rows.append(values[-1] / problem.optimum(size))
    return torch.stack(rows)


def forward_backward_table(x: torch.Tensor, specs=("relu", "leaky:0.1", "proxygrad:0.1"),
                           upstream: torch.Tensor | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Table 2: for each spec, the forward output and the gradient passed back for input ``x``.

    The upstream gradient defaults to ones, so the backward column shows the local derivative.
    """
    upstream = torch.ones_like(x) if upstream is None else upstream
    table = {}
    for spec in specs:
        spec = parse_activation(spec)
        xi = x.detach().clone().requires_grad_()
        y = spec.module()(xi)
        y.backward(upstream)
        table[spec.label] = (y.detach(), xi.grad)
    return table
