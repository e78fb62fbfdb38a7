"""The AM engine on small real models (fast), plus the pretrained EfficientNet-Lite0 where it matters."""
import json

import pytest
import torch
from torch import nn

import proxylab
from proxylab import am, models, regularizers, rules
from proxylab.ascent import normalized_step
from proxylab.cli import main as cli


class TinyNet(nn.Module):
    """A small ReLU CNN with fixed weights: 3 -> 8 -> 16 channels, 5 classes."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny():
    return TinyNet().eval().requires_grad_(False)


@pytest.fixture(scope="module")
def lite():
    return models.imagenet_model("efficientnet-lite0", device="cpu")


def test_scores_increase_for_relu_on_a_real_model(lite):
    classes = [models.class_index(c) for c in models.PAPER_CLASSES[:4]]
    r = am.visualize(lite, classes, "relu", steps=8, size=96, progress=False)
    assert r.scores.shape == (9, 4)
    mean = r.scores.mean(dim=1)
    assert mean[-1] > mean[0] + 5
    assert (mean[2:] > mean[0]).all() and mean[4:].mean() > mean[1:4].mean()


def test_batched_equals_per_image_with_the_same_seeds(tiny):
    batched = am.visualize(tiny, [0, 3, 4], "proxygrad:0.2", steps=5, size=32, seed=7, progress=False)
    for i, cls in enumerate([0, 3, 4]):
        single = am.visualize(tiny, [cls], "proxygrad:0.2", steps=5, size=32, seed=7 + i, progress=False)
        assert torch.allclose(single.images[0], batched.images[i], atol=1e-5)
        assert torch.allclose(single.scores[:, 0], batched.scores[:, i], atol=1e-4)


def test_reported_score_is_the_original_networks_even_for_leaky(tiny):
    r = am.visualize(tiny, [1, 2], "leaky:0.5", steps=4, size=32, progress=False)
    with torch.no_grad():
        original = tiny(r.images)[torch.arange(2), torch.tensor([1, 2])]
        leaky = am.gradient_network(tiny, "leaky:0.5")
        with leaky as (twin, same):
            assert not same
            proxy_scores = twin(r.images)[torch.arange(2), torch.tensor([1, 2])]
    assert torch.allclose(r.final, original, atol=1e-5)
    assert not torch.allclose(r.final, proxy_scores, atol=1e-3)
    assert all(isinstance(m, nn.ReLU) for m in tiny.features if not isinstance(m, (nn.Conv2d, nn.MaxPool2d)))


class Recording:
    """A regularizer that records what it is called with and scales the image by ``factor``."""

    def __init__(self, name, calls, factor=0.5):
        self.name, self.calls, self.factor = name, calls, factor

    def __call__(self, x, step, grad=None):
        self.calls.append((self.name, step, x.clone(), None if grad is None else grad.clone()))
        return x * self.factor


def test_regularizers_run_after_each_update_in_order_and_their_output_is_kept(tiny):
    calls = []
    x0 = am.initial_images(2, 32, seed=3)
    r = am.visualize(tiny, [0, 1], "relu", steps=4, lr=0.05, size=32, x0=x0,
                     regularizers=[Recording("a", calls, 0.5), Recording("b", calls, 0.9)], progress=False)
    assert [(name, step) for name, step, _, _ in calls] == [(n, s) for s in (1, 2, 3, 4) for n in "ab"]
    # step 1: "a" gets the first normalized update of x0 with that step's gradient, "b" gets a's output
    x = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(tiny(x)[[0, 1], [0, 1]].sum(), x)
    assert torch.allclose(calls[0][3], grad, atol=1e-6)
    assert torch.allclose(calls[0][2], normalized_step(x0, grad, 0.05 * (3 * 32 * 32) ** 0.5), atol=1e-6)
    assert torch.allclose(calls[1][2], 0.5 * calls[0][2])
    assert torch.allclose(r.images, 0.9 * calls[-1][2])  # the last regularizer's output is the result
    with torch.no_grad():
        assert torch.allclose(r.final, tiny(r.images)[[0, 1], [0, 1]], atol=1e-5)
    plain = am.visualize(tiny, [0, 1], "relu", steps=4, lr=0.05, size=32, x0=x0, progress=False)
    for reg in (regularizers.L2Decay(0.3), regularizers.Blur(1.0)):  # real ones change the images
        regularized = am.visualize(tiny, [0, 1], "relu", steps=4, lr=0.05, size=32, x0=x0, regularizers=[reg],
                                   progress=False)
        assert (regularized.images - plain.images).abs().max() > 0.05


def test_a_regularizer_that_leaves_the_box_is_clamped_after_it(tiny):
    """The clamp to [-1, 1] comes after the regularizer: one that pushes every pixel far above 1
    leaves an all-white image, and the score is the original network's at that clamped image."""
    r = am.visualize(tiny, [0, 1], "proxygrad:0.1", steps=3, size=32,
                     regularizers=[lambda x, step, grad: x + 5], progress=False)
    assert torch.equal(r.images, torch.ones_like(r.images))
    with torch.no_grad():
        white = tiny(torch.ones(2, 3, 32, 32))[[0, 1], [0, 1]]
    assert torch.allclose(r.scores[1:], white.expand(3, 2), atol=1e-5)
    regs = [regularizers.L2Decay(0.1), regularizers.Blur(1.0, every=2), regularizers.ClipNorm(20),
            regularizers.ClipContribution(20), regularizers.Rotate(5), regularizers.Jitter(2)]
    r = am.visualize(tiny, [0, 1], "proxygrad:0.1", steps=6, lr=0.5, size=32, regularizers=regs, progress=False)
    assert r.images.min() >= -1 and r.images.max() <= 1


