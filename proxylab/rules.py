"""Other backward rules for rectifiers, next to ProxyGrad (paper, section 2): each keeps the
forward pass (ReLU, or ReLU6's clamp) and changes only the gradient passed back. The sign
convention is activation maximization's: ``grad`` is d(target)/d(output) and AM ascends it
(Lucid minimizes the negated objective, so its ``grad > 0`` is our ``grad < 0``).

- ``guided``      guided backpropagation (Springenberg et al.): pass grad only where the input
                  was positive AND grad is positive.
- ``deconvnet``   the deconvnet rule (Zeiler & Fergus): apply ReLU to grad, ignore the input.
- ``redirected``  the redirected ReLU / ReLU6 of the Lucid library (``lucid/misc/redirected_relu_grad.py``):
                  the plain gradient, except that for an image whose plain gradient at this
                  rectifier is entirely zero the dead units pass grad too, unless it would push an
                  input below 0 lower (or, for ReLU6, an input above 6 higher). Like Lucid it
                  redirects only while the optimization step (counted from 0) is at most
                  ``REDIRECT_STEPS`` = 16, and returns the plain gradient after that.
- ``noisy:S``     this course's noisy rectifier, in the spirit of Gulcehre et al. (Noisy Activation
                  Functions, 2016) but not their rule: they inject noise into saturated units in
                  the forward pass; here the forward is ReLU (no noise) and the backward slope is
                  S·``|xi|`` for negative inputs, xi ~ N(0, 1) per element (a random proxy slope of
                  mean S·sqrt(2/pi)). Every module draws from its own stream (seeded from its
                  name); inside AM the noise of image ``i`` depends only on (module, the image's
                  seed, step, call), so a batched run equals per-image runs.

The AM loop tells the rules where it is with :func:`proxylab.swap.set_state` (step, and each image's seed).
Rules are defined on a ReLU/ReLU6 forward pass: converting a Leaky ReLU with one is refused
(:func:`proxylab.swap.swap_activations` raises), since its forward would silently become a ReLU's.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import nn

RULES = ("guided", "deconvnet", "redirected", "noisy")
REDIRECT_STEPS = 16  # Lucid: redirect while global_step <= 16, plain gradient after


def relu_forward(x, max_value=None, inplace=False):
    """ReLU, or ReLU6-like with ``max_value`` (one fused clamp): bit-identical to nn.ReLU/ReLU6."""
    if max_value is not None:
        return nn.functional.hardtanh(x, 0.0, max_value, inplace=inplace)
    return torch.relu_(x) if inplace else torch.relu(x)


def _per_image(mask_or_value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask_or_value.view(-1, *([1] * (like.dim() - 1)))


def redirected_grad(x: torch.Tensor, grad: torch.Tensor, max_value: float | None = None,
                    step: int | None = None) -> torch.Tensor:
    """Lucid's redirected ReLU (or ReLU6 with ``max_value``) gradient at input ``x``, in the
    ascent convention. ``step`` None counts as step 0 (redirecting)."""
    dead = (x < 0) if max_value is None else (x < 0) | (x > max_value)
    plain = torch.where(dead, 0.0, grad)
    if step is not None and step > REDIRECT_STEPS:
        return plain
    blocked = (x < 0) & (grad < 0)  # would push a negative input lower
    if max_value is not None:
        blocked = blocked | ((x > max_value) & (grad > 0))  # would push an input above 6 higher
    redirected = torch.where(blocked, 0.0, grad)
    if grad.dim() > 1:  # one decision per image of the batch
        nothing_through = plain.flatten(1).norm(dim=1) == 0
        return torch.where(_per_image(nothing_through, grad), redirected, plain)
    return redirected if plain.norm() == 0 else plain


def _mix(*numbers: int) -> int:
    """A 63-bit seed from integers (stable across runs and machines)."""
    return zlib.crc32(",".join(str(int(n)) for n in numbers).encode()) * 2_654_435_761 % (2 ** 63)


class _RuleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, module):
        # keep the input itself: Lucid's rules tell x < 0 from x = 0 and x > 6 from x = 6
        saved = x.clone() if module.inplace else x
        y = relu_forward(x, module.max_value, module.inplace)
        if module.inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(saved)
        ctx.module, ctx.step, ctx.call = module, module.step, module.calls
        ctx.image_seeds = module.image_seeds
        module.calls += 1
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        m = ctx.module
        if m.rule == "guided":
            g = torch.where((x > 0) & (grad > 0), grad, 0.0)
        elif m.rule == "deconvnet":
            g = grad.clamp(min=0)
        elif m.rule == "redirected":
            return redirected_grad(x, grad, m.max_value, ctx.step), None
        else:  # noisy
            g = torch.where(x > 0, grad, grad * m.param * m.noise(grad, ctx.step, ctx.call, ctx.image_seeds))
        if m.max_value is not None:
            g = torch.where(x >= m.max_value, 0.0, g)
        return g, None


class BackwardRule(nn.Module):
    """A rectifier with ReLU's (or ReLU6's) forward and one of the backward rules above.

    Attributes set by the AM loop through :func:`proxylab.swap.set_state`: ``step`` (the optimization step,
    from 0; None outside AM) and ``image_seeds`` (one per image of the batch, for ``noisy``)."""

    def __init__(self, rule: str, param: float = 0.0, max_value: float | None = None,
                 inplace: bool = False, seed: int = 0):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"unknown backward rule {rule!r}; choose one of {', '.join(RULES)}")
        self.rule, self.param, self.max_value, self.inplace = rule, float(param), max_value, inplace
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if rule == "noisy" else None
        self.step: int | None = None
        self.image_seeds: list[int] | None = None
        self.calls = 0  # rectifier calls since the last set_state (a module may run twice a pass)

    def noise(self, like: torch.Tensor, step, call, image_seeds) -> torch.Tensor:
        """``|xi|`` for the noisy rule: from this module's own stream outside AM, else per image
        from (module seed, image seed, step, call)."""
        if image_seeds is None or len(image_seeds) != like.shape[0]:
            xi = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
        else:
            xi = torch.stack([torch.randn(like.shape[1:], dtype=like.dtype, generator=torch.Generator().manual_seed(
                _mix(self.seed, s, step or 0, call))) for s in image_seeds])
        return xi.abs().to(like.device)

    def forward(self, x):
        return _RuleFunction.apply(x, self)

    def extra_repr(self):
        parts = [self.rule] + ([f"scale={self.param:g}"] if self.rule == "noisy" else [])
        parts += [f"max_value={self.max_value:g}"] if self.max_value is not None else []
        return ", ".join(parts + (["inplace=True"] if self.inplace else []))


def module_seed(name: str) -> int:
    """The noisy rule's stream of the rectifier called ``name`` (its qualified name)."""
    return _mix(zlib.crc32(name.encode()))

