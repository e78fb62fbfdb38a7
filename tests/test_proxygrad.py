"""The ProxyGrad operator, the activation spec and model surgery, against autograd references."""
import math

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import proxylab
from proxylab import ProxyGradReLU, parse_activation, proxy_relu, proxygrad, swap_activations


def away_from_kinks(*shape, max_value=None, seed=0):
    """float64 inputs at least 0.05 away from 0 (and from max_value), where gradcheck's finite
    differences would straddle a kink."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    x = torch.where(x.abs() < 0.05, x.abs() + 0.1, x)
    if max_value is not None:
        x = torch.where((x - max_value).abs() < 0.05, x + 0.1, x)
    return x.requires_grad_()


def reference(x, slope, max_value=None):
    """The proxy network's function: LReLU with the backward slope, clamped like the original."""
    y = F.leaky_relu(x, slope)
    return y if max_value is None else y.clamp_max(max_value)


VARIANTS = [  # (backward slope, forward slope, max_value)
    (0.0, 0.0, None), (0.1, 0.0, None), (0.3, 0.1, None), (0.2, 0.2, None),
    (5.0, 0.0, None), (0.1, 0.0, 6.0), (0.2, 0.05, 6.0), (0.0, 0.0, 6.0),
]


@pytest.mark.parametrize("b, a, m", VARIANTS)
def test_gradcheck_against_the_proxy_network(b, a, m):
    """The backward of proxy_relu is exactly the derivative of the proxy LReLU_b (gradcheck,
    float64); the forward is LReLU_a. Straight-through form: value of the proxy, gradient of ours."""
    x = away_from_kinks(4, 7, max_value=m)

    def f(t):
        ours = proxy_relu(t, b, a, m)
        return ours - ours.detach() + reference(t, b, m).detach()

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.equal(proxy_relu(x, b, a, m), reference(x, a, m))


@pytest.mark.parametrize("a, m", [(0.0, None), (0.2, None), (0.0, 6.0), (0.1, 6.0)])
def test_gradcheck_plain_when_slopes_agree(a, m):
    x = away_from_kinks(3, 5, max_value=m, seed=1)
    assert torch.autograd.gradcheck(lambda t: proxy_relu(t, a, a, m), (x,))


def grads(fn, x):
    x = x.clone().requires_grad_()
    y = fn(x)
    y.backward(torch.linspace(-1, 2, y.numel()).reshape(y.shape))
    return y.detach(), x.grad


@pytest.mark.parametrize("slope", [0.01, 0.1, 0.2, 1.0, 3.0])
def test_equal_slopes_give_exactly_leaky_relu(slope):
    x = torch.randn(1000)
    x[:10] = 0.0  # the kink: torch's LeakyReLU uses the slope at 0
    y_ref, g_ref = grads(lambda t: F.leaky_relu(t, slope), x)
    y, g = grads(lambda t: proxy_relu(t, slope, slope), x)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)


def test_zero_backward_slope_gives_exactly_relu_and_relu6():
    x = torch.randn(1000) * 4
    x[:10] = 0.0
    x[10:20] = 6.0
    for ref, m in [(torch.relu, None), (F.relu6, 6.0)]:
        y_ref, g_ref = grads(ref, x)
        y, g = grads(lambda t: proxy_relu(t, 0.0, 0.0, m), x)
        assert torch.equal(y, y_ref) and torch.equal(g, g_ref)


def test_forward_sparse_backward_dense_table2():
    x = torch.tensor([[-2.0, 1.0], [3.0, -0.5]])
    y, g = grads(lambda t: proxy_relu(t, 0.1), x)
    assert torch.equal(y, torch.relu(x))
    upstream = torch.linspace(-1, 2, 4).reshape(2, 2)
    assert torch.allclose(g, upstream * torch.tensor([[0.1, 1.0], [1.0, 0.1]]))


def test_relu6_clamp_zero_gradient_above_max():
    x = torch.tensor([-1.0, 3.0, 7.0])
    y, g = grads(lambda t: proxy_relu(t, 0.5, max_value=6.0), x)
    assert y.tolist() == [0.0, 3.0, 6.0]
    up = torch.linspace(-1, 2, 3)
    assert torch.allclose(g, up * torch.tensor([0.5, 1.0, 0.0]))


