"""SymTC building blocks for 2D and 3D (``dim`` = 2 or 3): contrast normalisation, the parallel
CNN and attention paths of a block, the merge layer and the segmentation head.

Shapes are ``(B, C, *spatial)`` with ``len(spatial) == dim``. Kernel, stride and patch sizes are
per-axis tuples in array order.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from nnunetv2_symtc.networks.attention import AttentionLayer, grid_positions

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_INTERPOLATION = {2: "bilinear", 3: "trilinear"}


def conv(dim: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
         stride: Sequence[int] = None) -> nn.Module:
    """Convolution with 'same'-style padding ``k // 2`` per axis."""
    kernel_size = tuple(kernel_size)
    stride = tuple(stride) if stride is not None else (1,) * dim
    return _CONV[dim](in_channels, out_channels, kernel_size, stride, tuple(k // 2 for k in kernel_size))


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    """(Bi/tri)linear resize of ``x`` to spatial ``size`` (no-op if already that size)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=_INTERPOLATION[x.dim() - 2], align_corners=align_corners)


def norm_act() -> nn.Sequential:
    """GroupNorm(1, affine=False) followed by LeakyReLU(0.01): SymTC's parameter-free normalisation."""
    return nn.Sequential(_ParameterFreeLayerNorm(), nn.LeakyReLU(inplace=True))


class _ParameterFreeLayerNorm(nn.Module):
    """GroupNorm with one group and no affine parameters (normalises each sample over C and space)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, 1)


class SpatialContrastNorm(nn.Module):
    """Parameter-free local contrast normalisation of the raw input, applied to every input channel.

    Every channel, deliberately: the reference implementation is single-channel (one T2w image),
    and normalising each channel separately is the one form that does not favour any channel of a
    multi-channel nnU-Net dataset; for one channel it is the reference's operation.

    ``y = (x − μ) / sqrt(σ² + eps)`` with ``μ`` the box mean of ``x`` and ``σ²`` the box mean of
    ``(x − μ)²`` over a window of ``2⌊k/2⌋ + 1`` voxels per axis, ``k = side // 8``, reflect padded.
    Inputs with every side ≤ 8 are normalised per channel over the whole image instead.
    Invariant to affine intensity changes (up to ``eps``).
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def _box_mean(self, x: torch.Tensor) -> torch.Tensor:
        half = [(side // 8) // 2 for side in x.shape[2:]]
        padding = [p for h in reversed(half) for p in (h, h)]
        if any(half):
            x = F.pad(x, padding, mode="reflect")
        # A box mean is separable: one 1D mean per axis (exactly the full box mean, far cheaper).
        dim = x.dim() - 2
        pool = F.avg_pool2d if dim == 2 else F.avg_pool3d
        for axis, h in enumerate(half):
            if h:
                window = [1] * dim
                window[axis] = 2 * h + 1
                x = pool(x, tuple(window), stride=1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(side <= 8 for side in x.shape[2:]):
            return F.group_norm(x, x.shape[1], eps=self.eps)
        mean = self._box_mean(x)
        var = self._box_mean((x - mean) ** 2)
        return (x - mean) / torch.sqrt(var + self.eps)


class ConvPath(nn.Module):
    """SymTC's CNN path: Conv(k, s) → GN → LReLU → 1×1 conv → GN → LReLU → 3×3 conv, plus a
    residual Conv(k, s); hidden width ``2·max(Cin, Cout)``.

    ``checkpoint=True`` recomputes the hidden maps in the backward pass instead of storing them
    (used at full resolution, where they are the largest activations of the network).
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], checkpoint: bool = False):
        super().__init__()
        self.checkpoint = checkpoint
        hidden = 2 * max(in_channels, out_channels)
        self.body = nn.Sequential(conv(dim, in_channels, hidden, kernel_size, stride), norm_act(),
                                  conv(dim, hidden, hidden, (1,) * dim), norm_act(),
                                  conv(dim, hidden, out_channels, (3,) * dim))
        self.residual = conv(dim, in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            body = torch.utils.checkpoint.checkpoint(self.body, x, use_reentrant=False)
        else:
            body = self.body(x)
        return body + self.residual(x)


class AttentionPath(nn.Module):
    """SymTC's attention path: patch embedding (kernel = stride = patch) → LN → attention layers →
    LN → Linear(E → Cout), reshaped to the token grid and resized (align_corners=False) to ``out_size``.

    Token grid and positions are computed from the input at run time.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, patch_size: Sequence[int],
                 embed_dim: int, num_heads: int, num_layers: int, alpha: float, recompute: bool = True):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.embed = _CONV[dim](in_channels, embed_dim, self.patch_size, self.patch_size)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList(AttentionLayer(embed_dim, num_heads, dim, alpha, recompute)
                                    for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(embed_dim, out_channels)

    def forward(self, x: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
        # The patch embedding runs in fp32 even under autocast: oneDNN's bf16 convolution with
        # kernel = stride >= 8 returns wrong values on some CPUs (AMX/AVX512-BF16, torch 2.x).
        # Outside autocast this is the same fp32 convolution as before (bit-identical).
        with torch.autocast(x.device.type, enabled=False):
            tokens = self.embed(x.float())                       # (B, E, *grid), fp32
        grid = tokens.shape[2:]
        tokens = self.embed_norm(tokens.flatten(2).transpose(1, 2))  # (B, N, E)
        positions = grid_positions(grid, device=x.device)
        for layer in self.layers:
            tokens = layer(tokens, positions)
        y = self.out(self.out_norm(tokens)).transpose(1, 2)      # (B, Cout, N)
        return resize(y.reshape(*y.shape[:2], *grid), out_size, align_corners=False)


class SymTCBlock(nn.Module):
    """``y = LReLU(GN(CNN(x) + Attn(x)))``, optionally after SpatialContrastNorm of the input.

    ``recompute`` recomputes the attention layers in the backward pass, ``recompute_cnn`` the CNN
    path's hidden maps (instead of storing them)."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], patch_size: Sequence[int], embed_dim: int, num_heads: int,
                 num_layers: int, alpha: float, contrast_norm: bool = False, recompute: bool = True,
                 recompute_cnn: bool = False):
        super().__init__()
        self.input_norm = SpatialContrastNorm() if contrast_norm else nn.Identity()
        self.cnn = ConvPath(dim, in_channels, out_channels, kernel_size, stride, recompute_cnn)
        self.attention = AttentionPath(dim, in_channels, out_channels, patch_size, embed_dim, num_heads,
                                       num_layers, alpha, recompute)
        self.out = norm_act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        y = self.cnn(x)
        return self.out(y + self.attention(x, y.shape[2:]))


class MergeLayer(nn.Module):
    """Decoder merge: upsample ``x`` to the skip's size (align_corners=True); GN and a 1×1 conv on
    each of ``x`` and the skip; sum; GN; LReLU."""

    def __init__(self, dim: int, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.proj_up = conv(dim, in_channels, out_channels, (1,) * dim)
        self.proj_skip = conv(dim, skip_channels, out_channels, (1,) * dim)
        self.out = norm_act()

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = resize(x, skip.shape[2:], align_corners=True)
        return self.out(self.proj_up(F.group_norm(x, 1)) + self.proj_skip(F.group_norm(skip, 1)))


class HeadStem(nn.Module):
    """The class-independent part of SymTC's head: GN → 5×5 conv → LReLU (channels unchanged)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.conv = conv(dim, channels, channels, (5,) * dim)
        self.act = nn.LeakyReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(F.group_norm(x, 1)))


def per_axis(value, dim: int) -> Tuple[int, ...]:
    """``value`` (int or sequence) as a ``dim``-tuple of ints."""
    if isinstance(value, int):
        return (value,) * dim
    value = tuple(int(v) for v in value)
    if len(value) != dim:
        raise ValueError(f"expected {dim} per-axis values, got {value}")
    return value
