"""MSFF U-Net: nnU-Net's U-Net with a multi-scale feature fusion (MSFF) module at the bottleneck.

**This is our reconstruction.** Zhang et al. (ICMLC 2023) describe "a U-shaped CNN with a
multi-scale feature fusion bottleneck" but publish no module design (REFERENCE §6). We follow the
same group's earlier multi-scale attention network: parallel dilated 3×3 branches plus a global
context branch, selected per channel by learned attention (selective-kernel style), added back to
the bottleneck features through a residual connection.

The U-Net itself is whatever nnU-Net's plans build (``PlainConvUNet`` for the default plans,
``ResidualEncoderUNet`` for the ResEnc plans); its encoder and decoder are reused unchanged and
the module only transforms the lowest-resolution features, so the plans' patch and batch sizes
stay valid.
"""
import pydoc
from typing import List, Optional, Sequence, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import (convert_conv_op_to_dim, get_matching_pool_op,
                                                                  maybe_convert_scalar_to_list)
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

DEFAULT_DILATIONS = (1, 2, 3)


class MultiScaleFeatureFusion(nn.Module):
    """``x + P(sum_j a_j * U_j(x))`` on ``(b, channels, *spatial)`` features (2D or 3D).

    Branches ``U_j``: one dilated conv (kernel ``kernel_size``, typically 3) + norm + nonlin per
    dilation rate, and a global context branch (global average pool, 1×1 conv, nonlin, broadcast
    back to the spatial size). Attention ``a_j``: per-channel softmax over the branches, computed
    from the globally pooled sum of the branches through a small bottleneck MLP (1×1 convs).
    ``P``: 1×1 conv back to ``channels`` + norm, whose scale starts at 0 so that a new module is
    the identity (the residual path) and training starts from the plain U-Net's function.
    Kernel axes of size 1 (anisotropic nnU-Net plans) are not dilated.
    """

    def __init__(self, channels: int, conv_op: Type[_ConvNd], kernel_size: Union[int, Sequence[int]] = 3,
                 dilations: Sequence[int] = DEFAULT_DILATIONS, branch_channels: Optional[int] = None,
                 attention_channels: Optional[int] = None, norm_op: Optional[Type[nn.Module]] = None,
                 norm_op_kwargs: Optional[dict] = None, nonlin: Optional[Type[nn.Module]] = None,
                 nonlin_kwargs: Optional[dict] = None):
        super().__init__()
        if len(dilations) < 3 or len(set(dilations)) != len(dilations) or min(dilations) < 1:
            raise ValueError(f"MSFF needs at least 3 distinct dilation rates >= 1, got {tuple(dilations)}")
        kernel_size = maybe_convert_scalar_to_list(conv_op, kernel_size)
        if any(k % 2 == 0 for k in kernel_size):
            raise ValueError(f"MSFF kernel sizes must be odd, got {kernel_size}")
        self.dilations = tuple(int(d) for d in dilations)
        self.branch_channels = branch_channels or max(channels // 4, 8)
        attention_channels = attention_channels or max(self.branch_channels // 4, 8)
        nonlin = nonlin or nn.LeakyReLU
        nonlin_kwargs = nonlin_kwargs or {}
        norm_op_kwargs = norm_op_kwargs or {}
        self.spatial_dims = tuple(range(2, 2 + convert_conv_op_to_dim(conv_op)))

        def norm(c: int) -> nn.Module:
            return norm_op(c, **norm_op_kwargs) if norm_op is not None else nn.Identity()

        self.branches = nn.ModuleList()
        for d in self.dilations:
            dilation = [d if k > 1 else 1 for k in kernel_size]
            padding = [di * (k - 1) // 2 for di, k in zip(dilation, kernel_size)]
            self.branches.append(nn.Sequential(
                conv_op(channels, self.branch_channels, kernel_size, padding=padding, dilation=dilation,
                        bias=norm_op is None),
                norm(self.branch_channels), nonlin(**nonlin_kwargs)))
        # no norm on a 1-voxel map (instance norm would zero it)
        self.context = nn.Sequential(get_matching_pool_op(conv_op, adaptive=True)(1),
                                     conv_op(channels, self.branch_channels, 1), nonlin(**nonlin_kwargs))
        self.squeeze = nn.Sequential(conv_op(self.branch_channels, attention_channels, 1), nonlin(**nonlin_kwargs))
        self.select = conv_op(attention_channels, self.num_branches * self.branch_channels, 1)
        self.project = nn.Sequential(conv_op(self.branch_channels, channels, 1, bias=norm_op is None), norm(channels))
        self.apply(InitWeights_He(1e-2))
        self.reset_residual()

    @property
    def num_branches(self) -> int:
        """Dilated branches + the global context branch."""
        return len(self.dilations) + 1

    def reset_residual(self) -> None:
        """Zero the output scale so the module is the identity (``x + 0``)."""
        conv, norm = self.project
        last = norm if getattr(norm, "weight", None) is not None else conv  # no norm, or a non-affine one
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, channels, *spatial)`` -> same shape."""
        branch_outputs = [branch(x) for branch in self.branches]
        branch_outputs.append(self.context(x).expand_as(branch_outputs[0]))
        stacked = torch.stack(branch_outputs, dim=1)  # (b, branches, branch_channels, *spatial)
        pooled = stacked.sum(dim=1).mean(dim=self.spatial_dims, keepdim=True)
        logits = self.select(self.squeeze(pooled))
        attention = logits.view(x.shape[0], self.num_branches, self.branch_channels,
                                *logits.shape[2:]).softmax(dim=1)
        fused = (attention * stacked).sum(dim=1)
        return x + self.project(fused)


class MSFFUNet(nn.Module):
    """An nnU-Net U-Net (encoder + decoder from the plans) with :class:`MultiScaleFeatureFusion`
    applied to the bottleneck features, i.e. at the lowest resolution only.

    Input ``(b, in_channels, *patch)``; output ``(b, classes, *patch)``, or with deep supervision
    a list of logits, highest resolution first, exactly like the wrapped U-Net. ``decoder``
    exposes ``deep_supervision`` as nnU-Net expects. State-dict keys of the U-Net part are those
    of the plain U-Net (``encoder.*``, ``decoder.*``), plus ``msff.*``.
    """

    def __init__(self, unet: nn.Module, dilations: Sequence[int] = DEFAULT_DILATIONS,
                 branch_channels: Optional[int] = None):
        super().__init__()
        encoder = getattr(unet, "encoder", None)
        if encoder is None or not hasattr(unet, "decoder") or not hasattr(encoder, "output_channels"):
            raise TypeError(f"MSFFUNet needs a dynamic-network-architectures U-Net with encoder/decoder "
                            f"(PlainConvUNet, ResidualEncoderUNet); got {type(unet).__name__}")
        self.encoder, self.decoder = encoder, unet.decoder
        kernel_sizes = encoder.kernel_sizes
        bottleneck_kernel = kernel_sizes[-1] if isinstance(kernel_sizes, (list, tuple)) else kernel_sizes
        self.msff = MultiScaleFeatureFusion(
            encoder.output_channels[-1], encoder.conv_op, bottleneck_kernel, dilations, branch_channels,
            norm_op=encoder.norm_op, norm_op_kwargs=encoder.norm_op_kwargs, nonlin=encoder.nonlin,
            nonlin_kwargs=encoder.nonlin_kwargs)

    def forward(self, x: Tensor) -> Union[Tensor, List[Tensor]]:
        skips = self.encoder(x)
        return self.decoder([*skips[:-1], self.msff(skips[-1])])

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Feature-map elements per sample (the U-Net's count, as nnU-Net's planners use it, plus the
        MSFF module's branch, stacked, fused and projected maps at the bottleneck)."""
        unet = self.encoder.compute_conv_feature_map_size(input_size) + \
            self.decoder.compute_conv_feature_map_size(input_size)
        bottleneck = np.prod(input_size) / np.prod(np.prod(np.array(self.encoder.strides), axis=0))
        channels = self.msff.project[0].out_channels
        msff = (2 * self.msff.num_branches * self.msff.branch_channels + self.msff.branch_channels + 2 * channels)
        return int(unet + msff * bottleneck)

    @classmethod
    def from_plans(cls, plans_manager, configuration_manager, num_input_channels: int, num_output_channels: int,
                   enable_deep_supervision: bool = True, **msff_kwargs) -> "MSFFUNet":
        """Build the U-Net nnU-Net's plans name (default or ResEnc plans) and add the MSFF module.

        Arguments as nnU-Net's ``build_network_architecture``; ``msff_kwargs`` go to ``__init__``."""
        unet = get_network_from_plans(configuration_manager.network_arch_class_name,
                                      configuration_manager.network_arch_init_kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)
        return cls(unet, **msff_kwargs)


class PlannedMSFFUNet(MSFFUNet):
    """The MSFF U-Net as nnU-Net plans name it (``symtc plan-msff``): built from ``arch_kwargs``.

    ``arch_kwargs`` are the U-Net's own (``strides``, ``features_per_stage``, ...; nnU-Net reads
    ``strides`` for its deep-supervision scales) plus ``unet_class_name`` (the dotted U-Net class,
    e.g. ``PlainConvUNet`` or ``ResidualEncoderUNet``), ``msff_dilations`` and
    ``msff_branch_channels``. The U-Net gets its own initialisation here (as nnU-Net gives it), the
    MSFF module its own (identity residual); there is no ``initialize`` for nnU-Net to re-apply.
    """

    def __init__(self, input_channels: int, num_classes: int, unet_class_name: str, deep_supervision: bool = True,
                 msff_dilations: Sequence[int] = DEFAULT_DILATIONS, msff_branch_channels: Optional[int] = None,
                 **unet_kwargs):
        unet_class = pydoc.locate(unet_class_name)
        if not isinstance(unet_class, type):
            raise ValueError(f"MSFF plans: U-Net class {unet_class_name!r} cannot be imported")
        unet = unet_class(input_channels=input_channels, num_classes=num_classes, deep_supervision=deep_supervision,
                          **unet_kwargs)
        if hasattr(unet, "initialize"):
            unet.apply(unet.initialize)
        super().__init__(unet, msff_dilations, msff_branch_channels)
