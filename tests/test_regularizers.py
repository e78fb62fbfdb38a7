"""The regularization steps on their own (small images, no model): each does what its docstring
says, refuses the settings it says it refuses, and the seeded random ones draw over their whole
range. How AM calls them is tested in tests/test_am.py."""
import math

import pytest
import torch
from torch.nn import functional as F

from proxylab import regularizers as R


def images(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1


def reference_blur(x, sigma):
    """A separable Gaussian blur written out: taps at -r..r with r = ceil(3 sigma) (at least 1),
    weights exp(-t²/2σ²) normalized, reflect padding."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    w = torch.exp(-t ** 2 / (2 * sigma ** 2))
    w = w / w.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0, 1.4])
def test_gaussian_blur_is_the_written_out_separable_blur(sigma):
    x = images(size=20)
    assert torch.allclose(R.gaussian_blur(x, sigma), reference_blur(x, sigma), atol=1e-6)


def test_no_blur_at_sigma_zero_and_blur_every_k_steps():
    x = images()
    assert R.gaussian_blur(x, 0.0) is x
    assert torch.equal(R.Blur(0.0)(x, 1), x)
    blur = R.Blur(1.0, every=3)
    for step in range(1, 8):
        expected = reference_blur(x, 1.0) if step % 3 == 0 else x
        assert torch.allclose(blur(x, step), expected, atol=1e-6), step
    assert torch.allclose(R.Blur()(x, 5), reference_blur(x, 0.5), atol=1e-6)  # default: sigma 0.5, every step


def test_l2_decay_pulls_towards_gray():
    x = images()
    assert torch.allclose(R.L2Decay(0.25)(x, 1), 0.75 * x)
    assert torch.allclose(R.L2Decay()(x, 1), 0.99 * x)  # default decay 0.01
    assert torch.equal(R.L2Decay(0.0)(x, 1), x)


@pytest.mark.parametrize("make", [lambda: R.L2Decay(1.0), lambda: R.L2Decay(-0.01), lambda: R.Blur(-0.1),
                                  lambda: R.Blur(1.0, every=0), lambda: R.ClipNorm(100.0), lambda: R.ClipNorm(-1.0),
                                  lambda: R.ClipContribution(100.0), lambda: R.ClipContribution(-1.0)])
def test_settings_out_of_range_are_refused(make):
    with pytest.raises(ValueError, match="must be in|need sigma"):
        make()


def test_the_edges_of_the_ranges_are_accepted():
    x = images()
    for reg in (R.L2Decay(0.0), R.Blur(0.0, every=1), R.ClipNorm(0.0), R.ClipContribution(0.0)):
        assert torch.equal(reg(x, 1, torch.ones_like(x)), x)  # the weakest setting changes nothing


def distinct_norm_images(n=2, size=40, seed=0):
    """Images whose pixels all have different RGB norms (a random permutation of the radii)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        radius = (torch.randperm(size * size, generator=g).double() + 1) / (size * size)
        direction = torch.randn(3, size * size, generator=g, dtype=torch.float64)
        direction = direction / direction.norm(dim=0)
        out.append((direction * radius).view(3, size, size))
    return torch.stack(out)


@pytest.mark.parametrize("percentile", [10.0, 25.0, 50.0])
def test_clip_norm_zeroes_exactly_the_lowest_percentile_of_rgb_norms(percentile):
    x = distinct_norm_images()
    out = R.ClipNorm(percentile)(x, 1)
    n = x.shape[-1] * x.shape[-2]
    for img, o in zip(x, out):
        norms, zeroed = img.norm(dim=0), (o == 0).all(dim=0)
        assert int(zeroed.sum()) == round(n * percentile / 100)
        assert norms[zeroed].max() < norms[~zeroed].min()
        assert torch.equal(o[:, ~zeroed], img[:, ~zeroed])
    assert torch.equal(R.ClipNorm()(x, 1), R.ClipNorm(10.0)(x, 1))  # default: 10 %


def test_clip_contribution_uses_the_size_of_the_signed_channel_sum():
    """The contribution is |sum_c x_c grad_c|: a pixel whose channels cancel contributes nothing,
    one with a large negative sum contributes much."""
    x = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    grad = torch.zeros_like(x)
    grad[0, :, 0, 0] = torch.tensor([1.0, -1.0, 0.0])   # cancels: contribution 0
    grad[0, :, 0, 1] = torch.tensor([-3.0, -3.0, -3.0])  # -9: contribution 9
    grad[0, :, 1, 0] = torch.tensor([0.5, 0.5, 0.5])     # 1.5
    grad[0, :, 1, 1] = torch.tensor([1.0, 1.0, 0.0])     # 2
    out = R.ClipContribution(50.0)(x, 1, grad)
    assert (out[0, :, 0, 0] == 0).all() and (out[0, :, 1, 0] == 0).all()
    assert torch.equal(out[0, :, 0, 1], x[0, :, 0, 1]) and torch.equal(out[0, :, 1, 1], x[0, :, 1, 1])
    x = distinct_norm_images()
    assert torch.equal(R.ClipContribution()(x, 1, x), R.ClipNorm()(x, 1))  # default 10 %; x·x = |x|²
    assert R.ClipContribution(50.0)(x, 1) is x  # no gradient: nothing to clip by


def bright_spot(size=33):
    x = -torch.ones(1, 3, size, size)
    x[..., size // 2, size - 4] = 1.0  # one bright pixel on the horizontal through the centre
    return x


def angle_of(x):
    """The angle (degrees, counter-clockwise as seen) of the bright spot's centroid around the centre."""
    w = (x[0].mean(dim=0) + 1).clamp_min(0)
    size = x.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size) - size // 2, torch.arange(size) - size // 2, indexing="ij")
    cy, cx = (w * ys).sum() / w.sum(), (w * xs).sum() / w.sum()
    return math.degrees(math.atan2(-cy.item(), cx.item()))


def test_rotate_draws_angles_over_plus_minus_degrees_seeded():
    x = bright_spot()
    rot = R.Rotate(10.0, seed=3)
    angles = [angle_of(rot(x, step)) for step in range(40)]
    assert all(abs(a) <= 10.5 for a in angles)
    assert min(angles) < -5 and max(angles) > 5  # both ways, and most of the range
    assert torch.equal(R.Rotate(10.0, seed=3)(x, 0), R.Rotate(10.0, seed=3)(x, 0))
    assert not torch.equal(R.Rotate(10.0, seed=4)(x, 0), R.Rotate(10.0, seed=3)(x, 0))
    default = [angle_of(R.Rotate()(x, 0))] + [angle_of(R.Rotate(seed=s)(x, 0)) for s in range(1, 30)]
    assert max(map(abs, default)) <= 2.5 and max(map(abs, default)) > 1.0  # default: at most ±2°
    assert torch.equal(R.Rotate()(x, 0), R.Rotate(2.0, seed=0)(x, 0))


def test_jitter_rolls_by_every_shift_up_to_pixels_and_no_further():
    x = images(n=1, size=12)
    shifts = set()
    jitter = R.Jitter(1, seed=0)
    for step in range(200):
        out = jitter(x, step)
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.equal(out, torch.roll(x, (dy, dx), dims=(-2, -1)))]
        assert len(found) == 1
        shifts.add(found[0])
    assert shifts == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert torch.equal(R.Jitter()(x, 0), R.Jitter(2, seed=0)(x, 0))
    a, b = R.Jitter(3, seed=5), R.Jitter(3, seed=5)  # seeded: the same shifts, call after call
    torch.manual_seed(1)
    first = [a(x, step) for step in range(10)]
    torch.manual_seed(2)
    assert all(torch.equal(u, b(x, step)) for step, u in enumerate(first))


