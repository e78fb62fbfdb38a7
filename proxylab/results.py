"""The read side of the shipped results, what the notebooks show beside their quick live runs:
``results/NAME/NAME.json`` (data, protocol and provenance) and the figures drawn from it."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def shipped(name: str, root=None) -> dict | None:
    """The merged full-protocol result of experiment ``name`` committed under ``results/`` (None
    when it is not there yet)."""
    path = Path(root or RESULTS_DIR) / name / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance_line(merged: dict) -> str:
    """One line saying what produced a merged result: jobs, CPU hours, devices, commit, command."""
    prov = merged["provenance"]
    return (f"{prov['jobs_finished']} of {prov['jobs']} jobs finished ({prov['job_seconds_total'] / 3600:.1f} CPU hours on "
            f"{'; '.join(prov['devices'])}), proxylab {prov['proxylab']}, commit {prov['git_commit']}; "
            f"regenerate or continue: {prov.get('command') or 'python -m proxylab reproduce NAME --out results'}")
