"""The README's results table is what proxylab.report writes from the shipped JSON, and the one
rule behind its words ahead / within noise / behind."""
import math
import statistics
from pathlib import Path

import pytest
import torch

from proxylab import report

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_results_table_is_the_generated_one():
    text = (ROOT / "README.md").read_text()
    block = text.split(report.README_START)[1].split(report.README_END)[0].strip()
    assert block == report.results_table(ROOT / "results"), (
        "README.md's results table differs from the shipped results: run 'python3 dev.py results' and commit")


@pytest.mark.parametrize("mean, se, ahead, n, expected", [
    (1.0, 0.3, 3, 4, "ahead"),           # beyond t(3) = 3.18 SE, most pairs ahead
    (1.0, 0.33, 3, 4, "within noise"),   # 3.03 SE: beyond 2 SE, not beyond t(3) SE
    (1.0, 0.3, 2, 4, "within noise"),    # beyond t SE but only half of the pairs ahead
    (-1.0, 0.3, 1, 4, "behind"),
    (-1.0, 0.3, 2, 4, "within noise"),   # half behind is not most
    (1.0, 0.24, 3, 3, "within noise"),   # 3 seeds need 4.30 SE
    (1.0, 0.23, 3, 3, "ahead"),
    (1.0, 0.49, 40, 50, "ahead"),        # 50 repeats: t(49) = 2.01
    (5.0, None, 1, 1, "within noise"),   # one pair: no standard error
    (5.0, math.nan, 2, 2, "within noise"),
    (0.3, 0.0, 3, 3, "ahead"),           # identical differences: no noise at all
])
def test_verdict_rule(mean, se, ahead, n, expected):
    assert report.verdict(mean, se, ahead, n) == expected


def test_critical_t_is_students():
    assert report.critical_t(3) == pytest.approx(4.3027, abs=1e-4)
    assert report.critical_t(8) == pytest.approx(2.3646, abs=1e-4)
    assert report.critical_t(1000) == pytest.approx(1.962, abs=1e-3)


def test_paired_uses_the_sample_standard_error():
    values, base = [3.0, 5.0, 4.5, 6.0], [1.0, 3.0, 2.5, 3.0]
    d = [v - b for v, b in zip(values, base)]
    p = report.paired(values, base)
    assert p["mean"] == pytest.approx(statistics.mean(d))
    assert p["se"] == pytest.approx(statistics.stdev(d) / len(d) ** 0.5)
    assert (p["ahead"], p["n"], p["verdict"]) == (4, 4, "ahead")
    assert report.paired([1.0], [0.0])["se"] is None
    with pytest.raises(ValueError):
        report.paired([1.0, 2.0], [0.0])  # unpaired lengths are a mistake, not a shorter comparison


def test_ties_count_for_neither_side():
    """Five ties and four differences of the same size: the mirror images must read alike. Counting
    the ties as behind read the negative case "behind" while only 4 of 9 pairs are below."""
    zeros = [0.0] * 9
    up, down = report.paired([0.0] * 5 + [1.0] * 4, zeros), report.paired([0.0] * 5 + [-1.0] * 4, zeros)
    assert up["verdict"] == down["verdict"] == "within noise"
    assert report.paired([0.0] * 2 + [-1.0] * 7, zeros)["verdict"] == "behind"  # 7 of 9 below


def test_update_readme_rewrites_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nstale\n{report.README_END}\noutro\n")
    assert report.update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale" not in text
    assert "not run yet: `python -m proxylab reproduce figure2 --out results`" in text
    assert not report.update_readme(readme, tmp_path / "results")  # a second run changes nothing
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(ValueError, match="results-table-start"):
        report.update_readme(tmp_path / "plain.md", tmp_path)


