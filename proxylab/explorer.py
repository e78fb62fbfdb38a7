"""A deep-visualization explorer in the spirit of Yosinski et al.'s live tool: the activations of
every channel of a chosen layer for the current image, and, for a selected channel, its
activation-maximization image (with a chosen backward rule and slope) and its top activations
among the available images.

Logic lives in plain methods (tested by setting widget values); ipywidgets only draws it. Layer
outputs are computed for all layers in one forward pass per image and cached, so changing the
layer only re-tiles cached tensors.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import ipywidgets as W
import matplotlib
import torch
from IPython.display import display
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T
from torchvision.utils import make_grid

from . import am
from .proxygrad import ActivationSpec, check_slope
from .widgets import Rerun, safely

SAMPLE_IMAGES = {"Grace Hopper": "grace_hopper.jpg", "gift pack": "Minduka_Present_Blue_Pack.png",
                 "matplotlib logo": "logo2.png"}
RULE_KINDS = ["relu", "proxygrad", "guided", "deconvnet", "redirected", "noisy"]


def load_image(source, size: int = 224) -> torch.Tensor:
    """An image file (path or bytes) as a (3, size, size) tensor in [-1, 1] (center crop, resize)."""
    img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)
    x = T.functional.to_dtype(T.functional.pil_to_tensor(img.convert("RGB")), torch.float32, scale=True)
    side = min(x.shape[-2:])
    x = T.functional.center_crop(x, [side, side])
    return (T.functional.resize(x, [size, size], antialias=True) * 2 - 1).clamp(-1, 1)


def sample_images(size: int = 224) -> dict[str, torch.Tensor]:
    """Real photos that ship with matplotlib (its sample data), in [-1, 1]."""
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    return {name: load_image(folder / file, size) for name, file in SAMPLE_IMAGES.items()
            if (folder / file).exists()}


def candidate_layers(model: nn.Module, size: int = 64) -> dict[str, tuple[int, int]]:
    """Layers worth exploring (convolutions and the blocks of Sequential/ModuleList containers)
    whose output is a (N, C, H, W) map: name -> (channels, height at ``size`` px input)."""
    containers = (nn.Sequential, nn.ModuleList)
    names = {}
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            name = f"{parent_name}.{attr}" if parent_name else attr
            if isinstance(child, nn.Conv2d) or (isinstance(parent, containers) and not isinstance(child, containers)):
                names[name] = child
    shapes, handles = {}, []
    for name, module in names.items():
        handles.append(module.register_forward_hook(
            lambda m, i, out, name=name: shapes.__setitem__(name, tuple(out.shape)) if out.dim() == 4 else None))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return {name: (shape[1], shape[2]) for name, shape in shapes.items()}


def tile(maps: torch.Tensor, cell: int = 32, max_channels: int = 256) -> torch.Tensor:
    """(C, H, W) channel maps -> one (H', W') image in [0, 1], each map normalized on its own."""
    maps = maps[:max_channels].float()
    lo = maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    hi = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    maps = (maps - lo) / (hi - lo).clamp_min(1e-8)
    maps = nn.functional.interpolate(maps[:, None], size=(cell, cell), mode="nearest")
    return make_grid(maps, nrow=math.ceil(math.sqrt(len(maps))), padding=1, pad_value=1.0)[0]


def png(img: torch.Tensor) -> bytes:
    """(H, W) or (3, H, W) in [0, 1] as PNG bytes."""
    arr = (img.clamp(0, 1) * 255).round().byte()
    arr = arr.permute(1, 2, 0) if arr.dim() == 3 else arr
    buf = io.BytesIO()
    Image.fromarray(arr.cpu().numpy()).save(buf, format="PNG")
    return buf.getvalue()


class Explorer:
    """The explorer widget. ``Explorer(model)`` in a notebook cell shows it.

    Args:
        model: a network taking images in [-1, 1] (``models.imagenet_model`` or ``train.load_for_am``).
        images: name -> (3, H, W) image in [-1, 1]; default: :func:`sample_images`.
        size: input size for the grid's forward pass.
        am_size, steps: image size and steps of the channel visualization.
    """

    def __init__(self, model: nn.Module, images: dict[str, torch.Tensor] | None = None, size: int = 224,
                 am_size: int = 128, steps: int = 20, rule: str = "proxygrad", slope: float = 0.05):
        self.model, self.size, self.am_size = model, size, am_size
        self.images = dict(images or sample_images(size))
        self.layers = candidate_layers(model)
        self._cache: dict[str, dict[str, torch.Tensor]] = {}
        style = {"description_width": "initial"}
        names = list(self.layers)
        self.image = W.Dropdown(options=list(self.images), description="image", style=style)
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.layer = W.Dropdown(options=names, value=names[len(names) // 2], description="layer", style=style)
        self.channel = W.Dropdown(description="channel", style=style)
        self.rule = W.Dropdown(options=RULE_KINDS, value=rule, description="backward rule", style=style)
        self.slope = W.FloatSlider(value=slope, min=0.0, max=1.0, step=0.01, description="slope / scale",
                                   continuous_update=False, style=style)
        self.steps = W.IntSlider(value=steps, min=1, max=200, description="steps", continuous_update=False, style=style)
        self.button = W.Button(description="Visualize channel", button_style="primary")
        self.grid = W.Image(format="png")
        self.input_view = W.Image(format="png", width=160)
        self.am_view = W.Image(format="png", width=160)
        self.top_view = W.Image(format="png")
        self.status = W.HTML()
        self.regrid = Rerun(self.update_grid, self.status)  # a burst of picks redraws once, for the last
        self.image.observe(self.regrid, names="value")
        self.layer.observe(self.regrid, names="value")
        self.upload.observe(lambda c: safely(self.add_upload, self.status), names="value")
        self.button.on_click(lambda b: safely(self.visualize_channel, self.status))
        self.widget = W.VBox([
            W.HBox([self.image, self.upload, self.layer]),
            W.HBox([W.VBox([W.HTML("<b>input</b>"), self.input_view]), W.VBox([W.HTML("<b>channel activations</b>"), self.grid])]),
            W.HBox([self.channel, self.rule, self.slope, self.steps, self.button]),
            self.status,
            W.HBox([W.VBox([W.HTML("<b>activation maximization</b>"), self.am_view]),
                    W.VBox([W.HTML("<b>top activations (images, activation map)</b>"), self.top_view])]),
        ])
        self.am_result = None
        self.update_grid()

    # ------------------------------------------------------------------ cached layer outputs
    def activations(self, name: str) -> dict[str, torch.Tensor]:
        """Every candidate layer's output for image ``name`` (one forward pass, cached)."""
        if name not in self._cache:
            outs, handles = {}, []
            modules = dict(self.model.named_modules())
            for layer in self.layers:
                handles.append(modules[layer].register_forward_hook(
                    lambda m, i, out, layer=layer: outs.__setitem__(layer, out[0].detach().clone())))
            try:
                with torch.no_grad():
                    device = next(self.model.parameters()).device
                    self.model(self.images[name][None].to(device))
            finally:
                for h in handles:
                    h.remove()
            self._cache[name] = {k: v.cpu() for k, v in outs.items()}
        return self._cache[name]

    def update_grid(self) -> None:
        """Redraw the channel grid for the current image and layer; order channels by strength."""
        maps = self.activations(self.image.value)[self.layer.value]
        self.grid.value = png(tile(maps))
        self.input_view.value = png((self.images[self.image.value] + 1) / 2)
        strength = maps.flatten(1).mean(dim=1)
        order = strength.argsort(descending=True).tolist()
        self.channel.options = [(f"{c} (mean {strength[c]:.2f})", c) for c in order]
        self.channel.value = order[0]
        self.status.value = (f"layer <b>{self.layer.value}</b>: {maps.shape[0]} channels of "
                             f"{maps.shape[1]}x{maps.shape[2]}; grid shows up to 256")

    def add_upload(self) -> None:
        """Add the uploaded file as an image and select it."""
        for item in self.upload.value:
            content = item["content"] if isinstance(item, dict) else item.content
            name = (item["name"] if isinstance(item, dict) else item.name) or "upload"
            self.images[name] = load_image(bytes(content), self.size)
            self.image.options = list(self.images)
            self.image.value = name

    def spec(self) -> ActivationSpec:
        kind, s = self.rule.value, self.slope.value
        if kind == "proxygrad":
            return ActivationSpec.at_slope(kind, s)  # slope 0: the plain gradient
        return ActivationSpec(kind, check_slope(s)) if kind == "noisy" else ActivationSpec(kind)

    def top_activations(self, k: int = 3) -> list[tuple[str, float]]:
        """The available images ranked by the selected channel's maximum activation."""
        scores = {name: self.activations(name)[self.layer.value][self.channel.value].max().item()
                  for name in self.images}
        return sorted(scores.items(), key=lambda kv: -kv[1])[:k]

    def visualize_channel(self):
        """AM of the selected channel with the chosen rule; also shows its top activations."""
        target = am.channel_target(self.layer.value, [self.channel.value])
        self.am_result = am.visualize(self.model, target, self.spec(), steps=self.steps.value,
                                      size=self.am_size, progress=False)
        self.am_view.value = png((self.am_result.images[0] + 1) / 2)
        top = self.top_activations()
        thumbs = []
        for name, _ in top:
            img = (self.images[name] + 1) / 2
            amap = self.activations(name)[self.layer.value][self.channel.value]
            amap = (amap - amap.min()) / (amap.max() - amap.min()).clamp_min(1e-8)
            amap = nn.functional.interpolate(amap[None, None], size=img.shape[-2:], mode="bilinear")[0]
            thumbs += [img, amap.expand(3, -1, -1)]
        self.top_view.value = png(make_grid(torch.stack([T.functional.resize(t, [96, 96], antialias=True)
                                                         for t in thumbs]), nrow=2 * len(top), padding=2, pad_value=1))
        self.status.value = (f"channel {self.channel.value} of <b>{self.layer.value}</b>, {self.spec()}: "
                             f"activation {self.am_result.scores[0, 0]:.2f} -> <b>{self.am_result.final[0]:.2f}</b>"
                             f" in {self.steps.value} steps; top images: "
                             + ", ".join(f"{n} ({v:.2f})" for n, v in top))
        return self.am_result

    def _ipython_display_(self):
        display(self.widget)
