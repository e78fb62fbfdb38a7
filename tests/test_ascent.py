"""The normalized ascent step at any slope the spec accepts: huge gradients keep their direction,
float32 overflow falls back to float64 (and a scaled seed), and what cannot be computed stops with
one line instead of a silent zero step."""
import contextlib
import math

import pytest
import torch
from torch import nn

from proxylab import am, ascent, models
from proxylab.cli import main as cli


@pytest.fixture(scope="module")
def lite():
    return models.imagenet_model("efficientnet-lite0", device="cpu")


def float64_step(model, x0, idx, spec, lr):
    """The reference: the whole gradient network in float64, the textbook normalized step."""
    model = model.double()
    try:
        with am.evaluating(model), am.gradient_network(model, spec) as (net, _):
            x = x0.double().requires_grad_(True)
            (g,) = torch.autograd.grad(net(x)[0, idx], x)
    finally:
        model.float()
    return (x0.double() + lr * math.sqrt(x0[0].numel()) * g / g.norm()).clamp(-1, 1) - x0.double()


@pytest.mark.parametrize("spec", ["proxygrad:10", "proxygrad:3", "leaky:10"])
def test_high_slopes_move_the_image_along_the_float64_direction(lite, spec):
    idx, size = models.class_index("poncho"), 96
    x0 = am.initial_images(1, size, 0)
    with am.gradient_network(lite, spec) as (net, _):  # the premise: float32 alone fails here
        x = x0.clone().requires_grad_(True)
        (g32,) = torch.autograd.grad(net(x)[0, idx], x)
    overflows = not torch.isfinite(g32).all() or not torch.isfinite(g32.norm())
    assert overflows, f"{spec}: float32 no longer overflows here; the test no longer tests the fallback"
    r = am.visualize(lite, [idx], spec, steps=1, size=size, progress=False, snapshot_steps=(1,))
    moved = (r.snapshots[1] - x0).flatten().double()
    reference = float64_step(lite, x0, idx, spec, am.DEFAULT_LR).flatten()
    assert moved.norm() > 0.9 * reference.norm() > 0
    assert nn.functional.cosine_similarity(moved, reference, dim=0) > 0.999
    assert all(p.dtype == torch.float32 for p in lite.parameters())  # the model is restored


def test_a_huge_float32_gradient_gives_a_unit_step():
    g = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 1e25
    g[1] = 0  # a dead image does not move
    assert not torch.isfinite(g.flatten(1).norm(dim=1)[0])  # the naive norm overflows
    x = torch.zeros(2, 3, 8, 8)
    step = ascent.normalized_step(x, g, lr=0.5)
    assert step[0].norm().item() == pytest.approx(0.5, rel=1e-5)
    assert nn.functional.cosine_similarity(step[0].flatten().double(), g[0].flatten().double(), dim=0) > 0.99999
    assert (step[1] == 0).all()


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_non_finite_gradient_is_never_a_zero_step(bad):
    g = torch.ones(1, 3, 4, 4)
    g[0, 0, 0, 0] = bad
    with pytest.raises(ascent.GradientOverflow, match="inf or nan"):
        ascent.normalized_step(torch.zeros(1, 3, 4, 4), g, lr=0.1)


class NegativeChain(nn.Sequential):
    """12 times (1x1 conv with weight -I, ReLU), then the per-channel mean: from an all-positive
    image every rectifier input is <= 0, so the proxy gradient of class 0 is slope^12 / (H*W) on
    channel 0 and 0 elsewhere."""

    def __init__(self):
        layers = []
        for _ in range(12):
            conv = nn.Conv2d(3, 3, 1, bias=False)
            conv.weight.data = -torch.eye(3).view(3, 3, 1, 1)
            layers += [conv, nn.ReLU()]
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_float64_with_a_scaled_seed_keeps_the_direction_past_float64s_range():
    model = NegativeChain()
    x0 = torch.full((1, 3, 32, 32), 0.5)
    r = am.visualize(model, [0], "proxygrad:1e30", steps=1, size=32, x0=x0, lr=0.001, progress=False)
    moved = r.images - x0  # (1e30)^12 / 1024 = 1e357: inf in float64, finite after the 2^-1000 seed
    expected = torch.zeros_like(x0)
    expected[:, 0] = 1
    assert moved.norm() > 0
    assert nn.functional.cosine_similarity(moved.flatten(), expected.flatten(), dim=0) > 0.9999


def test_a_gradient_out_of_every_range_stops_with_a_line_naming_slope_and_step(tmp_path):
    model = NegativeChain()
    x0 = torch.full((1, 3, 32, 32), 0.5)
    with pytest.raises(ascent.GradientOverflow, match=r"proxygrad:1e\+60.*step 1 \(of 3\).*smaller backward slope"):
        am.visualize(model, [0], "proxygrad:1e60", steps=3, size=32, x0=x0, progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_in_float64_restores_each_tensor_exactly():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model[1].running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[0].weight
    with am.in_float64(model):
        assert model[0].weight.dtype == torch.float64 and model[1].running_var.dtype == torch.float64
        assert model[1].num_batches_tracked.dtype == torch.int64
    assert model[0].weight is weight  # the same Parameter: optimizers and hooks keep working
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k])


