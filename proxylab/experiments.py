"""The paper's experiments, one registry of the grids of :mod:`proxylab.runner`: the AM grids
(:mod:`proxylab.am_grids`: ``figure2``, ``table3``, ``figure3``, ``diagnostic``, ``transfer``,
``certify``), the statistics grids (:mod:`proxylab.stats_grids`: ``table5``, ``figure4``) and the
training grids (:mod:`proxylab.training_grids`: ``table4``, ``table4-paper``). Each entry names its
jobs, the function that runs one, its merge (data only), the figures drawn from the merged data
(:mod:`proxylab.result_figures`), the experiments whose results it needs, and its protocol.
"""
from __future__ import annotations

import difflib

from . import regularizers
from .am_grids import (certify_jobs, certify_merge, diagnostic_jobs, diagnostic_merge, figure2_jobs, figure2_merge,
                       figure3_jobs, images_merge, run_am, run_certify, run_diagnostic, run_transfer, table3_jobs,
                       transfer_jobs, transfer_merge)
from .config import quick_mode
from .result_figures import FIGURES
from .runner import Experiment, RunnerError
from .stats_grids import figure4_jobs, figure4_merge, run_figure4, run_table5, table5_jobs, table5_merge
from .training_grids import TABLE4_BUDGET, run_train, table4_jobs, table4_merge_for, table4_paper_jobs


def _plain_protocol(jobs, version=1):
    return lambda quick: {"quick": quick, "jobs": jobs(quick), "version": version}


def _am_protocol(jobs, version=1):  # an AM grid's results depend on the regularizers' parameters too
    return lambda quick: {**_plain_protocol(jobs, version)(quick), "regularization": repr(regularizers.paper_regularization(0))}


def _experiment(name: str, *args, **kwargs) -> Experiment:
    return Experiment(name, *args, figures=FIGURES.get(name, {}), **kwargs)


REGISTRY = {
    "figure2": _experiment("figure2", "AM of the 8 paper classes, EfficientNet-Lite0 224 px, 500 steps, ProxyGrad/Leaky "
                          "slopes 0-0.3, without and with regularization (26 jobs)",
                          figure2_jobs, run_am, figure2_merge, _am_protocol(figure2_jobs), lambda q: 1 if q else 240),
    "table3": _experiment("table3", "images of the 8 paper classes: ReLU, Leaky ReLU, ProxyGrad at the chosen slopes, "
                         "regularized, 500 steps (3 jobs)",
                         table3_jobs, run_am, images_merge, _am_protocol(table3_jobs),
                         lambda q: 1 if q else 240),
    "figure3": _experiment("figure3", "ProxyGrad and Leaky ReLU at high slopes 1, 3, 10 on poncho, regularized, 500 steps "
                          "(6 jobs)",
                          figure3_jobs, run_am, images_merge, _am_protocol(figure3_jobs, version=2),
                          lambda q: 1 if q else 150),
    "table5": _experiment("table5", "gradient size at layer1[0].conv1 of random ResNet18s, Leaky/ProxyGrad slopes "
                         "0-0.2, with and without BN, 50 repeats, Fashion-MNIST 224 px batches of 64 (700 jobs)",
                         table5_jobs, run_table5, table5_merge, _plain_protocol(table5_jobs), lambda q: 0.3 if q else 4),
    "figure4": _experiment("figure4", "per-channel batch std (what BN divides by) and whole-tensor std of BatchNorm "
                          "inputs of random ResNet18s over slopes 0-1, 10 repeats, "
                          "Fashion-MNIST 224 px batches of 64 (130 jobs)",
                          figure4_jobs, run_figure4, figure4_merge, _plain_protocol(figure4_jobs, version=2),
                          lambda q: 0.2 if q else 5),
    "table4": _experiment("table4", f"training on Fashion-MNIST ({TABLE4_BUDGET['subset']:,} training and test images, 32 px, "
                         f"{TABLE4_BUDGET['epochs']} epochs): ResNet18 and PFNet18 x 7 activations x 3 seeds (42 jobs)",
                         table4_jobs, run_train, table4_merge_for("table4"), _plain_protocol(table4_jobs),
                         lambda q: 30 if q else 121),  # wall per job with two jobs at once (--engine ray)
    "diagnostic": _experiment("diagnostic", "the slope diagnostic per class against the measured best slope: "
                             "EfficientNet-Lite0 on Figure 2's grid (run figure2 first) and a Fashion-MNIST ResNet18 "
                             "(Table 4's recipe, 10,000 images, 10 epochs) on its own 500-step grid (2 jobs)",
                             diagnostic_jobs, run_diagnostic, diagnostic_merge, _plain_protocol(diagnostic_jobs),
                             lambda q: 2 if q else 600, needs=("figure2",)),
    "transfer": _experiment("transfer", "AM on EfficientNet-Lite0/1/2 (8 paper classes, native sizes, 500 steps, "
                           "regularized) with 7 rules, images at 10 and 500 steps judged by the other two models (21 jobs)",
                           transfer_jobs, run_transfer, transfer_merge, _am_protocol(transfer_jobs),
                           lambda q: 2 if q else 450),
    "certify": _experiment("certify", "certified maxima of small ReLU MLPs on 14x14 Fashion-MNIST (MILP) and every AM "
                          "rule's optimality gap against them, 10 starts, 300 steps + 200 polishing; scaling of the "
                          "certificate with network size (38 jobs)",
                          certify_jobs, run_certify, certify_merge, _plain_protocol(certify_jobs), lambda q: 3 if q else 60),
    "table4-paper": _experiment("table4-paper", "the paper's Table 4: Caltech101, CUB-200, Flowers102 x ResNet18, PFNet18 x "
                               "7 activations x 5 seeds, 300 epochs (210 jobs; needs the data and a GPU)",
                               table4_paper_jobs, run_train, table4_merge_for("table4-paper"),
                               _plain_protocol(table4_paper_jobs), lambda q: 3600 * 3),
}


def names() -> list[str]:
    """The experiments' names, in the order ``--list`` shows them."""
    return list(REGISTRY)


def get(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name is a clear error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), names(), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise RunnerError(f"unknown experiment {name!r}{hint}; choose one of {', '.join(names())}, "
                          "or list them with: python -m proxylab reproduce --list") from None


def listing(quick: bool | None = None) -> str:
    """Every experiment with its protocol and an estimate of its cost on a 2-core CPU."""
    quick = quick_mode() if quick is None else quick
    lines = []
    for exp in REGISTRY.values():
        n = len(exp.jobs(quick))
        seconds = n * exp.seconds_per_job(quick)
        cost = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
        lines.append(f"{exp.name:<13} {n:>4} jobs  ~{cost:>7} on a 2-core CPU{' (quick)' if quick else ''}\n    {exp.summary}")
    return "\n".join(lines)


__all__ = ["REGISTRY", "get", "listing", "names"]
