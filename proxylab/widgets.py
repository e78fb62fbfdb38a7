"""Slope sliders for the notebooks. The logic is plain Python (tested by setting ``.value``);
ipywidgets only draws it."""
from __future__ import annotations

import asyncio
import base64
import html
import io

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython import get_ipython
from IPython.display import display
from torch import nn

from . import am, models, toys
from .models import PAPER_CLASSES
from .plotting import curves, lrelu_density_figure, to_display, toy_runs_figure
from .proxygrad import ActivationSpec, check_slope

# Which sliders each toy problem uses, and which two specs it compares.
PROBLEMS = {
    "sparse": ("(a) sparse gradients: f = Σ ReLU(x)", ("backward",)),
    "race": ("(b) race of patterns: f = Σ LReLU_a(x)", ("a", "backward")),
    "local_maxima": ("(c) local maxima: g = Σ LReLU_a(x) + b·LReLU_a(−x)", ("a", "b", "backward")),
    "conv": ("(d) convolution: g applied to a plus-shaped blur of x", ("a", "b", "backward")),
}


def safely(action, status: W.HTML):
    """Run a widget callback; an error becomes one red line in ``status`` instead of a traceback
    in the notebook's output area (the widget stays usable). Calling the method itself raises."""
    try:
        return action()
    except Exception as err:  # noqa: BLE001 - whatever went wrong, the learner sees one line
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        status.value = f'<span style="color:#b00020">error: {html.escape(text)}</span>'
        return None


def kernel_loop():
    """The (asyncio) event loop of the Jupyter kernel this code runs in, or None outside a kernel
    (another library's loop, such as a browser driver's in a test process, does not count)."""
    if getattr(get_ipython(), "kernel", None) is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Rerun:
    """A widget callback that a burst of changes from the browser runs once, with the final values.

    A change that the browser sends to a kernel (JupyterLab, Voilà: :func:`kernel_loop`; ipywidgets
    applies it under the widget's property lock) schedules ``action`` ``delay`` seconds later and
    cancels the one still pending, so several quick key presses on a slider make one rerun at the last
    value instead of a queue of stale ones; changes that arrive while a rerun computes are queued by the
    kernel and coalesce into one more. A change made by code (``slider.value = 0.3`` in a cell or a
    test) runs ``action`` at once, so the next line sees its result. Errors become one line in
    ``status`` (:func:`safely`).
    """

    def __init__(self, action, status: W.HTML, delay: float = 0.15):
        self.action, self.status, self.delay = action, status, delay
        self.pending: asyncio.TimerHandle | None = None
        self.runs = 0  # how many times action ran: what the coalescing saves is countable

    def __call__(self, change=None) -> None:
        if self.pending is not None:  # superseded by this change
            self.pending.cancel()
            self.pending = None
        from_browser = bool(getattr(getattr(change, "owner", None), "_property_lock", None))
        loop = kernel_loop() if from_browser else None
        if loop is None:
            self.fire()
        else:
            self.pending = loop.call_later(self.delay, self.fire)

    def fire(self) -> None:
        self.pending = None
        self.runs += 1
        safely(self.action, self.status)


