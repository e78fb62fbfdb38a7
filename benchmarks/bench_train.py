"""Training throughput (images per second) of ResNet18 and PFNet18 with ReLU, Leaky ReLU and
ProxyGrad, as ratios to ReLU, measured side by side in one run.

    python benchmarks/bench_train.py [--batch 64] [--size 64] [--rounds 5]

Each round runs one training step (Lamb, cross-entropy) of every variant in turn; the median over
rounds is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from timm.optim import Lamb

import proxylab
from proxylab import nets

ACTIVATIONS = {"ReLU": "relu", "Leaky ReLU 0.1": "leaky:0.1", "ProxyGrad 0.1": "proxygrad:0.1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = proxylab.setup(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, 100, (args.batch,), generator=g).to(device)
    runs = {}
    for arch in nets.ARCHS:
        for label, spec in ACTIVATIONS.items():
            torch.manual_seed(0)
            model = nets.build(arch, 100, spec).to(device).train()
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
    for arch in nets.ARCHS:
        base = args.batch / statistics.median(times[(arch, "ReLU")])
        for label in ACTIVATIONS:
            ips = args.batch / statistics.median(times[(arch, label)])
            print(f"{arch:<10}{label:<16}{ips:10.1f}{ips / base:15.3f}")


if __name__ == "__main__":
    main()
