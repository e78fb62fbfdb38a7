"""Command line: ``python -m proxylab COMMAND``; heavy jobs run headless from here."""
from __future__ import annotations

import argparse
import os
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


def cmd_train(args: argparse.Namespace) -> int:
    """Train ResNet18 or PFNet18 with an activation spec; checkpoints every epoch, --resume continues."""
    from .train import TrainConfig, train

    cfg = TrainConfig(dataset=args.dataset, arch=args.arch, activation=args.activation, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                      subset=args.subset, image_size=args.image_size, out=args.out)
    metrics = train(cfg, resume=args.resume, progress=not args.quiet, download=args.download)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, only rank 0 reports
        print(f"{cfg.dataset} {cfg.arch} {cfg.activation} seed {cfg.seed}: test accuracy "
              f"{metrics['test_accuracy']:.2f}% after {metrics['epochs']} epochs -> {cfg.out}/metrics.json")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """The Table 4 grid (datasets x nets x activations x seeds): print the commands, or --run them
    one after another, skipping finished runs and resuming interrupted ones."""
    import shlex
    import subprocess

    from .sweep import grid

    runs = grid(args.datasets.split(","), args.archs.split(","), args.activations.split(","),
                parse_seeds(args.seeds), args.epochs, args.runs_dir, args.extra)
    todo = [r for r in runs if not r.done]
    print(f"# {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to do")
    for r in todo:
        line = " ".join(shlex.quote(c) for c in r.command)
        print(line)
        if args.run:
            subprocess.run(r.command, check=True)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """Table 4 from finished runs: mean ± std over seeds, best per row in bold, paper beside it."""
    from .sweep import collect, table4

    print(table4(collect(args.runs_dir), paper=args.paper))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Check that a dataset is on disk, or --download it (needs internet)."""
    from . import data

    train, test = data.raw_splits(args.name, download=args.download)
    print(f"{args.name}: {len(train)} training and {len(test)} test images under {data.data_root()}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,2,5' -> a list of seeds."""
    seeds = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds += range(int(lo), int(hi) + 1)
        elif part.strip():
            seeds.append(int(part))
    return seeds


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

    tr = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__ +
                        " Data-parallel: torchrun --nproc_per_node N -m proxylab train ...")
    tr.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "caltech101", "cub200", "flowers102"])
    tr.add_argument("--arch", default="resnet18", choices=["resnet18", "pfnet18"])
    tr.add_argument("--activation", default="relu", help='"relu", "leaky:A", "proxygrad:B"')
    tr.add_argument("--epochs", type=int, default=300)
    tr.add_argument("--batch-size", type=int, default=64, help="global batch (split across processes)")
    tr.add_argument("--lr", type=float, default=0.003)
    tr.add_argument("--weight-decay", type=float, default=0.01)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--subset", type=int, default=None, help="use only N training and N test images")
    tr.add_argument("--image-size", type=int, default=None, help="default 32 (Fashion-MNIST) or 224")
    tr.add_argument("--out", required=True)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt; a finished run is kept")
    tr.add_argument("--download", action="store_true", help="download the dataset if missing (needs internet)")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    sw = sub.add_parser("sweep", help=cmd_sweep.__doc__, description=cmd_sweep.__doc__)
    sw.add_argument("--datasets", default="caltech101,cub200,flowers102")
    sw.add_argument("--archs", default="resnet18,pfnet18")
    sw.add_argument("--activations", default="relu,proxygrad:0.01,proxygrad:0.1,proxygrad:0.2,leaky:0.01,leaky:0.1,leaky:0.2")
    sw.add_argument("--seeds", default="0-4")
    sw.add_argument("--epochs", type=int, default=300)
    sw.add_argument("--runs-dir", default="runs")
    sw.add_argument("--extra", default="", help='extra train flags, e.g. "--subset 512 --image-size 64"')
    sw.add_argument("--run", action="store_true", help="run the commands (otherwise only print them)")
    sw.set_defaults(func=cmd_sweep)

    tb = sub.add_parser("table", help=cmd_table.__doc__, description=cmd_table.__doc__)
    tb.add_argument("runs_dir")
    tb.add_argument("--paper", action="store_true", help="put the paper's numbers beside")
    tb.set_defaults(func=cmd_table)

    da = sub.add_parser("data", help=cmd_data.__doc__, description=cmd_data.__doc__)
    da.add_argument("name", choices=["fashion-mnist", "caltech101", "cub200", "flowers102"])
    da.add_argument("--download", action="store_true")
    da.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:  # bad input: one clear line
        print(f"error: {err}", file=sys.stderr)
        return 2
