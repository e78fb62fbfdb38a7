"""Cost of the held-out judges against the AM run they judge, measured side by side in one run.

    python benchmarks/bench_judge.py [--classes 8] [--steps 5] [--repeats 3]

An AM job of the transfer grid makes 8 images on EfficientNet-Lite0 at 224 px over
500 steps, then each held-out network (Lite1 at 240 px, Lite2 at 260 px) scores the images at 10
and 500 steps: 4 forward passes of the batch in all. This prints the time of one regularized AM
step (a run's set-up excluded), of judging one batch with each judge (resize included), of loading the
two judges, and the ratio of the 4 judgements to the 500 steps, the share of a job that judging adds. Target: under 1 %. Repeats are interleaved and
the median is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from proxylab import am, models, regularizers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="AM steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    maker = models.imagenet_model("efficientnet-lite0")
    t0 = time.perf_counter()
    judges = {name: models.imagenet_model(name) for name in ("efficientnet-lite1", "efficientnet-lite2")}
    loading = time.perf_counter() - t0  # once per job process (the grids cache the models per process)
    targets = [models.class_index(c) for c in models.PAPER_CLASSES[:args.classes]]
    images = am.initial_images(len(targets), 224, 0, am.DEFAULT_INIT_STD)
    times: dict[str, list[float]] = {"AM step": [], **{n: [] for n in judges}}

    def am_run(steps):
        am.visualize(maker, targets, "proxygrad:0.05", steps=steps, size=224, seed=0,
                     regularizers=regularizers.paper_regularization(0), progress=False)

    am_run(1)  # warm-up
    for n in judges:
        am.judge(images, targets, judges[n], maker)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        am_run(1)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        am_run(1 + args.steps)
        times["AM step"].append((time.perf_counter() - t0 - one) / args.steps)  # the set-up of a run cancels out
        for name, judge in judges.items():
            t0 = time.perf_counter()
            am.judge(images, targets, judge, maker)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    judging = 2 * sum(med[n] for n in judges)  # each judge at 10 and at 500 steps
    print(f"{args.classes} images, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    print(f"{'what':28s}{'seconds':>10s}")
    print(f"{'one AM step (Lite0, 224 px)':28s}{med['AM step']:10.3f}")
    for name in judges:
        print(f"{'judging by ' + name:28s}{med[name]:10.3f}")
    print(f"{'loading both judges':28s}{loading:10.3f}")
    print(f"judging (4 passes) / 500 AM steps: {judging / (500 * med['AM step']):.4f}  (target < 0.01); "
          f"with loading the judges: {(judging + loading) / (500 * med['AM step']):.4f}")


if __name__ == "__main__":
    main()
