"""Build SymTC / SymTC3D from an nnU-Net configuration (patch size and spacing).

2D configurations get the paper's ×4 levels on both axes. 3D configurations get per-axis level
strides and kernels from ``symtc3d_geometry``: an axis is downsampled at a level only as far as
keeps it no coarser than twice the finest axis, so thick sagittal slices are kept (e.g. a
16×256×256 patch at 3.3×0.5×0.5 mm gets total strides 4×16×16, a 4×16×16 token grid).
"""
from typing import Dict, List, Sequence, Tuple

from nnunetv2_symtc.networks.symtc import PAPER_WIDTH, SMALL_WIDTH, SymTC, SymTC3D

TINY_WIDTH = dict(embed_dim=32, num_heads=2, channels=(8, 16, 32), num_layers=(1, 1, 1, 1))
"""A test-scale SymTC (same blocks, ~0.5M parameters in 2D: 495,743 at 15 classes) for the ``_tiny`` trainers that run nnU-Net end to end in CI."""
WIDTHS: Dict[str, dict] = {"paper": PAPER_WIDTH, "small": SMALL_WIDTH, "tiny": TINY_WIDTH}
"""Named SymTC widths (keyword arguments of ``SymTC``)."""

ANISOTROPY_LIMIT = 2.0
"""An axis whose spacing exceeds this multiple of the finest spacing counts as thick."""


def symtc3d_geometry(patch_size: Sequence[int], spacing: Sequence[float]) -> Dict[str, Tuple]:
    """Per-axis ``level_strides`` (each stride 4, 2 or 1) and ``level_kernels`` for SymTC3D.

    At each of the two ×4 levels the finest axes are downsampled by 4; any other axis by the
    largest of 4, 2, 1 that keeps its spacing ≤ ``ANISOTROPY_LIMIT`` × the new finest spacing
    and divides its size. Kernels are 5 / 3 / 3 at full / 1/s1 / 1/f resolution (2D: 5 / 5 / 3), and
    1 along axes that are thick at that resolution.
    """
    if len(patch_size) != 3 or len(spacing) != 3:
        raise ValueError(f"SymTC3D needs a 3D patch size and spacing, got {patch_size} and {spacing}")
    size, current = [int(s) for s in patch_size], [float(s) for s in spacing]
    strides, kernels = [], []
    for full_kernel in (5, 3):  # 5 at full resolution as in 2D; 3 at 1/s1 to keep Conv3d weights moderate
        finest = min(current)
        kernels.append(tuple(1 if sp > ANISOTROPY_LIMIT * finest else full_kernel for sp in current))
        target = 4 * finest
        level = []
        for axis in range(3):
            stride = next(s for s in (4, 2, 1)
                          if size[axis] % s == 0 and (current[axis] * s <= ANISOTROPY_LIMIT * target
                                                      or s == 1))
            level.append(stride)
            size[axis] //= stride
            current[axis] *= stride
        strides.append(tuple(level))
    finest = min(current)
    kernels.append(tuple(1 if sp > ANISOTROPY_LIMIT * finest else 3 for sp in current))
    return dict(level_strides=tuple(strides), level_kernels=tuple(kernels))


def build_symtc(patch_size: Sequence[int], spacing: Sequence[float], num_input_channels: int,
                num_output_channels: int, width: str = "paper", deep_supervision_heads: bool = False,
                enable_deep_supervision: bool = False):
    """SymTC (2D patch) or SymTC3D (3D patch) for a patch size, validated; clear error if it cannot run."""
    if width not in WIDTHS:
        raise ValueError(f"unknown SymTC width {width!r}; choose one of {sorted(WIDTHS)}")
    if enable_deep_supervision and not deep_supervision_heads:
        raise ValueError("deep supervision needs a SymTC built with deep_supervision_heads=True")
    kwargs = dict(WIDTHS[width], deep_supervision_heads=deep_supervision_heads,
                  deep_supervision=enable_deep_supervision)
    if len(patch_size) == 2:
        network = SymTC(num_input_channels, num_output_channels, **kwargs)
    elif len(patch_size) == 3:
        network = SymTC3D(num_input_channels, num_output_channels, **symtc3d_geometry(patch_size, spacing),
                          **kwargs)
    else:
        raise ValueError(f"SymTC needs a 2D or 3D patch size, got {patch_size}")
    network.validate_patch_size(patch_size)
    return network


def build_symtc_from_plans(plans_manager, configuration_manager, num_input_channels: int,
                           num_output_channels: int, enable_deep_supervision: bool = True,
                           width: str = "paper", deep_supervision_heads: bool = False):
    """nnU-Net's ``build_network_architecture`` signature (plus width/heads, bound by the trainers).

    Networks without deep-supervision heads ignore ``enable_deep_supervision`` (there is nothing
    to return but the full-resolution logits); those with heads return the list when it is True.
    """
    return build_symtc(configuration_manager.patch_size, configuration_manager.spacing, num_input_channels,
                       num_output_channels, width, deep_supervision_heads,
                       enable_deep_supervision and deep_supervision_heads)


def symtc_level_strides(patch_size: Sequence[int], spacing: Sequence[float]) -> Tuple[Tuple[int, ...], ...]:
    """Per-axis ``(s1, s2)`` strides ``build_symtc`` uses for this patch (2D: 4 and 4)."""
    if len(patch_size) == 2:
        return (4, 4), (4, 4)
    return symtc3d_geometry(patch_size, spacing)["level_strides"]


def symtc_deep_supervision_scales(patch_size: Sequence[int], spacing: Sequence[float]) -> List[List[float]]:
    """nnU-Net-format scales ``[1, 1/s1, 1/(s1·s2)]`` per axis of SymTC's deep-supervision outputs."""
    s1, s2 = symtc_level_strides(patch_size, spacing)
    return [[1.0] * len(s1), [1 / a for a in s1], [1 / (a * b) for a, b in zip(s1, s2)]]
