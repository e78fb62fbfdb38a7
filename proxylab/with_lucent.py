"""ProxyGrad inside torch-lucent's ``render_vis`` (FFT / decorrelated parametrization and its
standard transforms): the context manager composes with any optimizer loop. torch-lucent is an
optional dependency (``pip install proxylab[lucent]``) and is imported only here."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .am import gradient_network


class FromUnitRange(nn.Module):
    """lucent renders images in [0, 1]; proxylab's models take [-1, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x * 2 - 1)


def render(model: nn.Module, classes: list[int], spec: str = "relu", steps: int = 30, size: int = 128,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class visualization with lucent's ``render_vis`` (FFT parametrization, decorrelated colours,
    standard transforms, Adam), the gradient made by the network of ``spec``.

    The network sees the images at ``size`` px (lucent's ``fixed_image_size``; by default lucent
    upsamples smaller images to 224 px), so the logits reported are those of what was optimized.

    Returns:
        ``(images (N, 3, size, size) in [-1, 1], the ORIGINAL network's logits for them)``.
    """
    try:
        with warnings.catch_warnings():  # lucent 0.1.8 calls torch.jit.script at import time
            warnings.simplefilter("ignore", FutureWarning)
            from lucent.optvis import objectives, param, render as lucent_render
    except ImportError:
        raise ImportError("torch-lucent is not installed: pip install 'proxylab[lucent]'") from None
    torch.manual_seed(seed)
    objective = sum(objectives.channel("model", c, batch=i) for i, c in enumerate(classes))
    with gradient_network(model, spec) as (net, same_forward):
        if not same_forward:
            raise ValueError(f"{spec} changes the forward pass; use relu, proxygrad:B or a backward rule")
        images = lucent_render.render_vis(
            FromUnitRange(net).eval(), objective, param_f=lambda: param.image(size, batch=len(classes)),
            thresholds=(steps,), show_image=False, progress=False, preprocess=False,
            fixed_image_size=size)[-1]  # lucent would upsample images under 224 px: score what is optimized
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() * 2 - 1
    device = next(model.parameters()).device
    with torch.no_grad():
        scores = model(x.to(device))[torch.arange(len(classes)), torch.tensor(classes)].cpu()
    return x, scores
