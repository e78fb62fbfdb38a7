"""The white-image problems reproduce section 3's failures, and ProxyGrad fixes them."""
import pytest
import torch

from proxylab import toys
from proxylab.ascent import normalized_step


def test_sparse_gradients_relu_leaves_negative_pixels_unchanged():
    r = toys.run_toy(toys.sum_problem("relu"), steps=200)
    start, end = r.images[0], r.final
    negative = start <= 0
    assert negative.any()
    assert torch.equal(end[negative], start[negative])
    assert torch.all(end[~negative] == 1.0)
    assert r.fraction < 0.7


@pytest.mark.parametrize("spec", ["leaky:0.05", "leaky:0.2", "proxygrad:0.05", "proxygrad:0.5"])
def test_sparse_gradients_any_positive_slope_reaches_white(spec):
    r = toys.run_toy(toys.sum_problem(spec), steps=1500)
    assert r.fraction >= 0.999
    assert torch.all(r.final > 0.99)


def test_race_of_patterns_leaky_needs_many_more_steps_than_proxygrad():
    leaky = toys.run_toy(toys.sum_problem("leaky:0.01"), steps=1000)
    proxy = toys.run_toy(toys.sum_problem("proxygrad:0.5:0.01"), steps=1000)
    assert proxy.steps_to(0.99) is not None and proxy.steps_to(0.99) < 150
    assert leaky.steps_to(0.99) is None or leaky.steps_to(0.99) > 5 * proxy.steps_to(0.99)
    # same forward function: both values are measured with LReLU_0.01
    assert proxy.optimum == leaky.optimum


def test_local_maxima_network_equals_formula_and_its_derivatives():
    x = toys.random_image(8, seed=3).requires_grad_()
    for a in (0.0, 0.1, 0.3):
        problem = toys.local_maxima_problem("relu" if a == 0 else f"leaky:{a}", b=0.5)
        value = problem(x)
        assert torch.allclose(value, toys.g_formula(x, a, 0.5).sum(), atol=1e-6)
        (grad,) = torch.autograd.grad(value.sum(), x)
        assert torch.allclose(grad, toys.g_derivative(x, a, 0.5), atol=1e-6)


def test_proxygrad_derivative_on_negative_pixels_is_backward_slope_minus_b():
    x = toys.random_image(8, seed=4).requires_grad_()
    value = toys.local_maxima_problem("proxygrad:0.7", b=0.5)(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert torch.allclose(grad[x < 0], torch.tensor(0.7 - 0.5))
    assert torch.allclose(grad[x > 0], torch.tensor(1.0 - 0.7 * 0.5))


@pytest.mark.parametrize("spec", ["relu", "leaky:0.1", "leaky:0.3"])
def test_local_maxima_relu_and_leaky_below_b_stick_at_about_0_7(spec):
    r = toys.run_toy(toys.local_maxima_problem(spec, b=0.5), steps=500)
    assert 0.6 < r.fraction < 0.8
    assert (r.final == -1).any() and (r.final == 1).any()


@pytest.mark.parametrize("backward", [0.6, 1.0, 1.5])
def test_local_maxima_proxygrad_above_b_reaches_the_optimum(backward):
    r = toys.run_toy(toys.local_maxima_problem(f"proxygrad:{backward}", b=0.5), steps=500)
    assert r.fraction >= 0.99


@pytest.mark.parametrize("backward", [0.3, 2.5])
def test_local_maxima_proxygrad_outside_the_window_fails(backward):
    # b < a_b < 1/b is needed: below b black pixels sink, above 1/b white pixels sink
    r = toys.run_toy(toys.local_maxima_problem(f"proxygrad:{backward}", b=0.5), steps=500)
    assert r.fraction < 0.9


def test_conv_problem_white_is_the_global_maximum():
    problem = toys.conv_problem("relu")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (200, 1, 16, 16), generator=g).float() * 2 - 1
    assert problem(x).max() < problem.optimum() - 1e-6


@pytest.mark.parametrize("spec", ["relu", "leaky:0.1"])
def test_conv_problem_ends_in_a_patterned_local_maximum(spec):
    for seed in (0, 1):
        r = toys.run_toy(toys.conv_problem(spec), steps=400, seed=seed)
        assert r.fraction < 0.9
        assert (r.final < -0.9).float().mean() > 0.05 and (r.final > 0.9).float().mean() > 0.3


