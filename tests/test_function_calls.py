"""Rectifiers called as functions inside forward (F.relu, torch.relu, x.relu(), F.relu6,
F.leaky_relu, F.hardtanh(x, 0, 6)): converted like modules, against twins that use modules."""
import contextlib
import copy
import threading
import types
import warnings
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from proxylab import am, function_calls, proxygrad, rules, swap, swap_activations, swapped
from proxylab.function_calls import count_functional
from proxylab.swap import rectifier_calls


class Mixed(nn.Module):
    """Modules and every functional form; ``modules=True`` makes the same network with modules."""

    def __init__(self, modules=False, leaky=True):
        super().__init__()
        torch.manual_seed(0)
        self.modules_, self.leaky = modules, leaky
        self.c1, self.c2, self.c3, self.c4 = (nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(4))
        self.r = nn.ReLU()
        self.fc = nn.Linear(8, 5)
        if modules:
            self.f1, self.f2, self.f3, self.f4 = nn.ReLU(), nn.ReLU6(), nn.ReLU6(inplace=True), nn.ReLU(inplace=True)
            self.f5 = nn.ReLU()
            if leaky:
                self.f6 = nn.LeakyReLU(0.2)

    def forward(self, x):
        x = self.r(self.c1(x))
        if self.modules_:
            x = self.f4(self.f3(self.f2(self.f1(self.c2(x)) * 8) - 1) + 0)  # same arithmetic as below
            x = self.f5(self.c3(x) - 0.1)
            x = self.f6(self.c4(x)) if self.leaky else self.c4(x)
        else:
            x = F.relu(self.c2(x))
            x = F.relu6(x * 8)
            x = F.hardtanh(x - 1, 0.0, 6.0, inplace=True)
            x = torch.relu_(x + 0)
            x = (self.c3(x) - 0.1).relu()
            x = F.leaky_relu(self.c4(x), 0.2) if self.leaky else self.c4(x)
        x = F.hardtanh(x, -1.0, 1.0)  # a clamp, not a rectifier: never converted
        return self.fc(x.mean((2, 3)))


def input_grad(model, x, target=1, ctx=None):
    x = x.clone().requires_grad_(True)
    with ctx if ctx is not None else contextlib.nullcontext():
        y = model(x)
        y[:, target].sum().backward()
    return y.detach(), x.grad


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_functional_sites_are_counted_by_tracing_and_by_running():
    model = Mixed()
    assert count_functional(model) == 6  # relu, relu6, hardtanh(0, 6), relu_, .relu(), leaky_relu
    assert count_functional(model, X) == 6
    assert count_functional(Mixed(modules=True)) == 0
    n = swap_activations(Mixed(), "proxygrad:0.1")
    assert (n.modules, n.functional, int(n)) == (1, 6, 7)
    assert str(n) == "1 rectifier module and 6 functional call sites"


@pytest.mark.parametrize("slope", [0.05, 0.5])
def test_proxygrad_on_functional_calls_equals_the_module_twin(slope):
    f, m = Mixed(), Mixed(modules=True)
    y_plain, g_plain = input_grad(f, X)
    y_f, g_f = input_grad(f, X, ctx=proxygrad(f, slope))
    y_m, g_m = input_grad(m, X, ctx=proxygrad(m, slope))
    assert torch.equal(y_f, y_plain)  # the forward is bit-identical
    assert torch.equal(y_f, y_m)
    torch.testing.assert_close(g_f, g_m)
    assert not torch.allclose(g_f, g_plain, rtol=1e-3, atol=1e-6)  # the conversion did something
    # and the model is as it was after the block
    torch.testing.assert_close(input_grad(f, X)[1], g_plain, rtol=0, atol=0)


def test_per_layer_filter_and_slopes_see_functional_names():
    f = Mixed()
    seen = []

    def slope(name):
        seen.append(name)
        return 0.3 if name == "/relu" else None  # only the first functional call

    m = Mixed(modules=True)
    _, g_f = input_grad(f, X, ctx=proxygrad(f, slope))
    _, g_m = input_grad(m, X, ctx=proxygrad(m, lambda n: 0.3 if n == "f1" else None))
    torch.testing.assert_close(g_f, g_m)
    assert seen == ["r", "/relu", "/relu6", "/relu6.1", "/relu.1", "/relu.2", "/leaky_relu"]  # hardtanh(0, 6) is a ReLU6
    _, g_none = input_grad(f, X, ctx=proxygrad(f, 0.3, layers=lambda n: False))
    torch.testing.assert_close(g_none, input_grad(f, X)[1], rtol=0, atol=0)


