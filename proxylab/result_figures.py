"""The shipped results' figures, drawn from their merged data alone (``results/NAME/NAME.json``),
so a notebook can redraw any of them: ``result_figures.FIGURES[name][file](merged, folder)``, each
a matplotlib figure (None when there is nothing to draw yet) or, for a ``.md`` file, its text.
``folder`` is the experiment's folder, read only for the images an image grid shows.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from . import models, plotting
from .am_grids import FIG2_SLOPES, TRANSFER_RULES
from .proxygrad import KIND_LABELS, ActivationSpec, parse_activation
from .report import transfer_steps
from .stats_grids import FIGURE4_MEASURES, TABLE5_SLOPES, by_kind
from .training_grids import table4_jobs


def _job(merged: dict) -> dict:
    """The parameters of the experiment's first job, from the protocol its provenance records."""
    return merged["provenance"]["protocol"]["jobs"][0]


def figure2(merged: dict, folder: Path | None = None):
    """Figure 2: the mean score over classes against the slope, ± SE, per regularization and step."""
    runs, summary, steps = merged["runs"], merged["summary"], _job(merged)["steps"]
    at = [s for s in (10, steps) if s <= steps]
    fig, axes = plt.subplots(len(runs) or 1, len(at), figsize=(5 * len(at), 3.4 * max(1, len(runs))), squeeze=False)
    for r, (reg, kinds) in enumerate(sorted(runs.items())):
        for c, step in enumerate(at):
            ax = axes[r, c]
            for kind in kinds:
                s = summary.get(f"{reg}/{kind}/step{step}")
                if s:
                    ax.errorbar(s["slopes"], s["mean"], yerr=s["se"], marker="o", capsize=3, label=KIND_LABELS[kind])
            relu = [e for e in next(iter(kinds.values())) if e["slope"] == 0 and str(step) in e["per_class"]]
            if relu:
                scores = relu[0]["per_class"][str(step)]
                ax.axhline(sum(scores) / len(scores), color="gray", ls=":", lw=1, label="ReLU baseline")
            ax.set(xlabel="slope (0 = ReLU)", ylabel="mean logit" if merged["quick"] else "mean logit of the 8 classes",
                   title=f"{'with' if reg == 'paper' else 'without'} regularization, after {step} steps")
            ax.set_xscale("symlog", linthresh=0.01)
            ax.set_xlim(-0.002, max(FIG2_SLOPES) * 1.2)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Figure 2 on EfficientNet-Lite0: mean ± SE over classes", fontsize=10)
    fig.tight_layout()
    return fig


