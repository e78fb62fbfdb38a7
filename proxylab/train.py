"""Classification training with ReLU, Leaky ReLU or ProxyGrad (paper, section 6, Appendix 11.2).

Defaults are the paper's recipe: Lamb (timm's), lr 0.003, batch 64, 300 epochs, Kaiming init,
stepwise LR decay. What the paper leaves open is a documented choice here, each one a
:class:`TrainConfig` field and a command-line flag:

- weight decay 0.01 on the weights of convolutions and the classifier only; BatchNorm parameters
  and biases are not decayed (``decay_norm_and_bias=False``, as the LAMB paper does for its
  normalization and bias parameters; timm's ``param_groups_weight_decay``);
- no clipping of the global gradient norm (``clip_grad_norm=None``): timm's Lamb clips at 1.0 by
  default, which the paper does not mention and which would damp the very gradient-size effect
  of Table 5;
- the LR drops by ``lr_gamma`` = 0.1 at ``lr_milestones`` = 50 % and 75 % of the epochs;
- the image pipeline: every image is resized (squashed) to ``image_size`` x ``image_size``,
  normalized with its training split's RGB mean and std (computed at that size), and augmented
  with a random crop after reflect-padding by size/8 and a horizontal flip;
- the incomplete last training batch of an epoch is dropped (a batch of one image breaks
  BatchNorm, and under DDP every process must see the same number of batches).

Every epoch writes ``checkpoint.pt`` atomically (temp file + rename; loaded with
``weights_only=True``) and rewrites ``metrics.jsonl``; the end writes ``metrics.json``. ``resume``
continues a killed run and, on the CPU, ends with bit-identical metrics to an uninterrupted run:
data order, model init and augmentation are seeded per (seed, epoch, sample), not by a running
RNG. On CUDA, deterministic algorithms are requested (``torch.use_deterministic_algorithms``,
cuDNN benchmark off), which makes resume exact wherever every kernel has a deterministic version
(torch warns where one has not). Resuming with a changed configuration is refused.

Data-parallel under ``torchrun --nproc_per_node N`` (DDP; gloo on CPU, NCCL on GPU): the global
batch stays ``batch_size`` and is split across processes; rank 0 writes checkpoints and logs.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from . import architectures, data
from .config import device as default_device
from .files import save_atomic, write_json_atomic, write_text_atomic
from .models import Normalized
from .proxygrad import parse_activation


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in its checkpoint and metrics)."""

    dataset: str = "fashion-mnist"
    arch: str = "resnet18"
    activation: str = "relu"
    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.003
    weight_decay: float = 0.01
    lr_milestones: tuple = (0.5, 0.75)  # fractions of the epochs at which the LR drops
    lr_gamma: float = 0.1
    clip_grad_norm: float | None = None  # timm's Lamb default would be 1.0: off, as in the paper
    decay_norm_and_bias: bool = False  # weight decay on BatchNorm parameters and biases too
    seed: int = 0
    subset: int | None = None
    image_size: int | None = None
    out: str = "runs/train"
    sync_bn: bool = True  # SyncBatchNorm under DDP on GPUs (not available on CPU)

    def validate(self) -> "TrainConfig":
        """Check every field; parse ``activation`` (the spec's text, as the command line and the job
        files hold it) into ``self.spec``, the value the run passes inward."""
        self.spec = parse_activation(self.activation)
        self.activation = str(self.spec)
        if self.arch not in architectures.ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(architectures.ARCHS)}")
        if self.dataset not in data.DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(data.DATASETS)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        self.lr_milestones = tuple(float(f) for f in self.lr_milestones)
        if any(not 0 < f <= 1 for f in self.lr_milestones):
            raise ValueError(f"lr milestones are fractions of the epochs in (0, 1], got {self.lr_milestones}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr gamma must be in (0, 1], got {self.lr_gamma}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None (no clipping), got {self.clip_grad_norm}")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        return self

    def protocol(self) -> dict:
        """What defines the run's result: every field but where it is written."""
        d = asdict(self)
        d.pop("out")
        d["lr_milestones"] = list(d["lr_milestones"])
        return d


def lr_milestones(cfg: TrainConfig) -> list[int]:
    """The epochs after which the LR drops (``cfg.lr_milestones`` are fractions of the epochs)."""
    return sorted({max(1, round(f * cfg.epochs)) for f in cfg.lr_milestones})