@pytest.mark.parametrize("spec", ["guided", "deconvnet", "redirected", "proxygrad:0.2", "leaky:0.1"])
def test_backward_rules_and_swaps_on_functional_calls_equal_the_module_twin(spec):
    f, m = Mixed(leaky=False), Mixed(modules=True, leaky=False)
    y_f, g_f = input_grad(f, X, ctx=swapped(f, spec))
    y_m, g_m = input_grad(m, X, ctx=swapped(m, spec))
    torch.testing.assert_close(y_f, y_m, rtol=0, atol=0)
    torch.testing.assert_close(g_f, g_m)


class TwoCalls(nn.Module):
    """Two functional sites, ``/relu`` and ``/relu.1``, on the two halves of the input."""

    def forward(self, x):
        return torch.cat([F.relu(x[:, :4]), F.relu(x[:, 4:])], dim=1)


def test_noisy_rule_on_functional_calls_draws_each_sites_own_stream():
    """The noisy rule by hand: slope S*|xi| on negative inputs, xi from the stream seeded by the
    site's name (rules.module_seed), one draw per backward; 1 on positive inputs."""
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    negative = x < 0

    def grads(scale, model=None, passes=2):
        model = model or TwoCalls()
        out = []
        with swapped(model, f"noisy:{scale}"):
            for _ in range(passes):
                t = x.clone().requires_grad_(True)
                model(t).sum().backward()
                out.append(t.grad)
        return out

    def stream(site, n):
        gen = torch.Generator().manual_seed(rules.module_seed(site))
        return [torch.randn(3, 4, generator=gen).abs() for _ in range(n)]

    g1, g2 = grads(0.5)
    for g, xi0, xi1 in zip((g1, g2), *(stream(site, 2) for site in ("/relu", "/relu.1"))):
        expected = torch.where(negative, 0.5 * torch.cat([xi0, xi1], dim=1), torch.ones_like(x))
        torch.testing.assert_close(g, expected)
    assert not torch.equal(g1[negative], g2[negative])  # a fresh draw per backward
    g3, g4 = grads(0.5)  # a fresh model: the same streams again
    assert torch.equal(g1, g3) and torch.equal(g2, g4)
    (g_big,) = grads(2.0, passes=1)  # the scale multiplies the same draw
    torch.testing.assert_close(g_big[negative], 4 * g1[negative])


def test_rules_refuse_a_functional_leaky_relu():
    f = Mixed()
    with pytest.raises(ValueError, match="'/leaky_relu' is a Leaky ReLU"):
        input_grad(f, X, ctx=swapped(f, "guided"))
    assert torch.equal(input_grad(f, X)[0], input_grad(Mixed(), X)[0])


def test_permanent_swap_converts_every_later_forward_and_survives_deepcopy():
    f, m = Mixed(), Mixed(modules=True)
    swap_activations(f, "leaky:0.3")
    swap_activations(m, "leaky:0.3")
    y_f, g_f = input_grad(f, X)
    y_m, g_m = input_grad(m, X)
    torch.testing.assert_close(y_f, y_m)
    torch.testing.assert_close(g_f, g_m)
    twin = copy.deepcopy(f)
    torch.testing.assert_close(input_grad(twin, X)[1], g_f)
    assert torch._C._len_torch_function_stack() == 0  # nothing left active between forwards


def test_rule_state_reaches_functional_replacements():
    f = Mixed(leaky=False)
    with swapped(f, "redirected"):
        input_grad(f, X)
        assert swap.set_state(f, 3, [0, 1]) == 1 + 5  # the module and the five functional sites


def test_rule_state_reaches_the_functional_replacements_of_a_copied_model():
    """A copy (deepcopy, torch.load) of a swapped model carries its replacements; set_state reaches
    them before the copy's first forward, as the AM loop calls it before each step."""
    f = Mixed(leaky=False)
    swap_activations(f, "redirected")
    input_grad(f, X)  # the sites are resolved
    assert swap.set_state(copy.deepcopy(f), 3, [0, 1]) == 1 + 5  # the module and the five functional sites


def test_rectifier_calls_reports_functional_outputs():
    f = Mixed()
    keys = []
    with torch.no_grad(), rectifier_calls(f, lambda key, out: keys.append(key)):
        f(X)
        f(X)
    assert keys[:7] == ["r#0", "/relu#0", "/relu6#0", "/relu6.1#0", "/relu.1#0", "/relu.2#0", "/leaky_relu#0"]
    assert keys[7:] == [k.replace("#0", "#1") for k in keys[:7]]