@pytest.mark.parametrize("max_value, forward_slope", [(None, 0.0), (6.0, 0.0), (None, 0.1), (1.0, 0.1)])
def test_inplace_gives_correct_gradients_and_saves_no_input_copy(max_value, forward_slope):
    x0 = torch.randn(64, 8) * 3
    w = torch.randn(8, 8, requires_grad=True)
    outs = {}
    for inplace in (False, True):
        w.grad = None
        act = ProxyGradReLU(0.2, forward_slope, max_value, inplace=inplace)
        h = x0 @ w
        y = act(h)
        if inplace:
            assert y.data_ptr() == h.data_ptr()
        y.pow(2).sum().backward()
        outs[inplace] = (y.detach().clone(), w.grad.clone())
    assert torch.equal(outs[False][0], outs[True][0])
    assert torch.equal(outs[False][1], outs[True][1])


def test_backward_saves_only_the_output():
    x = torch.randn(10, requires_grad=True)
    h = x * 2
    y = proxy_relu(h, 0.1)
    saved = [t for t in y.grad_fn.saved_tensors]
    assert len(saved) == 1 and saved[0].data_ptr() == y.data_ptr()


def test_module_repr_and_validation():
    assert repr(ProxyGradReLU(0.1)) == "ProxyGradReLU(backward_slope=0.1, forward_slope=0)"
    assert "max_value=6" in repr(ProxyGradReLU(0.1, max_value=6, inplace=True))
    assert "inplace=True" in repr(ProxyGradReLU(0.1, inplace=True))
    assert ProxyGradReLU(25.0).backward_slope == 25.0  # high slopes are allowed


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, -math.inf, "0.1", None])
def test_bad_slopes_raise_clear_value_errors(bad):
    with pytest.raises(ValueError, match=">= 0"):
        ProxyGradReLU(bad)
    with pytest.raises(ValueError, match=">= 0"):
        proxy_relu(torch.zeros(2), 0.1, forward_slope=bad)
    with pytest.raises(ValueError, match=">= 0"):
        with proxygrad(nn.Sequential(nn.ReLU()), bad):
            pass


@pytest.mark.parametrize("spec, kind, b, a", [
    ("relu", "relu", 0.0, 0.0), ("leaky:0.1", "leaky", 0.1, 0.1), ("proxygrad:0.2", "proxygrad", 0.2, 0.0),
    ("proxygrad:0.3:0.01", "proxygrad", 0.3, 0.01), (" ProxyGrad:2 ", "proxygrad", 2.0, 0.0),
])
def test_parse_activation(spec, kind, b, a):
    s = parse_activation(spec)
    assert (s.kind, s.backward_slope, s.forward_slope) == (kind, b, a)
    assert parse_activation(str(s)) == s