def figure2_curves(merged: dict, folder: Path | None = None):
    """The curves over the steps: ReLU and each kind at its best final slope, from the same runs."""
    runs, steps = merged["runs"], _job(merged)["steps"]
    fig, axes = plt.subplots(1, len(runs) or 1, figsize=(5.5 * max(1, len(runs)), 3.4), squeeze=False)
    for ax, (reg, kinds) in zip(axes[0], sorted(runs.items())):
        for kind, rows in kinds.items():
            best = merged["summary"].get(f"{reg}/{kind}/step{steps}", {}).get("best_slope")
            for e in rows:
                if e["slope"] == 0 and kind == "proxygrad":
                    ax.plot(e["mean"], color="gray", label="ReLU")
                elif e["slope"] == best and best:
                    ax.plot(e["mean"], label=ActivationSpec.at_slope(kind, best).label)
        ax.set(xlabel="step", ylabel="mean logit", xscale="symlog",
               title=f"{'with' if reg == 'paper' else 'without'} regularization: best final slopes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_rows(title: str):
    """An image grid's figure (Table 3: a row per spec, a column per class; Figure 3, one class:
    its runs side by side), each image under the original network's logit."""
    def draw(merged: dict, folder: Path):
        rows = merged["rows"]
        if not rows:
            return None
        classes = [models.class_name(models.class_index(c)) for c in _job(merged)["classes"]]
        n = len(classes)
        across = n == 1
        shape = (1, len(rows)) if across else (len(rows), n)
        fig, axes = plt.subplots(*shape, figsize=(2.3 * shape[1] + 0.6, 2.3 * shape[0] + 1.0), squeeze=False)
        if across:
            axes = axes.T
        tiles, _ = plotting.shipped_images(merged, folder)
        for r, (row, (label, images)) in enumerate(zip(rows, tiles.items())):
            for c in range(n):
                ax = axes[r, c]
                ax.imshow(images[c])
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(f"logit {row['final_logits'][c]:.1f}", fontsize=8)
                if across:
                    ax.set_title(label, fontsize=9)
                elif r == 0:
                    ax.set_title(classes[c], fontsize=9)
                if c == 0 and not across:
                    ax.set_ylabel(label, fontsize=9)
        fig.suptitle(f"{title}{': ' + classes[0] if across else ''}\n(the original network's logit under each image)",
                     fontsize=10)
        fig.tight_layout()
        return fig
    return draw


def table5(merged: dict, folder: Path | None = None):
    """Table 5 as a figure: the gradient size against the slope, without and with BatchNorm (mean ± std)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, bn in zip(axes, ("without", "with")):
        series = {key.split("/")[1]: torch.tensor(v) for key, v in merged["values"].items() if key.startswith(f"{bn} BN/")}
        if series:
            plotting.sweep_plot(TABLE5_SLOPES, series, ylabel="mean |dL/dz|", ax=ax,
                                title=f"Table 5 {bn} BatchNorm (mean ± std)")
    fig.tight_layout()
    return fig


def figure4(merged: dict, folder: Path | None = None):
    """Figure 4: the BatchNorm inputs' std against the slope, both measures, and Leaky ReLU's growth
    over ReLU against Appendix 11.3's closed forms."""
    slopes, values, predicted = merged["slopes"], merged["values"], merged["predicted_growth"]
    if not values["per_channel"]:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    for ax, (measure, (_, label)) in zip(axes, FIGURE4_MEASURES.items()):
        plotting.sweep_plot(slopes, {k: torch.tensor(v) for k, v in values[measure].items()}, ax=ax,
                            ylabel=f"{label} (mean over the 20 BN layers)", xlabel="slope (0 = ReLU)",
                            title=f"{label} of BN inputs\n(mean ± std over networks)")
    ax = axes[2]
    for (measure, g), style in zip(merged["leaky_growth"].items(), ("o-", "s-")):
        ax.plot(slopes, g, style, label=f"measured, {FIGURE4_MEASURES[measure][1]}")
    ax.plot(slopes, predicted["variance"], "k--", label="closed form √(Var[Y](a) / Var[Y](0))")
    ax.plot(slopes, predicted["second moment"], "k:", label="closed form √(E[Y²](a) / E[Y²](0))")
    ax.set(xlabel="Leaky slope a", ylabel="std at slope a / std at slope 0",
           title="Leaky ReLU: growth over ReLU (same network seed)\nagainst Appendix 11.3's closed forms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Figure 4: BatchNorm inputs of random ResNet18s (ProxyGrad's forward is ReLU's)", fontsize=10)
    fig.tight_layout()
    fig.subplots_adjust(top=0.8)
    return fig


def table4(merged: dict, folder: Path | None = None):
    """Test accuracy against the slope, Leaky ReLU and ProxyGrad (ReLU at slope 0), a panel per net."""
    slopes = sorted({parse_activation(p["activation"]).slope for p in table4_jobs(merged["quick"])})
    runs = [({"arch": key.split("/")[1], "spec": key.split("/")[2], "seed": i}, v)  # the i-th seed of each cell
            for key, accuracies in merged["accuracies"].items() for i, v in enumerate(accuracies)]
    values = by_kind(runs, float, slopes, "arch")
    archs = sorted({arch for arch, _ in values})
    if not archs:
        return None
    fig, axes = plt.subplots(1, len(archs), figsize=(5.5 * len(archs), 3.5), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        plotting.sweep_plot(slopes, {label: v for (a, label), v in values.items() if a == arch}, ax=ax, logx=True,
                            ylabel="test accuracy (%)", xlabel="slope (0 = ReLU)",
                            title=f"Table 4, Fashion-MNIST: {arch} (mean ± std, seeds)")
    fig.tight_layout()
    return fig


def diagnostic(merged: dict, folder: Path | None = None):
    """Per panel (model, regularization, step): each class's suggested range against its best slope."""
    panels = merged["panels"]
    if not panels:
        return None
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, (key, rec) in zip(axes.flat, panels.items()):
        for c, row in enumerate(rec["per_class"]):
            if row["suggested"]:
                ax.plot([c, c], row["suggested"], color="tab:blue", lw=5, alpha=0.4,
                        label="suggested range" if c == 0 else None)
            ax.plot(c, row["best_slope"], "o", color="tab:red", label="best slope" if c == 0 else None)
        ax.set(yscale="log", xlabel="class", ylabel="backward slope", ylim=(0.007, 1.4),
               title=f"{rec['model']}\n{'with' if rec['regularize'] == 'paper' else 'no'} reg., {rec['step']} steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def certify(merged: dict, folder: Path | None = None):
    """AM's optimality gap per rule against the certified maximum, and the certificate's solve time by network size."""
    summary, scaling = merged["summary"], merged["scaling"]
    if not summary:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    for net, rules in summary.items():
        specs = list(rules)
        axes[0].plot(range(len(specs)), [100 * rules[s]["gap_best_of_restarts"] for s in specs], "o-", label=net)
    axes[0].set_xticks(range(len(specs)), specs, rotation=45, ha="right", fontsize=8)
    axes[0].set(ylabel="optimality gap (%), best of restarts", yscale="symlog",
                title="AM against the certified maximum (mean over classes)")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    for b, style, dx in (("interval", "s", -0.12), ("lp", "o", 0.12)):  # separate architectures: markers only
        rows = [s for s in scaling if b in s]
        axes[1].plot([i + dx for i in range(len(rows))], [s[b]["seconds"] for s in rows], style, label=f"{b} bounds")
        for i, s in enumerate(rows):
            if not s[b]["optimal"]:
                axes[1].annotate(f"{b}: gap {100 * s[b]['gap']:.0f} %", (i + dx, s[b]["seconds"]), fontsize=7,
                                 xytext=(-60 if b == "interval" else 4, -12 if b == "interval" else 4),
                                 textcoords="offset points")
    axes[1].set_xticks(range(len(scaling)), ["x".join(map(str, s["widths"])) for s in scaling], rotation=45,
                       ha="right", fontsize=8)
    axes[1].set(ylabel="solve time (s)", yscale="log", title="how far certification scales (class 0, time limit)")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def transfer(merged: dict, folder: Path | None = None):
    """The judged grid after the last step: per rule, the target probability under each held-out
    judge (a bar per maker -> judge pair, mean over classes), the maker's own logit beside it."""
    table = merged["table"]
    step = str(transfer_steps(table)[0])
    rules = [r for r in TRANSFER_RULES if r in table]
    pairs = sorted({(m, j) for r in rules for m, cell in table[r].get(step, {}).items() for j in cell
                    if j in models.LITE_SIZES},
                   key=lambda mj: (list(models.LITE_SIZES).index(mj[0]), list(models.LITE_SIZES).index(mj[1])))
    if not pairs:
        return None
    short = models.short_name
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(pairs)
    for k, (m, j) in enumerate(pairs):
        xs = [i + (k - (len(pairs) - 1) / 2) * width for i in range(len(rules))]
        ax.bar(xs, [table[r].get(step, {}).get(m, {}).get(j, {}).get("probability", float("nan")) for r in rules],
               width, label=f"made on {short(m)}, judged by {short(j)}")
    ax.set_xticks(range(len(rules)), rules, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="target probability (mean over classes)", ylim=(0, 1),
           title=f"held-out judges after {step} steps (chance: 0.001)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    makers = sorted({m for m, _ in pairs}, key=list(models.LITE_SIZES).index)
    for k, m in enumerate(makers):
        xs = [i + (k - (len(makers) - 1) / 2) * 0.8 / len(makers) for i in range(len(rules))]
        ax2.bar(xs, [table[r].get(step, {}).get(m, {}).get("maker_logit", float("nan")) for r in rules],
                0.8 / len(makers), label=f"{short(m)}'s own logit")
    ax2.set_xticks(range(len(rules)), rules, rotation=30, ha="right", fontsize=8)
    ax2.set(ylabel="mean logit of the maker", title="the maker's own score")
    ax2.grid(alpha=0.3, axis="y")
    ax2.legend(fontsize=7)
    prov = merged.get("provenance", {})
    if prov.get("jobs_finished", 0) < prov.get("jobs", 0):
        fig.suptitle(f"partial grid: {prov['jobs_finished']} of {prov['jobs']} jobs", fontsize=9)
    fig.tight_layout()
    return fig


FIGURES = {
    "figure2": {"figure2.png": figure2, "figure2_curves.png": figure2_curves},
    "table3": {"table3.png": image_rows("Table 3")},
    "figure3": {"figure3.png": image_rows("Figure 3")},
    "table5": {"table5.png": table5},
    "figure4": {"figure4.png": figure4},
    "table4": {"table4.md": lambda merged, folder: merged["markdown"] + "\n", "table4.png": table4},
    "table4-paper": {"table4-paper.md": lambda merged, folder: merged["markdown"] + "\n"},
    "diagnostic": {"diagnostic.png": diagnostic},
    "certify": {"certify.png": certify},
    "transfer": {"transfer.png": transfer},
}