def test_channel_and_unit_targets(tiny):
    target = am.channel_target("features.3", [2, 5])
    r = am.visualize(tiny, target, "relu", steps=5, size=32, progress=False)
    assert r.final.shape == (2,) and (r.final > r.scores[0]).all()
    unit = am.channel_target("features.3", [1], position=(4, 4))
    r = am.visualize(tiny, unit, "proxygrad:0.3", steps=3, size=32, progress=False)
    with torch.no_grad():  # the score is that unit's pre-activation in the original network
        conv = tiny.features[:4](r.images)
    assert r.final.shape == (1,) and r.final[0].item() == pytest.approx(conv[0, 1, 4, 4].item(), abs=1e-5)
    row_col = am.visualize(tiny, am.channel_target("features.3", [1], position=(2, 5)), "relu", steps=1, size=32,
                           progress=False, x0=r.images)
    assert row_col.scores[0, 0].item() == pytest.approx(conv[0, 1, 2, 5].item(), abs=1e-5)  # (row 2, column 5)
    channel = am.visualize(tiny, target, "relu", steps=1, size=32, progress=False, x0=r.images.expand(2, -1, -1, -1))
    assert channel.scores[0].tolist() == pytest.approx(conv[0, [2, 5]].mean(dim=(1, 2)).tolist(), abs=1e-5)


def test_regularizers_each_do_what_they_say():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    assert torch.allclose(regularizers.L2Decay(0.1)(x, 1), 0.9 * x)
    blurred = regularizers.Blur(1.0)(x, 1)
    assert blurred.var() < x.var() and torch.allclose(blurred.mean(), x.mean(), atol=0.05)
    assert torch.equal(regularizers.Blur(1.0, every=3)(x, 1), x)  # not on this step
    clipped = regularizers.ClipNorm(25)(x, 1)
    for img, out in zip(x, clipped):  # per image: the 25 % of pixels with the smallest RGB norm
        norms, zeroed = img.norm(dim=0), (out == 0).all(dim=0)
        assert zeroed.float().mean().item() == pytest.approx(0.25, abs=0.01)
        assert norms[zeroed].max() <= norms[~zeroed].min()
        assert torch.equal(out[:, ~zeroed], img[:, ~zeroed])
    grad = torch.zeros_like(x)
    grad[:, :, :8] = 1.0  # only the top half contributes
    contrib = regularizers.ClipContribution(50)(x, 1, grad)
    assert (contrib[:, :, 8:] == 0).all() and torch.equal(contrib[:, :, :8], x[:, :, :8])
    rolled = regularizers.Jitter(3, seed=1)(x, 1)
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
              if torch.equal(rolled, torch.roll(x, (dy, dx), dims=(-2, -1)))]
    assert len(shifts) == 1
    assert regularizers.Rotate(0.0)(x, 1).sub(x).abs().max() < 1e-5


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps"), (dict(spec="proxygrad:-1"), ">= 0"), (dict(size=7), "image size"),
    (dict(spec="foo"), "unknown activation"),
])
def test_clear_errors(tiny, kwargs, message):
    with pytest.raises(ValueError, match=message):
        am.visualize(tiny, [0], **{"steps": 2, "size": 32, "progress": False, **kwargs})


def test_wrong_x0_size(tiny):
    with pytest.raises(ValueError, match="expected"):
        am.visualize(tiny, [0], steps=1, size=32, x0=torch.zeros(1, 3, 40, 40), progress=False)


@pytest.mark.parametrize("name, index", [("pelican", 144), ("billiard table", 736), ("Pool_Table", 736),
                                         ("analog clock", 409), ("lion", 291), ("king of beasts", 291),
                                         ("12", 12), (943, 943), ("crane", 517)])
def test_class_lookup(name, index):
    assert models.class_index(name) == index


def test_unknown_class_gives_closest_matches():
    with pytest.raises(ValueError, match="closest matches: 'pelican'"):
        models.class_index("pelicann")
    with pytest.raises(ValueError, match="out of range"):
        models.class_index(1000)


