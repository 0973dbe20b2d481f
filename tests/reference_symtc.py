"""An independent, functional implementation of the SymTC reference math (REFERENCE §2), for tests.

It works directly on a state dict in the authors' layout and shares no code with
``nnunetv2_symtc``: attention matrices are built explicitly, element by element in the relative
position, from the paper's logit formula

    (4C)^-1/2 · Σ_c [q1_c k1_c cos(α W1_c (p_n − p_l) + b1_c) + q2_c cos(α W2_c (p_n − p_l) + b2_c)],

the contrast normalisation uses a full 2D box filter, and every layer is a plain functional call.
``reference_layout`` lists the authors' parameter names and shapes (dead parameters included).
"""
import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

ENCODER = (  # name, cin, cout, kernel, stride, patch, index into num_layers
    ("T0a", None, 32, 5, 1, 16, 0), ("T1a", 32, 128, 5, 4, 16, 1),
    ("T2a", 128, 512, 5, 4, 4, 2), ("T3a", 512, 512, 3, 1, 1, 3))
DECODER = (("T2b", 512, 128, 3, 1, 1, 3), ("T1b", 128, 32, 5, 1, 4, 2), ("T0b", 32, 32, 5, 1, 16, 0))
MERGES = (("M2", 512), ("M1", 128), ("M0", 32))


def reference_layout(input_channels: int, num_classes: int, embed_dim: int, num_heads: int,
                     num_layers: Tuple[int, int, int, int]) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the authors' ``model_state_dict`` (2D SymTC, alpha-independent)."""
    E = embed_dim
    shapes: Dict[str, Tuple[int, ...]] = {}

    def linear(prefix, n_in, n_out):
        shapes[prefix + ".weight"], shapes[prefix + ".bias"] = (n_out, n_in), (n_out,)

    def norm(prefix, n):
        shapes[prefix + ".weight"], shapes[prefix + ".bias"] = (n,), (n,)

    def conv2(prefix, n_in, n_out, k):
        shapes[prefix + ".weight"], shapes[prefix + ".bias"] = (n_out, n_in, k, k), (n_out,)

    def mlp(prefix):
        linear(prefix + ".0", E, 2 * E)
        linear(prefix + ".2", 2 * E, E)

    for name, cin, cout, k, _, patch, li in ENCODER + DECODER:
        cin = input_channels if cin is None else cin
        hid = 2 * max(cin, cout)
        conv2(f"{name}.cnn_block.conv.0", cin, hid, k)
        conv2(f"{name}.cnn_block.conv.3", hid, hid, 1)
        conv2(f"{name}.cnn_block.conv.6", hid, cout, 3)
        conv2(f"{name}.cnn_block.res_path", cin, cout, k)
        a = f"{name}.attn_block"
        conv2(f"{a}.patch_layer", cin, E, patch)
        norm(f"{a}.patch_norm", E)
        for i in range(num_layers[li]):
            m = f"{a}.attn_layers.{i}.MHA"
            for j in (1, 2):
                shapes[f"{m}.P.weight{j}"], shapes[f"{m}.P.bias{j}"] = (E, 2), (E,)
            norm(f"{m}.Q.norm", E)
            for j in (0, 1, 2):
                mlp(f"{m}.Q.mlp{j}")
            norm(f"{m}.K.norm", E)
            for j in (0, 1):
                mlp(f"{m}.K.mlp{j}")
            norm(f"{m}.V.0", E)
            linear(f"{m}.V.1", E, E)
            linear(f"{m}.proj1", E, E)
            linear(f"{m}.proj2.0", 2 * num_heads, E)
            shapes[f"{m}.pos.0.weight"], shapes[f"{m}.pos.0.bias"] = (E, 2), (E,)
            linear(f"{m}.pos.1", E, E)
            l = f"{a}.attn_layers.{i}.MLP"
            norm(l + ".0", E)
            linear(l + ".1", E, 2 * E)
            linear(l + ".3", 2 * E, E)
        norm(f"{a}.attn_out.0", E)
        linear(f"{a}.attn_out.1", E, cout)
    for name, c in MERGES:
        conv2(f"{name}.proj1", c, c, 1)
        conv2(f"{name}.proj2", c, c, 1)
    conv2("seghead.conv.1", 32, 32, 5)
    conv2("seghead.conv.3", 32, num_classes, 3)
    return shapes


