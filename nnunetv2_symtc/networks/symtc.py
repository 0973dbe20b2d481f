"""SymTC (Chen et al. 2024): a 3-level encoder–decoder whose blocks sum a CNN path and a
position-aware attention path. ``SymTC`` is the 2D network of the paper; ``SymTC3D`` the same
design with Conv3d, 3D positions and per-axis strides for anisotropic volumes.

Layout (channels ``c0, c1, c2``; level strides ``s1, s2`` per axis; ``f = s1·s2``)::

    encoder.T0a  SCN, Cin→c0, k5 s1, patch f       (full resolution)
    encoder.T1a  c0→c1, k5 s=s1, patch f           (1/s1)
    encoder.T2a  c1→c2, k5 s=s2, patch s2          (1/f)
    encoder.T3a  c2→c2, k3 s1, patch 1             (1/f)
    decoder.M2 (T3a + T2a) → T2b c2→c1 k3 patch 1
    decoder.M1 (T2b + T1a) → T1b c1→c0 k5 patch s2
    decoder.M0 (T1b + T0a) → T0b c0→c0 k5 patch f
    decoder.head (GN, 5×5 conv, LReLU) → decoder.seg_layers.0 (3×3 conv to the classes)

Every attention path therefore sees a grid of ``side / f`` tokens per axis. While gradients are
recorded, attention layers and the full-resolution CNN paths (T0a, T0b) are recomputed in the
backward pass rather than stored (same math; the peak memory of training at 512² roughly halves). Every layer whose
shape depends on the number of classes is in ``decoder.seg_layers`` (nnU-Net's
``-pretrained_weights`` skips those). With ``deep_supervision_heads=True`` two 1×1 heads
(``seg_layers.1`` on T1b at 1/s1, ``seg_layers.2`` on T2b at 1/f) are added; whether they are
*returned* is ``decoder.deep_supervision``, which never changes the parameter set.

Built from nnU-Net plans (``symtc plan-symtc``), the network takes ``strides`` (per stage, nnU-Net's
format ``[1, s1, s2, 1]``) and always has the heads with ``coarse_to_fine_heads=True``: the 1/s1
output adds the upsampled 1/f output. nnU-Net's default deep-supervision weights are
``[1, 1/2, 0]`` normalised (the lowest 1e-6 under DDP), so the 1/f output is dropped from the
loss; through the 1/s1 output its head still gets a gradient, so every parameter trains (DDP
without ``find_unused_parameters``).
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_symtc.networks.attention import SinusoidalPositionCodes
from nnunetv2_symtc.networks.blocks import HeadStem, MergeLayer, SymTCBlock, conv, per_axis

PAPER_WIDTH = dict(embed_dim=512, num_heads=16)
"""The paper's SymTC: E=512, 16 heads (111,879,020 parameters in 2D at 12 classes)."""
SMALL_WIDTH = dict(embed_dim=256, num_heads=8)
"""The paper's SymTC_s: E=256, 8 heads (56,126,060 parameters in 2D at 12 classes)."""

MAX_TOKENS_PER_AXIS_3D = 32


class _SymTCDecoder(nn.Module):
    """Merge layers, decoder blocks, head stem and the class-dependent ``seg_layers``."""

    def __init__(self, blocks: dict, seg_layers: List[nn.Module], coarse_to_fine: bool = False):
        super().__init__()
        for name, block in blocks.items():
            self.add_module(name, block)
        self.seg_layers = nn.ModuleList(seg_layers)
        self.coarse_to_fine = coarse_to_fine
        self.deep_supervision = False

    def forward(self, skips: Sequence[torch.Tensor]) -> Union[torch.Tensor, List[torch.Tensor]]:
        t0a, t1a, t2a, t3a = skips
        t2b = self.T2b(self.M2(t2a, t3a))
        t1b = self.T1b(self.M1(t1a, t2b))
        t0b = self.T0b(self.M0(t0a, t1b))
        logits = self.seg_layers[0](self.head(t0b))
        if not self.deep_supervision:
            return logits
        if len(self.seg_layers) == 1:
            raise RuntimeError("deep supervision was enabled on a SymTC without deep-supervision heads; "
                               "build it with deep_supervision_heads=True (the SymTCTrainerDS variant)")
        middle, lowest = self.seg_layers[1](t1b), self.seg_layers[2](t2b)
        if self.coarse_to_fine:
            middle = middle + F.interpolate(lowest, size=middle.shape[2:], mode="nearest")
        return [logits, middle, lowest]


