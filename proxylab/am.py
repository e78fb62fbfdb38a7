"""Activation maximization (AM) on real networks, batched over targets (paper, section 5).

Loop: :func:`proxylab.ascent.ascend` (normalized step, clip to [-1, 1]). Objectives: a class logit,
or a channel / unit of a named layer. Regularizers: :mod:`proxylab.regularizers`. The activation
spec picks the network that makes the GRADIENT; the score reported is always the ORIGINAL
network's, as in the paper.

Conventions (the paper's values were lost; these are documented choices):

- the start is gray plus Gaussian noise of std ``init_std`` = 0.1; image ``i`` of a batch uses the
  seed ``seed + i``, so a batched run equals per-image runs with those seeds;
- ``lr`` is the RMS change per pixel of one step: the update's L2 length is ``lr * sqrt(C*H*W)``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .ascent import ascend
from .function_calls import evaluating
from .proxygrad import ActivationSpec, check_slope, parse_activation
from .swap import proxygrad, rectifier_calls, rectifier_sites, set_state, swap_activations, swapped

DEFAULT_LR = 0.02
DEFAULT_INIT_STD = 0.1
DEFAULT_SIZE = 224  # visualize's image side; what its callers' checks of a known run compare with


# --------------------------------------------------------------------------- objectives
@dataclass
class Target:
    """What each image of the batch maximizes: a class logit (``layer=None``), the mean of a
    channel of a named layer, or one unit (``position=(y, x)``) of that channel."""

    indices: list[int]
    layer: str | None = None
    position: tuple[int, int] | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        idx = torch.tensor(self.indices, device=x.device)
        rows = torch.arange(len(idx), device=x.device)
        if self.layer is None:
            return model(x)[rows, idx]
        store = {}
        module = model.get_submodule(self.layer)
        # clone: an in-place rectifier right after the layer would otherwise overwrite it
        handle = module.register_forward_hook(lambda m, i, out: store.__setitem__("a", out.clone()))
        try:
            model(x)
        finally:
            handle.remove()
        act = store["a"][rows, idx]
        if self.position is None:
            return act.flatten(1).mean(dim=1)
        return act[:, self.position[0], self.position[1]]


def class_target(indices: Sequence[int]) -> Target:
    return Target(list(indices))


def channel_target(layer: str, channels: Sequence[int], position: tuple[int, int] | None = None) -> Target:
    return Target(list(channels), layer, position)


# --------------------------------------------------------------------------- gradient network
@contextlib.contextmanager
def in_float64(model: nn.Module):
    """``model``'s floating-point parameters and buffers in float64 for a ``with`` block, each
    restored to its own dtype after (exactly: every float32 is a float64). The AM loop uses it when
    a high backward slope overflows float32's gradient."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    dtypes = [t.dtype for t in tensors]
    for t in tensors:
        t.data = t.data.double()
    try:
        yield model
    finally:
        for t, dtype in zip(tensors, dtypes):
            t.data = t.data.to(dtype)


def proxy_gradient_norms(model: nn.Module, images: torch.Tensor, targets: "Target | Sequence[int]",
                         slopes: Sequence[float]) -> torch.Tensor:
    """The L2 norm of the input gradient of each image's target under ``proxygrad:B`` for each
    slope B (0: the model's own gradient), computed in float64 so that high slopes do not overflow.

    Returns:
        A float64 tensor (len(slopes), images).
    """
    target = targets if isinstance(targets, Target) else class_target(targets)
    images = images.to(next(model.parameters()).device).double()
    rows = []
    with evaluating(model), in_float64(model):
        for s in slopes:
            with gradient_network(model, ActivationSpec.at_slope("proxygrad", s)) as (net, _):
                x = images.clone().requires_grad_(True)
                (g,) = torch.autograd.grad(target(net, x).sum(), x)
            rows.append(g.flatten(1).norm(dim=1))
    return torch.stack(rows).cpu()


