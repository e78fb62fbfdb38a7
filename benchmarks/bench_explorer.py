"""How responsive the explorer is: time to redraw the channel grid when the layer changes (cached
layer outputs) against the time of the forward pass that fills the cache, measured in one run.

    python benchmarks/bench_explorer.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

import proxylab
from proxylab import models
from proxylab.explorer import Explorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = proxylab.setup(0)
    explorer = Explorer(models.imagenet_model("efficientnet-lite0", device))
    layers = ["net._blocks.3", "net._blocks.10", "net._conv_head", "net._conv_stem"]
    redraw, forward = [], []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        explorer.layer.value = layers[i % len(layers)]
        redraw.append(time.perf_counter() - t0)
        explorer._cache.pop(explorer.image.value)  # measure the uncached path too
        t0 = time.perf_counter()
        explorer.activations(explorer.image.value)
        forward.append(time.perf_counter() - t0)
    r, f = statistics.median(redraw), statistics.median(forward)
    print(f"EfficientNet-Lite0, 224px, {device}, median of {args.repeats}")
    print(f"layer change (grid redraw from cache): {r * 1e3:7.1f} ms")
    print(f"forward pass filling the cache:        {f * 1e3:7.1f} ms")
    print(f"ratio redraw / forward:                {r / f:7.3f}")


if __name__ == "__main__":
    main()
