"""Each backward rule against its definition on small tensors."""
import math

import pytest
import torch
from torch import nn

from proxylab import parse_activation, swap_activations, swapped
from proxylab.rules import BackwardRule


def run(module, x, grad):
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(grad)
    return y.detach(), x.grad


X = torch.tensor([[-2.0, -0.5, 0.5, 3.0], [1.0, -1.0, 2.0, -3.0]])
G = torch.tensor([[1.0, -1.0, -2.0, 0.5], [-1.0, 2.0, 3.0, -0.5]])


@pytest.mark.parametrize("rule", ["guided", "deconvnet", "redirected", "noisy"])
def test_forward_is_relu_or_relu6(rule):
    for max_value, ref in [(None, torch.relu), (6.0, nn.functional.relu6)]:
        x = torch.randn(3, 5) * 5
        y, _ = run(BackwardRule(rule, 0.5, max_value), x, torch.ones_like(x))
        assert torch.equal(y, ref(x))


def test_guided():
    _, g = run(BackwardRule("guided"), X, G)
    assert torch.equal(g, G * (X > 0) * (G > 0))


def test_deconvnet():
    _, g = run(BackwardRule("deconvnet"), X, G)
    assert torch.equal(g, G.clamp(min=0))


def test_redirected_uses_relu_gradient_unless_it_is_all_zero():
    dead = torch.tensor([[-2.0, -0.5, -0.1, -3.0]])
    x = torch.cat([X[:1], dead])
    grad = torch.cat([G[:1], torch.tensor([[1.0, -1.0, 2.0, -0.5]])])
    _, g = run(BackwardRule("redirected"), x, grad)
    assert torch.equal(g[0], grad[0] * (x[0] > 0))  # some gradient got through: plain ReLU
    # all dead: pass grad, except where it would push a negative input lower (grad < 0)
    assert torch.equal(g[1], torch.tensor([1.0, 0.0, 2.0, 0.0]))


def test_noisy_random_slope_has_the_documented_mean_and_is_seeded():
    x = -torch.ones(200_000)
    _, g = run(BackwardRule("noisy", 0.3, seed=1), x, torch.ones_like(x))
    assert g.mean().item() == pytest.approx(0.3 * math.sqrt(2 / math.pi), rel=0.01)
    assert (g >= 0).all()
    _, g2 = run(BackwardRule("noisy", 0.3, seed=1), x, torch.ones_like(x))
    assert torch.equal(g, g2)
    _, gp = run(BackwardRule("noisy", 0.3), torch.ones(5), torch.full((5,), 2.0))
    assert torch.equal(gp, torch.full((5,), 2.0))


def test_relu6_clamp_zeroes_gradient_above_six():
    x = torch.tensor([7.0, 3.0, -1.0])
    _, g = run(BackwardRule("deconvnet", max_value=6.0), x, torch.tensor([1.0, 1.0, 1.0]))
    assert g.tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("spec, text", [("guided", "guided"), ("deconvnet", "deconvnet"),
                                        ("redirected", "redirected"), ("noisy:0.2", "noisy:0.2")])
def test_specs_and_swapping(spec, text):
    s = parse_activation(spec)
    assert str(s) == text and s.same_forward
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU6())
    x = torch.randn(4, 3)
    ref = model(x)
    with swapped(model, spec):
        assert all(isinstance(m, BackwardRule) for m in (model[1], model[3]))
        assert model[3].max_value == 6.0
        assert torch.equal(model(x), ref)
    assert isinstance(model[1], nn.ReLU) and isinstance(model[3], nn.ReLU6)
    assert swap_activations(model, spec) == 2 and swap_activations(model, "relu") == 2
    assert isinstance(model[3], nn.ReLU6)


@pytest.mark.parametrize("bad", ["guided:1", "noisy", "noisy:-1", "redirected:0.1"])
def test_bad_rule_specs(bad):
    with pytest.raises(ValueError, match="accepted specs"):
        parse_activation(bad)