@pytest.mark.parametrize("bad, message", [
    ("proxygrad:", "not a number"), ("relu:0.1", "wrong number"), ("foo", "unknown activation"),
    ("leaky:-1", ">= 0"), ("leaky:nan", "finite"), ("proxygrad:0.1:0.2:0.3", "wrong number"),
    ("leaky", "wrong number"), (0.1, "must be a string"),
])
def test_malformed_specs_say_what_is_accepted(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_activation(bad)
    assert "accepted specs" in str(err.value)


NEGATIVE = "must be >= 0 (negative slopes flip the gradient's sign), got {}; slopes above 1 are allowed"
WRONG_COUNT = "wrong number of ':'-separated values for"


@pytest.mark.parametrize("bad, message", [
    ("proxygrad:", "malformed activation spec 'proxygrad:': backward slope '' is not a number"),
    ("proxygrad:0.1:x", "malformed activation spec 'proxygrad:0.1:x': forward slope 'x' is not a number"),
    ("leaky:x", "malformed activation spec 'leaky:x': leaky slope 'x' is not a number"),
    ("noisy:x", "malformed activation spec 'noisy:x': noise scale 'x' is not a number"),
    ("leaky:-1", "bad activation spec 'leaky:-1': leaky slope " + NEGATIVE.format(-1.0)),
    ("noisy:-2", "bad activation spec 'noisy:-2': noise scale " + NEGATIVE.format(-2.0)),
    ("proxygrad:0.1:inf", "bad activation spec 'proxygrad:0.1:inf': forward slope must be a finite number >= 0, got inf"),
    ("relu:0.1", f"malformed activation spec 'relu:0.1': {WRONG_COUNT} 'relu'"),
    ("guided:1", f"malformed activation spec 'guided:1': {WRONG_COUNT} 'guided'"),
    ("deconvnet:0", f"malformed activation spec 'deconvnet:0': {WRONG_COUNT} 'deconvnet'"),
    ("noisy", f"malformed activation spec 'noisy': {WRONG_COUNT} 'noisy'"),
    ("proxygrad:1:2:3", f"malformed activation spec 'proxygrad:1:2:3': {WRONG_COUNT} 'proxygrad'"),
    ("foo", "unknown activation spec 'foo'"), (0.1, "activation spec must be a string, got 0.1"),
])
def test_each_bad_spec_gets_its_whole_message_then_the_accepted_specs(bad, message):
    from proxylab.proxygrad import SPEC_HELP

    with pytest.raises(ValueError) as err:
        parse_activation(bad)
    assert str(err.value) == f"{message}; {SPEC_HELP}"


@pytest.mark.parametrize("value, message", [
    ("0.1", "slope must be a number >= 0, got '0.1'"), (True, "slope must be a number >= 0, got True"),
    (None, "slope must be a number >= 0, got None"), (math.nan, "slope must be a finite number >= 0, got nan"),
    (-math.inf, "slope must be a finite number >= 0, got -inf"), (-1, "slope " + NEGATIVE.format(-1.0)),
])
def test_check_slope_says_why_a_value_is_refused(value, message):
    with pytest.raises(ValueError) as err:
        proxylab.check_slope(value)
    assert str(err.value) == message
    with pytest.raises(ValueError, match="^the slope of x must be"):
        proxylab.check_slope(value, "the slope of x")
    assert proxylab.check_slope(3) == 3.0 and type(proxylab.check_slope(3)) is float and proxylab.check_slope(0) == 0.0


def test_the_backward_rules_parse_by_name_and_a_parsed_spec_is_its_own_parse():
    from proxylab import ActivationSpec

    for text, kind, b in (("guided", "guided", 0.0), (" Deconvnet", "deconvnet", 0.0), ("redirected", "redirected", 0.0),
                          ("NOISY:0.5 ", "noisy", 0.5)):
        spec = parse_activation(text)
        assert (spec.kind, spec.backward_slope, spec.forward_slope) == (kind, b, 0.0)
        assert parse_activation(spec) is spec and str(spec) == text.strip().lower()
    assert parse_activation(ActivationSpec("leaky", 0.1, 0.1)) == parse_activation("leaky:0.1")


def test_resnet18_conversion_count_and_identical_forward():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    assert swap_activations(model, "proxygrad:0.1") == 9
    assert sum(isinstance(m, ProxyGradReLU) for m in model.modules()) == 9
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert torch.equal(model(x), ref)
    assert swap_activations(model, "leaky:0.2") == 9
    assert isinstance(model.layer1[0].relu, nn.LeakyReLU) and model.layer1[0].relu.inplace
    assert not torch.equal(model(x), ref)


def test_proxygrad_changes_gradients_not_outputs_of_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    ref = model(x)
    (g_ref,) = torch.autograd.grad(ref[0, 3], x)
    with proxygrad(model, 0.3) as m:
        out = m(x)
        (g,) = torch.autograd.grad(out[0, 3], x)
    assert torch.equal(out, ref)
    assert not torch.allclose(g, g_ref)
    (g_after,) = torch.autograd.grad(model(x)[0, 3], x)
    assert torch.equal(g_after, g_ref)


def test_efficientnet_lite0_keeps_relu6_clamp():
    from efficientnet_lite_pytorch import EfficientNet
    model = EfficientNet.from_name("efficientnet-lite0").eval()
    x = torch.randn(1, 3, 64, 64) * 3
    ref = model(x)
    n = swap_activations(model, "proxygrad:0.1")
    assert n == sum(1 for _ in model.modules() if isinstance(_, ProxyGradReLU)) and n >= 17
    assert all(m.max_value == 6.0 for m in model.modules() if isinstance(m, ProxyGradReLU))
    assert torch.equal(model(x), ref)
    swap_activations(model, "relu")
    assert isinstance(model._swish, nn.ReLU6)


def test_context_manager_restores_modules_after_exception():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.LeakyReLU(0.05), nn.ReLU6())
    before = list(model)
    with pytest.raises(RuntimeError, match="boom"):
        with proxygrad(model, 0.5):
            assert isinstance(model[1], ProxyGradReLU) and model[3].forward_slope == 0.05
            assert model[4].max_value == 6.0
            raise RuntimeError("boom")
    assert all(a is b for a, b in zip(model, before))


