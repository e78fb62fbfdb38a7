"""The experiment runner's overhead: a grid of many small jobs through ``reproduce`` (local
engine: job files, protocol, merge) against calling the same job functions back to back, side by
side in one run; and, with ``--ray``, Ray's start-up and per-task cost on the same grid.

    python benchmarks/bench_runner.py [--rounds 5] [--ray]

The grid is Table 5's quick one (28 jobs of a random ResNet18's gradient at 64 px, a fraction of a
second each), so the fixed per-job cost shows; the median over interleaved rounds is reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PROXYLAB_QUICK", "1")

from proxylab import experiments  # noqa: E402
from proxylab.runner import Folder, draw, reproduce  # noqa: E402

NAME = "table5"


def back_to_back(exp) -> float:
    """The experiment's own work without the runner: every job, then the same merge (figure, JSON)."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        finished = [(params, exp.run(params, Path(out))) for params in exp.jobs(True)]
        draw(exp, exp.merge(finished, Folder(out, exp, True), True, {}), Path(out))
        return time.perf_counter() - t0


def through_runner(engine: str = "local", **kwargs) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        reproduce(experiments.get(NAME), out, engine=engine, quick=True, progress=False, **kwargs)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine (needs proxylab[ray])")
    args = parser.parse_args()
    exp = experiments.get(NAME)
    n = len(exp.jobs(True))
    back_to_back(exp)  # warm-up: imports, the data cache
    bare, runner = [], []
    for _ in range(args.rounds):
        bare.append(back_to_back(exp))
        runner.append(through_runner())
    b, r = statistics.median(bare), statistics.median(runner)
    print(f"{NAME} quick grid, {n} jobs, median of {args.rounds} interleaved rounds")
    print("| run | seconds | ratio |")
    print("|---|---|---|")
    print(f"| job functions back to back, then the merge | {b:.2f} | 1.000 |")
    print(f"| reproduce, local engine | {r:.2f} | {r / b:.3f} |")
    print(f"per-job overhead of the local engine: {1000 * (r - b) / n:.1f} ms")
    if args.ray:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        start = time.perf_counter() - t0
        first = through_runner("ray")  # workers start and import torch
        again = statistics.median(through_runner("ray") for _ in range(max(1, args.rounds // 2)))
        print(f"| reproduce, Ray engine (warm workers) | {again:.2f} | {again / b:.3f} |")
        print(f"Ray start-up: ray.init {start:.1f} s, first grid {first:.1f} s (workers importing torch); "
              f"per task with warm workers: {1000 * (again - b / os.cpu_count()) / n:.0f} ms beyond its share "
              f"of the work on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