def test_paired_table_reads_each_activation_against_relu_of_the_same_seeds():
    acc = {"fmnist/resnet18/relu": [80.0, 81.0, 82.0],
           "fmnist/resnet18/proxygrad:0.1": [81.0, 82.1, 82.9],   # +1.0 ± 0.06, 3/3: ahead
           "fmnist/resnet18/leaky:0.2": [82.0, 79.0, 84.0],       # +0.67, seeds disagree: within noise
           "fmnist/pfnet18/relu": [70.0, 70.5, 71.0],
           "fmnist/pfnet18/leaky:0.01": [68.0, 68.4, 69.1],       # -2.0 ± 0.06: behind
           "other/resnet18/proxygrad:0.1": [50.0]}                # no ReLU run to pair with: left out
    rows = report.paired_table(acc).splitlines()[2:]
    assert rows == ["| fmnist | resnet18 | ProxyGrad 0.1 | +1.00 ± 0.06 | 3/3 | ahead |",
                    "| fmnist | resnet18 | Leaky ReLU 0.2 | +0.67 ± 1.33 | 2/3 | within noise |",
                    "| fmnist | pfnet18 | Leaky ReLU 0.01 | -2.00 ± 0.06 | 0/3 | behind |"]
    one_seed = report.paired_table({"d/n/relu": [70.0], "d/n/proxygrad:0.1": [75.0]}).splitlines()[2]
    assert one_seed == "| d | n | ProxyGrad 0.1 | +5.00 ± – | 1/1 | within noise |"


def test_ranking_orders_by_mean_and_reads_each_lead_with_the_one_rule():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([5.0, 6.0, 7.0]), "c": torch.tensor([4.8, 6.1, 6.8])}
    lines = report.ranking(scores).splitlines()
    assert lines[0] == "| rank | spec | mean over 3 seeds | std | lead over the next (paired) |"
    # b - c: 0.2, -0.1, 0.2: mean 0.1, SE 0.1, under t(2) * SE = 0.43: within noise though 2 seeds of 3 lead
    assert lines[2] == "| 1 | `b` | 6.00 | 1.00 | +0.10 ± 0.10, 2/3 ahead: within noise |"
    # c - a: 3.8, 4.1, 3.8: mean 3.9, SE 0.1
    assert lines[3] == "| 2 | `c` | 5.90 | 1.01 | +3.90 ± 0.10, 3/3 ahead: ahead |"
    assert lines[4] == "| 3 | `a` | 2.00 | 1.00 |  |" and len(lines) == 5
    # a lead of 2.2 SE, which a 2-SE bar would call a difference, is within noise with 3 seeds (t = 4.3)
    two_se = report.ranking({"p": torch.tensor([0.2, 1.0, 1.8]), "q": torch.tensor([0.0, 0.0, 0.0])}).splitlines()
    assert two_se[2].endswith("3/3 ahead: within noise |")
    vs = report.ranking(scores, baseline="a").splitlines()
    assert vs[0].endswith("| lead over the next (paired) | vs `a` (paired) |") and vs[1] == "|---|---|---|---|---|---|"
    # b - a: 4, 4, 4: no spread, every seed ahead; a against itself: a dash
    assert vs[2].endswith("| +4.00 ± 0.00, 3/3 ahead: ahead |") and vs[4] == "| 3 | `a` | 2.00 | 1.00 |  | – |"
    assert vs[3].endswith("| +3.90 ± 0.10, 3/3 ahead: ahead | +3.90 ± 0.10, 3/3 ahead: ahead |")
    with pytest.raises(ValueError, match="baseline 'relu' is not one of the ranked specs"):
        report.ranking(scores, baseline="relu")
    two = report.ranking({"x": [1.0, 3.0], "y": [2.0, 5.0]}).splitlines()  # y - x: 1, 2: SE 0.5, t(1) = 12.7
    assert two[0].startswith("| rank | spec | mean over 2 seeds |")
    assert two[2] == "| 1 | `y` | 3.50 | 2.12 | +1.50 ± 0.50, 2/2 ahead: within noise |" and two[3] == "| 2 | `x` | 2.00 | 1.41 |  |"
    one = report.ranking({"x": [2.0], "y": [3.0]}).splitlines()
    assert one[2] == "| 1 | `y` | 3.00 | nan | +1.00 ± –, 1/1 ahead: within noise |" and one[3] == "| 2 | `x` | 2.00 | nan |  |"


