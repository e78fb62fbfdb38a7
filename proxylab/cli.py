"""Command line: ``python -m proxylab COMMAND``; heavy jobs run headless from here."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from .config import __version__, device, quick_mode, setup
from .files import writable_dir, write_json_atomic
from .models import ModelUnavailable
from .proxygrad import parse_activation

MEANINGFUL_STEPS = 1000  # fewer optimizer steps than this: a smoke run (ResNet18 needs ~1 epoch of Fashion-MNIST)
TRACEBACK_ENV = "PROXYLAB_TRACEBACK"  # set to 1 to see the traceback of an unexpected error


def cmd_info(args: argparse.Namespace) -> int:
    """Print the versions, the device and the quick-mode flag."""
    print(f"proxylab {__version__}, torch {torch.__version__}, device {device()}, "
          f"quick mode {'on' if quick_mode() else 'off'}")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    """Activation maximization of ImageNet classes: one PNG per class, a grid, results.json."""
    from . import am, models, plotting, regularizers

    spec = parse_activation(args.activation)
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not names:
        raise ValueError("--classes needs at least one class name or index, e.g. --classes pelican,lion")
    indices = [models.class_index(c) for c in names]
    out = writable_dir(args.out)  # before the work, not after it
    setup(args.seed)
    model = models.imagenet_model(args.model)
    result = am.visualize(model, indices, spec, steps=args.steps, lr=args.lr, size=args.size,
                          seed=args.seed, regularizers=regularizers.paper_regularization(args.seed)
                          if args.regularize else (), progress=not args.quiet)
    records = []
    for name, index, img, logit in zip(names, indices, result.images, result.final):
        slug = models.class_name(index).replace(" ", "_").replace("/", "_")
        plotting.save_png(img, out / f"{index:03d}_{slug}.png")
        records.append({"class": models.class_name(index), "requested": name, "class_index": index,
                        "activation": str(spec), "steps": args.steps, "logit": round(float(logit), 4),
                        "model": args.model, "seed": args.seed, "lr": args.lr, "size": args.size,
                        "regularize": bool(args.regularize), "image": f"{index:03d}_{slug}.png"})
    plotting.save_grid(result.images, out / "grid.png", nrow=min(len(indices), 8))
    write_json_atomic(records, out / "results.json", "results")
    for r in records:
        print(f"{r['class']:<20} logit {r['logit']:8.3f}")
    print(f"wrote {len(records)} images, grid.png and results.json to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train ResNet18 or PFNet18 with an activation spec; checkpoints every epoch, --resume continues."""
    from .train import TrainConfig, train

    if int(os.environ.get("RANK", 0)) == 0:
        writable_dir(args.out)
    cfg = TrainConfig(dataset=args.dataset, arch=args.arch, activation=args.activation, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                      subset=args.subset, image_size=args.image_size, out=args.out,
                      lr_milestones=tuple(parse_floats(args.lr_milestones, "--lr-milestones")),
                      lr_gamma=args.lr_gamma, clip_grad_norm=args.clip_grad_norm,
                      decay_norm_and_bias=args.decay_norm_and_bias)
    metrics = train(cfg, resume=args.resume, progress=not args.quiet, download=args.download)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, only rank 0 reports
        print(f"{cfg.dataset} {cfg.arch} {cfg.activation} seed {cfg.seed}: test accuracy "
              f"{metrics['test_accuracy']:.2f}% after {metrics['epochs']} epochs -> {cfg.out}/metrics.json")
        steps = metrics.get("optimizer_steps", 0)
        if steps < MEANINGFUL_STEPS:
            print(f"note: only {steps} optimizer steps (fewer than {MEANINGFUL_STEPS:,}): a smoke run, not a result; "
                  "do not quote its accuracy. Train on more images (--subset) or for more --epochs", file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run one of the paper's experiments as a grid of jobs (resumable; local or Ray engine),
    then merge the job files into the figure's JSON and PNG."""
    from . import experiments
    from .runner import reproduce

    if args.list:
        print(experiments.listing())
        return 0
    if not args.name:
        raise ValueError("name an experiment (python -m proxylab reproduce --list shows them), "
                         "e.g. python -m proxylab reproduce figure2 --out results")
    # the command that regenerates the result (a merge-only or quiet call would regenerate nothing new)
    command = ("python -m proxylab " + " ".join(a for a in sys.argv[1:] if a not in ("--merge-only", "--quiet"))
               if sys.argv[1:2] == ["reproduce"] else None)
    merged = reproduce(experiments.get(args.name), args.out, engine=args.engine, address=args.address, progress=not args.quiet,
                       num_cpus=args.num_cpus, merge_only=args.merge_only, command=command)
    prov = merged["provenance"]
    if "markdown" in merged:
        print(merged["markdown"])
    print(f"{args.name}: {prov['jobs_finished']}/{prov['jobs']} jobs finished -> {Path(args.out) / args.name}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """The paper's Table 4 grid through the experiment runner: print the jobs still to do (as
    train commands), or --run them (same as: reproduce table4-paper)."""
    from . import experiments
    from .runner import Folder, reproduce

    exp = experiments.get(args.experiment)
    writable_dir(args.out)
    folder = Folder(args.out, exp, quick=False)
    jobs = exp.jobs(False)
    todo = [p for p in jobs if not folder.path(p).exists()]
    print(f"# {len(jobs)} runs of {exp.name}, {len(jobs) - len(todo)} finished, {len(todo)} to do")
    if args.run:
        reproduce(exp, args.out, engine=args.engine, quick=False, progress=not args.quiet)
        return 0
    for p in todo:
        flags = " ".join(f"--{k} {p[k]}" for k in ("dataset", "arch", "activation", "seed", "epochs"))
        print(f"python -m proxylab train {flags} --out {folder.workdir(p)} --resume")
    print(f"# or all of them, resumable: python -m proxylab reproduce {exp.name} --out {args.out} [--engine ray]")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """Table 4 from finished runs, one table per protocol: mean ± std over seeds, best per row in
    bold, the paper beside it."""
    from .training_grids import collect, tables

    if not Path(args.runs_dir).is_dir():
        raise ValueError(f"{args.runs_dir} is not a folder; name the folder that holds the runs, "
                         "e.g. python -m proxylab table results/table4/jobs")
    print(tables(collect(args.runs_dir), paper=args.paper))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Check that a dataset is on disk, or --download it (needs internet)."""
    from . import data

    train, test = data.raw_splits(args.name, download=args.download)
    print(f"{args.name}: {len(train)} training and {len(test)} test images under {data.data_root()}")
    return 0


def parse_floats(text: str, flag: str) -> list[float]:
    """'0.5,0.75' -> [0.5, 0.75]; a clear error otherwise."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, e.g. 0.5,0.75; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from . import experiments

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
    tr.add_argument("--weight-decay", type=float, default=0.01, help="on conv/linear weights (see --decay-norm-and-bias)")
    tr.add_argument("--decay-norm-and-bias", action="store_true",
                    help="also decay BatchNorm parameters and biases (default: not, as LAMB's authors do)")
    tr.add_argument("--clip-grad-norm", type=float, default=None,
                    help="clip the global gradient norm (default: no clipping; timm's Lamb would clip at 1.0)")
    tr.add_argument("--lr-milestones", default="0.5,0.75", help="fractions of the epochs where the LR drops")
    tr.add_argument("--lr-gamma", type=float, default=0.1, help="factor of each LR drop")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--subset", type=int, default=None, help="use only N training and N test images")
    tr.add_argument("--image-size", type=int, default=None, help="default 32 (Fashion-MNIST) or 224")
    tr.add_argument("--out", required=True)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt; a finished run is kept")
    tr.add_argument("--download", action="store_true", help="download the dataset if missing (needs internet)")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    rp = sub.add_parser("reproduce", help=cmd_reproduce.__doc__, description=cmd_reproduce.__doc__)
    rp.add_argument("name", nargs="?", help=", ".join(experiments.names()))
    rp.add_argument("--out", default="results", help="results root; the experiment writes OUT/NAME/")
    rp.add_argument("--engine", default="local", choices=["local", "ray"],
                    help="local: this process, in order; ray: one Ray task per job (pip install 'proxylab[ray]')")
    rp.add_argument("--address", default=None, help="Ray cluster to join, e.g. auto (default: start a local Ray)")
    rp.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    rp.add_argument("--merge-only", action="store_true", help="merge the finished jobs, run nothing")
    rp.add_argument("--list", action="store_true", help="list the experiments with protocol and cost")
    rp.add_argument("--quiet", action="store_true")
    rp.set_defaults(func=cmd_reproduce)

    sw = sub.add_parser("sweep", help=cmd_sweep.__doc__, description=cmd_sweep.__doc__)
    sw.add_argument("--experiment", default="table4-paper", choices=["table4-paper", "table4"])
    sw.add_argument("--out", default="runs")
    sw.add_argument("--engine", default="local", choices=["local", "ray"])
    sw.add_argument("--run", action="store_true", help="run the jobs (otherwise only print them)")
    sw.add_argument("--quiet", action="store_true")
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
    """Run one command. Every failure ends in one line on stderr: exit 2 for what the user can
    fix (bad input, missing data or model, an unwritable or full disk), 130 for Ctrl-C (finished
    epochs and jobs are kept), 1 for an unexpected error (set PROXYLAB_TRACEBACK=1 to see it)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ModelUnavailable) as err:  # bad input, an unloadable model: one clear line
        return _fail(str(err))
    except OSError as err:  # missing data, a full disk, a folder that cannot be written
        return _fail(str(err) if not err.filename or err.filename in str(err)
                     else f"{err.strerror or err}: {err.filename}")
    except KeyboardInterrupt:
        print("interrupted: finished epochs and jobs are kept; rerun the same command (with --resume "
              "for train) to continue", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug, not the user's mistake: still one line
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(f"error: unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
              f"(a bug; rerun with {TRACEBACK_ENV}=1 for the traceback and report it)", file=sys.stderr)
        return 1


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