def test_calls_outside_the_model_are_left_alone():
    f = Mixed()
    t = torch.tensor([-1.0, 2.0], requires_grad=True)
    with proxygrad(f, 0.5):
        F.relu(t).sum().backward()
    assert t.grad.tolist() == [0.0, 1.0]


def test_an_error_in_forward_leaves_nothing_active():
    class Broken(nn.Module):
        def forward(self, x):
            F.relu(x)
            raise RuntimeError("boom")

    model = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        with proxygrad(model, 0.1):
            model(X)
    assert torch._C._len_torch_function_stack() == 0
    swap_activations(model, "leaky:0.1")
    with pytest.raises(RuntimeError, match="boom"):
        model(X)
    assert torch._C._len_torch_function_stack() == 0


def test_model_with_no_rectifier_at_all_is_refused():
    class Untraceable(nn.Module):  # fx cannot trace a data-dependent branch
        def forward(self, x):
            return torch.tanh(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="no rectifier to convert"):
        swap_activations(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), "proxygrad:0.1")
    with pytest.raises(ValueError, match="no rectifier to convert"):
        swap_activations(Untraceable(), "proxygrad:0.1", example=torch.ones(1, 2))
    model = Untraceable()
    with pytest.raises(ValueError, match="no rectifier to convert"):  # known once the model ran
        with proxygrad(model, 0.1):
            model(torch.ones(1, 2))


def _with_module_relus(model, cls):
    """A twin whose ``cls`` blocks (torchvision's BasicConv2d) call an nn.ReLU module."""
    twin = copy.deepcopy(model)
    for block in twin.modules():
        if isinstance(block, cls):
            block.act = nn.ReLU(inplace=True)
            block.forward = types.MethodType(lambda self, x: self.act(self.bn(self.conv(x))), block)
    return twin


@pytest.mark.parametrize("name,size,sites", [("googlenet", 64, 57), ("inception_v3", 80, 94)])
def test_torchvision_functional_models(name, size, sites):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, aux_logits=False, init_weights=True).eval()
    cls = type(model.Conv2d_1a_3x3 if name == "inception_v3" else model.conv1)
    twin = _with_module_relus(model, cls)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    y0, g0 = input_grad(model, x, target=3)
    y1, g1 = input_grad(model, x, target=3, ctx=proxygrad(model, 0.1))
    y2, g2 = input_grad(twin, x, target=3, ctx=proxygrad(twin, 0.1))
    assert torch.equal(y0, y1) and torch.equal(y1, y2)
    scale = g2.abs().max()
    torch.testing.assert_close(g1 / scale, g2 / scale)
    assert (g1 - g0).abs().max() > 0.01 * scale
    assert swap_activations(copy.deepcopy(model), "proxygrad:0.1").functional == sites


def test_am_engine_on_a_functional_model_equals_the_module_twin():
    f, m = Mixed(leaky=False), Mixed(modules=True, leaky=False)
    for spec in ("proxygrad:0.2", "leaky:0.1", "redirected"):
        rf = am.visualize(f, [0, 3], spec, steps=4, size=32, progress=False)
        rm = am.visualize(m, [0, 3], spec, steps=4, size=32, progress=False)
        torch.testing.assert_close(rf.scores, rm.scores)
        torch.testing.assert_close(rf.images, rm.images)
    d = am.slope_diagnostic(f, am.initial_images(2, 32, seed=0), [0, 3], [0.1])
    assert d.layer_names[:2] == ["r#0", "/relu#0"] and len(d.layer_names) == 6


def test_a_forward_that_reads_its_own_parameter_is_counted_by_fx():
    class Scaled(nn.Module):  # a parameter read in forward (a class token, a learned scale), not a submodule's
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return F.relu(x * self.scale) + F.relu(x - self.scale)

    assert count_functional(Scaled()) == 2


def test_a_module_named_relu_is_a_module_site_not_a_functional_one():
    model = nn.Sequential(OrderedDict(lin=nn.Linear(2, 2), relu=nn.ReLU()))  # fx: call_module "relu"
    n = swap_activations(model, "proxygrad:0.5")
    assert (n.modules, n.functional) == (1, 0)


