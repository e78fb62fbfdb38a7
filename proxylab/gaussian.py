"""Leaky ReLU applied to a Gaussian (paper, Appendix 11.3): mean, second moment and variance of
Y = LReLU_a(X), derived symbolically with sympy over the two half-lines, checked by Monte Carlo.

For X ~ N(0, 1):  E[Y] = (1 − a)/√(2π),  E[Y²] = (1 + a²)/2,  Var[Y] = (1 + a²)/2 − (1 − a)²/(2π).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp
import torch

a, x = sp.symbols("a x", real=True)
mu_sym = sp.Symbol("mu", real=True)
sigma_sym = sp.Symbol("sigma", positive=True)


def density(mu=0, sigma=1) -> sp.Expr:
    """The Gaussian density of X ~ N(mu, sigma²) in the symbol ``x``."""
    return sp.exp(-(x - mu) ** 2 / (2 * sigma ** 2)) / (sigma * sp.sqrt(2 * sp.pi))


@dataclass(frozen=True)
class Moments:
    """Closed forms in the slope symbol ``a`` (sympy expressions)."""

    mean: sp.Expr
    second: sp.Expr
    var: sp.Expr


@lru_cache(maxsize=None)
def lrelu_moments(mu=0, sigma=1) -> Moments:
    """Derive E[Y], E[Y²] and Var[Y] of Y = LReLU_a(X), X ~ N(mu, sigma²), by integrating over
    x > 0 (where Y = x) and x < 0 (where Y = a·x). ``mu``/``sigma`` may be numbers or the symbols
    ``mu_sym``/``sigma_sym`` for the general case."""
    mu, sigma = sp.sympify(mu), sp.sympify(sigma)
    p = density(mu, sigma)
    mean = sp.integrate(x * p, (x, 0, sp.oo)) + sp.integrate(a * x * p, (x, -sp.oo, 0))
    second = sp.integrate(x ** 2 * p, (x, 0, sp.oo)) + sp.integrate(a ** 2 * x ** 2 * p, (x, -sp.oo, 0))
    mean, second = sp.simplify(mean), sp.simplify(second)
    return Moments(mean, second, sp.simplify(second - mean ** 2))


def derivation_steps() -> list[tuple[str, sp.Expr]]:
    """The derivation for X ~ N(0, 1) as (description, sympy object) pairs, for LaTeX display."""
    p = density()
    mean_int = sp.Integral(x * p, (x, 0, sp.oo)) + sp.Integral(a * x * p, (x, -sp.oo, 0))
    second_int = sp.Integral(x ** 2 * p, (x, 0, sp.oo)) + sp.Integral(a ** 2 * x ** 2 * p, (x, -sp.oo, 0))
    m = lrelu_moments()
    return [
        ("density of X", p),
        ("E[Y] split at 0", sp.Eq(sp.Symbol("E[Y]"), mean_int)),
        ("E[Y]", sp.Eq(sp.Symbol("E[Y]"), m.mean)),
        ("E[Y^2] split at 0", sp.Eq(sp.Symbol(r"E[Y^{2}]"), second_int)),
        ("E[Y^2]", sp.Eq(sp.Symbol(r"E[Y^{2}]"), m.second)),
        ("Var[Y] = E[Y^2] - E[Y]^2", sp.Eq(sp.Symbol("Var[Y]"), m.var)),
        ("d Var / da", sp.Eq(sp.Symbol("dVar/da"), sp.simplify(sp.diff(m.var, a)))),
    ]


def closed_form(slope: float) -> dict[str, float]:
    """The paper's closed forms for X ~ N(0, 1), written out by hand (an independent reference)."""
    return {"mean": (1 - slope) / math.sqrt(2 * math.pi), "second": (1 + slope ** 2) / 2,
            "var": (1 + slope ** 2) / 2 - (1 - slope) ** 2 / (2 * math.pi)}


def moments(slope, mu: float = 0.0, sigma: float = 1.0) -> dict[str, float]:
    """Numeric mean, second moment, variance and std of LReLU_slope(X), X ~ N(mu, sigma²),
    from the sympy derivation: the general one (in the symbols mu and sigma, derived once) with the
    numbers substituted, which takes milliseconds where integrating anew for each mu and sigma took
    about 20 s for mu = 0.5, sigma = 2."""
    if not sigma > 0:
        raise ValueError(f"sigma must be a positive number (the std of X), got {sigma!r}")
    m = lrelu_moments(mu_sym, sigma_sym)
    rest = {a: sp.nsimplify(slope), sigma_sym: sp.nsimplify(sigma)}
    values = {}
    for k in ("mean", "second", "var"):
        expr = getattr(m, k).subs(rest)
        v = expr.subs(mu_sym, sp.nsimplify(mu))
        if not v.is_finite:  # the simplified second moment divides by mu: at mu = 0, its limit
            v = sp.limit(expr, mu_sym, sp.nsimplify(mu))
        values[k] = float(v.evalf(30))
    values["std"] = math.sqrt(values["var"])
    return values


def monte_carlo(slope: float, n: int = 1_000_000, mu: float = 0.0, sigma: float = 1.0,
                seed: int = 0) -> dict[str, tuple[float, float]]:
    """Seeded Monte Carlo estimates ``(value, standard error)`` of the same moments."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, generator=g, dtype=torch.float64) * sigma + mu
    Y = torch.nn.functional.leaky_relu(X, slope)
    Y2 = Y ** 2
    var = Y.var().item()
    # standard error of the sample variance: sqrt((mu4 - var²)/n)
    mu4 = ((Y - Y.mean()) ** 4).mean().item()
    return {"mean": (Y.mean().item(), Y.std().item() / math.sqrt(n)),
            "second": (Y2.mean().item(), Y2.std().item() / math.sqrt(n)),
            "var": (var, math.sqrt(max(mu4 - var ** 2, 0.0) / n))}


def lrelu_density(y: torch.Tensor, slope: float) -> torch.Tensor:
    """Density of Y = LReLU_slope(X), X ~ N(0, 1): φ(y) for y > 0, φ(y/a)/a for y < 0."""
    phi = lambda t: torch.exp(-t ** 2 / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    if slope == 0:
        return torch.where(y > 0, phi(y), torch.zeros_like(y))  # plus a point mass 1/2 at 0
    return torch.where(y > 0, phi(y), phi(y / slope) / slope)
