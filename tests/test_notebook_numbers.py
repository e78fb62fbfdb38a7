"""Every number that notebooks 05-08 (06b included) state in their markdown is checked, so that no
reading can drift from its data (issue 19).

``CLAIMS`` maps a notebook cell (notebook, cell ``id``) to the claims its prose makes. A claim is the
text as the cell reads it, written as a template with one field per number or verdict word, and a
function that computes those fields: from the shipped result (``results/NAME/NAME.json``), from the
notebook's own committed outputs (the quick run's printed numbers), or from the paper's numbers as
the package records them (``proxylab.training_grids.PAPER_TABLE4``, ``PAPER_FIGURE2`` below). Verdict words
("ahead", "within noise", "behind", "grows", "shrinks") come from ``proxylab.report.paired`` /
``verdict``, the rule of the README's table. The test formats each template and asserts the result
appears in the cell (whitespace and the minus sign normalized).

The completeness test reads every markdown cell of the five notebooks: each decimal number,
percentage, signed number, range, "N of M" and fraction in it (outside inline code) must be produced
by a claim's field or listed in the cell's ``EXEMPT`` entry with the reason it is not from data (a
protocol parameter, a section number, a constant); an exemption no longer used fails too.
Reads files only.
"""
from __future__ import annotations

import json
import math
import re
import string
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from proxylab import report, training_grids
from proxylab.training_grids import PAPER_TABLE4, TABLE4_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"05": "05_leaky_relu_statistics.ipynb", "06": "06_class_visualization.ipynb",
             "06b": "06b_are_the_maxima_real.ipynb", "06c": "06c_slope_diagnostic.ipynb", "07": "07_classification_training.ipynb",
             "08": "08_deep_visualization.ipynb"}

# The paper's Figure 2 (text only, see PAPER_NOTES): mean logit (ProxyGrad, ReLU) per panel.
PAPER_FIGURE2 = {("none", 10): (50, 40), ("none", 500): (330, 300), ("paper", 10): (40, 30), ("paper", 500): (130, 100)}


class C(NamedTuple):
    """A claim: the prose as a template (``str.format`` fields for what the data gives) and the
    function computing the fields (a tuple, or one value)."""
    template: str
    values: Callable[[], object]


# --------------------------------------------------------------------------- reading the files
def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2212", "-")).strip()


@cache
def _notebook(nb: str) -> dict:
    return json.loads((ROOT / "notebooks" / NOTEBOOKS[nb]).read_text())


def cell(nb: str, cell_id: str) -> dict:
    found = [c for c in _notebook(nb)["cells"] if c.get("id") == cell_id]
    assert len(found) == 1, f"notebook {nb} has {len(found)} cells with id {cell_id}"
    return found[0]


def markdown(nb: str, cell_id: str) -> str:
    c = cell(nb, cell_id)
    assert c["cell_type"] == "markdown", f"{nb} cell {cell_id} is not a markdown cell"
    return norm("".join(c["source"]))


@cache
def OUT(nb: str, cell_id: str) -> str:
    """The committed text outputs of a code cell (printed text, text/plain and text/markdown)."""
    parts = []
    for o in cell(nb, cell_id).get("outputs", []):
        parts.append("".join(o.get("text", "")))
        for kind in ("text/markdown", "text/plain"):
            parts.append("".join(o.get("data", {}).get(kind, "")))
    return "\n".join(parts)


def out_number(nb: str, cell_id: str, pattern: str) -> float:
    m = re.search(pattern, OUT(nb, cell_id))
    assert m, f"{nb} cell {cell_id}'s output has no {pattern!r}"
    return float(m.group(1))


def ranked(spec: str, column: str, below: str | None = None) -> tuple[str, str]:
    """Notebook 08's ranking (its committed output), ``spec``'s row: the verdict in ``column`` ("next":
    its lead over the rule ranked next, which must be ``below``; "relu": against ReLU) and on how many
    seeds it leads ("every" when all)."""
    rows = re.findall(r"^\| \d+ \| `([^`]+)` \|[^|]*\|[^|]*\|([^|]*)\|([^|]*)\|$", OUT("08", "e775dde0"), re.M)
    specs = [r[0] for r in rows]
    if below is not None:
        assert specs[specs.index(spec) + 1] == below, f"08's ranking puts {specs[specs.index(spec) + 1]} after {spec}"
    m = re.search(r"(\d+)/(\d+) ahead: (ahead|within noise|behind)", rows[specs.index(spec)][1 if column == "next" else 2])
    return m.group(3), "every" if m.group(1) == m.group(2) else f"{m.group(1)} of {m.group(2)}"


@cache
def R(name: str) -> dict:
    return json.loads((ROOT / "results" / name / f"{name}.json").read_text())


def f2_relu_ratio(step: int) -> float:
    """The shipped Figure 2's ReLU logit with this course's regularization over the one without, at ``step``."""
    s = R("figure2")["summary"]
    return s[f"paper/proxygrad/step{step}"]["mean"][0] / s[f"none/proxygrad/step{step}"]["mean"][0]


def mean(v) -> float:
    return sum(v) / len(v)


def word(p: dict, up: str = "grows", down: str = "shrinks") -> str:
    return {"ahead": up, "behind": down}.get(p["verdict"], "within noise")


def span(values, fmt: str, unit: str = "") -> str:
    """``min–max`` of ``values`` in one format (a range as the prose writes it)."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return f"{lo}{unit}" if lo == hi else f"{lo}–{hi}{unit}"


# --------------------------------------------------------------------------- 05: Figure 4, Table 5
def f4_index(slope):
    return R("figure4")["slopes"].index(slope)


def f4(measure, slope):
    return mean(R("figure4")["values"][measure]["Leaky ReLU"][f4_index(slope)])


def f4_growth(measure, slope):
    return 100 * (R("figure4")["leaky_growth"][measure][f4_index(slope)] - 1)


def f4_pred(name, slope):
    return 100 * (R("figure4")["predicted_growth"][name][f4_index(slope)] - 1)


def f4_paired(measure, slope):
    v = R("figure4")["values"][measure]["Leaky ReLU"]
    return report.paired(v[f4_index(slope)], v[0])


def f4_share(slope):
    """The measured per-channel growth as a share of the closed form's, in %."""
    return 100 * f4_growth("per_channel", slope) / f4_pred("variance", slope)


def f4_below_everywhere():
    slopes = R("figure4")["slopes"][1:]
    below = sum(f4_growth("per_channel", s) < f4_pred("variance", s) for s in slopes)
    return "every" if below == len(slopes) else f"{below} of {len(slopes)}"


def f4_proxygrad_flat():
    pg = [R("figure4")["values"][m]["ProxyGrad"] for m in ("per_channel", "whole")]
    relu = [R("figure4")["values"][m]["Leaky ReLU"][0] for m in ("per_channel", "whole")]
    return "flat" if all(row == base for rows, base in zip(pg, relu) for row in rows) else "NOT flat"


def t5(series, slope):
    t = R("table5")
    return t["values"][series][t["slopes"].index(slope)]


def t5_mean(series, slope):
    return 1e4 * mean(t5(series, slope))


def t5_pct(series, slope):
    return 100 * (mean(t5(series, slope)) / mean(t5(series, 0.0)) - 1)


def t5_p(series, slope):
    return report.paired(t5(series, slope), t5(series, 0.0))


T5_EXPECTED = {"without BN/Leaky ReLU": "grows", "without BN/ProxyGrad": "grows", "with BN/Leaky ReLU": "shrinks",
               "with BN/ProxyGrad": "grows"}


def t5_findings_hold():
    slopes = R("table5")["slopes"][1:]
    agree = all(word(t5_p(k, s)) == w for k, w in T5_EXPECTED.items() for s in slopes)
    return "hold" if agree else "do not all hold"


def t5_top():
    return R("table5")["slopes"][-1]


