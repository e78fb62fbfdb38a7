"""Leaky ReLU on a Gaussian: sympy against the hand-written closed form and Monte Carlo."""
import math

import pytest
import sympy as sp

from proxylab import gaussian

SLOPES = [0.0, 0.01, 0.1, 0.2, 0.5, 1.0, 2.0]


@pytest.mark.parametrize("slope", SLOPES)
def test_sympy_derivation_equals_closed_form(slope):
    m = gaussian.lrelu_moments()
    ref = gaussian.closed_form(slope)
    for key in ("mean", "second", "var"):
        exact = sp.nsimplify(getattr(m, key).subs(gaussian.a, sp.Rational(str(slope))))
        assert abs(float(exact) - ref[key]) < 1e-12


def test_symbolic_forms_are_exactly_the_papers():
    m = gaussian.lrelu_moments()
    a = gaussian.a
    assert sp.simplify(m.mean - (1 - a) / sp.sqrt(2 * sp.pi)) == 0
    assert sp.simplify(m.second - (1 + a ** 2) / 2) == 0
    assert sp.simplify(m.var - ((1 + a ** 2) / 2 - (1 - a) ** 2 / (2 * sp.pi))) == 0


def test_variance_increases_on_0_1():
    values = [gaussian.closed_form(s / 10)["var"] for s in range(11)]
    assert all(b > a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("slope, mu, sigma", [(0.1, 0.0, 1.0), (0.3, 0.0, 1.0), (0.2, 0.5, 2.0), (0.05, -1.0, 0.5)])
def test_monte_carlo_within_4_standard_errors(slope, mu, sigma):
    exact = gaussian.moments(slope, mu, sigma)
    mc = gaussian.monte_carlo(slope, n=400_000, mu=mu, sigma=sigma, seed=1)
    for key in ("mean", "second", "var"):
        value, se = mc[key]
        assert abs(value - exact[key]) < 4 * se, (key, value, exact[key], se)


def test_general_gaussian_reduces_to_standard_and_scales():
    for slope in (0.0, 0.3):
        assert gaussian.moments(slope, 0.0, 1.0)["var"] == pytest.approx(gaussian.closed_form(slope)["var"], abs=1e-12)
        # LReLU is positively homogeneous: sigma scales the mean linearly, the variance quadratically
        assert gaussian.moments(slope, 0.0, 3.0)["mean"] == pytest.approx(3 * gaussian.closed_form(slope)["mean"], abs=1e-12)
        assert gaussian.moments(slope, 0.0, 3.0)["var"] == pytest.approx(9 * gaussian.closed_form(slope)["var"], abs=1e-12)


def test_density_integrates_to_one_minus_point_mass():
    import torch
    y = torch.linspace(-60, 60, 1_200_001, dtype=torch.float64)
    for slope, mass in [(0.1, 1.0), (0.5, 1.0), (0.0, 0.5)]:
        total = torch.trapezoid(gaussian.lrelu_density(y, slope), y).item()
        assert total == pytest.approx(mass, abs=1e-3)  # trapezoid across the jump at 0


def test_derivation_steps_render_latex():
    steps = gaussian.derivation_steps()
    assert len(steps) >= 6
    for _, expr in steps:
        text = sp.latex(expr)
        assert text.count("{") == text.count("}") and "^{2]" not in text  # balanced: renders as math
    assert any(sp.latex(expr).startswith("E[Y^{2}]") for _, expr in steps)
    assert math.isclose(float(gaussian.closed_form(0)["mean"]), 1 / math.sqrt(2 * math.pi))


def test_derivation_steps_are_the_derivation_they_name():
    """Each displayed step is the equation its description names: the split integrals (left
    unevaluated, the form the notebook shows) are E[Y] and E[Y²] over the two half-lines, the closed
    forms agree with the paper's at a few slopes, and the last step is d Var/da."""
    a, x = gaussian.a, gaussian.x
    steps = gaussian.derivation_steps()
    assert [d for d, _ in steps] == ["density of X", "E[Y] split at 0", "E[Y]", "E[Y^2] split at 0", "E[Y^2]",
                                     "Var[Y] = E[Y^2] - E[Y]^2", "d Var / da"]
    by = dict(steps)
    p = sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)
    assert sp.simplify(by["density of X"] - p) == 0
    lhs = {"E[Y] split at 0": "E[Y]", "E[Y]": "E[Y]", "E[Y^2] split at 0": "E[Y^{2}]", "E[Y^2]": "E[Y^{2}]",
           "Var[Y] = E[Y^2] - E[Y]^2": "Var[Y]", "d Var / da": "dVar/da"}
    for description, name in lhs.items():
        assert by[description].lhs == sp.Symbol(name), description
    # Y = X for x > 0 and Y = aX for x < 0
    assert by["E[Y] split at 0"].rhs == sp.Integral(x * p, (x, 0, sp.oo)) + sp.Integral(a * x * p, (x, -sp.oo, 0))
    assert by["E[Y^2] split at 0"].rhs == (sp.Integral(x ** 2 * p, (x, 0, sp.oo))
                                           + sp.Integral(a ** 2 * x ** 2 * p, (x, -sp.oo, 0)))
    for slope in (0.0, 0.3, 2.0):
        ref = gaussian.closed_form(slope)
        for description, key in [("E[Y]", "mean"), ("E[Y^2]", "second"), ("Var[Y] = E[Y^2] - E[Y]^2", "var")]:
            assert float(by[description].rhs.subs(a, slope)) == pytest.approx(ref[key], abs=1e-12), (description, slope)
        dvar = 2 * slope / 2 + 2 * (1 - slope) / (2 * math.pi)  # d/da of (1 + a²)/2 − (1 − a)²/(2π)
        assert float(by["d Var / da"].rhs.subs(a, slope)) == pytest.approx(dvar, abs=1e-12)


