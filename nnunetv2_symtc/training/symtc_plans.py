"""Memory-aware plans for SymTC: a plans transfer from nnU-Net's U-Net plans.

nnU-Net sizes batch and patch for its U-Net. SymTC needs (a) patch sides divisible by its
per-axis total stride (16 in 2D; ``symtc3d_geometry`` in 3D) with at most 32 tokens per axis in
3D, and (b) far more memory per sample. ``plan_symtc`` copies a plans file to a new identifier
(default ``nnUNetPlans_SymTC``), keeps the preprocessed data (same ``data_identifier``), and per
configuration rounds the patch to SymTC's constraints and picks the largest batch (≥ 2 when
possible, shrinking the patch otherwise; at most nnU-Net's own batch, which nnU-Net caps at 5% of
the dataset) whose estimated training memory fits the GPU budget.

Train with ``nnUNetv2_train D 2d 0 -tr SymTCTrainer -p nnUNetPlans_SymTC``.
"""
import json
import math
from copy import deepcopy
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nnunetv2_symtc.networks.from_plans import WIDTHS, symtc3d_geometry

GIB = 2 ** 30
DEFAULT_GPU_MEMORY_GIB = 10.0
ACTIVATION_OVERHEAD = 1.5
"""Peak / stored activations: gradient buffers, allocator slack and workspace during backward."""


def symtc_total_stride(patch_size: Sequence[int], spacing: Sequence[float]) -> List[int]:
    """Per-axis input/token-grid factor SymTC uses for a patch of this size and spacing."""
    if len(patch_size) == 2:
        return [16, 16]
    rounded = [max(16, 16 * math.ceil(p / 16)) for p in patch_size]  # strides as the spacing allows
    s1, s2 = symtc3d_geometry(rounded, spacing)["level_strides"]
    return [a * b for a, b in zip(s1, s2)]


def symtc_patch_size(patch_size: Sequence[int], spacing: Sequence[float]) -> List[int]:
    """``patch_size`` rounded to the nearest valid SymTC patch (multiples of the total stride, ≤ 32 tokens per axis in 3D)."""
    stride = symtc_total_stride(patch_size, spacing)
    patch = [max(f, f * round(p / f)) for p, f in zip(patch_size, stride)]
    if len(patch) == 3:
        patch = [min(p, 32 * f) for p, f in zip(patch, stride)]
    return patch


def estimate_training_memory(patch_size: Sequence[int], spacing: Sequence[float], batch_size: int,
                             num_classes: int, width: str = "paper", input_channels: int = 1,
                             bytes_per_activation: float = 2.5) -> float:
    """Estimated peak training memory in bytes: weights, gradients and AdamW state (fp32) plus
    stored activations (``bytes_per_activation``: ~2.5 under fp16 AMP, 4 in fp32) for SymTC.

    Counts the activations each block keeps for backward (CNN path ~4 hidden + 5 output maps,
    merge 7 maps, head 3 maps, attention tokens; attention layers are recomputed, so only one
    layer's internals (~60 token-width tensors) are live at a time).
    """
    settings = dict(embed_dim=512, num_heads=16, channels=(32, 128, 512), num_layers=(2, 2, 2, 2))
    settings.update(WIDTHS[width])
    e, (c0, c1, c2) = settings["embed_dim"], settings["channels"]
    voxels = math.prod(patch_size)
    stride = symtc_total_stride(patch_size, spacing)
    if len(patch_size) == 2:
        s1 = [4, 4]
    else:
        s1 = list(symtc3d_geometry(symtc_patch_size(patch_size, spacing), spacing)["level_strides"][0])
    full, mid, low = voxels, voxels / math.prod(s1), voxels / math.prod(stride)
    tokens = low  # every attention path has voxels / total-stride tokens

    def block(cin, cout, out_voxels, layers):
        hidden = 2 * max(cin, cout)
        return (4 * hidden + 5 * cout) * out_voxels + (3 + layers) * e * tokens

    elements = (6 * input_channels * full
                + block(input_channels, c0, full, 2) + block(c0, c1, mid, 2) + block(c1, c2, low, 2)
                + block(c2, c2, low, 2) + 7 * c2 * low + block(c2, c1, low, 2) + 7 * c1 * mid
                + block(c1, c0, mid, 2) + 7 * c0 * full + block(c0, c0, full, 2)
                + 3 * c0 * full + 4 * num_classes * full)
    recompute = 60 * e * tokens
    activations = batch_size * (elements * ACTIVATION_OVERHEAD + recompute) * bytes_per_activation
    patch, spacing = tuple(symtc_patch_size(patch_size, spacing)), tuple(float(s) for s in spacing)
    return activations + _parameter_count(patch, spacing, num_classes, width, input_channels) * 16


