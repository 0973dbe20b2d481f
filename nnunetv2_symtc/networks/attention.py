"""SymTC's position-aware multi-head self-attention (Chen et al. 2024), for token grids of any dimension.

Per head, with tokens ``n, l`` at normalised grid positions ``p`` (``D`` = 2 or 3 coordinates in
``[-1, 1]``, ordered last array axis first: ``(x, y)`` or ``(x, y, z)``) and content MLPs
``q1, q2, k1`` of the layer-normed tokens, the attention logit is

    (4C)^-1/2 · Σ_c [q1_c k1_c cos(α W1_c (p_n − p_l) + b1_c) + q2_c cos(α W2_c (p_n − p_l) + b2_c)]

and the output is ``proj_value(Σ_l attn·V) + proj_position(concat_heads(Σ_l attn_{n,l} p_l − p_n))``.
Both output terms come from one fused ``scaled_dot_product_attention`` call: the positions are
appended to the values as extra channels (``Σ_l attn_{n,l} = 1``), so no ``(heads, N, N)`` matrix
is materialised.
"""
import math
from typing import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


def grid_positions(grid_shape: Sequence[int], device=None) -> torch.Tensor:
    """Normalised token positions, shape ``(prod(grid_shape), D)``, fp32.

    Coordinate ``d`` is the position along array axis ``D - 1 - d`` (``x`` first), mapped to
    ``[-1, 1]``; an axis with a single token has position 0. Tokens are in row-major order of
    ``grid_shape`` (the order of ``tensor.flatten(2)``).
    """
    axes = [torch.zeros(1, device=device) if n == 1 else torch.linspace(-1.0, 1.0, n, device=device)
            for n in grid_shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in reversed(mesh)], dim=-1)


