"""U-Net plans of another size, written beside nnU-Net's own (a plans transfer, like ``plan_symtc``).

nnU-Net sizes its U-Net for a GPU. On a CPU the same plan trains slowly; a U-Net with fewer
features per stage trains about twice as fast per iteration and, on the phantom, reaches the same
Dice within the CPU demo's budget. The preprocessed data is shared (same ``data_identifier``), so
no second preprocessing is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.planning.transfer import planned_configurations, read_source, write_plans


def resize_unet_plans(preprocessed_dataset_folder: Path, source_plans: str, target_plans: str, configuration: str,
                      features_per_stage: Optional[Sequence[int]] = None, batch_size: Optional[int] = None) -> Path:
    """Write ``<target_plans>.json`` next to ``<source_plans>.json``; returns its path.

    ``configuration``'s U-Net gets ``features_per_stage`` (one value per stage of the source plan)
    and ``batch_size``; ``None`` keeps the source's value. Every other configuration is copied as is.
    """
    source, plans, _ = read_source(preprocessed_dataset_folder, source_plans, [configuration])
    out, selected = planned_configurations(plans, target_plans, [configuration], "architecture")
    for _, settings in selected:
        kwargs = settings["architecture"]["arch_kwargs"]
        if features_per_stage is not None:
            if len(features_per_stage) != kwargs["n_stages"]:
                raise InputError(f"{source} {configuration}: the U-Net has {kwargs['n_stages']} stages, got "
                                 f"{len(features_per_stage)} feature counts {list(features_per_stage)}")
            kwargs["features_per_stage"] = [int(f) for f in features_per_stage]
        if batch_size is not None:
            settings["batch_size"] = int(batch_size)
    return write_plans(source, out)