@contextlib.contextmanager
def gradient_network(model: nn.Module, spec: "str | ActivationSpec", layers=None):
    """Yield ``(network for the gradient, same_forward)``.

    ``relu`` uses the model itself; ``proxygrad:B`` and the backward rules (``guided``,
    ``deconvnet``, ``redirected``, ``noisy:S``) convert the model's own rectifiers for the duration
    (forward unchanged, so the score needs no second pass); ``leaky:A`` and ``proxygrad:B:A``
    change the forward and use a converted copy.
    """
    spec = parse_activation(spec)
    if layers is not None and spec.kind != "proxygrad":
        raise ValueError("per-layer conversion (layers=...) is supported for proxygrad:B only")
    if spec.kind == "relu":
        rectifier_sites(model)  # a model without rectifiers is an error, not a silent no-op
        yield model, True
    elif spec.kind == "proxygrad" and spec.forward_slope == 0:
        with proxygrad(model, spec.backward_slope, layers=layers):
            yield model, True
    elif spec.same_forward:
        with swapped(model, spec):
            yield model, True
    else:
        twin = copy.deepcopy(model)
        swap_activations(twin, spec)
        yield twin, False


# --------------------------------------------------------------------------- the AM run
@dataclass
class AMResult:
    """Images (N, C, H, W) in [-1, 1], the original network's score per step (steps + 1, N)
    and per image at the end, plus what produced them."""

    images: torch.Tensor
    scores: torch.Tensor
    targets: list[int]
    spec: str
    steps: int
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def final(self) -> torch.Tensor:
        return self.scores[-1]


def initial_images(n: int, size: int, seed: int, init_std: float = DEFAULT_INIT_STD,
                   channels: int = 3) -> torch.Tensor:
    """Gray plus Gaussian noise, image ``i`` seeded with ``seed + i``."""
    return torch.stack([
        (torch.randn(channels, size, size, generator=torch.Generator().manual_seed(seed + i)) * init_std).clamp(-1, 1)
        for i in range(n)])


def _check_size(model: nn.Module, size: int) -> None:
    minimum = 32
    if not isinstance(size, int) or size < minimum:
        raise ValueError(f"image size must be an integer >= {minimum} pixels, got {size!r} "
                         f"(ImageNet models expect {getattr(model, 'input_size', 224)})")


def visualize(model: nn.Module, targets: "Target | Sequence[int]", spec: str = "relu", steps: int = 10,
              lr: float = DEFAULT_LR, size: int = DEFAULT_SIZE, seed: int = 0, init_std: float = DEFAULT_INIT_STD,
              regularizers: Sequence = (), layers=None, x0: torch.Tensor | None = None,
              snapshot_steps: tuple[int, ...] = (), progress: bool = True) -> AMResult:
    """Activation maximization of one target per image, all images in one batch.

    Args:
        model: a network taking images in [-1, 1] (see :func:`proxylab.models.imagenet_model`).
        targets: class indices, or a :class:`Target` (class logits, channels or units of a layer).
        spec: the activation spec of the gradient network (``"relu"``, ``"leaky:A"``,
            ``"proxygrad:B"``); scores always come from the original model.
        steps: number of updates (>= 1).
        lr: RMS change per pixel of one step.
        size: image side in pixels.
        seed: image ``i`` starts from noise seeded with ``seed + i`` (and the ``noisy`` rule's
            noise for it is drawn from that seed too).
        init_std: std of the initial noise on gray.
        regularizers: callables ``(x, step, grad) -> x`` applied after each update, in order
            (see :mod:`proxylab.regularizers`).
        layers: with ``proxygrad:B``, convert only the rectifiers whose qualified name it accepts.
        x0: explicit start images instead of the seeded noise.
        snapshot_steps: steps at which to keep the images.
        progress: a tqdm bar with the current mean score.

    Returns:
        An :class:`AMResult`. The model runs in eval mode (BatchNorm with its running
        statistics, so images of a batch never mix); its own mode is restored afterwards.
    """
    spec = parse_activation(spec)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    _check_size(model, size)
    target = targets if isinstance(targets, Target) else class_target(targets)
    device = next(model.parameters()).device
    x = initial_images(len(target.indices), size, seed, init_std) if x0 is None else x0
    if x.shape[-1] != size or x.shape[-2] != size:
        raise ValueError(f"x0 has size {tuple(x.shape[-2:])}, expected ({size}, {size})")
    x = x.to(device)
    step_length = lr * math.sqrt(x[0].numel())

    def regularize(img, step, grad):
        for r in regularizers:
            img = r(img, step, grad)
        return img

    def original_score(img):
        with torch.no_grad():
            return target(model, img)

    image_seeds = [seed + i for i in range(x.shape[0])]
    with evaluating(model), gradient_network(model, spec, layers) as (net, same_forward):  # a twin copies eval
        x, scores, snaps = ascend(
            lambda img: target(net, img), x, steps, step_length,
            score=None if same_forward else original_score,
            after_step=regularize if regularizers else None,
            before_step=lambda i: set_state(net, i, image_seeds),  # also rules the model was swapped to for good
            precise=lambda: in_float64(net), snapshot_steps=snapshot_steps, progress=progress, desc=f"AM {spec}")
    return AMResult(x.cpu(), scores.cpu(), list(target.indices), str(spec), steps,
                    {k: v.cpu() for k, v in snaps.items()})