def lr_schedule(cfg: TrainConfig) -> list[float]:
    """The learning rate of each epoch 1..epochs (what MultiStepLR gives with the milestones)."""
    milestones = lr_milestones(cfg)
    return [cfg.lr * cfg.lr_gamma ** sum(epoch > m for m in milestones) for epoch in range(1, cfg.epochs + 1)]


def make_optimizer(model: nn.Module, cfg: TrainConfig):
    """timm's Lamb with the documented choices: decay only conv/linear weights unless
    ``decay_norm_and_bias``, clip the gradient norm only if ``clip_grad_norm`` is set."""
    from timm.optim import Lamb
    from timm.optim._param_groups import param_groups_weight_decay

    params = (model.parameters() if cfg.decay_norm_and_bias
              else param_groups_weight_decay(model, cfg.weight_decay))
    return Lamb(params, lr=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.clip_grad_norm)


# --------------------------------------------------------------------------- distributed helpers
def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Seeded per epoch; global batch ``k`` is the same set of samples whatever the number of
    processes, each process taking every ``world``-th sample of it."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True,
                 drop_last: bool = True):
        self.n, self.batch_size, self.seed, self.rank, self.world, self.shuffle = n, batch_size, seed, rank, world, shuffle
        self.drop_last = drop_last
        self.epoch = 0

    def batches(self):
        order = (torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
                 if self.shuffle else torch.arange(self.n)).tolist()
        end = self.n - self.n % self.batch_size if self.drop_last else self.n
        for start in range(0, end, self.batch_size):
            part = order[start:start + self.batch_size][self.rank::self.world]
            if part:
                yield part

    def __iter__(self):
        return self.batches()

    def __len__(self):
        return sum(1 for _ in self.batches())


def finished(out: Path, cfg: TrainConfig) -> dict | None:
    """The metrics of a run in ``out`` that completed with exactly ``cfg``'s protocol, else None."""
    path = Path(out) / "metrics.json"
    if path.exists():
        metrics = json.loads(path.read_text())
        if metrics.get("protocol") == cfg.validate().protocol():
            return metrics
    return None


class ConfigMismatch(ValueError):
    """``--resume`` asked to continue a run with a different configuration."""


def _check_same_protocol(saved: dict, cfg: TrainConfig, where: Path) -> None:
    now = cfg.protocol()
    changed = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]]
    if changed:
        raise ConfigMismatch(f"{where} holds a run with another configuration ({'; '.join(changed)}); "
                             "resume it with its own settings, or choose another --out for the new ones")


