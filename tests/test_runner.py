"""The experiment runner: job files, resume after a kill, protocol checks, the folder lock,
provenance, the Ray engine (its faults are injected by tests/runner_faults.py)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from proxylab import experiments
from proxylab.cli import main as cli
from proxylab.runner import Folder, RunnerError, _commit_of, draw, git_commit, job_key, reproduce

ROOT = Path(__file__).resolve().parents[1]
QUICK_ENV = dict(os.environ, PROXYLAB_QUICK="1", OMP_NUM_THREADS="1")
# Ray workers import runner_faults (and this checkout's proxylab) from here
FAULTS_ENV = dict(QUICK_ENV, RAY_USAGE_STATS_ENABLED="0",
                  PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))


def values(merged):
    return {k: v for k, v in merged.items() if k != "provenance"}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted quick figure4 grid on the local engine."""
    out = tmp_path_factory.mktemp("straight")
    return out, reproduce(experiments.get("figure4"), out, quick=True, progress=False)


def copy_of(straight, tmp_path, name="copy"):
    """A copy of the finished quick figure4 folder, to break or lock without touching the original."""
    shutil.copytree(straight[0] / "figure4", tmp_path / name / "figure4")
    return tmp_path / name


def test_job_keys_are_stable_distinct_and_independent_of_the_parameters_order():
    jobs = experiments.get("table5").jobs(False)
    keys = [job_key(p) for p in jobs]
    assert len(set(keys)) == len(keys) == 700
    reordered = dict(reversed(list(jobs[0].items())))
    assert list(reordered) != list(jobs[0]) and job_key(reordered) == keys[0]
    assert job_key({**jobs[0], "seed": 99}) != keys[0]


def small_experiment(name="small", n=2):
    """A grid of ``n`` jobs that each write a file into the folder the runner gives them and return its path."""
    from proxylab.runner import Experiment

    def run(params, workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "out.txt").write_text(str(params["x"]))
        return {"file": str(workdir / "out.txt")}

    return Experiment(name, "test grid", lambda quick: [{"x": i} for i in range(n)], run,
                      lambda finished, folder, quick, needed: {"files": [r["file"] for _, r in finished]},
                      lambda quick: {"quick": quick}, lambda quick: 0.0)


SHIPPED_KEYS = [  # (params, the name of its shipped job file under results/): keys must keep naming them
    ({"dataset": "fashion-mnist", "size": 224, "batch": 64, "spec": "leaky:0.1", "seed": 0},
     "64-fashion-mnist-0-224-leaky-0.1-bb22516590"),  # figure4
    ({"model": "efficientnet-lite0", "classes": ["poncho"], "steps": 500, "size": 224, "lr": 0.02, "init_std": 0.1,
      "seed": 0, "spec": "leaky:1", "regularize": "paper", "save_images": True},
     "0.1-0.02-efficientnet-lite0-paper-0-224-leaky-1-500-8b0785678b"),  # figure3: no list, no bool in the slug
    ({"dataset": "fashion-mnist", "size": 14, "epochs": 3, "subset": 20000, "net_seed": 0, "time_limit": 120,
      "kind": "gap", "widths": [24], "output": 0, "rules": ["relu", "proxygrad:0.01", "proxygrad:0.03", "proxygrad:0.1",
      "proxygrad:0.3", "proxygrad:1", "leaky:0.1", "guided", "deconvnet", "redirected", "noisy:0.3"], "starts": 10,
      "steps": 300, "polish": 200, "long": 3},
     "fashion-mnist-3-gap-3-0-0-200-14-10-300-20000-120-07a727529b"),  # certify
]


@pytest.mark.parametrize("params, name", SHIPPED_KEYS)
def test_job_keys_name_the_shipped_job_files(params, name):
    assert job_key(params) == name and job_key(dict(reversed(list(params.items())))) == name


def test_a_job_keys_slug_is_at_most_60_safe_characters_without_a_trailing_dash():
    from proxylab.runner import job_hash

    assert job_key({"a": "x" * 59, "b": "y"}) == "x" * 59 + "-" + job_hash({"a": "x" * 59, "b": "y"})  # cut, no "-"
    assert job_key({"a": "x" * 58, "b": "y"}).startswith("x" * 58 + "-y-")  # exactly 60: kept whole
    assert job_key({"name": "a b/c_d", "w": 1.5}) == "a-b-c-d-1.5-" + job_hash({"name": "a b/c_d", "w": 1.5})
    assert len(job_hash({"w": 1.5})) == 10 and job_hash({"w": 1.5}) != job_hash({"w": 2.5})


