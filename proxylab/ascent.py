"""The one activation-maximization update, shared by the toy problems and the ImageNet AM engine.

x <- clip(x + lr * g / ||g||, -1, 1), with g the gradient of the target and the norm taken per
image (the paper's normalized update, section 5), optionally followed by a regularization step.

Only g's direction matters, so g may be arbitrarily large; but a float32 gradient overflows long
before its direction is lost. ProxyGrad's backward slope a_b multiplies the gradient at every
rectifier whose input was negative, so it grows roughly like a_b^depth: on EfficientNet-Lite0 its
norm is 1e4 at a_b = 0.3, 5e12 at 1, 2e26 at 3 (past float32's sum of squares) and 6e42 at 10
(past float32 itself: inf - inf = nan inside the backward). The step therefore (1) takes the norm
of g / max|g|, which cannot overflow, and (2) when float32 gives a non-finite gradient, recomputes
it in float64 (``precise``), and there with the backward's seed scaled by 2^-1000: the backward is
linear in its seed, so the direction is unchanged. A gradient that is still not finite stops the
run with one line naming the step; it never becomes a silent zero step.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from tqdm.auto import tqdm

Objective = Callable[[torch.Tensor], torch.Tensor]
TINY_SEED = 2.0 ** -1000  # the float64 retry's backward seed: room for a gradient 10^301 times larger


class GradientOverflow(ValueError):
    """The gradient is not finite even in float64: the message says at which step and what to do."""


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per image, shaped to broadcast against the batch ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def max_scaled(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` divided per image by its largest absolute entry (entries in [-1, 1]; a zero image
    stays zero): the same direction, in a range every dtype holds."""
    return grad / _per_image(grad.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(grad.dtype).tiny), grad)


def unit_direction(grad: torch.Tensor) -> torch.Tensor:
    """``grad / ||grad||`` per image (first dimension), computed so that it cannot overflow for any
    finite gradient; an image whose gradient is exactly zero gets a zero direction.

    Raises:
        GradientOverflow: when ``grad`` holds an inf or a nan (its direction is unknown).
    """
    if not torch.isfinite(grad).all():
        raise GradientOverflow("the gradient holds inf or nan, so its direction is unknown")
    unit = max_scaled(grad)
    return unit / _per_image(unit.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny), unit)


def normalized_step(x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """One normalized ascent step on a batch ``x`` (first dimension = images), clipped to [-1, 1].

    An image whose gradient is exactly zero (a dead ReLU network) does not move; a non-finite
    gradient raises :class:`GradientOverflow` instead of moving nothing.
    """
    return (x + lr * unit_direction(grad).to(x.dtype)).clamp_(-1.0, 1.0)


def _gradient(objective: Objective, x: torch.Tensor, seed: float = 1.0):
    x = x.detach().requires_grad_(True)
    value = objective(x)
    (grad,) = torch.autograd.grad(value.sum() * seed, x)
    return value.detach(), grad


def input_gradient(objective: Objective, x: torch.Tensor,
                   precise: Callable[[], ContextManager] | None = None, force_precise: bool = False):
    """``(value, grad, precise_used)``: the objective and its gradient at ``x``, in ``x``'s dtype
    when that is finite, else in float64 under ``precise()`` (a context in which ``objective``
    accepts float64 images), first with the plain seed, then with ``TINY_SEED``.

    ``grad`` may then be float64 and scaled: only its direction is meaningful. Raises
    :class:`GradientOverflow` when no attempt gives a finite gradient.
    """
    if not force_precise:
        value, grad = _gradient(objective, x)
        if torch.isfinite(grad).all():
            return value, grad, False
        if precise is None:  # no float64 retry: stop here, where ascend names the step
            raise GradientOverflow("the gradient holds inf or nan, so its direction is unknown")
    with precise() if precise is not None else contextlib.nullcontext():
        for seed in (1.0, TINY_SEED):
            value, grad = _gradient(objective, x.double(), seed)
            if torch.isfinite(grad).all():
                return value.to(x.dtype), grad, True
    raise GradientOverflow("the gradient is not finite even in float64 with its seed scaled by 2^-1000")


def ascend(objective: Objective, x0: torch.Tensor, steps: int, lr: float, *,
           score: Objective | None = None,
           after_step: Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor] | None = None,
           before_step: Callable[[int], None] | None = None,
           precise: Callable[[], ContextManager] | None = None,
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
            clipping (``step`` counts from 1; ``grad`` is this step's gradient, divided per image
            by its largest entry when it was computed in float64, so that it fits ``x``'s dtype).
        before_step: an optional ``step -> None`` called before each gradient (``step`` counts
            from 0), e.g. to tell step-dependent backward rules where the loop is.
        precise: a context manager factory under which ``objective`` takes float64 images (e.g.
            :func:`proxylab.am.in_float64` of the network), used when the gradient overflows in
            float32 (and from then on, for the rest of the run). None: overflow raises.
        snapshot_steps: steps (0 = initial image) after which a copy of the batch is kept.
        progress: show a tqdm bar with the current mean score.
        desc: the run's name, in the progress bar and in errors (the AM engine puts the spec here).

    Returns:
        ``(x, scores, snapshots)``: the final batch, a ``(steps + 1, N)`` tensor of scores (row 0
        for the initial image) and a dict ``step -> batch`` of the requested snapshots.

    Raises:
        GradientOverflow: the gradient of some step is not finite even in float64.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    score = score or objective
    x = x0.detach().clone()
    snapshots = {0: x.clone()} if 0 in snapshot_steps else {}
    scores = []
    in_float64 = False
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)  # pragma: no mutate (display)
    for i in bar:
        if before_step is not None:
            before_step(i)
        try:
            value, grad, in_float64 = input_gradient(objective, x, precise, force_precise=in_float64)
        except GradientOverflow as err:
            raise GradientOverflow(f"{desc}: {err} at step {i + 1} (of {steps}); choose a smaller backward "
                                   "slope") from None
        with torch.no_grad():
            scores.append(value if score is objective else score(x).detach())
            if in_float64:
                grad = max_scaled(grad).to(x.dtype)
            x = normalized_step(x, grad, lr)
            if after_step is not None:
                x = after_step(x, i + 1, grad).clamp_(-1.0, 1.0)
        if i + 1 in snapshot_steps:
            snapshots[i + 1] = x.clone()
        if progress:
            bar.set_postfix(score=f"{scores[-1].float().mean().item():.3f}")  # pragma: no mutate (display)
    with torch.no_grad():
        scores.append(score(x).detach())
    return x, torch.stack(scores), snapshots
