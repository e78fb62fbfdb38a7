"""The README's results table, written from the shipped results (``results/NAME/NAME.json``) by
code, so that no number in it can drift from its data, and one rule for the words that read a
paired comparison.

The rule (:func:`verdict`): a setting is **ahead** of its baseline when the mean of the paired
differences (same seed, or same class) exceeds t times its standard error, t the two-sided 95 %
quantile of Student's t with n - 1 degrees of freedom (4.30 for 3 seeds, 2.36 for 8 classes, 2.01 for
50 repeats), AND more than half of the pairs are ahead; **behind** in the mirror case; otherwise
**within noise**. One pair has no standard error, so it is always within noise.

``python3 dev.py results`` rewrites the table between the README's markers;
``tests/test_report.py`` fails when the committed README differs from what this module writes.
"""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Callable, Sequence

from .proxygrad import parse_activation
from .results import shipped

README_START, README_END = "<!-- results-table-start -->", "<!-- results-table-end -->"


# --------------------------------------------------------------------------- the one rule
def verdict(mean: float, se: float | None, ahead: int, n: int, behind: int | None = None) -> str:
    """``"ahead"``, ``"behind"`` or ``"within noise"`` for ``n`` paired differences with this mean,
    standard error, number of pairs ahead (difference > 0) and number behind (difference < 0); see the
    module's docstring. A tie (difference exactly 0) counts for neither side. Where only the number
    ahead is known (``behind`` None), the others stand for the number behind."""
    if n < 2 or se is None or math.isnan(se):
        return "within noise"
    behind = n - ahead if behind is None else behind
    bar = critical_t(n) * se
    if mean > bar and ahead > n / 2:
        return "ahead"
    if mean < -bar and behind > n / 2:
        return "behind"
    return "within noise"