def test_folder_key_ignores_hidden_files_and_finds_a_job_by_its_hash_alone(tmp_path):
    """A hidden file (an editor's or macOS's '._' copy) is no job file, even when its name ends with
    the job's hash; a job file or folder under any slug with the hash is the job's."""
    from proxylab.runner import job_hash

    exp = small_experiment()
    jobs = tmp_path / "small" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / f"._old-slug-{job_hash({'x': 0})}.json").write_text("{}")
    (jobs / f"old-slug-{job_hash({'x': 1})}").mkdir()
    folder = Folder(tmp_path, exp, True)
    assert folder.key({"x": 0}) == job_key({"x": 0}) and folder.key({"x": 1}) == f"old-slug-{job_hash({'x': 1})}"
    assert folder.key({"x": 2}) == job_key({"x": 2})  # nothing here: its own key
    old_file = jobs / f"written-in-another-order-{job_hash({'x': 3})}.json"  # a finished job, named by an older runner
    old_file.write_text(json.dumps({"params": {"x": 3}, "result": {}, "seconds": 1.0, "device": "cpu"}))
    again = Folder(tmp_path, exp, True)
    assert again.key({"x": 3}) == old_file.stem and again.path({"x": 3}) == old_file
    assert again.finished({"x": 3})["params"] == {"x": 3}
    assert Folder(tmp_path / "nothing", exp, True).key({"x": 0}) == job_key({"x": 0})  # no jobs folder yet


@pytest.mark.parametrize("text", ['{"params": {"x": 5}, "result": {}, "seconds": 1.0, "device": "cpu"}',  # another job's
                                  '{"result": {}, "seconds": 1.0, "device": "cpu"}', "null", "[1, 2]",
                                  '{"params": {"x": 0}, "result": {}, "seconds": null, "device": "cpu"}', b"\xff\xfe"])
def test_a_job_file_that_is_not_this_jobs_record_is_corrupt(tmp_path, text):
    exp = small_experiment()
    folder = Folder(tmp_path, exp, True)
    assert folder.finished({"x": 0}) is None  # no file: not finished
    folder.save({"x": 0}, {}, 1.0, "cpu")
    assert folder.finished({"x": 0})["seconds"] == 1.0
    path = folder.path({"x": 0})
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    with pytest.raises(RunnerError) as err:
        folder.finished({"x": 0})
    assert str(err.value) == (f"the job file {path} is corrupt; delete it and rerun to redo that job "
                              "(the other finished jobs are kept)")


def test_each_job_runs_in_its_own_folder_and_the_bar_shows_unless_told_not_to(tmp_path, capsys):
    exp = small_experiment()
    merged = reproduce(exp, tmp_path / "quiet", quick=True, progress=False)
    folder = Folder(tmp_path / "quiet", exp, True)
    assert merged["files"] == [str(folder.workdir({"x": i}) / "out.txt") for i in range(2)]
    assert [Path(f).read_text() for f in merged["files"]] == ["0", "1"]
    from proxylab.runner import device_name

    record = json.loads(folder.path({"x": 1}).read_text())  # the job file: what it ran, where, on which code
    assert record == {"experiment": "small", "key": job_key({"x": 1}), "params": {"x": 1}, "result": {"file": merged["files"][1]},
                      "seconds": record["seconds"], "device": device_name(), "commit": git_commit()}
    assert folder.path({"x": 1}).name == f"{job_key({'x': 1})}.json" and 0 <= record["seconds"] < 60
    assert record["seconds"] == round(record["seconds"], 3)
    assert capsys.readouterr().err == ""  # no progress: not a line
    reproduce(exp, tmp_path / "loud", quick=True)  # shown by default
    err = capsys.readouterr().err
    assert "small: 2 jobs, 0 finished, 2 to run on the local engine" in err
    assert re.search(r"small: 100%.*2/2", err)  # the bar, named after the experiment


def test_a_saved_job_file_holds_its_seconds_to_the_millisecond_and_its_commit(tmp_path):
    folder = Folder(tmp_path, small_experiment(), True)
    folder.save({"x": 0}, {"v": 1}, 1.23456789, "cpu: test")
    folder.save({"x": 1}, {"v": 2}, 2.0004, "cpu: test", commit="0123abcdef")  # a worker's commit, not ours
    first, second = (json.loads(folder.path({"x": i}).read_text()) for i in range(2))
    assert first == {"experiment": "small", "key": job_key({"x": 0}), "params": {"x": 0}, "result": {"v": 1},
                     "seconds": 1.235, "device": "cpu: test", "commit": git_commit()}
    assert second["seconds"] == 2.0 and second["commit"] == "0123abcdef"
    assert folder.finished({"x": 0}) == first


def test_a_lock_files_holder_in_words_whatever_the_file_holds():
    from proxylab.runner import _holder

    me = {"pid": 12, "host": "node-1", "started": "2026-01-02 03:04:05 UTC"}
    assert _holder(json.dumps(me).encode()) == "pid 12 on host node-1 (started 2026-01-02 03:04:05 UTC)"
    for text in (b"", b"\xff not json", b'{"pid": 12}', b"[12]"):  # empty (just created), garbled, partial
        assert _holder(text) == "another process"


