"""Section 7's findings on random ResNet18s, in quick mode with fixed seeds (directions, not numbers)."""
import pytest
import torch

from proxylab import data, resnet_stats

SLOPES = [0.0, 0.1, 0.5]


@pytest.fixture(scope="module")
def batches():
    try:
        return {s: data.sample_batch(16, 32, seed=s, dataset="fashion-mnist")[:2] for s in range(2)}
    except data.DatasetMissing as err:
        pytest.skip(str(err))


def mean_over_seeds(result):
    return result.flatten(1).mean(dim=1) if result.dim() > 1 else result


def test_bn_input_std_grows_with_leaky_slope_not_with_proxygrad(batches):
    # the second moment of LReLU_a(X) grows like 1 + a², so small slopes drown in seed noise
    r = resnet_stats.slope_study(resnet_stats.bn_input_std, {"leaky": "leaky:{s}", "pg": "proxygrad:{s}"},
                              [0.0, 0.3, 1.0], batches)
    leaky, pg = mean_over_seeds(r["leaky"]), mean_over_seeds(r["pg"])
    assert leaky[0] < leaky[1] < leaky[2]
    # and in most layers, not only on average
    assert (r["leaky"][2] > r["leaky"][0]).float().mean() > 0.8
    assert torch.allclose(pg, pg[0].expand_as(pg))  # ProxyGrad leaves the forward (and BN inputs) alone


@pytest.mark.parametrize("batchnorm", [False, True])
def test_gradient_magnitude_directions(batches, batchnorm):
    r = resnet_stats.slope_study(resnet_stats.first_block_gradient, {"leaky": "leaky:{s}", "pg": "proxygrad:{s}"},
                              SLOPES, batches, batchnorm=batchnorm)
    leaky, pg = r["leaky"].mean(dim=1), r["pg"].mean(dim=1)
    assert pg[0] < pg[1] < pg[2]                 # ProxyGrad: grows with the slope, with or without BN
    if batchnorm:
        assert leaky[0] > leaky[1] > leaky[2]    # BN divides by the growing std: Leaky shrinks
    else:
        assert leaky[0] < leaky[1] < leaky[2]


def test_batchnorm_can_be_removed():
    model = resnet_stats.random_resnet18("relu", 10, seed=0, batchnorm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_a_seeds_networks_are_copies_of_one_init_equal_to_a_fresh_build(monkeypatch):
    """random_resnet18 keeps the last seed's network: a copy of it equals a network built afresh from
    the seed, whatever spec came before, leaves the global RNG where a fresh build does, and is its own
    (training one does not change the next)."""
    def fresh(spec, seed):
        monkeypatch.setattr(resnet_stats, "_LAST", {})
        model = resnet_stats.random_resnet18(spec, 10, seed=seed)
        return [p.detach().clone() for p in model.state_dict().values()], torch.rand(3)

    want, want_rng = fresh("leaky:0.1", 3)
    resnet_stats.random_resnet18("relu", 10, seed=3)  # fills the cache for seed 3
    torch.manual_seed(99)
    first = resnet_stats.random_resnet18("leaky:0.1", 10, seed=3)
    assert torch.equal(torch.rand(3), want_rng)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), want, strict=True))
    assert isinstance(first.relu, torch.nn.LeakyReLU) and first.relu.negative_slope == 0.1
    with torch.no_grad():
        next(first.parameters()).add_(1.0)
    again = resnet_stats.random_resnet18("relu", 10, seed=3)
    assert torch.equal(next(again.parameters()), want[0])
    other, _ = fresh("relu", 4)
    assert not torch.equal(next(resnet_stats.random_resnet18("relu", 10, seed=4).parameters()), want[0])
    assert torch.equal(next(resnet_stats.random_resnet18("relu", 10, seed=4).parameters()), other[0])


def test_per_channel_std_is_what_batchnorm_divides_by(batches):
    images, labels = batches[0]
    stats = resnet_stats.bn_input_stats("leaky:0.5", images, labels, seed=3)
    model = resnet_stats.random_resnet18("leaky:0.5", 10, seed=3)  # the same seeded network
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0  # running_var becomes this batch's (unbiased) per-channel variance
    counts = []  # values per channel: images x rows x columns
    hooks = [bn.register_forward_pre_hook(lambda m, i: counts.append(i[0].numel() / i[0].shape[1])) for bn in bns]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    reference = [bn.running_var for bn in bns]
    # BatchNorm divides by the biased std; running_var holds the unbiased variance
    sigma_b = torch.stack([(v * (c - 1) / c).sqrt().mean() for v, c in zip(reference, counts)])
    assert len(stats["per_channel"]) == len(bns) == 20
    assert torch.allclose(stats["per_channel"], sigma_b.float(), rtol=1e-4)
    assert (stats["whole"] > stats["per_channel"]).all()  # the whole tensor adds the channels' means


def test_predicted_growth_is_appendix_11_3s_closed_form():
    from proxylab import gaussian

    pred = resnet_stats.predicted_std_growth([0.0, 0.5, 1.0])
    base = gaussian.moments(0.0)  # the sympy derivation, not the hand-written closed form
    for i, a in enumerate([0.0, 0.5, 1.0]):
        m = gaussian.moments(a)
        assert pred["variance"][i] == pytest.approx((m["var"] / base["var"]) ** 0.5, rel=1e-9)
        assert pred["second moment"][i] == pytest.approx((m["second"] / base["second"]) ** 0.5, rel=1e-9)
    assert pred["variance"][2] == pytest.approx(1.7129, abs=1e-4)  # +71 % at slope 1, E[Y^2]: +41 %
    assert pred["second moment"][2] == pytest.approx(2 ** 0.5)


def test_bn_input_std_names_its_measures(batches):
    with pytest.raises(ValueError, match="per_channel"):
        resnet_stats.bn_input_std("relu", *batches[0], measure="channel")


def test_slope_study_runs_each_network_once_and_shares_relu_between_kinds():
    calls = []

    def fake(spec, images, labels, seed):
        calls.append((str(spec), seed))
        return torch.tensor([float(len(str(spec))), float(seed)])

    batches = {0: (None, None), 5: (None, None)}
    r = resnet_stats.slope_study(fake, {"leaky": "leaky:{s}", "pg": "proxygrad:{s}"}, [0.0, 0.1], batches)
    assert sorted(calls) == sorted([("relu", 0), ("relu", 5), ("leaky:0.1", 0), ("leaky:0.1", 5),
                                    ("proxygrad:0.1", 0), ("proxygrad:0.1", 5)])
    assert r["leaky"].shape == (2, 2, 2)
    assert torch.equal(r["leaky"][0], r["pg"][0])                       # slope 0: the same ReLU network
    assert r["pg"][1, :, 0].tolist() == [len("proxygrad:0.1")] * 2      # slope, then seed, in order
    assert r["leaky"][1, :, 1].tolist() == [0.0, 5.0]
