"""MSFF U-Net: the fusion module's structure and residual path, and the U-Net around it in 2D/3D."""
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunetv2_symtc.networks import MSFFUNet, MultiScaleFeatureFusion


def plain_unet(dim: int, deep_supervision: bool = True, kernel=3, strides=(1, 2, 2, 2)) -> PlainConvUNet:
    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
    unet = PlainConvUNet(1, 4, [8, 16, 32, 48], conv, kernel, strides, 2, 3, 2, True, norm,
                         {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU, {"inplace": True},
                         deep_supervision=deep_supervision)
    unet.apply(unet.initialize)
    return unet


def randomise(module: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def test_branches_and_dilation_rates():
    msff = MultiScaleFeatureFusion(32, nn.Conv3d, [1, 3, 3], dilations=(1, 2, 4), norm_op=nn.InstanceNorm3d,
                                   norm_op_kwargs={"affine": True})
    convs = [branch[0] for branch in msff.branches]
    assert len(convs) == 3 and msff.num_branches == 4  # 3 dilated + global context
    # anisotropic nnU-Net kernel: the size-1 axis is neither dilated nor padded
    assert [c.dilation for c in convs] == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]
    assert [c.padding for c in convs] == [(0, 1, 1), (0, 2, 2), (0, 4, 4)]
    assert isinstance(msff.context[0], nn.AdaptiveAvgPool3d)
    assert msff.select.out_channels == 4 * msff.branch_channels
    with pytest.raises(ValueError, match="3 distinct dilation"):
        MultiScaleFeatureFusion(8, nn.Conv2d, 3, dilations=(1, 2))


def test_dilated_branches_see_further():
    """An impulse spreads as far as each branch's dilation (a branch ignoring its rate would not)."""
    msff = MultiScaleFeatureFusion(8, nn.Conv2d, 3, dilations=(1, 2, 3))
    impulse = torch.zeros(1, 8, 15, 15)
    impulse[0, :, 7, 7] = 1
    for d, branch in zip((1, 2, 3), msff.branches):
        response = branch[0](impulse).abs().sum(1)[0]
        rows = torch.nonzero(response.sum(1) > 1e-6).flatten()
        assert (rows.min().item(), rows.max().item()) == (7 - d, 7 + d)


def test_residual_path_is_identity_when_the_projection_is_zero():
    msff = MultiScaleFeatureFusion(16, nn.Conv2d, 3, norm_op=nn.InstanceNorm2d, norm_op_kwargs={"affine": True},
                                   nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    x = torch.randn(2, 16, 6, 5)
    assert torch.equal(msff(x), x)  # a fresh module starts as the identity
    randomise(msff)
    assert not torch.allclose(msff(x), x, atol=1e-3)
    msff.reset_residual()
    assert torch.equal(msff(x), x)
    randomise(msff)
    with torch.no_grad():  # zeroed branch/context outputs through the projection leave only x
        msff.project[0].weight.zero_()
        msff.project[1].bias.zero_()
    assert torch.allclose(msff(x), x)


@pytest.mark.parametrize("dim", [2, 3])
def test_output_shapes_and_deep_supervision(dim):
    network = MSFFUNet(plain_unet(dim))
    x = torch.randn(2, 1, *([16] * dim))
    outputs = network(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, *([s] * dim)) for s in (16, 8, 4)]
    sum(o.float().mean() for o in outputs).backward()
    assert all(p.grad is not None for p in network.parameters())  # DDP-safe: nothing unused
    network.decoder.deep_supervision = False  # how nnU-Net switches DS off for validation
    assert tuple(network(x).shape) == (2, 3, *([16] * dim))


def test_msff_changes_only_the_bottleneck():
    unet = plain_unet(2, deep_supervision=False)
    network = MSFFUNet(unet)
    x = torch.randn(1, 1, 16, 16)
    assert torch.allclose(network(x), unet(x))  # identity at init -> same function as the U-Net
    assert network.msff.branches[0][0].in_channels == unet.encoder.output_channels[-1]
    randomise(network.msff)
    assert not torch.allclose(network(x), unet(x), atol=1e-4)
    # the plain U-Net's weights load unchanged (same keys apart from msff.*)
    missing, unexpected = network.load_state_dict(unet.state_dict(), strict=False)
    assert all(key.startswith("msff.") for key in missing) and not unexpected


def test_residual_encoder_unet_is_supported():
    unet = ResidualEncoderUNet(1, 3, [8, 16, 32], nn.Conv2d, 3, [1, 2, 2], [1, 1, 1], 2, [1, 1], True,
                               nn.InstanceNorm2d, {"affine": True}, None, None, nn.LeakyReLU, {"inplace": True},
                               deep_supervision=True)
    outputs = MSFFUNet(unet)(torch.randn(1, 1, 16, 16))
    assert [tuple(o.shape) for o in outputs] == [(1, 2, 16, 16), (1, 2, 8, 8)]
    with pytest.raises(TypeError, match="encoder/decoder"):
        MSFFUNet(nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("norm", [dict(norm_op=nn.InstanceNorm3d, norm_op_kwargs={"affine": False}), dict()])
def test_identity_at_init_without_an_affine_norm(norm):
    msff = MultiScaleFeatureFusion(8, nn.Conv3d, 3, **norm)
    x = torch.randn(1, 8, 4, 5, 3)
    assert torch.equal(msff(x), x)
    msff(x).sum().backward()
    assert all(p.grad is not None for p in msff.parameters())
