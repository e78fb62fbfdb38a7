"""The ProxyGrad operator: a rectifier whose backward slope differs from its forward slope.

- Forward: y = LReLU_{a_f}(x), clamped at ``max_value`` when given (ReLU6: 6).
- Backward: dy/dx = 1 where the ORIGINAL input was positive (and below ``max_value``),
  a_b where it was negative (or zero), 0 above ``max_value``.

Only the output ``y`` is saved for the backward pass, as ``nn.ReLU`` does: for a forward slope
a_f >= 0 the sign of y is the sign of x, so no copy of the input is kept.

The activation spec (one string used by notebooks, AM, training and the CLI):
``"relu"``, ``"leaky:A"``, ``"proxygrad:B"`` (ReLU forward, slope B backward) and
``"proxygrad:B:A"`` (forward slope A, backward slope B).
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from numbers import Real
from typing import Callable, Iterator

import torch
from torch import nn

from . import functional
from .rules import RULES, BackwardRule, module_seed, relu_forward

RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
SPEC_HELP = ('accepted specs: "relu", "leaky:A", "proxygrad:B" and "proxygrad:B:A", with slopes A '
             '(forward) and B (backward) finite numbers >= 0, e.g. "proxygrad:0.1"; and the backward '
             'rules "guided", "deconvnet", "redirected", "noisy:S"')
BACKWARD_ONLY = ("proxygrad",) + RULES  # kinds whose forward is the original rectifier's


def check_slope(value, name: str = "slope") -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is a finite number >= 0."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (negative slopes flip the gradient's sign), got {value}; "
                         "slopes above 1 are allowed")
    return value


class _ProxyReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, backward_slope, forward_slope, max_value, inplace):
        if forward_slope == 0:
            y = relu_forward(x, max_value, inplace)
        else:
            y = torch.nn.functional.leaky_relu(x, forward_slope, inplace=inplace)
            if max_value is not None:
                y = y.clamp_max_(max_value)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(y)
        ctx.backward_slope = backward_slope
        ctx.max_value = max_value
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        # y > 0 exactly where the original x > 0 (forward slope >= 0): one fused kernel ...
        if ctx.backward_slope <= torch.finfo(grad.dtype).max:
            grad_in = torch.ops.aten.leaky_relu_backward(grad, y, ctx.backward_slope, True)
        else:  # a slope the kernel cannot take in this dtype: inf where it applies, so AM retries in float64
            grad_in = torch.where(y > 0, grad, grad * ctx.backward_slope)
        if ctx.max_value is not None:  # ... and one more zeroing y >= max_value (a bool mask is far slower)
            grad_in = torch.ops.aten.hardtanh_backward(grad_in, y, -math.inf, ctx.max_value)
        return grad_in, None, None, None, None


def proxy_relu(x: torch.Tensor, backward_slope: float, forward_slope: float = 0.0,
               max_value: float | None = None, inplace: bool = False) -> torch.Tensor:
    """Rectifier with forward slope ``forward_slope`` and backward slope ``backward_slope``.

    Args:
        x: input tensor.
        backward_slope: slope used for negative inputs in the backward pass (a_b >= 0).
        forward_slope: slope used for negative inputs in the forward pass (a_f >= 0; 0 = ReLU).
        max_value: clamp the output at this value (6 for ReLU6); the gradient above it is 0.
        inplace: overwrite ``x`` with the result, as ``nn.ReLU(inplace=True)`` does.

    Returns:
        LReLU_{a_f}(x) (clamped), whose gradient is that of LReLU_{a_b} at the original x.
    """
    backward_slope = check_slope(backward_slope, "backward_slope")
    forward_slope = check_slope(forward_slope, "forward_slope")
    if max_value is not None:
        max_value = float(max_value)
        if not max_value > 0:
            raise ValueError(f"max_value must be > 0 (ReLU6 uses 6), got {max_value}")
    return _ProxyReLUFunction.apply(x, backward_slope, forward_slope, max_value, inplace)


class ProxyGradReLU(nn.Module):
    """Module form of :func:`proxy_relu`; a drop-in replacement for ReLU, ReLU6 and LeakyReLU."""

    def __init__(self, backward_slope: float, forward_slope: float = 0.0,
                 max_value: float | None = None, inplace: bool = False):
        super().__init__()
        self.backward_slope = check_slope(backward_slope, "backward_slope")
        self.forward_slope = check_slope(forward_slope, "forward_slope")
        self.max_value = None if max_value is None else float(max_value)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ProxyReLUFunction.apply(x, self.backward_slope, self.forward_slope,
                                        self.max_value, self.inplace)

    def extra_repr(self) -> str:
        parts = [f"backward_slope={self.backward_slope:g}", f"forward_slope={self.forward_slope:g}"]
        if self.max_value is not None:
            parts.append(f"max_value={self.max_value:g}")
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)


# --------------------------------------------------------------------------- activation specs
@dataclass(frozen=True)
class ActivationSpec:
    """A parsed activation spec: ``kind`` plus its forward and backward slopes."""

    kind: str  # "relu", "leaky", "proxygrad", or a backward rule of proxylab.rules
    backward_slope: float = 0.0  # for "noisy": the noise scale S
    forward_slope: float = 0.0

    @property
    def same_forward(self) -> bool:
        """True when this spec changes only the backward pass of a ReLU network."""
        return self.kind == "relu" or (self.kind in BACKWARD_ONLY and self.forward_slope == 0)

    def __str__(self) -> str:
        if self.kind in ("relu", "guided", "deconvnet", "redirected"):
            return self.kind
        if self.kind == "noisy":
            return f"noisy:{self.backward_slope:g}"
        if self.kind == "leaky":
            return f"leaky:{self.forward_slope:g}"
        tail = f":{self.forward_slope:g}" if self.forward_slope else ""
        return f"proxygrad:{self.backward_slope:g}{tail}"

    @property
    def label(self) -> str:
        """A human-readable name for plots and tables."""
        return {"relu": "ReLU", "leaky": f"Leaky ReLU {self.forward_slope:g}",
                "proxygrad": f"ProxyGrad {self.backward_slope:g}", "guided": "guided backprop",
                "deconvnet": "deconvnet", "redirected": "redirected ReLU",
                "noisy": f"noisy {self.backward_slope:g}"}[self.kind] + (
            f" (fwd {self.forward_slope:g})" if self.kind == "proxygrad" and self.forward_slope else "")

    def module(self, max_value: float | None = None, inplace: bool = False, seed: int = 0) -> nn.Module:
        """A fresh activation module for this spec, clamped at ``max_value`` (6 keeps ReLU6);
        ``seed`` is the noise stream of ``noisy:S``."""
        if self.kind in RULES:
            return BackwardRule(self.kind, self.backward_slope, max_value, inplace, seed=seed)
        if self.kind == "relu":
            if max_value == 6.0:
                return nn.ReLU6(inplace=inplace)
            if max_value is None:
                return nn.ReLU(inplace=inplace)
        if self.kind == "leaky" and max_value is None:
            return nn.LeakyReLU(self.forward_slope, inplace=inplace)
        return ProxyGradReLU(self.backward_slope, self.forward_slope, max_value, inplace)


def _parse_float(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"malformed activation spec {spec!r}: {what} {text!r} is not a number; "
                         f"{SPEC_HELP}") from None
    try:
        return check_slope(value, what)
    except ValueError as err:
        raise ValueError(f"bad activation spec {spec!r}: {err}; {SPEC_HELP}") from None


def parse_activation(spec: "str | ActivationSpec") -> ActivationSpec:
    """Parse an activation spec string (see module docstring); ``ValueError`` says what is accepted."""
    if isinstance(spec, ActivationSpec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"activation spec must be a string, got {spec!r}; {SPEC_HELP}")
    kind, *args = spec.strip().lower().split(":")
    if kind == "relu" and not args:
        return ActivationSpec("relu")
    if kind == "leaky" and len(args) == 1:
        return ActivationSpec("leaky", *(2 * [_parse_float(args[0], "leaky slope", spec)]))
    if kind == "proxygrad" and len(args) in (1, 2):
        backward = _parse_float(args[0], "backward slope", spec)
        forward = _parse_float(args[1], "forward slope", spec) if len(args) == 2 else 0.0
        return ActivationSpec("proxygrad", backward, forward)
    if kind in ("guided", "deconvnet", "redirected") and not args:
        return ActivationSpec(kind)
    if kind == "noisy" and len(args) == 1:
        return ActivationSpec("noisy", _parse_float(args[0], "noise scale", spec))
    if kind in ("relu", "leaky", "proxygrad") + RULES:
        raise ValueError(f"malformed activation spec {spec!r}: wrong number of ':'-separated "
                         f"values for {kind!r}; {SPEC_HELP}")
    raise ValueError(f"unknown activation spec {spec!r}; {SPEC_HELP}")


# --------------------------------------------------------------------------- model surgery
NO_RECTIFIER = ("{name} has no rectifier to convert: no nn.ReLU, nn.ReLU6, nn.LeakyReLU or ProxyGradReLU "
                "module, and no call of F.relu, torch.relu, F.relu6, F.leaky_relu or F.hardtanh(x, 0, 6) in "
                "its forward; ProxyGrad and the backward rules apply to ReLU-family activations only")


def rectifier_sites(model: nn.Module, required: bool = True) -> list[tuple[str, nn.Module, str, nn.Module]]:
    """Every (qualified name, parent, attribute, module) where a ReLU/ReLU6/LeakyReLU/ProxyGradReLU
    module sits, in registration order. With ``required``, a model with no rectifier at all (no
    module, and no functional call that :func:`proxylab.functional.count_functional` can find)
    raises ``ValueError``; a model whose rectifiers are all functional gives an empty list."""
    sites = []
    for parent_name, parent in model.named_modules():
        for attr, child in parent._modules.items():  # not named_children(): it hides repeats
            if isinstance(child, RECTIFIERS + (ProxyGradReLU, BackwardRule)):
                sites.append((f"{parent_name}.{attr}" if parent_name else attr, parent, attr, child))
    if not sites and required and functional.count_functional(model) == 0:
        raise ValueError(NO_RECTIFIER.format(name=type(model).__name__))
    return sites


@contextlib.contextmanager
def rectifier_calls(model: nn.Module, on_output: Callable[[str, torch.Tensor], None]) -> Iterator[nn.Module]:
    """Call ``on_output(key, output)`` for every rectifier call in the forward passes made inside
    the ``with`` block; ``key`` is ``"qualified.name#k"``, the k-th call of that module (a module
    can be called more than once per pass, as torchvision's ResNet blocks do; a module registered
    under several parents is named by the first, as in :func:`rectifier_sites`), or
    ``"module/relu#k"`` for a functional call (see :mod:`proxylab.functional`)."""
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
        with functional.converting(model, observe=on_output, only_if_needed=True):  # functional calls: "module/relu#k"
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
    too, from then on, every time the model runs (:mod:`proxylab.functional`).

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
    sites = functional.count_functional(model, example)
    if modules == 0 and sites == 0:
        raise ValueError(NO_RECTIFIER.format(name=type(model).__name__))
    if sites != 0:
        functional.install(model, make)
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
        with functional.converting(model, make, only_if_needed=True) as block:
            yield model
        if not block.idle and not block.sites and block.c.forwards and not rectifier_sites(model, required=False):
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
    (:mod:`proxylab.functional`).

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