# --------------------------------------------------------------------------- held-out judges
def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return a is b or (sa.keys() == sb.keys() and all(
        x.shape == y.shape and torch.equal(x.to(y.device), y) for x, y in zip(sa.values(), sb.values())))


def judge(images: torch.Tensor, targets: Sequence[int], judge_model: nn.Module, maker: nn.Module) -> dict:
    """Score AM images with a network that did NOT make them: a high logit of the maker can be a
    pattern only the maker responds to, a held-out judge's probability cannot.

    Args:
        images: (N, 3, H, W) in [-1, 1], e.g. ``AMResult.images``; resized (bilinear, antialiased)
            to the judge's ``input_size``.
        targets: the class each image was made for.
        judge_model: an ImageNet classifier taking images in [-1, 1] (:func:`proxylab.models.imagenet_model`).
        maker: the network that made the images; a judge with the same weights is refused.

    Returns:
        A dict with, under the judge, ``"probability"`` (the softmax probability of each image's
        target, shape (N,)), ``"top1"`` and ``"top5"`` (whether the target is the judge's first class or
        among its first five, bool (N,)).
    """
    if _same_weights(judge_model, maker):
        raise ValueError("the judge is the network that made these images, so it cannot judge them: use another "
                         "model, e.g. imagenet_model('efficientnet-lite1') for images made on efficientnet-lite0")
    if len(targets) != images.shape[0]:
        raise ValueError(f"one target per image: {images.shape[0]} images, {len(targets)} targets")
    device = next(judge_model.parameters()).device
    size = getattr(judge_model, "input_size", images.shape[-1])
    x = nn.functional.interpolate(images.to(device).float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)
    idx = torch.tensor(list(targets), device=device)
    with torch.no_grad(), evaluating(judge_model):
        logits = judge_model(x)
    rank = (logits > logits.gather(1, idx[:, None])).sum(dim=1)  # how many classes score higher
    return {"probability": logits.softmax(dim=1).gather(1, idx[:, None])[:, 0].cpu(), "top1": (rank == 0).cpu(),
            "top5": (rank < 5).cpu()}


