#!/usr/bin/env python3
"""Set up and use proxylab on a fresh machine that has only Python 3.11.

    python3 dev.py lab     # create .venv if needed, then launch JupyterLab on notebooks/
    python3 dev.py test    # create .venv if needed, then run every test (unit tests + nbval)

Extra arguments after ``test`` go to pytest (``python3 dev.py test tests/test_proxygrad.py``).
The test command runs in quick mode (PROXYLAB_QUICK=1) unless that variable is already set. The
whole suite (no extra arguments) runs on one pytest-xdist worker per core (at most 4; set
PROXYLAB_TEST_WORKERS=1 for one process), each test file or notebook whole on one worker (longest first: tests/conftest.py), with one
torch thread per worker.

For maintainers:

    python3 dev.py notebooks [NB ...]  # execute notebooks in place (quick mode unless PROXYLAB_QUICK
                                       # is set), saving widget state, without progress-bar outputs
    python3 dev.py book                # the static HTML book in build/book/ (offline: npm assets)
    python3 dev.py app [VOILA ARGS]    # the slope playground (Voilà, no code shown), e.g. --port 8866 --no-browser
    python3 dev.py student             # the students' edition (nbgrader: no solutions, hidden tests) in build/student/
    python3 dev.py results             # rewrite README.md's results table from results/*/NAME.json
    python3 dev.py mutate [MODULE ...] # mutation testing (mutmut, [tool.mutmut] in pyproject.toml) of the
                                       # course's modules or the named ones (``gaussian``, ``proxygrad``):
                                       # lists the surviving mutants and the kill rate per module
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PROXYLAB_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".proxylab-installed"


def ensure_venv() -> None:
    """Create the virtual environment and install the package with its dev extra, once per
    change of pyproject.toml."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"proxylab needs Python 3.11, this is {sys.version.split()[0]}: run it with python3.11")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    subprocess.check_call([str(PY), "-m", "pip", "install", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(digest)


BOOK_SRC, BOOK_OUT = ROOT / "build" / "book-src", ROOT / "build" / "book"


