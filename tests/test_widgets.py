"""Slider callbacks, tested by setting .value as a person moving a slider would."""
import matplotlib
import pytest

matplotlib.use("Agg")

from proxylab.widgets import PROBLEMS, toy_explorer  # noqa: E402


def test_moving_the_backward_slope_reruns_and_changes_the_result():
    e = toy_explorer("local_maxima", a=0.1, b=0.5, backward=0.3, steps=200)
    before = e.results["ProxyGrad 0.3 (fwd 0.1)"].fraction
    summary, figure = e.summary.value, e.figure
    curve = figure.axes[-1].lines[1].get_ydata()
    e.sliders["backward"].value = 1.0
    after = e.results["ProxyGrad 1 (fwd 0.1)"].fraction
    assert before < 0.9 and after >= 0.99
    assert e.summary.value != summary
    assert e.figure is not figure
    assert (e.figure.axes[-1].lines[1].get_ydata() != curve).any()  # the ProxyGrad curve moved


def test_moving_b_changes_the_original_networks_result():
    e = toy_explorer("local_maxima", a=0.1, b=0.3, backward=1.0, steps=200)
    before = e.results["Leaky ReLU 0.1"].fraction
    e.sliders["b"].value = 0.7
    assert e.results["Leaky ReLU 0.1"].fraction != before


def test_forward_slope_zero_compares_relu_with_proxygrad():
    e = toy_explorer("race", a=0.0, backward=0.5, steps=50)
    assert list(e.results) == ["ReLU", "ProxyGrad 0.5"]
    e.sliders["a"].value = 0.05
    assert list(e.results) == ["Leaky ReLU 0.05", "ProxyGrad 0.5 (fwd 0.05)"]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_each_problem_has_its_sliders(problem):
    e = toy_explorer(problem, steps=20)
    assert "backward" in e.sliders and "steps" in e.sliders
    assert ("b" in e.sliders) == (problem in ("local_maxima", "conv"))


def test_unknown_problem():
    with pytest.raises(ValueError, match="unknown toy problem"):
        toy_explorer("nope")