def test_clamps_that_are_not_rectifiers_are_left_alone():
    class Clamps(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            x = F.relu(self.lin(x))  # one rectifier, so the model is accepted
            return F.hardtanh(x - 0.5, 0.0, 1.0) + F.hardtanh(x, -1.0, 6.0) + F.leaky_relu(x - 1, -0.5)

    model = Clamps()
    assert count_functional(model) == 1
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    with proxygrad(model, 0.5) as m:
        m(x).sum().backward()
    g_proxy = x.grad.clone()
    x.grad = None
    from proxylab import proxy_relu

    r = proxy_relu(model.lin(x), 0.5)  # the reference: only the one F.relu converted, by hand
    (F.hardtanh(r - 0.5, 0.0, 1.0) + F.hardtanh(r, -1.0, 6.0) + F.leaky_relu(r - 1, -0.5)).sum().backward()
    torch.testing.assert_close(g_proxy, x.grad)


# every spelling of a rectifier call: (the call, the module it stands for, the input's scale)
SPELLINGS = [
    (lambda a: F.relu(a, inplace=True), lambda: nn.ReLU(inplace=True), 1),
    (F.relu, nn.ReLU, 1),
    (torch.relu, nn.ReLU, 1),
    (lambda a: a.relu(), nn.ReLU, 1),
    (torch.relu_, lambda: nn.ReLU(inplace=True), 1),
    (lambda a: a.relu_(), lambda: nn.ReLU(inplace=True), 1),
    (lambda a: F.relu6(a, inplace=True), lambda: nn.ReLU6(inplace=True), 8),
    (F.relu6, nn.ReLU6, 8),
    (lambda a: F.leaky_relu(a, 0.2, True), lambda: nn.LeakyReLU(0.2, inplace=True), 1),
    (F.leaky_relu, nn.LeakyReLU, 1),  # the default slope, 0.01
    (lambda a: F.leaky_relu(a, 0.0), lambda: nn.LeakyReLU(0.0), 1),  # slope 0: a ReLU
    (lambda a: F.leaky_relu_(a, 0.3), lambda: nn.LeakyReLU(0.3, inplace=True), 1),
    (lambda a: F.leaky_relu_(a, negative_slope=0.3), lambda: nn.LeakyReLU(0.3, inplace=True), 1),
    (F.leaky_relu_, lambda: nn.LeakyReLU(inplace=True), 1),
    (lambda a: F.hardtanh(a, 0.0, 6.0, True), lambda: nn.ReLU6(inplace=True), 8),
    (lambda a: F.hardtanh(a, min_val=0.0, max_val=6.0), nn.ReLU6, 8),
    (lambda a: F.hardtanh_(a, 0.0, 6.0), lambda: nn.ReLU6(inplace=True), 8),
    (lambda a: F.hardtanh_(a, min_val=0.0, max_val=6.0), lambda: nn.ReLU6(inplace=True), 8),
    (F.hardtanh_, lambda: nn.Hardtanh(inplace=True), 8),  # the default clamp, -1 to 1: not a rectifier
]


class Spellings(nn.Module):
    """Row i of the input through spelling i, its input read again after the call (``y + a``),
    so the output shows whether the call wrote into its input; ``modules=True``: the module twin."""

    def __init__(self, modules=False):
        super().__init__()
        self.acts = nn.ModuleList(make() for _, make, _ in SPELLINGS) if modules else None

    def forward(self, x):
        outs = []
        for i, (call, _, scale) in enumerate(SPELLINGS):
            a = x[i] * scale
            outs.append((self.acts[i](a) if self.acts is not None else call(a)) + a)
        return torch.stack(outs)


@pytest.mark.parametrize("convert", [lambda m: proxygrad(m, 0.5), lambda m: swapped(m, "leaky:0.5")],
                         ids=["proxygrad", "leaky"])
def test_every_spelling_of_a_call_is_converted_like_its_module(convert):
    """In place or not, positional or keyword arguments, default slope: each functional call is
    answered like the module it stands for (same forward, its in-place write included), row by row."""
    def run(model, ctx=contextlib.nullcontext()):
        x = torch.linspace(-1.0, 1.0, 9).repeat(len(SPELLINGS), 1).requires_grad_(True)
        with ctx:
            y = model(x)
            y.sum().backward()
        return y.detach(), x.grad

    f, m = Spellings(), Spellings(modules=True)
    assert count_functional(f) == count_functional(f, torch.zeros(len(SPELLINGS), 9)) == len(SPELLINGS) - 1
    y_plain, g_plain = run(f)
    assert torch.equal(y_plain, run(m)[0])  # the twin is the same network
    y_f, g_f = run(f, convert(f))
    y_m, g_m = run(m, convert(m))
    assert torch.equal(y_f, y_m)
    torch.testing.assert_close(g_f, g_m, rtol=0, atol=0)
    changed = [not torch.equal(a, b) for a, b in zip(g_f, g_plain)]
    assert changed == [True] * (len(SPELLINGS) - 1) + [False]  # every rectifier, not the clamp


def test_a_module_swapped_in_after_a_first_conversion_is_seen():
    """The fx count is cached per model; replacing a ReLU module by one that calls F.relu must not
    leave the next conversion blind to it."""

    class Called(nn.Module):
        def forward(self, x):
            return F.relu(x)

    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    x = torch.tensor([[1.0, -2.0, 0.5]], requires_grad=True)
    with proxygrad(model, 0.5):
        model(x).sum().backward()
    module_grad, x.grad = x.grad.clone(), None
    model[1] = Called()
    with proxygrad(model, 0.5):
        model(x).sum().backward()
    torch.testing.assert_close(x.grad, module_grad)
    model = nn.Sequential(nn.Linear(3, 3), nn.Identity(), nn.ReLU(), nn.Linear(3, 1))  # a non-rectifier too
    grads = []
    for module in (nn.Identity(), Called(), nn.ReLU()):
        model[1], x.grad = module, None
        with proxygrad(model, 0.5):
            model(x).sum().backward()
        grads.append(x.grad.clone())
    torch.testing.assert_close(grads[1], grads[2])  # F.relu converted like the module ...
    assert not torch.allclose(grads[1], grads[0])  # ... which changes the gradient


class Recursive(nn.Module):
    """A forward that runs the model itself once more first (a weight-shared refinement)."""

    def forward(self, x, depth=1):
        return F.relu(self(x, depth - 1) if depth else x)


def test_a_swapped_model_that_calls_itself_is_converted_and_unhooked_after():
    model = Recursive()
    swap_activations(model, "proxygrad:0.5", example=torch.ones(2))
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    model(x).sum().backward()
    assert x.grad.tolist() == [0.25, 1.0]  # both calls converted: 0.5 * 0.5 on the negative input
    assert torch._C._len_torch_function_stack() == 0
    assert proxylab_hooks() == []  # the outer forward's end removes the hooks


def test_a_swap_made_inside_a_with_block_converts_the_next_forward():
    model = FunctionalOnly()
    keys = []
    with rectifier_calls(model, lambda key, out: keys.append(key)):
        assert grad_of(model) == PLAIN  # only observed
        swap_activations(model, "proxygrad:0.5")
        assert grad_of(model) == PROXY
    assert keys == ["/relu#0", "/relu#1"]
    assert grad_of(model) == PROXY and proxylab_hooks() == []


def test_nested_blocks_the_inner_conversion_ends_and_the_outer_goes_on():
    model = FunctionalOnly()
    keys = []
    with rectifier_calls(model, lambda key, out: keys.append(key)):
        with proxygrad(model, 0.5):
            assert grad_of(model) == PROXY
        assert grad_of(model) == PLAIN  # the inner conversion has ended ...
    assert keys == ["/relu#0", "/relu#1"]  # ... and the outer block still saw the call after it
    assert proxylab_hooks() == []


def test_a_block_in_which_the_model_never_runs_raises_nothing():
    """The "no rectifier" check at the end of a block needs a forward to judge by."""
    model = FunctionalOnly()
    with proxygrad(model, 0.5):
        pass
    with swapped(model, "guided"):
        pass
    assert proxylab_hooks() == []


def test_counting_by_running_sees_calls_that_fx_cannot():
    """torch.nn's own layers are leaves of the fx count, so fx cannot see the F.relu inside a
    TransformerEncoderLayer: it says it does not know (None), and running an example counts it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0))
    assert count_functional(model) is None
    assert count_functional(model, torch.randn(3, 1, 8)) == 1
    assert model.training  # the mode is restored after the count ran in eval mode


def encoder(activation, seed=0):
    """A ReLU module, then a TransformerEncoderLayer whose feed-forward rectifier is ``activation``
    (the default F.relu, or an nn.ReLU module: the same network, seen from outside)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                         nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation=activation,
                                                    batch_first=True)).eval()


