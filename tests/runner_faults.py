"""Fault injection for the runner's tests, kept out of proxylab: job functions that die once or
raise, wrapped around an experiment's own. Ray workers import this module (the tests put tests/ on
their PYTHONPATH), so the wrapped function runs there as the real one would."""
import dataclasses
import functools
import json
import os
from pathlib import Path

from proxylab import experiments
from proxylab.runner import job_key


def die_once(marker: str, run, params: dict, workdir: Path) -> dict:
    """The first job to find ``marker`` missing creates it and kills its process (a lost worker)."""
    if not Path(marker).exists():
        Path(marker).write_text(json.dumps(params))
        os._exit(1)
    return run(params, workdir)


def fail(key: str, run, params: dict, workdir: Path) -> dict:
    """Job ``key`` raises; the others run."""
    if job_key(params) == key:
        raise RuntimeError(f"injected failure in {key}")
    return run(params, workdir)


def inject(name: str, fault, *args) -> None:
    """Replace experiment ``name``'s job function in this process by ``fault(*args, run, ...)``."""
    exp = experiments.REGISTRY[name]
    experiments.REGISTRY[name] = dataclasses.replace(exp, run=functools.partial(fault, *args, exp.run))
