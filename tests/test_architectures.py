"""ResNet18 and PFNet18 with every activation spec."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from proxylab import architectures
from proxylab.proxygrad import ProxyGradReLU


def test_edge_kernels_are_16_zero_mean_unit_l1_and_distinct():
    k = architectures.edge_kernels()
    assert k.shape == (16, 3, 3)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.zeros(16), atol=1e-6)
    assert torch.allclose(k.abs().sum(dim=(1, 2)), torch.ones(16), atol=1e-6)
    assert torch.allclose(k[0::2], -k[1::2])  # both signs
    flat = k.flatten(1)
    assert torch.linalg.matrix_rank(flat[0::2]) >= 5  # orientations differ


@pytest.mark.parametrize("arch", architectures.ARCHS)
@pytest.mark.parametrize("spec, module", [("relu", nn.ReLU), ("leaky:0.1", nn.LeakyReLU), ("proxygrad:0.1", ProxyGradReLU)])
def test_build_with_activation(arch, spec, module):
    torch.manual_seed(0)
    model = architectures.build(arch, 7, spec)
    rect = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, ProxyGradReLU))]
    assert rect and all(isinstance(m, module) for m in rect)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)


def test_pfnet18_spatial_filters_are_the_edge_bank_and_stay_fixed_in_training():
    """Each fixed depthwise conv filters input channel ``j // (out / in)`` with kernel ``j mod 16`` of
    the edge bank into output channel ``j``; training with the real optimizer changes the 1x1
    convolutions, BatchNorm and the classifier, and leaves every fixed kernel as it was."""
    from proxylab.train import TrainConfig, make_optimizer

    torch.manual_seed(0)
    model = architectures.pfnet18(10)
    bank = architectures.edge_kernels()
    pre = [m for m in model.modules() if isinstance(m, architectures.PredefinedConv)]
    smooth = [m for m in model.modules() if isinstance(m, architectures.SmoothDownsample)]
    assert len(pre) == 1 + 16 and len(smooth) == 3  # stem + two PF modules per block, 8 blocks; 3 strided skips

    def reference(m, x):  # the depthwise convolution written out channel by channel
        per_input = m.weight.shape[0] // x.shape[1]
        return torch.cat([F.conv2d(x[:, [j // per_input]], bank[j % 16][None, None], stride=m.stride, padding=1)
                          for j in range(m.weight.shape[0])], dim=1)

    probes = {m: torch.randn(2, m.groups, 9, 9) for m in pre}
    for m in (pre[0], pre[3], pre[-1]):  # the stem (3 -> 48, stride 2), a strided block, the last one
        assert torch.allclose(m(probes[m]), reference(m, probes[m]), atol=1e-6)
    owners = {type(model.get_submodule(name.rpartition(".")[0])) for name, _ in model.named_parameters()}
    assert owners == {nn.Conv2d, nn.BatchNorm2d, nn.Linear}  # the fixed kernels are no parameters
    assert all(m.kernel_size == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fixed_out = {m: m(probes[m]).detach() for m in pre}
    optimizer = make_optimizer(model, TrainConfig(lr=0.05).validate())
    model.train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"stem.conv1x1.weight", "layers.3.1.pfm2.conv1x1.weight", "layers.1.0.downsample.conv.weight",
            "stem.bn1.weight", "fc.weight"} <= changed
    assert all(torch.equal(m(probes[m]), fixed_out[m]) for m in pre)
    assert all(torch.equal(m.smooth, architectures.smoothing_kernel().expand_as(m.smooth)) for m in smooth)


def test_pfnet18_proxygrad_keeps_the_forward():
    torch.manual_seed(0)
    a = architectures.pfnet18(5).eval()
    torch.manual_seed(0)
    b = architectures.pfnet18(5, "proxygrad:0.2").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown architecture"):
        architectures.build("vgg", 10)


def test_sparsity_relu_and_proxygrad_sparse_leaky_dense():
    x = torch.randn(4, 3, 32, 32)
    means = {}
    for spec in ("relu", "proxygrad:0.3", "leaky:0.1"):
        torch.manual_seed(0)
        fractions = architectures.sparsity(architectures.build("pfnet18", 5, spec).eval(), x)
        assert len(fractions) == 2 + 8 * 4  # stem PF module + stem; per block 2 PF modules + 2 block rectifiers
        means[spec] = sum(fractions.values()) / len(fractions)
    assert means["relu"] > 0.3 and means["proxygrad:0.3"] == means["relu"]  # same forward
    assert means["leaky:0.1"] < means["relu"] / 5  # zeros only where the input was exactly 0


def test_pfnet18_widths_and_parameter_count():
    """Stage outputs 64, 128, 256, 512 channels at strides 4, 8, 16, 32; the trainable parameters
    counted by hand from the design (PF module c_in -> c_out with width w: BN 2*c_in*w, 1x1 conv
    c_in*w*c_out, BN 2*c_out; a strided skip: 1x1 conv c_in*c_out + BN 2*c_out):
    stem 3,296 + stages 17,408 + 67,712 + 266,496 + 1,057,280 + classifier 5,130 = 1,417,322."""
    model = architectures.pfnet18(10)
    shapes = []
    hooks = [stage.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for stage in model.layers]
    model(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert shapes == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    assert sum(p.numel() for p in model.parameters()) == 1_417_322
    assert sum(p.numel() for p in model.stem.parameters()) == 3_296