def encoder_grad(model, ctx):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, requires_grad=True)
    with ctx:
        (model(x) * torch.arange(8.0)).sum().backward()  # a weighted sum: LayerNorm makes a plain sum flat
    return x.grad


@pytest.mark.parametrize("convert", [lambda m: proxygrad(m, 0.5), lambda m: swapped(m, "guided")],
                         ids=["proxygrad", "swapped"])
def test_an_f_relu_inside_a_torch_layer_is_converted_like_its_module_twin(convert):
    """The F.relu a TransformerEncoderLayer calls is hidden from fx, which treats the layer as a
    leaf. Counted as 0, the conversion skipped it silently (only the nn.ReLU beside it changed);
    the layer's F.relu must be converted as its nn.ReLU twin is, and reported under its name."""
    functional, twin = encoder("relu"), encoder(nn.ReLU())
    assert encoder_grad(functional, convert(functional)).allclose(encoder_grad(twin, convert(twin)), atol=1e-6)
    assert not encoder_grad(functional, convert(functional)).allclose(encoder_grad(functional, contextlib.nullcontext()), atol=1e-3)
    keys = []
    with rectifier_calls(functional, lambda key, out: keys.append(key)):
        functional(torch.randn(1, 3, 4))
    assert keys == ["1#0", "2/relu#0"]


