"""Each backward rule against its definition on small tensors."""
import math

import pytest
import torch
from torch import nn

from proxylab import parse_activation, swap, swap_activations, swapped
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
        assert swap.set_state(nn.Sequential(module), step) == 1
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


@pytest.mark.parametrize("rule", ["guided", "deconvnet", "redirected", "noisy"])
@pytest.mark.parametrize("max_value", [None, 6.0])
def test_an_inplace_rule_overwrites_its_input_and_keeps_the_gradient(rule, max_value):
    """inplace=True writes the forward into x (as nn.ReLU(inplace=True) does) and still tells x < 0
    from x = 0 and x > 6 from x = 6 in the backward; without inplace x is left alone."""
    x0 = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 6.0, 7.0], [-1.0, -3.0, -0.2, -4.0, -0.1, -5.0]])
    grad = torch.tensor([[1.0, -1.0, 2.0, 0.5, 1.0, 1.0], [1.0, -1.0, 2.0, -0.5, 1.0, 0.5]])
    ref = nn.functional.relu6 if max_value else torch.relu
    grads = {}
    for inplace in (False, True):
        w = torch.ones(6, requires_grad=True)
        h = x0 * w  # a non-leaf, as inside a network
        y = BackwardRule(rule, 0.5, max_value, inplace=inplace, seed=3)(h)
        assert torch.equal(y, ref(x0))
        assert (y.data_ptr() == h.data_ptr()) == inplace
        if not inplace:
            assert torch.equal(h, x0)
        y.backward(grad)
        grads[inplace] = w.grad
    assert torch.equal(grads[False], grads[True])


def test_unknown_rule_and_reprs():
    with pytest.raises(ValueError, match="unknown backward rule 'guide'; choose one of guided, deconvnet"):
        BackwardRule("guide")
    assert [BackwardRule(*a, **k).extra_repr() for a, k in [
        (("guided",), {}), (("noisy", 0.25), {}), (("redirected",), dict(max_value=6.0)),
        (("deconvnet",), dict(inplace=True)), (("noisy", 1.0, 6.0, True), {})]] == [
        "guided", "noisy, scale=0.25", "redirected, max_value=6", "deconvnet, inplace=True",
        "noisy, scale=1, max_value=6, inplace=True"]


def test_noise_streams_are_stable_across_runs_and_machines():
    """The noisy rule's streams come from crc32 of the names and seeds: fixed numbers, so that a
    shipped noisy result is reproducible anywhere (a change here changes every noisy image)."""
    from proxylab import rules

    assert rules.module_seed("features.1") == 7481142686740776106
    assert rules._mix(1, 2, 3) == 780964335055794811
    assert rules._mix(3, 2, 1) != rules._mix(1, 2, 3)
    m = BackwardRule("noisy", 1.0, seed=rules.module_seed("features.1"))
    xi = m.noise(torch.zeros(2, 3), step=4, call=1, image_seeds=[10, 11])
    for i, s in enumerate([10, 11]):  # per image: its own generator from (module, image seed, step, call)
        g = torch.Generator().manual_seed(rules._mix(m.seed, s, 4, 1))
        assert torch.equal(xi[i], torch.randn(3, generator=g).abs())
    g = torch.Generator().manual_seed(rules._mix(m.seed, 11, 0, 1))  # no step (outside the loop) is step 0
    assert torch.equal(m.noise(torch.zeros(2, 3), None, 1, [10, 11])[1], torch.randn(3, generator=g).abs())
    # outside AM (no seeds), or seeds for another batch size: the module's own stream
    own = torch.Generator().manual_seed(m.seed)
    assert torch.equal(m.noise(torch.zeros(2, 3), 4, 1, None), torch.randn(2, 3, generator=own).abs())
    assert torch.equal(m.noise(torch.zeros(2, 3), 4, 1, [10]), torch.randn(2, 3, generator=own).abs())


def test_set_state_tells_every_rule_module_and_resets_its_call_count():
    from proxylab import rules

    a, b = BackwardRule("noisy", 0.5), BackwardRule("guided")
    model = nn.Sequential(nn.Linear(2, 2), a, nn.Linear(2, 2), b, nn.ReLU())
    a.calls = b.calls = 5
    assert swap.set_state(model, 7, torch.tensor([3, 4])) == 2
    for m in (a, b):
        assert (m.step, m.calls, m.image_seeds) == (7, 0, [3, 4]) and all(type(s) is int for s in m.image_seeds)
    assert swap.set_state(model, None) == 2 and a.image_seeds is None and a.step is None
    x = -torch.ones(2, 2)
    a(x), a(x)
    assert a.calls == 2  # counted per forward call since the last set_state