def test_shared_module_is_replaced_once_and_shared():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    assert swap_activations(model, "proxygrad:0.1") == 2
    assert model[1] is model[3]


def test_model_without_rectifiers_raises():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    with pytest.raises(ValueError, match="no nn.ReLU, nn.ReLU6, nn.LeakyReLU or ProxyGradReLU module, and no call of F.relu"):
        swap_activations(model, "proxygrad:0.1")
    with pytest.raises(ValueError, match="no rectifier to convert"):
        with proxygrad(model, 0.1):
            pass


def test_quick_mode_switch(monkeypatch):
    monkeypatch.setenv("PROXYLAB_QUICK", "1")
    assert proxylab.quick_mode()
    monkeypatch.setenv("PROXYLAB_QUICK", "0")
    assert not proxylab.quick_mode()
    monkeypatch.delenv("PROXYLAB_QUICK")
    assert not proxylab.quick_mode()


def test_proxygrad_per_layer_filter_and_slopes():
    model = torchvision.models.resnet18(num_classes=4)
    with proxygrad(model, 0.2, layers=lambda name: name.startswith("layer1")):
        converted = [n for n, m in model.named_modules() if isinstance(m, ProxyGradReLU)]
        assert converted == ["layer1.0.relu", "layer1.1.relu"]
    with proxygrad(model, lambda name: 0.5 if name == "relu" else None):
        assert isinstance(model.relu, ProxyGradReLU) and model.relu.backward_slope == 0.5
        assert isinstance(model.layer1[0].relu, nn.ReLU)
    assert not any(isinstance(m, ProxyGradReLU) for m in model.modules())
    with pytest.raises(ValueError, match="backward slope of relu"):
        with proxygrad(model, lambda name: -1.0):
            pass


class CallsRelu(nn.Module):
    def forward(self, x):
        return F.relu(x)


class Half(nn.Module):
    """A conv, then the ReLU module ``act`` and the block ``f`` it is given (shared with another Half)."""

    def __init__(self, act, f, c_in):
        super().__init__()
        self.conv, self.act, self.f = nn.Conv2d(c_in, 4, 3, padding=1), act, f

    def forward(self, x):
        return self.f(self.act(self.conv(x)))