def t5_row(series):
    top, p1 = t5_top(), t5_p(series, 0.01)
    return (word(t5_p(series, top)), t5_mean(series, 0.0), t5_mean(series, top), t5_pct(series, top),
            t5_pct(series, 0.01), p1["ahead"], p1["n"])


def quick_t5(kind: str = "Leaky ReLU", bn: str = "with") -> str:
    """The quick run's trend word for one row of the trend cell (``grows``, ``shrinks``, ``mixed``)."""
    return re.search(rf"{bn} BN, {kind}\s*: gradient (\w+)", OUT("05", "514df8fd")).group(1)


def quick_t5_up_to_table():
    """Whether the quick run's Table 5 row (with BN, Leaky ReLU) shrinks at every column, up to its last slope."""
    row = re.search(r"\| with \| Leaky ReLU \|(.*)\|", OUT("05", "7a5d930f")).group(1)
    means = [float(c.split("±")[0]) for c in row.split("|")]
    return "shrinks" if all(b < a for a, b in zip(means, means[1:])) else "does not shrink"


def t5_without_bn():
    lk, pg, top = "without BN/Leaky ReLU", "without BN/ProxyGrad", t5_top()
    both = {word(t5_p(lk, top)), word(t5_p(pg, top))}
    p_lk, p_pg = t5_p(lk, 0.01), t5_p(pg, 0.01)
    return (both.pop() if len(both) == 1 else "differs", t5_mean(lk, 0.0), t5_mean(lk, top), t5_mean(pg, 0.0),
            t5_mean(pg, top), top, t5_pct(lk, 0.01), p_lk["ahead"], p_lk["n"], t5_pct(pg, 0.01), p_pg["ahead"], p_pg["n"])


# --------------------------------------------------------------------------- 06: Table 3, Figures 2 and 3, diagnostic
def t3(spec):
    return next(r["final_logits"] for r in R("table3")["rows"] if r["spec"] == spec)


def t3_all_higher():
    pg, relu = t3("proxygrad:0.05"), t3("relu")
    k = sum(a > b for a, b in zip(pg, relu))
    return f"all {k}" if k == len(pg) else f"{k} of {len(pg)}"


def t3_paired(spec):
    """Table 3's ``spec`` against ReLU, paired by class: (mean, se, classes ahead, verdict)."""
    p = report.paired(t3(spec), t3("relu"))
    return p["mean"], p["se"], p["ahead"], p["verdict"]


def f2(panel: str, slope: float) -> dict:
    """Figure 2's panel ('none/proxygrad/step10') at a slope: mean, paired difference to ReLU, verdict."""
    row = R("figure2")["summary"][panel]
    i = row["slopes"].index(slope)
    d, se, ahead = row["vs_relu"][i]
    return {"mean": row["mean"][i], "relu": row["mean"][0], "d": d, "se": se, "ahead": ahead, "n": row["classes"],
            "verdict": report.verdict(d, se, ahead, row["classes"]), "pct": 100 * (row["mean"][i] / row["mean"][0] - 1)}


def f2_slopes(panel: str, verdict: str) -> list:
    row = R("figure2")["summary"][panel]
    return [s for s in row["slopes"][1:] if f2(panel, s)["verdict"] == verdict]


def f2_words(panel: str, slopes) -> str:
    words = {f2(panel, s)["verdict"] for s in slopes}
    return words.pop() if len(words) == 1 else "/".join(sorted(words))


def f2_best_ahead(panel: str) -> float:
    ahead = f2_slopes(panel, "ahead")
    return max(ahead, key=lambda s: f2(panel, s)["mean"]) if ahead else None


def f2_least_harmful_leaky() -> float:
    row = R("figure2")["summary"]["paper/leaky/step500"]
    return max(row["slopes"][1:], key=lambda s: f2("paper/leaky/step500", s)["mean"])


def grid2():
    """Figure 2's positive slopes."""
    return R("figure2")["summary"]["none/proxygrad/step10"]["slopes"][1:]


def f2_best_after_500():
    best = R("figure2")["summary"][NONE500]["best_slope"]
    r = f2(NONE500, best)
    return best, r["d"], r["se"], r["ahead"], r["n"], math.ceil(r["pct"]), r["verdict"]


def f2_leaky(step, without, with_):
    """The one verdict of the Leaky panels at ``step`` over these slopes without and with regularization."""
    words = {f2(LK["none", step], s)["verdict"] for s in without} | {f2(LK["paper", step], s)["verdict"] for s in with_}
    return words.pop() if len(words) == 1 else "mixed"


def f2_leaky_behind_from(step, reg):
    """The smallest slope from which every Leaky slope of the ``reg`` panel is behind ReLU."""
    def behind(slopes):
        return {f2(LK[reg, step], x)["verdict"] for x in slopes} == {"behind"}
    return min(s for s in grid2() if s > 0 and behind([x for x in grid2() if x >= s]))


def paper_f2_pct(reg, step):
    pg, relu = PAPER_FIGURE2[(reg, step)]
    return 100 * (pg / relu - 1)


def paper_f2_ratio(step):
    """The paper's regularized score as a fraction of its unregularized one (ProxyGrad), simplest fifths."""
    return str(Fraction(PAPER_FIGURE2[("paper", step)][0], PAPER_FIGURE2[("none", step)][0]).limit_denominator(5))


def f3(spec):
    row = next(r for r in R("figure3")["rows"] if r["spec"] == spec)
    return row["final_logits"][0]


def f3_start():
    starts = {r["start_logits"][0] for r in R("figure3")["rows"]}
    assert len(starts) == 1, starts
    return starts.pop()


def f3_below():
    rows = R("figure3")["rows"]
    k = sum(r["final_logits"][0] < r["start_logits"][0] for r in rows)
    return f"all {'six' if k == 6 else k}" if k == len(rows) else f"{k} of {len(rows)}"


def blur_kernel(sigma: float) -> list:
    """The 1-D kernel of ``regularizers.gaussian_blur`` (torchvision's Gaussian, size max(3, 2⌈3σ⌉ + 1))."""
    k = max(3, 2 * math.ceil(3 * sigma) + 1)
    w = [math.exp(-0.5 * ((i - (k - 1) / 2) / sigma) ** 2) for i in range(k)]
    return [x / sum(w) for x in w]


def quick_reg(label: str) -> float:
    """A quick-run regularization variant's mean logit over the unregularized one's (cell 15's output)."""
    logit = lambda name: out_number("06", "1b746afa", re.escape(name) + r"\s+mean original logit\s+([-\d.]+)")
    return logit(label) / logit("none")


def quick_t3(label: str) -> tuple[float, list[float]]:
    """06's quick Table 3 (cell 094f148a's output): a method's mean original logit and its per-class logits."""
    m = re.search(re.escape(label) + r"\s+mean original logit\s+([-\d.]+)\s+per class \[([^\]]*)\]", OUT("06", "094f148a"))
    assert m, f"06's quick Table 3 has no row {label!r}"
    return float(m.group(1)), [float(v) for v in m.group(2).split(",")]


L0, L1, L2 = "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"


def tr_cell(spec: str, judge: str, step: str = "500", maker: str = L0) -> dict:
    """The shipped transfer grid: ``spec``'s images made on ``maker``, under ``judge``."""
    return R("transfer")["table"][spec][step][maker][judge]


def tr_vs(spec: str, judge: str, step: str = "500", maker: str = L0) -> dict:
    return R("transfer")["vs_relu"][f"{spec}/{step}/{maker}->{judge}"]


def tr_word(specs, *, judges=(L1, L2), maker: str = L0) -> str:
    """The one reading all of ``specs`` get under every judge against ReLU, or "?"."""
    words = {tr_vs(spec, j, maker=maker)["verdict"] for spec in specs for j in judges}
    return words.pop() if len(words) == 1 else "?"