class SinusoidalPositionCodes(nn.Module):
    """The two sinusoidal position codes ``a_i(p) = W_i (α p) + b_i`` (``W_i`` in R^{E×D}).

    ``forward`` returns ``(cos a1, sin a1, cos a2, sin a2)`` for queries (with bias) and for keys
    (without bias), each ``(N, E)`` in fp32: ``α p`` reaches ±α, so the arguments are computed
    with autocast disabled whatever the surrounding precision.
    """

    def __init__(self, position_dim: int, embed_dim: int, alpha: float):
        super().__init__()
        self.alpha = alpha
        self.weight1 = nn.Parameter(torch.empty(embed_dim, position_dim))
        self.bias1 = nn.Parameter(torch.empty(embed_dim))
        self.weight2 = nn.Parameter(torch.empty(embed_dim, position_dim))
        self.bias2 = nn.Parameter(torch.empty(embed_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: W ~ U(-1/D, 1/D) (U(-1/2, 1/2) in 2D), b ~ U(0, pi)."""
        position_dim = self.weight1.shape[1]
        for weight in (self.weight1, self.weight2):
            nn.init.uniform_(weight, -1.0 / position_dim, 1.0 / position_dim)
        for bias in (self.bias1, self.bias2):
            nn.init.uniform_(bias, 0.0, math.pi)

    def forward(self, positions: torch.Tensor):
        with torch.autocast(positions.device.type, enabled=False):
            p = self.alpha * positions.float()
            a1 = p @ self.weight1.float().t()
            a2 = p @ self.weight2.float().t()
            a1q = a1 + self.bias1.float()
            a2q = a2 + self.bias2.float()
            query = (torch.cos(a1q), torch.sin(a1q), torch.cos(a2q), torch.sin(a2q))
            key = (torch.cos(a1), torch.sin(a1), torch.cos(a2), torch.sin(a2))
        return query, key


def _mlp(embed_dim: int) -> nn.Sequential:
    """E -> 2E -> E with GELU."""
    return nn.Sequential(nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(), nn.Linear(2 * embed_dim, embed_dim))


class PositionAwareAttention(nn.Module):
    """SymTC's multi-head self-attention; ``(B, N, E)`` tokens and ``(N, D)`` positions -> ``(B, N, E)``."""

    def __init__(self, embed_dim: int, num_heads: int, position_dim: int, alpha: float):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.position_codes = SinusoidalPositionCodes(position_dim, embed_dim, alpha)
        self.query_norm = nn.LayerNorm(embed_dim)
        self.query_content = _mlp(embed_dim)    # q1: modulated by relative position
        self.query_position = _mlp(embed_dim)   # q2: multiplies the relative-position code
        self.key_norm = nn.LayerNorm(embed_dim)
        self.key_content = _mlp(embed_dim)      # k1
        self.value_norm = nn.LayerNorm(embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.proj_value = nn.Linear(embed_dim, embed_dim)
        self.proj_position = nn.Linear(position_dim * num_heads, embed_dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        batch, tokens, embed_dim = x.shape
        heads, head_dim, pos_dim = self.num_heads, embed_dim // self.num_heads, positions.shape[-1]
        (qc1, qs1, qc2, qs2), (kc1, ks1, kc2, ks2) = self.position_codes(positions)

        xq = self.query_norm(x)
        q1, q2 = self.query_content(xq), self.query_position(xq)
        k1 = self.key_content(self.key_norm(x))
        v = self.value(self.value_norm(x))
        dtype = v.dtype  # the autocast dtype, or x's

        def split(t: torch.Tensor) -> torch.Tensor:  # (..., N, E) -> (..., H, N, C)
            return t.unflatten(-1, (heads, head_dim)).transpose(-3, -2)

        codes = [split(c.to(dtype)) for c in (qc1, qs1, qc2, qs2, kc1, ks1, kc2, ks2)]  # (H, N, C)
        q1, q2, k1, v = split(q1), split(q2), split(k1), split(v)                    # (B, H, N, C)
        # Built directly in (B, H, N, 4C) layout: the concatenation is the only copy.
        q = torch.cat([q1 * codes[0], q1 * codes[1], q2 * codes[2], q2 * codes[3]], dim=-1)
        k = torch.cat([k1 * codes[4], k1 * codes[5], codes[6].expand_as(k1), codes[7].expand_as(k1)], dim=-1)
        # Values: the content values, then the token positions, zero-padded to the query width so
        # that the fused (flash) kernels, which need equal widths, apply.
        pos_values = positions.to(dtype).expand(batch, heads, tokens, pos_dim)
        pad = q.shape[-1] - head_dim - pos_dim
        values = torch.cat([v, pos_values, v.new_zeros(batch, heads, tokens, pad)], dim=-1)
        out = F.scaled_dot_product_attention(q, k, values)                         # (B, H, N, 4C)
        content = out[..., :head_dim].transpose(1, 2).reshape(batch, tokens, embed_dim)
        relative = (out[..., head_dim:head_dim + pos_dim] - pos_values).transpose(1, 2)
        return self.proj_value(content) + self.proj_position(relative.reshape(batch, tokens, heads * pos_dim))


class AttentionLayer(nn.Module):
    """``x <- x + Attn(x); x <- x + MLP(LN(x))`` on ``(B, N, E)`` tokens.

    With ``checkpoint=True`` (default) the layer's activations are recomputed in the backward
    pass instead of stored while gradients are recorded: the same math, ~1.5 GiB less peak memory
    for the paper network at 512² (14 layers × ~0.1 GiB), for about one extra attention forward.
    """

    def __init__(self, embed_dim: int, num_heads: int, position_dim: int, alpha: float, checkpoint: bool = True):
        super().__init__()
        self.checkpoint = checkpoint
        self.attention = PositionAwareAttention(embed_dim, num_heads, position_dim, alpha)
        self.mlp_norm = nn.LayerNorm(embed_dim)
        self.mlp = _mlp(embed_dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled() and x.requires_grad:
            return torch.utils.checkpoint.checkpoint(self._forward, x, positions, use_reentrant=False)
        return self._forward(x, positions)

    def _forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(x, positions)
        return x + self.mlp(self.mlp_norm(x))
