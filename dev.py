#!/usr/bin/env python3
"""Set up and use proxylab on a fresh machine that has only Python 3.11.

    python3 dev.py lab     # create .venv if needed, then launch JupyterLab on notebooks/
    python3 dev.py test    # create .venv if needed, then run every test (unit tests + nbval)

Extra arguments after ``test`` go to pytest (``python3 dev.py test tests/test_proxygrad.py``).
The test command runs in quick mode (PROXYLAB_QUICK=1) unless that variable is already set.
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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"lab", "test"}:
        print(__doc__)
        return 2
    ensure_venv()
    env = dict(os.environ)
    if argv[0] == "lab":
        cmd = [str(BIN / "jupyter"), "lab", "--notebook-dir", str(ROOT / "notebooks"), *argv[1:]]
    else:
        env.setdefault("PROXYLAB_QUICK", "1")
        cmd = [str(PY), "-m", "pytest", *argv[1:]]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
