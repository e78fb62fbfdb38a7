"""Run-wide settings read in one place: quick mode, the device, and seeding."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"  # pyproject.toml's; here so that any module can record it without importing the package
QUICK_ENV = "PROXYLAB_QUICK"


def quick_mode() -> bool:
    """True when the environment variable ``PROXYLAB_QUICK`` is set to 1/true/yes.

    Quick mode is the one switch that makes heavy notebooks and jobs small enough for a
    2-core CPU (CI sets it); without it they run the paper's full protocol.
    """
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def device() -> torch.device:
    """The device every heavy job uses: CUDA when available, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(seed: int = 0, deterministic: bool = True) -> torch.device:
    """Seed python, numpy and torch, ask torch for deterministic algorithms, return the device.

    Args:
        seed: the seed for every random number generator.
        deterministic: also request deterministic kernels (with a warning, not an error,
            where an op has none), so that committed notebook outputs are reproducible.

    Returns:
        The device chosen by :func:`device`.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return device()
