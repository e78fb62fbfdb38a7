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


def _short(commit: str | None) -> str:
    """A commit as the line shows it: 12 hex digits, with the dirty mark and its diff hash kept."""
    if not commit or commit == "unknown":
        return "unknown commit"
    sha, dirty, diff = commit.partition("-dirty-")
    return sha[:12] + (f"-dirty-{diff}" if dirty else "")


def provenance_line(merged: dict) -> str:
    """One line saying what produced a merged result: jobs, hours of job time, devices, the commits
    the jobs were computed at (each job file records its own; "unknown commit" for jobs from before
    that, or run outside a git checkout), the commit of the merge, and the command that regenerates
    or continues it."""
    prov = merged["provenance"]
    commits = prov.get("job_commits") or {}
    computed = ", ".join(f"{_short(c)} ({n})" for c, n in commits.items())
    kind = "CPU" if all(d.startswith("cpu") for d in prov["devices"]) else "job"
    return (f"{prov['jobs_finished']} of {prov['jobs']} jobs finished ({prov['job_seconds_total'] / 3600:.1f} {kind} hours "
            f"on {'; '.join(prov['devices'])}), computed at {computed or 'unknown commit'}; merged at "
            f"{_short(prov.get('git_commit')).replace('unknown commit', 'an unknown commit')}, proxylab {prov['proxylab']}; "
            f"regenerate or continue: {prov.get('command') or 'python -m proxylab reproduce NAME --out results'}")
