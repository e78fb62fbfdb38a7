"""The ProxyGrad operator: a rectifier whose backward slope differs from its forward slope.

- Forward: y = LReLU_{a_f}(x), clamped at ``max_value`` when given (ReLU6: 6).
- Backward: dy/dx = 1 where the ORIGINAL input was positive (and below ``max_value``),
  a_b where it was negative (or zero), 0 above ``max_value``.

Only the output ``y`` is saved for the backward pass, as ``nn.ReLU`` does: for a forward slope
a_f >= 0 the sign of y is the sign of x, so no copy of the input is kept.

The activation spec (one string used by notebooks, AM, training and the CLI, parsed once at the
edge into an :class:`ActivationSpec`, the value passed inward):
``"relu"``, ``"leaky:A"``, ``"proxygrad:B"`` (ReLU forward, slope B backward) and
``"proxygrad:B:A"`` (forward slope A, backward slope B).

Putting these modules into a model (swapping them in, for good or for a ``with`` block) is
:mod:`proxylab.swap`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch
from torch import nn

from .rules import RULES, BackwardRule, relu_forward

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
KIND_LABELS = {"relu": "ReLU", "leaky": "Leaky ReLU", "proxygrad": "ProxyGrad", "guided": "guided backprop",
               "deconvnet": "deconvnet", "redirected": "redirected ReLU", "noisy": "noisy"}
SWEPT_KINDS = ("leaky", "proxygrad")  # the kinds a slope sweeps; slope 0 is ReLU, the baseline of both


@dataclass(frozen=True)
class ActivationSpec:
    """A parsed activation spec: ``kind`` plus its forward and backward slopes. Its ``str`` is the
    spec's text (what job files and command lines hold); :func:`parse_activation` reads it back."""

    kind: str  # "relu", "leaky", "proxygrad", or a backward rule of proxylab.rules
    backward_slope: float = 0.0  # for "noisy": the noise scale S
    forward_slope: float = 0.0

    @classmethod
    def at_slope(cls, kind: str, slope: float) -> "ActivationSpec":
        """``kind`` (``"leaky"`` or ``"proxygrad"``) at ``slope``, the point of a slope sweep;
        slope 0 is ReLU for both kinds."""
        if kind not in SWEPT_KINDS:
            raise ValueError(f"a slope sweeps the kinds {' and '.join(SWEPT_KINDS)}, not {kind!r}")
        slope = check_slope(slope)
        if slope == 0:
            return cls("relu")
        return cls("leaky", slope, slope) if kind == "leaky" else cls("proxygrad", slope)

    @property
    def slope(self) -> float:
        """The slope a sweep plots, a Leaky ReLU's (both passes) or else the backward one (ProxyGrad's,
        the noise scale of ``noisy``); 0 for ReLU."""
        return self.forward_slope if self.kind == "leaky" else self.backward_slope

    @property
    def same_forward(self) -> bool:
        """True when this spec changes only the backward pass of a ReLU network."""
        return self.kind == "relu" or (self.kind in BACKWARD_ONLY and self.forward_slope == 0)

    def __str__(self) -> str:
        if self.kind in ("relu", "guided", "deconvnet", "redirected"):
            return self.kind
        if self.kind in ("noisy", "leaky"):
            return f"{self.kind}:{self.slope:g}"
        tail = f":{self.forward_slope:g}" if self.forward_slope else ""
        return f"proxygrad:{self.backward_slope:g}{tail}"

    @property
    def kind_label(self) -> str:
        """The kind's name for plots and tables (``"Leaky ReLU"``, ``"ProxyGrad"``)."""
        return KIND_LABELS[self.kind]

    @property
    def label(self) -> str:
        """A human-readable name for plots and tables, with the slope (``"ProxyGrad 0.05"``)."""
        slope = f" {self.slope:g}" if self.kind in ("leaky", "proxygrad", "noisy") else ""
        tail = f" (fwd {self.forward_slope:g})" if self.kind == "proxygrad" and self.forward_slope else ""
        return self.kind_label + slope + tail

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
