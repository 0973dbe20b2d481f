"""SymTC / SymTC3D networks: parameter counts, gradient coverage, shapes, numerics, deep supervision."""
import math

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


def _cpu_autocast_unavailable(dtype: torch.dtype):
    """Why CPU autocast in ``dtype`` cannot run a conv + linear here (None if it can)."""
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.nn.Linear(8, 8)(torch.nn.Conv2d(1, 8, 2, stride=2)(torch.ones(1, 1, 4, 4)).flatten(2).transpose(1, 2))
    except (RuntimeError, NotImplementedError) as error:
        return f"CPU autocast in {dtype} is not available in this torch build: {error}"
    return None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_autocast_logits_close_to_fp32_on_cpu(dtype):
    """CPU autocast, both half types. The patch embedding (kernel = stride = 16) runs in fp32:
    oneDNN's bf16 conv with kernel = stride >= 8 returns wrong values on AMX/AVX512-BF16 CPUs
    (relative error ~1.1 before the fix)."""
    reason = _cpu_autocast_unavailable(dtype)
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    net = SymTC(1, 4, embed_dim=64, num_heads=4, channels=(8, 16, 32), num_layers=(1, 1, 1, 1)).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        exact = net(x)
        with torch.autocast("cpu", dtype=dtype):
            low = net(x)
            tokens = net.encoder.T0a.attention.embed(x)
    relative = (low.float() - exact).norm() / exact.norm()
    assert relative < 0.05, relative
    assert tokens.dtype == dtype  # a bare conv under autocast is low precision; SymTC's embedding is not


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: fp16 autocast on CUDA not tested")
def test_fp16_autocast_logits_close_to_fp32_on_cuda():
    torch.manual_seed(0)
    net = SymTC(1, 4, embed_dim=64, num_heads=4, channels=(8, 16, 32), num_layers=(1, 1, 1, 1)).eval().cuda()
    x = torch.randn(1, 1, 64, 64, device="cuda")
    with torch.no_grad():
        exact = net(x)
        with torch.autocast("cuda", dtype=torch.float16):
            low = net(x)
    assert (low.float() - exact).norm() / exact.norm() < 0.05


def test_plans_strides_build_the_same_network_and_every_head_trains_under_nnunet_weights():
    """``strides`` (nnU-Net format) equals ``level_strides``; with nnU-Net's default DS weights
    (lowest output 0) every parameter still gets a gradient (coarse-to-fine heads)."""
    torch.manual_seed(0)
    legacy = SymTC3D(1, 3, **TINY_WIDTH, level_strides=((1, 4, 4), (4, 4, 4)), deep_supervision_heads=True)
    torch.manual_seed(0)
    planned = SymTC3D(input_channels=1, num_classes=3, **TINY_WIDTH, deep_supervision=True,
                      strides=[[1, 1, 1], [1, 4, 4], [4, 4, 4], [1, 1, 1]], deep_supervision_heads=True,
                      coarse_to_fine_heads=True)
    assert planned.level_strides == legacy.level_strides
    assert all(torch.equal(a, b) for a, b in zip(legacy.state_dict().values(), planned.state_dict().values()))
    with pytest.raises(ValueError, match="4 stages"):
        SymTC(1, 3, **TINY_WIDTH, strides=[[4, 4], [4, 4]])
    outputs = planned(torch.randn(1, 1, 8, 64, 64))
    assert [tuple(o.shape[2:]) for o in outputs] == [(8, 64, 64), (8, 16, 16), (2, 4, 4)]
    nnunet_weights = [2 / 3, 1 / 3, 0.0]
    sum(w * o.square().mean() for w, o in zip(nnunet_weights, outputs) if w).backward()
    assert [n for n, p in planned.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []


def test_initialize_redraws_the_position_codes_and_feature_map_size_grows_with_the_patch():
    net = SymTC(1, 3, **TINY_WIDTH)
    codes = net.encoder.T0a.attention.layers[0].attention.position_codes
    with torch.no_grad():
        codes.weight1.fill_(5.0)
    net.apply(net.initialize)
    assert codes.weight1.abs().max() <= 0.5 and 0 <= codes.bias1.min() and codes.bias1.max() <= math.pi
    small, large = net.compute_conv_feature_map_size((64, 64)), net.compute_conv_feature_map_size((128, 128))
    assert small > 64 * 64 * 8 and large == pytest.approx(4 * small, rel=0.01)


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


def test_recompute_changes_memory_not_math():
    """``recompute=False`` stores activations instead of recomputing them: same outputs and gradients."""
    width = dict(embed_dim=16, num_heads=2, channels=(4, 8, 16), num_layers=(1, 1, 1, 1))
    x = torch.randn(2, 1, 32, 32)
    results = []
    for recompute in (True, False):
        torch.manual_seed(0)
        network = SymTC(1, 3, recompute=recompute, **width)
        output = network(x)
        output.square().mean().backward()
        results.append((output.detach(), [p.grad.clone() for p in network.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.equal(out_a, out_b)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(grads_a, grads_b))
