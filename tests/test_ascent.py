"""The normalized ascent step at any slope the spec accepts: huge gradients keep their direction,
float32 overflow falls back to float64 (and a scaled seed), and what cannot be computed stops with
one line instead of a silent zero step."""
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
