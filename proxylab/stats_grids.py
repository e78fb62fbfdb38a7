"""The statistics grids: random ResNet18s over slopes, on Fashion-MNIST batches.

- ``table5``   gradient size after the first block's first conv, with and without BatchNorm, 50 repeats;
- ``figure4``  std of the BatchNorm inputs over Leaky slopes 0..1, 10 repeats.

Each merge returns the figure's data only; :mod:`proxylab.result_figures` draws it.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from . import data
from .proxygrad import KIND_LABELS, ActivationSpec, parse_activation
from .resnet_stats import bn_input_stats, first_block_gradient, predicted_std_growth, table5

TABLE5_SLOPES = [0.0, 0.01, 0.1, 0.2]
FIGURE4_SLOPES, FIGURE4_QUICK_SLOPES = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0], [0.0, 0.5, 1.0]
FIGURE4_MEASURES = {"per_channel": ("bn_input_channel_std", "per-channel batch std σ_B"),
                    "whole": ("bn_input_std", "whole-tensor std")}


def _stats_setting(quick: bool) -> dict:
    return {"dataset": "fashion-mnist", "size": 64 if quick else 224, "batch": 32 if quick else 64}


@functools.lru_cache(maxsize=4)
def _batch(dataset: str, batch: int, size: int, seed: int):
    images, labels, name = data.sample_batch(batch, size, seed=seed, dataset=dataset)
    return images, labels


def table5_jobs(quick: bool) -> list[dict]:
    """Seeds outermost: a grid stopped part-way holds whole repeats of every cell."""
    return [{**_stats_setting(quick), "spec": str(ActivationSpec.at_slope(kind, s)), "batchnorm": bn, "seed": seed}
            for seed in (range(2) if quick else range(50)) for bn in (False, True) for kind in ("leaky", "proxygrad")
            for s in TABLE5_SLOPES if not (s == 0 and kind == "proxygrad")]


def run_table5(params: dict, workdir: Path) -> dict:
    images, labels = _batch(params["dataset"], params["batch"], params["size"], params["seed"])
    return {"gradient": first_block_gradient(parse_activation(params["spec"]), images, labels, params["seed"],
                                             batchnorm=params["batchnorm"], num_classes=10)}


def by_kind(finished, value, slopes, extra_key=None) -> dict:
    """(params[extra_key], kind label) -> tensor (slopes, seeds) of ``value(result)`` from the finished
    ``(params, result)``, params holding ``spec`` and ``seed``; ReLU joins both kinds, a kind missing a slope is left out."""
    table: dict = {}
    for params, result in finished:
        spec = parse_activation(params["spec"])
        extra = params.get(extra_key) if extra_key else None
        for k in (["leaky", "proxygrad"] if spec.kind == "relu" else [spec.kind]):
            table.setdefault((extra, KIND_LABELS[k]), {}).setdefault(spec.slope, {})[params["seed"]] = value(result)
    out = {}
    for key, per_slope in table.items():
        if set(per_slope) != set(slopes):
            continue
        seeds = sorted(set.intersection(*(set(v) for v in per_slope.values())))
        out[key] = torch.tensor([[per_slope[s][seed] for seed in seeds] for s in slopes], dtype=torch.float64)
    return out


def table5_merge(finished, folder: Path, quick: bool, needed: dict) -> dict:
    values = by_kind(finished, lambda r: r["gradient"], TABLE5_SLOPES, "batchnorm")
    results = {bn: {label: v for (b, label), v in values.items() if b == bn} for bn in (False, True)}
    results = {bn: kinds for bn, kinds in results.items() if kinds}
    return {"experiment": "table5", "quick": quick, "slopes": TABLE5_SLOPES,
            "markdown": table5(results, TABLE5_SLOPES, columns=TABLE5_SLOPES[1:]) if results else "",
            "values": {f"{'with' if bn else 'without'} BN/{label}": v.tolist()
                       for bn, kinds in results.items() for label, v in kinds.items()}}


def figure4_jobs(quick: bool) -> list[dict]:
    return [{**_stats_setting(quick), "spec": str(ActivationSpec.at_slope(kind, s)), "seed": seed}
            for kind in ("leaky", "proxygrad") for s in (FIGURE4_QUICK_SLOPES if quick else FIGURE4_SLOPES)
            if not (s == 0 and kind == "proxygrad")
            for seed in (range(2) if quick else range(10))]


def run_figure4(params: dict, workdir: Path) -> dict:
    images, labels = _batch(params["dataset"], params["batch"], params["size"], params["seed"])
    stats = bn_input_stats(parse_activation(params["spec"]), images, labels, params["seed"])
    return {"bn_input_channel_std": [round(v, 6) for v in stats["per_channel"].tolist()],
            "bn_input_std": [round(v, 6) for v in stats["whole"].tolist()]}


def figure4_merge(finished, folder: Path, quick: bool, needed: dict) -> dict:
    slopes = FIGURE4_QUICK_SLOPES if quick else FIGURE4_SLOPES
    values, growth = {}, {}
    for measure, (field, _) in FIGURE4_MEASURES.items():
        by = by_kind(finished, lambda r: sum(r[field]) / len(r[field]), slopes)
        values[measure] = {label: v for (_, label), v in by.items()}
        leaky = values[measure].get("Leaky ReLU")
        if leaky is not None:  # each network's std over its own ReLU network's (the same seed)
            growth[measure] = (leaky / leaky[0]).mean(dim=1).tolist()
    return {"experiment": "figure4", "quick": quick, "slopes": slopes,
            "values": {m: {label: v.tolist() for label, v in series.items()} for m, series in values.items()},
            "leaky_growth": {m: [round(x, 4) for x in g] for m, g in growth.items()},
            "predicted_growth": {k: [round(x, 4) for x in v] for k, v in predicted_std_growth(slopes).items()}}