def test_a_torch_layer_whose_only_rectifier_is_f_relu_is_no_model_without_rectifiers():
    """Without the nn.ReLU beside it, the hidden F.relu was the model's only rectifier: the fx count's
    0 raised a false "no rectifier to convert"."""
    model = nn.Sequential(nn.Linear(4, 8), nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,
                                                                     batch_first=True)).eval()
    assert not encoder_grad(model, proxygrad(model, 1.0)).allclose(encoder_grad(model, contextlib.nullcontext()), atol=1e-3)
    assert swap_activations(model, "guided").functional is None  # unknown without an example, not 0


class UserRelu(nn.Module):
    """A user's activation layer: its forward calls F.relu, and nobody can see that without running it."""

    def forward(self, x):
        return F.relu(x)


torch_utils = types.ModuleType("torch_utils")  # a user's module whose name merely starts with "torch"
exec("import torch.nn.functional as F\ndef my_relu(x):\n    return F.relu(x)\n", torch_utils.__dict__)


@pytest.mark.parametrize("activation, countable", [
    ("gelu", True), (nn.GELU(), True),  # F.gelu and its module: torch's own, no rectifier
    (torch.Tensor.tanh, True),  # a method descriptor (no __module__ of its own): torch's, no rectifier
    (F.relu, False), (lambda x: F.relu(x), False),  # a user's lambda could call anything
    (UserRelu(), False),  # a user's module inside a torch.nn layer runs a forward fx never reads
    (torch_utils.my_relu, False),  # "torch_utils" is not torch
])
def test_the_fx_count_of_a_torch_layer_is_unknown_only_when_it_may_call_a_rectifier(activation, countable):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.TransformerEncoderLayer(8, 2, dim_feedforward=16,
                                                                                activation=activation))
    assert count_functional(model) == (0 if countable else None)


@pytest.mark.parametrize("activation", [UserRelu(), torch_utils.my_relu], ids=["user module", "torch_utils function"])
def test_a_rectifier_behind_a_users_layer_inside_a_torch_layer_is_converted(activation):
    functional, twin = encoder(activation), encoder(nn.ReLU())
    assert encoder_grad(functional, proxygrad(functional, 0.5)).allclose(encoder_grad(twin, proxygrad(twin, 0.5)),
                                                                         atol=1e-6)


def test_a_hardtanh_from_0_to_6_is_relu6_to_the_count_too():
    """nn.Hardtanh(0, 6) is no rectifier module, but its forward calls F.hardtanh(x, 0, 6), which the
    conversion treats as ReLU6: the fx count must not call the model rectifier-free."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Hardtanh(0.0, 6.0))
    assert count_functional(model) is None
    assert count_functional(nn.Sequential(nn.Linear(3, 4), nn.Hardtanh(-1.0, 1.0))) == 0  # a clamp, not ReLU6
    x = torch.randn(5, 3, requires_grad=True)
    with proxygrad(model, 1.0):
        model(x).sum().backward()
    assert x.grad.allclose(model[0].weight.sum(0).expand(5, 3))  # slope 1: every unit passes the gradient


def test_the_fx_count_follows_a_layer_whose_activation_is_changed():
    """The count is cached per model; changing a layer's activation attribute changes the count."""
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation="gelu")
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), layer)
    assert count_functional(model) == 0
    layer.activation = F.relu
    assert count_functional(model) is None


def test_a_second_swap_of_functional_calls_sees_the_first_like_a_module_swap():
    """leaky:0.3, then a backward rule: the rule refuses the (now Leaky) functional site, as it
    refuses the module twin's LeakyReLU, instead of silently replacing the first swap."""
    twin = nn.Sequential(nn.ReLU())
    swap_activations(twin, "leaky:0.3")
    with pytest.raises(ValueError, match="is a Leaky ReLU of slope 0.3"):
        swap_activations(twin, "guided")
    model = FunctionalOnly()
    swap_activations(model, "leaky:0.3")
    swap_activations(model, "guided")
    with pytest.raises(ValueError, match="'/relu' is a Leaky ReLU of slope 0.3"):
        model(torch.ones(2))