def test_check_protocol_records_ours_refuses_another_or_a_corrupt_one_and_an_unwritable_folder(tmp_path):
    exp = small_experiment()
    folder = Folder(tmp_path, exp, True)
    folder.check_protocol()  # a new folder: ours is recorded
    path = tmp_path / "small" / "protocol.json"
    assert json.loads(path.read_text()) == {"quick": True}
    folder.check_protocol()  # the same protocol: accepted
    path.write_text(json.dumps({"quick": False, "extra": 1}))
    with pytest.raises(RunnerError) as err:
        folder.check_protocol()
    assert str(err.value) == (f"{tmp_path / 'small'} holds results of another protocol (differs in: extra, quick); "
                              "choose another --out, or delete that folder to start over")
    path.write_text('{"quick": ')
    with pytest.raises(RunnerError) as err:
        folder.check_protocol()
    assert str(err.value) == (f"{path} is corrupt; restore it from git or delete the folder {tmp_path / 'small'} "
                              "to start this experiment over")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(RunnerError, match="is corrupt; restore it"):
        folder.check_protocol()
    (tmp_path / "blocked").write_text("a file where the results root should be")
    with pytest.raises(RunnerError, match=r"^cannot write to .*blocked.small .*; choose a writable --out$"):
        Folder(tmp_path / "blocked", exp, True).check_protocol()


def test_job_files_named_in_another_parameter_order_are_found(straight, tmp_path):
    """Files an older runner named with its slug in the parameters' written order (the shipped
    results) are found by their hash: nothing reruns, and a job's own folder is found too."""
    out = copy_of(straight, tmp_path)
    jobs_dir = out / "figure4" / "jobs"
    jobs = experiments.get("figure4").jobs(True)
    for p in jobs:
        (jobs_dir / f"{job_key(p)}.json").rename(jobs_dir / f"written-in-another-order-{job_key(p)[-10:]}.json")
    before = sorted(jobs_dir.iterdir())
    assert values(reproduce(experiments.get("figure4"), out, quick=True, progress=False)) == values(straight[1])
    assert sorted(jobs_dir.iterdir()) == before  # no job was run again
    (jobs_dir / f"written-in-another-order-{job_key(jobs[0])[-10:]}.json").unlink()  # an interrupted job ...
    (jobs_dir / f"old-{job_key(jobs[0])[-10:]}").mkdir()  # ... with its checkpoint folder
    assert Folder(out, experiments.get("figure4"), True).workdir(jobs[0]) == jobs_dir / f"old-{job_key(jobs[0])[-10:]}"


