"""The graded exercises, as a teacher uses them: nbgrader releases the students' edition
(``python3 dev.py student``) and autogrades submissions with its own commands. The teacher's
edition gets full marks, the edition as released gets none, and a wrongly typed answer gets the
test's own message. The teacher's edition is autograded whole; the released edition and the wrong
answer with their set-up and exercise cells only (no exercise reads the lecture, see run_variants).

Notebooks whose experiments take minutes (06-08, marked ``grade_exercise_cells_only`` in their
metadata) have self-contained exercises: for them nbgrader's own validator runs a notebook made of
their exercise cells only (all tests pass for the teacher, none for the released edition), which
keeps CI minutes for the experiments themselves."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
def _graded(path: Path) -> bool:
    return any(c.get("metadata", {}).get("nbgrader", {}).get("grade") for c in json.loads(path.read_text())["cells"])


def _cells_only(path: Path) -> bool:
    return json.loads(path.read_text())["metadata"].get("proxylab", {}).get("grade_exercise_cells_only", False)


ALL_GRADED = sorted(p for p in (ROOT / "notebooks").glob("[0-9]*.ipynb") if _graded(p))
GRADED = [p.name for p in ALL_GRADED if not _cells_only(p)]  # autograded whole
CELLS_ONLY = [p.name for p in ALL_GRADED if _cells_only(p)]


def points(path: Path) -> float:
    return sum(c["metadata"]["nbgrader"]["points"] for c in json.loads(path.read_text())["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("grade"))


def env():
    return dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                PROXYLAB_VENV=sys.prefix, PROXYLAB_QUICK="1")


@pytest.fixture(scope="module")
def graded():
    assert GRADED, "no notebook has graded exercises"
    for old in ("submitted", "autograded", "feedback"):  # a fresh course: nbgrader keeps released notebooks
        shutil.rmtree(BUILD / old, ignore_errors=True)   # with submissions fixed, so start from no gradebook
    (BUILD / "gradebook.db").unlink(missing_ok=True)
    res = subprocess.run([sys.executable, "dev.py", "student"], cwd=ROOT, env=env(), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    student = BUILD / "student" / "notebooks"
    shutil.rmtree(BUILD / "submitted", ignore_errors=True)
    shutil.rmtree(BUILD / "autograded", ignore_errors=True)
    # the teacher's edition is graded whole, as a teacher grades a submission. The released edition and
    # the wrong answer are graded with their lecture cells left out (their set-up cells and every nbgrader
    # cell kept): no exercise reads the lecture (run_variants below runs them after the set-up cells only,
    # and a test that did read it would fail here, never pass), and the lecture would double this fixture
    for who, source in (("teacher", ROOT / "notebooks"), ("blank", student), ("wrongtype", ROOT / "notebooks")):
        folder = BUILD / "submitted" / who / "notebooks"
        folder.mkdir(parents=True)
        for name in GRADED if who != "wrongtype" else GRADED[:1]:  # the wrong answer is in the first one
            if who == "teacher":
                shutil.copy(source / name, folder / name)
            else:
                (folder / name).write_text(json.dumps(without_lecture(json.loads((source / name).read_text()))))
    # a student who answers everything right but exercise 1 of notebook 01, with a string
    path = BUILD / "submitted" / "wrongtype" / "notebooks" / GRADED[0]
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "nb01-ex1-solution":
            cell["source"] = ["def predicted_fraction(x0):\n", '    return "about half"\n']
    path.write_text(json.dumps(nb))
    res = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde", "notebooks", "--create", "--force"],
                         cwd=ROOT, env=env(), capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{BUILD / 'gradebook.db'}") as gb:
        scores = {who: {nb.name + ".ipynb": nb.score for nb in gb.find_submission("notebooks", who).notebooks}
                  for who in ("teacher", "blank", "wrongtype")}
    return student, scores


def test_students_edition_has_no_solutions_and_no_hidden_tests(graded):
    student, _ = graded
    for name in GRADED + CELLS_ONLY:
        text = (student / name).read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
        assert "raise NotImplementedError()" in text, name
        teacher = json.loads((ROOT / "notebooks" / name).read_text())
        released = json.loads(text)
        # the lecture's figures stay; only the exercises' cells are cleared
        figures = lambda nb: sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"  # noqa: E731
                                 for o in c.get("outputs", []))
        assert figures(released) == figures(teacher) > 0, name


def test_teacher_gets_full_marks_and_the_blank_edition_none(graded):
    _, scores = graded
    for name in GRADED:
        total = points(ROOT / "notebooks" / name)
        assert total >= 2, name
        assert scores["teacher"][name] == total, (name, scores["teacher"][name], total)
        assert scores["blank"][name] == 0, (name, scores["blank"][name])


def test_a_wrongly_typed_answer_gets_the_tests_message(graded):
    _, scores = graded
    path = BUILD / "autograded" / "wrongtype" / "notebooks" / GRADED[0]
    cell = next(c for c in json.loads(path.read_text())["cells"]
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "nb01-ex1-test")
    errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "AssertionError"
    assert "predicted_fraction should return a float" in errors[0]["evalue"]
    assert scores["wrongtype"][GRADED[0]] == points(ROOT / "notebooks" / GRADED[0]) - 2


def exercise_cells(path: Path, out: Path) -> Path:
    """A notebook of ``path``'s nbgrader cells only (same metadata), written to ``out``."""
    nb = json.loads(path.read_text())
    nb["cells"] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader")]
    out.write_text(json.dumps(nb))
    return out


