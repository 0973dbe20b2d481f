"""SymTC plans: nnU-Net plans whose configurations name SymTC / SymTC3D, sized for a GPU.

nnU-Net sizes batch and patch for its U-Net. SymTC needs (a) patch sides divisible by its
per-axis total stride (16 in 2D; ``symtc3d_geometry`` in 3D) with at most 32 tokens per axis in
3D, and (b) far more memory per sample. ``plan_symtc`` copies a plans file to a new identifier
(default ``nnUNetPlans_SymTC``), keeps the preprocessed data (same ``data_identifier``), and per
configuration

- rounds the patch to SymTC's constraints and picks the largest batch (≥ 2 when possible,
  shrinking the patch otherwise; at most nnU-Net's own batch, which nnU-Net caps at 5% of the
  dataset) whose estimated training memory fits the GPU budget, unless ``patch_size`` /
  ``batch_size`` are given;
- writes ``architecture`` = ``{network_class_name: nnunetv2_symtc.networks.SymTC | SymTC3D,
  arch_kwargs, _kw_requires_import: []}``. ``arch_kwargs`` rebuild the network exactly: width,
  heads, layers, channels, ``strides`` (per stage, nnU-Net's format: nnU-Net reads them as
  ``pool_op_kernel_sizes`` for its deep-supervision scales), ``level_kernels``, ``alpha`` and the
  deep-supervision heads. The 3D geometry heuristic runs here, once; nothing is recomputed when
  the network is built for training or inference.

Any trainer then trains SymTC: ``nnUNetv2_train D 2d 0 -p nnUNetPlans_SymTC`` (nnU-Net's own),
``-tr nnUNetTrainerSizeAdaptiveCE`` or ``-tr SymTCTrainer`` (our optimiser recipe).
"""
import json
import math
import pydoc
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.networks.from_plans import WIDTHS, symtc3d_geometry
from nnunetv2_symtc.planning.transfer import planned_configurations, read_source, write_plans

GIB = 2 ** 30
DEFAULT_GPU_MEMORY_GIB = 10.0
ACTIVATION_OVERHEAD = 1.5
"""Peak / stored activations: gradient buffers, allocator slack and workspace during backward."""
RECOMPUTED_TOKEN_TENSORS = 60
"""Token-width tensors one attention layer keeps for its backward pass."""
SYMTC_DEFAULTS = dict(embed_dim=512, num_heads=16, num_layers=(2, 2, 2, 2), channels=(32, 128, 512), alpha=100.0,
                      recompute=True)
"""SymTC's constructor defaults (the paper's network) that a width may override."""
SYMTC_CLASSES = {2: "nnunetv2_symtc.networks.SymTC", 3: "nnunetv2_symtc.networks.SymTC3D"}
"""``network_class_name`` written into the plans, per patch dimensionality."""

Width = Union[str, Mapping[str, object]]
"""A preset name (``paper``, ``small``, ``tiny``) or SymTC keyword arguments (``embed_dim``,
``num_heads``, ``num_layers``, ``channels``, ``alpha``, ``recompute``); missing keys take the paper's values."""
PerConfiguration = Union[None, object, Mapping[str, object]]


def resolve_width(width: Width) -> Dict[str, object]:
    """Complete SymTC width settings (every key of ``SYMTC_DEFAULTS``) for a preset or a dict."""
    if isinstance(width, str):
        if width not in WIDTHS:
            raise InputError(f"unknown SymTC width {width!r}; choose one of {sorted(WIDTHS)} or give numbers")
        width = WIDTHS[width]
    unknown = set(width) - set(SYMTC_DEFAULTS)
    if unknown:
        raise InputError(f"SymTC width: unknown keys {sorted(unknown)}; allowed: {sorted(SYMTC_DEFAULTS)}")
    settings = {**SYMTC_DEFAULTS, **width}
    settings["num_layers"] = [int(n) for n in settings["num_layers"]]
    settings["channels"] = [int(c) for c in settings["channels"]]
    if len(settings["num_layers"]) != 4 or len(settings["channels"]) != 3:
        raise InputError(f"SymTC width: num_layers needs 4 values and channels 3, got {settings['num_layers']} "
                         f"and {settings['channels']}")
    if int(settings["embed_dim"]) % int(settings["num_heads"]):
        raise InputError(f"SymTC width: embed_dim {settings['embed_dim']} is not divisible by num_heads "
                         f"{settings['num_heads']}")
    settings["embed_dim"], settings["num_heads"] = int(settings["embed_dim"]), int(settings["num_heads"])
    settings["alpha"] = float(settings["alpha"])
    settings["recompute"] = bool(settings["recompute"])
    return settings