class SymTCBase(nn.Module):
    """Dimension-generic SymTC; use ``SymTC`` (2D) or ``SymTC3D`` (``isinstance`` checks may use this base)."""

    dim: int = 0

    def __init__(self, input_channels: int, num_classes: int, embed_dim: int = 512, num_heads: int = 16,
                 num_layers: Sequence[int] = (2, 2, 2, 2), channels: Sequence[int] = (32, 128, 512),
                 level_strides: Sequence[Union[int, Sequence[int]]] = (4, 4),
                 level_kernels: Optional[Sequence[Sequence[int]]] = None, alpha: float = 100.0,
                 deep_supervision_heads: bool = False, deep_supervision: bool = False,
                 strides: Optional[Sequence[Sequence[int]]] = None, coarse_to_fine_heads: bool = False,
                 recompute: bool = True):
        """
        Args:
            input_channels, num_classes: image channels in, classes (logit channels) out.
            embed_dim, num_heads: attention width E and heads (head dim E / heads).
            num_layers: attention layers in (T0a/T0b, T1a/T1b, T2a/T2b, T3a).
            channels: CNN widths (c0, c1, c2) at full, 1/s1 and 1/f resolution.
            level_strides: ``(s1, s2)``, each an int or per-axis tuple (array order).
            level_kernels: per-axis kernel sizes of the (5, 5, 3)-kernel block triples
                ``(full, 1/s1, 1/f)`` resolutions; a 1 skips an axis (thick slices). Default: 5/5/3.
            alpha: position-code frequency scale α.
            deep_supervision_heads: add the two auxiliary heads (changes the parameter set).
            deep_supervision: return ``[full, 1/s1, 1/f]`` logits (needs the heads).
            strides: per-stage strides in nnU-Net's format ``[1, s1, s2, 1]`` (each an int or
                per-axis list), as plans write them; replaces ``level_strides``.
            coarse_to_fine_heads: the 1/s1 deep-supervision output adds the (nearest-)upsampled
                1/f output, so the 1/f head trains even when its own loss weight is 0.
            recompute: recompute the attention layers and the full-resolution CNN paths in the
                backward pass instead of storing them (same math; about half the peak training
                memory at 512², ~20 % more compute). Turn it off for narrow networks on a CPU.
        """
        super().__init__()
        d = self.dim
        if strides is not None:
            level_strides = self._level_strides_from_stages(strides)
        c0, c1, c2 = channels
        s1, s2 = (per_axis(s, d) for s in level_strides)
        f = tuple(a * b for a, b in zip(s1, s2))
        k_full, k_mid, k_low = ((per_axis(k, d) for k in level_kernels) if level_kernels is not None
                                else ((5,) * d, (5,) * d, (3,) * d))
        n0, n1, n2, n3 = num_layers
        self.level_strides = (s1, s2)
        self.input_channels, self.num_classes = input_channels, num_classes
        self.deep_supervision_heads = deep_supervision_heads
        width = dict(embed_dim=embed_dim, num_heads=num_heads, alpha=alpha, recompute=recompute)
        one = (1,) * d

        self.encoder = nn.ModuleDict(dict(
            T0a=SymTCBlock(d, input_channels, c0, k_full, one, f, num_layers=n0, contrast_norm=True,
                           recompute_cnn=recompute, **width),
            T1a=SymTCBlock(d, c0, c1, k_full, s1, f, num_layers=n1, **width),
            T2a=SymTCBlock(d, c1, c2, k_mid, s2, s2, num_layers=n2, **width),
            T3a=SymTCBlock(d, c2, c2, k_low, one, one, num_layers=n3, **width),
        ))
        seg_layers = [conv(d, c0, num_classes, (3,) * d)]
        if deep_supervision_heads:
            seg_layers += [conv(d, c0, num_classes, one), conv(d, c1, num_classes, one)]
        self.decoder = _SymTCDecoder(dict(
            M2=MergeLayer(d, c2, c2, c2),
            T2b=SymTCBlock(d, c2, c1, k_low, one, one, num_layers=n3, **width),
            M1=MergeLayer(d, c1, c1, c1),
            T1b=SymTCBlock(d, c1, c0, k_mid, one, s2, num_layers=n2, **width),
            M0=MergeLayer(d, c0, c0, c0),
            T0b=SymTCBlock(d, c0, c0, k_full, one, f, num_layers=n0, recompute_cnn=recompute, **width),
            head=HeadStem(d, c0),
        ), seg_layers, coarse_to_fine_heads)
        self.decoder.deep_supervision = deep_supervision
        self.channels, self.embed_dim, self.num_layers = (c0, c1, c2), embed_dim, tuple(num_layers)

    def _level_strides_from_stages(self, strides: Sequence) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """``(s1, s2)`` from nnU-Net-format per-stage strides ``[1, s1, s2, 1]``."""
        stages = [per_axis(s, self.dim) for s in strides]
        one = (1,) * self.dim
        if len(stages) != 4 or stages[0] != one or stages[3] != one:
            raise ValueError(f"{type(self).__name__}: strides must be 4 stages [1, s1, s2, 1] (nnU-Net format), "
                             f"got {[list(s) for s in stages]}")
        return stages[1], stages[2]

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's ``network.apply(network.initialize)`` hook: the paper's initialisation of the
        position codes (every other layer keeps PyTorch's default initialisation)."""
        if isinstance(module, SinusoidalPositionCodes):
            module.reset_parameters()

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Activation elements stored for backward per sample for an input of spatial size
        ``input_size`` (as dynamic-network-architectures' networks report it, for planners).

        Counts per block the CNN path (~4 hidden + 5 output maps) and the attention tokens
        (``3 + layers`` token maps; attention layers themselves are recomputed), the merges (7 maps),
        the head (3 maps) and the logits (4 maps), plus 6 input-size maps.
        """
        c0, c1, c2 = self.channels
        n0, n1, n2, n3 = self.num_layers
        cin, classes = self.input_channels, self.num_classes
        full = float(np.prod(input_size))
        mid = full / np.prod(self.level_strides[0])
        low = full / np.prod(self.total_stride)
        tokens = low  # every attention path has input voxels / total stride tokens

        def block(block_in: int, block_out: int, out_voxels: float, layers: int) -> float:
            hidden = 2 * max(block_in, block_out)
            return (4 * hidden + 5 * block_out) * out_voxels + (3 + layers) * self.embed_dim * tokens

        elements = (6 * cin * full
                    + block(cin, c0, full, n0) + block(c0, c1, mid, n1) + block(c1, c2, low, n2)
                    + block(c2, c2, low, n3) + 7 * c2 * low + block(c2, c1, low, n3) + 7 * c1 * mid
                    + block(c1, c0, mid, n2) + 7 * c0 * full + block(c0, c0, full, n0)
                    + 3 * c0 * full + 4 * classes * full)
        return int(elements)

    @property
    def total_stride(self) -> Tuple[int, ...]:
        """Per-axis factor between the input and the token grid (``s1·s2``)."""
        return tuple(int(a * b) for a, b in zip(*self.level_strides))

    def deep_supervision_scales(self) -> List[List[float]]:
        """Per-axis output scales ``[1, 1/s1, 1/(s1·s2)]`` in nnU-Net's format."""
        s1, s2 = (np.array(s, dtype=float) for s in self.level_strides)
        return [[1.0] * self.dim, list(1 / s1), list(1 / (s1 * s2))]

    def validate_patch_size(self, patch_size: Sequence[int]) -> None:
        """Raise ``ValueError`` if an input of spatial size ``patch_size`` cannot run."""
        patch_size = tuple(int(p) for p in patch_size)
        if len(patch_size) != self.dim:
            raise ValueError(f"{type(self).__name__} takes {self.dim}D patches, got {patch_size}")
        for axis, (side, factor) in enumerate(zip(patch_size, self.total_stride)):
            if side % factor:
                raise ValueError(
                    f"{type(self).__name__}: patch size {patch_size} has side {side} on axis {axis}, "
                    f"not divisible by the total stride {factor} of that axis (strides {self.total_stride}); "
                    f"choose sides divisible by {self.total_stride}")
        if self.dim == 3:
            tokens = [s // f for s, f in zip(patch_size, self.total_stride)]
            if max(tokens) > MAX_TOKENS_PER_AXIS_3D:
                raise ValueError(f"SymTC3D: patch size {patch_size} gives {tokens} tokens per axis; "
                                 f"at most {MAX_TOKENS_PER_AXIS_3D} per axis are supported")

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """``(B, Cin, *spatial)`` -> logits ``(B, classes, *spatial)`` (or the deep-supervision list)."""
        skips = []
        for block in self.encoder.values():
            x = block(x)
            skips.append(x)
        return self.decoder(skips)

    @classmethod
    def paper_config(cls, input_channels: int = 1, num_classes: int = 12, **kwargs) -> "SymTCBase":
        """The published SymTC (E=512, 16 heads, 2 layers per block, α=100)."""
        return cls(input_channels, num_classes, **{**PAPER_WIDTH, **kwargs})

    @classmethod
    def small_config(cls, input_channels: int = 1, num_classes: int = 12, **kwargs) -> "SymTCBase":
        """The published SymTC_s (E=256, 8 heads)."""
        return cls(input_channels, num_classes, **{**SMALL_WIDTH, **kwargs})


class SymTC(SymTCBase):
    """2D SymTC. Inputs need sides divisible by 16 (the paper: 512×512, a 32×32 token grid)."""

    dim = 2


class SymTC3D(SymTCBase):
    """3D SymTC (Conv3d, 3D positions). Choose per-axis ``level_strides``/``level_kernels`` for
    anisotropic patches with ``symtc3d_geometry``."""

    dim = 3