def test_proxy_gradient_norms_grow_with_the_slope_without_overflow(lite):
    x0 = am.initial_images(1, 64, 0)
    norms = am.proxy_gradient_norms(lite, x0, [models.class_index("poncho")], [0, 0.3, 3, 10])
    assert norms.dtype == torch.float64 and torch.isfinite(norms).all()
    assert (norms[1:, 0] > norms[:-1, 0]).all()
    assert norms[3, 0] > torch.finfo(torch.float32).max  # beyond float32: why the fallback exists


def test_gradient_norm_plot_draws_the_norms_and_float32s_limits():
    import matplotlib.pyplot as plt

    from proxylab import plotting

    fig = plotting.gradient_norm_plot([0, 1, 10], torch.tensor([[2.0], [1e10], [1e40]], dtype=torch.float64))
    ax = fig.axes[0]
    (curve, relu, squares, top) = ax.lines
    assert list(curve.get_ydata()) == [1e10, 1e40] and relu.get_ydata()[0] == 2.0
    assert squares.get_ydata()[0] == pytest.approx(torch.finfo(torch.float32).max ** 0.5)
    assert top.get_ydata()[0] == pytest.approx(torch.finfo(torch.float32).max)
    plt.close(fig)


class Linear:
    """f(x) = sum(w * x) per image: its gradient is w everywhere, so each step is known exactly.
    Records the dtype of every image batch it is called with."""

    def __init__(self, w, overflow_until=0):
        self.w, self.dtypes, self.calls, self.overflow_until = w, [], 0, overflow_until

    def __call__(self, x):
        self.dtypes.append(x.dtype)
        self.calls += 1
        value = (x * self.w.to(x.dtype)).flatten(1).sum(dim=1)
        if x.dtype == torch.float32 and self.calls <= self.overflow_until:
            value = value * torch.tensor(math.inf)  # a float32 gradient of inf
        return value


def test_ascend_takes_normalized_steps_and_reports_every_score():
    w = torch.zeros(2, 1, 2, 2)
    w[0, 0, 0, 0], w[1, 0, 1, 1] = 3.0, -4.0
    x0 = torch.zeros(2, 1, 2, 2)
    f = Linear(w)
    x, scores, snaps = ascent.ascend(f, x0, steps=3, lr=0.4, snapshot_steps=(0, 2))
    expected = torch.zeros(2, 1, 2, 2)
    expected[0, 0, 0, 0], expected[1, 0, 1, 1] = 1.0, -1.0  # 0.4 per step, clipped at 1 after three
    assert torch.allclose(x, expected)
    assert torch.allclose(scores, torch.tensor([[0.0, 0.0], [1.2, 1.6], [2.4, 3.2], [3.0, 4.0]]))
    assert sorted(snaps) == [0, 2] and torch.equal(snaps[0], x0)
    assert torch.allclose(snaps[2], 0.8 * expected) and snaps[2] is not x
    x0_before = x0.clone()
    x, scores, snaps = ascent.ascend(f, x0, steps=0, lr=0.4)
    assert torch.equal(x, x0) and x is not x0 and scores.shape == (1, 2) and snaps == {}
    assert torch.equal(x0, x0_before)  # the start is never changed in place
    with pytest.raises(ValueError, match="steps must be >= 0, got -1"):
        ascent.ascend(f, x0, steps=-1, lr=0.4)


def test_ascend_scores_with_score_and_calls_the_hooks_in_order():
    w = torch.ones(1, 1, 2, 2)
    events = []

    def score(x):
        events.append("score")
        return -x.flatten(1).sum(dim=1)

    def after(x, step, grad):
        events.append(("after", step))
        assert torch.equal(grad, w)
        return x + 10  # clamped back into the box

    x, scores, _ = ascent.ascend(Linear(w), torch.zeros(1, 1, 2, 2), steps=2, lr=0.5, score=score,
                                 after_step=after, before_step=lambda i: events.append(("before", i)))
    assert events == [("before", 0), "score", ("after", 1), ("before", 1), "score", ("after", 2), "score"]
    assert torch.equal(x, torch.ones(1, 1, 2, 2))
    assert scores[:, 0].tolist() == [0.0, -4.0, -4.0]  # score of the image before each step, then of the last