def _load_checkpoint(path: Path, device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated file, not a torch file, another pickle
        raise ValueError(f"the checkpoint {path} is unreadable ({type(err).__name__}); it was kept as it is. "
                         f"Delete it to start the run over, or pass another --out") from None


# --------------------------------------------------------------------------- the loop
def evaluate(model, dataset, device, rank, world, batch_size=256) -> tuple[float, float]:
    """(mean loss, accuracy in %) on ``dataset``, sharded across processes and summed exactly."""
    model.eval()
    idx = list(range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, idx), batch_size=batch_size)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            totals += torch.stack([nn.functional.cross_entropy(out, y, reduction="sum").double(),
                                   (out.argmax(1) == y).sum().double(), torch.tensor(len(y), device=device).double()])
    if world > 1:
        dist.all_reduce(totals)
    return (totals[0] / totals[2]).item(), (100 * totals[1] / totals[2]).item()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, download: bool = False) -> dict:
    """Train one network; returns the final metrics (also written to ``cfg.out/metrics.json``).

    Raises:
        FileExistsError: ``cfg.out`` holds a checkpoint and ``resume`` is False (no work is lost).
        data.DatasetMissing: the dataset is not on disk (the message says how to get it).
    """
    cfg.validate()
    rank, world, local_rank = dist_env()
    out = Path(cfg.out)
    done = finished(out, cfg)
    if done and resume:
        return done
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{out} already holds a checkpoint; pass --resume to continue it, "
                              "or choose another --out")
    if (out / "metrics.json").exists() and not ckpt_path.exists():
        raise FileExistsError(f"{out} holds a finished run of another configuration; choose another --out")
    if world > 1 and cfg.batch_size // world < 2:
        raise ValueError(f"a global batch of {cfg.batch_size} split over {world} processes leaves fewer than "
                         "2 images per process (BatchNorm needs 2): raise --batch-size or use fewer processes")
    ckpt = _load_checkpoint(ckpt_path, "cpu") if resume and ckpt_path.exists() else None
    if ckpt is not None:
        _check_same_protocol(ckpt["config"], cfg, out)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else default_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False

    # rank 0 downloads and computes the normalization statistics; the others wait, then read them
    if rank == 0:
        loaded = data.load(cfg.dataset, cfg.image_size, cfg.seed, cfg.subset, download=download)
    if world > 1:
        dist.barrier()
    if rank != 0:
        loaded = data.load(cfg.dataset, cfg.image_size, cfg.seed, cfg.subset)
    train_set, test_set, num_classes = loaded
    if len(train_set) < cfg.batch_size:
        raise ValueError(f"the training set has {len(train_set)} images, fewer than one batch of "
                         f"{cfg.batch_size}: raise --subset or lower --batch-size")
    torch.manual_seed(cfg.seed)
    model = architectures.build(cfg.arch, num_classes, cfg.spec)
    if world > 1 and cfg.sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, lr_milestones(cfg), cfg.lr_gamma)
    history, start = [], 1
    if ckpt is not None:
        ckpt = {k: (v if k in ("history", "config", "epoch") else _to(v, device)) for k, v in ckpt.items()}
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, start = ckpt["history"], ckpt["epoch"] + 1
    net = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if world > 1 else model
    sampler = GlobalBatchSampler(len(train_set), cfg.batch_size, cfg.seed, rank, world)
    # on a GPU, decode JPEGs in worker processes into pinned memory (fresh workers each epoch, so
    # they see the epoch number that seeds the augmentation)
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for epoch in range(start, cfg.epochs + 1):
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        sampler.epoch = train_set.epoch = epoch
        net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        bar = tqdm(loader, desc=f"{cfg.arch} {cfg.activation} epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not progress or rank != 0)
        for i, (x, y) in enumerate(bar):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = net(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                                 torch.tensor(len(y), device=device).double()])
            if device.type != "cuda" or i % 50 == 0:  # .item() waits for the GPU: rarely there
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if world > 1:
            dist.all_reduce(sums)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        test_loss, test_acc = evaluate(model, test_set, device, rank, world)
        history.append({"epoch": epoch, "lr": lr, "train_loss": (sums[0] / sums[2]).item(),
                        "train_accuracy": (100 * sums[1] / sums[2]).item(), "test_loss": test_loss,
                        "test_accuracy": test_acc})
        if rank == 0:
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                          "config": cfg.protocol()}, ckpt_path)
            write_text_atomic("".join(json.dumps(h) + "\n" for h in history), out / "metrics.jsonl", "metrics")
            if progress:
                tqdm.write(f"epoch {epoch}: train loss {history[-1]['train_loss']:.4f}, "
                           f"test accuracy {test_acc:.2f}%")
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    checksums = [checksum.clone() for _ in range(world)]
    if world > 1:
        dist.all_gather(checksums, checksum)
    final = history[-1]
    metrics = {"test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
               "train_loss": final["train_loss"], "epochs": cfg.epochs, "activation": cfg.activation,
               "arch": cfg.arch, "dataset": cfg.dataset, "seed": cfg.seed, "world_size": world,
               "replica_checksums": [c.item() for c in checksums], "seconds_this_run": time.time() - started,
               "optimizer_steps": cfg.epochs * len(loader),
               "config": cfg.protocol(), "protocol": cfg.protocol(), "history": history}
    if rank == 0:
        write_json_atomic(metrics, out / "metrics.json", "metrics")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


def _to(value, device):
    """Move the tensors of a (nested) checkpoint entry to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def load_trained(out, device=None) -> tuple[nn.Module, dict]:
    """The network of a run folder (its ``checkpoint.pt``) in eval mode, and the run's config."""
    ckpt = _load_checkpoint(Path(out) / "checkpoint.pt", device or "cpu")
    cfg = ckpt["config"]
    model = architectures.build(cfg["arch"], data.DATASETS[cfg["dataset"]], parse_activation(cfg["activation"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg


def load_for_am(out, device=None) -> nn.Module:
    """A trained run's network wrapped to take images in [-1, 1], like the ImageNet models of
    :mod:`proxylab.models`, so the AM engine and the slope diagnostic apply to it unchanged."""
    model, cfg = load_trained(out, device)
    train_set, _ = data.raw_splits(cfg["dataset"], cfg["seed"])
    size = cfg.get("image_size") or data.DEFAULT_SIZE[cfg["dataset"]]
    mean, std = data.channel_stats(cfg["dataset"], train_set, size=size)
    return Normalized(model, mean, std, input_size=size).eval().requires_grad_(False).to(device or "cpu")
