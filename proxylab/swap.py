"""Model surgery: find a model's rectifiers and convert them to an activation spec, for good
(:func:`swap_activations`) or for a ``with`` block (:func:`swapped`, :func:`proxygrad`), modules and
functional calls alike (the calls through :mod:`proxylab.function_calls`)."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import torch
from torch import nn

from . import function_calls
from .function_calls import is_rectifier_module
from .proxygrad import ActivationSpec, ProxyGradReLU, check_slope, parse_activation
from .rules import RULES, BackwardRule, module_seed

NO_RECTIFIER = ("{name} has no rectifier to convert: no nn.ReLU, nn.ReLU6, nn.LeakyReLU or ProxyGradReLU "
                "module, and no call of F.relu, torch.relu, F.relu6, F.leaky_relu or F.hardtanh(x, 0, 6) in "
                "its forward; ProxyGrad and the backward rules apply to ReLU-family activations only")


def rectifier_sites(model: nn.Module, required: bool = True) -> list[tuple[str, nn.Module, str, nn.Module]]:
    """Every (qualified name, parent, attribute, module) where a ReLU/ReLU6/LeakyReLU/ProxyGradReLU
    module sits, in registration order. With ``required``, a model with no rectifier at all (no
    module, and no functional call that :func:`proxylab.function_calls.count_functional` can find)
    raises ``ValueError``; a model whose rectifiers are all functional gives an empty list."""
    sites = []
    for parent_name, parent in model.named_modules():
        for attr, child in parent._modules.items():  # not named_children(): it hides repeats
            if is_rectifier_module(child):
                sites.append((f"{parent_name}.{attr}" if parent_name else attr, parent, attr, child))
    if not sites and required and function_calls.count_functional(model) == 0:
        raise ValueError(NO_RECTIFIER.format(name=type(model).__name__))
    return sites


@contextlib.contextmanager
def rectifier_calls(model: nn.Module, on_output: Callable[[str, torch.Tensor], None]) -> Iterator[nn.Module]:
    """Call ``on_output(key, output)`` for every rectifier call in the forward passes made inside
    the ``with`` block; ``key`` is ``"qualified.name#k"``, the k-th call of that module (a module
    can be called more than once per pass, as torchvision's ResNet blocks do; a module registered
    under several parents is named by the first, as in :func:`rectifier_sites`), or
    ``"module/relu#k"`` for a functional call (see :mod:`proxylab.function_calls`)."""
    calls: dict[str, int] = {}
    lock = threading.Lock()  # the hooks fire in every thread that runs the model
    handles, seen = [], set()
    for name, _, _, module in rectifier_sites(model):
        if id(module) in seen:  # one module under several parents: one name, each call reported once
            continue
        seen.add(id(module))

        def hook(mod, inp, out, name=name):
            with lock:
                k = calls.get(name, 0)
                calls[name] = k + 1
            on_output(f"{name}#{k}", out)
        handles.append(module.register_forward_hook(hook))
    try:
        with function_calls.converting(model, observe=on_output, only_if_needed=True):  # functional calls: "module/relu#k"
            yield model
    finally:
        for h in handles:
            h.remove()


def _clamp_and_slope(module: nn.Module) -> tuple[float | None, float]:
    """The clamp (6.0 for ReLU6) and forward slope of an existing rectifier module."""
    if isinstance(module, nn.ReLU6):
        return 6.0, 0.0
    if isinstance(module, nn.LeakyReLU):
        return None, float(module.negative_slope)
    if isinstance(module, ProxyGradReLU):
        return module.max_value, module.forward_slope
    if isinstance(module, BackwardRule):
        return module.max_value, 0.0
    return None, 0.0


def _replace(model: nn.Module, make) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replace every rectifier module by ``make(name, old_module)`` (None: keep it); a module shared by
    several parents (torchvision's ResNet reuses one ReLU per block) gets one shared replacement.
    Returns the (parent, attribute, old module) triples that were replaced."""
    new_for, replaced = {}, []
    sites = rectifier_sites(model)
    for name, parent, attr, old in sites:  # first make them all: an error leaves the model as it was
        if id(old) not in new_for:
            new_for[id(old)] = make(name, old)
    for name, parent, attr, old in sites:
        if new_for[id(old)] is not None:
            setattr(parent, attr, new_for[id(old)])
            replaced.append((parent, attr, old))
    return replaced


class SwapCount(int):
    """What :func:`swap_activations` converted: an ``int`` (module attributes plus functional
    sites) that also says ``.modules`` and ``.functional`` (None: not countable without running the
    model; such calls are converted as the model runs)."""

    def __new__(cls, modules: int, functional_sites: int | None):
        obj = super().__new__(cls, modules + (functional_sites or 0))
        obj.modules, obj.functional = modules, functional_sites
        return obj

    def __str__(self) -> str:
        f = ("an unknown number of functional calls (converted as the model runs; pass example= to count them)"
             if self.functional is None else f"{self.functional} functional call site{'s' * (self.functional != 1)}")
        return f"{self.modules} rectifier module{'s' * (self.modules != 1)} and {f}"


