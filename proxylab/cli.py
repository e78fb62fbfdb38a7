"""Command line: ``python -m proxylab COMMAND``; heavy jobs run headless from here."""
from __future__ import annotations

import argparse
import sys

import torch

from . import __version__
from .config import device, quick_mode
from .proxygrad import parse_activation


def cmd_info(args: argparse.Namespace) -> int:
    """Print the versions, the device and the quick-mode flag."""
    print(f"proxylab {__version__}, torch {torch.__version__}, device {device()}, "
          f"quick mode {'on' if quick_mode() else 'off'}")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    """Activation maximization of ImageNet classes: one PNG per class, a grid, results.json."""
    import json
    from pathlib import Path

    from . import am, models, plotting, regularizers
    from .config import setup

    spec = parse_activation(args.activation)
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not names:
        raise ValueError("--classes needs at least one class name or index, e.g. --classes pelican,lion")
    indices = [models.class_index(c) for c in names]
    setup(args.seed)
    model = models.imagenet_model(args.model)
    result = am.visualize(model, indices, str(spec), steps=args.steps, lr=args.lr, size=args.size,
                          seed=args.seed, regularizers=regularizers.paper_regularization(args.seed)
                          if args.regularize else (), progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, index, img, logit in zip(names, indices, result.images, result.final):
        slug = models.class_name(index).replace(" ", "_").replace("/", "_")
        plotting.save_png(img, out / f"{index:03d}_{slug}.png")
        records.append({"class": models.class_name(index), "requested": name, "class_index": index,
                        "activation": str(spec), "steps": args.steps, "logit": round(float(logit), 4),
                        "model": args.model, "seed": args.seed, "lr": args.lr, "size": args.size,
                        "regularize": bool(args.regularize), "image": f"{index:03d}_{slug}.png"})
    plotting.save_grid(result.images, out / "grid.png", nrow=min(len(indices), 8))
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(records, indent=2))
    tmp.replace(out / "results.json")
    for r in records:
        print(f"{r['class']:<20} logit {r['logit']:8.3f}")
    print(f"wrote {len(records)} images, grid.png and results.json to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proxylab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help=cmd_info.__doc__).set_defaults(func=cmd_info)

    vis = sub.add_parser("visualize", help=cmd_visualize.__doc__, description=cmd_visualize.__doc__)
    vis.add_argument("--model", default="efficientnet-lite0", choices=["efficientnet-lite0", "resnet18"])
    vis.add_argument("--classes", default="pelican,lion", help="comma-separated names or indices")
    vis.add_argument("--steps", type=int, default=10)
    vis.add_argument("--activation", default="proxygrad:0.05", help='activation spec, e.g. "relu", "leaky:0.1", "proxygrad:0.05"')
    vis.add_argument("--lr", type=float, default=0.02, help="RMS change per pixel of one step")
    vis.add_argument("--size", type=int, default=224)
    vis.add_argument("--regularize", action="store_true", help="weak blur and small rotation after each step")
    vis.add_argument("--seed", type=int, default=0)
    vis.add_argument("--out", required=True)
    vis.add_argument("--quiet", action="store_true", help="no progress bar")
    vis.set_defaults(func=cmd_visualize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
