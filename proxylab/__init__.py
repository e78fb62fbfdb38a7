"""proxylab: ProxyGrad — Leaky ReLUs whose slope differs between forward and backward pass.

The operator and the activation spec live in :mod:`proxylab.proxygrad`, putting them into a model
in :mod:`proxylab.swap`; run-wide settings (quick mode, device, seeding) in :mod:`proxylab.config`.
"""
from .config import __version__, device, quick_mode, setup
from .proxygrad import ActivationSpec, ProxyGradReLU, check_slope, parse_activation, proxy_relu
from .swap import proxygrad, swap_activations, swapped

QUICK = quick_mode()

__all__ = ["ActivationSpec", "ProxyGradReLU", "QUICK", "check_slope", "device", "parse_activation",
           "proxy_relu", "proxygrad", "quick_mode", "setup", "swap_activations", "swapped"]