def test_conv_problem_relu_pattern_is_a_true_local_maximum():
    r = toys.run_toy(toys.conv_problem("relu"), steps=2000, seed=2)
    assert r.fraction < 0.8
    assert r.values[-1] - r.values[200] < 1e-3 * r.optimum  # (almost) no progress in 1800 steps


def test_conv_problem_proxygrad_reaches_white():
    for seed in (0, 1):
        r = toys.run_toy(toys.conv_problem("proxygrad:1.0"), steps=400, seed=seed)
        assert r.fraction >= 0.99


def test_slope_sweep_shape_and_trend():
    fr = toys.slope_sweep(lambda s: toys.local_maxima_problem(f"proxygrad:{s}"), [0.0, 1.0],
                          steps=300, seeds=(0, 1))
    assert fr.shape == (2, 2)
    assert torch.all(fr[1] > fr[0])


def test_slope_sweep_is_run_toy_for_each_slope_and_seed():
    make = lambda s: toys.conv_problem(f"proxygrad:{s}")  # noqa: E731
    fr = toys.slope_sweep(make, [0.3, 0.6], steps=60, seeds=(0, 1, 2), lr=0.3, size=12)
    alone = torch.tensor([[toys.run_toy(make(s), 60, lr=0.3, size=12, seed=seed).fraction for seed in (0, 1, 2)]
                          for s in (0.3, 0.6)])
    assert torch.allclose(fr, alone, atol=1e-6) and len(set(fr.flatten().tolist())) == 6


def test_normalized_step_length_and_dead_gradient():
    x = torch.zeros(2, 1, 4, 4)
    grad = torch.zeros_like(x)
    grad[0] = torch.randn(1, 4, 4)
    out = normalized_step(x, grad, lr=0.5)
    assert torch.allclose(out[0].norm(), torch.tensor(0.5))
    assert torch.equal(out[1], x[1])
    assert normalized_step(x, grad, lr=100.0).abs().max() <= 1.0


def test_forward_backward_table_sparse_forward_dense_backward():
    x = torch.tensor([[-1.0, 2.0], [0.5, -3.0]])
    table = toys.forward_backward_table(x)
    relu_y, relu_g = table["ReLU"]
    pg_y, pg_g = table["ProxyGrad 0.1"]
    leaky_y, leaky_g = table["Leaky ReLU 0.1"]
    assert torch.equal(pg_y, relu_y) and (pg_y == 0).sum() == 2
    assert torch.equal(pg_g, leaky_g) and (pg_g != 0).all()
    assert not torch.equal(leaky_y, relu_y)


def test_bad_b_raises():
    with pytest.raises(ValueError, match="b must lie"):
        toys.local_maxima_problem("relu", b=1.5)


def test_a_toy_result_keeps_the_start_the_end_and_the_asked_steps():
    problem = toys.sum_problem("leaky:0.1")
    r = toys.run_toy(problem, steps=6, lr=0.5, seed=4, snapshot_steps=(2,))
    assert (r.problem, r.spec) == ("sum", "leaky:0.1")
    assert sorted(r.images) == [0, 2, 6] and r.images[0].shape == (16, 16)
    assert torch.equal(r.images[0], toys.random_image(16, seed=4)[0, 0])
    assert r.final is r.images[6] and r.values.shape == (7,)
    with torch.no_grad():
        assert r.values[0].item() == pytest.approx(problem(toys.random_image(16, seed=4)).item(), rel=1e-6)
        assert r.values[-1].item() == pytest.approx(problem(r.final[None, None]).item(), rel=1e-6)
    assert r.optimum == problem.optimum() == pytest.approx(256.0)  # 16 x 16 white pixels, f = Σ x
    assert r.value == r.values[-1].item() and r.fraction == pytest.approx(r.value / 256.0)
    small = toys.run_toy(problem, steps=2, x0=torch.zeros(1, 1, 4, 4))
    assert small.optimum == pytest.approx(16.0) and torch.equal(small.images[0], torch.zeros(4, 4))


