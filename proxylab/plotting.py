"""Plotting helpers shared by the notebooks: image grids, curves, sweeps. Each returns its figure."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .proxygrad import parse_activation
from .toys import g_formula

# distinct dashes and markers (beside the colours), so that curves that coincide stay visible
LINE_STYLES = [dict(ls="-", marker="o", lw=2.2, ms=5), dict(ls="--", marker="s", lw=1.6, ms=4),
               dict(ls=":", marker="^", lw=1.6, ms=4), dict(ls="-.", marker="D", lw=1.2, ms=3)]


def to_display(img: torch.Tensor) -> np.ndarray:
    """An image in [-1, 1] as (H, W) gray or (H, W, 3) RGB in [0, 1] for ``imshow``."""
    img = img.detach().float().cpu()
    if img.dim() == 4:
        img = img[0]
    if img.dim() == 3 and img.shape[0] == 1:
        img = img[0]
    if img.dim() == 3:
        img = img.permute(1, 2, 0)
    return ((img.clamp(-1, 1) + 1) / 2).numpy()


STRETCH = (1.0, 99.0)  # the display stretch of AM images: each image from its 1st to its 99th percentile
STRETCH_CAPTION = ("display: each image stretched on its own from its 1st to its 99th percentile\n"
                   "(the same stretch for every image; raw images below)")


def stretch(img: np.ndarray, percentiles: tuple[float, float] = STRETCH) -> np.ndarray:
    """A display image (values in [0, 1], from :func:`to_display`) stretched so that its low and
    high percentiles (over all pixels and channels) map to 0 and 1, clipped. Pixel-space AM images
    are low-contrast gray; the stretch shows their patterns. A flat image stays as it is."""
    lo, hi = np.percentile(img, percentiles)
    if hi - lo < 1e-6:
        return img
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def image_grid(rows: Mapping[str, Sequence[torch.Tensor]], col_titles: Sequence[str] = (),
               title: str | None = None, size: float = 1.8, extra_col: bool = False, stretched: bool = False):
    """Images in a grid: one row per label, in [-1, 1] (gray: black = -1, white = +1).

    Args:
        rows: row label -> images of that row (tensors in [-1, 1], or display arrays in [0, 1]).
        col_titles: one title per column.
        title: the figure title.
        size: inches per cell.
        extra_col: leave one empty column on the right (returned axes let callers fill it).
        stretched: show every image with :func:`stretch` (and say so under the title).

    Returns:
        The figure (``fig.axes`` holds the axes row by row).
    """
    n_rows = len(rows)
    n_cols = max(len(v) for v in rows.values()) + int(extra_col)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols + 0.8, size * n_rows + 0.4),
                             squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            if c < len(images):
                img = images[c] if isinstance(images[c], np.ndarray) else to_display(images[c])
                ax.imshow(stretch(img) if stretched else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0 and c < len(col_titles):
                    ax.set_title(col_titles[c], fontsize=9)
            elif not (extra_col and c == n_cols - 1):
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=9)
    if title or stretched:
        fig.suptitle("\n".join(t for t in (title, STRETCH_CAPTION if stretched else None) if t),
                     fontsize=None if not stretched else 9)
    fig.tight_layout()
    return fig


def stretched_and_raw(rows: Mapping[str, Sequence], col_titles: Sequence[str] = (), title: str | None = None,
                      size: float = 1.8):
    """Show an image grid with the display stretch, and the same grid raw one click away (an HTML
    ``<details>`` block under it). Both as JPEG: AM images are noise-like, and PNG stores them at
    about five times the size (notebooks are committed with their outputs). Returns the stretched figure."""
    import base64

    from IPython.display import HTML, Image, display

    fig = image_grid(rows, col_titles, title, size, stretched=True)
    raw = image_grid(rows, col_titles, title, size)
    display(Image(data=jpeg(fig), format="jpeg"))
    display(HTML("<details><summary>raw images (no stretch)</summary><img src='data:image/jpeg;base64,"
                 + base64.b64encode(jpeg(raw, dpi=72)).decode() + "'></details>"))
    plt.close(fig)
    plt.close(raw)
    return fig


def jpeg(fig, dpi: int = 90, quality: int = 85) -> bytes:
    """A figure as JPEG bytes."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="jpg", dpi=dpi, pil_kwargs={"quality": quality})
    return buf.getvalue()