def tr_direction(spec: str) -> str:
    """"higher" / "lower" when ``spec``'s judged probability is above / below ReLU's under both judges."""
    d = [tr_cell(spec, j)["probability"] - tr_cell("relu", j)["probability"] for j in (L1, L2)]
    return "higher" if all(x > 0 for x in d) else "lower" if all(x < 0 for x in d) else "?"


def t3_rerun_rows() -> str:
    """How many of Table 3's rows the transfer grid's Lite0 jobs recomputed to the stored digits."""
    jobs = [json.loads(f.read_text()) for f in (ROOT / "results" / "transfer" / "jobs").glob("*.json")]
    logits = {j["params"]["spec"]: j["result"]["maker_logit"]["500"] for j in jobs if j["params"]["model"] == L0}
    same = sum(logits.get(row["spec"]) == row["final_logits"] for row in R("table3")["rows"])
    return {3: "all three"}.get(same, f"{same} of the")


def lucent_logits(spec: str) -> list[float]:
    """08's lucent run (cell a345893c's output): the per-class original logits of ``spec``."""
    m = re.search(r"lucent render_vis, " + re.escape(spec) + r"\s*: mean original logit\s+[-\d.]+\s+per class \[([^\]]*)\]",
                  OUT("08", "a345893c"))
    assert m, f"08's lucent run has no row {spec!r}"
    return [float(v) for v in m.group(1).split(",")]


def lucent_reading() -> tuple:
    """How many classes the lucent ProxyGrad run ends above ReLU's, the one it gains most on, the ones below."""
    from proxylab import models
    proxy, relu = lucent_logits("proxygrad:0.05"), lucent_logits("relu")
    names = models.PAPER_CLASSES[:len(relu)]
    gains = [p - r for p, r in zip(proxy, relu)]
    return (f"{sum(g > 0 for g in gains)} of {len(gains)}", names[gains.index(max(gains))],
            " and the ".join(n for n, g in zip(names, gains) if g < 0))


def quick_t3_order() -> str:
    means = [quick_t3(label)[0] for label in ("ProxyGrad 0.05", "ReLU", "Leaky ReLU 0.01")]
    return "the shipped table's" if means == sorted(means, reverse=True) and t3_order() == "high to low" else "?"


def t3_order() -> str:
    means = [mean(t3(spec)) for spec in ("proxygrad:0.05", "relu", "leaky:0.01")]
    return "high to low" if means == sorted(means, reverse=True) else "?"


def quick_t3_ahead() -> str:
    proxy, relu = quick_t3("ProxyGrad 0.05")[1], quick_t3("ReLU")[1]
    return f"{sum(p > r for p, r in zip(proxy, relu))} of {len(relu)}"


def quick_t3_behind() -> str:
    """The classes where the quick ProxyGrad 0.05 run is behind ReLU, as the prose names them."""
    from proxylab import models
    proxy, relu = quick_t3("ProxyGrad 0.05")[1], quick_t3("ReLU")[1]
    names = [name for name, p, r in zip(models.PAPER_CLASSES, proxy, relu) if p < r]
    return " and the ".join(names)


def quick_f2() -> dict:
    """06's quick Figure 2 (cell 4405b993's output): (regularized, steps) -> {slope: (ProxyGrad, Leaky ReLU)},
    each as a multiple of ReLU's mean logit."""
    panels = {}
    for m in re.finditer(r"^(with|no)\s+regularization,\s+(\d+) steps, x ReLU: (.*)$", OUT("06", "4405b993"), re.M):
        panels[m.group(1) == "with", int(m.group(2))] = {
            float(s): (float(p), float(q)) for s, p, q in re.findall(r"([\d.]+): (-?[\d.]+) / (-?[\d.]+)", m.group(3))}
    assert len(panels) == 4, f"06's quick Figure 2 prints {len(panels)} panels"
    return panels


def quick_f2_reading() -> tuple:
    panels = quick_f2().values()
    good = [p[s][0] for p in panels for s in (0.05, 0.1)]
    return ("above" if min(good) > 1 else "?", span(good, ".2f"),
            "near zero" if all(abs(p[0.3][0]) < 0.1 for p in panels) else "?",
            "below" if all(v[1] < 1 for p in panels for v in p.values()) else "?")


PANELS = lambda: R("diagnostic")["panels"]


def dg_per_class():
    return [r["suggested_over_best"] for p in PANELS().values() for r in p["per_class"] if r["suggested_over_best"] is not None]


def dg_best_fixed(key):
    return max(PANELS()[key]["fixed_over_best"].values())


def dg_vs_relu(key):
    rows = [r for r in PANELS()[key]["per_class"] if r["suggested_over_best"] is not None]
    return report.paired([r["suggested_over_best"] for r in rows], [r["relu_over_best"] for r in rows])["verdict"]


def dg_count_vs_relu(verdict):
    return sum(dg_vs_relu(k) == verdict for k in PANELS())


def dg_best_slopes(key):
    return [r["best_slope"] for r in PANELS()[key]["per_class"]]


def dg_at_top(step):
    ps = [p for p in PANELS().values() if p["step"] == step]
    return sum(p["best_at_or_below_top"] for p in ps), sum(p["classes"] for p in ps)


def dg_by_little():
    """The panels where the range's top is below the best fixed slope by under 0.01, as the prose lists them."""
    return [(PANELS()[k]["suggested_over_best_mean"], dg_best_fixed(k)) for k in PANELS()
            if 0 < dg_best_fixed(k) - PANELS()[k]["suggested_over_best_mean"] < 0.01]


# --------------------------------------------------------------------------- 06b: certified maxima
def cert(rule, key="gap_best_of_restarts"):
    return [100 * v[rule][key] for v in R("certify")["summary"].values()]


def cert_verdicts(slopes):
    s = R("certify")["summary"]
    return [report.paired(s[n]["relu"]["gap_best_per_class"], s[n][f"proxygrad:{x:g}"]["gap_best_per_class"])["verdict"]
            for n in s for x in slopes]


LABEL = {"relu": "ReLU", "proxygrad:0.01": "ProxyGrad 0.01"}


def cert_words(slopes):
    """The verdicts of ReLU against ProxyGrad at these slopes, as the prose words them (a smaller gap is ahead)."""
    words = set(cert_verdicts(slopes))
    return {frozenset({"within noise", "behind"}): "within noise or slightly behind"}.get(frozenset(words), "/".join(sorted(words)))


def cert_pg_slopes():
    return sorted({float(k.split(":")[1]) for r in R("certify")["summary"].values() for k in r if k.startswith("proxygrad")})


def cert_rerun_longer():
    return sorted({k for r in R("certify")["summary"].values() for k, v in r.items() if v["gap_best_long"] is not None})


def cert_scaling(widths):
    return next(s["lp"] for s in R("certify")["scaling"] if s["widths"] == widths)


# --------------------------------------------------------------------------- 07: Table 4
def acc(arch, act):
    return R("table4")["accuracies"][f"fashion-mnist/{arch}/{act}"]


def t4(arch, act, base="relu"):
    return report.paired(acc(arch, act), acc(arch, base))


def t4_pm(arch, act, base="relu"):
    p = t4(arch, act, base)
    return f"{p['mean']:+.2f} ± {p['se']:.2f}"


ACTS = ["proxygrad:0.01", "proxygrad:0.1", "proxygrad:0.2", "leaky:0.01", "leaky:0.1", "leaky:0.2"]


def t4_words(arch, acts):
    """The one verdict of these activations against ReLU (or "a/b" when they differ)."""
    words = {t4(arch, a)["verdict"] for a in acts}
    return words.pop() if len(words) == 1 else "/".join(sorted(words))


def t4_leaky_vs_pg(arch, slopes):
    """The one verdict of Leaky ReLU against ProxyGrad at the same slopes (paired by seed)."""
    words = {t4(arch, f"leaky:{s}", f"proxygrad:{s}")["verdict"] for s in slopes}
    return words.pop() if len(words) == 1 else "/".join(sorted(words))