def test_a_module_shared_by_two_parents_is_reported_once_per_call():
    """One ReLU in two parents, called once by each: two calls per forward, under its first name
    (not four, as two hooks on one module would report); the same for a shared functional block."""
    from proxylab import am, architectures
    from proxylab.swap import rectifier_calls

    torch.manual_seed(0)
    relu, block = nn.ReLU(), CallsRelu()
    model = nn.Sequential(Half(relu, block, 3), Half(relu, block, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    x = torch.randn(2, 3, 8, 8)
    keys = []
    with torch.no_grad(), rectifier_calls(model, lambda key, out: keys.append(key)):
        model(x)
        model(x)
    assert keys == ["0.act#0", "0.f/relu#0", "0.act#1", "0.f/relu#1",
                    "0.act#2", "0.f/relu#2", "0.act#3", "0.f/relu#3"]
    assert list(architectures.sparsity(model, x)) == ["0.act#0", "0.f/relu#0", "0.act#1", "0.f/relu#1"]
    d = am.slope_diagnostic(model, am.initial_images(2, 8, seed=0), [0, 1], [0.1])
    assert d.layer_names == ["0.act#0", "0.f/relu#0", "0.act#1", "0.f/relu#1"]


def test_labels_name_each_spec_for_plots_and_tables():
    assert [parse_activation(s).label for s in (
        "relu", "leaky:0.1", "proxygrad:0.3", "proxygrad:0.3:0.01", "guided", "deconvnet", "redirected",
        "noisy:0.5")] == ["ReLU", "Leaky ReLU 0.1", "ProxyGrad 0.3", "ProxyGrad 0.3 (fwd 0.01)", "guided backprop",
                          "deconvnet", "redirected ReLU", "noisy 0.5"]


def test_same_forward_is_true_exactly_for_specs_that_keep_a_relu_forward():
    keeps = {"relu": True, "proxygrad:0.3": True, "guided": True, "noisy:0.5": True,
             "proxygrad:0.3:0.01": False, "leaky:0.1": False, "leaky:0": False}
    assert {s: parse_activation(s).same_forward for s in keeps} == keeps


def test_each_spec_builds_the_module_it_names():
    """relu keeps nn.ReLU / nn.ReLU6 (6 keeps the clamp), leaky is nn.LeakyReLU, proxygrad the
    operator; a clamp other than 6 or a leaky clamp needs the operator; every flag is passed on."""
    relu, leaky, pg = (parse_activation(s) for s in ("relu", "leaky:0.2", "proxygrad:0.3:0.1"))
    assert type(relu.module()) is nn.ReLU and not relu.module().inplace and relu.module(inplace=True).inplace
    assert type(relu.module(6.0)) is nn.ReLU6 and relu.module(6.0, inplace=True).inplace
    clamp4 = relu.module(4.0)
    assert type(clamp4) is ProxyGradReLU and (clamp4.max_value, clamp4.backward_slope, clamp4.forward_slope) == (4.0, 0, 0)
    lk = leaky.module(inplace=True)
    assert type(lk) is nn.LeakyReLU and lk.negative_slope == 0.2 and lk.inplace
    lk6 = leaky.module(6.0)
    assert type(lk6) is ProxyGradReLU and (lk6.backward_slope, lk6.forward_slope, lk6.max_value) == (0.2, 0.2, 6.0)
    m = pg.module(6.0, inplace=True)
    assert (type(m), m.backward_slope, m.forward_slope, m.max_value, m.inplace) == (ProxyGradReLU, 0.3, 0.1, 6.0, True)
    from proxylab.rules import BackwardRule
    r = parse_activation("noisy:0.5").module(6.0, inplace=True, seed=9)
    assert (type(r), r.rule, r.param, r.max_value, r.inplace, r.seed) == (BackwardRule, "noisy", 0.5, 6.0, True, 9)


def test_swap_keeps_each_modules_clamp_and_inplace_flag():
    model = nn.Sequential(nn.ReLU6(inplace=True), nn.LeakyReLU(0.3), nn.ReLU(), ProxyGradReLU(0.5, 0.1, 4.0))
    swap_activations(model, "proxygrad:0.2")
    assert [(m.max_value, m.inplace, m.forward_slope) for m in model] == [
        (6.0, True, 0.0), (None, False, 0.0), (None, False, 0.0), (4.0, False, 0.0)]
    with proxygrad(model, 0.7):  # proxygrad() keeps each forward slope
        assert [(m.max_value, m.forward_slope, m.backward_slope) for m in model] == [
            (6.0, 0.0, 0.7), (None, 0.0, 0.7), (None, 0.0, 0.7), (4.0, 0.0, 0.7)]
    model = nn.Sequential(nn.LeakyReLU(0.3, inplace=True), ProxyGradReLU(0.5, 0.1, 4.0))
    with proxygrad(model, 0.7):
        assert [(m.max_value, m.forward_slope, m.inplace) for m in model] == [(None, 0.3, True), (4.0, 0.1, False)]


def test_slopes_given_as_one_element_tensors_and_bad_clamps():
    assert ProxyGradReLU(torch.tensor(0.25)).backward_slope == 0.25
    assert type(proxylab.check_slope(torch.tensor([2]))) is float
    with pytest.raises(ValueError, match="must be a number"):
        ProxyGradReLU(torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="must be a number"):
        ProxyGradReLU(True)
    with pytest.raises(ValueError, match="backward_slope must be >= 0 .*slopes above 1 are allowed"):
        proxy_relu(torch.zeros(2), -1.0)
    with pytest.raises(ValueError, match="forward_slope must be >= 0"):
        proxy_relu(torch.zeros(2), 0.1, forward_slope=-0.5)
    with pytest.raises(ValueError, match="backward_slope must be >= 0"):
        with proxygrad(nn.Sequential(nn.ReLU()), -0.5):
            pass
    for bad in (0.0, -6.0):
        with pytest.raises(ValueError, match="max_value must be > 0"):
            proxy_relu(torch.zeros(2), 0.1, max_value=bad)
    assert proxy_relu(torch.tensor([7.0]), 0.1, max_value=6).tolist() == [6.0]  # an int clamp is fine
    assert proxy_relu(torch.tensor([0.7, -1.0]), 0.1, max_value=0.5).tolist() == [0.5, 0.0]  # any clamp > 0


def test_the_functional_form_can_work_in_place_and_the_repr_lists_every_setting():
    h = torch.randn(6, requires_grad=True) * 1
    y = proxy_relu(h, 0.2, inplace=True)
    assert y.data_ptr() == h.data_ptr() and (h >= 0).all()
    assert repr(ProxyGradReLU(0.1, 0.05, max_value=6, inplace=True)) == (
        "ProxyGradReLU(backward_slope=0.1, forward_slope=0.05, max_value=6, inplace=True)")


def test_swap_count_says_what_was_converted():
    from proxylab.swap import SwapCount
    assert str(SwapCount(1, 1)) == "1 rectifier module and 1 functional call site"
    assert str(SwapCount(2, 0)) == "2 rectifier modules and 0 functional call sites"
    unknown = SwapCount(3, None)
    assert unknown == 3 and unknown.functional is None and unknown.modules == 3
    assert str(unknown).startswith("3 rectifier modules and an unknown number of functional calls")
    assert SwapCount(2, 5) == 7 and (SwapCount(2, 5).modules, SwapCount(2, 5).functional) == (2, 5)


def test_a_slope_beyond_the_dtype_gives_inf_where_it_applies_and_1_elsewhere():
    """float32 cannot hold a backward slope of 1e39: the gradient is inf on negative inputs (so AM
    retries in float64) and still exactly the upstream gradient on positive ones, small or large."""
    x = torch.tensor([-1.0, 0.0, 0.25, 1.0, 3.0])
    y, g = grads(lambda t: proxy_relu(t, 1e39), x)
    up = torch.linspace(-1, 2, 5)
    assert torch.isinf(g[:2]).all() and torch.equal(g[2:], up[2:])
    _, g64 = grads(lambda t: proxy_relu(t, 1e39), x.double())  # float64 holds it: the plain kernel
    assert torch.equal(g64, up.double() * torch.tensor([1e39, 1e39, 1.0, 1.0, 1.0], dtype=torch.float64))


def test_a_model_with_one_functional_rectifier_is_converted():
    model = nn.Sequential(CallsRelu())
    n = swap_activations(model, "proxygrad:0.1")
    assert (n.modules, n.functional) == (0, 1)
    x = torch.tensor([[-1.0, 2.0]], requires_grad=True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    assert torch.allclose(g, torch.tensor([[0.1, 1.0]]))  # converted: slope 0.1 on the negative input


class Branchy(nn.Module):
    """F.relu behind a data-dependent branch: fx cannot trace it, running it shows its one site."""

    def forward(self, x):
        return F.relu(x) * 2 if x.sum() > 0 else F.relu(x)


def test_swap_counts_an_untraceable_models_functional_sites_by_running_its_example():
    unknown = swap_activations(Branchy(), "proxygrad:0.1")
    assert (unknown.modules, unknown.functional) == (0, None)  # converted, but not countable without running
    model = Branchy()
    known = swap_activations(model, "proxygrad:0.1", example=torch.ones(1, 2))
    assert (known.modules, known.functional) == (0, 1)
    x = torch.tensor([[-1.0, 2.0]], requires_grad=True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    assert torch.allclose(g, torch.tensor([[0.2, 2.0]]))  # slope 0.1 on the negative input, times 2


def test_a_spec_at_a_slope_says_its_slope_and_labels_and_reads_back_from_its_text():
    from proxylab import ActivationSpec

    assert ActivationSpec.at_slope("leaky", 0) == ActivationSpec.at_slope("proxygrad", 0.0) == ActivationSpec("relu")
    for kind, slope, text, label in (("leaky", 0.01, "leaky:0.01", "Leaky ReLU 0.01"),
                                     ("proxygrad", 3, "proxygrad:3", "ProxyGrad 3")):
        spec = ActivationSpec.at_slope(kind, slope)
        assert (str(spec), spec.label, spec.slope, spec.kind) == (text, label, float(slope), kind)
        assert parse_activation(text) == spec
    assert parse_activation("proxygrad:0.1:0.2").slope == 0.1 and parse_activation("noisy:0.3").slope == 0.3
    assert parse_activation("leaky:0.2").kind_label == "Leaky ReLU" and parse_activation("relu").slope == 0
    with pytest.raises(ValueError, match="^a slope sweeps the kinds leaky and proxygrad, not 'guided'$"):
        ActivationSpec.at_slope("guided", 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        ActivationSpec.at_slope("leaky", -0.1)


def test_a_model_swapped_to_a_backward_rule_keeps_a_relu_forward_under_proxygrad_and_other_rules():
    """A backward-rule module computes a ReLU forward: proxygrad on it leaves the outputs as they are,
    and another rule (defined on a ReLU forward only) may replace it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))
    x = torch.randn(8, 3)
    assert (model[0](x) < 0).any()  # negative inputs reach the rectifier: an identity forward would differ
    swap_activations(model, "guided")
    before = model(x)
    with proxygrad(model, 0.3):
        assert torch.equal(model(x), before)
    assert swap_activations(model, "deconvnet") == 1
    assert torch.equal(model(x), before)


def test_a_rectifier_shared_by_two_parents_stays_one_module_after_a_swap():
    """One ReLU registered under two parents gets one replacement, for good and inside proxygrad: it
    is still one layer, reported under its first name (as before the swap), and told its state once."""
    from collections import OrderedDict

    from proxylab.swap import rectifier_calls, set_state
    relu = nn.ReLU()
    model = nn.Sequential(OrderedDict(a=nn.Sequential(nn.Linear(2, 2), relu), b=nn.Sequential(nn.Linear(2, 2), relu)))
    with proxygrad(model, 0.2):
        assert isinstance(model.a[1], ProxyGradReLU) and model.a[1] is model.b[1]
    # it is converted as its first name says, the name it is reported under
    with proxygrad(model, {"a.1": 0.1, "b.1": 0.5}.get):
        x = torch.tensor([-1.0], requires_grad=True)
        model.b[1](x).sum().backward()
        assert x.grad.item() == pytest.approx(0.1)
    with proxygrad(model, 0.2, layers=lambda name: name == "b.1"):
        assert model.b[1] is relu
    assert model.a[1] is relu and model.b[1] is relu
    swap_activations(model, "noisy:0.1")
    assert model.a[1] is model.b[1] and set_state(model, 0) == 1
    keys = []
    with rectifier_calls(model, lambda key, out: keys.append(key)):
        model(torch.ones(1, 2))
    assert keys == ["a.1#0", "a.1#1"]


def test_swap_by_example_names_the_model_when_the_example_calls_no_rectifier():
    """fx cannot count a forward that branches on its input; the example then decides, and an example
    that reaches no rectifier call is refused with the model's class named."""
    class Gated(nn.Module):
        def forward(self, x):
            return F.relu(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match=r"^Gated has no rectifier to convert"):
        swap_activations(Gated(), "leaky:0.1", example=-torch.ones(1, 3))


def test_a_model_without_rectifiers_is_refused_by_its_class_name():
    class Linear2(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return torch.tanh(self.fc(x))

    for convert in (lambda m: swap_activations(m, "leaky:0.1"), lambda m: proxygrad(m, 0.1).__enter__()):
        with pytest.raises(ValueError, match=r"^Linear2 has no rectifier to convert: no nn\.ReLU"):
            convert(Linear2())