def shipped_images(merged: dict, root) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """The final images of a shipped image experiment (``table3``, ``figure3``) as display arrays,
    from each job's ``images.png`` under ``root`` (the experiment's results folder).

    Returns:
        ``(rows, captions)``: row label -> one image per class; per row, the logits as text.
    """
    from pathlib import Path

    from PIL import Image

    rows, captions = {}, []
    for row in merged["rows"]:
        img = Image.open(Path(root) / row["images"]).convert("RGB")
        n = len(row["final_logits"])
        pad = 2 if n > 1 else 0  # save_grid's tiles have 2 px padding; torchvision saves a single image as it is
        side = (img.width - pad) // n - pad
        rows[parse_activation(row["spec"]).label] = [
            np.asarray(img.crop((pad + c * (side + pad), pad, pad + c * (side + pad) + side, pad + side)),
                       dtype=np.float64) / 255 for c in range(n)]
        captions.append(", ".join(f"{v:.1f}" for v in row["final_logits"]))
    return rows, captions


def curves(series: Mapping[str, Sequence[float] | torch.Tensor], xlabel: str = "step",
           ylabel: str = "", title: str | None = None, ax=None, hline: float | None = None):
    """Line plot of several series (label -> values over x = 0, 1, 2, ...)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in series.items():
        ax.plot(torch.as_tensor(values).cpu().numpy(), label=label)
    if hline is not None:
        ax.axhline(hline, color="gray", ls=":", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def sweep_plot(x: Sequence[float], series: Mapping[str, torch.Tensor], xlabel: str = "slope",
               ylabel: str = "", title: str | None = None, ax=None, logx: bool = False,
               hline: float | None = None):
    """Mean ± std over repeats: ``series[label]`` has shape (len(x), repeats)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    for k, (label, values) in enumerate(series.items()):
        values = torch.as_tensor(values, dtype=torch.float64).reshape(len(x), -1)
        std = values.std(dim=1) if values.shape[1] > 1 else torch.zeros(len(x), dtype=torch.float64)
        ax.errorbar(list(x), values.mean(dim=1).numpy(), yerr=std.numpy(), capsize=3, label=label,
                    **LINE_STYLES[k % len(LINE_STYLES)])
    if hline is not None:
        ax.axhline(hline, color="gray", ls=":", lw=1)
    if logx:
        ax.set_xscale("symlog", linthresh=min(v for v in x if v > 0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 4:  # many curves: keep the legend off the data
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def gradient_norm_plot(slopes: Sequence[float], norms: torch.Tensor, ax=None):
    """The proxy gradient's norm against the backward slope, log-log, with the two float32 limits
    it crosses: its sum of squares overflows above sqrt(max) (about 1.8e19), the values themselves
    above max (about 3.4e38). ``slopes[0]`` must be 0 (the model's own gradient, a dotted line)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 3.6))
    norms = torch.as_tensor(norms, dtype=torch.float64).reshape(len(slopes), -1)
    ax.loglog(list(slopes[1:]), norms[1:].mean(dim=1).numpy(), "o-", label="ProxyGrad, |g| in float64")
    ax.axhline(norms[0].mean().item(), color="gray", ls=":", label="ReLU's own gradient (slope 0)")
    top = torch.finfo(torch.float32).max
    ax.axhline(top ** 0.5, color="tab:orange", ls="--", lw=1, label="float32: |g|² overflows above this")
    ax.axhline(top, color="tab:red", ls="--", lw=1, label="float32: the largest number")
    ax.set(xlabel="backward slope a_b", ylabel="norm of the input gradient")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return ax.figure


def toy_runs_figure(results: Mapping[str, "object"], title: str | None = None):
    """Table 1's rows for several toy AM runs (label -> ToyResult): the images at the kept steps,
    then one panel with every run's fraction of the optimum over the steps."""
    rows = {label: list(r.images.values()) for label, r in results.items()}
    first = next(iter(results.values()))
    fig = image_grid(rows, [f"step {k}" for k in first.images], title=title, extra_col=True)
    n_cols = len(fig.axes) // len(rows)
    for ax in fig.axes[n_cols - 1::n_cols]:
        ax.remove()
    ax = fig.add_subplot(1, n_cols, n_cols)
    curves({label: r.values / r.optimum for label, r in results.items()}, ylabel="fraction of optimum",
           ax=ax, hline=1.0)
    ax.set_ylim(min(0.0, min(float(r.values.min() / r.optimum) for r in results.values())), 1.05)
    fig.tight_layout()
    return fig


def g_figure(a: float, b: float, ax=None):
    """Figure 1: g(x) = LReLU_a(x) + b·LReLU_a(−x) on [-1, 1], with its two maxima marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    x = torch.linspace(-1, 1, 201)
    ax.plot(x.numpy(), g_formula(x, a, b).numpy(), label=f"g, a={a:g}, b={b:g}")
    for end in (-1.0, 1.0):
        value = g_formula(torch.tensor(end), a, b).item()
        ax.plot([end], [value], "o", color="C3" if end < 0 else "C2")
        ax.annotate(f"{'local' if end < 0 else 'global'} max {value:.2f}", (end, value),
                    textcoords="offset points", xytext=(-30 if end > 0 else 5, 8), fontsize=8)
    ax.set_xlabel("pixel value x")
    ax.set_ylabel("g(x)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax.figure


def activation_figure(specs: Sequence[str], x_range: float = 2.0):
    """Forward value and backward derivative of each activation spec on [-x_range, x_range],
    computed by autograd through the real modules (so ProxyGrad's two faces show)."""
    fig, (ax_f, ax_b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, spec in enumerate(specs):
        spec = parse_activation(spec)
        x = torch.linspace(-x_range, x_range, 401, requires_grad=True)
        y = spec.module()(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        style = dict(label=spec.label, markevery=(8 * k, 50), **LINE_STYLES[k % len(LINE_STYLES)])  # coinciding curves stay visible
        ax_f.plot(x.detach().numpy(), y.detach().numpy(), **style)
        ax_b.plot(x.detach().numpy(), grad.numpy(), **style)
    ax_f.set_title("forward: y(x)")
    ax_b.set_title("backward: the derivative used")
    for ax in (ax_f, ax_b):
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lrelu_density_figure(slope: float, ax=None):
    """Density of LReLU_a(X), X ~ N(0, 1), with its mean and ± one std marked (closed forms)."""
    from .gaussian import closed_form, lrelu_density

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    y = torch.linspace(-3.5, 3.5, 701)
    ax.plot(y.numpy(), lrelu_density(y, slope).numpy(), label=f"density of LReLU_{slope:g}(X)")
    if slope == 0:
        ax.annotate("point mass 1/2 at 0", (0, 0.4), fontsize=8)
    m = closed_form(slope)
    std = m["var"] ** 0.5
    ax.axvline(m["mean"], color="C3", label=f"mean {m['mean']:.3f}")
    ax.axvspan(m["mean"] - std, m["mean"] + std, color="C3", alpha=0.12, label=f"± std {std:.3f}")
    ax.set_xlabel("y")
    ax.set_ylim(0, 1.0)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return ax.figure


def save_png(img: torch.Tensor, path) -> None:
    """Save one image in [-1, 1] (C, H, W) as a PNG."""
    from torchvision.utils import save_image

    save_image((img.detach().float().cpu().clamp(-1, 1) + 1) / 2, str(path))


def save_grid(images: torch.Tensor, path, nrow: int = 8) -> None:
    """Save a batch of images in [-1, 1] as one PNG grid."""
    from torchvision.utils import save_image

    save_image((images.detach().float().cpu().clamp(-1, 1) + 1) / 2, str(path), nrow=nrow, padding=2,
               pad_value=1.0)
