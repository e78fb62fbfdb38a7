"""Section 7's findings on random ResNet18s, in quick mode with fixed seeds (directions, not numbers)."""
import pytest
import torch

from proxylab import data, gradients

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
    r = gradients.slope_study(gradients.bn_input_std, {"leaky": "leaky:{s}", "pg": "proxygrad:{s}"},
                              [0.0, 0.3, 1.0], batches)
    leaky, pg = mean_over_seeds(r["leaky"]), mean_over_seeds(r["pg"])
    assert leaky[0] < leaky[1] < leaky[2]
    # and in most layers, not only on average
    assert (r["leaky"][2] > r["leaky"][0]).float().mean() > 0.8
    assert torch.allclose(pg, pg[0].expand_as(pg))  # ProxyGrad leaves the forward (and BN inputs) alone


@pytest.mark.parametrize("batchnorm", [False, True])
def test_gradient_magnitude_directions(batches, batchnorm):
    r = gradients.slope_study(gradients.first_block_gradient, {"leaky": "leaky:{s}", "pg": "proxygrad:{s}"},
                              SLOPES, batches, batchnorm=batchnorm)
    leaky, pg = r["leaky"].mean(dim=1), r["pg"].mean(dim=1)
    assert pg[0] < pg[1] < pg[2]                 # ProxyGrad: grows with the slope, with or without BN
    if batchnorm:
        assert leaky[0] > leaky[1] > leaky[2]    # BN divides by the growing std: Leaky shrinks
    else:
        assert leaky[0] < leaky[1] < leaky[2]


def test_batchnorm_can_be_removed():
    model = gradients.random_resnet18("relu", 10, seed=0, batchnorm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
