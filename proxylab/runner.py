"""One runner for every grid of independent jobs (Figure 2 and 3, Tables 3, 4 and 5, Figure 4).

An experiment (:mod:`proxylab.experiments`) is a list of jobs, each a small dict of parameters,
a function that runs one job, a merge that turns the finished jobs into the figure's data (one
JSON), and the figures (PNG) drawn from that data alone. The runner keeps one folder per experiment::

    OUT/NAME/protocol.json     what defines the results (a rerun with another protocol is refused)
    OUT/NAME/jobs/KEY.json     one file per finished job, written atomically, KEY from its parameters
    OUT/NAME/jobs/KEY/         a job's own files: images it made, its resumable state (a training
                               checkpoint, never committed)
    OUT/NAME/NAME.json, *.png  the merged result, with its provenance
    OUT/NAME/running.lock      held while a command works on the folder: a second one is refused

A job file records the commit that computed it; the merge lists those commits. KEY is the job's
parameters in short (in sorted order) plus a hash of all of them; the hash alone identifies a job,
so files whose slug an older runner wrote in another order are still found.

A rerun skips finished jobs and continues interrupted ones (a training job resumes from its
checkpoint), so a killed run loses at most the job in flight. Engines: ``local`` runs the jobs in
this process, in order; ``ray`` runs each job as a Ray task (``num_gpus=1`` when CUDA is there,
retried on a lost worker), on a local Ray or a cluster (``address="auto"``). The same job files
come out either way: the driver writes them as results arrive.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm

from .config import __version__, quick_mode
from .files import writable_dir, write_json_atomic, write_text_atomic
from .results import shipped


LOCK_NAME = "running.lock"
RECORD_FIELDS = ("params", "result", "seconds", "device")  # what every job file has; "commit" is newer (absent: "unknown")


class RunnerError(ValueError):
    """Bad input or state for the runner; the message says what to do."""


@dataclass
class Experiment:
    """A grid of independent jobs and how to merge them.

    ``jobs(quick)`` lists the jobs' parameters; ``run(params, workdir)`` runs one and returns a
    JSON-able dict; ``merge(finished, folder, quick, needed)`` turns the list of ``(params, result)``
    into the merged data (it may read its own job folders through ``folder``, a :class:`Folder`;
    ``needed`` holds the merged results of the experiments named in ``needs``, None where missing);
    ``figures`` maps a file name to a function ``(merged, folder path)`` that draws it from the merged
    data (a matplotlib figure, or the text of a ``.md``; None: nothing to draw); ``protocol(quick)``
    is what defines the results (compared with a folder's ``protocol.json``); ``seconds_per_job`` an
    estimate on this course's 2-core CPU, for ``--list``.
    """

    name: str
    summary: str
    jobs: Callable[[bool], list[dict]]
    run: Callable[[dict, Path], dict]
    merge: Callable[[list[tuple[dict, dict]], "Folder", bool, dict], dict]
    protocol: Callable[[bool], dict]
    seconds_per_job: Callable[[bool], float]
    figures: dict[str, Callable] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


def job_hash(params: dict) -> str:
    """What identifies a job: a hash of all its parameters, whatever order they were written in."""
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def job_key(params: dict) -> str:
    """A file name for a job: its parameters in short, readable form (sorted by name), plus
    :func:`job_hash`. Both parts are independent of the order the parameters were written in."""
    slug = "_".join(str(v) for _, v in sorted(params.items())
                    if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    slug = "".join(c if c.isalnum() or c in ".-" else "-" for c in slug)[:60].strip("-")
    return f"{slug}-{job_hash(params)}"


def _commit_of(root: Path) -> str | None:
    """HEAD of the git checkout at ``root``; when ``root/proxylab`` differs from it (changed or new
    files), ``-dirty-`` and a hash of those changes, so two uncommitted states never look alike."""
    try:
        git = functools.partial(subprocess.run, cwd=root, capture_output=True, text=True, timeout=10)
        head = git(["git", "rev-parse", "HEAD"])
        if head.returncode != 0:
            return None
        diff = git(["git", "diff", "HEAD", "--", "proxylab"]).stdout
        new = git(["git", "ls-files", "--others", "--exclude-standard", "-z", "--", "proxylab"]).stdout.split("\0")
        h = hashlib.sha1(diff.encode())
        for name in filter(None, new):
            h.update(name.encode() + (root / name).read_bytes())
        return head.stdout.strip() + (f"-dirty-{h.hexdigest()[:10]}" if diff or any(new) else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=None)
def git_commit() -> str | None:
    """The commit of the checkout proxylab runs from, if it is one (provenance; see ``_commit_of``)."""
    return _commit_of(Path(__file__).resolve().parents[1])


@functools.lru_cache(maxsize=None)
def device_name() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}"


# --------------------------------------------------------------------------- the folder
class Folder:
    """The results folder of one experiment."""

    def __init__(self, out, experiment: Experiment, quick: bool):
        self.exp, self.quick = experiment, quick
        self.root = Path(out) / experiment.name
        self.jobs_dir = self.root / "jobs"
        self._found: dict[str, str] | None = None  # job hash -> key of the job files and folders already here

    def check_protocol(self) -> None:
        """Refuse a folder that holds results of another protocol; record ours in a new one."""
        path = self.root / "protocol.json"
        ours = self.exp.protocol(self.quick)
        if path.exists():
            try:
                theirs = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RunnerError(f"{path} is corrupt; restore it from git or delete the folder {self.root} "
                                  "to start this experiment over") from None
            if theirs != ours:
                changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
                raise RunnerError(f"{self.root} holds results of another protocol (differs in: {', '.join(changed)}); "
                                  "choose another --out, or delete that folder to start over")
            return
        try:
            writable_dir(self.root)
        except ValueError as err:
            raise RunnerError(str(err)) from None
        write_json_atomic(ours, path)

    def key(self, params: dict) -> str:
        """The job's key in this folder: :func:`job_key`, or the name of a job file or folder already
        here with the job's hash (older runners wrote the slug in the order the parameters were written)."""
        new = job_key(params)
        if (self.jobs_dir / f"{new}.json").exists() or (self.jobs_dir / new).exists():
            return new
        if self._found is None:  # listed once: a grid of 700 jobs would otherwise list it 700 times
            names = sorted(os.listdir(self.jobs_dir)) if self.jobs_dir.is_dir() else []
            self._found = {n.removesuffix(".json").rpartition("-")[2]: n.removesuffix(".json")
                           for n in names if not n.startswith(".")}
        return self._found.get(job_hash(params), new)

    def path(self, params: dict) -> Path:
        return self.jobs_dir / f"{self.key(params)}.json"

    def finished(self, params: dict) -> dict | None:
        path = self.path(params)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            missing = [f for f in RECORD_FIELDS if f not in record]
            if missing or record["params"] != params or not isinstance(record["seconds"], (int, float)):
                raise KeyError(missing)
            return record
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise RunnerError(f"the job file {path} is corrupt; delete it and rerun to redo that job "
                              "(the other finished jobs are kept)") from None

    def save(self, params: dict, result: dict, seconds: float, device: str, commit: str | None = None) -> None:
        """Write a finished job's file; ``commit``: the code that computed it (default: :func:`git_commit`)."""
        write_json_atomic({"experiment": self.exp.name, "key": self.key(params), "params": params,
                           "result": result, "seconds": round(seconds, 3), "device": device,
                           "commit": commit or git_commit()}, self.path(params))

    def workdir(self, params: dict) -> Path:
        return self.jobs_dir / self.key(params)

    @contextlib.contextmanager
    def lock(self):
        """Hold ``running.lock`` while one command works on this folder; a second is refused with
        the holder's pid, host and start time.

        ``fcntl.flock`` rather than a file made with ``O_EXCL``: the kernel drops the lock when its
        holder ends, however it ends (kill -9, out of memory), so a killed run never leaves a lock
        that blocks; no pid has to be checked (pids are reused, and are meaningless on another host).
        The file's text (who holds it) is only for the messages; one left by a killed run is taken over.
        """
        try:
            writable_dir(self.root)
        except ValueError as err:
            raise RunnerError(str(err)) from None
        path = self.root / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(os.pread(fd, 4096, 0))
                os.close(fd)
                raise RunnerError(f"{self.root} is in use by {holder}; wait for it to finish or stop it, "
                                  "or choose another --out") from None
            try:  # the previous holder may have removed the file between our open and our lock
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        left = os.pread(fd, 4096, 0)
        if left.strip():
            print(f"{path}: taking over the lock left by {_holder(left)}, which no longer runs", file=sys.stderr)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before closing: whoever locks the file next sees it is gone
            os.close(fd)


def _holder(text: bytes) -> str:
    """Who a lock file names, in words."""
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on host {h['host']} (started {h['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


# --------------------------------------------------------------------------- engines
def _run_local(exp: Experiment, folder: Folder, todo: list[dict], progress: bool) -> None:
    bar = tqdm(todo, desc=exp.name, disable=not progress)
    for params in bar:
        t0 = time.perf_counter()
        result = exp.run(params, folder.workdir(params))
        folder.save(params, result, time.perf_counter() - t0, device_name())


def _ray_job(run: Callable[[dict, Path], dict], params: dict, workdir: str, quick: bool):
    """What a Ray worker runs: one job (quick mode as the driver's); also says where and on which
    commit it ran (a cluster's nodes may hold other checkouts than the driver's)."""
    os.environ["PROXYLAB_QUICK"] = "1" if quick else "0"
    t0 = time.perf_counter()
    result = run(params, Path(workdir))
    return result, time.perf_counter() - t0, device_name(), git_commit()


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast on a Ray address that does not answer (Ray itself retries for a minute or more)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise RunnerError(f"--address must be HOST:PORT or auto, got {address!r}") from None
    except OSError as err:
        raise RunnerError(f"could not start or reach the Ray cluster at {address} ({err.strerror or err}); "
                          "check the address (e.g. --address auto on a node of a running cluster) "
                          "or use --engine local") from None


def _run_ray(exp: Experiment, folder: Folder, todo: list[dict], progress: bool, address: str | None,
             num_cpus: int | None, retries: int = 3) -> None:
    try:
        import ray
    except ImportError:
        raise RunnerError("--engine ray needs Ray: pip install 'proxylab[ray]' (or use --engine local)") from None
    if address and address != "auto" and not address.startswith("ray://"):
        _check_reachable(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            where = address or "a local Ray"
            raise RunnerError(f"could not start or reach {where} ({str(err).splitlines()[0][:200]}); "
                              "check the address (e.g. --address auto on a node of a running cluster) "
                              "or use --engine local") from None
    gpus = 1 if torch.cuda.is_available() else 0
    remote = ray.remote(num_gpus=gpus, max_retries=retries, retry_exceptions=False)(_ray_job)
    pending = {remote.remote(exp.run, p, str(folder.workdir(p)), folder.quick): p for p in todo}
    bar = tqdm(total=len(pending), desc=f"{exp.name} (ray)", disable=not progress)
    failed: list[tuple[dict, str]] = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        params = pending.pop(done[0])
        try:
            result, seconds, device, commit = ray.get(done[0])
        except ray.exceptions.RayTaskError as err:  # the job raised: keep collecting the others
            cause = getattr(err, "cause", None) or err
            failed.append((params, f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ''}"))
        else:
            folder.save(params, result, seconds, device, commit or "unknown")  # not the driver's
        bar.update()
    bar.close()
    if failed:
        first, why = failed[0]
        raise RunnerError(f"{len(failed)} of {len(todo)} jobs failed on Ray workers (first: {folder.key(first)}: {why}); "
                          f"the {len(todo) - len(failed)} others are saved under {folder.jobs_dir}; fix the cause "
                          "and rerun the same command to run only the failed jobs")


# --------------------------------------------------------------------------- the entry point
def reproduce(exp: Experiment, out, engine: str = "local", address: str | None = None, quick: bool | None = None,
              progress: bool = True, num_cpus: int | None = None, merge_only: bool = False,
              command: str | None = None) -> dict:
    """Run every unfinished job of experiment ``exp`` into ``out/NAME``, then merge.

    Args:
        exp: the experiment (:func:`proxylab.experiments.get` finds one by name).
        out: the results root (``results/`` for the shipped ones).
        engine: ``"local"`` (this process, in order) or ``"ray"``.
        address: the Ray cluster to join (``"auto"``); None starts a local Ray.
        quick: the CI-sized grid; default: quick mode (``PROXYLAB_QUICK``).
        merge_only: merge what is finished, run nothing.
        command: the command line recorded in the provenance.

    Returns:
        The merged result (also written as ``out/NAME/NAME.json``), with ``provenance``.
    """
    name = exp.name
    quick = quick_mode() if quick is None else quick
    if engine not in ("local", "ray"):
        raise RunnerError(f"unknown engine {engine!r}; choose local or ray")
    folder = Folder(out, exp, quick)
    with folder.lock():  # one command per folder at a time
        folder.check_protocol()
        jobs = exp.jobs(quick)
        todo = [p for p in jobs if folder.finished(p) is None]
        t0 = time.perf_counter()
        if todo and not merge_only:
            if progress:
                print(f"{name}: {len(jobs)} jobs, {len(jobs) - len(todo)} finished, {len(todo)} to run "
                      f"on the {engine} engine", file=sys.stderr)
            if engine == "local":
                _run_local(exp, folder, todo, progress)
            else:
                _run_ray(exp, folder, todo, progress, address, num_cpus)
        records = [r for r in map(folder.finished, jobs) if r is not None]
        finished = [(r["params"], r["result"]) for r in records]
        merged = exp.merge(finished, folder, quick, {n: shipped(n, out) for n in exp.needs})  # the declared inputs
        merged["provenance"] = {
            "command": command or f"python -m proxylab reproduce {name} --out {out}",
            "protocol": exp.protocol(quick), "proxylab": __version__, "git_commit": git_commit(),
            "job_commits": dict(Counter(r.get("commit") or "unknown" for r in records).most_common()),
            "devices": sorted({r["device"] for r in records}), "jobs": len(jobs), "jobs_finished": len(finished),
            "job_seconds_total": round(sum(r["seconds"] for r in records), 1),
            "wall_seconds_this_call": round(time.perf_counter() - t0, 1)}
        write_json_atomic(merged, folder.root / f"{name}.json")
        draw(exp, merged, folder.root)
        return merged


def draw(exp: Experiment, merged: dict, root: Path) -> None:
    """Write the experiment's figures (and ``.md`` tables), each drawn from the merged data alone."""
    for file, make in exp.figures.items():
        out = make(merged, root)
        if isinstance(out, str):
            write_text_atomic(out, root / file)
        elif out is not None:
            out.savefig(root / file, dpi=90, bbox_inches="tight")
            plt.close(out)

