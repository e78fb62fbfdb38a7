"""ResNet18 and PFNet18 with every activation spec."""
import pytest
import torch
from torch import nn

from proxylab import nets
from proxylab.proxygrad import ProxyGradReLU


def test_edge_kernels_are_16_zero_mean_unit_l1_and_distinct():
    k = nets.edge_kernels()
    assert k.shape == (16, 3, 3)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.zeros(16), atol=1e-6)
    assert torch.allclose(k.abs().sum(dim=(1, 2)), torch.ones(16), atol=1e-6)
    assert torch.allclose(k[0::2], -k[1::2])  # both signs
    flat = k.flatten(1)
    assert torch.linalg.matrix_rank(flat[0::2]) >= 5  # orientations differ


@pytest.mark.parametrize("arch", nets.ARCHS)
@pytest.mark.parametrize("spec, module", [("relu", nn.ReLU), ("leaky:0.1", nn.LeakyReLU), ("proxygrad:0.1", ProxyGradReLU)])
def test_build_with_activation(arch, spec, module):
    torch.manual_seed(0)
    model = nets.build(arch, 7, spec)
    rect = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, ProxyGradReLU))]
    assert rect and all(isinstance(m, module) for m in rect)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)


def test_pfnet18_spatial_filters_are_fixed_and_only_1x1_convs_learn():
    model = nets.pfnet18(10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.kernel_size == (1, 1) for m in convs)
    pre = [m for m in model.modules() if isinstance(m, nets.PredefinedConv)]
    assert len(pre) == 1 + 16  # stem + two PF modules per block, 8 blocks
    assert all(not any(True for _ in m.parameters()) for m in pre)  # buffers, not parameters
    before = pre[3].weight.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    assert torch.equal(pre[3].weight, before)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < sum(p.numel() for p in nets.resnet18(10).parameters()) / 5


def test_pfnet18_proxygrad_keeps_the_forward():
    torch.manual_seed(0)
    a = nets.pfnet18(5).eval()
    torch.manual_seed(0)
    b = nets.pfnet18(5, "proxygrad:0.2").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown architecture"):
        nets.build("vgg", 10)


def test_sparsity_relu_and_proxygrad_sparse_leaky_dense():
    x = torch.randn(4, 3, 32, 32)
    means = {}
    for spec in ("relu", "proxygrad:0.3", "leaky:0.1"):
        torch.manual_seed(0)
        fractions = nets.sparsity(nets.build("pfnet18", 5, spec).eval(), x)
        assert len(fractions) == 2 + 8 * 4  # stem PF module + stem; per block 2 PF modules + 2 block rectifiers
        means[spec] = sum(fractions.values()) / len(fractions)
    assert means["relu"] > 0.3 and means["proxygrad:0.3"] == means["relu"]  # same forward
    assert means["leaky:0.1"] < means["relu"] / 5  # zeros only where the input was exactly 0


def test_pfnet18_widths_and_parameter_count():
    """Stage outputs 64, 128, 256, 512 channels at strides 4, 8, 16, 32; the trainable parameters
    counted by hand from the design (PF module c_in -> c_out with width w: BN 2*c_in*w, 1x1 conv
    c_in*w*c_out, BN 2*c_out; a strided skip: 1x1 conv c_in*c_out + BN 2*c_out):
    stem 3,296 + stages 17,408 + 67,712 + 266,496 + 1,057,280 + classifier 5,130 = 1,417,322."""
    model = nets.pfnet18(10)
    shapes = []
    hooks = [stage.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for stage in model.layers]
    model(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert shapes == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    assert sum(p.numel() for p in model.parameters()) == 1_417_322
    assert sum(p.numel() for p in model.stem.parameters()) == 3_296
