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


# --------------------------------------------------------------------------- Lucid's redirected rules
def test_redirected_relu6_as_lucid_defines_it():
    """x = [7, -1, -2], ascent gradient [-1, 1, -1]: every unit is dead for ReLU6 (above 6 or below 0),
    so the gradient is redirected: 7 may be pushed down, -1 up, but -2 not further down."""
    _, g = run(BackwardRule("redirected", max_value=6.0), torch.tensor([[7.0, -1.0, -2.0]]),
               torch.tensor([[-1.0, 1.0, -1.0]]))
    assert g.tolist() == [[-1.0, 1.0, 0.0]]
    # ... and 7 may not be pushed further up
    _, g = run(BackwardRule("redirected", max_value=6.0), torch.tensor([[7.0, -1.0]]), torch.tensor([[2.0, 3.0]]))
    assert g.tolist() == [[0.0, 3.0]]
    # one live unit (3 lies in (0, 6)): the plain ReLU6 gradient, nothing redirected
    _, g = run(BackwardRule("redirected", max_value=6.0), torch.tensor([[7.0, -1.0, 3.0]]),
               torch.tensor([[-1.0, 1.0, 0.5]]))
    assert g.tolist() == [[0.0, 0.0, 0.5]]


def test_redirected_tells_zero_from_negative_like_lucid():
    # Lucid's ReLU gradient passes at x = 0 (only x < 0 is dead): the plain gradient is used
    _, g = run(BackwardRule("redirected"), torch.tensor([[0.0, -1.0]]), torch.tensor([[2.0, -3.0]]))
    assert g.tolist() == [[2.0, 0.0]]


def test_redirected_returns_the_plain_gradient_after_16_steps():
    from proxylab import rules

    x, grad = torch.tensor([[-1.0, -2.0]]), torch.tensor([[1.0, -1.0]])
    module = BackwardRule("redirected")
    for step, expected in [(None, [1.0, 0.0]), (0, [1.0, 0.0]), (16, [1.0, 0.0]), (17, [0.0, 0.0]), (300, [0.0, 0.0])]:
        assert rules.set_state(nn.Sequential(module), step) == 1
        assert run(module, x, grad)[1].tolist() == [expected], step


def test_am_tells_the_rules_their_step():
    from proxylab import am, rules

    seen = []
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()
    model(torch.zeros(1, 3, 32, 32))
    original = rules.BackwardRule.forward

    def spy(self, x):
        seen.append(self.step)
        return original(self, x)

    rules.BackwardRule.forward = spy
    try:
        am.visualize(model, [0], "redirected", steps=20, size=32, progress=False)
    finally:
        rules.BackwardRule.forward = original
    # one forward per step (same forward: its score needs no second pass), plus the final score
    assert seen == list(range(20)) + [19]


def test_rules_refuse_a_leaky_forward_and_leave_the_model_as_it_was():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.LeakyReLU(0.1))
    for spec in ("guided", "deconvnet", "redirected", "noisy:0.1"):
        with pytest.raises(ValueError, match="Leaky ReLU of slope 0.1"):
            swap_activations(model, spec)
        assert isinstance(model[1], nn.ReLU) and isinstance(model[3], nn.LeakyReLU)


def test_noisy_streams_differ_between_modules_and_batched_equals_per_image():
    from proxylab import am

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with swapped(model, "noisy:1"):
        a, b = model[1], model[3]
        assert a.seed != b.seed
        x = -torch.ones(2, 4, 16, 16)
        assert not torch.equal(run(a, x, torch.ones_like(x))[1], run(b, x, torch.ones_like(x))[1])
    batched = am.visualize(model, [0, 2], "noisy:0.5", steps=4, size=32, seed=3, progress=False)
    for i, cls in enumerate([0, 2]):
        single = am.visualize(model, [cls], "noisy:0.5", steps=4, size=32, seed=3 + i, progress=False)
        assert torch.allclose(single.images[0], batched.images[i], atol=1e-6)
