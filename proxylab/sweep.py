"""The Table 4 grid: commands for every (dataset, net, activation, seed), and the table from the
finished runs, with the paper's numbers beside it."""
from __future__ import annotations

import json
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from .proxygrad import parse_activation
from .train import finished

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


@dataclass
class Run:
    dataset: str
    arch: str
    activation: str
    seed: int
    out: Path
    command: list[str]
    done: bool


def run_dir(runs_dir, dataset, arch, activation, seed) -> Path:
    return Path(runs_dir) / dataset / arch / activation.replace(":", "_") / f"seed{seed}"


def grid(datasets, archs, activations, seeds, epochs: int, runs_dir="runs", extra: str = "") -> list[Run]:
    """Every run of the grid with its ``python -m proxylab train`` command (always ``--resume``,
    so an interrupted run continues) and whether it already finished."""
    runs = []
    for dataset in datasets:
        for arch in archs:
            for activation in activations:
                activation = str(parse_activation(activation))
                for seed in seeds:
                    out = run_dir(runs_dir, dataset, arch, activation, seed)
                    cmd = [sys.executable, "-m", "proxylab", "train", "--dataset", dataset, "--arch", arch,
                           "--activation", activation, "--seed", str(seed), "--epochs", str(epochs),
                           "--out", str(out), "--resume", *shlex.split(extra)]
                    runs.append(Run(dataset, arch, activation, seed, out, cmd, finished(out, epochs) is not None))
    return runs


def collect(runs_dir) -> dict[tuple[str, str, str], list[float]]:
    """(dataset, arch, activation) -> test accuracies of the finished runs under ``runs_dir``."""
    results: dict[tuple[str, str, str], list[float]] = {}
    for path in sorted(Path(runs_dir).rglob("metrics.json")):
        m = json.loads(path.read_text())
        if m.get("epochs") == m.get("config", {}).get("epochs", m.get("epochs")):
            results.setdefault((m["dataset"], m["arch"], m["activation"]), []).append(m["test_accuracy"])
    return results


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
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cell = f"{means[c]:.1f}±{std:.1f} (n={len(values)})"
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