def paper_gain(dataset, arch):
    row = dict(zip(TABLE4_COLUMNS, PAPER_TABLE4[(dataset, arch)][::2]))
    return [row[a] - row["relu"] for a in TABLE4_COLUMNS[1:]]


def paper_pfnet_gap():
    """The largest |ProxyGrad - Leaky| at the same slope over the paper's PFNet18 rows, in points."""
    gaps = []
    for ds in ("caltech101", "cub200", "flowers102"):
        row = dict(zip(TABLE4_COLUMNS, PAPER_TABLE4[(ds, "pfnet18")][::2]))
        gaps += [abs(row[f"proxygrad:{s}"] - row[f"leaky:{s}"]) for s in ("0.01", "0.1", "0.2")]
    return max(gaps)


def paper_best(dataset, arch):
    row = dict(zip(TABLE4_COLUMNS, PAPER_TABLE4[(dataset, arch)][::2]))
    best = max(row, key=row.get)
    return f"ProxyGrad {best.split(':')[1]}" if best.startswith("proxygrad") else best


# --------------------------------------------------------------------------- the registry
NONE10, NONE500, REG10, REG500 = ("none/proxygrad/step10", "none/proxygrad/step500", "paper/proxygrad/step10",
                                  "paper/proxygrad/step500")
LK = {(k, s): f"{k}/leaky/step{s}" for k in ("none", "paper") for s in (10, 500)}