def test_monte_carlo_is_seeded_and_its_defaults_are_the_standard_gaussian():
    a, b = gaussian.monte_carlo(0.2, n=2_000, seed=3), gaussian.monte_carlo(0.2, n=2_000, seed=3)
    assert a == b and a != gaussian.monte_carlo(0.2, n=2_000, seed=4)
    assert gaussian.monte_carlo(0.2, n=2_000) == gaussian.monte_carlo(0.2, n=2_000, seed=0)
    mc, exact = gaussian.monte_carlo(0.2), gaussian.closed_form(0.2)  # X ~ N(0, 1), a million draws
    for key in ("mean", "second", "var"):
        value, se = mc[key]
        assert abs(value - exact[key]) < 4 * se and se < 2e-3, key


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_moments_refuse_a_std_that_is_not_positive(sigma):
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        gaussian.moments(0.1, 0.0, sigma)


def test_density_is_the_normal_density_of_its_mean_and_std():
    """density(mu, sigma) is N(mu, sigma²)'s, checked against torch's Normal at points on both sides
    of the mean (moments() reaches it only through a cache, so this is its own check)."""
    import torch
    for mu, sigma in [(0.5, 2.0), (-1.0, 0.5), (0.0, 1.0)]:
        p = gaussian.density(mu, sigma)
        ref = torch.distributions.Normal(mu, sigma)
        for point in (-2.0, -0.3, 0.0, 0.7, 3.0):
            expected = ref.log_prob(torch.tensor(point, dtype=torch.float64)).exp().item()
            assert float(p.subs(gaussian.x, point)) == pytest.approx(expected, rel=1e-8), (mu, sigma, point)


def test_moments_default_to_the_standard_gaussian_and_give_the_std():
    for slope in (0.0, 0.1, 0.5):
        got, ref = gaussian.moments(slope), gaussian.closed_form(slope)
        for key in ("mean", "second", "var"):
            assert got[key] == pytest.approx(ref[key], abs=1e-12), (slope, key)
    # slope 1 is the identity: Y = X, so its std is sigma whatever mu
    assert gaussian.moments(1.0, 0.3, 2.0)["std"] == pytest.approx(2.0, abs=1e-12)
    assert gaussian.moments(0.2)["std"] == pytest.approx(math.sqrt(gaussian.closed_form(0.2)["var"]), abs=1e-12)


@pytest.mark.parametrize("sigma", [0.3, 3.0])
def test_monte_carlo_standard_error_of_the_variance_is_its_spread_over_seeds(sigma):
    """The standard error given for the variance is the standard deviation of the variance estimate
    over independent seeds (within 10 %; 300 seeds estimate that spread to about 4 %)."""
    import torch
    runs = [gaussian.monte_carlo(0.2, n=2_000, sigma=sigma, seed=seed)["var"] for seed in range(300)]
    spread = torch.tensor([v for v, _ in runs], dtype=torch.float64).std().item()
    claimed = sum(se for _, se in runs) / len(runs)
    assert claimed == pytest.approx(spread, rel=0.1)


def test_monte_carlo_is_precise_for_a_narrow_gaussian_far_from_zero():
    """X ~ N(1e5, 1e-6) is positive, so Y = X and Var[Y] = 1e-6: the draws keep their digits
    (in single precision, 1e5 + 1e-3 z rounds to steps of 0.008 and the variance comes out 16 times too small)."""
    value, se = gaussian.monte_carlo(0.1, n=2_000, mu=1e5, sigma=1e-3)["var"]
    assert abs(value - 1e-6) < 4 * se