def symtc_architecture(patch_size: Sequence[int], spacing: Sequence[float], width: Width = "paper") -> Dict:
    """The plans' ``architecture`` entry for SymTC (2D patch) or SymTC3D (3D patch).

    ``strides`` has one entry per stage (full, 1/s1, 1/(s1·s2), bottleneck): 2D
    ``[[1, 1], [4, 4], [4, 4], [1, 1]]``; 3D from ``symtc3d_geometry(patch_size, spacing)``.
    """
    dim = len(patch_size)
    if dim == 2:
        level_strides, level_kernels = ((4, 4), (4, 4)), ((5, 5), (5, 5), (3, 3))
    elif dim == 3:
        geometry = symtc3d_geometry(patch_size, spacing)
        level_strides, level_kernels = geometry["level_strides"], geometry["level_kernels"]
    else:
        raise InputError(f"SymTC needs a 2D or 3D patch size, got {list(patch_size)}")
    one = [1] * dim
    arch_kwargs = dict(resolve_width(width),
                       strides=[one, *[[int(s) for s in level] for level in level_strides], one],
                       level_kernels=[[int(k) for k in level] for level in level_kernels],
                       deep_supervision_heads=True, coarse_to_fine_heads=True)
    return dict(network_class_name=SYMTC_CLASSES[dim], arch_kwargs=arch_kwargs, _kw_requires_import=[])


def build_from_architecture(architecture: Mapping, input_channels: int, num_classes: int,
                            deep_supervision: bool = False):
    """The network a plans ``architecture`` entry names, as nnU-Net builds it (without initialisation)."""
    network_class = pydoc.locate(architecture["network_class_name"])
    if network_class is None:
        raise InputError(f"network class {architecture['network_class_name']!r} of the plans cannot be imported")
    return network_class(input_channels=input_channels, num_classes=num_classes, deep_supervision=deep_supervision,
                         **architecture["arch_kwargs"])


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


def _meta_network(architecture: Mapping, input_channels: int, num_classes: int):
    """``build_from_architecture`` on the meta device (shapes only: no memory, no initialisation)."""
    import torch

    with torch.device("meta"):
        return build_from_architecture(architecture, input_channels, num_classes)


