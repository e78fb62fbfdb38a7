"""What is done to the image after each AM update (the regularization step R of the paper, and
the four regularizers of Yosinski et al., "Understanding Neural Networks Through Deep
Visualization", 2015). Each is a callable ``(x, step, grad) -> x`` on a batch in [-1, 1]."""
from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as TF


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (kernel of odd size ~ 6 sigma)."""
    if sigma <= 0:
        return x
    k = max(3, 2 * math.ceil(3 * sigma) + 1)
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


class L2Decay:
    """Yosinski's L2 decay: x <- (1 - decay) x, pulling every pixel towards gray (0)."""

    def __init__(self, decay: float = 0.01):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay

    def __call__(self, x, step, grad=None):
        return x * (1 - self.decay)

    def __repr__(self):
        return f"L2Decay({self.decay:g})"


class Blur:
    """Gaussian blur of width ``sigma`` every ``every`` steps (Yosinski: every k steps; the
    paper's weak blur: every step, small sigma)."""

    def __init__(self, sigma: float = 0.5, every: int = 1):
        if sigma < 0 or every < 1:
            raise ValueError(f"need sigma >= 0 and every >= 1, got sigma={sigma}, every={every}")
        self.sigma, self.every = sigma, every

    def __call__(self, x, step, grad=None):
        return gaussian_blur(x, self.sigma) if step % self.every == 0 else x

    def __repr__(self):
        return f"Blur(sigma={self.sigma:g}, every={self.every})"


def _below_percentile(score: torch.Tensor, percentile: float) -> torch.Tensor:
    """Mask (N, 1, H, W) of pixels whose per-image score lies below the given percentile."""
    flat = score.flatten(1)
    threshold = torch.quantile(flat, percentile / 100, dim=1, keepdim=True)
    return (flat < threshold).view_as(score)


class ClipNorm:
    """Yosinski's norm clipping: set pixels whose RGB norm is in the lowest ``percentile`` % to 0."""

    def __init__(self, percentile: float = 10.0):
        if not 0 <= percentile < 100:
            raise ValueError(f"percentile must be in [0, 100), got {percentile}")
        self.percentile = percentile

    def __call__(self, x, step, grad=None):
        mask = _below_percentile(x.norm(dim=1, keepdim=True), self.percentile)
        return x.masked_fill(mask, 0.0)

    def __repr__(self):
        return f"ClipNorm({self.percentile:g}%)"


class ClipContribution:
    """Yosinski's contribution clipping: set pixels whose contribution ``|sum_c x_c * grad_c|`` (a
    linear estimate of how much the pixel adds to the activation) is in the lowest
    ``percentile`` % to 0."""

    def __init__(self, percentile: float = 10.0):
        if not 0 <= percentile < 100:
            raise ValueError(f"percentile must be in [0, 100), got {percentile}")
        self.percentile = percentile

    def __call__(self, x, step, grad=None):
        if grad is None:
            return x
        contribution = (x * grad).sum(dim=1, keepdim=True).abs()
        return x.masked_fill(_below_percentile(contribution, self.percentile), 0.0)

    def __repr__(self):
        return f"ClipContribution({self.percentile:g}%)"


class Rotate:
    """A small random rotation of the image, at most ``degrees`` either way (seeded)."""

    def __init__(self, degrees: float = 2.0, seed: int = 0):
        self.degrees = degrees
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x, step, grad=None):
        angle = (torch.rand((), generator=self.generator).item() * 2 - 1) * self.degrees
        return TF.rotate(x, angle, interpolation=TF.InterpolationMode.BILINEAR)

    def __repr__(self):
        return f"Rotate(±{self.degrees:g}°)"


class Jitter:
    """Roll the image by a random shift of at most ``pixels`` (seeded, lossless)."""

    def __init__(self, pixels: int = 2, seed: int = 0):
        self.pixels = pixels
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x, step, grad=None):
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=self.generator).tolist()
        return torch.roll(x, (dy, dx), dims=(-2, -1))

    def __repr__(self):
        return f"Jitter({self.pixels}px)"


PAPER_BLUR_SIGMA = 0.5
PAPER_ROTATION_DEGREES = 1.0


def paper_regularization(seed: int = 0) -> list:
    """The paper's regularization step R: a weak blur and a small random rotation after each update.

    The paper gives neither value; these are this course's choice: a Gaussian blur of sigma 0.5 px
    (5-tap kernel [0.0003, 0.106, 0.787, 0.106, 0.0003]: weak, but a blur; sigma 0.3 would be
    [0.004, 0.992, 0.004], nearly none) and a rotation of at most ±1° (bilinear, so it smooths a little too).
    Notebook 06 shows images and scores with and without each part.
    """
    return [Blur(sigma=PAPER_BLUR_SIGMA), Rotate(degrees=PAPER_ROTATION_DEGREES, seed=seed)]


def yosinski(seed: int = 0) -> list:
    """The four regularizers of Yosinski et al. with moderate settings from their table."""
    return [L2Decay(0.01), Blur(sigma=0.5, every=4), ClipNorm(10.0), ClipContribution(10.0)]


__all__ = ["Blur", "ClipContribution", "ClipNorm", "Jitter", "L2Decay", "Rotate", "gaussian_blur",
           "paper_regularization", "yosinski"]
