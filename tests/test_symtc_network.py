"""SymTC / SymTC3D networks: parameter counts, gradient coverage, shapes, numerics, deep supervision."""
import pytest
import torch
import torch.nn.functional as F

from nnunetv2_symtc.networks import SymTC, SymTC3D
from nnunetv2_symtc.networks.attention import SinusoidalPositionCodes, grid_positions
from nnunetv2_symtc.networks.blocks import SpatialContrastNorm
from nnunetv2_symtc.networks.from_plans import (TINY_WIDTH, build_symtc, symtc3d_geometry,
                                                symtc_deep_supervision_scales)

# REFERENCE §2: effective (gradient-receiving) parameters per block of the paper configuration.
PAPER_BLOCKS = {  # block: (CNN path, attention path)
    "T0a": (25_120, 9_649_696), "T1a": (668_416, 13_762_176), "T2a": (10_685_440, 10_813_440),
    "T3a": (12_848_128, 10_027_008), "T2b": (7_538_944, 9_830_016), "T1b": (1_061_440, 10_567_200),
    "T0b": (99_520, 13_712_928)}
PAPER_MERGES = {"M2": 525_312, "M1": 33_024, "M0": 2_112}
PAPER_HEAD = 29_100


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(cls=SymTC, **kwargs):
    return cls(1, 3, **{**TINY_WIDTH, **kwargs})


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return SymTC.paper_config(input_channels=1, num_classes=12)


def test_paper_config_parameter_counts_match_reference_table(paper):
    assert count(paper) == 111_879_020
    blocks = {**dict(paper.encoder.items()), **dict(paper.decoder.named_children())}
    for name, (cnn, attention) in PAPER_BLOCKS.items():
        assert (count(blocks[name].cnn), count(blocks[name].attention)) == (cnn, attention), name
    for name, expected in PAPER_MERGES.items():
        assert count(blocks[name]) == expected, name
    assert count(paper.decoder.head) + count(paper.decoder.seg_layers) == PAPER_HEAD
    assert count(SymTC.small_config(input_channels=1, num_classes=12)) == 56_126_060