def swap_activations(model: nn.Module, spec: "str | ActivationSpec", example: torch.Tensor | None = None) -> SwapCount:
    """Replace every ReLU, ReLU6 and LeakyReLU of ``model`` in place by the activation ``spec``.

    ReLU6's clamp at 6 and each module's ``inplace`` flag are kept; the forward slope is the
    spec's (``"proxygrad:B"`` means a ReLU forward). To keep each module's own forward and change
    only the backward, use :func:`proxygrad`. Rectifiers called as functions in ``forward``
    (``F.relu``, ``torch.relu``, ``F.relu6``, ``F.leaky_relu``, ``F.hardtanh(x, 0, 6)``) are converted
    too, from then on, every time the model runs (:mod:`proxylab.function_calls`).

    Args:
        model: the network, changed in place.
        spec: an activation spec such as ``"relu"``, ``"leaky:0.1"`` or ``"proxygrad:0.1"``.
        example: optional input batch; counts the functional sites by running it once (no
            gradient, eval mode). Without it they are counted by tracing with ``torch.fx``.

    Returns:
        A :class:`SwapCount`: module attributes replaced (9 for torchvision's ResNet18) plus
        functional sites (57 for torchvision's GoogLeNet), each also on its own, and a readable str.
    """
    make = _Maker(parse_activation(spec))
    modules = len(_replace(model, make))
    sites = function_calls.count_functional(model, example)
    if modules == 0 and sites == 0:
        raise ValueError(NO_RECTIFIER.format(name=type(model).__name__))
    if sites != 0:
        function_calls.install(model, make)
    return SwapCount(modules, sites)


class _Maker:
    """The replacement function for ``spec``: keeps each old module's clamp and inplace flag. A
    class at module level, not a closure, since :func:`swap_activations` keeps it on the model
    (for its functional calls) and ``torch.save(model)`` must be able to pickle it."""

    def __init__(self, spec: ActivationSpec):
        self.spec = spec

    def __call__(self, name, old):
        spec = self.spec
        max_value, forward_slope = _clamp_and_slope(old)
        if spec.kind in RULES and forward_slope != 0:
            raise ValueError(
                f"the {spec.kind} rule is defined on a ReLU/ReLU6 forward pass, but {name!r} is a Leaky "
                f"ReLU of slope {forward_slope:g}; using it would change the model's forward pass. Use "
                f"proxylab.proxygrad(model, B) to change only its backward slope, or convert the model "
                f"to ReLUs first (swap_activations(model, 'relu'))")
        return spec.module(max_value, inplace=getattr(old, "inplace", False), seed=module_seed(name))


@contextlib.contextmanager
def _temporarily(model: nn.Module, make) -> Iterator[nn.Module]:
    """Replace rectifiers with ``make`` for a ``with`` block, modules and functional calls alike;
    restore them on exit, also on error."""
    replaced = _replace(model, make)
    try:
        with function_calls.converting(model, make, only_if_needed=True) as block:
            yield model
        if not block.idle and not block.sites and block.controller.forwards and not rectifier_sites(model, required=False):
            raise ValueError(NO_RECTIFIER.format(name=type(model).__name__))
    finally:
        for parent, attr, old in replaced:
            setattr(parent, attr, old)


def swapped(model: nn.Module, spec: "str | ActivationSpec"):
    """:func:`swap_activations` for the duration of a ``with`` block; the original modules are
    restored on exit, also when the body raises."""
    return _temporarily(model, _Maker(parse_activation(spec)))


def proxygrad(model: nn.Module, backward_slope: "float | Callable[[str], float | None]",
              layers: Callable[[str], bool] | None = None):
    """Temporarily give the rectifiers of ``model`` the backward slope ``backward_slope``.

    Each module keeps its own forward (ReLU, ReLU6's clamp, a LeakyReLU's slope), so the
    model's outputs do not change; the original modules are restored on exit, also when the
    body raises. Rectifiers the model calls as functions (``F.relu`` in torchvision's GoogLeNet)
    are converted too while the block runs, under names such as ``"inception3a.branch1/relu"``
    (:mod:`proxylab.function_calls`).

    Args:
        model: the network (changed only inside the ``with`` block).
        backward_slope: one slope for all, or a function of the module's qualified name
            (``"layer1.0.relu"``) returning its slope, or None to leave that module alone.
        layers: optional filter on the qualified name; only modules it accepts are converted.

    Example:
        >>> with proxygrad(model, 0.1):
        ...     model(x)[0, target].backward()
    """
    slope_of = backward_slope if callable(backward_slope) else None
    if slope_of is None:
        backward_slope = check_slope(backward_slope, "backward_slope")

    def make(name, old):
        if layers is not None and not layers(name):
            return None
        slope = slope_of(name) if slope_of else backward_slope
        if slope is None:
            return None
        max_value, forward_slope = _clamp_and_slope(old)
        return ProxyGradReLU(check_slope(slope, f"backward slope of {name}"), forward_slope, max_value,
                             inplace=getattr(old, "inplace", False))

    return _temporarily(model, make)


def set_state(model: nn.Module, step: int | None, image_seeds=None) -> int:
    """Tell every backward-rule module of ``model`` (those answering its functional calls too) the
    AM step (from 0) and the seeds of the images in the batch; returns how many modules were told."""
    n = 0
    for m in list(model.modules()) + function_calls.functional_modules(model):
        if isinstance(m, BackwardRule):
            m.step, m.calls, n = step, 0, n + 1
            m.image_seeds = None if image_seeds is None else [int(s) for s in image_seeds]
    return n