@lru_cache(maxsize=256)
def _parameter_count(patch_size: tuple, spacing: tuple, num_classes: int, width: str, input_channels: int) -> int:
    import torch

    from nnunetv2_symtc.networks.from_plans import build_symtc

    with torch.device("meta"):
        network = build_symtc(patch_size, spacing, input_channels, num_classes, width)
    return sum(p.numel() for p in network.parameters())


def fit_configuration(patch_size: Sequence[int], spacing: Sequence[float], num_classes: int,
                      gpu_memory_gib: float, width: str = "paper", input_channels: int = 1,
                      max_batch_size: int = 64) -> Dict:
    """Patch (valid for SymTC) and batch size that fit ``gpu_memory_gib``: batch ≥ 2 if the patch
    can be shrunk (largest-token axis first) to allow it, else batch 1 at the largest fitting patch;
    never more than ``max_batch_size`` (``plan_symtc`` passes nnU-Net's own, dataset-capped batch)."""
    budget = gpu_memory_gib * GIB
    patch = symtc_patch_size(patch_size, spacing)
    stride = symtc_total_stride(patch, spacing)

    def memory(p, b):
        return estimate_training_memory(p, spacing, b, num_classes, width, input_channels)

    while memory(patch, 2) > budget and max(p // f for p, f in zip(patch, stride)) > 1:
        axis = max(range(len(patch)), key=lambda a: patch[a] // stride[a])
        patch[axis] -= stride[axis]
    batch = min(max_batch_size, 2 if memory(patch, 2) <= budget else 1)
    while memory(patch, batch + 1) <= budget and batch < max_batch_size:
        batch += 1
    return dict(patch_size=patch, batch_size=batch, estimated_memory_gib=round(memory(patch, batch) / GIB, 2))


def plan_symtc(preprocessed_dataset_folder: Path, source_plans: str = "nnUNetPlans",
               target_plans: str = "nnUNetPlans_SymTC", gpu_memory_gib: float = DEFAULT_GPU_MEMORY_GIB,
               width: str = "paper", configurations: Optional[Sequence[str]] = None) -> Path:
    """Write ``<target_plans>.json`` next to ``<source_plans>.json``; returns its path.

    Configurations that inherit (cascade) keep inheriting; every configuration with its own
    ``patch_size`` is refitted. The preprocessed data is shared (``data_identifier`` unchanged).
    """
    folder = Path(preprocessed_dataset_folder)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise OSError(f"{source}: plans not found; run nnUNetv2_plan_and_preprocess first")
    plans = json.loads(source.read_text())
    dataset_json = folder / "dataset.json"
    if not dataset_json.is_file():
        raise OSError(f"{dataset_json}: not found next to the plans")
    num_classes = len(json.loads(dataset_json.read_text())["labels"])
    input_channels = len(json.loads(dataset_json.read_text())["channel_names"])
    out = deepcopy(plans)
    out["plans_name"] = target_plans
    for name, configuration in out["configurations"].items():
        if configurations is not None and name not in configurations or "patch_size" not in configuration:
            continue
        fit = fit_configuration(configuration["patch_size"], configuration["spacing"], num_classes,
                                gpu_memory_gib, width, input_channels, configuration["batch_size"])
        configuration["patch_size"] = fit["patch_size"]
        configuration["batch_size"] = fit["batch_size"]
        configuration["symtc_estimated_memory_gib"] = fit["estimated_memory_gib"]
    target = folder / f"{target_plans}.json"
    target.write_text(json.dumps(out, indent=4))
    return target
