"""Training throughput (images per second) of ResNet18 and PFNet18 with ReLU, Leaky ReLU and
ProxyGrad, as ratios to ReLU, measured side by side in one run.

    python benchmarks/bench_train.py [--batch 64] [--size 64] [--rounds 5] [--loader-dir DIR]

Each round runs one training step (Lamb, cross-entropy) of every variant in turn; the median over
rounds is reported. Then the training loader's own throughput (decode, resize, augment, normalize,
collate) on JPEG files, with 0 and with 2 worker processes (what ``train`` uses on a CPU and, with
more workers and pinned memory, on a GPU), beside the slowest step's images/s: a loader slower than
the step starves the device.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from timm.optim import Lamb

import proxylab
from proxylab import architectures

ACTIVATIONS = {"ReLU": "relu", "Leaky ReLU 0.1": "leaky:0.1", "ProxyGrad 0.1": "proxygrad:0.1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loader-images", type=int, default=512, help="JPEGs written for the loader test")
    args = parser.parse_args()
    device = proxylab.setup(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, 100, (args.batch,), generator=g).to(device)
    runs = {}
    for arch in architectures.ARCHS:
        for label, spec in ACTIVATIONS.items():
            torch.manual_seed(0)
            model = architectures.build(arch, 100, spec).to(device).train()
            runs[(arch, label)] = (model, Lamb(model.parameters(), lr=0.003, weight_decay=0.01))

    def step(model, opt):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for model, opt in runs.values():
        step(model, opt)
    times = {k: [] for k in runs}
    for _ in range(args.rounds):
        for key, (model, opt) in runs.items():
            t0 = time.perf_counter()
            step(model, opt)
            times[key].append(time.perf_counter() - t0)
    print(f"training step, batch {args.batch}, {args.size}px, {device}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'net':<10}{'activation':<16}{'images/s':>10}{'ratio to ReLU':>15}")
    for arch in architectures.ARCHS:
        base = args.batch / statistics.median(times[(arch, "ReLU")])
        for label in ACTIVATIONS:
            ips = args.batch / statistics.median(times[(arch, label)])
            print(f"{arch:<10}{label:<16}{ips:10.1f}{ips / base:15.3f}")
    slowest = min(args.batch / statistics.median(t) for t in times.values())
    loader_throughput(args, slowest)


def loader_throughput(args, step_ips: float) -> None:
    """Images/s of the training loader over a folder of JPEGs (CUB-200's on-disk layout), 0 and 2 workers."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from proxylab import data
    from proxylab.train import GlobalBatchSampler

    with tempfile.TemporaryDirectory() as root:
        base = Path(root) / "CUB_200_2011"
        rng = np.random.default_rng(0)
        lines = []
        for i in range(1, args.loader_images + 1):
            rel = f"{1 + i % 10:03d}.bird/{i}.jpg"
            (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(base / "images" / rel, quality=90)
            lines.append((i, rel))
        (base / "images.txt").write_text("".join(f"{i} {r}\n" for i, r in lines))
        (base / "train_test_split.txt").write_text("".join(f"{i} 1\n" for i, _ in lines))
        (base / "image_class_labels.txt").write_text("".join(f"{i} {1 + i % 10}\n" for i, _ in lines))
        train_set, _, _ = data.load("cub200", image_size=args.size, root=Path(root))
        print(f"\ntraining loader, {len(train_set)} JPEGs of 400x300 -> {args.size}px, batch {args.batch}")
        print(f"{'workers':<10}{'images/s':>10}{'/ slowest step':>16}")
        for workers in (0, 2):
            loader = torch.utils.data.DataLoader(train_set, num_workers=workers,
                                                 batch_sampler=GlobalBatchSampler(len(train_set), args.batch, 0))
            t0 = time.perf_counter()
            n = sum(len(y) for _, y in loader)
            ips = n / (time.perf_counter() - t0)
            print(f"{workers:<10}{ips:10.1f}{ips / step_ips:16.2f}")


if __name__ == "__main__":
    main()