def test_local_engine_writes_one_file_per_job_and_merges(straight):
    out, merged = straight
    jobs = experiments.get("figure4").jobs(True)
    files = sorted((out / "figure4" / "jobs").glob("*.json"))
    assert len(files) == len(jobs) == 10
    record = json.loads(files[0].read_text())
    assert {"params", "result", "seconds", "device"} <= set(record)
    assert merged["provenance"]["jobs_finished"] == 10 and (out / "figure4" / "figure4.png").stat().st_size > 0
    assert set(merged["values"]) == {"per_channel", "whole"}
    assert all(set(v) == {"Leaky ReLU", "ProxyGrad"} for v in merged["values"].values())
    leaky = merged["values"]["per_channel"]["Leaky ReLU"]
    assert len(leaky) == 3 and len(leaky[0]) == 2  # slopes x seeds
    # a rerun runs nothing: the job files are not rewritten
    stamps = [f.stat().st_mtime_ns for f in files]
    again = reproduce(experiments.get("figure4"), out, quick=True, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == stamps and values(again) == values(merged)


def test_a_killed_run_resumes_and_merges_to_the_uninterrupted_result(straight, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "proxylab", "reproduce", "figure4", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=QUICK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jobs_dir = out / "figure4" / "jobs"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(jobs_dir.glob("*.json"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(jobs_dir.glob("*.json")))
    assert 3 <= done < 10, "the grid finished before it could be killed"
    assert not (out / "figure4" / "figure4.json").exists()
    merged = reproduce(experiments.get("figure4"), out, quick=True, progress=False)
    assert merged["provenance"]["jobs_finished"] == 10
    assert values(merged) == values(straight[1])


def test_results_of_another_protocol_are_refused(straight, tmp_path, capsys):
    out = tmp_path / "other"
    (out / "figure4").mkdir(parents=True)
    (out / "figure4" / "protocol.json").write_text(json.dumps({"quick": False, "jobs": [], "version": 1}))
    with pytest.raises(RunnerError, match="another protocol .*jobs, quick.*another --out"):
        reproduce(experiments.get("figure4"), out, quick=True, progress=False)
    assert cli(["reproduce", "figure4", "--out", str(out), "--quiet"]) == 2
    assert "another protocol" in capsys.readouterr().err


def test_a_corrupt_job_file_is_named_and_nothing_else_is_lost(straight, tmp_path, capsys):
    import shutil

    out = tmp_path / "corrupt"
    shutil.copytree(straight[0] / "figure4", out / "figure4")
    victim = sorted((out / "figure4" / "jobs").glob("*.json"))[4]
    victim.write_text('{"params": ')
    with pytest.raises(RunnerError, match=f"{victim.name} is corrupt; delete it"):
        reproduce(experiments.get("figure4"), out, quick=True, progress=False)
    assert len(list((out / "figure4" / "jobs").glob("*.json"))) == 10
    victim.unlink()
    assert values(reproduce(experiments.get("figure4"), out, quick=True, progress=False)) == values(straight[1])


@pytest.mark.parametrize("field, value", [("result", None), ("seconds", None), ("device", None), ("seconds", "1.5")])
def test_a_job_file_without_a_field_is_one_line(straight, tmp_path, capsys, monkeypatch, field, value):
    """Valid JSON that lacks a field (or holds a wrong kind of value) is a corrupt job file too."""
    out = copy_of(straight, tmp_path)
    victim = sorted((out / "figure4" / "jobs").glob("*.json"))[2]
    record = json.loads(victim.read_text())
    record.pop(field) if value is None else record.update({field: value})
    victim.write_text(json.dumps(record))
    with pytest.raises(RunnerError, match=f"{victim.name} is corrupt; delete it and rerun"):
        reproduce(experiments.get("figure4"), out, quick=True, progress=False)
    monkeypatch.setenv("PROXYLAB_QUICK", "1")
    assert cli(["reproduce", "figure4", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{victim.name} is corrupt" in err and len(err.strip().splitlines()) == 1


HOLD_LOCK = ("import sys, time; from proxylab import experiments; from proxylab.runner import Folder\n"
             "with Folder(sys.argv[1], experiments.get('figure4'), True).lock():\n"
             "    print('held', flush=True); time.sleep(300)")


def test_a_folder_in_use_is_refused_in_one_line_and_a_killed_holder_does_not_block(straight, tmp_path, capsys,
                                                                                   monkeypatch):
    """While another process holds the folder, a second command stops at once, naming it; after that
    process is killed (kill -9: no clean-up), its lock file is taken over and the command runs."""
    out = copy_of(straight, tmp_path)
    merged_file = out / "figure4" / "figure4.json"
    stamp = merged_file.stat().st_mtime_ns
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=ROOT, env=QUICK_ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        in_use = rf"figure4 is in use by pid {holder.pid} on host {re.escape(socket.gethostname())} \(started 20"
        with pytest.raises(RunnerError, match=in_use):
            reproduce(experiments.get("figure4"), out, quick=True, progress=False)
        monkeypatch.setenv("PROXYLAB_QUICK", "1")
        assert cli(["reproduce", "figure4", "--out", str(out), "--quiet", "--merge-only"]) == 2
        err = capsys.readouterr().err
        assert re.search(in_use, err) and len(err.strip().splitlines()) == 1
        assert merged_file.stat().st_mtime_ns == stamp  # nothing was written
    finally:
        holder.kill()  # SIGKILL
        holder.wait()
    lock = out / "figure4" / "running.lock"
    assert json.loads(lock.read_text())["pid"] == holder.pid  # left behind by the killed holder
    assert values(reproduce(experiments.get("figure4"), out, quick=True, progress=False)) == values(straight[1])
    assert f"taking over the lock left by pid {holder.pid}" in capsys.readouterr().err
    assert not lock.exists() and merged_file.stat().st_mtime_ns != stamp


def test_job_files_record_their_commit_and_the_merge_counts_them(straight, tmp_path):
    """Each job file names the code that computed it; the merge lists those commits (an older job
    file without one counts as unknown) beside the commit at merge time."""
    assert git_commit(), "the tests run from a git checkout"
    out = copy_of(straight, tmp_path)
    files = sorted((out / "figure4" / "jobs").glob("*.json"))
    assert {json.loads(f.read_text())["commit"] for f in files} == {git_commit()}
    for f, commit in zip(files[:3], [None, None, "0123abcdef"]):
        record = json.loads(f.read_text())
        record.pop("commit") if commit is None else record.update(commit=commit)
        f.write_text(json.dumps(record))
    prov = reproduce(experiments.get("figure4"), out, quick=True, progress=False, merge_only=True)["provenance"]
    assert prov["job_commits"] == {git_commit(): 7, "unknown": 2, "0123abcdef": 1}
    assert prov["git_commit"] == git_commit()


def test_a_dirty_checkout_is_named_by_a_hash_of_its_package_diff(tmp_path):
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    repo.mkdir()
    plain.mkdir()

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (repo / "proxylab").mkdir()
    (repo / "proxylab" / "a.py").write_text("x = 1\n")
    (repo / "README.md").write_text("notes\n")
    git("add", ".")
    git("commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    assert _commit_of(repo) == head
    (repo / "README.md").write_text("other notes\n")  # outside the package: still clean
    assert _commit_of(repo) == head
    (repo / "proxylab" / "new.py").write_text("y = 1\n")  # a new module, not yet added, is code too
    new_one = _commit_of(repo)
    (repo / "proxylab" / "new.py").write_text("y = 2\n")
    assert new_one.startswith(f"{head}-dirty-") and _commit_of(repo) != new_one
    (repo / "proxylab" / "new.py").unlink()
    (repo / "proxylab" / "a.py").write_text("x = 2\n")
    one = _commit_of(repo)
    (repo / "proxylab" / "a.py").write_text("x = 3\n")
    two = _commit_of(repo)
    assert re.fullmatch(f"{head}-dirty-[0-9a-f]{{10}}", one) and one != two
    git("add", "proxylab/a.py")  # a staged change is the same code
    assert _commit_of(repo) == two
    (repo / ".gitignore").write_text("*.pyc\n")
    git("add", ".gitignore")
    (repo / "proxylab" / "a.cpython-311.pyc").write_bytes(b"compiled")  # an ignored file is no code
    assert _commit_of(repo) == two
    assert _commit_of(plain) is None  # not a git checkout


@pytest.mark.parametrize("args, message", [
    (["reproduce", "figur2"], "did you mean figure2"),
    (["reproduce"], "name an experiment"),
    (["reproduce", "figure4", "--engine", "ray", "--address", "127.0.0.1:9"], "could not start or reach"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message, monkeypatch):
    rc = cli(args + ["--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_ray_address_is_checked_at_once_in_one_line(monkeypatch):
    """HOST:PORT is split at its last colon (an IPv6 host has colons too), a missing host is this
    machine, a refused or silent address fails within seconds (Ray itself would retry for a minute)."""
    from proxylab.runner import _check_reachable

    with pytest.raises(RunnerError, match=r"^--address must be HOST:PORT or auto, got 'somewhere'$"):
        _check_reachable("somewhere")
    tried = []
    real = socket.create_connection

    def connect(address, timeout=None):
        tried.append(address)
        if address[0] == "silent.example":  # an address that never answers: only a timeout ends the wait
            assert timeout is not None and timeout <= 5, "no time limit: this would wait as long as Ray does"
            raise TimeoutError("timed out")
        return real(address, timeout=timeout)

    monkeypatch.setattr(socket, "create_connection", connect)
    help = "; check the address (e.g. --address auto on a node of a running cluster) or use --engine local"
    with pytest.raises(RunnerError) as err:
        _check_reachable(":9")  # nothing listens on port 9 of this machine
    assert str(err.value) == "could not start or reach the Ray cluster at :9 (Connection refused)" + help
    assert tried[-1] == ("127.0.0.1", 9)
    with pytest.raises(RunnerError, match=r"^could not start or reach the Ray cluster at silent.example:6379 \(timed out\); check"):
        _check_reachable("silent.example:6379")
    with pytest.raises(RunnerError, match="could not start or reach the Ray cluster at ::1:9 "):
        _check_reachable("::1:9")
    assert tried[-1] == ("::1", 9)


def test_ray_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RunnerError) as err:
        reproduce(experiments.get("figure4"), tmp_path, engine="ray", quick=True, progress=False)
    assert str(err.value) == "--engine ray needs Ray: pip install 'proxylab[ray]' (or use --engine local)"


def test_the_ray_engine_checks_a_host_port_at_once_and_names_what_ray_could_not_reach(tmp_path, monkeypatch):
    """HOST:PORT is checked before Ray is asked (Ray would retry for a minute); "auto", a ray://
    client address and no address (a local Ray, sized by num_cpus) go to ray.init, whose refusal is
    one line naming what it could not reach. Ray is not imported: a stand-in whose init refuses."""
    import types

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        raise ConnectionError("no cluster here\nand a second line")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=init))
    exp = experiments.get("figure4")
    help = "; check the address (e.g. --address auto on a node of a running cluster) or use --engine local"
    for address, where in [("auto", "auto"), ("ray://head.example:10001", "ray://head.example:10001"),
                           (None, "a local Ray")]:
        with pytest.raises(RunnerError) as err:
            reproduce(exp, tmp_path / "r", engine="ray", address=address, quick=True, progress=False, num_cpus=2)
        assert str(err.value) == f"could not start or reach {where} (no cluster here){help}"
    assert [(c["address"], c["num_cpus"]) for c in calls] == [("auto", None), ("ray://head.example:10001", None),
                                                              (None, 2)]
    with pytest.raises(RunnerError) as err:
        reproduce(exp, tmp_path / "r", engine="ray", address="127.0.0.1:9", quick=True, progress=False)
    assert str(err.value) == "could not start or reach the Ray cluster at 127.0.0.1:9 (Connection refused)" + help
    assert len(calls) == 3  # refused before Ray was asked


def test_the_ray_engine_saves_results_as_they_arrive_and_sums_up_the_failed_jobs(tmp_path, monkeypatch, capsys):
    """The Ray engine's bookkeeping, on a stand-in for Ray that keeps Ray's rules (a task asking for
    more GPUs than the machine has is never scheduled, ``wait`` cannot return more than it was given,
    a task that raised is retried only with ``retry_exceptions``) and runs each task in this process
    when its result is asked for, handing results back in reverse order: every finished job is saved
    with the worker's commit and device, each job runs in its own folder in the driver's quick mode,
    a job that raised runs once and is summed up in one line with the first failed job's key and the
    last line of its error (cut at 300 characters), and a rerun runs only the failed jobs. (The real
    Ray runs in test_ray_engine_survives_a_killed_worker_and_matches_the_local_engine.)"""
    import types

    from proxylab.runner import Experiment, device_name

    class TaskError(Exception):
        def __init__(self, cause):
            super().__init__(f"task failed: {cause}")
            self.cause = cause

    def remote(**options):
        if options.get("num_gpus", 0) > torch.cuda.device_count():
            raise RuntimeError("no node has the GPUs these tasks ask for: they would never be scheduled")

        def wrap(fn):
            def submit(*args):
                def result():
                    for attempt in range(1 + (options.get("max_retries", 3) if options.get("retry_exceptions") else 0)):
                        try:
                            return fn(*args)
                        except Exception as err:  # noqa: BLE001 - what a Ray task raises
                            error = err
                    raise TaskError(error)
                return result
            return types.SimpleNamespace(remote=submit)
        return wrap

    def wait(refs, num_returns):
        if num_returns > len(refs):
            raise ValueError("num_returns cannot be greater than the number of objects")
        return refs[-num_returns:], refs[:-num_returns]

    fake = types.SimpleNamespace(is_initialized=lambda: True, remote=remote, get=lambda ref: ref(), wait=wait,
                                 exceptions=types.SimpleNamespace(RayTaskError=TaskError))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("PROXYLAB_QUICK", "0")  # a worker runs in the driver's quick mode
    ran, errors = [], {1: ValueError("job 1 is broken\nbadly"), 2: ValueError("job 2 is broken\nx=2\n" + "z" * 400)}
    jobs_dir = tmp_path / "fake" / "jobs"

    def run(params, workdir):
        ran.append(params["x"])
        assert os.environ["PROXYLAB_QUICK"] == "1" and workdir == jobs_dir / job_key(params)
        if params["x"] in errors:
            raise errors[params["x"]]
        return {"y": 2 * params["x"]}

    exp = Experiment("fake", "test grid", lambda quick: [{"x": i} for i in range(4)], run,
                     lambda finished, folder, quick, needed: {"y": sorted(r["y"] for _, r in finished)},
                     lambda quick: {"quick": quick}, lambda quick: 0.0)
    tail = "; fix the cause and rerun the same command to run only the failed jobs"
    with pytest.raises(RunnerError) as err:
        reproduce(exp, tmp_path, engine="ray", address="auto", quick=True, progress=False)
    first = job_key({"x": 2})  # results arrive in reverse order: job 2 fails first
    assert str(err.value) == (f"2 of 4 jobs failed on Ray workers (first: {first}: ValueError: {'z' * 300}); "
                              f"the 2 others are saved under {jobs_dir}" + tail)
    assert sorted(ran) == [0, 1, 2, 3] and capsys.readouterr().err == ""  # no retry of a raised job, no bar
    records = {p.name: json.loads(p.read_text()) for p in jobs_dir.glob("*.json")}
    assert sorted(records) == sorted(f"{job_key({'x': x})}.json" for x in (0, 3))
    for record in records.values():
        assert record["result"] == {"y": 2 * record["params"]["x"]}
        assert record["commit"] == (git_commit() or "unknown") and record["device"] == device_name()
        assert isinstance(record["seconds"], float)
    ran.clear()
    errors = {1: ValueError()}  # an error without a message
    with pytest.raises(RunnerError) as err:
        reproduce(exp, tmp_path, engine="ray", address="auto", quick=True, progress=False)
    assert str(err.value) == (f"1 of 2 jobs failed on Ray workers (first: {job_key({'x': 1})}: ValueError: ); "
                              f"the 1 others are saved under {jobs_dir}" + tail)
    ran.clear()
    errors = {}
    merged = reproduce(exp, tmp_path, engine="ray", address="auto", quick=True, progress=False)
    assert ran == [1] and merged["y"] == [0, 2, 4, 6]


def test_list_names_every_experiment_with_its_cost(capsys):
    assert cli(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("figure2", "table3", "figure3", "table4", "table5", "figure4"):
        assert f"\n{name} " in "\n" + out
    assert out.count("on a 2-core CPU") == len(experiments.names())


@pytest.fixture(scope="module")
def ray_faults(straight, tmp_path_factory):
    """The quick figure4 grid on a local Ray with 2 CPUs, with two faults at once (one Ray start for
    both): the first job to start kills its worker once (os._exit), and one other job raises. Then
    the same command again, with no fault, on the local engine: which jobs are left to run is decided
    before any engine starts (runner.reproduce), and a second Ray start would cost 15-25 s."""
    pytest.importorskip("ray")
    tmp = tmp_path_factory.mktemp("ray")
    marker, out = tmp / "killed-once", tmp / "ray"
    bad = job_key(experiments.get("figure4").jobs(True)[3])
    args = ["reproduce", "figure4", "--out", str(out), "--engine", "ray", "--num-cpus", "2", "--quiet"]
    script = (f"import sys, runner_faults; from proxylab.cli import main; "
              f"runner_faults.inject('figure4', runner_faults.die_once, {str(marker)!r}); "
              f"runner_faults.inject('figure4', runner_faults.fail, {bad!r}); sys.exit(main({args!r}))")
    first = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=FAULTS_ENV, capture_output=True, text=True,
                           timeout=400)
    saved = {p.stem: p.stat().st_mtime_ns for p in (out / "figure4" / "jobs").glob("*.json")}
    local = args[:args.index("--engine")] + ["--quiet"]
    rerun = subprocess.run([sys.executable, "-m", "proxylab", *local], cwd=ROOT, env=FAULTS_ENV, capture_output=True,
                           text=True, timeout=400)
    return dict(first=first, saved=saved, rerun=rerun, bad=bad, marker=marker, out=out)


def test_ray_engine_survives_a_killed_worker_and_matches_the_local_engine(straight, ray_faults):
    """The killed job is retried by Ray and saved; every job file and the merged result equal the
    local engine's."""
    marker, out = ray_faults["marker"], ray_faults["out"]
    assert marker.exists(), "no worker was killed"
    killed = job_key(json.loads(marker.read_text()))
    assert killed != ray_faults["bad"] and killed in ray_faults["saved"], "the killed job was not retried"
    assert ray_faults["rerun"].returncode == 0, ray_faults["rerun"].stderr[-3000:]
    merged = json.loads((out / "figure4" / "figure4.json").read_text())
    assert values(merged) == json.loads(json.dumps(values(straight[1])))
    local = {p.name: json.loads(p.read_text())["result"] for p in (straight[0] / "figure4" / "jobs").glob("*.json")}
    records = [json.loads(p.read_text()) for p in (out / "figure4" / "jobs").glob("*.json")]
    assert local == {f"{r['key']}.json": r["result"] for r in records}
    assert {r["commit"] for r in records} == {git_commit()}  # as the worker saw its checkout


def test_a_job_that_fails_on_ray_is_one_line_and_the_others_are_kept(ray_faults):
    """One job raises inside its Ray worker: the command ends with one line naming it, the other
    jobs' files are written, and the rerun runs only that job."""
    first, bad = ray_faults["first"], ray_faults["bad"]
    assert first.returncode == 2, first.stderr[-3000:]
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 10 jobs failed" in lines[0] and bad in lines[0], first.stderr[-3000:]
    assert "injected failure" in lines[0] and "rerun the same command" in lines[0]
    assert len(ray_faults["saved"]) == 9 and bad not in ray_faults["saved"]
    rerun = ray_faults["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    now = {p.stem: p.stat().st_mtime_ns for p in (ray_faults["out"] / "figure4" / "jobs").glob("*.json")}
    assert set(now) == set(ray_faults["saved"]) | {bad}
    assert all(now[k] == t for k, t in ray_faults["saved"].items()), "the rerun ran finished jobs again"


def test_an_unusable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli(["reproduce", "figure4", "--out", str(blocker / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "choose a writable --out" in err and len(err.strip().splitlines()) == 1


def test_diagnostic_record_by_hand():
    from proxylab.am_grids import diagnostic_record

    slopes = [0.0, 0.01, 0.1, 0.3]
    scores = torch.tensor([[10.0, 10.0], [12.0, 9.0], [15.0, 11.0], [11.0, 20.0]])  # (slope, class)
    rec = diagnostic_record(slopes, scores, [(0.025, 0.1), None])
    first, second = rec["per_class"]
    assert first == {"best_slope": 0.1, "relu_over_best": round(10 / 15, 4), "suggested": (0.025, 0.1),
                     "where": "inside", "suggested_over_best": 1.0}
    assert second["best_slope"] == 0.3 and second["where"] == "no suggestion" and second["suggested_over_best"] is None
    assert rec["fixed_over_best"] == {"0.01": round((12 / 15 + 9 / 20) / 2, 4), "0.1": round((1 + 11 / 20) / 2, 4),
                                      "0.3": round((11 / 15 + 1) / 2, 4)}
    assert rec["inside_or_next"] == 1 and rec["suggested_over_best_mean"] == 1.0 and rec["best_at_or_below_top"] == 1
    far = diagnostic_record(slopes, scores, [(0.0025, 0.01), (0.025, 0.1)])["per_class"]
    assert [r["where"] for r in far] == ["next to", "next to"]
    assert far[0]["suggested_over_best"] == round(12 / 15, 4)


def test_table4_pairs_each_activation_with_relu_of_the_same_seed(tmp_path):
    """The merged Table 4 compares each activation with ReLU seed by seed (same data order and
    initial weights); a seed without its ReLU run is left out of the pairing."""
    base = {"dataset": "fashion-mnist", "arch": "pfnet18"}
    acc = {("relu", 0): 80.0, ("relu", 1): 82.0, ("proxygrad:0.1", 0): 81.0, ("proxygrad:0.1", 1): 81.5,
           ("proxygrad:0.1", 2): 99.0, ("leaky:0.1", 0): 79.0}
    finished = [({**base, "activation": a, "seed": s}, {"test_accuracy": v}) for (a, s), v in acc.items()]
    exp = experiments.get("table4")
    merged = exp.merge(finished, Folder(tmp_path, exp, True), True, {})
    draw(exp, merged, tmp_path)  # the figure, from the merged data alone
    pg = merged["vs_relu"]["fashion-mnist/pfnet18/proxygrad:0.1"]
    assert pg["seeds"] == 2 and pg["ahead"] == 1 and pg["mean"] == pytest.approx(0.25)
    assert pg["se"] == pytest.approx(torch.tensor([1.0, -0.5], dtype=torch.float64).std().item() / 2 ** 0.5, abs=1e-3)
    assert merged["vs_relu"]["fashion-mnist/pfnet18/leaky:0.1"] == {"mean": -1.0, "se": None, "ahead": 0, "seeds": 1}
    assert "fashion-mnist/pfnet18/relu" not in merged["vs_relu"]
    assert (tmp_path / "table4.png").stat().st_size > 0
    assert "87.2±10.3 (n=3)" in merged["markdown"]  # the table itself keeps every seed: 81, 81.5, 99



def test_an_image_merge_finds_job_folders_named_in_another_parameter_order(tmp_path):
    """Job folders an older runner named with its slug in the parameters' written order (as in the
    shipped figure3 and table3) are found by the merge: it reads their images and names them."""
    from PIL import Image

    folder = Folder(tmp_path, experiments.get("table3"), True)
    folder.check_protocol()
    jobs = experiments.get("table3").jobs(True)
    keys = [f"written-in-another-order-{job_key(p)[-10:]}" for p in jobs]
    for i, (p, key) in enumerate(zip(jobs, keys)):
        n = len(p["classes"])
        (folder.jobs_dir / key).mkdir(parents=True)
        Image.new("RGB", (2 + 10 * n, 12)).save(folder.jobs_dir / key / "images.png")  # n tiles of 8 px
        result = {"mean": [0.0], "per_class": {str(p["steps"]): [float(i)] * n}, "images": "images.png"}
        (folder.jobs_dir / f"{key}.json").write_text(json.dumps({"params": p, "result": result, "seconds": 1.0,
                                                                  "device": "cpu"}))
    merged = reproduce(experiments.get("table3"), tmp_path, quick=True, progress=False, merge_only=True)
    assert [r["images"] for r in merged["rows"]] == [f"jobs/{key}/images.png" for key in keys]


def test_draw_writes_each_figure_at_90_dpi_cropped_to_its_content_and_each_table_as_text(tmp_path):
    """Figures are PNGs at 90 dpi cropped to what they show (a 4 x 3 inch figure that it fills is
    378 x 288 pixels with the 0.1-inch padding; a small label alone is cropped to its size), a ``.md``
    is written as text, None writes nothing, and no figure is left open."""
    import struct

    import matplotlib.pyplot as plt

    from proxylab.runner import Experiment

    def full(merged, root):
        fig = plt.figure(figsize=(4, 3))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow([[0, 1], [1, 0]], aspect="auto")
        ax.set_axis_off()
        return fig

    def label(merged, root):
        fig = plt.figure(figsize=(4, 3))
        fig.text(0.5, 0.5, merged["label"], fontsize=8)
        return fig

    figures = {"full.png": full, "label.png": label, "table.md": lambda merged, root: f"| {merged['label']} |\n",
               "nothing.png": lambda merged, root: None}
    exp = Experiment("drawn", "figures", lambda quick: [], None, None, lambda quick: {}, lambda quick: 0.0, figures)
    open_before = set(plt.get_fignums())
    draw(exp, {"label": "x"}, tmp_path)

    def size(name):
        return struct.unpack(">II", (tmp_path / name).read_bytes()[16:24])

    assert size("full.png") == (378, 288)  # (4 + 2 x 0.1 inch of padding) x 90 dpi
    width, height = size("label.png")
    assert width < 60 and height < 40
    assert (tmp_path / "table.md").read_text() == "| x |\n" and not (tmp_path / "nothing.png").exists()
    assert set(plt.get_fignums()) == open_before