def vendor_assets(static: Path) -> None:
    """MathJax 3 and the standalone Jupyter widget manager from node_modules (``npm ci`` once,
    from package-lock.json) into ``static/vendor-offline``: the book loads nothing from a CDN."""
    import shutil

    nm = ROOT / "node_modules"
    if not (nm / "mathjax" / "es5" / "tex-mml-chtml.js").exists() or not (nm / "@jupyter-widgets" / "html-manager").is_dir():
        subprocess.check_call(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ROOT)
    dest = static / "vendor-offline"
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "mathjax" / "output" / "chtml" / "fonts").mkdir(parents=True)
    (dest / "mathjax" / "input" / "tex").mkdir(parents=True)
    (dest / "html-manager").mkdir(parents=True)
    es5 = nm / "mathjax" / "es5"
    shutil.copy(es5 / "tex-mml-chtml.js", dest / "mathjax")
    shutil.copytree(es5 / "output" / "chtml" / "fonts" / "woff-v2", dest / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2")
    shutil.copytree(es5 / "input" / "tex" / "extensions", dest / "mathjax" / "input" / "tex" / "extensions")
    for f in (nm / "@jupyter-widgets" / "html-manager" / "dist").iterdir():
        if f.is_file() and not f.name.endswith((".map", "-amd.js")):
            shutil.copy(f, dest / "html-manager")


def build_book(extra: list[str]) -> int:
    """Stage book/, the notebooks and README.md in build/book-src, vendor the JS, run sphinx -W -n."""
    import shutil

    shutil.rmtree(BOOK_SRC, ignore_errors=True)
    shutil.copytree(ROOT / "book", BOOK_SRC)
    shutil.copytree(ROOT / "notebooks", BOOK_SRC / "notebooks",
                    ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints", "*.py"))
    shutil.copy(ROOT / "README.md", BOOK_SRC / "README.md")
    vendor_assets(BOOK_SRC / "_static")
    cmd = [str(PY), "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html", str(BOOK_SRC), str(BOOK_OUT), *extra]
    rc = subprocess.call(cmd, cwd=ROOT, env=dict(os.environ, PROXYLAB_ROOT=str(ROOT)))
    if rc == 0:
        print(f"book: {BOOK_OUT / 'index.html'}")
    return rc


PROGRESS = ("it/s]", "s/it]", "it/s, ", "s/it, ")  # what a tqdm bar's text ends with


def _is_progress(output: dict) -> bool:
    text = output.get("text") or "".join(output.get("data", {}).get("text/plain", []))
    text = "".join(text) if isinstance(text, list) else text
    return "%|" in text and any(p in text for p in PROGRESS)


def execute_notebooks(paths: list[str], env: dict) -> int:
    """Execute notebooks in place (widget state saved), then drop progress-bar outputs: a saved
    bar is frozen text (``0%| | 0/36``) that helps no reader."""
    import json

    paths = paths or sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in paths:
        print(f"executing {path}", flush=True)
        rc = subprocess.call([str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace",
                              "--ExecutePreprocessor.timeout=-1", path], cwd=ROOT, env=env)
        if rc:
            return rc
        nb = json.loads(Path(path).read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"] = [o for o in cell["outputs"] if not _is_progress(o)]
        Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return 0


STUDENT = ROOT / "build" / "student" / "notebooks"


def student_edition(extra: list[str], env: dict) -> int:
    """nbgrader's generate_assignment (config: nbgrader_config.py) into build/student/notebooks/:
    solutions replaced by ``raise NotImplementedError()``, hidden tests removed. The lecture's
    outputs are kept; the answer and test cells' outputs are cleared, so no answer shows."""
    import json

    rc = subprocess.call([str(BIN / "nbgrader"), "generate_assignment", "notebooks", "--force", *extra], cwd=ROOT, env=env)
    if rc:
        return rc
    for path in sorted(STUDENT.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and cell.get("metadata", {}).get("nbgrader"):
                cell["outputs"], cell["execution_count"] = [], None
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"students' edition: {STUDENT}")
    return 0


def run_app(extra: list[str], env: dict) -> int:
    """The playground under Voilà with app/'s offline template (app/voila.json); prints its URL."""
    import re

    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(ROOT / "app" / "share"), env.get("JUPYTER_PATH")]))
    ports = [m.group(1) for a in extra for m in [re.fullmatch(r"--(?:Voila\.)?port=(\d+)", a)] if m]
    if "--port" in extra:
        ports.append(extra[extra.index("--port") + 1])
    if not ports:
        extra = ["--port=8866", *extra]
        ports = ["8866"]
    print(f"playground: http://127.0.0.1:{ports[0]}/  (Ctrl-C stops it)", flush=True)
    cmd = [str(BIN / "voila"), "playground.ipynb", "--Voila.ip=127.0.0.1", *extra]
    try:
        return subprocess.call(cmd, cwd=ROOT / "app", env=env)
    except KeyboardInterrupt:
        return 0


MUTANTS = ROOT / "mutants"


