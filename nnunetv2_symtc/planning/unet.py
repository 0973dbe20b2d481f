"""U-Net plans of another size, written beside nnU-Net's own (a plans transfer, like ``plan_symtc``).

nnU-Net sizes its U-Net for a GPU. On a CPU the same plan trains slowly; a U-Net with fewer
features per stage trains several times faster per iteration and, on small structures such as the
phantom's, learns nearly as much per iteration. The preprocessed data is shared (same
``data_identifier``), so no second preprocessing is needed.
"""
from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Optional, Sequence

from nnunetv2_symtc.errors import InputError


def resize_unet_plans(preprocessed_dataset_folder: Path, source_plans: str, target_plans: str, configuration: str,
                      features_per_stage: Optional[Sequence[int]] = None, batch_size: Optional[int] = None) -> Path:
    """Write ``<target_plans>.json`` next to ``<source_plans>.json``; returns its path.

    ``configuration``'s U-Net gets ``features_per_stage`` (one value per stage of the source plan)
    and ``batch_size``; ``None`` keeps the source's value. Every other configuration is copied as is.
    """
    folder = Path(preprocessed_dataset_folder)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise InputError(f"{source}: plans not found; run nnUNetv2_plan_and_preprocess first")
    plans = deepcopy(json.loads(source.read_text()))
    if configuration not in plans["configurations"]:
        raise InputError(f"{source}: no configuration {configuration!r} (has {sorted(plans['configurations'])})")
    plans["plans_name"] = target_plans
    settings = plans["configurations"][configuration]
    kwargs = settings["architecture"]["arch_kwargs"]
    if features_per_stage is not None:
        if len(features_per_stage) != kwargs["n_stages"]:
            raise InputError(f"{source} {configuration}: the U-Net has {kwargs['n_stages']} stages, got "
                             f"{len(features_per_stage)} feature counts {list(features_per_stage)}")
        kwargs["features_per_stage"] = [int(f) for f in features_per_stage]
    if batch_size is not None:
        settings["batch_size"] = int(batch_size)
    target = folder / f"{target_plans}.json"
    target.write_text(json.dumps(plans, indent=4))
    return target