CLAIMS: dict[tuple[str, str], list[C]] = {
    # ---------------------------------------------------------------- notebook 05
    ("05", "75375e93"): [  # the two measures' closed-form predictions
        C(r"like $\sqrt{{\mathrm{{Var}}[Y]}}$ ({:+.0f} % from $a = 0$ to $1$)", lambda: f4_pred("variance", 1.0)),
        C("({:+.0f} %), since a channel's mean", lambda: f4_pred("second moment", 1.0)),
    ],
    ("05", "d07681d7"): [  # reading Figure 4
        C("({} random networks per slope", lambda: len(R("figure4")["values"]["whole"]["Leaky ReLU"][0])),
        C(r"$\sigma_B$ {} from {:.2f} at slope 0 to {:.2f} at slope 1, {:+.0f} %",
          lambda: (word(f4_paired("per_channel", 1.0)), f4("per_channel", 0.0), f4("per_channel", 1.0),
                   f4_growth("per_channel", 1.0))),
        C("steadily from the smallest slopes on ({:+.0f} % at 0.1, {:+.0f} % at 0.3)",
          lambda: (f4_growth("per_channel", 0.1), f4_growth("per_channel", 0.3))),
        C("which predicts {:+.0f} % at 1 and {:+.0f} % at 0.3, but stays below that one-layer prediction at {} slope",
          lambda: (f4_pred("variance", 1.0), f4_pred("variance", 0.3), f4_below_everywhere())),
        C("({:.0f} % of the predicted growth at 0.1, {:.0f} % at 1)", lambda: (f4_share(0.1), f4_share(1.0))),
        C("the std {} from {:.2f} to {:.2f}, {:+.0f} %, and hardly at all up to 0.3 ({:+.0f} % at 0.3)",
          lambda: (word(f4_paired("whole", 1.0)), f4("whole", 0.0), f4("whole", 1.0), f4_growth("whole", 1.0),
                   f4_growth("whole", 0.3))),
        C("which predicts {:+.0f} % at 1 and {:+.0f} % at 0.3, again from below",
          lambda: (f4_pred("second moment", 1.0), f4_pred("second moment", 0.3))),
        C("(at 0.1 it is {:.3f} of ReLU's, {}: {} of {} networks up)",
          lambda: (1 + f4_growth("whole", 0.1) / 100, f4_paired("whole", 0.1)["verdict"], f4_paired("whole", 0.1)["ahead"],
                   f4_paired("whole", 0.1)["n"])),
        C("so both curves are {} at ReLU's values", f4_proxygrad_flat),
    ],
    ("05", "56a86133"): [  # the quick run's trend, before the full protocol
        C("the Leaky gradient with BatchNorm is smallest at slope {:g}, not at the largest slope, so its trend "
          'from 0.1 up reads "{}"',
          lambda: (out_number("05", "514df8fd", r"with BN, Leaky ReLU: .*?smallest at slope ([\d.]+)"), quick_t5())),
        C("the full protocol below stops at slope {:g}, where the quick run's gradient still {} too",
          lambda: (t5_top(), quick_t5_up_to_table())),
    ],
    ("05", "4a349fd2"): [  # reading Table 5
        C("(all {} repeats)", lambda: t5_p("with BN/Leaky ReLU", t5_top())["n"]),
        C("All three of the paper's findings {}, from the smallest slope on", t5_findings_hold),
        C("without BatchNorm the gradient {} with the slope for both kinds ({:.3f} → {:.3f} for Leaky ReLU and "
          "{:.3f} → {:.3f} for ProxyGrad, ×10⁻⁴, from slope 0 to {:g}; already {:+.1f} % ({} of {} repeats up) and "
          "{:+.1f} % ({} of {}) at 0.01)", t5_without_bn),
        C("with BatchNorm it *{}* for Leaky ReLU networks ({:.3f} → {:.3f}, {:+.0f} %; {:+.1f} % at 0.01, {} of {} up)",
          lambda: t5_row("with BN/Leaky ReLU")),
        C("*{}* for ProxyGrad ({:.3f} → {:.3f}, {:+.0f} %; {:+.1f} % at 0.01, {} of {} up)",
          lambda: t5_row("with BN/ProxyGrad")),
    ],
    # ---------------------------------------------------------------- notebook 06
    ("06", "8061e967"): [  # Table 3's slopes are Figure 2's
        C("ProxyGrad {:g}, the best regularized slope after 500 steps, and Leaky ReLU {:g}, the least harmful Leaky slope",
          lambda: (f2_best_ahead(REG500), f2_least_harmful_leaky())),
        C("ProxyGrad {:g}, the best regularized", lambda: float(R("table3")["rows"][2]["spec"].split(":")[1])),
        C("and Leaky ReLU {:g}, the least harmful", lambda: float(R("table3")["rows"][1]["spec"].split(":")[1])),
    ],
    ("06", "6664e80d"): [  # reading Table 3, and the first run that Figure 2 still holds
        C("logit for {} classes (mean {:.1f} against ReLU's {:.1f} and the Leaky ReLU network's {:.1f})",
          lambda: (t3_all_higher(), mean(t3("proxygrad:0.05")), mean(t3("relu")), mean(t3("leaky:0.01")))),
        C("paired by class {:+.1f} ± {:.1f}, {}", lambda: t3_paired("proxygrad:0.05")[:2] + t3_paired("proxygrad:0.05")[3:]),
        C("the Leaky ReLU network is {} ReLU ({:+.1f} ± {:.1f}, {} of {})",
          lambda: ("behind" if t3_paired("leaky:0.01")[3] == "behind" else "?", *t3_paired("leaky:0.01")[:3], len(t3("relu")))),
        C("ReLU's bucket ({:.1f} then {:.1f})", lambda: (R("figure2")["runs"]["paper"]["proxygrad"][0]["per_class"]["500"][4],
                                                      t3("relu")[4])),
        C("had ProxyGrad {} for all {} classes ({:.1f} against ReLU's {:.1f})",
          lambda: (f2(REG500, 0.05)["verdict"], f2(REG500, 0.05)["ahead"], f2(REG500, 0.05)["mean"], f2(REG500, 0.05)["relu"])),
        C("ran {} rows again on one thread", t3_rerun_rows),
        C("ReLU's with probability {:.2f} under Lite1 and {:.2f} under\nLite2, its class among their first five for {} and {} of {} classes",
          lambda: (tr_cell("relu", L1)["probability"], tr_cell("relu", L2)["probability"], tr_cell("relu", L1)["top5"],
                   tr_cell("relu", L2)["top5"], tr_cell("relu", L1)["classes"])),
        C("ProxyGrad's images score {} under\nboth ({:.2f} and {:.2f}), but paired by class that is {} ({:+.2f} ± {:.2f} and {:+.2f} ± {:.2f}, {} and {} of\n{} classes ahead)",
          lambda: (tr_direction("proxygrad:0.05"), tr_cell("proxygrad:0.05", L1)["probability"],
                   tr_cell("proxygrad:0.05", L2)["probability"], tr_word(["proxygrad:0.05"]),
                   tr_vs("proxygrad:0.05", L1)["mean"], tr_vs("proxygrad:0.05", L1)["se"],
                   tr_vs("proxygrad:0.05", L2)["mean"], tr_vs("proxygrad:0.05", L2)["se"],
                   tr_vs("proxygrad:0.05", L1)["ahead"], tr_vs("proxygrad:0.05", L2)["ahead"], tr_vs("proxygrad:0.05", L1)["n"])),
        C("the Leaky ReLU network's are {} under both", lambda: tr_word(["leaky:0.01"])),
    ],
    ("06", "8d18478d"): [  # the blur's kernel, from the blur's own formula
        C(r"$\sigma = 0.5$ px ({}-tap kernel [{:.4f}, {:.3f}, {:.3f}, {:.3f}, {:.4f}]",
          lambda: (len(blur_kernel(0.5)), *blur_kernel(0.5))),
        C(r"$\sigma = 0.3$, the first guess, is [{:.3f}, {:.3f}, {:.3f}]", lambda: tuple(blur_kernel(0.3))),
    ],
    ("06", "8054b64a"): [  # the quick run's regularization variants (cell 1b746afa's output) and the paper's ratios
        C("costs {:.0f} % (rotation) and {:.0f} % (blur) of the logit in this run; both together keep {:.0f} % of it",
          lambda: (100 * (1 - quick_reg("rotation ±1° only")), 100 * (1 - quick_reg("blur σ=0.5 only")),
                   100 * quick_reg("both (this course's R)"))),
        C("scores are about {} of its unregularized ones after 10 steps and {} after 500",
          lambda: (paper_f2_ratio(10), paper_f2_ratio(500))),
        C("this course's choice keeps less (for ReLU about {} after 10 steps and a\nquarter after 500)",
          lambda: "half" if 0.45 < f2_relu_ratio(10) < 0.6 and 0.2 < f2_relu_ratio(500) < 0.3 else "?"),
    ],
    ("06", "a0c6e004"): [  # the quick Table 3 (cell 094f148a's output) against the shipped one
        C("The means come in {} order, ProxyGrad {:.1f}, ReLU {:.1f} and the Leaky ReLU network {:.1f}, and ProxyGrad "
          "is ahead of ReLU for {} classes only (it is behind for the {})",
          lambda: (quick_t3_order(), *(quick_t3(label)[0] for label in ("ProxyGrad 0.05", "ReLU", "Leaky ReLU 0.01")),
                   quick_t3_ahead(), quick_t3_behind())),
    ],
    ("06", "a1fd3443"): [  # the quick Figure 2's shape (cell 4405b993's output)
        C("In this run ProxyGrad is {} the line at 0.05 and 0.1 in all four panels ({} times ReLU's logit) and {} at "
          "0.3; the Leaky ReLU networks are {} it at every slope", quick_f2_reading),
    ],
    ("06", "700bb16a"): [  # reading Figure 2
        C("(all {} jobs of the grid)", lambda: R("figure2")["provenance"]["jobs_finished"]),
        C("$t = {:.2f}$, Student's 95 % quantile for {} classes",
          lambda: (report.critical_t(f2(NONE10, 0.02)["n"]), f2(NONE10, 0.02)["n"])),
        C("picked after the fact from {} slopes", lambda: len(R("figure2")["summary"][NONE10]["slopes"]) - 1),
        C("after 10 steps, ProxyGrad is {} of ReLU at some slopes", lambda: f2(NONE10, 0.02)["verdict"]),
        C("Slope {:g}: {:.1f} against ReLU's {:.1f}, {:+.1f} ± {:.1f}, higher for {} of {} classes ({:+.0f} %)",
          lambda: (f2_best_ahead(NONE10), *(f2(NONE10, f2_best_ahead(NONE10))[k]
                                            for k in ("mean", "relu", "d", "se", "ahead", "n", "pct")))),
        C("0.05: {:+.1f} ± {:.1f} ({} of {}), {}.", lambda: tuple(f2(NONE10, 0.05)[k] for k in ("d", "se", "ahead", "n", "verdict"))),
        C("Slope 0.1 has {} as 0.02 but a larger spread ({:+.1f} ± {:.1f}, {} of {}): {}",
          lambda: ("the same mean" if f"{f2(NONE10, 0.1)['mean']:.1f}" == f"{f2(NONE10, 0.02)['mean']:.1f}" else "?",
                   *(f2(NONE10, 0.1)[k] for k in ("d", "se", "ahead", "n", "verdict")))),
        C("The paper reports ≈ 50 against 40 ({:+.0f} %) on its ResNet18", lambda: paper_f2_pct("none", 10)),
        C("after 500 steps, no slope is {}.", lambda: "ahead" if not f2_slopes(NONE500, "ahead") else "ahead?"),
        C("The best, {:g}, is {:+.1f} ± {:.1f} ({} of {} classes, under {:.0f} %): {}", f2_best_after_500),
        C("0.02 is {} too, and from 0.05 on ProxyGrad is clearly *{}* ReLU",
          lambda: (f2(NONE500, 0.02)["verdict"], f2_words(NONE500, [0.05, 0.1, 0.2, 0.3]))),
        C("The paper reports ≈ 330 against 300 ({:+.0f} %): behind the paper here", lambda: paper_f2_pct("none", 500)),
        C("({} ahead after 10 steps, none after 500, 0.05 already {})",
          lambda: (span(f2_slopes(NONE10, "ahead"), "g"), f2(NONE500, 0.05)["verdict"])),
        C("**Leaky ReLU networks are {} ReLU at every slope after 500 steps**", lambda: f2_leaky(500, grid2(), grid2())),
        C("(e.g. {:+.1f} ± {:.1f} at 0.01 without, {} of {} classes ahead; {:+.1f} ± {:.1f} with, {} of {})",
          lambda: (*(f2(LK["none", 500], 0.01)[k] for k in ("d", "se", "ahead", "n")),
                   *(f2(LK["paper", 500], 0.01)[k] for k in ("d", "se", "ahead", "n")))),
        C("After 10 steps the smallest slopes are {} (0.01 without regularization: {:+.1f} ± {:.1f}, {} of {} ahead; "
          "0.01 and 0.02 with it) and the larger ones {}",
          lambda: (f2_leaky(10, [0.01], [0.01, 0.02]), *(f2(LK["none", 10], 0.01)[k] for k in ("d", "se", "ahead", "n")),
                   f2_leaky(10, grid2()[1:], grid2()[2:]))),
        C("and for short runs from slope {:g} on without regularization and from {:g} on with it",
          lambda: (f2_leaky_behind_from(10, "none"), f2_leaky_behind_from(10, "paper"))),
        C("After 10 steps slopes 0.05 and 0.1 are {}, {:+.1f} ± {:.1f} and {:+.1f} ± {:.1f} over ReLU's {:.1f} "
          "({} of {} classes, about {:+.0f} %; paper ≈ 40 vs 30, {:+.0f} %), while 0.01 and 0.02 are {}",
          lambda: (f2_words(REG10, [0.05, 0.1]), f2(REG10, 0.05)["d"], f2(REG10, 0.05)["se"], f2(REG10, 0.1)["d"],
                   f2(REG10, 0.1)["se"], f2(REG10, 0.1)["relu"], min(f2(REG10, 0.05)["ahead"], f2(REG10, 0.1)["ahead"]),
                   f2(REG10, 0.1)["n"], max(f2(REG10, 0.05)["pct"], f2(REG10, 0.1)["pct"]), paper_f2_pct("paper", 10),
                   f2_words(REG10, [0.01, 0.02]))),
        C("after 500 steps only slope {} is ahead, {:.1f} against {:.1f}, {:+.1f} ± {:.1f}, {} of {} classes "
          "({:+.0f} %; paper ≈ 130 vs 100, {:+.0f} %)",
          lambda: (span(f2_slopes(REG500, "ahead"), "g"), *(f2(REG500, f2_best_ahead(REG500))[k]
                                                            for k in ("mean", "relu", "d", "se", "ahead", "n", "pct")),
                   paper_f2_pct("paper", 500))),
        C("and there ProxyGrad is {}\n  ({:+.1f} ± {:.1f}, {} of 8)", lambda: (t3_paired("proxygrad:0.05")[3], *t3_paired("proxygrad:0.05")[:3])),
    ],
    ("06", "6c6201d2"): [  # reading Figure 3
        C("But {} runs of the full protocol end *below* the logit of their start image ({:.1f}): ProxyGrad at 1, 3 and 10 "
          "ends at {:.1f}, {:.1f} and {:.1f}, the Leaky ReLU network at {:.1f}, {:.1f} and {:.1f}",
          lambda: (f3_below(), f3_start(), *(f3(f"{k}:{s}") for k in ("proxygrad", "leaky") for s in (1, 3, 10)))),
    ],
    ("06c", "e75e8503"): [  # reading the diagnostic's record
        C("lands in or next to it for {} of {} class panels",
          lambda: (sum(p["inside_or_next"] for p in PANELS().values()), sum(p["classes"] for p in PANELS().values()))),
        C("the score at the range's top is {} of a class's best ({} as a mean over a panel's classes), below the best "
          "*fixed* slope in all {} panels",
          lambda: (span([100 * x for x in dg_per_class()], ".0f", " %"),
                   span([100 * p["suggested_over_best_mean"] for p in PANELS().values()], ".0f", " %"),
                   {6: "six"}.get(sum(p["suggested_over_best_mean"] < dg_best_fixed(k) for k, p in PANELS().items()), "?")
                   if all(p["suggested_over_best_mean"] < dg_best_fixed(k) for k, p in PANELS().items()) else "?")),
        C("(by little in two: {:.3f} vs {:.3f} and {:.3f} vs {:.3f}",
          lambda: tuple(x for pair in dg_by_little() for x in pair)),
        C("by much on EfficientNet-Lite0 after 500 steps without regularization: {:.3f} against {:.3f}, where slope {:g} is "
          "best for {} of {} classes",
          lambda: (PANELS()["efficientnet-lite0/none/step500"]["suggested_over_best_mean"],
                   dg_best_fixed("efficientnet-lite0/none/step500"),
                   max(set(dg_best_slopes("efficientnet-lite0/none/step500")), key=dg_best_slopes("efficientnet-lite0/none/step500").count),
                   max(dg_best_slopes("efficientnet-lite0/none/step500").count(s) for s in dg_best_slopes("efficientnet-lite0/none/step500")),
                   PANELS()["efficientnet-lite0/none/step500"]["classes"])),
        C("the range's top is {} in one panel (EfficientNet-Lite0, 500 steps without regularization: {:.3f} vs {:.3f}), "
          "{} in one (EfficientNet-Lite0, 10 steps with regularization) and {} in the other {}",
          lambda: (dg_vs_relu("efficientnet-lite0/none/step500"),
                   PANELS()["efficientnet-lite0/none/step500"]["suggested_over_best_mean"],
                   PANELS()["efficientnet-lite0/none/step500"]["relu_over_best_mean"],
                   dg_vs_relu("efficientnet-lite0/paper/step10"),
                   "within noise" if dg_count_vs_relu("within noise") == 4 else "?",
                   {4: "four"}.get(dg_count_vs_relu("within noise")))),
        C("(without regularization on EfficientNet-Lite0, {} after 10 steps and {} after 500)",
          lambda: (span(dg_best_slopes("efficientnet-lite0/none/step10"), "g"),
                   span(dg_best_slopes("efficientnet-lite0/none/step500"), "g"))),
        C("({} of {} class panels), while after 10 steps it does for {} of {}",
          lambda: (*dg_at_top(500), dg_at_top(10)[1] - dg_at_top(10)[0], dg_at_top(10)[1])),
    ],
    # ---------------------------------------------------------------- notebook 06b
    ("06b", "4dda85e0"): [  # reading the certified maxima
        C("Its best start ends {} below it, and a run three times longer closes that to {}",
          lambda: (span(cert("relu"), ".2f", " %"), span(cert("relu", "gap_best_long"), ".2f", " %"))),
        C("Single runs end within 1 % in {} of the cases; the other {} were not rerun longer",
          lambda: (span(cert("relu", "within_1pct"), ".0f", " %"), span([100 - x for x in cert("relu", "within_1pct")], ".0f", " %"))),
        C("It is {} of ReLU in none of the {} (network, slope) settings",
          lambda: ("ahead" if "ahead" not in cert_verdicts(cert_pg_slopes()) else "ahead?", len(cert_verdicts(cert_pg_slopes())))),
        C("{} at 0.01–0.03, {} from 0.1 on (0.3: {}, 1: {})",
          lambda: (cert_words([0.01, 0.03]), cert_words([0.1, 0.3, 1]),
                   span(cert("proxygrad:0.3"), ".1f", " %"), span(cert("proxygrad:1"), ".0f", " %"))),
        C("guided backprop and deconvnet ({}) and the noisy rule ({})",
          lambda: (span(cert("guided") + cert("deconvnet"), ".0f", " %"), span(cert("noisy:0.3"), ".1f", " %"))),
        C("only {} were rerun longer", lambda: " and ".join(LABEL.get(r, r) for r in reversed(cert_rerun_longer()))),
        C("Redirected ReLU, which redirects only in its first 16 steps, ends {} ReLU ends",
          lambda: "where" if cert("redirected") == cert("relu") else "near where"),
        C("one hidden layer of 64 units certifies in {:.0f} s and two of 32 in {:.0f} s, while 128 units and two layers "
          "of 48 {} after 60 s (proven gaps {:.0f} % and {:.0f} %)",
          lambda: (cert_scaling([64])["seconds"], cert_scaling([32, 32])["seconds"],
                   "stay open" if not (cert_scaling([128])["optimal"] or cert_scaling([48, 48])["optimal"]) else "certify",
                   100 * cert_scaling([128])["gap"], 100 * cert_scaling([48, 48])["gap"])),
    ],
    # ---------------------------------------------------------------- notebook 07
    ("07", "fc5494a0"): [  # the live run is the shipped grid
        C("{} runs (ResNet18 and PFNet18 × {} activations × {} seeds, {} epochs on {:,} images; about {:.1f} CPU hours",
          lambda: (R("table4")["provenance"]["jobs"], len(ACTS) + 1, len(acc("resnet18", "relu")),
                   R("table4")["setting"]["epochs"], R("table4")["setting"]["subset"],
                   R("table4")["provenance"]["job_seconds_total"] / 3600)),
        C("one seed, and {} epochs on {:,} images", lambda: (training_grids.TABLE4_QUICK["epochs"], training_grids.TABLE4_QUICK["subset"])),
    ],
    ("07", "b0346c9b"): [  # reading Table 4
        C("{} runs: 2 nets × 7 activations × {} seeds", lambda: (sum(map(len, R("table4")["accuracies"].values())), len(acc("resnet18", "relu")))),
        C("{:,} training and {:,} test images at {} px, {} epochs",
          lambda: (R("table4")["setting"]["subset"],) * 2 + (R("table4")["setting"]["image_size"], R("table4")["setting"]["epochs"])),
        C("(about {:.0f} % for ResNet18", lambda: mean(acc("resnet18", "relu"))),
        C("with $t = {:.2f}$ (Student's 95 % quantile for {} seeds)",
          lambda: (report.critical_t(len(acc("resnet18", "relu"))), len(acc("resnet18", "relu")))),
        C("Against ReLU ({:.1f} %) every slope of both kinds is {:+.2f} to {:+.2f} points, all {}",
          lambda: (mean(acc("resnet18", "relu")), min(t4("resnet18", a)["mean"] for a in ACTS),
                   max(t4("resnet18", a)["mean"] for a in ACTS), t4_words("resnet18", ACTS))),
        C("(e.g. ProxyGrad 0.1 {}, Leaky ReLU 0.2 {})", lambda: (t4_pm("resnet18", "proxygrad:0.1"), t4_pm("resnet18", "leaky:0.2"))),
        C("Leaky minus ProxyGrad at the same slope (same seed) is {}, {} and {} at 0.01, 0.1 and 0.2, {} too",
          lambda: (*(t4_pm("resnet18", f"leaky:{s}", f"proxygrad:{s}") for s in ("0.01", "0.1", "0.2")),
                   t4_leaky_vs_pg("resnet18", ["0.01", "0.1", "0.2"]))),
        C("gains over ReLU ({:+.1f} to {:+.1f} points in its Table 4)",
          lambda: (min(paper_gain("caltech101", "resnet18")), max(paper_gain("caltech101", "resnet18")))),
        C("ProxyGrad 0.2 is {} of ReLU ({:.1f} %; {}, {} of {} seeds) while 0.01 and 0.1 are {} ({}, {})",
          lambda: (t4("pfnet18", "proxygrad:0.2")["verdict"], mean(acc("pfnet18", "relu")), t4_pm("pfnet18", "proxygrad:0.2"),
                   t4("pfnet18", "proxygrad:0.2")["ahead"], t4("pfnet18", "proxygrad:0.2")["n"],
                   t4_words("pfnet18", ["proxygrad:0.01", "proxygrad:0.1"]), t4_pm("pfnet18", "proxygrad:0.01"),
                   t4_pm("pfnet18", "proxygrad:0.1"))),
        C("every Leaky slope is {} ({} at 0.01 up to {} at 0.2)",
          lambda: (t4_words("pfnet18", ["leaky:0.01", "leaky:0.1", "leaky:0.2"]), t4_pm("pfnet18", "leaky:0.01"),
                   t4_pm("pfnet18", "leaky:0.2"))),
        C("Leaky ReLU is {} of ProxyGrad at 0.1 and 0.2 ({}, {}) and {} at 0.01",
          lambda: (t4_leaky_vs_pg("pfnet18", ["0.1", "0.2"]),
                   t4_pm("pfnet18", "leaky:0.1", "proxygrad:0.1"), t4_pm("pfnet18", "leaky:0.2", "proxygrad:0.2"),
                   t4_leaky_vs_pg("pfnet18", ["0.01"]))),
        C("where the two are within about {:.0f} point on PFNet18 and {} is best on Caltech101",
          lambda: (paper_pfnet_gap(), paper_best("caltech101", "pfnet18"))),
    ],
    ("06b", "ab086108"): [  # reading the judged grid (partial)
        C("a partial grid: {} of its {} jobs", lambda: (R("transfer")["provenance"]["jobs_finished"], R("transfer")["provenance"]["jobs"])),
        C("ReLU's get the target probability\n{:.2f} (Lite1) and {:.2f} (Lite2) after 500 steps",
          lambda: (tr_cell("relu", L1)["probability"], tr_cell("relu", L2)["probability"])),
        C("and {:.2f} and {:.2f} after 10 steps", lambda: (tr_cell("relu", L1, "10")["probability"], tr_cell("relu", L2, "10")["probability"])),
        C("ProxyGrad 0.05 and the redirected ReLU stay near\nReLU, {} under both judges (ProxyGrad {}, {:.2f} and {:.2f}; the redirected ReLU {})",
          lambda: (tr_word(["proxygrad:0.05", "redirected"]), tr_direction("proxygrad:0.05"),
                   tr_cell("proxygrad:0.05", L1)["probability"], tr_cell("proxygrad:0.05", L2)["probability"],
                   tr_direction("redirected"))),
        C("The Leaky ReLU network is {} ReLU under both judges but still recognized ({:.2f} under Lite1)",
          lambda: (tr_word(["leaky:0.01"]), tr_cell("leaky:0.01", L1)["probability"])),
        C("Guided backprop, deconvnet and the noisy rule are {} ReLU under both judges and\nscore {} under both",
          lambda: (tr_word(["guided", "deconvnet", "noisy:0.3"]),
                   "below 0.01" if max(tr_cell(r, j)["probability"] for r in ("guided", "deconvnet", "noisy:0.3")
                                      for j in (L1, L2)) < 0.01 else "?")),
        C("After 10 steps the judges cannot yet tell the rules apart: every difference to\nReLU is {} under both",
          lambda: ({tr_vs(r, j, "10")["verdict"] for r in R("transfer")["table"] if r != "relu" for j in (L1, L2)}
                   == {"within noise"} and "within noise" or "?")),
        C("(ProxyGrad's is\n{}, guided backprop's {})",
          lambda: (R("transfer")["maker_vs_relu"]["proxygrad:0.05/10/efficientnet-lite0"]["verdict"],
                   R("transfer")["maker_vs_relu"]["guided/10/efficientnet-lite0"]["verdict"])),
        C("Made on Lite1, ReLU's images get {:.2f} (Lite0) and {:.2f} (Lite2) after 500 steps",
          lambda: (tr_cell("relu", L0, maker=L1)["probability"], tr_cell("relu", L2, maker=L1)["probability"])),
        C("ProxyGrad 0.05's get {:.2f} and {:.2f}, {} under both, while its own Lite1 logit is {} of ReLU's",
          lambda: (tr_cell("proxygrad:0.05", L0, maker=L1)["probability"], tr_cell("proxygrad:0.05", L2, maker=L1)["probability"],
                   tr_word(["proxygrad:0.05"], judges=(L0, L2), maker=L1),
                   R("transfer")["maker_vs_relu"]["proxygrad:0.05/500/efficientnet-lite1"]["verdict"])),
        C("Guided backprop and deconvnet are {} again",
          lambda: ("near 0" if max(tr_cell(r, j, maker=L1)["probability"] for r in ("guided", "deconvnet") for j in (L0, L2)) < 0.01
                   else "?",)),
    ],
    # ---------------------------------------------------------------- notebook 08 (no shipped result; its quick run's outputs)
    ("08", "9c4e2f17"): [  # the lucent run (cell a345893c's output)
        C("ends with a higher\noriginal logit for {} classes (the {} most) and a lower one for the {}", lucent_reading)],
    ("08", "1c118289"): [
        C("Against ReLU, in the committed quick run, ProxyGrad leads on {} seed yet is {}",
          lambda: (ranked("proxygrad:0.05", "relu")[1], ranked("proxygrad:0.05", "relu")[0])),
        C("The noisy rule's smaller, steadier lead over ReLU is {}, and ProxyGrad's lead over the noisy rule is {}",
          lambda: (ranked("noisy:0.05", "relu")[0], ranked("proxygrad:0.05", "next", below="noisy:0.05")[0]))],
}