# --------------------------------------------------------------------------- choosing the slope
@dataclass
class SlopeDiagnostic:
    """How the proxy gradient compares with the true gradient at some images.

    ``gain[s, i]`` = ``|g_proxy| / |g_true|`` and ``cosine[s, i]`` for slope ``slopes[s]`` and image
    ``i``; ``layer_gain[s, l]`` / ``layer_cosine[s, l]`` the same for the gradient with respect to
    the output of the ``l``-th rectifier call (``layer_names[l]``, in forward order), averaged
    over images: where the proxy starts to diverge from the truth, going down from the head.
    """

    slopes: list[float]
    gain: torch.Tensor
    cosine: torch.Tensor
    layer_names: list[str]
    layer_gain: torch.Tensor
    layer_cosine: torch.Tensor

    def summary(self) -> str:
        rows = [f"{'slope':>7} {'gain':>9} {'cosine':>7}"]
        for s, g, c in zip(self.slopes, self.gain.median(dim=1).values, self.cosine.mean(dim=1)):
            rows.append(f"{s:7g} {g.item():9.3g} {c.item():7.3f}")
        return "\n".join(rows)


def _gradients_by_layer(model, x, target, slope, layers):
    """Input gradient and per-rectifier-call output gradients under ProxyGrad with ``slope``
    (None: the model's own, true gradient)."""
    x = x.clone().requires_grad_(True)
    names, grads = [], {}

    def keep(key, out):
        names.append(key)
        out.register_hook(lambda g: grads.__setitem__(key, g.detach().flatten(1)))

    convert = contextlib.nullcontext() if slope is None else proxygrad(model, slope, layers=layers)
    with convert, rectifier_calls(model, keep):
        value = target(model, x)
        (g_in,) = torch.autograd.grad(value.sum(), x)
    return g_in.flatten(1), names, grads


def slope_diagnostic(model: nn.Module, images: torch.Tensor, targets: "Target | Sequence[int]",
                     slopes: Sequence[float], layers=None) -> SlopeDiagnostic:
    """Compare ProxyGrad's gradient with the model's own (true) gradient at ``images``: for a
    ReLU model the slope-0 gradient; for a Leaky ReLU model of slope a, the proxy at slope a
    equals it (cosine 1, gain 1).

    Args:
        model: the original network (its rectifiers are converted only temporarily).
        images: a batch in [-1, 1], e.g. :func:`initial_images`.
        targets: class indices or a :class:`Target`, one per image.
        slopes: backward slopes to test (> 0).
        layers: optional filter on rectifier names, as in :func:`proxylab.swap.proxygrad`.

    Returns:
        A :class:`SlopeDiagnostic` with gain and cosine per slope and image, and per rectifier call.
    """
    target = targets if isinstance(targets, Target) else class_target(targets)
    device = next(model.parameters()).device
    images = images.to(device)
    with evaluating(model):
        return _slope_diagnostic(model, images, target, slopes, layers)


def _slope_diagnostic(model, images, target, slopes, layers):
    true_in, names, true_layers = _gradients_by_layer(model, images, target, None, layers)
    names = [n for n in names if n in true_layers]
    gain, cosine, layer_gain, layer_cosine = [], [], [], []
    cos = nn.functional.cosine_similarity
    for s in slopes:
        g_in, _, g_layers = _gradients_by_layer(model, images, target, s, layers)
        gain.append(g_in.norm(dim=1) / true_in.norm(dim=1).clamp_min(1e-30))
        cosine.append(cos(g_in, true_in, dim=1))
        layer_gain.append(torch.stack([(g_layers[n].norm(dim=1) / true_layers[n].norm(dim=1).clamp_min(1e-30)).mean()
                                       for n in names]))
        layer_cosine.append(torch.stack([cos(g_layers[n], true_layers[n], dim=1).mean() for n in names]))
    return SlopeDiagnostic(list(slopes), torch.stack(gain).cpu(), torch.stack(cosine).cpu(), names,
                           torch.stack(layer_gain).cpu(), torch.stack(layer_cosine).cpu())