def transfer_runs(proxy_gain: float):
    """Finished transfer jobs: Lite0 and Lite1 make 4 classes with ReLU and ProxyGrad 0.05; each
    judge gives ReLU's images 0.1, 0.2, 0.3, 0.4 and ProxyGrad's the same plus ``proxy_gain`` per class
    (plus a small spread so the SE is not zero)."""
    from proxylab import models

    finished = []
    for maker in ("efficientnet-lite0", "efficientnet-lite1"):
        for spec, gain in (("relu", 0.0), ("proxygrad:0.05", proxy_gain)):
            judges = {}
            for judge in models.LITE_SIZES:
                if judge == maker:
                    continue
                p = [0.1 + gain, 0.2 + gain * 1.1, 0.3 + gain * 0.9, 0.4 + gain]
                judges[judge] = {"500": {"probability": p, "top1": [True, False, False, False],
                                         "top5": [True, True, False, False]}}
            finished.append(({"model": maker, "spec": spec},
                             {"maker_logit": {"500": [10.0, 12.0, 14.0, 16.0]}, "judges": judges}))
    return finished


@pytest.mark.parametrize("gain, word", [(0.2, "ahead"), (-0.2, "behind"), (0.0, "within noise")])
def test_the_judged_grid_reads_proxygrad_against_relu_per_maker_and_judge(gain, word):
    from proxylab import am_grids

    merged = am_grids.transfer_merge(transfer_runs(gain), None, False, {})
    md = merged["markdown"]
    assert "| lite0 | `relu` | 13.00 | lite1 0.2500, top-5 2/4, lite2 0.2500, top-5 2/4 | – |" in md
    assert (f"| lite1 | `proxygrad:0.05` | 13.00 (+0.00 ± 0.00, 0/4 ahead: within noise) | lite0 {0.25 + gain:.4f}, "
            f"top-5 2/4, lite2 {0.25 + gain:.4f}, top-5 2/4 |") in md
    # 2 makers x 2 judges, and each maker's own logit (equal for both rules here: within noise)
    assert md.count(f"ahead: {word}") == 4 + 2 * (word == "within noise")
    line = report._transfer(merged)
    holds = {"ahead": "yes", "behind": "no", "within noise": "not settled"}[word]
    assert line.startswith(f"{holds}: ProxyGrad's images against ReLU's: ahead under {4 * (word == 'ahead')}, within noise under "
                           f"{4 * (word == 'within noise')}, behind under {4 * (word == 'behind')} of 4 (maker, judge) pairs")
    assert "made on lite1: ReLU lite0 0.250, lite2 0.250; `proxygrad:0.05` own logit +0.0 (within noise), judged lite0" in line


def test_table3_judge_columns_come_from_the_judged_run_of_each_row():
    """Each Table 3 row is judged through the transfer grid's run of its rule on Lite0: the row shows
    both logits (a mismatch means the judges saw another run), and a rule not judged yet says so."""
    from proxylab import am_grids

    tr = am_grids.transfer_merge(transfer_runs(0.2), None, False, {})
    t3 = {"rows": [{"spec": "relu", "final_logits": [10.0, 12.0, 14.0, 16.0]},
                   {"spec": "proxygrad:0.05", "final_logits": [11.0, 12.0, 14.0, 16.0]},
                   {"spec": "leaky:0.01", "final_logits": [9.0, 9.0, 9.0, 9.0]}]}
    md = report.table3_judges(t3, tr)
    assert "| `relu` | 13.00 | a rerun, logits identical | lite1 | 0.250, top-5 2/4 | – |" in md
    assert "| `proxygrad:0.05` | 13.25 | another run (mean logit 13.00) | lite2 | 0.450, top-5 2/4 | +0.200 ± " in md
    assert "| `leaky:0.01` | 9.00 | not judged yet |" in md
    assert "lite0 |" not in md  # Lite0 made the images: it is no judge of them