def show_figure(output: W.Output, fig):
    """Replace what ``output`` shows by ``fig`` as a PNG (then closed, so it is not drawn twice);
    returns fig. The PNG is set on the widget's model directly rather than captured with
    ``with output:``, which routes by the message being answered and so misses when the draw runs
    later than the change that asked for it (a coalesced :class:`Rerun`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    output.outputs = ({"output_type": "display_data", "metadata": {},
                       "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                                "text/plain": repr(fig)}},)
    return fig


class ToyExplorer:
    """Sliders for the slopes of one toy problem; every change re-runs AM and redraws.

    It compares the original network (ReLU or Leaky ReLU with slope a) with ProxyGrad (same
    forward, backward slope from the slider), both from the same seeded start.

    Args:
        problem: ``"sparse"``, ``"race"``, ``"local_maxima"`` or ``"conv"``.
        a: forward (Leaky ReLU) slope; b: weight of the mirrored branch in (c)/(d);
        backward: ProxyGrad's backward slope; steps: AM steps; seed: the random start.
        three_way: also run a Leaky ReLU network whose slope (both passes) is the backward slope,
            so the original network, that Leaky ReLU network and ProxyGrad show side by side.
    """

    def __init__(self, problem: str = "local_maxima", a: float = 0.1, b: float | None = None,
                 backward: float = 0.6, steps: int = 150, seed: int = 0, three_way: bool = False):
        if problem not in PROBLEMS:
            raise ValueError(f"unknown toy problem {problem!r}; choose one of {sorted(PROBLEMS)}")
        self.problem = problem
        self.title, used = PROBLEMS[problem]
        b = (toys.CONV_B if problem == "conv" else 0.5) if b is None else b
        style = {"description_width": "initial"}
        make = dict(continuous_update=False, style=style, layout=W.Layout(width="260px"))
        all_sliders = {
            "a": W.FloatSlider(value=a, min=0.0, max=1.0, step=0.01, description="forward slope a", **make),
            "b": W.FloatSlider(value=b, min=0.05, max=0.95, step=0.05, description="b", **make),
            "backward": W.FloatSlider(value=backward, min=0.0, max=2.0, step=0.05,
                                      description="backward slope", **make),
            "steps": W.IntSlider(value=steps, min=0, max=500, step=10, description="steps", **make),
        }
        self.sliders = {k: s for k, s in all_sliders.items() if k in used or k == "steps"}
        self.seed, self.three_way = seed, three_way
        self.output = W.Output()
        self.summary = W.HTML()
        self.rerun = Rerun(self.update, self.summary)
        for slider in self.sliders.values():
            slider.observe(self.rerun, names="value")
        self.widget = W.VBox([W.HTML(f"<b>{self.title}</b>"), W.HBox(list(self.sliders.values())),
                              self.summary, self.output])
        self.results: dict[str, toys.ToyResult] = {}
        self.update()

    def value(self, name: str, default: float = 0.0) -> float:
        return self.sliders[name].value if name in self.sliders else default

    def specs(self) -> dict[str, ActivationSpec]:
        """The activation specs compared at the current slider values, by label: the original
        network (ReLU or a Leaky ReLU of slope a), ProxyGrad on it, and with ``three_way`` the Leaky ReLU
        of the backward slope."""
        a, back = check_slope(self.value("a")), check_slope(self.value("backward"))
        original, proxy = ActivationSpec.at_slope("leaky", a), ActivationSpec("proxygrad", back, a)
        specs = (original, ActivationSpec("leaky", back, back), proxy) if self.three_way else (original, proxy)
        return {spec.label: spec for spec in specs}

    def build(self, spec: ActivationSpec) -> toys.ToyProblem:
        if self.problem in ("sparse", "race"):
            return toys.sum_problem(spec)
        make = toys.local_maxima_problem if self.problem == "local_maxima" else toys.conv_problem
        return make(spec, b=self.value("b"))

    def run(self) -> dict[str, toys.ToyResult]:
        """Run AM for both specs at the current slider values."""
        steps = int(self.sliders["steps"].value)
        keep = (steps // 10, steps // 3) if steps >= 10 else ()
        return {label: toys.run_toy(self.build(spec), steps, seed=self.seed, snapshot_steps=keep)
                for label, spec in self.specs().items()}

    def update(self) -> None:
        """Re-run and redraw (called by every slider change)."""
        self.results = self.run()
        self.summary.value = " &nbsp; ".join(f"{label}: <b>{r.fraction:.3f}</b> of the optimum"
                                             for label, r in self.results.items())
        self.figure = show_figure(self.output, toy_runs_figure(self.results, title=self.title))

    def _ipython_display_(self):
        display(self.widget)


def toy_explorer(problem: str = "local_maxima", **kwargs) -> ToyExplorer:
    """One line in a notebook: ``toy_explorer("race")`` shows sliders and live plots."""
    return ToyExplorer(problem, **kwargs)


class ToyTabs:
    """One tab per toy problem, each a :class:`ToyExplorer` built the first time its tab is shown,
    so a page is usable once the first problem has run (the playground opens in a few seconds).

    Args:
        problems: the problems, in tab order (default: all of ``PROBLEMS``).
        **kwargs: passed to every :class:`ToyExplorer` (``three_way``, ``steps`` ...).
    """

    def __init__(self, problems=None, **kwargs):
        self.problems = list(problems or PROBLEMS)
        self.kwargs = kwargs
        self.explorers: dict[str, ToyExplorer] = {}
        self.tabs = W.Tab(children=[W.VBox() for _ in self.problems])
        for i, key in enumerate(self.problems):
            self.tabs.set_title(i, PROBLEMS[key][0].split(":")[0])
        self.status = W.HTML()
        self.tabs.observe(lambda change: safely(lambda: self.show(change["new"]), self.status),
                          names="selected_index")
        self.widget = W.VBox([self.tabs, self.status])
        self.show(0)

    def show(self, index: int | None) -> None:
        """Build the explorer of tab ``index`` if it is not built yet."""
        if index is None:
            return
        key = self.problems[index]
        if key not in self.explorers:
            self.explorers[key] = ToyExplorer(key, **self.kwargs)
            self.tabs.children = tuple(self.explorers[k].widget if k in self.explorers else child
                                       for k, child in zip(self.problems, self.tabs.children))

    def _ipython_display_(self):
        display(self.widget)


class GaussianExplorer:
    """A slope slider that moves the density of LReLU_a(X), X ~ N(0, 1), with mean and std."""

    def __init__(self, slope: float = 0.1):
        self.slider = W.FloatSlider(value=slope, min=0.0, max=1.0, step=0.01, description="slope a",
                                    continuous_update=False)
        self.output = W.Output()
        self.summary = W.HTML()
        self.rerun = Rerun(self.update, self.summary)
        self.slider.observe(self.rerun, names="value")
        self.widget = W.VBox([self.slider, self.summary, self.output])
        self.update()

    def update(self) -> None:
        from .gaussian import closed_form

        m = closed_form(self.slider.value)
        self.summary.value = (f"mean <b>{m['mean']:.4f}</b>, variance <b>{m['var']:.4f}</b>, "
                              f"std <b>{m['var'] ** 0.5:.4f}</b>")
        self.figure = show_figure(self.output, lrelu_density_figure(self.slider.value))

    def _ipython_display_(self):
        display(self.widget)


class AMExplorer:
    """Class, activation kind and slope pickers with a Run button: AM on a real model, showing
    the image and the original network's logit over the steps.

    Args:
        model: the network, or a function of no arguments that loads it; a loader runs at the first
            Run (a page that never runs AM never pays for the model: the playground in a classroom),
            and an error while loading is one line in the status, like any other.
        classes, steps, size, slope: the pickers' choices and starting values.
    """

    def __init__(self, model, classes=None, steps: int = 20, size: int = 128, slope: float = 0.05):
        self._model = model if isinstance(model, nn.Module) else None
        self._load = None if isinstance(model, nn.Module) else model
        self.size = size
        style = {"description_width": "initial"}
        self.cls = W.Dropdown(options=list(classes or PAPER_CLASSES), description="class", style=style)
        self.kind = W.Dropdown(options=["relu", "leaky", "proxygrad"], value="proxygrad",
                               description="activation", style=style)
        self.slope = W.FloatSlider(value=slope, min=0.0, max=1.0, step=0.01, description="slope",
                                   continuous_update=False, style=style)
        self.steps = W.IntSlider(value=steps, min=1, max=200, description="steps", continuous_update=False,
                                 style=style)
        self.button = W.Button(description="Run", button_style="primary")
        self.status = W.HTML()
        self.output = W.Output()
        self.button.on_click(lambda _: safely(self.run, self.status))
        self.widget = W.VBox([W.HBox([self.cls, self.kind, self.slope, self.steps, self.button]),
                              self.status, self.output])
        self.result = None

    def spec(self) -> ActivationSpec:
        kind = self.kind.value
        return ActivationSpec("relu") if kind == "relu" else ActivationSpec.at_slope(kind, self.slope.value)

    @property
    def model(self):
        """The network, loaded by the loader on first use."""
        if self._model is None:
            self.status.value = "loading the model (first run only) ..."
            self._model = self._load()
        return self._model

    def run(self):
        """Run AM at the current settings and redraw; returns the :class:`proxylab.am.AMResult`."""
        index = models.class_index(self.cls.value)
        model = self.model
        self.status.value = f"running {self.spec()} on {self.cls.value} ..."
        self.result = am.visualize(model, [index], self.spec(), steps=self.steps.value,
                                   size=self.size, progress=False)
        logit = self.result.final[0].item()
        self.status.value = f"{self.cls.value}, {self.spec()}: original-network logit <b>{logit:.2f}</b>"
        fig, (ax_img, ax_curve) = plt.subplots(1, 2, figsize=(8, 3.4))
        ax_img.imshow(to_display(self.result.images[0]))
        ax_img.axis("off")
        ax_img.set_title(f"{self.cls.value} ({self.spec()})")
        curves({self.spec(): self.result.scores[:, 0]}, ylabel="original logit", ax=ax_curve)
        fig.tight_layout()
        self.figure = show_figure(self.output, fig)
        return self.result

    def _ipython_display_(self):
        display(self.widget)