def suggest_slope(diagnostic: SlopeDiagnostic, min_cosine: float = 0.8,
                  max_gain: float = 3.0) -> tuple[float, float] | None:
    """A backward-slope range from a :class:`SlopeDiagnostic`.

    The rule: a useful proxy is denser than the true gradient but still points the same way. Keep
    the slopes whose mean cosine with the true gradient is at least ``min_cosine`` and whose
    median gain is at most ``max_gain`` (beyond that the proxy is dominated by paths the forward
    pass switched off). The range runs from a quarter of the largest such slope to that slope;
    None when no tested slope qualifies.

    Its measured record (``python -m proxylab reproduce diagnostic``, ``results/diagnostic/``): it
    does not predict the best slope. On EfficientNet-Lite0 (Figure 2's grid) and a Fashion-MNIST
    ResNet18, the score at the range's top is 65-98 % of each class's best, below the best fixed
    slope in every setting, and below plain ReLU after 500 unregularized steps. Kept as a
    description of where the proxy departs from the true gradient, not as advice.
    """
    ok = [s for s, g, c in zip(diagnostic.slopes, diagnostic.gain.median(dim=1).values,
                               diagnostic.cosine.mean(dim=1))
          if s > 0 and c >= min_cosine and g <= max_gain]
    if not ok:
        return None
    return max(ok) / 4, max(ok)


def _check_known(run: AMResult, spec: str, targets: Sequence[int], steps: int, size: int, name: str,
                 advice: str) -> None:
    """Refuses a known run (``name``) made with another spec, targets, steps or image size than asked for."""
    if (run.spec, run.targets, run.steps, run.images.shape[-1]) != (str(parse_activation(spec)), list(targets), steps, size):
        raise ValueError(f"{name} is a run of {run.spec} on targets {run.targets}, {run.steps} steps at "
                         f"{run.images.shape[-1]} px, not of {spec} on {list(targets)}, {steps} steps at {size} px: {advice}")


def slope_sweep(model: nn.Module, targets: Sequence[int], slopes: Sequence[float],
                kinds: dict[str, str] | None = None, steps: int = 10, regularize=None,
                known: Sequence[AMResult] = (), **kwargs) -> dict[str, torch.Tensor]:
    """Figure 2: the original network's mean score over the steps, for each kind and slope.

    Args:
        kinds: label -> kind (``"proxygrad"`` or ``"leaky"``; a template such as ``"proxygrad:{s}"``
            names its kind too), default ``{"ProxyGrad": "proxygrad", "Leaky ReLU": "leaky"}``; slope 0
            is the ReLU baseline for every kind (run once).
        regularize: None, or a function ``seed -> list of regularizers`` (fresh per run, so
            every run sees the same random rotations).
        known: results of :func:`visualize` already run with the same settings (targets, steps, image
            size, and, which a result does not record, the same seed and regularization): a spec among
            them is not run again. A result whose targets, steps or image size differ is refused.

    Returns:
        label -> tensor (len(slopes), steps + 1) of scores averaged over the targets.
    """
    kinds = kinds or {"ProxyGrad": "proxygrad", "Leaky ReLU": "leaky"}
    size = kwargs.get("size", DEFAULT_SIZE)
    runs: dict[ActivationSpec, torch.Tensor] = {}
    for r in known:
        _check_known(r, r.spec, targets, steps, size, f"a known run of {r.spec}", "pass runs of the same settings, or none")
        runs[parse_activation(r.spec)] = r.scores.mean(dim=1)
    for kind in kinds.values():
        for s in slopes:
            spec = ActivationSpec.at_slope(kind.partition(":")[0], s)
            if spec not in runs:  # ReLU, slope 0 of every kind, once
                regs = regularize(kwargs.get("seed", 0)) if regularize else ()
                runs[spec] = visualize(model, targets, spec, steps=steps, regularizers=regs, progress=False,
                                       **kwargs).scores.mean(dim=1)
    return {label: torch.stack([runs[ActivationSpec.at_slope(kind.partition(":")[0], s)] for s in slopes])
            for label, kind in kinds.items()}


