"""Statistics of randomly initialized ResNet18s (paper, section 7 and Appendix 11.3):
the std of BatchNorm inputs (Figure 4) and the gradient magnitude after the first block's first
convolution (Table 5), for Leaky ReLU networks and ProxyGrad."""
from __future__ import annotations

import copy

import torch
from torch import nn
from tqdm.auto import tqdm

from .architectures import resnet18, with_spec
from .proxygrad import ActivationSpec


_LAST: dict = {}  # the last network built, by (num_classes, seed): its copies serve the other specs of that seed


def random_resnet18(spec: "str | ActivationSpec", num_classes: int, seed: int, batchnorm: bool = True) -> nn.Module:
    """torchvision's ResNet18 with its Kaiming init (seeded), rectifiers set by ``spec``;
    ``batchnorm=False`` replaces every BatchNorm by the identity.

    The weights depend on the seed only (the rectifiers have none), so the last seed's ReLU network is
    kept and copied for the next spec of the same seed (the init is a third of a 32-px study's time);
    the global RNG is left as building it leaves it either way."""
    if _LAST.get("key") != (num_classes, seed):
        torch.manual_seed(seed)
        _LAST.update(key=(num_classes, seed), model=resnet18(num_classes), rng=torch.get_rng_state())
    torch.set_rng_state(_LAST["rng"])
    model = with_spec(copy.deepcopy(_LAST["model"]), spec)
    if not batchnorm:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.BatchNorm2d):
                    setattr(parent, name, nn.Identity())
    for m in model.modules():  # the gradient hook below needs the conv output not overwritten
        if hasattr(m, "inplace"):
            m.inplace = False
    return model.train()


def bn_input_stats(spec: "str | ActivationSpec", images: torch.Tensor, labels: torch.Tensor | None = None, seed: int = 0,
                   num_classes: int = 10) -> dict[str, torch.Tensor]:
    """The spread of the input of every BatchNorm layer (in network order) of one random ResNet18,
    measured two ways in one forward pass (the network in train mode, as in training):

    - ``"per_channel"``: the batch std sigma_B of each channel over (images, rows, columns), the
      biased one that BatchNorm divides by, averaged over the channels (the paper's section 7);
    - ``"whole"``: the std of the whole input tensor, which also counts how the channels' means
      differ, so it follows the second moment E[Y^2] of the rectified units more than their variance.

    Returns:
        ``{"per_channel": tensor(layers), "whole": tensor(layers)}``.
    """
    model = random_resnet18(spec, num_classes, seed)
    stats = {"per_channel": [], "whole": []}

    def keep(module, inputs):
        z = inputs[0]
        stats["per_channel"].append(z.transpose(0, 1).flatten(1).std(dim=1, correction=0).mean().item())
        stats["whole"].append(z.std().item())

    hooks = [m.register_forward_pre_hook(keep) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.tensor(v) for k, v in stats.items()}


def bn_input_std(spec: "str | ActivationSpec", images: torch.Tensor, labels: torch.Tensor | None = None, seed: int = 0,
                 num_classes: int = 10, measure: str = "per_channel") -> torch.Tensor:
    """One measure of :func:`bn_input_stats` (``"per_channel"``, BatchNorm's sigma_B, or ``"whole"``)."""
    if measure not in ("per_channel", "whole"):
        raise ValueError(f"measure must be 'per_channel' (what BatchNorm divides by) or 'whole', got {measure!r}")
    return bn_input_stats(spec, images, labels, seed, num_classes)[measure]


def predicted_std_growth(slopes) -> dict[str, list[float]]:
    """Appendix 11.3's closed forms for Y = LReLU_a(X), X ~ N(0, 1), as a growth of the std over
    ReLU's: ``sqrt(Var[Y](a) / Var[Y](0))`` (what a per-channel std follows) and
    ``sqrt(E[Y^2](a) / E[Y^2](0))`` (what a whole-tensor std follows)."""
    from .gaussian import closed_form

    base = closed_form(0.0)
    return {"variance": [(closed_form(a)["var"] / base["var"]) ** 0.5 for a in slopes],
            "second moment": [(closed_form(a)["second"] / base["second"]) ** 0.5 for a in slopes]}


def first_block_gradient(spec: "str | ActivationSpec", images: torch.Tensor, labels: torch.Tensor, seed: int,
                         batchnorm: bool = True, num_classes: int = 10) -> float:
    """Mean ``|dL/dz|`` of the cross-entropy loss L, z the output of ``layer1[0].conv1``."""
    model = random_resnet18(spec, num_classes, seed, batchnorm)
    grads = []

    def keep_grad(module, inputs, output):
        output.register_hook(lambda g: grads.append(g.abs().mean().item()))

    hook = model.layer1[0].conv1.register_forward_hook(keep_grad)
    nn.functional.cross_entropy(model(images), labels).backward()
    hook.remove()
    return grads[0]


def slope_study(fn, kinds: dict[str, str], slopes, batches: dict, desc: str = "",
                **kwargs) -> dict[str, torch.Tensor]:
    """Run ``fn(spec, images, labels, seed=seed, **kwargs)`` for each kind (label -> ``"leaky"`` or
    ``"proxygrad"``; a template such as ``"leaky:{s}"`` names its kind too), slope (0: ReLU) and
    seed, where ``batches`` maps each seed to its ``(images, labels)``: every repeat has its own
    network and its own batch.

    Returns:
        label -> tensor of shape (slopes, seeds, ...).
    """
    seeds = list(batches)
    at = {(kind, s): ActivationSpec.at_slope(kind.partition(":")[0], s) for kind in kinds.values() for s in slopes}
    specs = list(dict.fromkeys(at.values()))  # every kind's slope 0 is the same ReLU network: run once
    done: dict[tuple[ActivationSpec, object], torch.Tensor] = {}
    with tqdm(total=len(specs) * len(seeds), desc=desc, leave=False) as bar:
        for seed in seeds:  # seed by seed: one network's init serves all its specs (random_resnet18)
            for spec in specs:
                done[spec, seed] = torch.as_tensor(fn(spec, *batches[seed], seed=seed, **kwargs))
                bar.update()
    return {label: torch.stack([torch.stack([done[at[kind, s], seed] for seed in seeds]) for s in slopes])
            for label, kind in kinds.items()}


def table5(results: dict[bool, dict[str, torch.Tensor]], slopes, columns=(0.01, 0.1, 0.2)) -> str:
    """Table 5 as markdown: mean ± std of the gradient magnitude (x 1e-4) per kind and slope,
    without and with BatchNorm. ``results[batchnorm][kind]`` has shape (slopes, seeds)."""
    slopes = list(slopes)
    lines = ["| BatchNorm | activation | ReLU (0) | " + " | ".join(f"slope {c:g}" for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for bn, kinds in results.items():
        for kind, values in kinds.items():
            v = values * 1e4
            cells = [f"{v[slopes.index(s)].mean():.3f} ± {v[slopes.index(s)].std():.3f}"
                     for s in (0.0, *columns)]
            lines.append(f"| {'with' if bn else 'without'} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