def test_steps_to_is_the_first_step_at_the_fraction():
    r = toys.ToyResult("p", "relu", {0: torch.zeros(2, 2), 3: torch.ones(2, 2)},
                       torch.tensor([1.0, 5.0, 9.9, 9.95, 10.0]), optimum=10.0)
    assert torch.equal(r.final, torch.ones(2, 2))  # the image of the last step
    assert r.steps_to(0.5) == 1 and r.steps_to(0.99) == 2 and r.steps_to() == 2 and r.steps_to(1.0) == 4
    assert r.steps_to(1.01) is None and r.fraction == 1.0


def test_random_image_is_seeded_noise_of_std_one_half_on_gray():
    x = toys.random_image(200, seed=1)
    assert x.shape == (1, 1, 200, 200) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, toys.random_image(200, seed=1)) and not torch.equal(x, toys.random_image(200, seed=2))
    assert abs(x.mean().item()) < 0.01
    assert (x.abs() == 1).float().mean().item() == pytest.approx(0.0455, abs=0.005)  # P(|N(0, 0.25)| > 1)
    assert toys.random_image(seed=1).shape == (1, 1, 16, 16)
    assert (toys.random_image(200, seed=1, std=0.1).abs() == 1).sum() == 0


def test_conv_problem_wraps_around_and_refuses_b_outside_0_1():
    problem = toys.conv_problem("leaky:0.1")
    x = toys.random_image(8, seed=5)
    for shift in ((1, 0), (0, 3), (2, 5)):  # circular padding: no borders, so any roll has the same value
        assert problem(torch.roll(x, shift, dims=(-2, -1))).item() == pytest.approx(problem(x).item(), rel=1e-6)
    one = torch.full((1, 1, 8, 8), -1.0)
    one[..., 0, 0] = 1.0  # a white pixel in the corner reaches its wrapped neighbours
    k = toys.CONV_KERNEL
    kx = torch.nn.functional.conv2d(torch.nn.functional.pad(one, (1,) * 4, mode="circular"), k[None, None])
    assert problem(one).item() == pytest.approx(toys.g_formula(kx, 0.1, toys.CONV_B).sum().item(), rel=1e-6)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="b must lie in"):
            toys.conv_problem("relu", b=bad)
        with pytest.raises(ValueError, match="b must lie in"):
            toys.local_maxima_problem("relu", b=bad)
    assert toys.local_maxima_problem("relu").weights_out.tolist() == [1.0, 0.5]  # default b = 1/2


def test_forward_backward_table_passes_the_upstream_gradient_on():
    x = torch.tensor([-1.0, 2.0])
    table = toys.forward_backward_table(x, specs=("proxygrad:0.1",), upstream=torch.tensor([3.0, -2.0]))
    assert list(table) == ["ProxyGrad 0.1"]
    y, g = table["ProxyGrad 0.1"]
    assert y.tolist() == [0.0, 2.0] and torch.allclose(g, torch.tensor([0.3, -2.0]))


def test_problems_are_named_for_plots_and_tables():
    assert [p.name for p in (toys.sum_problem("relu"), toys.local_maxima_problem("relu"), toys.conv_problem("relu"))] == [
        "sum", "local maxima", "convolution"]


def test_slope_sweep_is_run_toy_per_slope_and_seed():
    make = lambda s: toys.local_maxima_problem(f"proxygrad:{s}")  # noqa: E731
    fr = toys.slope_sweep(make, [0.2, 0.8], steps=7, seeds=(0, 3), lr=0.2, size=8)
    for i, s in enumerate((0.2, 0.8)):
        for j, seed in enumerate((0, 3)):
            assert fr[i, j].item() == pytest.approx(toys.run_toy(make(s), 7, lr=0.2, size=8, seed=seed).fraction, abs=1e-5)
    race = lambda s: toys.sum_problem(f"leaky:{s}")  # noqa: E731  (still climbing at step 100)
    default = toys.slope_sweep(race, [0.01])  # 100 steps from seed 0
    assert default.shape == (1, 1) and default[0, 0].item() == pytest.approx(toys.run_toy(race(0.01), 100).fraction, abs=1e-5)
    assert abs(default[0, 0].item() - toys.run_toy(race(0.01), 101).fraction) > 1e-4  # one step more: +6e-4


def test_run_toy_defaults_to_100_steps_from_seed_0():
    r = toys.run_toy(toys.sum_problem("leaky:0.01"))
    assert r.values.shape == (101,) and sorted(r.images) == [0, 100]
    assert torch.equal(r.images[0], toys.random_image(seed=0)[0, 0])