def compare(model: nn.Module, targets: Sequence[int], specs: Sequence[str], steps: int = 30,
            **kwargs) -> dict[str, tuple[AMResult, float]]:
    """Run AM with each spec from the same start; returns spec -> (result, seconds)."""
    out = {}
    for spec in specs:
        t0 = time.perf_counter()
        result = visualize(model, targets, spec, steps=steps, progress=False, **kwargs)
        out[spec] = (result, time.perf_counter() - t0)
    return out


def compare_over_seeds(model: nn.Module, targets: Sequence[int], specs: Sequence[str], seeds: Sequence[int],
                       steps: int = 30, known: dict[str, tuple[AMResult, float]] | None = None,
                       **kwargs) -> dict[str, torch.Tensor]:
    """The original network's final score averaged over the targets, per spec and seed: spec ->
    tensor (len(seeds),). Each seed starts every spec from the same images.

    Args:
        known: what :func:`compare` returned for the same model, targets, steps and other settings
            (it runs seed 0): its scores stand in for seed 0, which is not run again. A result whose
            spec, targets, steps or image size differ is refused.
    """
    def final(spec: str, seed: int) -> torch.Tensor:
        if known is not None and seed == 0 and spec in known:
            r = known[spec][0]
            _check_known(r, spec, targets, steps, kwargs.get("size", DEFAULT_SIZE), f"known[{spec!r}]",
                         "pass the compare() result of the same settings, or none")
            return r.final.mean()
        return visualize(model, targets, spec, steps=steps, seed=seed, progress=False, **kwargs).final.mean()

    return {spec: torch.stack([final(spec, seed) for seed in seeds]) for spec in specs}


def partial_conversions(model: nn.Module, targets: Sequence[int], slopes: Sequence[float],
                        choices: dict, steps: int = 30, **kwargs) -> dict[tuple[float, str], float]:
    """Mean final original score of ProxyGrad AM when only some rectifiers are converted.

    Args:
        choices: label -> ``layers`` filter (a function of the rectifier's qualified name, or None
            for all), as in :func:`proxylab.swap.proxygrad`.

    Returns:
        (slope, label) -> mean final score over the targets.
    """
    return {(s, label): visualize(model, targets, ActivationSpec("proxygrad", check_slope(s)), steps=steps, layers=layers,
                                  progress=False, **kwargs).final.mean().item()
            for s in slopes for label, layers in choices.items()}


def slope_verdict(curve: torch.Tensor, slopes: Sequence[float], suggested: tuple[float, float] | None,
                  step: int) -> dict:
    """Where a sweep's best positive slope at ``step`` lies against a suggested range.

    Args:
        curve: (len(slopes), steps + 1) mean scores, row 0 the ReLU baseline (slope 0).
        slopes: the sweep's slopes, ``slopes[0] == 0``.
        suggested: ``(low, high)`` from :func:`suggest_slope`, or None.

    Returns:
        ``{"best_slope", "ratio" (best score / baseline), "where"}``, ``where`` one of
        ``"inside"``, ``"next to"`` (one grid step outside), ``"far from"``, ``"no suggestion"``.
    """
    if slopes[0] != 0:
        raise ValueError("the first slope of a sweep must be 0 (the ReLU baseline)")
    values, grid = curve[1:, step], list(slopes[1:])
    pos = int(values.argmax())
    return {"best_slope": grid[pos], "ratio": values.max().item() / curve[0, step].item(),
            "where": where_in(grid, pos, suggested)}


def where_in(grid: Sequence[float], pos: int, suggested: tuple[float, float] | None) -> str:
    """Where ``grid[pos]`` lies against a suggested ``(low, high)``: ``"inside"``, ``"next to"`` (one
    grid step outside), ``"far from"``, or ``"no suggestion"``."""
    if suggested is None:
        return "no suggestion"
    if suggested[0] <= grid[pos] <= suggested[1]:
        return "inside"
    near = any(suggested[0] <= grid[j] <= suggested[1] for j in (pos - 1, pos + 1) if 0 <= j < len(grid))
    return "next to" if near else "far from"