def test_after_an_overflow_the_run_stays_in_float64_and_hands_a_max_scaled_gradient_on():
    w = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]]])
    f = Linear(w, overflow_until=1)
    grads = []
    entered = []

    @contextlib.contextmanager
    def precise():
        entered.append(True)
        yield

    x, scores, _ = ascent.ascend(f, torch.zeros(1, 1, 2, 2), steps=3, lr=0.1, precise=precise,
                                 after_step=lambda x, step, g: grads.append(g) or x)
    assert f.dtypes == [torch.float32] + [torch.float64] * 3 + [torch.float32]  # the final score in x's dtype
    assert len(entered) == 3  # the overflowing step, then every later one
    for g in grads:
        assert g.dtype == torch.float32 and torch.allclose(g, w / 2)  # divided by its largest entry
    assert x.dtype == torch.float32 and scores.dtype == torch.float32
    with pytest.raises(ascent.GradientOverflow, match="inf or nan"):  # no precise: the overflow is not hidden
        ascent.ascend(Linear(w, overflow_until=1), torch.zeros(1, 1, 2, 2), steps=1, lr=0.1)


def test_input_gradient_tries_float32_then_float64():
    w = torch.tensor([[[[1.0, -2.0]]]])
    x = torch.zeros(1, 1, 1, 2)
    value, grad, used = ascent.input_gradient(Linear(w), x, contextlib.nullcontext)
    assert not used and grad.dtype == torch.float32 and torch.equal(grad, w)
    value, grad, used = ascent.input_gradient(Linear(w), x, contextlib.nullcontext, force_precise=True)
    assert used and grad.dtype == torch.float64 and torch.equal(grad, w.double()) and value.dtype == torch.float32
    with pytest.raises(ascent.GradientOverflow, match="inf or nan"):  # no float64 to retry in
        ascent.input_gradient(Linear(w, overflow_until=1), x, None)
    value, grad, used = ascent.input_gradient(Linear(w, overflow_until=1), x, contextlib.nullcontext)
    assert used and torch.equal(grad, w.double())


def test_max_scaled_and_unit_direction_per_image():
    g = torch.tensor([[[[3.0, -6.0]]], [[[0.0, 0.0]]], [[[1e-30, 0.0]]]])
    assert torch.equal(ascent.max_scaled(g), torch.tensor([[[[0.5, -1.0]]], [[[0.0, 0.0]]], [[[1.0, 0.0]]]]))
    u = ascent.unit_direction(g)
    assert torch.allclose(u[0].flatten(), torch.tensor([1.0, -2.0]) / 5 ** 0.5)
    assert torch.equal(u[1], torch.zeros(1, 1, 2)) and torch.equal(u[2].flatten(), torch.tensor([1.0, 0.0]))
    tiny = torch.tensor([[[[1e-44, -1e-44]]]])  # subnormal: still a direction
    assert torch.allclose(ascent.unit_direction(tiny).flatten(), torch.tensor([1.0, -1.0]) / 2 ** 0.5)


def test_defaults_are_silent_and_name_the_run_am(capsys):
    """No progress bar unless asked (the toys and tests call ascend in loops); a failing run is
    named "AM" in its one line; the step keeps the images' dtype even for a float64 gradient."""
    w = torch.ones(1, 1, 2, 2)
    ascent.ascend(Linear(w), torch.zeros(1, 1, 2, 2), steps=2, lr=0.1)
    assert capsys.readouterr().err == ""
    with pytest.raises(ascent.GradientOverflow, match=r"^AM: the gradient holds inf or nan, so its direction is "
                                                      r"unknown at step 1 \(of 2\); choose a smaller backward slope$"):
        ascent.ascend(Linear(w, overflow_until=1), torch.zeros(1, 1, 2, 2), steps=2, lr=0.1)
    step = ascent.normalized_step(torch.zeros(1, 1, 2, 2), w.double(), lr=0.5)
    assert step.dtype == torch.float32 and torch.allclose(step, torch.full((1, 1, 2, 2), 0.25))


def test_after_step_output_is_clipped_to_the_box_from_below_too():
    x, _, _ = ascent.ascend(Linear(torch.ones(1, 1, 2, 2)), torch.zeros(1, 1, 2, 2), steps=1, lr=0.1,
                            after_step=lambda x, step, grad: x - 10)
    assert torch.equal(x, -torch.ones(1, 1, 2, 2))


def test_float64_without_a_precise_context_and_the_overflow_message():
    w = torch.tensor([[[[1.0, -2.0]]]])
    value, grad, used = ascent.input_gradient(Linear(w), torch.zeros(1, 1, 1, 2), None, force_precise=True)
    assert used and grad.dtype == torch.float64 and torch.equal(grad, w.double())
    with pytest.raises(ascent.GradientOverflow, match="^the gradient holds inf or nan, so its direction is unknown$"):
        ascent.unit_direction(torch.tensor([[1.0, math.nan]]))


def test_a_gradient_infinite_in_every_dtype_says_what_was_tried():
    w = torch.tensor([[[[1.0, -2.0]]]])
    always_inf = lambda x: (x * w.to(x.dtype)).flatten(1).sum(dim=1) * math.inf  # noqa: E731
    with pytest.raises(ascent.GradientOverflow,
                       match=r"^the gradient is not finite even in float64 with its seed scaled by 2\^-1000$"):
        ascent.input_gradient(always_inf, torch.zeros(1, 1, 1, 2), contextlib.nullcontext)