def test_resnet18_without_weights_names_the_offline_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache; the download fails offline
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "get_state_dict", offline)
    with pytest.raises(models.ModelUnavailable, match="efficientnet-lite0"):
        models.imagenet_model("resnet18")


def test_model_takes_images_in_minus_one_one(lite):
    """EfficientNet-Lite was trained on (pixel - 127) / 128 of 8-bit pixels: an image in [-1, 1] must
    reach the network as that."""
    pixels = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float()
    x = pixels / 255 * 2 - 1  # how an 8-bit image enters AM (proxylab.explorer.load_image)
    seen = []
    handle = lite.net.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    try:
        with torch.no_grad():
            lite(x)
    finally:
        handle.remove()
    # 1e-3: the wrapper's 0.498 / 0.502 round 127 / 255 and 128 / 255; a mean and std of 0.5 would be 8e-3 off
    assert torch.allclose(seen[0], (pixels - 127) / 128, atol=1e-3)


def test_resnet18_gets_torchvisions_imagenet_normalization(monkeypatch):
    """ResNet18's weights expect torchvision's ImageNet normalization of pixel / 255."""
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = weights.transforms()  # what torchvision feeds these weights: pixel / 255, then Normalize
    monkeypatch.setattr(torchvision.models, "resnet18", lambda weights: nn.Conv2d(3, 3, 1))  # no download
    model = models.imagenet_model("resnet18", device="cpu")
    seen = []
    model.net.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        model(x)
    expected = torchvision.transforms.functional.normalize((x + 1) / 2, reference.mean, reference.std)
    assert torch.allclose(seen[0], expected, atol=1e-5)


def test_lite_recognizes_a_real_photo_in_minus_one_one(lite):
    from proxylab.explorer import sample_images

    photo = sample_images(224)["Grace Hopper"]  # her ImageNet label: military uniform
    with torch.no_grad():
        probs = lite(photo[None]).softmax(dim=1)[0]
    assert probs.argmax().item() == models.class_index("military uniform") and probs.max() > 0.25


def test_slope_diagnostic_on_a_real_model(lite):
    x = am.initial_images(2, 64, seed=0)
    d = am.slope_diagnostic(lite, x, [144, 291], [0.01, 0.1, 0.3])
    assert d.gain.shape == (3, 2) and d.layer_gain.shape[0] == 3
    assert len(d.layer_names) == d.layer_gain.shape[1] >= 17
    assert d.cosine[0].mean() > 0.9 and d.cosine[2].mean() < d.cosine[0].mean()
    assert d.gain[2].median() > d.gain[0].median()
    assert torch.allclose(d.layer_gain[:, -1], torch.ones(3), atol=1e-4)  # the head's own gradient is exact


def test_suggest_slope_keeps_slopes_by_mean_cosine_and_median_gain():
    def diagnostic(rows):  # slope -> (cosine per image, gain per image)
        return am.SlopeDiagnostic(list(rows), torch.tensor([g for _, g in rows.values()], dtype=torch.float64),
                                  torch.tensor([c for c, _ in rows.values()], dtype=torch.float64), [],
                                  torch.zeros(len(rows), 0), torch.zeros(len(rows), 0))

    d = diagnostic({0.0: ([1.0] * 3, [1.0] * 3),  # qualifies, but slope 0 is no proxy
                    0.01: ([0.99] * 3, [1.1] * 3),
                    0.05: ([0.75] * 3, [1.0, 1.0, 100.0]),  # cosine at the bound; median gain 1 (mean 34)
                    0.1: ([0.9, 0.9, 0.0], [1.0] * 3),  # median cosine 0.9 but mean 0.6: out
                    0.3: ([0.95] * 3, [3.0] * 3),  # gain at the bound
                    0.5: ([0.95] * 3, [3.5] * 3)})  # gain too large
    assert am.suggest_slope(d, min_cosine=0.75, max_gain=3.0) == pytest.approx((0.075, 0.3))
    assert am.suggest_slope(d) == pytest.approx((0.075, 0.3))  # the defaults: cosine >= 0.8, gain <= 3
    assert am.suggest_slope(d, min_cosine=0.75, max_gain=2.9) == pytest.approx((0.0125, 0.05))
    assert am.suggest_slope(d, min_cosine=0.8, max_gain=2.0) == pytest.approx((0.0025, 0.01))
    assert am.suggest_slope(d, min_cosine=0.995, max_gain=3.0) is None  # only slope 0 is that close


def test_cli_visualize_writes_pngs_grid_and_results(tmp_path, capsys):
    out = tmp_path / "vis"
    rc = cli(["visualize", "--model", "efficientnet-lite0", "--classes", "pelican,billiard table",
              "--steps", "2", "--size", "64", "--activation", "proxygrad:0.1", "--seed", "0",
              "--out", str(out), "--quiet"])
    assert rc == 0
    records = json.loads((out / "results.json").read_text())
    assert [r["class_index"] for r in records] == [144, 736]
    assert {"class", "class_index", "activation", "steps", "logit"} <= set(records[0])
    assert records[1]["class"] == "pool table" and records[0]["activation"] == "proxygrad:0.1"
    assert (out / "grid.png").stat().st_size > 0
    assert sorted(p.name for p in out.glob("*.png")) == ["144_pelican.png", "736_pool_table.png", "grid.png"]