# Numbers in the reading cells that are not from data: why each is there. Keys: the tokens, ", "-separated.
GRID = "protocol: a slope of the experiment's grid"
EXEMPT: dict[tuple[str, str], dict[str, str]] = {
    ("05", "db79f1c1"): {"11.3": "section: the paper's Appendix 11.3"},
    ("05", "f7feedf3"): {"0–1": "protocol: Figure 4's slope range"},
    ("05", "d07681d7"): {"0.1, 0.3": GRID},
    ("05", "56a86133"): {"0.1": GRID},
    ("05", "4a349fd2"): {"0.01": GRID},
    ("06", "5e08d4e8"): {"2–3": "the paper's figure numbers", "-1": "protocol: the image box [-1, 1]"},
    ("06", "6664e80d"): {"0.05": "protocol: Table 3's ProxyGrad slope", "1/1000": "constant: chance among ImageNet's 1000 classes"},
    ("06", "a0c6e001"): {"0.5": "protocol: the blur width"},
    ("06", "8d18478d"): {"0.5, 0.3": "protocol: the blur widths", "0.05": "protocol: the quick run's slope"},
    ("06", "a1fd3443"): {"0.3": "protocol: an earlier blur width and the quick run's largest slope",
                         "0.05, 0.1": "protocol: the quick run's slopes"},
    ("06", "17134ed0"): {"0–0.3": "protocol: Figure 2's slope range"},
    ("06", "700bb16a"): {"95 %": "protocol: the quantile of the noise rule", "0.01, 0.02, 0.05, 0.1": GRID},
    ("06", "2c168ed8"): {"3.4": "constant: float32's largest number, 3.4e38"},
    ("06", "89390eaa"): {"-0.2": "a suggested start for exercise 3's network"},
    ("06", "28c657c8"): {"-1, 0.4, 0.6, 0.2, 0.03": "exercise 3's one-pixel network and AM protocol (f(0.2) = 0.4 from its formula)",
                         "0.1, 0.01, 0.02": "exercise 3's grading: its 'at the maximum' margin, the slope grid, the tolerance"},
    ("06c", "212ff059"): {"0.8": "protocol: suggest_slope's cosine threshold"},
    ("06c", "bcb3748f"): {"1.0": "definition: the baseline's ratio"},
    ("06b", "5393fbfa"): {"-1": "protocol: the image box [-1, 1]"},
    ("06b", "4b4db24f"): {"0.1": "protocol: the start image's noise std"},
    ("06b", "4dda85e0"): {"1 %": "definition: the 'within 1 %' threshold", "0.01–0.03, 0.1, 0.3": GRID},
    ("06b", "ab086108"): {"1/1000": "constant: chance among ImageNet's 1000 classes", "0.05": "protocol: Table 3's ProxyGrad slope"},
    ("07", "c7d9c7a7"): {"11.2": "section: the paper's Appendix 11.2",
                         "0.003, 0.01, 1.0, 0.1, 50 %, 75 %": "protocol: the training recipe's lr, weight decay, timm's "
                                                              "clip, the decay factor and its milestones"},
    ("07", "32236bd4"): {"93 %": "not measured here: a ResNet18 trained fully on Fashion-MNIST"},
    ("07", "b0346c9b"): {"93 %": "not measured here: a ResNet18 trained fully on Fashion-MNIST",
                         "95 %": "protocol: the quantile of the noise rule", "0.1, 0.2, 0.01": GRID},
    ("07", "11434198"): {"95 %": "protocol: the quantile of the noise rule"},
    ("07", "5b3a9f91"): {"0.01, 0.2, 0.5": "an exercise's suggested slopes"},
    ("08", "1da0d71e"): {"01–04": "the course's notebook numbers", "0–16": "Lucid's redirect steps (rules.REDIRECT_STEPS)"},
    ("08", "a6160a3e"): {"0–16": "Lucid's redirect steps (rules.REDIRECT_STEPS)"},
    ("08", "1c118289"): {"05–07": "the course's notebook numbers", "0–16": "Lucid's redirect steps (rules.REDIRECT_STEPS)"},
    ("08", "f60a51ee"): {"0.05, 0.3": "an exercise's suggested slopes"},
    ("08", "fd442d20"): {"-1, +1": "exercise 3's dead input and its two upstream gradients"},
}

