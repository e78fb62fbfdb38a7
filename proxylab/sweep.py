"""Table 4 from finished training runs, per protocol, with the paper's numbers beside it.
The grid of runs itself is the experiment runner's (``python -m proxylab reproduce table4-paper``)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .proxygrad import parse_activation

# Paper, Table 4: mean test accuracy (%) ± std over 5 seeds.
PAPER_TABLE4 = {
    ("caltech101", "resnet18"): [56.0, 0.6, 59.3, 1.7, 59.5, 1.5, 62.9, 0.8, 58.3, 1.4, 59.3, 1.6, 62.2, 0.8],
    ("caltech101", "pfnet18"): [63.9, 0.7, 63.5, 1.0, 63.7, 0.7, 64.6, 1.0, 63.7, 1.4, 63.4, 0.9, 63.5, 0.7],
    ("cub200", "resnet18"): [58.8, 0.5, 58.9, 0.4, 58.8, 0.3, 56.6, 0.3, 59.6, 0.3, 61.2, 0.4, 61.2, 0.6],
    ("cub200", "pfnet18"): [53.2, 0.3, 53.3, 0.4, 53.3, 0.2, 52.7, 0.4, 53.3, 0.3, 53.2, 0.5, 53.4, 0.3],
    ("flowers102", "resnet18"): [74.0, 0.3, 74.1, 0.2, 74.7, 0.5, 75.3, 0.4, 74.3, 0.6, 75.7, 0.4, 76.1, 0.3],
    ("flowers102", "pfnet18"): [80.8, 0.2, 80.9, 0.4, 80.8, 0.5, 80.7, 0.5, 81.0, 0.4, 80.9, 0.4, 81.0, 0.4],
}
TABLE4_COLUMNS = ["relu", "proxygrad:0.01", "proxygrad:0.1", "proxygrad:0.2", "leaky:0.01", "leaky:0.1", "leaky:0.2"]


def paper_value(dataset: str, arch: str, activation: str) -> tuple[float, float] | None:
    row = PAPER_TABLE4.get((dataset, arch))
    if row is None or activation not in TABLE4_COLUMNS:
        return None
    i = TABLE4_COLUMNS.index(activation)
    return row[2 * i], row[2 * i + 1]


def collect(runs_dir) -> dict[str, dict[tuple[str, str, str], list[float]]]:
    """The finished runs under ``runs_dir`` (every ``metrics.json``, from ``train --out`` or a
    ``reproduce table4*`` folder), grouped by protocol: runs are pooled only when everything but
    dataset, net, activation and seed is the same, and each seed counts once.

    Returns:
        protocol description -> (dataset, arch, activation) -> test accuracies, one per seed.
    """
    groups: dict[str, dict[tuple[str, str, str], dict[int, float]]] = {}
    for path in sorted(Path(runs_dir).rglob("metrics.json")):
        try:
            m = json.loads(path.read_text())
            protocol = dict(m["protocol"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # not a finished run of this version
        if len(m.get("history", [])) != protocol.get("epochs"):
            continue
        cell = (protocol.pop("dataset"), protocol.pop("arch"), protocol.pop("activation"))
        seed = protocol.pop("seed")
        key = describe(protocol)
        groups.setdefault(key, {}).setdefault(cell, {})[seed] = m["test_accuracy"]
    return {k: {cell: [seeds[s] for s in sorted(seeds)] for cell, seeds in v.items()} for k, v in groups.items()}


def describe(protocol: dict) -> str:
    """A one-line description of a training protocol (without dataset, net, activation, seed)."""
    keys = ["epochs", "subset", "image_size", "batch_size", "lr", "weight_decay", "decay_norm_and_bias",
            "clip_grad_norm", "lr_milestones", "lr_gamma"]
    parts = [f"{k}={protocol[k]}" for k in keys if k in protocol]
    parts += [f"{k}={v}" for k, v in sorted(protocol.items()) if k not in keys and k != "sync_bn"]
    return ", ".join(parts)


def tables(groups: dict[str, dict], paper: bool = False) -> str:
    """One Table 4 per protocol found, each headed by its protocol."""
    if not groups:
        return "no finished runs found (each run writes metrics.json when it completes)"
    return "\n\n".join(f"protocol: {key}\n\n{table4(results, paper)}" for key, results in groups.items())


def table4(results: dict[tuple[str, str, str], list[float]], paper: bool = False) -> str:
    """Markdown in Table 4's layout: a row per (dataset, net), a column per activation;
    mean ± std over seeds (n = number of seeds), the best mean of each row in bold."""
    if not results:
        return "no finished runs found (each run writes metrics.json when it completes)"
    columns = [c for c in TABLE4_COLUMNS if any(k[2] == c for k in results)]
    columns += sorted({k[2] for k in results} - set(columns))
    rows = sorted({(k[0], k[1]) for k in results})
    header = "| dataset | net | " + " | ".join(_label(c) for c in columns) + " |"
    lines = [header, "|---|---|" + "---|" * len(columns)]
    for dataset, arch in rows:
        means = {c: statistics.mean(results[(dataset, arch, c)]) for c in columns if (dataset, arch, c) in results}
        best = max(means.values())
        cells = []
        for c in columns:
            values = results.get((dataset, arch, c))
            if not values:
                cells.append("–")
                continue
            if len(values) > 1:
                cell = f"{means[c]:.1f}±{statistics.stdev(values):.1f} (n={len(values)})"
            else:  # one seed has no spread: none is printed
                cell = f"{means[c]:.1f} (n=1)"
            cell = f"**{cell}**" if means[c] == best else cell
            ref = paper_value(dataset, arch, c) if paper else None
            cells.append(cell + (f"<br>paper {ref[0]:.1f}±{ref[1]:.1f}" if ref else ""))
        lines.append(f"| {dataset} | {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table4() -> str:
    """The paper's Table 4 as markdown, best of each row in bold."""
    lines = ["| dataset | net | " + " | ".join(_label(c) for c in TABLE4_COLUMNS) + " |",
             "|---|---|" + "---|" * len(TABLE4_COLUMNS)]
    for (dataset, arch), row in PAPER_TABLE4.items():
        means = row[0::2]
        cells = [f"{m:.1f}±{s:.1f}" for m, s in zip(row[0::2], row[1::2])]
        cells = [f"**{c}**" if m == max(means) else c for c, m in zip(cells, means)]
        lines.append(f"| {dataset} | {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(spec: str) -> str:
    return parse_activation(spec).label
