"""Certified maxima: the exact global maximum of one output of a small ReLU network over the input
box [-1, 1]^n, as a mixed-integer linear program (MILP), solved by SciPy's HiGHS.

For a network ``Linear, ReLU, Linear, ReLU, ..., Linear`` write z = W a + b for each hidden unit's
pre-activation and a = ReLU(z). With bounds l <= z <= u over the box:

- u <= 0: the unit is always off, a = 0 (no variable needed);
- l >= 0: always on, a = z;
- otherwise a binary d and the big-M constraints a >= z, a >= 0, a <= z - l (1 - d), a <= u d.

Two simplifications keep it exact: a unit of the LAST hidden layer whose output weight is <= 0 needs
no binary (maximizing pushes its a down onto max(0, z) on its own), and tighter bounds l, u make a
tighter relaxation. Bounds come from interval arithmetic (``"interval"``) or, tighter, from one LP per
unit over the relaxed network before it (``"lp"``).

Every certificate is checked: the network, evaluated in float64 at the solver's argmax, must give
the solver's objective (``Certificate.checked``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import lil_matrix, vstack
from torch import nn
from tqdm.auto import tqdm

from .am import evaluating, gradient_network, in_float64
from .ascent import ascend
from .data import fashion_mnist
from .proxygrad import parse_activation
from .rules import RULES
from .swap import set_state


@dataclass
class Certificate:
    """The solver's answer for one output.

    ``value``: the best input's output (a lower bound on the maximum); ``bound``: the proven upper
    bound (equal to ``value`` when ``optimal``); ``x``: the best input (flat, in [-1, 1]);
    ``checked``: the network in float64 at ``x`` equals ``value`` (to 1e-6 relative);
    ``binaries``: the binary variables the MILP needed; ``seconds``: the solve time.
    """

    value: float
    bound: float
    x: np.ndarray
    optimal: bool
    checked: bool
    binaries: int
    seconds: float

    @property
    def gap(self) -> float:
        """The proven relative gap ``(bound - value) / |bound|`` (0 when optimal)."""
        return 0.0 if self.optimal else (self.bound - self.value) / max(abs(self.bound), 1e-12)


def _layers(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of every Linear layer, in float64, checking the network is Linear (ReLU Linear)*."""
    mods = [m for m in (model if isinstance(model, nn.Sequential) else [model]) if not isinstance(m, nn.Flatten)]
    layers, expect_linear = [], True
    for m in mods:
        if expect_linear and isinstance(m, nn.Linear):
            layers.append((m.weight.detach().double().cpu().numpy(), m.bias.detach().double().cpu().numpy()))
        elif not expect_linear and isinstance(m, nn.ReLU):
            pass
        else:
            raise ValueError("certified_max takes an nn.Sequential of Linear layers with a ReLU between each two "
                             f"(optionally a leading Flatten); found {type(m).__name__} where a "
                             f"{'Linear' if expect_linear else 'ReLU'} was expected")
        expect_linear = not expect_linear
    if not layers or expect_linear:
        raise ValueError("certified_max needs a network that ends in a Linear layer")
    return layers