def test_every_parameter_gets_a_gradient_and_any_multiple_of_16_runs(paper):
    """DDP safety (no dead parameter) on the paper network, at a non-square, non-512 input."""
    paper.zero_grad(set_to_none=True)
    out = paper(torch.randn(1, 1, 32, 48))
    assert out.shape == (1, 12, 32, 48)
    F.cross_entropy(out, torch.randint(0, 12, (1, 32, 48))).backward()
    no_grad = [n for n, p in paper.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    with torch.no_grad():  # the same instance, another size: token and position grids follow the input
        assert paper(torch.randn(1, 1, 64, 80)).shape == (1, 12, 64, 80)


def test_patch_sizes_that_cannot_work_fail_at_build_time():
    with pytest.raises(ValueError, match="divisible"):
        build_symtc((64, 72), (1.0, 1.0), 1, 3, width="tiny")
    with pytest.raises(ValueError, match="tokens per axis"):
        build_symtc((16, 1024, 256), (3.3, 0.5, 0.5), 1, 3, width="tiny")
    with pytest.raises(ValueError, match="2D or 3D"):
        build_symtc((64,), (1.0,), 1, 3, width="tiny")
    assert build_symtc((256, 320), (1.0, 1.0), 1, 3, width="tiny").total_stride == (4 * 4, 4 * 4)


def _explicit_contrast_norm(image: torch.Tensor) -> torch.Tensor:
    """(H, W) image; full (non-separable) reflect-padded box statistics, window 2*((side//8)//2)+1."""
    (h, w) = ((s // 8) // 2 for s in image.shape)

    def box(t):
        padded = F.pad(t[None, None], (w, w, h, h), mode="reflect")[0, 0]
        return padded.unfold(0, 2 * h + 1, 1).unfold(1, 2 * w + 1, 1).mean((-1, -2))

    mean = box(image)
    return (image - mean) / torch.sqrt(box((image - mean) ** 2) + 1e-5)


def test_spatial_contrast_norm_is_parameter_free_affine_invariant_and_per_channel():
    norm = SpatialContrastNorm()
    assert count(norm) == 0
    x = torch.rand(2, 2, 48, 64, dtype=torch.float64)
    y = norm(x)
    assert torch.allclose(norm(3.5 * x + 7.0), y, rtol=1e-3, atol=1e-3)  # up to eps
    for b in range(2):
        for c in range(2):  # each channel normalised on its own
            assert torch.allclose(y[b, c], _explicit_contrast_norm(x[b, c]))
    small = torch.rand(1, 2, 8, 8)
    assert torch.allclose(norm(small), F.group_norm(small, 2))


def test_positions_handle_single_token_axes_and_are_x_first():
    p = grid_positions((1, 2, 3))
    assert p.shape == (6, 3) and torch.isfinite(p).all()
    assert torch.equal(p[:, 2], torch.zeros(6))                     # z: one token -> position 0
    assert torch.equal(p[:3, 0], torch.tensor([-1.0, 0.0, 1.0]))    # x varies fastest
    assert torch.equal(p[:, 1], torch.tensor([-1.0] * 3 + [1.0] * 3))


def test_position_codes_stay_fp32_under_autocast():
    codes = SinusoidalPositionCodes(2, 64, alpha=100.0)
    p = grid_positions((32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        query, key = codes(p)
    exact_query, exact_key = codes(p)
    for got, exact in zip(query + key, exact_query + exact_key):
        assert got.dtype == torch.float32
        assert torch.equal(got, exact)


def test_low_precision_autocast_logits_close_to_fp32():
    """fp16 autocast where the device supports it; on CPU bf16 (CPU autocast has no fp16 matmuls here)."""
    torch.manual_seed(0)
    net = SymTC(1, 4, embed_dim=64, num_heads=4, channels=(8, 16, 32), num_layers=(1, 1, 1, 1)).eval()
    x = torch.randn(1, 1, 64, 64)
    device, dtype = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.bfloat16)
    net, x = net.to(device), x.to(device)
    with torch.no_grad():
        exact = net(x)
        with torch.autocast(device, dtype=dtype):
            low = net(x)
    relative = (low.float() - exact).norm() / exact.norm()
    assert relative < 0.05, relative


def test_symtc3d_forward_backward_on_a_small_anisotropic_patch():
    patch, spacing = (8, 64, 64), (3.3, 0.6, 0.6)
    geometry = symtc3d_geometry(patch, spacing)
    assert geometry["level_strides"] == ((1, 4, 4), (4, 4, 4))      # thick axis kept at level 1: 2x4x4 tokens
    assert geometry["level_kernels"][0] == (1, 5, 5)
    net = build_symtc(patch, spacing, 2, 3, width="tiny")
    assert isinstance(net, SymTC3D)
    out = net(torch.randn(1, 2, *patch))
    assert out.shape == (1, 3, *patch)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_symtc3d_default_parameter_count_for_a_spider_patch():
    """The default 3D network for a 16x256x256 patch at 3.3x0.5x0.5 mm (documented count)."""
    net = build_symtc((16, 256, 256), (3.3, 0.5, 0.5), 1, 12, width="paper")
    assert net.total_stride == (4, 16, 16)
    assert count(net) == 191_252_076


@pytest.mark.parametrize("patch,spacing", [((64, 96), (1.0, 1.0)), ((8, 64, 64), (3.3, 0.6, 0.6))])
def test_deep_supervision_is_a_variant_not_a_switch(patch, spacing):
    with_heads = build_symtc(patch, spacing, 1, 3, width="tiny", deep_supervision_heads=True,
                             enable_deep_supervision=True)
    inference = build_symtc(patch, spacing, 1, 3, width="tiny", deep_supervision_heads=True)
    inference.load_state_dict(with_heads.state_dict(), strict=True)   # nnU-Net's predictor path
    outputs = with_heads(torch.randn(1, 1, *patch))
    scales = symtc_deep_supervision_scales(patch, spacing)
    assert [tuple(o.shape[2:]) for o in outputs] == [tuple(round(s * f) for s, f in zip(patch, sc)) for sc in scales]
    assert inference(torch.randn(1, 1, *patch)).shape == (1, 3, *patch)
    sum(o.mean() for o in outputs).backward()
    assert all(p.grad is not None for p in with_heads.parameters())
    with pytest.raises(ValueError, match="deep_supervision_heads"):
        build_symtc(patch, spacing, 1, 3, width="tiny", enable_deep_supervision=True)


def test_class_dependent_layers_are_all_under_seg_layers():
    for heads in (False, True):
        a = build_symtc((64, 64), (1, 1), 1, 3, width="tiny", deep_supervision_heads=heads).state_dict()
        b = build_symtc((64, 64), (1, 1), 1, 7, width="tiny", deep_supervision_heads=heads).state_dict()
        assert a.keys() == b.keys()
        differing = [k for k in a if a[k].shape != b[k].shape]
        assert differing and all(".seg_layers." in f".{k}" for k in differing)


def test_recomputation_gives_the_same_gradients_as_storing():
    """Attention layers and full-resolution CNN paths are checkpointed: same loss and gradients."""
    torch.manual_seed(0)
    recomputed = tiny()
    stored = tiny()
    stored.load_state_dict(recomputed.state_dict())
    flags = [m for m in stored.modules() if hasattr(m, "checkpoint") and isinstance(m.checkpoint, bool)]
    assert sum(m.checkpoint for m in flags) >= 4 + 2    # every attention layer, T0a and T0b CNN paths
    for m in flags:
        m.checkpoint = False
    x = torch.randn(2, 1, 32, 48)
    for net in (recomputed, stored):
        net(x).square().mean().backward()
    for (name, a), b in zip(recomputed.named_parameters(), stored.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), name
