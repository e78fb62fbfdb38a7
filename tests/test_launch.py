"""Binder and Colab: the launch links point at the repository named in pyproject.toml, and every
notebook's first code cell installs proxylab only where it is missing (what can be checked offline)."""
import importlib.util
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def install_cell(path):
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_readme_launch_links_name_the_repository():
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://(?:mybinder\.org/v2/gh|colab\.research\.google\.com/github)/([^/]+/[^/]+)/", readme)
    assert len(links) >= 2 + len(NOTEBOOKS)  # the two badges and a Colab link per notebook
    assert set(links) == {owner_repo}
    for path in NOTEBOOKS:
        assert f"colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name}" in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_is_first_and_a_no_op_where_proxylab_is_installed(path, monkeypatch):
    source = install_cell(path)
    assert f"git+{REPOSITORY}" in source
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd))
    exec(source, {})
    assert calls == []  # proxylab is importable here: nothing is installed
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "proxylab" else real(name, *a))
    exec(source, {})
    assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "install"] and calls[0][-1] == f"proxylab @ git+{REPOSITORY}"