@pytest.mark.parametrize("args, message", [(["--classes", "pelicann"], "closest matches"),
                                           (["--activation", "proxygrad:"], "not a number"),
                                           (["--steps", "0"], "steps")])
def test_cli_visualize_bad_input(tmp_path, capsys, args, message):
    rc = cli(["visualize", "--out", str(tmp_path / "x"), "--size", "64", "--quiet", *args])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_paper_regularization_blurs_weakly_and_rotates_within_one_degree():
    from torchvision.transforms.v2 import functional as TF

    blur, rotate = regularizers.paper_regularization(seed=4)
    point = torch.zeros(1, 1, 5, 5)
    point[..., 2, 2] = 1.0
    row = blur(point, 1)[0, 0, 2, 1:4]
    assert torch.allclose(row / row[1], torch.tensor([0.107, 0.786, 0.107]) / 0.786, atol=2e-3)  # sigma 0.5
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    angles = (torch.rand(5, generator=torch.Generator().manual_seed(4)) * 2 - 1).tolist()  # the rotation's draws
    assert max(abs(a) for a in angles) <= 1.0 and any(abs(a) > 0.1 for a in angles)
    for angle in angles:
        out = rotate(x, 1)
        assert torch.allclose(out, TF.rotate(x, angle, interpolation=TF.InterpolationMode.BILINEAR))
        assert not torch.allclose(out, x, atol=1e-3)  # a real rotation, not a no-op


