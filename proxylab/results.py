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
    """One line saying what produced a merged result: jobs, CPU hours, devices, the commits the jobs
    were computed at (each job file records its own; "unknown" for jobs from before that), the
    commit of the merge, and the command that regenerates or continues it."""
    prov = merged["provenance"]
    commits = prov.get("job_commits") or {}
    computed = ", ".join(f"{'unknown commit' if c == 'unknown' else c[:12]} ({n})" for c, n in commits.items())
    return (f"{prov['jobs_finished']} of {prov['jobs']} jobs finished ({prov['job_seconds_total'] / 3600:.1f} CPU hours on "
            f"{'; '.join(prov['devices'])}), computed at {computed or 'unknown commit'}; merged at commit "
            f"{prov['git_commit'][:12]}, proxylab {prov['proxylab']}; "
            f"regenerate or continue: {prov.get('command') or 'python -m proxylab reproduce NAME --out results'}")
