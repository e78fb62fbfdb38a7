"""The activation-maximization grids (their protocols: ``python -m proxylab reproduce --list``):
``figure2``, ``table3`` and ``figure3`` on EfficientNet-Lite0 (the score of every step is kept, so
the 10-step and 500-step curves come from the same runs), ``diagnostic`` (the slope diagnostic
against Figure 2's grid), ``transfer`` (held-out ImageNet judges) and ``certify`` (certified maxima
of small ReLU MLPs). Quick mode shrinks every grid, recorded in its protocol; where the paper's
values were lost the choices are this course's. Merges return data; :mod:`proxylab.result_figures` draws it.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path

import torch

from . import am, certify, models, plotting, regularizers
from .config import device
from .proxygrad import ActivationSpec, parse_activation
from .report import paired, transfer_steps
from .runner import Folder, RunnerError
from .train import load_for_am, train
from .training_grids import config, train_setting

FIG2_SLOPES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3]
KEEP_STEPS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 300, 400, 500]  # per-class scores kept at these steps
TABLE3_SLOPES = {"leaky": 0.01, "proxygrad": 0.05}  # from Figure 2's grid (see notebook 06)
FIGURE3_SLOPES = (1, 3, 10)


@functools.lru_cache(maxsize=3)
def _imagenet(name: str):
    return models.imagenet_model(name, device=device())


def _am_setting(quick: bool) -> dict:
    return {"model": "efficientnet-lite0", "classes": models.PAPER_CLASSES[:2] if quick else models.PAPER_CLASSES,
            "steps": 3 if quick else 500, "size": 64 if quick else 224, "lr": am.DEFAULT_LR,
            "init_std": am.DEFAULT_INIT_STD, "seed": 0}


def _regularizers(name: str, seed: int) -> list:
    if name not in ("none", "paper"):
        raise RunnerError(f"unknown regularization {name!r}; choose none or paper")
    return regularizers.paper_regularization(seed) if name == "paper" else []


def _visualize(params: dict, **kwargs):
    """``(model, class indices, AMResult)`` of an AM job's parameters (the AM grids' one protocol)."""
    model = _imagenet(params["model"])
    indices = [models.class_index(c) for c in params["classes"]]
    r = am.visualize(model, indices, parse_activation(params["spec"]), steps=params["steps"], lr=params["lr"],
                     size=params["size"], seed=params["seed"], init_std=params["init_std"],
                     regularizers=_regularizers(params["regularize"], params["seed"]), progress=False, **kwargs)
    return model, indices, r


def run_am(params: dict, workdir: Path) -> dict:
    """One AM job: the batch of classes under one spec; scores per step (mean over classes) and
    per class at ``KEEP_STEPS``; with ``save_images`` the final images as ``images.png``."""
    _, indices, r = _visualize(params)
    keep = [s for s in KEEP_STEPS if s <= params["steps"]] + ([params["steps"]] if params["steps"] not in KEEP_STEPS else [])
    result = {"mean": [round(v, 4) for v in r.scores.mean(dim=1).tolist()],
              "per_class": {str(s): [round(v, 4) for v in r.scores[s].tolist()] for s in keep}}
    if params.get("save_images"):
        workdir.mkdir(parents=True, exist_ok=True)
        plotting.save_grid(r.images, workdir / "images.png", nrow=len(indices))
        result["images"] = "images.png"
    return result


def figure2_jobs(quick: bool) -> list[dict]:
    """Slope 0 is the ReLU baseline of both kinds: run once."""
    return [{**_am_setting(quick), "spec": str(ActivationSpec.at_slope(kind, s)), "regularize": reg}
            for reg in ("none", "paper") for kind in ("proxygrad", "leaky")
            for s in ([0.0, 0.05, 0.2] if quick else FIG2_SLOPES) if not (s == 0 and kind == "leaky")]


def figure2_merge(finished, folder: Folder, quick: bool, needed: dict) -> dict:
    """Per regularization and kind, the runs sorted by slope (ReLU in both kinds); per step shown
    (10 and the last), the mean ± SE over classes of each slope, the best, and the paired
    difference to ReLU on the same classes (mean, its SE, classes ahead)."""
    steps = _am_setting(quick)["steps"]
    data: dict = {}
    for params, result in finished:
        spec = parse_activation(params["spec"])
        entry = {"slope": spec.slope, "spec": params["spec"], "mean": result["mean"], "per_class": result["per_class"]}
        for k in (["proxygrad", "leaky"] if spec.kind == "relu" else [spec.kind]):
            data.setdefault(params["regularize"], {}).setdefault(k, []).append(entry)
    summary = {}
    for reg, kinds in sorted(data.items()):
        for rows in kinds.values():
            rows.sort(key=lambda e: e["slope"])
        for step in [s for s in (10, steps) if s <= steps]:
            for kind, rows in kinds.items():
                xs = [e["slope"] for e in rows if str(step) in e["per_class"]]
                per = [torch.tensor(e["per_class"][str(step)]) for e in rows if str(step) in e["per_class"]]
                if not per:
                    continue
                means = [p.mean().item() for p in per]
                se = [p.std().item() / len(p) ** 0.5 if len(p) > 1 else 0.0 for p in per]
                base = per[xs.index(0.0)] if 0.0 in xs else None
                paired = [[round((p - base).mean().item(), 3), round((p - base).std().item() / len(p) ** 0.5, 3)
                           if len(p) > 1 else 0.0, int((p > base).sum())] if base is not None else None for p in per]
                summary[f"{reg}/{kind}/step{step}"] = {"slopes": xs, "mean": [round(m, 3) for m in means],
                                                        "se": [round(s, 3) for s in se],
                                                        "best_slope": xs[max(range(len(xs)), key=lambda i: means[i])],
                                                        "vs_relu": paired, "classes": len(per[0])}
    return {"experiment": "figure2", "quick": quick, "runs": data, "summary": summary}


def table3_jobs(quick: bool) -> list[dict]:
    specs = [ActivationSpec("relu")] + [ActivationSpec.at_slope(k, s) for k, s in TABLE3_SLOPES.items()]
    return [{**_am_setting(quick), "spec": str(s), "regularize": "paper", "save_images": True} for s in specs]


def images_merge(finished, folder: Folder, quick: bool, needed: dict) -> dict:
    """The runs of an image grid (Table 3, Figure 3): spec, logits at the start and the end, and
    where its images are (``jobs/KEY/images.png``, in this experiment's folder)."""
    return {"experiment": folder.exp.name, "quick": quick,
            "rows": [{"spec": p["spec"], "regularize": p["regularize"], "start_logits": r["per_class"].get("0"),
                      "final_logits": r["per_class"][str(p["steps"])], "images": f"jobs/{folder.key(p)}/{r['images']}"}
                     for p, r in finished]}


def figure3_jobs(quick: bool) -> list[dict]:
    """ProxyGrad (the paper's "animal faces") and a Leaky ReLU network (its "repetitive textures")
    at the same high slopes; both need the float64 fallback of :mod:`proxylab.ascent` above 1."""
    base = {**_am_setting(quick), "classes": ["poncho"]}
    return [{**base, "spec": str(ActivationSpec.at_slope(kind, s)), "regularize": "paper", "save_images": True}
            for kind in ("proxygrad", "leaky") for s in FIGURE3_SLOPES]


# --------------------------------------------------------------------------- the slope diagnostic's record
FM_SLOPES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
# The diagnostic's Fashion-MNIST ResNet18 was trained longer (its record shipped before Table 4's budget was set).
DIAGNOSTIC_BUDGET = {"epochs": 10, "subset": 10000}
DIAGNOSTIC_QUICK = {"epochs": 2, "subset": 2048}  # notebook 06c's quick model: trained enough for its AM to climb


def diagnostic_jobs(quick: bool) -> list[dict]:
    """One job per model: the diagnostic per class at the AM start images; for the Fashion-MNIST
    ResNet18 (trained in the job with Table 4's recipe at ``DIAGNOSTIC_BUDGET``) also the AM grid it is held against (the
    EfficientNet-Lite0 grid is Figure 2's)."""
    fm = {"model": "fmnist-resnet18", "train": {**train_setting(quick, DIAGNOSTIC_BUDGET), "arch": "resnet18",
                                                "activation": "relu", "seed": 0},
          "classes": list(range(3 if quick else 10)), "size": 32, "steps": 3 if quick else 500,
          "slopes": [0.0, 0.05, 0.2] if quick else FM_SLOPES}
    lite = {"model": "efficientnet-lite0", **{k: v for k, v in _am_setting(quick).items() if k != "model"},
            "slopes": [0.0, 0.05, 0.2] if quick else FIG2_SLOPES}
    fm.update({"lr": am.DEFAULT_LR, "init_std": am.DEFAULT_INIT_STD, "seed": 0})
    return [lite, fm]


def run_diagnostic(params: dict, workdir: Path) -> dict:
    if params["model"] == "efficientnet-lite0":
        model = _imagenet("efficientnet-lite0")
        targets = [models.class_index(c) for c in params["classes"]]
    else:
        train(config(params["train"], workdir / "model"), resume=True, progress=False)
        model = load_for_am(workdir / "model", device())
        targets = list(params["classes"])
    x0 = am.initial_images(len(targets), params["size"], params["seed"], params["init_std"])
    slopes = [s for s in params["slopes"] if s > 0]
    d = am.slope_diagnostic(model, x0, targets, slopes)
    result = {"cosine": [[round(v, 5) for v in row] for row in d.cosine.T.tolist()],  # per class, per slope
              "gain": [[round(v, 5) for v in row] for row in d.gain.T.tolist()]}
    if params["model"] != "efficientnet-lite0":  # its own AM grid: per class, per slope, at every kept step
        keep = sorted({s for s in KEEP_STEPS if s <= params["steps"]} | {params["steps"]})
        grid = {}
        for s in params["slopes"]:
            r = am.visualize(model, targets, ActivationSpec.at_slope("proxygrad", s), steps=params["steps"],
                             lr=params["lr"], size=params["size"], seed=params["seed"], init_std=params["init_std"],
                             progress=False)
            grid[f"{s:g}"] = {str(k): [round(v, 4) for v in r.scores[k].tolist()] for k in keep}
        result["grid"] = grid
    return result


def _one_image(d, i):
    return am.SlopeDiagnostic(d["slopes"], torch.tensor(d["gain"])[i][:, None], torch.tensor(d["cosine"])[i][:, None],
                           [], torch.zeros(0), torch.zeros(0))


def diagnostic_record(slopes: list[float], scores: torch.Tensor, suggested: list) -> dict:
    """How a per-class suggestion fares on a measured grid.

    Args:
        slopes: the grid, ``slopes[0] == 0`` (ReLU).
        scores: (len(slopes), classes) scores at one step.
        suggested: per class ``(low, high)`` or None.

    Returns:
        per class the best positive slope, where it lies against the suggestion, the score of the
        suggestion's upper end as a fraction of the best; and for comparison the same fraction for
        every fixed slope of the grid (mean over classes).
    """
    pos = scores[1:]
    best_idx = pos.argmax(dim=0)
    best = pos.max(dim=0).values
    grid = slopes[1:]
    rows = []
    for c in range(scores.shape[1]):
        rng, i = suggested[c], int(best_idx[c])
        frac = (pos[grid.index(rng[1]), c] / best[c]).item() if rng is not None and rng[1] in grid else None
        rows.append({"best_slope": grid[i], "relu_over_best": round((scores[0, c] / best[c]).item(), 4), "suggested": rng,
                     "where": am.where_in(grid, i, rng), "suggested_over_best": None if frac is None else round(frac, 4)})
    fixed = {f"{s:g}": round((pos[j] / best).mean().item(), 4) for j, s in enumerate(grid)}
    fracs = [r["suggested_over_best"] for r in rows if r["suggested_over_best"] is not None]
    return {"per_class": rows, "fixed_over_best": fixed,
            "suggested_over_best_mean": round(sum(fracs) / len(fracs), 4) if fracs else None,
            "relu_over_best_mean": round(sum(r["relu_over_best"] for r in rows) / len(rows), 4),
            "inside_or_next": sum(r["where"] in ("inside", "next to") for r in rows),
            "best_at_or_below_top": sum(r["suggested"] is not None and r["best_slope"] <= r["suggested"][1] for r in rows),
            "classes": len(rows)}


def diagnostic_merge(finished, folder: Folder, quick: bool, needed: dict) -> dict:
    """Per model, regularization and step: :func:`diagnostic_record` of the per-class suggestion
    against the measured grid (EfficientNet-Lite0's is Figure 2's, from ``needed["figure2"]``)."""
    panels = {}
    for params, result in finished:
        slopes = params["slopes"]
        d = {"slopes": [s for s in slopes if s > 0], "gain": result["gain"], "cosine": result["cosine"]}
        suggested = [am.suggest_slope(_one_image(d, i)) for i in range(len(result["cosine"]))]
        if params["model"] == "efficientnet-lite0":
            if needed.get("figure2") is None:
                continue
            grids = {}
            for reg, kinds in needed["figure2"]["runs"].items():
                rows = {e["slope"]: e["per_class"] for e in kinds.get("proxygrad", [])}
                if all(s in rows for s in slopes):
                    grids[reg] = {step: torch.tensor([rows[s][step] for s in slopes]) for step in rows[0.0]}
        else:
            grids = {"none": {step: torch.tensor([result["grid"][f"{s:g}"][step] for s in slopes])
                              for step in result["grid"]["0"]}}
        steps = params["steps"]
        for reg, by_step in grids.items():
            for step in sorted({10, steps} & {int(k) for k in by_step}):
                rec = diagnostic_record(slopes, by_step[str(step)], suggested)
                rec.update({"model": params["model"], "regularize": reg, "step": step})
                panels[f"{params['model']}/{reg}/step{step}"] = rec
    lines = ["| model | regularization | steps | best slope in or next to the range | best slope <= the range's top "
             "| score at the range's top / best | best fixed slope / best | ReLU / best |",
             "|---|---|---|---|---|---|---|---|"]
    for rec in panels.values():
        top_fixed = max(rec["fixed_over_best"].items(), key=lambda kv: kv[1])
        sug = "-" if rec["suggested_over_best_mean"] is None else f"{rec['suggested_over_best_mean']:.3f}"
        lines.append(f"| {rec['model']} | {rec['regularize']} | {rec['step']} | {rec['inside_or_next']} of "
                     f"{rec['classes']} | {rec['best_at_or_below_top']} of {rec['classes']} | {sug} | "
                     f"{top_fixed[1]:.3f} ({top_fixed[0]}) | {rec['relu_over_best_mean']:.3f} |")
    return {"experiment": "diagnostic", "quick": quick, "panels": panels, "markdown": "\n".join(lines)}


# --------------------------------------------------------------------------- held-out judges
TRANSFER_RULES = ["relu", *(str(ActivationSpec.at_slope(k, s)) for k, s in TABLE3_SLOPES.items()),
                  "guided", "deconvnet", "redirected", "noisy:0.3"]
JUDGE_STEPS = (10, 500)


def transfer_jobs(quick: bool) -> list[dict]:
    """AM on each offline ImageNet model (the 8 paper classes, each model at its native size, Table 3's
    protocol otherwise) with each rule; the images at 10 and 500 steps are judged by the other two.
    ProxyGrad runs at Lite0's best regularized slope (Figure 2) on all three."""
    rules = TRANSFER_RULES[:3] if quick else TRANSFER_RULES
    return [{**_am_setting(quick), "model": m, "size": 64 if quick else size, "spec": spec, "regularize": "paper"}
            for m, size in models.LITE_SIZES.items() for spec in rules]


def run_transfer(params: dict, workdir: Path) -> dict:
    at = [s for s in JUDGE_STEPS if s <= params["steps"]] or [params["steps"]]
    model, indices, r = _visualize(params, snapshot_steps=tuple(at))
    out = {"maker_logit": {str(s): [round(v, 4) for v in r.scores[s].tolist()] for s in at}, "judges": {}}
    for name in models.LITE_SIZES:
        if name == params["model"]:
            continue
        judge = _imagenet(name)
        for s in at:
            j = am.judge(r.snapshots[s], indices, judge, model)
            out["judges"].setdefault(name, {})[str(s)] = {"probability": [round(v, 6) for v in j["probability"].tolist()],
                                                        "top1": j["top1"].tolist(), "top5": j["top5"].tolist()}
    return out


def transfer_merge(finished, folder: Folder, quick: bool, needed: dict) -> dict:
    """Per rule and step: a table of makers (rows) and held-out judges (columns; a maker never judges
    its own images) with the mean target probability, top-1 and top-5 counts (classes), and the maker's
    mean logit; every rule's paired difference to ReLU by class, under each judge (``vs_relu``) and in
    the maker's own logit (``maker_vs_relu``)."""
    table: dict = {}
    for p, r in finished:
        for step, logits in r["maker_logit"].items():
            cell = table.setdefault(p["spec"], {}).setdefault(step, {}).setdefault(p["model"], {})
            cell["maker_logit"] = round(sum(logits) / len(logits), 3)
            cell["maker_logits"] = logits  # per class, as the job stored them
            for judge, by_step in r["judges"].items():
                j = by_step[step]
                cell[judge] = {"probability": round(sum(j["probability"]) / len(j["probability"]), 5),
                               "top5": sum(j["top5"]), "top1": sum(j["top1"]), "classes": len(j["top5"])}
    versus: dict = {}
    own: dict = {}
    rounded = lambda d: {k: (round(v, 5) if isinstance(v, float) else v) for k, v in d.items()}  # noqa: E731
    runs = {(p["model"], p["spec"]): r for p, r in finished}
    for (maker, spec), r in runs.items():
        base = runs.get((maker, "relu"))
        if spec == "relu" or base is None:
            continue
        for step, logits in r["maker_logit"].items():
            own[f"{spec}/{step}/{maker}"] = rounded(paired(logits, base["maker_logit"][step]))
        for judge, by_step in r["judges"].items():
            for step, j in by_step.items():
                versus[f"{spec}/{step}/{maker}->{judge}"] = rounded(
                    paired(j["probability"], base["judges"][judge][step]["probability"]))
    return {"experiment": "transfer", "quick": quick, "table": table, "vs_relu": versus, "maker_vs_relu": own,
            "markdown": transfer_markdown(table, versus, own)}


def transfer_markdown(table: dict, versus: dict, own: dict | None = None) -> str:
    """The judged grid as markdown, one table per step (the last first): per maker and rule, the
    maker's mean logit and its paired difference to ReLU's, each held-out judge's mean target
    probability with its top-5 count, and the paired difference to ReLU's images under that judge,
    each with its reading (:func:`proxylab.report.verdict`)."""
    from .report import _pm

    steps = transfer_steps(table)
    rules = [r for r in TRANSFER_RULES if r in table] + [r for r in table if r not in TRANSFER_RULES]
    out = []
    for step in steps:
        lines = [f"**After {step} steps.** The maker's own mean logit, and the target probability under each "
                 "held-out judge (mean over classes; top-5: how many classes are among the judge's first five); "
                 "each against ReLU's images of the same maker and class: this rule minus ReLU, mean ± SE, "
                 "classes ahead: reading.", "",
                 "| maker | rule | maker's logit (minus ReLU) | judged: probability, top-5 | probability minus ReLU, per judge |",
                 "|---|---|---|---|---|"]
        for maker in models.LITE_SIZES:
            for rule in rules:
                cell = table.get(rule, {}).get(str(step), {}).get(maker)
                if cell is None:
                    continue
                judges = [j for j in models.LITE_SIZES if j in cell]
                judged = ", ".join(f"{models.short_name(j)} {cell[j]['probability']:.4f}, top-5 {cell[j]['top5']}/{cell[j]['classes']}"
                                   for j in judges)
                vs = "; ".join(f"{models.short_name(j)} {_pm(v, 4)}" for j in judges
                               if (v := versus.get(f"{rule}/{step}/{maker}->{j}")) is not None) or "–"
                mine = (own or {}).get(f"{rule}/{step}/{maker}")
                logit = f"{cell['maker_logit']:.2f}" + (f" ({_pm(mine, 2)})" if mine else "")
                lines.append(f"| {models.short_name(maker)} | `{rule}` | {logit} | {judged} | {vs} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


# --------------------------------------------------------------------------- certified maxima
CERTIFY_NETS = [[24], [48], [24, 24]]  # certified per class in seconds here; the scaling jobs show where it stops
CERTIFY_SCALING = [[16], [32], [64], [128], [16, 16], [24, 24], [32, 32], [48, 48]]
CERTIFY_RULES = ["relu", "proxygrad:0.01", "proxygrad:0.03", "proxygrad:0.1", "proxygrad:0.3", "proxygrad:1",
                 "leaky:0.1", "guided", "deconvnet", "redirected", "noisy:0.3"]


def certify_setting(quick: bool) -> dict:
    return {"dataset": "fashion-mnist", "size": 14, "epochs": 3,
            "subset": 5000 if quick else 20000, "net_seed": 0, "time_limit": 10 if quick else 120}


def certify_jobs(quick: bool) -> list[dict]:
    """One job per (network, class): its certified maximum and every AM rule against it; then the
    scaling jobs: one class per network size, both bound methods, under a time limit."""
    base = certify_setting(quick)
    ascent = {"rules": CERTIFY_RULES[:3] if quick else CERTIFY_RULES, "starts": 3 if quick else 10,
              "steps": 20 if quick else 300, "polish": 10 if quick else 200, "long": 3}
    return ([{**base, "kind": "gap", "widths": w, "output": c, **ascent}
             for w in ([[8]] if quick else CERTIFY_NETS) for c in range(2 if quick else 10)] +
            [{**base, "kind": "scaling", "widths": w, "output": 0, "time_limit": 5 if quick else 60}
             for w in ([[8], [4, 4]] if quick else CERTIFY_SCALING)])


@functools.lru_cache(maxsize=16)
def _fashion_mlp(widths: tuple, size: int, epochs: int, subset: int, seed: int):
    return certify.fashion_mlp(list(widths), size=size, epochs=epochs, seed=seed, subset=subset)


def run_certify(params: dict, workdir: Path) -> dict:
    """A certified maximum of one class logit and, for ``gap`` jobs, each AM rule's optimality gap
    (value found / certified maximum) per start, with and without the polishing phase, and a run
    ``long`` times longer for ReLU and the first ProxyGrad slope: the budget's convergence check."""
    model, accuracy = _fashion_mlp(tuple(params["widths"]), params["size"], params["epochs"], params["subset"],
                                   params["net_seed"])
    out = {"test_accuracy": round(accuracy, 2)}
    bounds = ["interval", "lp"] if params["kind"] == "scaling" else ["lp"]
    for b in bounds:
        c = certify.certified_max(model, params["output"], time_limit=params["time_limit"], bounds=b)
        out[b] = {"value": c.value, "bound": c.bound, "optimal": c.optimal, "checked": c.checked,
                  "binaries": c.binaries, "seconds": round(c.seconds, 2), "gap": c.gap}
    if params["kind"] == "scaling":
        return out
    best = out["lp"]["value"] if out["lp"]["optimal"] else None
    starts = am.initial_images(params["starts"], params["size"], seed=0, channels=1).flatten(1)
    lr = am.DEFAULT_LR * params["size"]  # the RMS step per pixel of AM: lr * sqrt(inputs), inputs = size ** 2
    rules = {}
    for spec in params["rules"]:
        t0 = time.perf_counter()
        r = certify.am_runs(model, params["output"], spec, starts, params["steps"], lr, polish_steps=params["polish"])
        raw = certify.am_runs(model, params["output"], spec, starts, params["steps"], lr)
        rules[spec] = {"values": [round(v, 5) for v in r["values"]], "unpolished": [round(v, 5) for v in raw["values"]],
                       "curve": [round(v, 5) for v in r["curve"]], "seconds": round(time.perf_counter() - t0, 2)}
    for spec in ("relu", params["rules"][1]):
        r = certify.am_runs(model, params["output"], spec, starts, params["steps"] * params["long"], lr,
                            polish_steps=params["polish"] * params["long"])
        rules[spec]["long"] = [round(v, 5) for v in r["values"]]
    out.update({"certified": best, "rules": rules})
    return out


def certify_merge(finished, folder: Folder, quick: bool, needed: dict) -> dict:
    """Per network and rule: the mean optimality gap (1 - found / certified) over classes for the
    first start and for the best of the restarts, the fraction of runs within 1 % of the optimum,
    the mean steps to get there; and the scaling table (solve time, proven gap, binaries)."""
    gaps: dict = {}
    for p, r in finished:
        if p["kind"] != "gap" or r.get("certified") is None or r["certified"] <= 0:
            continue
        net = "x".join(map(str, p["widths"]))
        opt = r["certified"]
        for spec, v in r["rules"].items():
            g = gaps.setdefault(net, {}).setdefault(spec, {"first": [], "best": [], "within": [], "unpolished": [],
                                                           "steps": [], "long_best": []})
            g["first"].append(1 - v["values"][0] / opt)
            g["best"].append(1 - max(v["values"]) / opt)
            g["unpolished"].append(1 - max(v["unpolished"]) / opt)
            g["within"] += [val >= 0.99 * opt for val in v["values"]]
            reach = [i for i, val in enumerate(v["curve"]) if val >= 0.99 * opt]
            g["steps"].append(reach[0] if reach else None)
            if "long" in v:
                g["long_best"].append(1 - max(v["long"]) / opt)
    summary = {net: {spec: {"gap_first": round(sum(g["first"]) / len(g["first"]), 4),
                            "gap_best_of_restarts": round(sum(g["best"]) / len(g["best"]), 4),
                            "gap_best_unpolished": round(sum(g["unpolished"]) / len(g["unpolished"]), 4),
                            "gap_best_long": round(sum(g["long_best"]) / len(g["long_best"]), 4) if g["long_best"] else None,
                            "within_1pct": round(sum(g["within"]) / len(g["within"]), 3),
                            "classes": len(g["first"]),
                            "gap_best_per_class": [round(x, 4) for x in g["best"]]}
                     for spec, g in rules.items()} for net, rules in gaps.items()}
    scaling = [{"widths": p["widths"], **{b: r[b] for b in ("interval", "lp") if b in r}}
               for p, r in finished if p["kind"] == "scaling"]
    lines = ["| network | rule | gap, first start | gap, best of restarts | before polishing | within 1 % (runs) |",
             "|---|---|---|---|---|---|"]
    for net, rules in summary.items():
        for spec, v in rules.items():
            lines.append(f"| {net} | `{spec}` | {100 * v['gap_first']:.2f} % | {100 * v['gap_best_of_restarts']:.2f} % "
                         f"| {100 * v['gap_best_unpolished']:.2f} % | {100 * v['within_1pct']:.0f} % |")
    return {"experiment": "certify", "quick": quick, "summary": summary, "scaling": scaling,
            "markdown": "\n".join(lines),
            "certificates_checked": all(r[b]["checked"] for _, r in finished for b in ("interval", "lp") if b in r)}
