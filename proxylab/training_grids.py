"""The training grids (Table 4) and the tables made from training runs.

- ``table4``        classification training on Fashion-MNIST (the one dataset offline): 2 nets x 7
                    activations x 3 seeds at a CPU budget;
- ``table4-paper``  the paper's protocol (Caltech101, CUB-200, Flowers102; 300 epochs; 5 seeds): for
                    users with the data and a GPU.

Table 4 itself (:func:`table4`, one table per protocol with :func:`collect` and :func:`tables`, the
paper's numbers beside) is made from finished runs, the grid's job folders or ``train --out`` ones.
A training job's parameters are a :class:`proxylab.train.TrainConfig`'s protocol, its spec under
the config's field name ``activation``.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .proxygrad import parse_activation
from .report import paired
from .train import TrainConfig, train

# Paper, Table 4: mean test accuracy (%) ± std over 5 seeds.
PAPER_TABLE4 = {
    ("caltech101", "resnet18"): [56.0, 0.6, 59.3, 1.7, 59.5, 1.5, 62.9, 0.8, 58.3, 1.4, 59.3, 1.6, 62.2, 0.8],
    ("caltech101", "pfnet18"): [63.9, 0.7, 63.5, 1.0, 63.7, 0.7, 64.6, 1.0, 63.7, 1.4, 63.4, 0.9, 63.5, 0.7],
    ("cub200", "resnet18"): [58.8, 0.5, 58.9, 0.4, 58.8, 0.3, 56.6, 0.3, 59.6, 0.3, 61.2, 0.4, 61.2, 0.6],
    ("cub200", "pfnet18"): [53.2, 0.3, 53.3, 0.4, 53.3, 0.2, 52.7, 0.4, 53.3, 0.3, 53.2, 0.5, 53.4, 0.3],
    ("flowers102", "resnet18"): [74.0, 0.3, 74.1, 0.2, 74.7, 0.5, 75.3, 0.4, 74.3, 0.6, 75.7, 0.4, 76.1, 0.3],
    ("flowers102", "pfnet18"): [80.8, 0.2, 80.9, 0.4, 80.8, 0.5, 80.7, 0.5, 81.0, 0.4, 80.9, 0.4, 81.0, 0.4],
}
# the paper's columns, and the activations of the grids
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
    mean ± std over seeds (n = number of seeds), the best mean of each row in bold where every cell of
    the row has several seeds (one run per cell has no spread to tell a best from noise)."""
    if not results:
        return "no finished runs found (each run writes metrics.json when it completes)"
    columns = [c for c in TABLE4_COLUMNS if any(k[2] == c for k in results)]
    columns += sorted({k[2] for k in results} - set(columns))
    rows = sorted({(k[0], k[1]) for k in results})
    header = "| dataset | net | " + " | ".join(parse_activation(c).label for c in columns) + " |"
    lines = [header, "|---|---|" + "---|" * len(columns)]
    for dataset, arch in rows:
        means = {c: statistics.mean(results[(dataset, arch, c)]) for c in columns if (dataset, arch, c) in results}
        best = max(means.values()) if all(len(results[(dataset, arch, c)]) > 1 for c in means) else None
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
    lines = ["| dataset | net | " + " | ".join(parse_activation(c).label for c in TABLE4_COLUMNS) + " |",
             "|---|---|" + "---|" * len(TABLE4_COLUMNS)]
    for (dataset, arch), row in PAPER_TABLE4.items():
        means = row[0::2]
        cells = [f"{m:.1f}±{s:.1f}" for m, s in zip(row[0::2], row[1::2])]
        cells = [f"**{c}**" if m == max(means) else c for c, m in zip(cells, means)]
        lines.append(f"| {dataset} | {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the grids
# Table 4's CPU budget: 42 jobs in about 85 minutes on 2 cores (two Ray workers of 1 thread; a ResNet18
# job takes ~5.5 min, a PFNet18 job ~2.6, data loading included: measured 2026-11-30).
TABLE4_BUDGET = {"epochs": 8, "subset": 4000}
# Its quick mode (notebook 07's live run): the same recipe on ResNet18, 3 activations, 1 seed; 2 epochs on
# 1,024 images train to 62 % (ReLU) and 67 % (Leaky 0.1) in about half the time of 2,048 images, which
# reach 74-75 % (measured 2026-12-02 on one CPU thread); 512 images stay at chance.
TABLE4_QUICK = {"epochs": 2, "subset": 1024}
SETTING_FIELDS = ("epochs", "subset", "image_size", "batch_size", "lr", "weight_decay", "clip_grad_norm",
                  "lr_milestones", "lr_gamma")


def train_setting(quick: bool, budget: dict = TABLE4_BUDGET, quick_budget: dict | None = None) -> dict:
    """Training on Fashion-MNIST at a CPU budget (the paper's recipe otherwise; see proxylab.train)."""
    base = TrainConfig().protocol()
    base.update({"dataset": "fashion-mnist", "image_size": 32})
    base.update((quick_budget or {"epochs": 2, "subset": 512}) if quick else budget)
    return base


def table4_jobs(quick: bool) -> list[dict]:
    seeds = [0] if quick else [0, 1, 2]
    activations = ["relu", "proxygrad:0.1", "leaky:0.1"] if quick else TABLE4_COLUMNS
    archs = ["resnet18"] if quick else ["resnet18", "pfnet18"]
    return [{**train_setting(quick, quick_budget=TABLE4_QUICK), "arch": arch, "activation": act, "seed": seed}
            for arch in archs for act in activations for seed in seeds]


def table4_paper_jobs(quick: bool) -> list[dict]:
    base = TrainConfig().protocol()
    return [{**base, "dataset": d, "arch": arch, "activation": act, "seed": seed}
            for d in ("caltech101", "cub200", "flowers102") for arch in ("resnet18", "pfnet18")
            for act in TABLE4_COLUMNS for seed in range(5)]


def config(params: dict, workdir: Path) -> TrainConfig:
    """The run of a training job's parameters (a :meth:`proxylab.train.TrainConfig.protocol`, as JSON keeps it) in ``workdir``."""
    return TrainConfig(**{**params, "lr_milestones": tuple(params["lr_milestones"]), "out": str(workdir)})


def run_train(params: dict, workdir: Path) -> dict:
    """One training run in ``workdir`` (checkpoint there; an interrupted job resumes)."""
    metrics = train(config(params, workdir), resume=True, progress=False)
    return {k: metrics[k] for k in ("test_accuracy", "test_loss", "train_loss", "epochs", "seconds_this_run", "history")}


def table4_merge_for(name: str):
    def merge(finished, folder: Path, quick: bool, needed: dict) -> dict:
        results: dict = {}
        for params, result in finished:
            results.setdefault((params["dataset"], params["arch"], params["activation"]), []).append(result["test_accuracy"])
        setting = table4_jobs(quick)[0] if name == "table4" else table4_paper_jobs(False)[0]
        return {"experiment": name, "quick": quick,
                "markdown": table4(results, paper=True) if results else "no finished runs yet",
                "vs_relu": _paired_vs_relu(finished), "setting": {k: setting[k] for k in SETTING_FIELDS},
                "accuracies": {"/".join(k): v for k, v in results.items()}}
    return merge


def _paired_vs_relu(finished) -> dict:
    """Per (dataset/arch/activation): the test accuracy minus ReLU's of the same seed (same data
    order and initial weights), mean ± standard error over seeds, and how many seeds are ahead
    (:func:`proxylab.report.paired`, rounded for the JSON)."""
    acc = {(p["dataset"], p["arch"], p["activation"], p["seed"]): r["test_accuracy"] for p, r in finished}
    pairs: dict = {}
    for (d, arch, act, seed), value in acc.items():
        relu = acc.get((d, arch, "relu", seed))
        if act != "relu" and relu is not None:
            values, base = pairs.setdefault(f"{d}/{arch}/{act}", ([], []))
            values.append(value)
            base.append(relu)
    out = {}
    for key, (values, base) in sorted(pairs.items()):
        p = paired(values, base)
        out[key] = {"mean": round(p["mean"], 3), "se": None if p["se"] is None else round(p["se"], 3),
                    "ahead": p["ahead"], "seeds": p["n"]}
    return out
