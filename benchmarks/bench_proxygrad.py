"""ResNet18 training step with nn.ReLU, nn.LeakyReLU and ProxyGrad, measured side by side.

    python benchmarks/bench_proxygrad.py [--rounds 15] [--batch 32] [--size 112]

Variants are interleaved round by round (so drifts in machine load hit all of them alike); the
time is the median over rounds. Peak memory is the allocator's high-water mark during one step:
torch.cuda.max_memory_allocated on a GPU, the profiler's CPU allocation trace on a CPU.
Prints ratios against nn.ReLU. Targets: time <= 1.03x, peak memory <= 1.0x.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch.profiler import ProfilerActivity, profile

import proxylab
from _quiet import silenced

VARIANTS = {"nn.ReLU": "relu", "nn.LeakyReLU(0.1)": "leaky:0.1", "ProxyGrad(0.1)": "proxygrad:0.1"}


def make(spec: str, device: torch.device):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=100)
    if spec != "relu":
        proxylab.swap_activations(model, spec)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt


def step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_bytes(model, opt, x, y, device) -> int:
    """High-water mark of allocated memory during one training step, above what was live before."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(model, opt, x, y)
        sync(device)
        return torch.cuda.max_memory_allocated() - base
    with silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, opt, x, y)  # the profiler's own log lines would bury the table: silenced
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    device = proxylab.device()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, 100, (args.batch,), generator=g).to(device)
    runs = {name: make(spec, device) for name, spec in VARIANTS.items()}
    for model, opt in runs.values():  # warm-up: allocator, optimizer state
        for _ in range(2):
            step(model, opt, x, y)
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (model, opt) in runs.items():
            sync(device)
            t0 = time.perf_counter()
            step(model, opt, x, y)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    peaks = {name: peak_bytes(model, opt, x, y, device) for name, (model, opt) in runs.items()}
    base_t, base_m = statistics.median(times["nn.ReLU"]), peaks["nn.ReLU"]
    print(f"ResNet18 training step, batch {args.batch}, {args.size}px, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    print(f"{'variant':<20}{'time/step':>12}{'time ratio':>12}{'peak MiB':>10}{'mem ratio':>11}")
    for name in runs:
        t = statistics.median(times[name])
        print(f"{name:<20}{t * 1e3:>10.1f}ms{t / base_t:>12.3f}{peaks[name] / 2**20:>10.1f}"
              f"{peaks[name] / base_m:>11.3f}")


if __name__ == "__main__":
    main()