def random_reference_state_dict(layout: Dict[str, Tuple[int, ...]], seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random weights at sensible scales (norm gains near 1, fan-in scaled weights, the paper's
    position-code initialisation)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if ".P.weight" in key:
            value = torch.rand(shape, generator=g) - 0.5
        elif ".P.bias" in key:
            value = torch.rand(shape, generator=g) * math.pi
        elif len(shape) == 1:
            is_norm_gain = key.endswith(".weight")
            value = (1.0 if is_norm_gain else 0.0) + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        state[key] = value
    return state


def _contrast_norm(x, eps=1e-5):
    B, C, H, W = x.shape
    ph, pw = (H // 8) // 2, (W // 8) // 2
    mean = x.mean(dim=1, keepdim=True)
    mean = F.avg_pool2d(F.pad(mean, (pw, pw, ph, ph), mode="reflect"), (2 * ph + 1, 2 * pw + 1), stride=1)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    var = F.avg_pool2d(F.pad(var, (pw, pw, ph, ph), mode="reflect"), (2 * ph + 1, 2 * pw + 1), stride=1)
    return (x - mean) / torch.sqrt(var + eps)


def _attention(s, m, x, pos, heads, alpha):
    """Explicit per-head attention from the paper's formula. x (B, N, E), pos (N, 2)."""
    B, N, E = x.shape
    C = E // heads

    def ln(prefix, t):
        return F.layer_norm(t, (E,), s[prefix + ".weight"], s[prefix + ".bias"])

    def mlp(prefix, t):
        return F.linear(F.gelu(F.linear(t, s[prefix + ".0.weight"], s[prefix + ".0.bias"])),
                        s[prefix + ".2.weight"], s[prefix + ".2.bias"])

    xq, xk = ln(m + ".Q.norm", x), ln(m + ".K.norm", x)
    q1, q2, k1 = mlp(m + ".Q.mlp1", xq), mlp(m + ".Q.mlp2", xq), mlp(m + ".K.mlp1", xk)
    v = F.linear(ln(m + ".V.0", x), s[m + ".V.1.weight"], s[m + ".V.1.bias"])
    rel = pos[:, None, :] - pos[None, :, :]                                     # (N, N, 2): p_n - p_l
    phase1 = alpha * rel @ s[m + ".P.weight1"].t() + s[m + ".P.bias1"]          # (N, N, E)
    phase2 = alpha * rel @ s[m + ".P.weight2"].t() + s[m + ".P.bias2"]
    content, relative = [], []
    for h in range(heads):
        c = slice(h * C, (h + 1) * C)
        logits = (torch.einsum("bnc,blc,nlc->bnl", q1[..., c], k1[..., c], torch.cos(phase1[..., c]))
                  + torch.einsum("bnc,nlc->bnl", q2[..., c], torch.cos(phase2[..., c]))) / math.sqrt(4 * C)
        attn = torch.softmax(logits, dim=-1)                                       # (B, N, N)
        content.append(attn @ v[..., c])
        relative.append(attn @ pos - pos)                                          # Σ_l attn p_l − p_n
    out1 = F.linear(torch.cat(content, -1), s[m + ".proj1.weight"], s[m + ".proj1.bias"])
    out2 = F.linear(torch.cat(relative, -1), s[m + ".proj2.0.weight"], s[m + ".proj2.0.bias"])
    return out1 + out2


def _block(s, name, x, k, stride, patch, n_layers, heads, alpha, scn):
    if scn:
        x = _contrast_norm(x)
    p = name + ".cnn_block"
    h = F.conv2d(x, s[p + ".conv.0.weight"], s[p + ".conv.0.bias"], stride, k // 2)
    h = F.leaky_relu(F.group_norm(h, 1))
    h = F.leaky_relu(F.group_norm(F.conv2d(h, s[p + ".conv.3.weight"], s[p + ".conv.3.bias"]), 1))
    h = F.conv2d(h, s[p + ".conv.6.weight"], s[p + ".conv.6.bias"], 1, 1)
    y1 = h + F.conv2d(x, s[p + ".res_path.weight"], s[p + ".res_path.bias"], stride, k // 2)
    a = name + ".attn_block"
    t = F.conv2d(x, s[a + ".patch_layer.weight"], s[a + ".patch_layer.bias"], patch)
    B, E, Ht, Wt = t.shape
    t = t.permute(0, 2, 3, 1).reshape(B, Ht * Wt, E)
    t = F.layer_norm(t, (E,), s[a + ".patch_norm.weight"], s[a + ".patch_norm.bias"])
    gy, gx = torch.meshgrid(torch.arange(Ht, dtype=x.dtype), torch.arange(Wt, dtype=x.dtype), indexing="ij")
    pos = torch.stack([2 * gx / (Wt - 1) - 1, 2 * gy / (Ht - 1) - 1], dim=-1).reshape(-1, 2)
    for i in range(n_layers):
        l = f"{a}.attn_layers.{i}"
        t = t + _attention(s, l + ".MHA", t, pos, heads, alpha)
        u = F.layer_norm(t, (E,), s[l + ".MLP.0.weight"], s[l + ".MLP.0.bias"])
        t = t + F.linear(F.gelu(F.linear(u, s[l + ".MLP.1.weight"], s[l + ".MLP.1.bias"])),
                         s[l + ".MLP.3.weight"], s[l + ".MLP.3.bias"])
    t = F.layer_norm(t, (E,), s[a + ".attn_out.0.weight"], s[a + ".attn_out.0.bias"])
    t = F.linear(t, s[a + ".attn_out.1.weight"], s[a + ".attn_out.1.bias"])
    y2 = t.permute(0, 2, 1).reshape(B, -1, Ht, Wt)
    if y2.shape[2:] != y1.shape[2:]:
        y2 = F.interpolate(y2, size=y1.shape[2:], mode="bilinear", align_corners=False)
    return F.leaky_relu(F.group_norm(y1 + y2, 1))


def _merge(s, name, skip, x):
    if x.shape[2:] != skip.shape[2:]:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True)
    a = F.conv2d(F.group_norm(x, 1), s[name + ".proj1.weight"], s[name + ".proj1.bias"])
    b = F.conv2d(F.group_norm(skip, 1), s[name + ".proj2.weight"], s[name + ".proj2.bias"])
    return F.leaky_relu(F.group_norm(a + b, 1))


def reference_forward(s: Dict[str, torch.Tensor], x: torch.Tensor, num_heads: int,
                      num_layers: Tuple[int, int, int, int], alpha: float = 100.0) -> torch.Tensor:
    """Logits of the reference SymTC for input ``x`` (B, 1, H, W), H and W multiples of 16 (≥ 32)."""
    skips = []
    for name, cin, _, k, stride, patch, li in ENCODER:
        x = _block(s, name, x, k, stride, patch, num_layers[li], num_heads, alpha, scn=cin is None)
        skips.append(x)
    t0a, t1a, t2a, t3a = skips
    x = t3a
    for (name, _, _, k, stride, patch, li), (merge, _), skip in zip(DECODER, MERGES, (t2a, t1a, t0a)):
        x = _block(s, name, _merge(s, merge, skip, x), k, stride, patch, num_layers[li], num_heads, alpha, False)
    h = F.leaky_relu(F.conv2d(F.group_norm(x, 1), s["seghead.conv.1.weight"], s["seghead.conv.1.bias"], 1, 2))
    return F.conv2d(h, s["seghead.conv.3.weight"], s["seghead.conv.3.bias"], 1, 1)