def test_self_contained_exercises_pass_for_the_teacher_and_fail_as_released(graded, tmp_path):
    from nbgrader.validator import Validator

    student, _ = graded
    assert CELLS_ONLY, "no notebook is marked grade_exercise_cells_only"
    for name in CELLS_ONLY:
        teacher = exercise_cells(ROOT / "notebooks" / name, tmp_path / f"teacher-{name}")
        blank = exercise_cells(student / name, tmp_path / f"blank-{name}")
        assert points(teacher) >= 4, name
        assert Validator().validate(str(teacher)) == {}, f"{name}: a test fails on the teacher's answers"
        assert Validator(invert=True).validate(str(blank)) == {}, f"{name}: a test passes with no answer"


# ---- the exercises' tests themselves, cheaply: each notebook's set-up (import) cells and its exercise
# cells, with some answers replaced, run in one kernel for the whole file, its namespace cleared per test
# (no lecture, no nbgrader gradebook)

def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def setup_cells(nb: dict) -> list:
    """The code cells before the first section heading: the imports and ``proxylab.setup``. None for a
    cells-only notebook, whose exercises import what they need."""
    if nb["metadata"].get("proxylab", {}).get("grade_exercise_cells_only"):
        return []
    cells = []
    for c in nb["cells"][1:]:
        if c["cell_type"] == "markdown" and _source(c).lstrip().startswith("## "):
            return cells
        if c["cell_type"] == "code":
            cells.append(c)
    raise AssertionError("no section heading after the set-up cells")


def without_lecture(nb: dict) -> dict:
    """``nb`` with its set-up cells and its nbgrader cells only (same metadata)."""
    keep = {id(c) for c in setup_cells(nb)}
    return {**nb, "cells": [c for c in nb["cells"] if id(c) in keep or c.get("metadata", {}).get("nbgrader")]}