class BNNet(nn.Module):
    """A small CNN with BatchNorm (whose train mode would mix the images of a batch)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.body[1].running_mean.normal_()
        self.body[1].running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.body(x)


def test_visualize_runs_a_training_mode_model_in_eval_and_restores_its_mode():
    model = BNNet().train()
    stats = model.body[1].running_mean.clone()
    batched = am.visualize(model, [0, 3], "proxygrad:0.2", steps=4, size=32, seed=5, progress=False)
    assert model.training and model.body[1].training  # its mode is given back
    assert torch.equal(model.body[1].running_mean, stats)  # running statistics untouched
    for i, cls in enumerate([0, 3]):
        single = am.visualize(model, [cls], "proxygrad:0.2", steps=4, size=32, seed=5 + i, progress=False)
        assert torch.allclose(single.images[0], batched.images[i], atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(batched.final, model.eval()(batched.images)[[0, 1], [0, 3]], atol=1e-5)


def test_slope_diagnostic_compares_with_the_models_own_gradient():
    model = BNNet().eval()
    from proxylab import swap_activations
    swap_activations(model, "leaky:0.2")
    x = am.initial_images(3, 32, seed=0)
    d = am.slope_diagnostic(model, x, [0, 1, 2], [0.2, 0.05, 0.5])
    assert torch.allclose(d.cosine[0], torch.ones(3), atol=1e-6)  # at its own slope the proxy is exact
    assert torch.allclose(d.gain[0], torch.ones(3), atol=1e-6)
    assert (d.cosine[1:] < 1 - 1e-4).all()


def test_lucent_render_scores_what_it_optimized(tiny):
    pytest.importorskip("lucent")
    from proxylab import with_lucent

    sizes = []
    handle = tiny.features[0].register_forward_pre_hook(lambda m, inp: sizes.append(inp[0].shape[-1]))
    try:
        images, scores = with_lucent.render(tiny, [1, 2], "proxygrad:0.1", steps=3, size=64, seed=0)
    finally:
        handle.remove()
    assert images.shape == (2, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert set(sizes) == {64}  # optimized at 64 px (lucent alone would upsample to 224), scored at 64 px
    with torch.no_grad():
        assert torch.allclose(scores, tiny(images)[[0, 1], [1, 2]], atol=1e-4)
    relu_images, _ = with_lucent.render(tiny, [1, 2], "relu", steps=3, size=64, seed=0)
    assert not torch.equal(relu_images, images)


def test_slope_verdict_places_the_best_slope_against_the_range():
    slopes = [0.0, 0.01, 0.05, 0.1, 0.2, 0.5]
    curve = torch.tensor([[0.0, 10.0], [0.0, 11.0], [0.0, 12.0], [0.0, 15.0], [0.0, 9.0], [0.0, 1.0]])
    v = am.slope_verdict(curve, slopes, (0.0125, 0.05), step=1)
    assert v["best_slope"] == 0.1 and v["ratio"] == pytest.approx(1.5) and v["where"] == "next to"
    assert am.slope_verdict(curve, slopes, (0.05, 0.2), step=1)["where"] == "inside"
    assert am.slope_verdict(curve, slopes, (0.5, 0.5), step=1)["where"] == "far from"
    assert am.slope_verdict(curve, slopes, None, step=1)["where"] == "no suggestion"
    with pytest.raises(ValueError, match=r"^the first slope of a sweep must be 0 \(the ReLU baseline\)$"):
        am.slope_verdict(curve[1:], slopes[1:], None, step=1)


@pytest.mark.parametrize("suggested, where", [
    ((0.1, 0.2), "inside"),  # the best slope on the range's lower bound is inside it
    ((0.04, 0.06), "next to"),  # the slope below the best (0.05) strictly inside the range
    ((0.2, 0.3), "next to"),  # the slope above the best (0.2) on the range's lower bound
    ((0.3, 0.4), "far from"),  # no grid slope inside: not next to, although the range starts near
])
def test_where_in_reads_both_bounds_and_both_neighbours(suggested, where):
    grid = [0.01, 0.05, 0.1, 0.2, 0.5]
    assert am.where_in(grid, 2, suggested) == where


def test_where_in_at_the_ends_of_the_grid():
    grid = [0.01, 0.05, 0.1, 0.2, 0.5]
    assert am.where_in(grid, 4, (0.01, 0.05)) == "far from"  # the last slope has one neighbour only
    assert am.where_in(grid, 4, (0.15, 0.25)) == "next to"
    assert am.where_in(grid, 0, (0.05, 0.05)) == "next to" and am.where_in(grid, 0, (0.1, 0.5)) == "far from"


def test_partial_conversions_change_only_the_chosen_rectifiers(tiny):
    out = am.partial_conversions(tiny, [0, 1], [0.3], {"all": None, "none": lambda name: False}, steps=3, size=32)
    relu = am.visualize(tiny, [0, 1], "relu", steps=3, size=32, progress=False).final.mean().item()
    assert out[(0.3, "none")] == pytest.approx(relu, abs=1e-6) and out[(0.3, "all")] != pytest.approx(relu, abs=1e-4)


def test_evaluating_restores_each_modules_own_mode():
    model = BNNet().train()
    model.body[1].eval()  # a frozen BatchNorm inside a training model
    with am.evaluating(model) as m:
        assert m is model and not any(x.training for x in model.modules())
    assert model.training and not model.body[1].training and model.body[0].training
    with pytest.raises(RuntimeError, match="boom"):
        with am.evaluating(model):
            raise RuntimeError("boom")
    assert model.training and not model.body[1].training


def test_initial_images_are_gray_plus_seeded_noise_per_image():
    x = am.initial_images(3, 40, seed=7)
    assert x.shape == (3, 3, 40, 40) and x.min() >= -1 and x.max() <= 1
    for i in range(3):  # image i is seeded with seed + i
        assert torch.equal(x[i], am.initial_images(1, 40, seed=7 + i)[0])
    assert x.std().item() == pytest.approx(am.DEFAULT_INIT_STD, rel=0.05) and abs(x.mean().item()) < 0.01
    wide = am.initial_images(1, 40, seed=7, init_std=0.8, channels=1)
    assert wide.shape == (1, 1, 40, 40) and (wide.abs() == 1).any()  # clipped to the box
    assert torch.equal(wide[0], (torch.randn(1, 40, 40, generator=torch.Generator().manual_seed(7)) * 0.8).clamp(-1, 1))


def test_visualize_starts_from_the_seeded_noise_of_its_init_std(tiny):
    r = am.visualize(tiny, [0, 1], steps=1, size=32, seed=7, init_std=0.5, snapshot_steps=(0,), progress=False)
    assert torch.equal(r.snapshots[0], am.initial_images(2, 32, seed=7, init_std=0.5))


def test_image_size_and_steps_must_be_whole_numbers_in_range(tiny):
    r = am.visualize(tiny, [0], steps=1, size=32, progress=False)  # 32 px is the smallest size
    assert r.images.shape == (1, 3, 32, 32) and r.steps == 1 and r.targets == [0] and r.spec == "relu"
    for size in (31, 32.0, "64"):
        with pytest.raises(ValueError, match=r"image size must be an integer >= 32 pixels, got .*expect 224"):
            am.visualize(tiny, [0], steps=1, size=size, progress=False)
    tiny.input_size = 96
    try:
        with pytest.raises(ValueError, match="ImageNet models expect 96"):
            am.visualize(tiny, [0], steps=1, size=16, progress=False)
    finally:
        del tiny.input_size
    for steps in (0, -1, 2.0):
        with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
            am.visualize(tiny, [0], steps=steps, size=32, progress=False)
    with pytest.raises(ValueError, match=r"x0 has size \(32, 40\), expected \(40, 40\)"):
        am.visualize(tiny, [0], steps=1, size=40, x0=torch.zeros(1, 3, 32, 40), progress=False)
    with pytest.raises(ValueError, match=r"x0 has size \(40, 32\), expected \(40, 40\)"):  # the width too
        am.visualize(tiny, [0], steps=1, size=40, x0=torch.zeros(1, 3, 40, 32), progress=False)


def test_visualize_defaults_ten_steps_at_224_pixels_with_a_progress_bar(tiny, capsys):
    r = am.visualize(tiny, [0])  # ten relu steps from 224-px seeded noise, a bar on stderr
    assert r.spec == "relu" and r.steps == 10 and r.scores.shape == (11, 1) and r.images.shape == (1, 3, 224, 224)
    assert "AM relu" in capsys.readouterr().err
    am.visualize(tiny, [0], steps=1, size=32, progress=False)
    assert capsys.readouterr().err == ""


def test_the_step_length_is_lr_times_the_root_of_the_pixel_count(tiny):
    x0 = am.initial_images(1, 32, seed=1)
    r = am.visualize(tiny, [2], "relu", steps=1, lr=0.01, size=32, x0=x0, progress=False, snapshot_steps=(0, 1))
    moved = r.images - x0
    assert moved.norm().item() == pytest.approx(0.01 * (3 * 32 * 32) ** 0.5, rel=1e-4)  # nothing clipped
    assert sorted(r.snapshots) == [0, 1] and torch.equal(r.snapshots[0], x0) and torch.equal(r.snapshots[1], r.images)


@pytest.mark.parametrize("spec", ["noisy:0.5"])
def test_am_on_a_model_already_swapped_to_a_rule_runs_the_rule_as_its_spec_would(spec):
    """The AM loop tells every backward rule of the gradient network the step and the image seeds,
    also rules swapped in for good: "relu" AM on a model swapped to the noisy rule equals that rule's
    AM on the original (its noise is drawn per image and step; untold, every step drew step 0's)."""
    original = TinyNet().eval().requires_grad_(False)
    swapped_for_good = TinyNet().eval().requires_grad_(False)
    proxylab.swap_activations(swapped_for_good, spec)
    a = am.visualize(original, [0, 1], spec, steps=20, size=32, seed=3, progress=False)
    b = am.visualize(swapped_for_good, [0, 1], "relu", steps=20, size=32, seed=3, progress=False)
    assert torch.equal(a.images, b.images)


def test_gradient_network_uses_the_model_or_a_converted_twin(tiny):
    with am.gradient_network(tiny, "relu") as (net, same):
        assert net is tiny and same
    with am.gradient_network(tiny, "proxygrad:0.2") as (net, same):
        assert net is tiny and same and isinstance(tiny.features[1], proxylab.ProxyGradReLU)
    assert isinstance(tiny.features[1], nn.ReLU)
    with am.gradient_network(tiny, "guided") as (net, same):
        assert net is tiny and same and isinstance(tiny.features[1], rules.BackwardRule)
    for spec in ("leaky:0.1", "proxygrad:0.2:0.1"):
        with am.gradient_network(tiny, spec) as (net, same):
            assert net is not tiny and not same and isinstance(net.features[1], (nn.LeakyReLU, proxylab.ProxyGradReLU))
        assert isinstance(tiny.features[1], nn.ReLU)
    with am.gradient_network(tiny, "proxygrad:0.2", layers=lambda name: name == "features.4") as (net, _):
        assert isinstance(tiny.features[1], nn.ReLU) and isinstance(tiny.features[4], proxylab.ProxyGradReLU)
    with pytest.raises(ValueError, match="per-layer conversion .* proxygrad:B only"):
        with am.gradient_network(tiny, "leaky:0.1", layers=lambda name: True):
            pass
    with pytest.raises(ValueError, match="no rectifier"):
        with am.gradient_network(nn.Sequential(nn.Linear(2, 2)), "relu"):
            pass


def test_proxy_gradient_norms_are_the_float64_gradient_norms_per_slope(tiny):
    x = am.initial_images(2, 32, seed=2)
    norms = am.proxy_gradient_norms(tiny, x, [1, 4], [0, 0.5])
    assert norms.shape == (2, 2) and norms.dtype == torch.float64
    for row, spec in enumerate(("relu", "proxygrad:0.5")):
        with am.in_float64(tiny), am.gradient_network(tiny, spec) as (net, _):
            xd = x.double().requires_grad_(True)
            (g,) = torch.autograd.grad(net(xd)[[0, 1], [1, 4]].sum(), xd)
        assert torch.allclose(norms[row], g.flatten(1).norm(dim=1), rtol=1e-9)
    assert all(p.dtype == torch.float32 for p in tiny.parameters())
    unit = am.channel_target("features.3", [0, 1])
    assert am.proxy_gradient_norms(tiny, x, unit, [0.1]).shape == (1, 2)


class Fixed(nn.Module):
    """A judge whose logits are the image's channel means times a fixed matrix (10 classes)."""

    def __init__(self, seed=0, input_size=None):
        super().__init__()
        torch.manual_seed(seed)
        self.head = nn.Linear(3, 10)
        self.sizes = []
        if input_size:
            self.input_size = input_size

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.head(x.mean(dim=(2, 3)))


def test_judge_scores_with_another_network_at_its_input_size():
    judge_model, maker = Fixed(1, input_size=40), Fixed(2)
    images = am.initial_images(3, 32, seed=0) + torch.tensor([0.5, -0.5, 0.0]).view(1, 3, 1, 1)
    targets = [0, 4, 9]
    out = am.judge(images, targets, judge_model, maker)
    assert judge_model.sizes == [(40, 40)]
    with torch.no_grad():
        x = nn.functional.interpolate(images, size=(40, 40), mode="bilinear", antialias=True, align_corners=False)
        logits = judge_model.head(x.mean(dim=(2, 3)))
    probs = logits.softmax(dim=1)[[0, 1, 2], targets]
    assert torch.allclose(out["probability"], probs, atol=1e-6)
    order = logits.argsort(dim=1, descending=True)
    for i, t in enumerate(targets):
        rank = order[i].tolist().index(t)
        assert bool(out["top1"][i]) == (rank == 0) and bool(out["top5"][i]) == (rank < 5)
    judge_model.train()  # the judge runs in eval mode and gets its mode back
    am.judge(images, targets, judge_model, maker)
    assert judge_model.training
    with pytest.raises(ValueError, match="the judge is the network that made these images"):
        am.judge(images, targets, Fixed(2), maker)  # same weights, another object
    with pytest.raises(ValueError, match="the judge is the network"):
        am.judge(images, targets, maker, maker)
    with pytest.raises(ValueError, match="one target per image: 3 images, 2 targets"):
        am.judge(images, targets[:2], judge_model, maker)
    other_shape = nn.Sequential(nn.Linear(3, 10))
    assert not am._same_weights(other_shape, maker)
    sizes = Fixed(1)  # no input_size: the images' own size
    am.judge(images, targets, sizes, maker)
    assert sizes.sizes == [(32, 32)]


def test_judge_ranks_ties_and_the_top_five():
    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 6.0]]).expand(x.shape[0], -1)

    out = am.judge(torch.zeros(4, 3, 8, 8), [6, 0, 3, 4], Logits(), Fixed())  # ranks 0, 1, 4, 5
    assert out["top1"].tolist() == [True, False, False, False]
    assert out["top5"].tolist() == [True, True, True, False]


