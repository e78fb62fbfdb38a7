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


def test_an_error_in_a_callback_is_one_line_in_the_widget_not_a_traceback(monkeypatch):
    from torch import nn

    from proxylab import toys
    from proxylab.widgets import AMExplorer

    no_rectifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(1000))
    explorer = AMExplorer(no_rectifier, classes=["pelican"], steps=2, size=32)
    explorer.button.click()
    assert explorer.status.value.startswith('<span style="color:#b00020">error: Sequential has no rectifier')
    e = toy_explorer("race", steps=20)

    def broken(*a, **kw):
        raise ValueError("a <broken> run")

    monkeypatch.setattr(toys, "run_toy", broken)
    e.sliders["backward"].value = 0.5
    assert "error: a &lt;broken&gt; run" in e.summary.value  # escaped, one line
    with pytest.raises(ValueError):  # the method itself still raises for code that calls it
        e.update()


def in_own_loop(coroutine_function):
    """Run ``coroutine_function()`` to its end on a new event loop in its own thread (this thread may
    hold another library's loop, e.g. the browser tests' playwright); re-raise what it raised."""
    import asyncio
    import threading

    failure = []

    def target():
        try:
            asyncio.run(coroutine_function())
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            failure.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def test_a_burst_of_slider_moves_in_a_kernel_reruns_once_with_the_last_value(monkeypatch):
    """In a kernel (its asyncio loop), four quick moves make one rerun, at the final value; a move
    after the rerun makes one more."""
    import asyncio

    from proxylab import widgets

    monkeypatch.setattr(widgets, "kernel_loop", asyncio.get_running_loop)  # as in a kernel: its loop
    e = toy_explorer("local_maxima", a=0.1, b=0.5, backward=0.6, steps=30)
    first = e.results

    async def move_quickly():
        for value in (0.55, 0.5, 0.45, 0.4):  # as the browser sends them: ipywidgets' set_state
            e.sliders["backward"].set_state({"value": value})
            await asyncio.sleep(0.02)  # faster than the rerun's delay: still one burst
        assert e.results is first and e.rerun.runs == 0  # nothing ran yet: no stale rerun is queued
        await asyncio.sleep(e.rerun.delay * 3)
        assert e.rerun.runs == 1 and list(e.results) == ["Leaky ReLU 0.1", "ProxyGrad 0.4 (fwd 0.1)"]
        e.sliders["backward"].set_state({"value": 0.35})
        await asyncio.sleep(e.rerun.delay * 3)
        assert e.rerun.runs == 2 and "ProxyGrad 0.35 (fwd 0.1)" in e.results
        e.sliders["backward"].value = 0.3  # set by code in a cell: runs at once, the next line sees it
        assert e.rerun.runs == 3 and "ProxyGrad 0.3 (fwd 0.1)" in e.results

    in_own_loop(move_quickly)
    alone = toy_explorer("local_maxima", a=0.1, b=0.5, backward=0.3, steps=30).results
    assert e.results["ProxyGrad 0.3 (fwd 0.1)"].fraction == alone["ProxyGrad 0.3 (fwd 0.1)"].fraction


def test_outside_a_kernel_a_move_reruns_at_once_even_under_another_event_loop():
    import asyncio

    from proxylab.widgets import kernel_loop

    e = toy_explorer("race", a=0.0, backward=0.5, steps=20)
    e.sliders["backward"].value = 0.4
    assert e.rerun.runs == 1 and e.rerun.pending is None and "ProxyGrad 0.4" in e.results

    async def inside_a_loop():  # a browser driver's loop in the same process is not a kernel's
        assert kernel_loop() is None
        e.sliders["backward"].value = 0.3
        assert e.rerun.runs == 2 and "ProxyGrad 0.3" in e.results

    in_own_loop(inside_a_loop)