# A number, range, "N of M" or fraction, not inside a word, a decimal or an exponent ("10^{-4}").
TOKEN = re.compile(r"(?<![\w.^{\\])(?:\d+ of \d+|\d+/\d+|[+-]?\d+(?:\.\d+)?(?:\s?–\s?[+-]?\d+(?:\.\d+)?)?(?:\s?%)?)(?![\w.]\d)")


def needs_a_source(token: str) -> bool:
    """Decimals, percentages, signed numbers, ranges, counts and fractions; plain integers (500 steps,
    224 px, section 7) are protocol and are not asked for."""
    return bool(re.search(r"\d\.\d|%|^[+-]|–| of |/", token))


def _format(claim: C) -> tuple[str, list[tuple[int, int]]]:
    """The claim's text and the spans of its fields in it."""
    values = claim.values()
    values = values if isinstance(values, tuple) else (values,)
    text, fields, i = "", [], 0
    for literal, name, spec, conv in string.Formatter().parse(norm(claim.template)):
        text += literal
        if name is not None:
            assert name == "", f"use positional fields only: {claim.template!r}"
            piece = norm(format(values[i], spec))
            fields.append((len(text), len(text) + len(piece)))
            text += piece
            i += 1
    assert i == len(values), f"{claim.template!r}: {i} fields, {len(values)} values"
    return text, fields


