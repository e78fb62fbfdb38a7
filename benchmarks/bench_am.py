"""Cost of proxylab's AM loop, measured side by side in one run.

    python benchmarks/bench_am.py [--size 128] [--batch 4] [--steps 20] [--repeats 3]

1. Time per AM step divided by the time of a bare forward + backward (gradient with respect to the
   input) of the same model and batch. Target: <= 1.10.
2. The same for torchvision's GoogLeNet (random weights), whose rectifiers are ``F.relu`` calls in
   ``forward``: ProxyGrad reaches them through proxylab's function mode. Target: <= 1.10. The row
   "GoogLeNet, nn.ReLU modules" runs the same network with module ReLUs (the module path), so the
   function mode's own cost is the ratio of the two GoogLeNet AM rows.
3. AM time against torch-lucent's ``render_vis`` (FFT parametrization, its standard transforms,
   Adam) on the same model, image size, batch and number of steps (``pip install torch-lucent``).
   Target: faster.
Runs are interleaved and the median of the repeats is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import proxylab
from proxylab import am, models


def bare_steps(model, x, target, steps):
    rows = torch.arange(len(target))
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(x)[rows, target].sum(), x)


def with_module_relus(model):
    """The same GoogLeNet with an nn.ReLU module in each BasicConv2d instead of its F.relu call:
    ProxyGrad then takes the module path, so the two GoogLeNet AM rows differ only in the path."""
    import copy
    import types

    from torch import nn
    from torchvision.models.googlenet import BasicConv2d

    twin = copy.deepcopy(model)
    for block in twin.modules():
        if isinstance(block, BasicConv2d):
            block.act = nn.ReLU(inplace=True)
            block.forward = types.MethodType(lambda self, x: self.act(self.bn(self.conv(x))), block)
    return twin


def lucent_run(model, classes, size, steps):
    from proxylab.with_lucent import render

    render(model, classes, "relu", steps=steps, size=size)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = proxylab.setup(0)
    model = models.imagenet_model(args.model, device)
    classes = [models.class_index(c) for c in models.PAPER_CLASSES][:args.batch]
    target = torch.tensor(classes, device=device)
    x = am.initial_images(len(classes), args.size, 0).to(device)
    try:
        import lucent  # noqa: F401
        have_lucent = True
    except ImportError:
        have_lucent = False
    import torchvision

    torch.manual_seed(0)
    functional = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).to(device).eval()
    runs = {
        "bare forward+backward": lambda: bare_steps(model, x, target, args.steps),
        "proxylab AM relu": lambda: am.visualize(model, classes, "relu", steps=args.steps, size=args.size, progress=False),
        "proxylab AM proxygrad:0.05": lambda: am.visualize(model, classes, "proxygrad:0.05", steps=args.steps,
                                                           size=args.size, progress=False),
    }
    runs["GoogLeNet bare fwd+bwd"] = lambda: bare_steps(functional, x, target, args.steps)
    runs["GoogLeNet AM proxygrad:0.05"] = lambda: am.visualize(functional, classes, "proxygrad:0.05", steps=args.steps,
                                                               size=args.size, progress=False)
    modules = with_module_relus(functional)
    runs["GoogLeNet, nn.ReLU modules"] = lambda: am.visualize(modules, classes, "proxygrad:0.05", steps=args.steps,
                                                              size=args.size, progress=False)
    if have_lucent:
        runs["lucent render_vis"] = lambda: lucent_run(model, classes, args.size, args.steps)
    for fn in runs.values():  # warm-up
        fn()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    def base_of(name):
        return med["GoogLeNet bare fwd+bwd"] if name.startswith("GoogLeNet") else med["bare forward+backward"]

    print(f"{args.model}, batch {args.batch}, {args.size}px, {args.steps} steps, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved repeats")
    print("'/ bare': against the bare forward+backward of the same model (GoogLeNet: its own)")
    print(f"{'run':<30}{'s/run':>8}{'ms/step':>9}{'/ bare':>8}" + ("{:>10}".format("/ lucent") if have_lucent else ""))
    for name, t in med.items():
        row = f"{name:<30}{t:8.2f}{t / args.steps * 1e3:9.1f}{t / base_of(name):8.3f}"
        if have_lucent:
            row += f"{t / med['lucent render_vis']:10.3f}"
        print(row)
    if not have_lucent:
        print("torch-lucent not installed: pip install torch-lucent (the comparison is skipped)")


if __name__ == "__main__":
    main()
