"""Other backward rules for rectifiers, next to ProxyGrad (paper, section 2): each keeps the
forward pass (ReLU, or ReLU6's clamp) and changes only the gradient passed back. The sign
convention is activation maximization's: ``grad`` is d(target)/d(output) and AM ascends it.

- ``guided``      guided backpropagation (Springenberg et al.): pass grad only where the input
                  was positive AND grad is positive.
- ``deconvnet``   the deconvnet rule (Zeiler & Fergus): apply ReLU to grad, ignore the input.
- ``redirected``  the redirected ReLU of the Lucid AM library: the ReLU gradient, but for an
                  image whose ReLU gradient here is entirely zero, pass grad through the dead
                  units too, except where it would push an already negative input lower.
- ``noisy:S``     a noisy rectifier in the spirit of Gulcehre et al. (Noisy Activation Functions,
                  2016), who let gradients pass saturated units through the noise they inject
                  there: forward ReLU (no noise, as in evaluation); backward slope S·|xi| for
                  negative inputs, xi ~ N(0, 1) drawn afresh per element and backward pass (a random
                  proxy slope of mean S·sqrt(2/pi)), seeded.
"""
from __future__ import annotations

import math

import torch
from torch import nn

RULES = ("guided", "deconvnet", "redirected", "noisy")


def relu_forward(x, max_value=None, inplace=False):
    """ReLU, or ReLU6-like with ``max_value`` (one fused clamp): bit-identical to nn.ReLU/ReLU6."""
    if max_value is not None:
        return nn.functional.hardtanh(x, 0.0, max_value, inplace=inplace)
    return torch.relu_(x) if inplace else torch.relu(x)


class _RuleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rule, param, max_value, inplace, generator):
        y = relu_forward(x, max_value, inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(y)
        ctx.rule, ctx.param, ctx.max_value, ctx.generator = rule, param, max_value, generator
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        positive = y > 0  # where the original input was positive
        if ctx.rule == "guided":
            g = torch.where(positive & (grad > 0), grad, 0.0)
        elif ctx.rule == "deconvnet":
            g = grad.clamp(min=0)
        elif ctx.rule == "redirected":
            relu_grad = torch.where(positive, grad, 0.0)
            redirected = torch.where(~positive & (grad < 0), 0.0, grad)
            dead = relu_grad.flatten(1).norm(dim=1) == 0 if grad.dim() > 1 else relu_grad.norm().eq(0).reshape(1)
            g = torch.where(dead.view(-1, *([1] * (grad.dim() - 1))), redirected, relu_grad)
        else:  # noisy
            xi = torch.randn(grad.shape, generator=ctx.generator, dtype=grad.dtype).to(grad.device)
            g = torch.where(positive, grad, grad * ctx.param * xi.abs())
        if ctx.max_value is not None:
            g = torch.ops.aten.hardtanh_backward(g, y, -math.inf, ctx.max_value)
        return g, None, None, None, None, None


class BackwardRule(nn.Module):
    """A rectifier with ReLU's (or ReLU6's) forward and one of the backward rules above."""

    def __init__(self, rule: str, param: float = 0.0, max_value: float | None = None,
                 inplace: bool = False, seed: int = 0):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"unknown backward rule {rule!r}; choose one of {', '.join(RULES)}")
        self.rule, self.param, self.max_value, self.inplace = rule, float(param), max_value, inplace
        self.generator = torch.Generator().manual_seed(seed) if rule == "noisy" else None

    def forward(self, x):
        return _RuleFunction.apply(x, self.rule, self.param, self.max_value, self.inplace, self.generator)

    def extra_repr(self):
        parts = [self.rule] + ([f"scale={self.param:g}"] if self.rule == "noisy" else [])
        parts += [f"max_value={self.max_value:g}"] if self.max_value is not None else []
        return ", ".join(parts + (["inplace=True"] if self.inplace else []))