def critical_t(n: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``n - 1`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def paired(values: Sequence[float], base: Sequence[float]) -> dict:
    """Paired differences ``values - base``: ``{"mean", "se", "ahead", "n", "verdict"}`` (the
    standard error from the sample std, n - 1 in the denominator)."""
    d = [v - b for v, b in zip(values, base, strict=True)]
    n = len(d)
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else None
    ahead = sum(x > 0 for x in d)
    return {"mean": mean, "se": se, "ahead": ahead, "n": n,
            "verdict": verdict(mean, se, ahead, n, behind=sum(x < 0 for x in d))}


def paired_table(accuracies: dict[str, list[float]]) -> str:
    """Markdown: every activation of a Table 4 grid against the ReLU runs of the same seeds, with its
    reading. ``accuracies``: ``"dataset/net/activation"`` -> test accuracies in seed order (a merged
    ``table4`` result's ``"accuracies"``)."""
    rows = ["| dataset | net | activation | minus ReLU (same seed), mean ± SE | seeds ahead | reading |",
            "|---|---|---|---|---|---|"]
    for key, values in accuracies.items():
        dataset, arch, act = key.split("/")
        relu = accuracies.get(f"{dataset}/{arch}/relu")
        if act == "relu" or relu is None:
            continue
        p = paired(values, relu)
        se = "–" if p["se"] is None else f"{p['se']:.2f}"
        rows.append(f"| {dataset} | {arch} | {parse_activation(act).label} | {p['mean']:+.2f} ± {se} | "
                    f"{p['ahead']}/{p['n']} | {p['verdict']} |")
    return "\n".join(rows)


def ranking(scores: dict, baseline: str | None = None) -> str:
    """Markdown: specs ranked by their mean score over seeds (spec -> scores in seed order, the same
    start images per seed), with the std, and for each neighbour in the ranking the paired difference
    to the next one read by :func:`verdict` (a lead is *ahead* or *within noise*); with ``baseline``
    (a spec), also every spec's paired difference to it."""
    scores = {spec: [float(x) for x in v] for spec, v in scores.items()}
    if baseline is not None and baseline not in scores:
        raise ValueError(f"baseline {baseline!r} is not one of the ranked specs: {', '.join(scores)}")
    n = len(next(iter(scores.values())))
    order = sorted(scores, key=lambda s: -statistics.fmean(scores[s]))
    extra = f" vs `{baseline}` (paired) |" if baseline else ""
    lines = [f"| rank | spec | mean over {n} seeds | std | lead over the next (paired) |{extra}",
             "|---|---|---|---|---|" + ("---|" if baseline else "")]
    for i, spec in enumerate(order):
        v = scores[spec]
        std = statistics.stdev(v) if n > 1 else float("nan")
        lead = _pm(paired(v, scores[order[i + 1]]), 2) if i + 1 < len(order) else ""
        row = f"| {i + 1} | `{spec}` | {statistics.fmean(v):.2f} | {std:.2f} | {lead} |"
        if baseline:
            row += " – |" if spec == baseline else f" {_pm(paired(v, scores[baseline]), 2)} |"
        lines.append(row)
    return "\n".join(lines)


def _pm(p: dict, digits: int = 1) -> str:
    se = "–" if p["se"] is None else f"{p['se']:.{digits}f}"
    return f"{p['mean']:+.{digits}f} ± {se}, {p['ahead']}/{p['n']} ahead: {p['verdict']}"


def _mean(v) -> float:
    return sum(v) / len(v)


# --------------------------------------------------------------------------- one row per claim
def _figure2_proxygrad(fig2: dict, reg: str) -> str:
    parts = []
    for step in (10, 500):
        s = fig2["summary"][f"{reg}/proxygrad/step{step}"]
        n = s["classes"]
        groups: dict = {}
        for slope, mean, (m, se, ahead) in list(zip(s["slopes"], s["mean"], s["vs_relu"]))[1:]:
            cell = f"{slope:g} ({mean:.1f}, {m:+.1f} ± {se:.1f}, {ahead}/{n})"
            groups.setdefault(verdict(m, se, ahead, n), []).append(cell)
        ahead = [(mean, slope) for slope, mean, (m, se, a) in list(zip(s["slopes"], s["mean"], s["vs_relu"]))[1:]
                 if verdict(m, se, a, n) == "ahead"]
        head = (f"best slope ahead {max(ahead)[1]:g}: {max(ahead)[0]:.1f}, {100 * (max(ahead)[0] / s['mean'][0] - 1):+.0f} %"
                if ahead else "no slope ahead")
        parts.append(f"after {step} steps (ReLU {s['mean'][0]:.1f}; {head}): " +
                     "; ".join(f"{w} at {', '.join(groups[w])}" for w in ("ahead", "within noise", "behind") if w in groups))
    return ". ".join(parts) + " (slope (mean, paired difference ± SE, classes ahead))"


def _figure2_leaky(fig2: dict, reg: str) -> str:
    parts = []
    for step in (10, 500):
        s = fig2["summary"][f"{reg}/leaky/step{step}"]
        words = [verdict(m, se, a, s["classes"]) for m, se, a in s["vs_relu"][1:]]
        parts.append(f"behind ReLU at {words.count('behind')} of {len(words)} slopes after {step} steps")
    s = fig2["summary"][f"{reg}/leaky/step500"]
    m, se, a = s["vs_relu"][1]
    return "; ".join(parts) + f" (slope {s['slopes'][1]:g} after 500: {m:+.1f} ± {se:.1f}, {a}/{s['classes']} classes ahead)"


def _diagnostic(diag: dict) -> str:
    panels = list(diag["panels"].values())
    fracs = [r["suggested_over_best"] for p in panels for r in p["per_class"] if r["suggested_over_best"] is not None]
    means = [p["suggested_over_best_mean"] for p in panels]
    below_fixed = sum(p["suggested_over_best_mean"] < max(p["fixed_over_best"].values()) for p in panels)
    vs_relu = {}
    for p in panels:
        rows = [r for r in p["per_class"] if r["suggested_over_best"] is not None]
        v = paired([r["suggested_over_best"] for r in rows], [r["relu_over_best"] for r in rows])["verdict"]
        vs_relu.setdefault(v, []).append(_setting(p))
    at_top = {step: (sum(p["best_at_or_below_top"] for p in panels if p["step"] == step),
                     sum(p["classes"] for p in panels if p["step"] == step)) for step in (10, 500)}
    return (f"no: the range's top scores {100 * min(fracs):.0f}–{100 * max(fracs):.0f} % of a class's best "
            f"(per class; {100 * min(means):.0f}–{100 * max(means):.0f} % as a mean over a setting's classes), "
            f"below the best fixed slope (chosen with hindsight) in {below_fixed} of {len(panels)} settings; against "
            "ReLU, paired by class: " + "; ".join(f"{w} in {len(vs_relu[w])} ({', '.join(vs_relu[w])})"
                                                 for w in ("ahead", "within noise", "behind") if w in vs_relu) + "; "
            f"the best slope is at or below the range's top for {at_top[500][0]}/{at_top[500][1]} classes after 500 "
            f"steps, {at_top[10][0]}/{at_top[10][1]} after 10")


def _setting(panel: dict) -> str:
    reg = "regularized" if panel["regularize"] == "paper" else "unregularized"
    return f"{panel['model']}, {reg}, {panel['step']} steps"


def _table3(t3: dict) -> str:
    rows = {r["spec"]: r["final_logits"] for r in t3["rows"]}
    relu = rows.pop("relu")
    parts = [f"ReLU {_mean(relu):.1f}"] + [f"{spec} {_mean(v):.1f} (paired {_pm(paired(v, relu))})" for spec, v in rows.items()]
    order = {spec: paired(v, relu)["verdict"] for spec, v in rows.items()}
    leaky = next(w for spec, w in order.items() if spec.startswith("leaky"))
    pg = next(w for spec, w in order.items() if spec.startswith("proxygrad"))
    holds = "yes" if (leaky, pg) == ("ahead", "ahead") else "partly" if "ahead" in (leaky, pg) else "no"
    return (f"{holds}: final logits, mean over the 8 classes: " + ", ".join(parts) +
            f" (the claim's order needs both ahead of ReLU); {TABLE3_READING}")


# What the Table 3 images show (results/table3/table3.png), read by eye: kept beside the numbers.
TABLE3_READING = ("the images are low-contrast in every row; object parts are recognizable for a few classes in all "
                  "three rows (cucumbers, a pelican's head, the bakery's cakes, pool balls) and the rest are textures, "
                  "with no visible improvement from the ReLU row to the ProxyGrad row. This is a rerun with one torch "
                  "thread at a clean commit; the first run, with two threads and an earlier commit, the same "
                  "computation as Figure 2's regularized 500-step panel at slope 0.05, had ProxyGrad ahead of ReLU "
                  "for every class. Thread count and code version both changed; at one commit one and two threads "
                  "already part after 2 AM steps. So one run per class does not settle this comparison, nor "
                  "Figure 2's at that slope")
# Figure 2's regularized 500-step "ahead" at slope 0.05 is the computation Table 3 reran (see TABLE3_READING).
F2_REG500_CAVEAT = (". After 500 steps, slope 0.05's result is not reproduced by Table 3's rerun of the same "
                    "setting (another thread count and commit: within noise there), so it needs more seeds")


def _figure3(f3: dict) -> str:
    by_spec = {r["spec"]: r["final_logits"][0] for r in f3["rows"]}
    start = f3["rows"][0]["start_logits"][0]
    pg = ", ".join(f"{s.split(':')[1]}: {v:.1f}" for s, v in by_spec.items() if s.startswith("proxygrad"))
    lk = ", ".join(f"{s.split(':')[1]}: {v:.1f}" for s, v in by_spec.items() if s.startswith("leaky"))
    below = sum(v < start for v in by_spec.values())
    return (f"final logit of poncho for ProxyGrad at slopes {pg} and for the Leaky ReLU network at {lk}; "
            f"{below} of {len(by_spec)} end below the start image's {start:.1f}, so at these slopes the ascent no "
            f"longer climbs the class; {FIGURE3_READING}")


# What the rerun Figure 3 images show (results/figure3/figure3.png), read by eye: kept beside the numbers.
FIGURE3_READING = ("by eye: ProxyGrad gives large saturated colour fields and stripes, no animal faces (not "
                   "reproduced); the Leaky ReLU network gives low-contrast textures, at slope 3 rows of small "
                   "repeated spots (textures without objects, as the paper describes)")


def _figure4(f4: dict) -> str:
    slopes = f4["slopes"]
    i1 = slopes.index(1.0)
    out = []
    for measure, name, pred in (("per_channel", "per-channel σ_B", "variance"), ("whole", "whole-tensor std", "second moment")):
        leaky = f4["values"][measure]["Leaky ReLU"]
        p = paired(leaky[i1], leaky[0])
        out.append(f"{name} {_mean(leaky[0]):.2f} → {_mean(leaky[i1]):.2f} from slope 0 to 1 "
                   f"({100 * (f4['leaky_growth'][measure][i1] - 1):+.0f} %, {p['ahead']}/{p['n']} networks up: {p['verdict']}; "
                   f"the closed-form {pred} predicts {100 * (f4['predicted_growth'][pred][i1] - 1):+.0f} %)")
    pg = f4["values"]["per_channel"]["ProxyGrad"]
    flat = all(row == pg[0] for row in pg)
    return ("Leaky ReLU: " + "; ".join(out) +
            ("; ProxyGrad identical to ReLU at every slope (its forward is ReLU's)" if flat else "; ProxyGrad NOT flat: a bug"))


def _table5(t5: dict) -> str:
    slopes = t5["slopes"]
    top = len(slopes) - 1
    parts = []
    for bn in ("without", "with"):
        cells = []
        for kind in ("Leaky ReLU", "ProxyGrad"):
            v = t5["values"][f"{bn} BN/{kind}"]
            p = paired(v[top], v[0])
            word = {"ahead": "grows", "behind": "shrinks"}.get(p["verdict"], "within noise")
            cells.append(f"{kind} {1e4 * _mean(v[0]):.3f} → {1e4 * _mean(v[top]):.3f} "
                         f"({100 * (_mean(v[top]) / _mean(v[0]) - 1):+.0f} %, {word}, {p['ahead']}/{p['n']} repeats up)")
        parts.append(f"{bn} BN " + ", ".join(cells))
    return f"gradient ×10⁻⁴ from slope 0 to {slopes[top]:g}: " + "; ".join(parts)


def _table4(t4: dict) -> str:
    acc = t4["accuracies"]
    parts = []
    for arch, name in (("resnet18", "ResNet18"), ("pfnet18", "PFNet18")):
        relu = acc[f"fashion-mnist/{arch}/relu"]
        groups: dict = {}
        for act in ("proxygrad:0.01", "proxygrad:0.1", "proxygrad:0.2", "leaky:0.01", "leaky:0.1", "leaky:0.2"):
            p = paired(acc[f"fashion-mnist/{arch}/{act}"], relu)
            groups.setdefault(p["verdict"], []).append(f"{_label(act)} {p['mean']:+.2f} ± {p['se']:.2f}")
        vs = []
        for s in ("0.01", "0.1", "0.2"):
            p = paired(acc[f"fashion-mnist/{arch}/leaky:{s}"], acc[f"fashion-mnist/{arch}/proxygrad:{s}"])
            vs.append(f"{s}: {p['mean']:+.2f} ± {p['se']:.2f} ({p['verdict']})")
        parts.append(f"{name} (ReLU {_mean(relu):.1f} %): vs ReLU, " +
                     "; ".join(f"{w}: {', '.join(groups[w])}" for w in ("ahead", "within noise", "behind") if w in groups) +
                     f"; Leaky minus ProxyGrad at the same slope {', '.join(vs)}")
    return " — ".join(parts)


def _certify(c: dict) -> str:
    nets = []
    for net, rules in c["summary"].items():
        relu = rules["relu"]
        pg = ", ".join(f"{spec.split(':')[1]}: {100 * v['gap_best_of_restarts']:.2f} % "
                       f"({paired(relu['gap_best_per_class'], v['gap_best_per_class'])['verdict']})"
                       for spec, v in rules.items() if spec.startswith("proxygrad"))
        others = ", ".join(f"{spec} {100 * v['gap_best_of_restarts']:.1f} %" for spec, v in rules.items()
                           if not spec.startswith(("proxygrad", "relu")))
        nets.append(f"MLP {net} ({relu['classes']} classes): ReLU {100 * relu['gap_best_of_restarts']:.2f} % "
                    f"({100 * relu['within_1pct']:.0f} % of runs within 1 %; 3x longer: "
                    f"{100 * relu['gap_best_long']:.2f} %), ProxyGrad {pg}; {others}")
    done = [s for s in c["scaling"] if s["lp"]["optimal"]]
    open_ = [s for s in c["scaling"] if not s["lp"]["optimal"]]
    solved = ", ".join("{} ({:.0f} s)".format("x".join(map(str, s["widths"])), s["lp"]["seconds"]) for s in done)
    unsolved = ", ".join("{} (proven gap {:.0f} %)".format("x".join(map(str, s["widths"])), 100 * s["lp"]["gap"])
                         for s in open_)
    frontier = f"certified in the time limit up to {solved}; not: {unsolved}"
    words = [paired(r["relu"]["gap_best_per_class"], v["gap_best_per_class"])["verdict"]
             for r in c["summary"].values() for spec, v in r.items() if spec.startswith("proxygrad")]
    holds = "no" if "ahead" not in words else "partly"
    return (f"{holds}: ProxyGrad is ahead of ReLU at {words.count('ahead')} of {len(words)} (network, slope) "
            "settings; optimality gap of the best of 10 starts, mean over classes (0 = the certified global maximum): "
            + "; ".join(nets) + " (ProxyGrad against ReLU, paired by class: ahead = a smaller gap). "
            f"{frontier}; every certificate checked against its network: {c['certificates_checked']}")


def transfer_steps(table: dict) -> list[int]:
    """The steps a merged transfer table (``transfer``'s ``"table"``) was judged at, the last first."""
    return sorted({int(k) for by_step in table.values() for k in by_step}, reverse=True)


def _transfer(tr: dict) -> str:
    """Per maker, at its last step: ReLU's judged probability, then every other rule's under each
    judge with its paired reading; first, how ProxyGrad fares over all (maker, judge) pairs."""
    from . import models

    step, short = str(transfer_steps(tr["table"])[0]), models.short_name
    makers, words = [], []
    for maker in dict.fromkeys(m for by_step in tr["table"].values() for m in by_step.get(step, {})):
        relu = tr["table"].get("relu", {}).get(step, {}).get(maker)
        if relu is None:
            continue
        judges = [j for j in relu if j in models.LITE_SIZES]
        parts = ["ReLU " + ", ".join(f"{short(j)} {relu[j]['probability']:.3f}" for j in judges)]
        for rule, by_step in tr["table"].items():
            cell = by_step.get(step, {}).get(maker)
            if rule == "relu" or cell is None:
                continue
            vs = {j: tr["vs_relu"][f"{rule}/{step}/{maker}->{j}"]["verdict"] for j in judges}
            if rule.startswith("proxygrad"):
                words += vs.values()
            mine = tr.get("maker_vs_relu", {}).get(f"{rule}/{step}/{maker}")
            logit = f"own logit {mine['mean']:+.1f} ({mine['verdict']}), judged " if mine else ""
            parts.append(f"`{rule}` {logit}" + ", ".join(f"{short(j)} {cell[j]['probability']:.3f} ({vs[j]})"
                                                        for j in judges))
        makers.append(f"made on {short(maker)}: " + "; ".join(parts))
    pg = (f"ProxyGrad's images against ReLU's: ahead under {words.count('ahead')}, within noise under "
          f"{words.count('within noise')}, behind under {words.count('behind')} of {len(words)} (maker, judge) pairs "
          "(the two judges of a maker see the same images, and the three networks are one family: the pairs are "
          "not independent; within noise is no proof of equal)")
    holds = ("yes" if words and all(w == "ahead" for w in words) else
             "no" if "behind" in words and "ahead" not in words else "not settled")
    return (f"{holds}: {pg}. After {step} steps, per maker: each rule's own logit minus ReLU's, and the target probability "
            "under each held-out judge, mean over classes (reading of the paired difference to ReLU by class): "
            + " — ".join(makers))


def table3_judges(t3: dict, tr: dict, maker: str = "efficientnet-lite0") -> str:
    """Table 3's judge columns, as markdown: each row's images are the held-out judges' verdict on
    the transfer grid's run of the same rule on ``maker`` (Table 3's protocol). Whether that run is
    Table 3's own is checked, not assumed: its per-class logits against Table 3's, to the digits
    both store ("same run"); otherwise the judges saw another run of the same protocol, and the
    table says how far its mean logit is."""
    from . import models

    step = str(transfer_steps(tr["table"])[0])
    lines = ["| row | logit in Table 3 | the judged run | judge | probability, top-5 | "
             "probability minus ReLU's (mean ± SE over classes, classes ahead) |",
             "|---|---|---|---|---|---|"]
    for row in t3["rows"]:
        cell = tr["table"].get(row["spec"], {}).get(step, {}).get(maker)
        if cell is None:
            lines.append(f"| `{row['spec']}` | {_mean(row['final_logits']):.2f} | not judged yet | | | |")
            continue
        same = cell.get("maker_logits") == row["final_logits"]
        run = "a rerun, logits identical" if same else f"another run (mean logit {cell['maker_logit']:.2f})"
        for j in (j for j in cell if j in models.LITE_SIZES):
            v = tr["vs_relu"].get(f"{row['spec']}/{step}/{maker}->{j}")
            lines.append(f"| `{row['spec']}` | {_mean(row['final_logits']):.2f} | {run} | {models.short_name(j)} | "
                         f"{cell[j]['probability']:.3f}, top-5 {cell[j]['top5']}/{cell[j]['classes']} "
                         f"| {'–' if v is None else _pm(v, 3)} |")
    return "\n".join(lines)


def _label(spec: str) -> str:
    kind, slope = spec.split(":")
    return f"{'PG' if kind == 'proxygrad' else 'Leaky'} {slope}"


def _status(merged: dict) -> str:
    prov = merged["provenance"]
    done = "complete" if prov["jobs_finished"] == prov["jobs"] else f"{prov['jobs_finished']} of {prov['jobs']} jobs"
    return f"{done}, {prov['jobs']} jobs, {prov['job_seconds_total'] / 3600:.1f} CPU hours"


EFF = "EfficientNet-Lite0 (offline, not the paper's ResNet18), 8 paper classes, 224 px, 1 seed, paired by class"
ROWS: list[tuple[str, str, Callable[[dict], str], str]] = [
    ("figure2", "Figure 2, no regularization: ProxyGrad above ReLU at a good slope, ≈ 50 vs 40 after 10 steps "
     "(+25 %), ≈ 330 vs 300 after 500 (+10 %)", lambda d: _figure2_proxygrad(d, "none"), EFF),
    ("figure2", "Figure 2: Leaky ReLU networks score below ReLU at every slope", lambda d: _figure2_leaky(d, "none"),
     "as above"),
    ("figure2", "Figure 2 with regularization: ProxyGrad above ReLU, ≈ 40 vs 30 after 10 steps (+33 %), ≈ 130 vs 100 "
     "after 500 (+30 %)", lambda d: _figure2_proxygrad(d, "paper") + F2_REG500_CAVEAT,
     "blur σ 0.5 + rotation ±1° (this course's choice; the paper's values are lost), otherwise as above"),
    ("figure2", "Figure 2 with regularization: Leaky ReLU below ReLU", lambda d: _figure2_leaky(d, "paper"), "as above"),
    ("diagnostic", "(this course) the slope diagnostic's suggested range predicts the best slope", _diagnostic,
     "EfficientNet-Lite0 on Figure 2's grid, Fashion-MNIST ResNet18 on its own 500-step grid, per class"),
    ("table3", "Table 3: images of ReLU, Leaky ReLU, ProxyGrad improve from left to right", _table3,
     "EfficientNet-Lite0, 224 px, 500 steps (paper: 2500), regularized, 1 seed"),
    ("figure3", "Figure 3: very high ProxyGrad slopes give \"animal faces\", a Leaky ReLU network repetitive textures",
     _figure3, "poncho, EfficientNet-Lite0, 224 px, 500 steps, regularized, 1 seed"),
    ("figure4", "Figure 4: the std of BatchNorm inputs grows with the Leaky slope", _figure4,
     "random ResNet18, 10 networks per slope (paired by seed), Fashion-MNIST batches of 64 at 224 px"),
    ("table5", "Table 5: without BN the gradient grows with the slope; with BN it shrinks for Leaky ReLU and grows "
     "for ProxyGrad", _table5,
     "random ResNet18, gradient after layer1[0].conv1, Fashion-MNIST batches of 64 at 224 px, 50 repeats"),
    ("certify", "(this course, beyond the paper) ProxyGrad's AM escapes local maxima that trap ReLU's: measured "
     "against the certified global maximum", _certify,
     "MLPs on 14x14 Fashion-MNIST (3 epochs on 20,000 images), every class, 10 starts, 300 steps + 200 polishing; "
     "maxima certified by a MILP (HiGHS); scaling on class 0 with a 60 s limit"),
    ("transfer", "(this course, beyond the paper) are ProxyGrad's higher logits real? If so, networks that did not "
     "make the images recognize them better than ReLU's", _transfer,
     "EfficientNet-Lite0/1/2 (offline) at their native sizes, 8 paper classes, 500 steps, regularized, 1 seed; "
     "each maker's images judged by the other two, paired by class"),
    ("table4", "Table 4: ProxyGrad trains as well as Leaky ReLU (e.g. Caltech101 ResNet18: ReLU 56.0, ProxyGrad 0.2 "
     "62.9, Leaky 0.2 62.2)", _table4,
     "Fashion-MNIST (not a paper dataset), 4,000 training / 4,000 test images, 32 px, 8 epochs (undertrained), "
     "3 seeds paired by seed (same initial weights and data order)"),
]


def results_table(root) -> str:
    """The markdown table of every claim against its shipped result under ``root``; a result not
    shipped yet is a row that says so."""
    lines = ["| claim (paper) | ours | setting | status |", "|---|---|---|---|"]
    for name, claim, ours, setting in ROWS:
        merged = shipped(name, root)
        if merged is None:
            lines.append(f"| {claim} | not run yet: `python -m proxylab reproduce {name} --out results` | {setting} | – |")
            continue
        lines.append(f"| {claim} | {ours(merged)} | {setting} | {_status(merged)} (`results/{name}/`) |")
    return "\n".join(lines)


def update_readme(readme, root) -> bool:
    """Rewrite the results table between the README's markers; True when the file changed."""
    readme = Path(readme)
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block to write the results table into")
    new = pattern.sub(lambda _: f"{README_START}\n{results_table(root)}\n{README_END}", text)
    if new != text:
        readme.write_text(new)
    return new != text
