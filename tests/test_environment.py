"""The environments cannot disagree: pyproject.toml is the one list of dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_package_and_adds_only_what_conda_provides():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_deps = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_deps == [{"pip": ["-e .[dev]"]}]
    names = {re.split(r"[=<> ]", d)[0] for d in conda_deps}
    assert names == {"python", "pip"}
    assert "python=3.11" in conda_deps


def test_pyproject_pins_torch_to_what_is_installed_here():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    import torch
    import torchvision
    assert torch.__version__.split("+")[0] == "2.14.1"
    assert torchvision.__version__.split("+")[0] == "0.29.1"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(python3 dev\.py \w+)", readme, re.M)
    assert commands == ["python3 dev.py lab", "python3 dev.py test"]
    assert re.search(r'^"\$PY" dev\.py test$', ci, re.M)