def mutation_modules() -> list[str]:
    """The modules mutation testing covers: ``[tool.mutmut] only_mutate`` of pyproject.toml."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [Path(p).stem for p in config["only_mutate"]]


# mutmut's exit codes per mutant, as mutmut 3.8.1's mutmut.stats.status_by_exit_code names them (copied:
# dev.py runs on the system Python, where mutmut is not installed); -9 is also its CPU-limit kill
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", None: "not checked",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 36: "timeout",
          2: "interrupted", 34: "skipped", 37: "caught by type check", -9: "segfault", -11: "segfault"}
COLUMNS = ("killed", "timeout", "survived", "no tests", "not checked")


def mutation_report(modules: list[str]) -> tuple[list[tuple[str, str]], list[tuple]]:
    """Read mutmut's meta files (mutants/proxylab/NAME.py.meta): the mutants that were not killed,
    as (mutant, status), and one row per module: its counts per status of COLUMNS, then the
    suspicious ones (crashed workers) and the total."""
    import json

    undetected, rows = [], []
    for module in modules:
        meta = MUTANTS / "proxylab" / f"{module}.py.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        status = {k: STATUS.get(v, f"suspicious (exit {v})") for k, v in codes.items()}
        undetected += sorted((k, s) for k, s in status.items() if s not in ("killed", "not checked"))
        counts = [sum(s == c for s in status.values()) for c in COLUMNS]
        rows.append((module, *counts, len(status) - sum(counts), len(status)))
    return undetected, rows


def mutate(modules: list[str], env: dict) -> int:
    """Mutation testing: ``mutmut run`` on the mutants of the named modules (all configured ones by
    default; every one of them is run again, so new tests count), at most two workers (a 2-core
    machine), then the mutants no test killed (``mutmut show NAME`` prints one's diff) and the kill
    rate per module: killed / checked. A timeout is listed, not counted as killed: on a loaded
    machine a survivor that runs many slow tests can time out too. Quick mode, unit tests only
    (the selection is in pyproject.toml)."""
    children = "2"
    if "--max-children" in modules:
        i = modules.index("--max-children")
        children, modules = modules[i + 1], modules[:i] + modules[i + 2:]
    known = mutation_modules()
    modules = [Path(m).stem for m in modules] or known
    unknown = sorted(set(modules) - set(known))
    if unknown:
        print(f"not configured for mutation testing: {', '.join(unknown)} (configured: {', '.join(known)})")
        return 2
    env.setdefault("PROXYLAB_QUICK", "1")
    env["OMP_NUM_THREADS"] = "1"  # libgomp's thread pool hangs a forked worker; and two workers fill 2 cores
    env.pop("PYTHONPATH", None)  # the tests must import mutants/proxylab, not this checkout
    cmd = [str(BIN / "mutmut"), "run", "--max-children", children, *(f"proxylab.{m}.*" for m in modules)]
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    undetected, rows = mutation_report(modules)
    print(f"\n{len(undetected)} mutants not killed (from {ROOT}: {BIN / 'mutmut'} show NAME prints one):")
    for name, status in undetected:
        print(f"  {name}: {status}")
    print(f"\n{'module':13}" + "".join(f"{c:>12}" for c in (*COLUMNS, "suspicious", "total", "killed %")))
    for module, *counts, total in rows:
        checked = total - counts[COLUMNS.index("not checked")]
        rate = f"{100 * counts[0] / checked:.1f} %" if checked else "-"
        print(f"{module:13}" + "".join(f"{n:12}" for n in (*counts, total)) + f"{rate:>12}")
    return rc


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"lab", "test", "book", "notebooks", "app", "student", "results", "mutate"}:
        print(__doc__)
        return 2
    ensure_venv()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])  # the venv's tools (nbgrader calls alembic)
    if argv[0] == "book":
        return build_book(argv[1:])
    if argv[0] == "app":
        return run_app(argv[1:], env)
    if argv[0] == "student":
        return student_edition(argv[1:], env)
    if argv[0] == "results":  # proxylab.report: the table's numbers and words come from the JSON alone
        code = "import sys, proxylab.report as r; print('updated' if r.update_readme(sys.argv[1], sys.argv[2]) else 'unchanged')"
        return subprocess.call([str(PY), "-c", code, str(ROOT / "README.md"), str(ROOT / "results")], env=env)
    if argv[0] == "mutate":
        return mutate(argv[1:], env)
    if argv[0] == "notebooks":
        env.setdefault("PROXYLAB_QUICK", "1")
        return execute_notebooks(argv[1:], env)
    if argv[0] == "lab":
        cmd = [str(BIN / "jupyter"), "lab", "--notebook-dir", str(ROOT / "notebooks"), *argv[1:]]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI machines run as root
            cmd.append("--allow-root")
    else:
        env.setdefault("PROXYLAB_QUICK", "1")
        cmd = [str(PY), "-m", "pytest", *argv[1:]]
        if len(argv) == 1:  # the whole suite: one worker per core, each test file (a notebook) whole on one
            workers = max(1, min(int(env.get("PROXYLAB_TEST_WORKERS", os.cpu_count() or 1)), 4))
            if workers > 1:
                # whole files, in the order tests/conftest.py gives (longest first), not xdist's by test count
                cmd += ["-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder", "--durations", "15"]
                env.setdefault("OMP_NUM_THREADS", "1")  # two workers of two torch threads on two cores thrash
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
