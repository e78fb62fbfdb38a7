"""The one activation-maximization update, shared by the toy problems and the ImageNet AM engine.

x <- clip(x + lr * g / ||g||, -1, 1), with g the gradient of the target and the norm taken per
image (the paper's normalized update, section 5), optionally followed by a regularization step.
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

Objective = Callable[[torch.Tensor], torch.Tensor]


def normalized_step(x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """One normalized ascent step on a batch ``x`` (first dimension = images), clipped to [-1, 1].

    An image whose gradient is exactly zero (a dead ReLU network) does not move.
    """
    norm = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
    step = torch.where(norm > 0, grad / norm.clamp_min(torch.finfo(grad.dtype).tiny), 0.0)
    return (x + lr * step).clamp_(-1.0, 1.0)


def ascend(objective: Objective, x0: torch.Tensor, steps: int, lr: float, *,
           score: Objective | None = None,
           after_step: Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor] | None = None,
           before_step: Callable[[int], None] | None = None,
           snapshot_steps: tuple[int, ...] = (), progress: bool = False, desc: str = "AM"):
    """Run normalized gradient ascent.

    Args:
        objective: maps a batch of images to one value per image; its gradient drives the ascent
            (for ProxyGrad, computed through the proxy backward).
        x0: the initial batch, in [-1, 1].
        steps: number of updates (>= 0).
        lr: the step length (the L2 length of each image's update before clipping).
        score: what is reported per step (default: ``objective``); the paper reports the
            ORIGINAL network's value whatever network made the gradient.
        after_step: an optional regularization step ``(x, step, grad) -> x`` applied after
            clipping (``step`` counts from 1; ``grad`` is the raw gradient of this step).
        before_step: an optional ``step -> None`` called before each gradient (``step`` counts
            from 0), e.g. to tell step-dependent backward rules where the loop is.
        snapshot_steps: steps (0 = initial image) after which a copy of the batch is kept.
        progress: show a tqdm bar with the current mean score.

    Returns:
        ``(x, scores, snapshots)``: the final batch, a ``(steps + 1, N)`` tensor of scores (row 0
        for the initial image) and a dict ``step -> batch`` of the requested snapshots.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    score = score or objective
    x = x0.detach().clone()
    snapshots = {0: x.clone()} if 0 in snapshot_steps else {}
    scores = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for i in bar:
        if before_step is not None:
            before_step(i)
        x.requires_grad_(True)
        value = objective(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
        with torch.no_grad():
            scores.append(value.detach() if score is objective else score(x).detach())
            x = normalized_step(x.detach(), grad, lr)
            if after_step is not None:
                x = after_step(x, i + 1, grad).clamp_(-1.0, 1.0)
        if i + 1 in snapshot_steps:
            snapshots[i + 1] = x.clone()
        if progress:
            bar.set_postfix(score=f"{scores[-1].float().mean().item():.3f}")
    with torch.no_grad():
        scores.append(score(x).detach())
    return x, torch.stack(scores), snapshots