def test_an_error_in_an_earlier_forward_pre_hook_leaves_a_swapped_model_working():
    """A user's pre-hook registered before the swap raises in some forwards: that forward's
    conversion never began, so it must not be ended either (no warning from the exit hook, no user
    count gone negative, nothing left installed); the other forwards are converted."""
    model = Gated()
    fails = [True, False, True, False, False]

    def flaky(module, args):
        if fails.pop(0):
            raise RuntimeError("flaky user hook")

    model.register_forward_pre_hook(flaky)
    swap_activations(model, "proxygrad:0.5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fail in list(fails):
            if fail:
                with pytest.raises(RuntimeError, match="flaky user hook"):
                    grad_of(model)
            else:
                assert grad_of(model) == PROXY
            assert torch._C._len_torch_function_stack() == 0
            assert proxylab_hooks() == []
    assert [str(w.message) for w in caught] == []


# --------------------------------------------------------------------------- threads, hooks, pickling
class Gated(nn.Module):
    """A module ReLU on the first half of ``x`` and F.relu on the second; ``wait()`` (when given)
    runs at the start of the forward, to line threads up (not while fx traces it to count its sites)."""

    def __init__(self, wait=None):
        super().__init__()
        self.r, self.wait = nn.ReLU(), wait

    def forward(self, x):
        if self.wait is not None and not isinstance(x, torch.fx.Proxy):
            self.wait()
        h = len(x) // 2
        return torch.cat([self.r(x[:h]), F.relu(x[h:])])


PLAIN, PROXY = [0.0, 1.0, 0.0, 1.0], [0.5, 1.0, 0.5, 1.0]  # d sum / dx at x = [-1, 2, -3, 4], slope 0.5


def grad_of(model):
    x = torch.tensor([-1.0, 2.0, -3.0, 4.0], requires_grad=True)
    model(x).sum().backward()
    return x.grad.tolist()


def in_threads(*fns):
    """Run each function in its own thread, all at once; their results, or the first error."""
    results, errors = [None] * len(fns), []

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return results


def proxylab_hooks():
    hooks = list(nn.modules.module._global_forward_pre_hooks.values()) + list(
        nn.modules.module._global_forward_hooks.values())
    return [h for h in hooks if isinstance(getattr(h, "__self__", None), function_calls._Controller)]


def test_nothing_stays_installed_after_the_block():
    model = Gated()
    with proxygrad(model, 0.5):
        assert grad_of(model) == PROXY
        assert torch._C._len_torch_function_stack() == 0  # the mode lives only while the model runs
    assert torch._C._len_torch_function_stack() == 0
    assert proxylab_hooks() == []
    assert grad_of(model) == PLAIN  # F.relu is plain ReLU again, inside the model ...
    t = torch.tensor([-1.0, 2.0], requires_grad=True)
    F.relu(t).sum().backward()
    assert t.grad.tolist() == [0.0, 1.0]  # ... and outside it


class FunctionalOnly(nn.Module):
    def forward(self, x):
        return F.relu(x)


def test_the_model_run_in_a_worker_thread_inside_the_block_is_converted():
    model = Gated()
    with proxygrad(model, 0.5):
        (worker,) = in_threads(lambda: grad_of(model))
    assert worker == PROXY  # not the plain gradient on F.relu's half
    only = FunctionalOnly()
    with proxygrad(only, 0.5):  # and no false "no rectifier" error at the end
        (worker,) = in_threads(lambda: grad_of(only))
    assert worker == PROXY
    keys = []
    with torch.no_grad(), rectifier_calls(model, lambda key, out: keys.append(key)):
        in_threads(lambda: model(torch.ones(4)))
    assert sorted(keys) == ["/relu#0", "r#0"]


def test_the_model_in_two_threads_at_once_is_converted_in_both():
    barrier = threading.Barrier(2, timeout=10)  # both threads inside the forward together
    model = Gated(wait=barrier.wait)
    keys = []
    with proxygrad(model, 0.5), rectifier_calls(model, lambda key, out: keys.append(key)):
        assert in_threads(lambda: grad_of(model), lambda: grad_of(model)) == [PROXY, PROXY]
    assert sorted(keys) == ["/relu#0", "/relu#1", "r#0", "r#1"]
    swap_activations(model, "proxygrad:0.5")  # and a permanent conversion, entered by each forward
    assert in_threads(lambda: grad_of(model), lambda: grad_of(model)) == [PROXY, PROXY]
    assert proxylab_hooks() == []


def test_another_threads_module_during_the_forward_changes_nothing():
    started, inside, done = threading.Event(), threading.Event(), threading.Event()

    class Other(nn.Module):  # another thread's module, still running when the model calls F.relu
        def forward(self, t):
            y = F.relu(t)
            inside.set()
            assert done.wait(10)
            return y

    def other():
        assert started.wait(10)  # the model's forward is running
        t = torch.tensor([-1.0, 2.0], requires_grad=True)
        Other()(t).sum().backward()
        return t.grad.tolist()

    model = Gated(wait=lambda: (started.set(), inside.wait(10)))
    thread_result = []
    worker = threading.Thread(target=lambda: thread_result.append(other()))
    with proxygrad(model, 0.5):
        worker.start()
        try:
            assert grad_of(model) == PROXY
        finally:
            done.set()
            worker.join(10)
    assert thread_result == [[0.0, 1.0]]  # not the model: its F.relu is not converted


def test_counting_by_fx_lets_other_threads_run_their_modules():
    """fx patches nn.Module.__call__ and __getattr__ for the whole process while it traces; another
    thread's modules (one of the traced model among them) must run as usual meanwhile."""
    started, done = threading.Event(), threading.Event()

    class Slow(nn.Module):  # holds the trace open until the other thread has run its modules
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            started.set()
            done.wait(10)
            return F.relu(self.lin(x))

    class Scaled(nn.Module):  # called with a keyword argument
        def forward(self, x, scale=1.0):
            return x * scale

    model, other = Slow(), nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    x = torch.ones(1, 2)
    results = []

    def run_other():
        try:
            assert started.wait(10)
            results.extend([other(x), model.lin(x), Scaled()(x, scale=2.0)])
        finally:
            done.set()

    worker = threading.Thread(target=run_other)
    worker.start()
    assert count_functional(model) == 1
    worker.join(10)
    assert [type(r) for r in results] == [torch.Tensor] * 3
    assert torch.equal(results[0], other(x)) and torch.equal(results[1], model.lin(x))
    assert torch.equal(results[2], 2 * x)


def test_a_forward_still_running_in_another_thread_when_the_block_ends_is_refused():
    inside, go_on = threading.Event(), threading.Event()
    model = Gated(wait=lambda: (inside.set(), go_on.wait(10)))
    after = []

    def work():
        grad_of(model)
        after.append(torch._C._len_torch_function_stack())

    worker = threading.Thread(target=work)
    with pytest.raises(RuntimeError, match=r"^Gated was still running in 1 other thread.*thread\.join\(\)"):
        with proxygrad(model, 0.5):
            worker.start()
            assert inside.wait(10)
    assert proxylab_hooks() != []  # kept for the forward in flight ...
    go_on.set()
    worker.join(10)
    assert after == [0]  # ... whose mode ended with it
    assert proxylab_hooks() == []
    model.wait = None
    with proxygrad(model, 0.5):
        assert grad_of(model) == PROXY


def test_entering_a_block_does_not_call_user_hooks_with_fx_proxies():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return F.relu(self.lin(x))

    model = nn.Sequential(Block(), nn.Linear(2, 1))
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(type(args[0])))
    model[0].register_forward_hook(lambda m, args, out: seen.append(type(out)))
    x = torch.tensor([[0.3, -0.2]])
    with proxygrad(model, 0.5):
        y = model(x)
    assert seen == [torch.Tensor, torch.Tensor]  # the real call only: the count traced past the hooks
    assert count_functional(model) == 1
    torch.testing.assert_close(y, model[1](F.relu(model[0].lin(x))))


def test_a_swapped_model_survives_torch_save_and_load(tmp_path):
    f, m = Mixed(), Mixed(modules=True)
    swap_activations(f, "proxygrad:0.3")
    swap_activations(m, "proxygrad:0.3")
    input_grad(f, X)  # its sites are resolved: the replacement modules are saved too
    torch.save(f, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    y, g = input_grad(loaded, X)
    assert torch.equal(y, input_grad(m, X)[0])
    torch.testing.assert_close(g, input_grad(m, X)[1])  # the module twin's proxy gradient
    assert not torch.allclose(g, input_grad(Mixed(), X)[1], rtol=1e-3, atol=1e-6)
    plain = Gated()
    swap_activations(plain, "proxygrad:0.5")
    torch.save(plain, tmp_path / "gated.pt")
    assert grad_of(torch.load(tmp_path / "gated.pt", weights_only=False)) == PROXY