def exercises(nb: dict) -> list[tuple[dict, dict]]:
    """(answer cell, test cell) pairs in order: every graded test cell follows its answer cell."""
    cells = nb["cells"]
    pairs = [(cells[i - 1], c) for i, c in enumerate(cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert all(a["metadata"]["nbgrader"].get("solution") for a, _ in pairs)
    return pairs


def released(test_source: str) -> str:
    """A test cell as the students' edition has it: the hidden tests cut out."""
    out, hidden = [], False
    for line in test_source.splitlines(keepends=True):
        if "### BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "### END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "".join(out)


KERNEL: dict = {}  # this module's kernel for run_cells, started on first use


@pytest.fixture(scope="module", autouse=True)
def _stop_the_kernel():
    yield
    if KERNEL:
        KERNEL["client"].stop_channels()
        KERNEL["manager"].shutdown_kernel(now=True)
        KERNEL.clear()


def run_cells(sources: list[str], timeout: int = 300) -> list[dict | None]:
    """Runs code cells in this module's kernel (errors do not stop it); each cell's error (ename,
    evalue, traceback) or None. Each call first clears the kernel's namespace (``%reset -f``), so no
    name of an earlier call survives, while the modules it imported stay loaded: one kernel start and
    one torch import for the whole file instead of one per call."""
    from jupyter_client.manager import start_new_kernel

    if not KERNEL:
        KERNEL["manager"], KERNEL["client"] = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    client = KERNEL["client"]

    def run(source):
        reply = client.execute_interactive(source, timeout=timeout, output_hook=lambda msg: None)["content"]
        return {k: reply[k] for k in ("ename", "evalue", "traceback")} if reply["status"] == "error" else None

    assert run("%reset -f") is None
    assert run("assert 'LEFT_BY_THE_LAST_CALL' not in globals()") is None, "the last call's names are still defined"
    errors = [run(s) for s in sources]
    run("LEFT_BY_THE_LAST_CALL = True")
    return errors


def run_variants(variants: dict[str, list[tuple[str, str]]], notebooks: Path | None = None) -> dict:
    """``variants``: notebook name -> [(answer cell's grade_id, replacement answer source)]. For each
    variant: the notebook's set-up cells once, then the replacement answer and its test cell, in full
    (with its hidden tests) and as released. Returns {(name, grade_id, i): (full error, released error)}."""
    folder = notebooks or ROOT / "notebooks"
    sources, where = [], {}
    for name, answers in variants.items():
        nb = json.loads((folder / name).read_text())
        sources += [_source(c) for c in setup_cells(nb)]
        tests = {_grade_id(a): _source(t) for a, t in exercises(nb)}
        for i, (grade_id, answer) in enumerate(answers):
            where[name, grade_id, i] = len(sources)
            sources += [answer, tests[grade_id], answer, released(tests[grade_id])]
    errors = run_cells(sources)
    variant_cells = {k + d for k in where.values() for d in range(4)}
    failed = [sources[k] for k in range(len(sources)) if k not in variant_cells and errors[k]]
    assert not failed, f"a set-up cell fails: {failed[0][:200]}"
    for (name, grade_id, _), k in where.items():
        assert errors[k] is None and errors[k + 2] is None, f"{name} {grade_id}: the answer cell itself fails: {errors[k]}"
    return {key: (errors[k + 1], errors[k + 3]) for key, k in where.items()}


def _fraction_at(seed: int) -> float:
    from proxylab import toys
    return (toys.random_image(16, seed=seed) > 0).float().mean().item()


def _leaky_steps(a: float) -> int:
    from proxylab import toys
    return toys.run_toy(toys.sum_problem(f"leaky:{a}"), steps=800).steps_to(0.99)


def _numbers(x: float) -> list[str]:
    """The ways a message could print the value x."""
    return sorted({f"{x:.{d}f}" for d in (2, 3, 4)} | {f"{x:.3g}", repr(x)})


def test_no_failure_message_gives_the_expected_answer():
    """A wrong answer gets a message that helps (which way it is off, which idea to use) without
    printing the value the test expects: with the value in the message, the student would copy it."""
    from proxylab import gaussian, toys
    from proxylab.report import critical_t
    from proxylab.results import shipped

    reached03 = toys.run_toy(toys.local_maxima_problem("leaky:0.2", b=0.5), steps=400,
                             x0=toys.random_image(16, seed=0)).fraction
    relu_var = gaussian.closed_form(0.0)["var"]
    row = shipped("figure2")["summary"]["paper/proxygrad/step500"]
    best = max((s for s in row["slopes"] if s > 0), key=lambda s: row["mean"][row["slopes"].index(s)])
    gain = row["mean"][row["slopes"].index(best)] - row["mean"][0]
    # (answer's grade_id, a wrong answer, the expected values its message must not show)
    wrong = {
        "01_sparse_gradients.ipynb": [
            ("nb01-ex1-solution", "def predicted_fraction(x0):\n    return 0.9\n", _numbers(_fraction_at(3))),
            ("nb01-ex1-solution", "def predicted_fraction(x0):\n    return 0.1\n", _numbers(_fraction_at(3)))],
        "02_race_of_patterns.ipynb": [
            ("nb02-ex1-solution", "def steps_to_cross_zero(x, a, lr):\n    return 10\n", ["11"]),
            ("nb02-ex2-solution", "def fastest_first(slopes):\n    return sorted(slopes)\n",
             [str(_leaky_steps(a)) for a in (0.3, 2.0, 0.1, 1.0)] + ["[2.0, 1.0, 0.3, 0.1]"])],
        "03_local_maxima.ipynb": [
            ("nb03-ex1-solution", "def predicted_fraction(x0, a, b):\n    return 0.5\n", _numbers(reached03))],
        "04_proxygrad.ipynb": [
            ("nb04-ex1-solution", "def whitens(a_b, b, c):\n    return b < a_b < 1 / b\n", ["True", "False", "0.25 <", "< 4"])],
        "05_leaky_relu_statistics.ipynb": [
            ("nb05-ex1-solution", "def slope_for_ratio(k):\n    return 0.5\n", _numbers(0.6367040337739533)),
            ("nb05-ex2-solution", "def dvar_da(a):\n    return 1.0\n", _numbers(1 / 3.141592653589793) + ["π", "pi"])],
        "06_class_visualization.ipynb": [
            ("nb06-ex2-solution", "def best_of(row):\n    return 0.3, 1.0\n",
             [repr(best), f"{gain:.1f}", f"{gain:.2f}", str(row["mean"][1])])],
        "07_classification_training.ipynb": [
            ("nb07-ex1-solution", PROXY_GRADS.replace("slope))", "0.0))"), ["tensor("]),  # ReLU's backward
            ("nb07-ex2-solution", READING.replace("critical_t(n)", "2.0"), _numbers(critical_t(3)))],
    }
    results = run_variants({name: [(g, s) for g, s, _ in v] for name, v in wrong.items()})
    for name, cases in wrong.items():
        for i, (grade_id, _, values) in enumerate(cases):
            full, shown = results[name, grade_id, i]
            assert shown is not None, f"{name} {grade_id}: the wrong answer passes the released test"
            assert shown["ename"] == "AssertionError", (name, grade_id, shown["ename"], shown["evalue"])
            leaked = [v for v in values if v in shown["evalue"]]
            assert not leaked, f"{name} {grade_id}: the message {shown['evalue']!r} shows the expected {leaked}"
            assert full is not None, f"{name} {grade_id}: the wrong answer passes the hidden tests"


# notebook 07's answers written another way than the teacher's: (a correct one, by hand, loops)
PROXY_GRADS = """import torch
def proxygrad_grads(W1, w2, x, y, slope):
    z = W1 @ x
    h = z.clamp(min=0)
    err = (w2 * h).sum() - y
    dz = err * w2 * torch.where(z > 0, torch.tensor(1.0), torch.tensor(float(slope)))
    return dz[:, None] * x[None, :], err * h
same_as_leaky = False
"""
PROXY_GRADS_LOOPS = """import torch
def proxygrad_grads(W1, w2, x, y, slope):
    H, D = W1.shape
    z = [sum(float(W1[i, j]) * float(x[j]) for j in range(D)) for i in range(H)]
    h = [max(v, 0.0) for v in z]
    err = sum(float(w2[i]) * h[i] for i in range(H)) - float(y)
    g1 = torch.tensor([[err * float(w2[i]) * (1.0 if z[i] > 0 else slope) * float(x[j]) for j in range(D)]
                       for i in range(H)])
    return g1, torch.tensor([err * v for v in h])
same_as_leaky = False
"""
READING = """import math
from proxylab.report import critical_t
def reading(diffs):
    n = len(diffs)
    if n < 2:
        return 'within noise'
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    ahead = sum(d > 0 for d in diffs)
    if mean > critical_t(n) * se and ahead > n / 2:
        return 'ahead'
    if mean < -critical_t(n) * se and n - ahead > n / 2:
        return 'behind'
    return 'within noise'
"""


SIMULATION = """def steps_to_cross_zero(x, a, lr):
    n = 0
    while x < 0:
        x += a * lr
        n += 1
    return n
"""


def test_a_correct_alternative_answer_gets_the_points():
    """Answers that are right by another method or by a convention the question allows pass every
    test, the hidden ones included: a step-by-step simulation (float accumulation), the milestones
    without rounding or truncated, a bisection instead of sympy, ..."""
    alternatives = {
        "01_sparse_gradients.ipynb": [
            ("nb01-ex1-solution", "def predicted_fraction(x0):\n    return float((x0 > 0).sum() / x0.numel())\n")],
        "02_race_of_patterns.ipynb": [
            ("nb02-ex1-solution", SIMULATION),
            ("nb02-ex1-solution", "import math\ndef steps_to_cross_zero(x, a, lr):\n    return math.floor(-x / (a * lr)) + 1\n"),
            ("nb02-ex2-solution", "def fastest_first(slopes):\n    return sorted(slopes, key=lambda a: -a)\n")],
        "03_local_maxima.ipynb": [
            ("nb03-ex1-solution", "def predicted_fraction(x0, a, b):\n"
             "    g = toys.g_formula(torch.sign(x0), a, b)\n    return (g.sum() / ((1 - a * b) * x0.numel())).item()\n")],
        "04_proxygrad.ipynb": [
            ("nb04-ex1-solution", "def whitens(a_b, b, c):\n    return c * a_b - b > 0 and c - a_b * b > 0\n")],
        "05_leaky_relu_statistics.ipynb": [
            ("nb05-ex1-solution", "def slope_for_ratio(k):\n    lo, hi = 0.0, 1.0\n"
             "    target = k * gaussian.closed_form(0.0)['var']\n    for _ in range(60):\n"
             "        mid = (lo + hi) / 2\n"
             "        lo, hi = (mid, hi) if gaussian.closed_form(mid)['var'] < target else (lo, mid)\n"
             "    return (lo + hi) / 2\n"),
            ("nb05-ex2-solution", "import math\ndef dvar_da(a):\n    return a + (1 - a) / math.pi\n")],
        "06_class_visualization.ipynb": [
            ("nb06-ex1-solution", "import statistics\ndef paired_gain(proxy, relu):\n"
             "    d = [p - r for p, r in zip(proxy.tolist(), relu.tolist())]\n"
             "    return statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5, sum(x > 0 for x in d)\n"),
            ("nb06-ex2-solution", "def best_of(row):\n"
             "    i = max(range(1, len(row['slopes'])), key=lambda j: row['mean'][j])\n"
             "    return float(row['slopes'][i]), float(row['mean'][i] - row['mean'][row['slopes'].index(0.0)])\n")],
        "07_classification_training.ipynb": [
            ("nb07-ex1-solution", PROXY_GRADS),
            ("nb07-ex1-solution", PROXY_GRADS_LOOPS),
            ("nb07-ex2-solution", READING),
            ("nb07-ex2-solution", "import statistics\nfrom proxylab.report import critical_t\ndef reading(d):\n"
             "    if len(d) < 2:\n        return 'within noise'\n"
             "    bar = critical_t(len(d)) * statistics.stdev(d) / len(d) ** 0.5\n"
             "    up, down = sum(x > 0 for x in d), sum(x < 0 for x in d)\n"
             "    m = statistics.mean(d)\n"
             "    return 'ahead' if m > bar and 2 * up > len(d) else 'behind' if m < -bar and 2 * (len(d) - up) > len(d) "
             "else 'within noise'\n")],
    }
    results = run_variants(alternatives)
    for (name, grade_id, i), (full, _) in results.items():
        assert full is None, f"{name} {grade_id} #{i}: a correct answer fails: {full['ename']}: {full['evalue']}"


def test_a_hard_coded_answer_fails_the_hidden_tests():
    """Hard-coding what the visible test checks passes it (a student sees that case) but not the
    hidden tests: they try cases the student never saw. Nor does calling the library function that
    computes the answer, where the exercise asks for the computation."""
    hard = {
        "01_sparse_gradients.ipynb": [
            ("nb01-ex1-solution", f"def predicted_fraction(x0):\n    return {_fraction_at(3)!r}\n"),
            ("nb01-ex2-solution", "import torch\ndef relu_grad(x):\n    return torch.tensor([[0.0, 1.0], [1.0, 0.0]])\n")],
        "02_race_of_patterns.ipynb": [
            ("nb02-ex1-solution", "def steps_to_cross_zero(x, a, lr):\n    return 11\n"),
            ("nb02-ex2-solution", "def fastest_first(slopes):\n    return [2.0, 1.0, 0.3, 0.1]\n")],
        "03_local_maxima.ipynb": [
            ("nb03-ex1-solution", "def predicted_fraction(x0, a, b):\n"  # a = 0.2, b = 0.5: g(+1) = 0.9, g(-1) = 0.3
             f"    return {(_fraction_at(0) * 0.9 + (1 - _fraction_at(0)) * 0.3) / 0.9!r}\n"),
            ("nb03-ex2-solution", "def a_star(b):\n    return 0.5\n")],
        "04_proxygrad.ipynb": [
            ("nb04-ex1-solution", "def whitens(a_b, b, c):\n    return a_b in (0.7, 0.5, 3.0)\n")],
        "05_leaky_relu_statistics.ipynb": [
            ("nb05-ex1-solution", f"def slope_for_ratio(k):\n    return {0.6367040337739533!r}\n"),
            ("nb05-ex2-solution", f"def dvar_da(a):\n    return {1 / 3.141592653589793!r}\n")],
        "06_class_visualization.ipynb": [
            ("nb06-ex1-solution", "def paired_gain(proxy, relu):\n    return 1.375, 0.0, 3\n"),
            # the library function that computes the answer, imported by name or called on its module
            ("nb06-ex1-solution", "from proxylab.report import paired\ndef paired_gain(proxy, relu):\n"
             "    r = paired(proxy.tolist(), relu.tolist())\n    return r['mean'], r['se'], r['ahead']\n"),
            ("nb06-ex1-solution", "from proxylab import report\ndef paired_gain(proxy, relu):\n"
             "    r = report.paired(proxy.tolist(), relu.tolist())\n    return r['mean'], r['se'], r['ahead']\n"),
            ("nb06-ex2-solution", "def best_of(row):\n"  # the visible test's two rows
             "    return (0.05, 2.5) if row['mean'][0] == 10.0 else (0.3, 2.0)\n")],
        "07_classification_training.ipynb": [
            ("nb07-ex1-solution", PROXY_GRADS.replace("slope))", "0.3))").replace("False", "True")),  # the visible slope
            ("nb07-ex2-solution", "def reading(d):\n    if len(d) < 2 or len({x > 0 for x in d}) > 1 or max(d) - min(d) > 1:\n"
             "        return 'within noise'\n    return 'ahead' if d[0] > 0 else 'behind'\n")],
    }
    results = run_variants(hard)
    for (name, grade_id, i), (full, shown) in results.items():
        assert shown is None, f"{name} {grade_id} #{i}: the hard-coded answer fails the visible test already: {shown}"
        assert full is not None, f"{name} {grade_id} #{i}: the hard-coded answer passes the hidden tests"


# ---- the "predict, then run" exercises (06 Ex3, 08 Ex3): the answer is a prediction, a value. Their visible
# test checks only its form, so it cannot be used to search for the answer (a wrong prediction passes it); the
# hidden test checks it against a small run made in the test cell, without printing what the run gave.
RULES08 = ["relu", "proxygrad:0.05", "guided", "deconvnet", "redirected", "noisy:0.05"]
PASSES08 = {"relu": (False, False), "proxygrad:0.05": (True, True), "guided": (False, False),
            "deconvnet": (True, False), "redirected": (False, False), "noisy:0.05": (True, True)}


def _passes(answer: dict) -> str:
    return f"passes = {answer!r}\n"


def _slopes(top, below) -> str:
    return f"top_up_to = {top}\nbelow_start_from = {below}\n"


def test_a_wrong_prediction_passes_the_visible_test_and_fails_the_hidden_one_without_the_answer():
    """A prediction is graded only against the run (hidden): the visible test passes any well-formed one, and
    the hidden test's message says that the run differs, not what it gave."""
    wrong = {
        "06_class_visualization.ipynb": [
            ("nb06-ex3-solution", _slopes(0.1, 0.9), ["0.33", "0.34", "1/3", "0.5", "0.49", "0.51"]),
            ("nb06-ex3-solution", _slopes(0.5, 0.5), ["0.33", "0.34", "1/3", "0.49", "0.51"])],
        "08_deep_visualization.ipynb": [
            ("nb08-ex3-solution", _passes({s: (True, True) for s in RULES08}), ["(True, False)", "(False, False)"]),
            ("nb08-ex3-solution", _passes({**PASSES08, "deconvnet": (True, True)}),
             ["(True, False)", "deconvnet", "redirected", "guided", "noisy", "relu"])],
    }
    results = run_variants({name: [(g, s) for g, s, _ in v] for name, v in wrong.items()})
    for name, cases in wrong.items():
        for i, (grade_id, _, values) in enumerate(cases):
            full, shown = results[name, grade_id, i]
            assert shown is None, f"{name} {grade_id} #{i}: the visible test judges the prediction: {shown['evalue']!r}"
            assert full is not None and full["ename"] == "AssertionError", f"{name} {grade_id} #{i}: passes the hidden test"
            leaked = [v for v in values if v in full["evalue"]]
            assert not leaked, f"{name} {grade_id} #{i}: the message {full['evalue']!r} shows the expected {leaked}"


def test_a_malformed_prediction_gets_the_visible_tests_message():
    malformed = {
        "06_class_visualization.ipynb": [
            ("nb06-ex3-solution", _slopes('"a third"', 0.5), "is a number"),
            ("nb06-ex3-solution", _slopes(0.3, 1.5), "between 0 and 1"),
            ("nb06-ex3-solution", _slopes(0.6, 0.5), "does not end below the start"),
            ("nb06-ex3-solution", _slopes(True, 0.5), "is a number")],
        "08_deep_visualization.ipynb": [
            ("nb08-ex3-solution", _passes({s: v for s, v in PASSES08.items() if s != "noisy:0.05"}), "one entry per rule"),
            ("nb08-ex3-solution", _passes({**PASSES08, "relu": (False,)}), "is a pair"),
            ("nb08-ex3-solution", _passes({**PASSES08, "relu": ("no", "no")}), "is a pair"),
            ("nb08-ex3-solution", _passes({**PASSES08, "relu": False}), "is a pair")],
    }
    results = run_variants({name: [(g, s) for g, s, _ in v] for name, v in malformed.items()})
    for name, cases in malformed.items():
        for i, (grade_id, _, message) in enumerate(cases):
            _, shown = results[name, grade_id, i]
            assert shown is not None and message in shown["evalue"], (name, grade_id, i, shown)


def test_a_correct_prediction_written_another_way_gets_the_points():
    """A fraction, a rounded decimal, numpy numbers; lists instead of tuples, 1/0 instead of True/False, another
    key order: all pass the hidden test."""
    alternatives = {
        "06_class_visualization.ipynb": [
            ("nb06-ex3-solution", "from fractions import Fraction\n" + _slopes("Fraction(1, 3)", "Fraction(1, 2)")),
            ("nb06-ex3-solution", _slopes(0.33, 0.51)),
            ("nb06-ex3-solution", "import numpy as np\n" + _slopes("np.float64(0.34)", "np.float32(0.49)"))],
        "08_deep_visualization.ipynb": [
            ("nb08-ex3-solution", _passes({s: [int(a), int(b)] for s, (a, b) in reversed(PASSES08.items())})),
            ("nb08-ex3-solution", "import numpy as np\n"
             f"passes = {{s: tuple(np.bool_(v) for v in pair) for s, pair in {PASSES08!r}.items()}}\n")],
    }
    results = run_variants(alternatives)
    for (name, grade_id, i), (full, shown) in results.items():
        assert full is None and shown is None, f"{name} {grade_id} #{i}: a correct prediction fails: {full or shown}"


def test_a_prediction_copied_from_the_lecture_fails_the_hidden_test():
    """Numbers and patterns the lecture shows are not the answer: 06's best quick slope and the linear limit
    (slope 1), or 08's toy table (which rules reach the white image) read as the answer for both signs of g, or
    the redirected rule read as redirecting whenever a unit is dead."""
    copied = {
        "06_class_visualization.ipynb": [
            ("nb06-ex3-solution", _slopes(0.05, 1.0)),
            ("nb06-ex3-solution", _slopes(0.3, 0.3))],  # the quick sweep's largest slope
        "08_deep_visualization.ipynb": [
            ("nb08-ex3-solution", _passes({**PASSES08, "deconvnet": (True, True)})),  # the toy table's pattern
            ("nb08-ex3-solution", _passes({**PASSES08, "redirected": (True, False)}))],
    }
    results = run_variants(copied)
    for (name, grade_id, i), (full, shown) in results.items():
        assert shown is None, f"{name} {grade_id} #{i}: the copied prediction fails the visible test already: {shown}"
        assert full is not None, f"{name} {grade_id} #{i}: the copied prediction passes the hidden test"