def interval_bounds(layers, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds (l, u) of every hidden layer over the box [lo, hi], by interval arithmetic."""
    out = []
    a_lo, a_hi = lo, hi
    for W, b in layers[:-1]:
        pos, neg = np.clip(W, 0, None), np.clip(W, None, 0)
        l, u = pos @ a_lo + neg @ a_hi + b, pos @ a_hi + neg @ a_lo + b
        out.append((l, u))
        a_lo, a_hi = np.maximum(l, 0), np.maximum(u, 0)
    return out


class _Program:
    """Variables and constraints of the network's MILP up to a given hidden layer."""

    def __init__(self, n_in: int):
        self.lo, self.hi, self.integer = [-1.0] * n_in, [1.0] * n_in, [0] * n_in
        self.rows: list[tuple[dict[int, float], float, float]] = []  # (coefficients, lower, upper)
        self.inputs = list(range(n_in))
        self.prev: list = self.inputs  # the activations the next layer reads

    def var(self, lo, hi, integer=0) -> int:
        self.lo.append(lo)
        self.hi.append(hi)
        self.integer.append(integer)
        return len(self.lo) - 1

    def row(self, coef: dict[int, float], lo: float, hi: float) -> None:
        self.rows.append((coef, lo, hi))

    def affine(self, W_row: np.ndarray, b: float, prev: list, extra: dict | None = None) -> dict[int, float]:
        """Coefficients of W_row . prev + (constant b, returned under key -1)."""
        coef: dict[int, float] = {-1: b}
        for w, p in zip(W_row, prev):
            if w == 0:
                continue
            if isinstance(p, int):
                coef[p] = coef.get(p, 0.0) + w
            else:  # a unit fixed to a constant (an always-off unit: 0)
                coef[-1] += w * p
        for k, v in (extra or {}).items():
            coef[k] = coef.get(k, 0.0) + v
        return coef

    def add_layer(self, W, b, l, u, relax: bool, skip_binary: np.ndarray | None = None) -> tuple[list, int]:
        """Add one hidden layer; returns its activations (variable index or the constant 0) and the
        number of binaries. ``relax``: the triangle relaxation instead of binaries."""
        acts, binaries = [], 0
        for j in range(W.shape[0]):
            if u[j] <= 0:
                acts.append(0.0)
                continue
            z = self.affine(W[j], b[j], self.prev)
            c = z.pop(-1)
            if l[j] >= 0:  # always on: a = z
                a = self.var(l[j], u[j])
                self.row({**z, a: -1.0}, -c, -c)
                acts.append(a)
                continue
            a = self.var(0.0, u[j])
            self.row({**z, a: -1.0}, -np.inf, -c)  # a >= z
            if skip_binary is not None and skip_binary[j]:
                acts.append(a)  # maximizing pushes a down to max(0, z) on its own
                continue
            if relax:  # a <= u (z - l) / (u - l)
                s = u[j] / (u[j] - l[j])
                self.row({**{k: -s * v for k, v in z.items()}, a: 1.0}, -np.inf, s * (c - l[j]))
            else:
                d = self.var(0.0, 1.0, integer=1)
                binaries += 1
                self.row({**z, a: -1.0, d: l[j]}, l[j] - c, np.inf)   # a <= z - l (1 - d)
                self.row({a: 1.0, d: -u[j]}, -np.inf, 0.0)            # a <= u d
            acts.append(a)
        self.prev = acts
        return acts, binaries

    def matrices(self):
        A = lil_matrix((len(self.rows), len(self.lo)))
        lo, hi = np.empty(len(self.rows)), np.empty(len(self.rows))
        for r, (coef, l, h) in enumerate(self.rows):
            for k, v in coef.items():
                A[r, k] = v
            lo[r], hi[r] = l, h
        return A.tocsr(), lo, hi


def _objective(prog: _Program, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    coef = prog.affine(w, b, prog.prev)
    const = coef.pop(-1)
    c = np.zeros(len(prog.lo))
    for k, v in coef.items():
        c[k] = v
    return c, const


def lp_bounds(layers, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tighter pre-activation bounds: for each unit, min and max of its z by LP over the triangle
    relaxation of the layers before it (with their own LP bounds); layer 1 is exact by intervals."""
    bounds = interval_bounds(layers[:2], lo, hi)[:1]
    prog = _Program(len(lo))
    for k, (W, b) in enumerate(layers[1:-1], start=1):
        prog.add_layer(*layers[k - 1], *bounds[k - 1], relax=True)
        A, rlo, rhi = prog.matrices()
        l_iv, u_iv = interval_bounds(layers[k:k + 2], *[np.maximum(x, 0) for x in bounds[k - 1]])[0]
        l, u = l_iv.copy(), u_iv.copy()
        for j in range(W.shape[0]):
            c, const = _objective(prog, W[j], b[j])
            for sign, store in ((1.0, l), (-1.0, u)):
                res = linprog(sign * c, bounds=list(zip(prog.lo, prog.hi)), method="highs",
                              **_constraints_kw(A, rlo, rhi))
                if res.status == 0:
                    store[j] = sign * res.fun + const
        bounds.append((np.maximum(l, l_iv), np.minimum(u, u_iv)))
    return bounds


def _constraints_kw(A, lo, hi):
    """linprog wants A_ub x <= b_ub and A_eq x = b_eq: split the two-sided rows."""
    eq = lo == hi
    up, down = np.isfinite(hi) & ~eq, np.isfinite(lo) & ~eq
    kw = {}
    if eq.any():
        kw.update(A_eq=A[eq], b_eq=hi[eq])
    parts, rhs = [], []
    if up.any():
        parts.append(A[up]), rhs.append(hi[up])
    if down.any():
        parts.append(-A[down]), rhs.append(-lo[down])
    if parts:
        kw.update(A_ub=vstack(parts).tocsr(), b_ub=np.concatenate(rhs))
    return kw


def certified_max(model: nn.Module, output: int, time_limit: float = 60.0, bounds: str = "lp",
                  threads: int = 1) -> Certificate:
    """The global maximum of ``model(x)[output]`` over x in [-1, 1]^n, n = the first layer's inputs.

    Args:
        model: ``nn.Sequential`` of ``Linear`` layers with a ``ReLU`` between each two (an optional
            leading ``Flatten``): the networks of :func:`mlp`.
        output: which output (class logit) to maximize.
        time_limit: seconds for HiGHS; past it the answer is the best input found and a proven
            bound (``optimal`` False, ``gap`` > 0).
        bounds: ``"interval"`` or ``"lp"`` (tighter, one LP per hidden unit after the first layer).

    Returns:
        A :class:`Certificate`; its ``checked`` says the network at ``x`` gives ``value`` in float64.
    """
    layers = _layers(model)
    n_in = layers[0][0].shape[1]
    if not 0 <= output < layers[-1][0].shape[0]:
        raise ValueError(f"output must be in 0..{layers[-1][0].shape[0] - 1}, got {output}")
    if bounds not in ("interval", "lp"):
        raise ValueError(f"bounds must be 'interval' or 'lp', got {bounds!r}")
    t0 = time.perf_counter()
    lo, hi = -np.ones(n_in), np.ones(n_in)
    pre = interval_bounds(layers, lo, hi) if bounds == "interval" or len(layers) < 3 else lp_bounds(layers, lo, hi)
    prog = _Program(n_in)
    w_out, b_out = layers[-1][0][output], layers[-1][1][output]
    binaries = 0
    for k, (W, b) in enumerate(layers[:-1]):
        last = k == len(layers) - 2
        _, nb = prog.add_layer(W, b, *pre[k], relax=False, skip_binary=(w_out <= 0) if last else None)
        binaries += nb
    c, const = _objective(prog, w_out, b_out)
    A, rlo, rhi = prog.matrices()
    res = milp(-c, constraints=LinearConstraint(A, rlo, rhi), integrality=np.array(prog.integer),
               bounds=Bounds(prog.lo, prog.hi),
               options={"time_limit": time_limit, "disp": False, "mip_rel_gap": 1e-9, "presolve": True})
    seconds = time.perf_counter() - t0
    if res.x is None:
        raise RuntimeError(f"HiGHS found no feasible input in {time_limit:g} s ({res.message}); raise time_limit")
    x = np.clip(res.x[:n_in], -1.0, 1.0)
    value = -res.fun + const
    bound = -getattr(res, "mip_dual_bound", res.fun) + const if res.status != 0 else value
    actual = evaluate(layers, x)[output]
    checked = abs(actual - value) <= 1e-6 * max(1.0, abs(value))
    return Certificate(float(actual), float(max(bound, actual)), x, res.status == 0, bool(checked), binaries, seconds)


def evaluate(layers, x: np.ndarray) -> np.ndarray:
    """The network's outputs at one flat input, in float64."""
    a = x
    for W, b in layers[:-1]:
        a = np.maximum(W @ a + b, 0.0)
    W, b = layers[-1]
    return W @ a + b


def mlp(n_in: int, widths: list[int], n_out: int = 10, seed: int = 0) -> nn.Sequential:
    """``Flatten, Linear, ReLU, ..., Linear``: the networks whose maxima can be certified (seeded init)."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Flatten()]
    for w_in, w in zip([n_in] + widths, widths):
        mods += [nn.Linear(w_in, w), nn.ReLU()]
    mods.append(nn.Linear(([n_in] + widths)[-1], n_out))
    return nn.Sequential(*mods)


# --------------------------------------------------------------------------- the networks and AM against them
def fashion_mlp(widths: list[int], size: int = 14, epochs: int = 3, seed: int = 0, subset: int | None = None,
                progress: bool = False) -> tuple[nn.Sequential, float]:
    """A :func:`mlp` trained on Fashion-MNIST downsampled to ``size`` x ``size`` pixels in [-1, 1]
    (Adam, lr 1e-3, batch 128, ``epochs`` epochs, seeded); returns ``(model in eval mode, test accuracy %)``.
    """
    def tensors(train):
        ds = fashion_mnist(train=train)
        x = ds.data[:subset] if subset else ds.data
        x = nn.functional.adaptive_avg_pool2d(x.float().unsqueeze(1) / 255.0, size) * 2 - 1
        return x.flatten(1), (ds.targets[:subset] if subset else ds.targets)

    (x, y), (xt, yt) = tensors(True), tensors(False)
    model = mlp(size * size, widths, 10, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc=f"MLP {widths}", disable=not progress, leave=False):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item() * 100
    return model, accuracy


def am_runs(model: nn.Module, output: int, spec: str, starts: torch.Tensor, steps: int, lr: float,
            polish_steps: int = 0) -> dict:
    """Activation maximization of one output of a flat-input network from each start (a batch),
    with the course's normalized step (:func:`proxylab.ascent.ascend`) and the gradient network of
    ``spec``; optionally followed by ``polish_steps`` of plain projected gradient ascent on the
    network's own gradient with a step halved every tenth of them (so the run settles on the local
    maximum it reached instead of circling it at distance ``lr``).

    Returns:
        A dict with ``"values"`` (the network's output at the end, per start), ``"curve"`` (the mean
        over starts, per step) and ``"x"`` (the final inputs).
    """
    spec = parse_activation(spec)
    n = starts.shape[0]
    with evaluating(model), gradient_network(model, spec) as (net, same):
        x, scores, _ = ascend(lambda v: net(v)[:, output], starts, steps, lr,
                              score=None if same else (lambda v: model(v)[:, output]),
                              before_step=(lambda i: set_state(net, i, list(range(n)))) if spec.kind in RULES else None,
                              precise=lambda: in_float64(net), desc=f"AM {spec}")
    curve = scores.mean(dim=1).tolist()
    if polish_steps:
        block = max(1, polish_steps // 10)
        with evaluating(model):
            for k in range(0, polish_steps, block):
                x, more, _ = ascend(lambda v: model(v)[:, output], x, min(block, polish_steps - k), lr * 0.5 ** (k // block + 1))
                curve += more[1:].mean(dim=1).tolist()
    with torch.no_grad():
        values = model(x)[:, output]
    return {"values": values.tolist(), "curve": curve, "x": x}