def test_slope_diagnostic_summary_and_per_layer_gradients(tiny):
    x = am.initial_images(2, 32, seed=0)
    d = am.slope_diagnostic(tiny, x, [0, 1], [0.0, 0.5])
    assert d.slopes == [0.0, 0.5] and d.layer_names == ["features.1#0", "features.4#0"]
    assert torch.allclose(d.gain[0], torch.ones(2)) and torch.allclose(d.cosine[0], torch.ones(2))
    assert torch.allclose(d.layer_gain[:, -1], torch.ones(2))  # the last rectifier's gradient is the head's
    assert d.layer_gain.shape == d.layer_cosine.shape == (2, 2)
    with am.gradient_network(tiny, "proxygrad:0.5") as (net, _):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xg)[[0, 1], [0, 1]].sum(), xg)
    xt = x.clone().requires_grad_(True)
    (t,) = torch.autograd.grad(tiny(xt)[[0, 1], [0, 1]].sum(), xt)
    assert torch.allclose(d.gain[1], g.flatten(1).norm(dim=1) / t.flatten(1).norm(dim=1), rtol=1e-4)
    assert torch.allclose(d.cosine[1], nn.functional.cosine_similarity(g.flatten(1), t.flatten(1), dim=1), atol=1e-5)
    lines = d.summary().splitlines()
    assert lines[0].split() == ["slope", "gain", "cosine"] and len(lines) == 3
    assert lines[2].split()[0] == "0.5" and float(lines[2].split()[2]) == pytest.approx(d.cosine[1].mean().item(), abs=1e-3)
    assert float(lines[2].split()[1]) == pytest.approx(d.gain[1].median().item(), rel=1e-2)
    only = am.slope_diagnostic(tiny, x, [0, 1], [0.5], layers=lambda name: name == "features.4")
    assert only.layer_names == d.layer_names  # the layer filter converts features.4 only
    assert not torch.allclose(only.gain[0], d.gain[1]) and torch.allclose(only.layer_gain[0, 1], torch.ones(()))