def test_redirected_decides_at_the_boundaries_like_lucid():
    """Dead means x < 0 (ReLU) or x < 0 or x > 6 (ReLU6): x = 0 and x = 6 are alive. An image is
    redirected only when nothing gets through; then a dead unit passes any grad except one pushing
    x < 0 lower or x > 6 higher, however small."""
    def g(x, grad, max_value=None):
        return run(BackwardRule("redirected", max_value=max_value), torch.tensor([x]), torch.tensor([grad]))[1][0].tolist()

    assert g([0.0, -1.0], [2.0, 3.0]) == [2.0, 0.0]  # x = 0 lets 2 through: no redirection
    assert g([0.0, 7.0], [2.0, -1.0], 6.0) == [2.0, 0.0]
    assert g([0.5, 7.0], [2.0, -1.0], 6.0) == [2.0, 0.0]
    assert g([6.0, -1.0], [2.0, 1.0], 6.0) == [2.0, 0.0]  # x = 6 is alive for ReLU6 too
    assert g([-1.0, -2.0], [0.5, -0.5]) == [0.5, 0.0]  # all dead: 0.5 passes, -0.5 would push -2 lower
    assert g([7.0, -1.0], [0.5, 1.0], 6.0) == [0.0, 1.0]  # 0.5 would push 7 higher
    assert g([0.0, -1.0], [0.0, 1.0]) == [0.0, 1.0]  # the live unit's gradient is 0: nothing through


def test_redirected_on_a_single_image_without_batch_dimension():
    from proxylab.rules import redirected_grad

    x = torch.tensor([-1.0, -2.0, 0.5])
    assert redirected_grad(x, torch.tensor([1.0, -1.0, 0.0])).tolist() == [1.0, 0.0, 0.0]  # redirected
    assert redirected_grad(x, torch.tensor([1.0, -1.0, 2.0])).tolist() == [0.0, 0.0, 2.0]  # plain
    assert redirected_grad(x, torch.tensor([1.0, -1.0, 0.0]), step=17).tolist() == [0.0, 0.0, 0.0]


def test_guided_and_the_relu6_clamp_at_their_kinks():
    """Guided passes grad only where x > 0 (x = 0 is off, as ReLU's own gradient there); ReLU6's
    clamp stops the gradient from x = 6 on, as torch's relu6 does."""
    x, grad = torch.tensor([0.0, 0.5, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    assert run(BackwardRule("guided"), x, grad)[1].tolist() == [0.0, 1.0, 0.0]
    x = torch.tensor([6.0, 5.5, 7.0])
    _, ref = run(nn.ReLU6(), x, torch.ones(3))
    for rule in ("guided", "deconvnet", "noisy"):
        assert run(BackwardRule(rule, 0.5, max_value=6.0), x, torch.ones(3))[1].tolist() == ref.tolist() == [0, 1, 0]


def test_noisy_treats_zero_as_negative_and_follows_the_am_step():
    """At x = 0 the noisy slope applies (ReLU's gradient there is 0, the proxy's the random slope);
    inside AM the draw is the one for the step set_state gave, per image."""
    from proxylab import rules

    _, at_zero = run(BackwardRule("noisy", 0.3, seed=2), torch.zeros(50), torch.ones(50))
    _, negative = run(BackwardRule("noisy", 0.3, seed=2), -torch.ones(50), torch.ones(50))
    assert torch.equal(at_zero, negative) and (at_zero != 1).all()
    m = BackwardRule("noisy", 0.3, seed=5)
    swap.set_state(nn.Sequential(m), 4, [8, 9])
    _, grad = run(m, -torch.ones(2, 6), torch.ones(2, 6))
    assert torch.allclose(grad, 0.3 * m.noise(torch.ones(2, 6), 4, 0, [8, 9]))
    assert not torch.allclose(grad, 0.3 * m.noise(torch.ones(2, 6), 0, 0, [8, 9]))


def test_noise_has_the_gradients_dtype_and_device():
    from proxylab import rules

    m = BackwardRule("noisy", 1.0, seed=rules.module_seed("a"))
    like = torch.zeros(2, 3, dtype=torch.float64)
    g = torch.Generator().manual_seed(m.seed)
    assert torch.equal(m.noise(like, 0, 0, None), torch.randn(2, 3, generator=g, dtype=torch.float64).abs())
    per_image = m.noise(like, 3, 1, [5, 6])
    g = torch.Generator().manual_seed(rules._mix(m.seed, 6, 3, 1))
    assert per_image.dtype == torch.float64 and torch.equal(per_image[1], torch.randn(3, generator=g, dtype=torch.float64).abs())
    for seeds in (None, [5, 6]):  # drawn on the CPU generator, handed over on the gradient's device
        assert m.noise(torch.empty(2, 3, device="meta"), 0, 0, seeds).device.type == "meta"