def test_reprs_name_their_settings():
    assert [repr(r) for r in (R.L2Decay(0.05), R.Blur(0.7, every=3), R.ClipNorm(12.5), R.ClipContribution(5),
                              R.Rotate(1.5), R.Jitter(3))] == [
        "L2Decay(0.05)", "Blur(sigma=0.7, every=3)", "ClipNorm(12.5%)", "ClipContribution(5%)", "Rotate(±1.5°)",
        "Jitter(3px)"]


def test_paper_and_yosinski_settings():
    """The paper's R: a weak blur (sigma 0.5, every step), then a rotation of at most ±1° seeded by
    ``seed``; Yosinski's four in their order (decay, blur every 4 steps, norm and contribution clipping)."""
    x = bright_spot()
    blur, rot = R.paper_regularization(seed=5)
    assert (type(blur), blur.sigma, blur.every) == (R.Blur, 0.5, 1)
    assert type(rot) is R.Rotate and rot.degrees == 1.0
    assert torch.equal(rot(x, 1), R.Rotate(1.0, seed=5)(x, 1))
    assert torch.equal(R.paper_regularization()[1](x, 1), R.Rotate(1.0, seed=0)(x, 1))
    y = R.yosinski()
    assert [type(r) for r in y] == [R.L2Decay, R.Blur, R.ClipNorm, R.ClipContribution]
    assert (y[0].decay, y[1].sigma, y[1].every, y[2].percentile, y[3].percentile) == (0.01, 0.5, 4, 10.0, 10.0)