def test_slope_sweep_runs_relu_once_and_each_kind_per_slope(tiny, monkeypatch):
    calls = []
    real = am.visualize

    def spy(model, targets, spec, **kwargs):
        calls.append((str(spec), len(kwargs.get("regularizers", ()))))
        return real(model, targets, spec, **kwargs)

    monkeypatch.setattr(am, "visualize", spy)
    seeds = []
    out = am.slope_sweep(tiny, [0, 1], [0.0, 0.3], steps=2, size=32, seed=4,
                         regularize=lambda seed: seeds.append(seed) or [regularizers.L2Decay(0.1)])
    assert list(out) == ["ProxyGrad", "Leaky ReLU"] and out["ProxyGrad"].shape == (2, 3)
    assert calls == [("relu", 1), ("proxygrad:0.3", 1), ("leaky:0.3", 1)] and seeds == [4, 4, 4]
    assert torch.equal(out["ProxyGrad"][0], out["Leaky ReLU"][0])  # one baseline
    r = real(tiny, [0, 1], "leaky:0.3", steps=2, size=32, seed=4, regularizers=[regularizers.L2Decay(0.1)],
             progress=False)
    assert torch.allclose(out["Leaky ReLU"][1], r.scores.mean(dim=1))
    calls.clear()
    out = am.slope_sweep(tiny, [0], [0.2], kinds={"G": "proxygrad:{s}"}, steps=1, size=32)
    assert list(out) == ["G"] and calls == [("proxygrad:0.2", 0)]


