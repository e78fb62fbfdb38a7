"""The graded exercises, as a teacher uses them: nbgrader releases the students' edition
(``python3 dev.py student``) and autogrades submissions with its own commands. The teacher's
edition gets full marks, the edition as released gets none, and a wrongly typed answer gets the
test's own message.

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
    for who, source in (("teacher", ROOT / "notebooks"), ("blank", student), ("wrongtype", ROOT / "notebooks")):
        folder = BUILD / "submitted" / who / "notebooks"
        folder.mkdir(parents=True)
        for name in GRADED if who != "wrongtype" else GRADED[:1]:  # the wrong answer is in the first one
            shutil.copy(source / name, folder / name)
    # a student who answers everything right but exercise 1 of notebook 01, with a string
    path = BUILD / "submitted" / "wrongtype" / "notebooks" / GRADED[0]
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "nb01-ex1-solution":
            cell["source"] = ["x0 = toys.random_image(16, seed=3)\n", 'predicted = "about half"\n']
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
    assert "predicted should be a float" in errors[0]["evalue"]
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