@lru_cache(maxsize=256)
def _network_sizes(architecture_json: str, input_channels: int, num_classes: int, patch_size: tuple) -> tuple:
    """``(parameters, stored activation elements per sample, tokens per attention path, attention
    layers whose internals are stored rather than recomputed)`` of a plans architecture for a patch."""
    from nnunetv2_symtc.networks.attention import AttentionLayer

    network = _meta_network(json.loads(architecture_json), input_channels, num_classes)
    stored = sum(isinstance(m, AttentionLayer) and not m.checkpoint for m in network.modules())
    return (sum(p.numel() for p in network.parameters()), network.compute_conv_feature_map_size(patch_size),
            math.prod(patch_size) // math.prod(network.total_stride), stored)


def architecture_training_memory(architecture: Mapping, patch_size: Sequence[int], batch_size: int,
                                 num_classes: int, input_channels: int = 1,
                                 bytes_per_activation: float = 2.5) -> float:
    """Estimated peak training memory in bytes of a SymTC plans architecture: weights, gradients
    and AdamW state (fp32, 16 bytes per parameter) plus stored activations
    (``bytes_per_activation``: ~2.5 under fp16 AMP, 4 in fp32; ``compute_conv_feature_map_size``
    of the network) and the attention internals: one recomputed layer's at a time, or every
    layer's with ``recompute=False``."""
    parameters, elements, tokens, stored_layers = _network_sizes(
        json.dumps(architecture, sort_keys=True), input_channels, num_classes, tuple(int(p) for p in patch_size))
    embed_dim = architecture["arch_kwargs"]["embed_dim"]
    attention = RECOMPUTED_TOKEN_TENSORS * embed_dim * tokens * max(1, stored_layers)
    return batch_size * (elements * ACTIVATION_OVERHEAD + attention) * bytes_per_activation + parameters * 16


def estimate_training_memory(patch_size: Sequence[int], spacing: Sequence[float], batch_size: int,
                             num_classes: int, width: Width = "paper", input_channels: int = 1,
                             bytes_per_activation: float = 2.5) -> float:
    """``architecture_training_memory`` of the SymTC that ``plan_symtc`` plans for this patch and spacing."""
    return architecture_training_memory(symtc_architecture(patch_size, spacing, width), patch_size, batch_size,
                                        num_classes, input_channels, bytes_per_activation)


def fit_configuration(patch_size: Sequence[int], spacing: Sequence[float], num_classes: int,
                      gpu_memory_gib: float, width: Width = "paper", input_channels: int = 1,
                      max_batch_size: int = 64, fixed_patch: bool = False,
                      batch_size: Optional[int] = None) -> Dict:
    """Patch (valid for SymTC), batch size and ``architecture`` that fit ``gpu_memory_gib``.

    Default: batch ≥ 2 if the patch can be shrunk (largest-token axis first) to allow it, else
    batch 1 at the largest fitting patch; never more than ``max_batch_size`` (``plan_symtc``
    passes nnU-Net's own, dataset-capped batch). ``fixed_patch=True`` keeps ``patch_size`` as
    given (it must be valid for SymTC); a given ``batch_size`` is used as is (the patch shrinks
    to fit it unless fixed). The estimate is returned, never enforced, for given values.
    """
    budget = gpu_memory_gib * GIB
    patch = [int(p) for p in patch_size] if fixed_patch else symtc_patch_size(patch_size, spacing)

    def memory(p, b):
        return estimate_training_memory(p, spacing, b, num_classes, width, input_channels)

    if not fixed_patch:
        stride = symtc_total_stride(patch, spacing)
        wanted = batch_size or 2
        while memory(patch, wanted) > budget and max(p // f for p, f in zip(patch, stride)) > 1:
            axis = max(range(len(patch)), key=lambda a: patch[a] // stride[a])
            patch[axis] -= stride[axis]
    architecture = symtc_architecture(patch, spacing, width)
    _meta_network(architecture, input_channels, num_classes).validate_patch_size(patch)
    if batch_size is None:
        batch_size = min(max_batch_size, 2 if memory(patch, 2) <= budget else 1)
        while memory(patch, batch_size + 1) <= budget and batch_size < max_batch_size:
            batch_size += 1
    return dict(patch_size=patch, batch_size=int(batch_size), architecture=architecture,
                estimated_memory_gib=round(memory(patch, batch_size) / GIB, 2))


def _for_configuration(value: PerConfiguration, name: str):
    """``value[name]`` for a per-configuration dict, else ``value`` itself (one value for all)."""
    return value.get(name) if isinstance(value, Mapping) else value


def plan_symtc(preprocessed_dataset_folder: Path, source_plans: str = "nnUNetPlans",
               target_plans: str = "nnUNetPlans_SymTC", gpu_memory_gib: float = DEFAULT_GPU_MEMORY_GIB,
               width: Width = "paper", configurations: Optional[Sequence[str]] = None,
               patch_size: PerConfiguration = None, batch_size: PerConfiguration = None) -> Path:
    """Write ``<target_plans>.json`` next to ``<source_plans>.json``; returns its path.

    Args:
        width: preset name (``paper``, ``small``, ``tiny``) or a dict of SymTC keyword arguments
            (e.g. ``dict(embed_dim=64, num_heads=4, channels=(16, 32, 64))``; missing keys: paper).
        configurations: configurations to plan (default: every one with its own ``patch_size``);
            the others are copied unchanged. Cascade configurations keep inheriting.
        patch_size: ``None`` (fit to memory), one patch for every planned configuration (its
            length must match theirs), or ``{configuration: patch}``. A given patch must be valid
            for SymTC (sides divisible by the total stride) and is not rounded.
        batch_size: ``None`` (fit to memory), one batch size for all, or ``{configuration: batch}``.
    """
    source, plans, dataset = read_source(preprocessed_dataset_folder, source_plans, configurations)
    num_classes, input_channels = len(dataset["labels"]), len(dataset["channel_names"])
    out, selected = planned_configurations(plans, target_plans, configurations, "patch_size")
    for name, configuration in selected:
        patch = _for_configuration(patch_size, name)
        if patch is not None and len(patch) != len(configuration["patch_size"]):
            raise InputError(f"configuration {name}: patch size {list(patch)} has {len(patch)} axes, the "
                             f"configuration {len(configuration['patch_size'])}; choose configurations with -c")
        try:
            fit = fit_configuration(patch if patch is not None else configuration["patch_size"],
                                    configuration["spacing"], num_classes, gpu_memory_gib, width, input_channels,
                                    configuration["batch_size"], fixed_patch=patch is not None,
                                    batch_size=_for_configuration(batch_size, name))
        except ValueError as error:
            raise InputError(f"configuration {name}: {error}") from error
        configuration["patch_size"] = fit["patch_size"]
        configuration["batch_size"] = fit["batch_size"]
        configuration["architecture"] = fit["architecture"]
        configuration["symtc_estimated_memory_gib"] = fit["estimated_memory_gib"]
    return write_plans(source, out)