def test_slope_sweep_seeds_its_regularizers_with_the_runs_seed_0_by_default_and_shows_no_bars(tiny, capsys):
    seeds = []
    out = am.slope_sweep(tiny, [0], [0.0, 0.2], kinds={"P": "proxygrad"}, steps=1, size=32,
                         regularize=lambda seed: seeds.append(seed) or [])
    assert out["P"].shape == (2, 2) and seeds == [0, 0]  # visualize's default seed, 0
    assert capsys.readouterr().err == ""  # no progress bar per run


def test_compare_and_compare_over_seeds(tiny):
    out = am.compare(tiny, [0, 1], ["relu", "proxygrad:0.3"], steps=2, size=32)
    assert list(out) == ["relu", "proxygrad:0.3"]
    result, seconds = out["proxygrad:0.3"]
    assert result.spec == "proxygrad:0.3" and result.steps == 2 and 0 < seconds < 60
    seeds = am.compare_over_seeds(tiny, [0, 1], ["relu"], [3, 4], steps=2, size=32)
    assert seeds["relu"].shape == (2,)
    for i, seed in enumerate((3, 4)):
        r = am.visualize(tiny, [0, 1], "relu", steps=2, size=32, seed=seed, progress=False)
        assert seeds["relu"][i].item() == pytest.approx(r.final.mean().item(), rel=1e-6)


def test_compare_over_seeds_reuses_a_compare_run_for_seed_0_only(tiny, monkeypatch):
    runs = am.compare(tiny, [0, 1], ["relu", "proxygrad:0.3"], steps=2, size=32)
    fresh = am.compare_over_seeds(tiny, [0, 1], ["relu", "proxygrad:0.3"], [0, 1], steps=2, size=32)
    real, calls = am.visualize, []
    monkeypatch.setattr(am, "visualize", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    reused = am.compare_over_seeds(tiny, [0, 1], ["relu", "proxygrad:0.3"], [0, 1], steps=2, size=32, known=runs)
    assert calls == [1, 1]  # seed 0 of both specs came from the compare run
    assert all(torch.equal(reused[s], fresh[s]) for s in fresh)
    for wrong in (dict(steps=3, size=32), dict(steps=2, size=40)):
        with pytest.raises(ValueError, match="same settings"):
            am.compare_over_seeds(tiny, [0, 1], ["relu"], [0], known=runs, **wrong)
    with pytest.raises(ValueError, match="same settings"):
        am.compare_over_seeds(tiny, [1, 0], ["relu"], [0], steps=2, size=32, known=runs)


def test_slope_sweep_reuses_known_runs_of_the_same_settings(tiny, monkeypatch):
    regs = lambda seed: [regularizers.L2Decay(0.1)]  # noqa: E731
    fresh = am.slope_sweep(tiny, [0, 1], [0.0, 0.3], steps=2, size=32, regularize=regs)
    known = [am.visualize(tiny, [0, 1], spec, steps=2, size=32, regularizers=regs(0), progress=False)
             for spec in ("relu", "proxygrad:0.3")]
    real, calls = am.visualize, []
    monkeypatch.setattr(am, "visualize", lambda model, targets, spec, **k: calls.append(str(spec)) or real(model, targets, spec, **k))
    reused = am.slope_sweep(tiny, [0, 1], [0.0, 0.3], steps=2, size=32, regularize=regs, known=known)
    assert calls == ["leaky:0.3"]  # ReLU and ProxyGrad 0.3 came from the known runs
    assert all(torch.equal(reused[k], fresh[k]) for k in fresh)
    for wrong in (dict(steps=3, size=32), dict(steps=2, size=40)):
        with pytest.raises(ValueError, match="same settings"):
            am.slope_sweep(tiny, [0, 1], [0.3], known=known, **wrong)
    with pytest.raises(ValueError, match="same settings"):
        am.slope_sweep(tiny, [1, 0], [0.3], steps=2, size=32, known=known)