def _what_the_prose_says(template: str, body: str) -> list[str]:
    pattern = "".join(re.escape(lit) + ("(.{1,40}?)" if name is not None else "")
                      for lit, name, _, _ in string.Formatter().parse(norm(template)))
    return [m.group(0) for m in re.finditer(pattern, body)]


def _blank_code(text: str) -> str:
    return re.sub(r"```.*?```|`[^`]*`", lambda m: " " * len(m.group()), text, flags=re.S)


@pytest.mark.parametrize("nb, cell_id", list(CLAIMS), ids=[f"{nb}-{c}" for nb, c in CLAIMS])
def test_each_claim_equals_its_data(nb, cell_id):
    body = markdown(nb, cell_id)
    wrong = []
    for claim in CLAIMS[nb, cell_id]:
        text, _ = _format(claim)
        if text not in body:
            said = _what_the_prose_says(claim.template, body)
            wrong.append(f"  the data gives: {text!r}\n  the cell says:  {said[0] if said else '(no such sentence)'!r}")
    assert not wrong, f"notebook {nb}, cell {cell_id}: prose differs from its data\n" + "\n".join(wrong)


@pytest.mark.parametrize("nb", list(NOTEBOOKS))
def test_every_number_in_the_markdown_is_claimed_or_exempt(nb):
    assert all(k in NOTEBOOKS for k, _ in list(CLAIMS) + list(EXEMPT))
    unaccounted, unused = [], []
    for c in _notebook(nb)["cells"]:
        if c["cell_type"] != "markdown":
            continue
        body = norm("".join(c["source"]))
        covered = []
        for claim in CLAIMS.get((nb, c["id"]), []):
            text, fields = _format(claim)
            for m in re.finditer(re.escape(text), body):
                covered += [(m.start() + a, m.start() + b) for a, b in fields]
        exempt = {t: why for key, why in EXEMPT.get((nb, c["id"]), {}).items() for t in key.split(", ")}
        used = set()
        for m in TOKEN.finditer(_blank_code(body)):
            tok = m.group()
            if not needs_a_source(tok) or any(a < m.end() and m.start() < b for a, b in covered):  # a field makes it
                continue
            if tok in exempt:
                used.add(tok)
            else:
                unaccounted.append(f"  cell {c['id']}: {tok!r} in ...{body[max(0, m.start() - 50):m.end() + 30]}...")
        unused += [f"  cell {c['id']}: {t!r} ({exempt[t]})" for t in exempt if t not in used]
    for key in [k for k in list(CLAIMS) + list(EXEMPT) if k[0] == nb]:
        cell(*key)  # every registered cell still exists
    assert not unaccounted, (f"notebook {nb}: numbers that no claim computes and no exemption names (add a claim to "
                             "CLAIMS, or an exemption with its reason to EXEMPT):\n" + "\n".join(unaccounted))
    assert not unused, f"notebook {nb}: exemptions no longer used (remove them):\n" + "\n".join(unused)
