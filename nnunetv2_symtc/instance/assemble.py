"""Everything between the phase-2 network and the outputs, on arrays: merge the cutout predictions
by agreement, mask and clean, absorb fragments, name levels, add discs and endplates.

Arrays are PIR (``centres``); the phase-2 predictions are classes 0–3 on each cutout's grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from nnunetv2_symtc.instance.cutouts import Cutout
from nnunetv2_symtc.instance.labeling import absorb_fragments, add_discs_and_endplates, clean_instances, name_vertebrae
from nnunetv2_symtc.instance.merge import cutout_votes, merge_by_agreement
from nnunetv2_symtc.labels import VERTEBRA_VALUES


@dataclass
class CaseOutput:
    """Everything predicted for one case (PIR arrays), before it is written."""

    semantic: np.ndarray
    instance: np.ndarray
    endplate_side: np.ndarray
    probabilities: Optional[np.ndarray]
    metadata: dict
    warnings: List[str] = field(default_factory=list)


def assemble_instances(semantic: np.ndarray, predictions: Sequence[np.ndarray], cutouts: Sequence[Cutout],
                       spacing_zyx: Sequence[float], lowest_vertebra: Optional[int], default_lowest: int,
                       default_rule: str) -> CaseOutput:
    """Merge by agreement, mask and clean, name levels, add discs and endplates (PIR arrays)."""
    warnings: List[str] = []
    vertebra_voxels = np.isin(semantic, VERTEBRA_VALUES)
    votes = [v for k, (cutout, prediction) in enumerate(zip(cutouts, predictions))
             for v in cutout_votes(k, cutout, prediction, vertebra_voxels)]
    merged, records = merge_by_agreement(votes, semantic.shape)
    cleaned, clean_report = clean_instances(merged, semantic)
    if not cutouts:
        warnings.append("no vertebral body found: the instance mask is empty")
    elif not cleaned.any():
        warnings.append("phase 2 assigned no vertebra voxel: the instance mask is empty")
    absorbed, fragments = absorb_fragments(cleaned, semantic, spacing_zyx)
    named, naming = name_vertebrae(absorbed, semantic, spacing_zyx, lowest_vertebra, default_lowest, default_rule,
                                   sacrum_id=None)  # merged ids are candidate numbers; the sacrum comes from semantic
    instance, side, disc_warnings = add_discs_and_endplates(named, semantic, spacing_zyx)
    warnings += disc_warnings
    unnamed = naming.get("unnamed_top_candidates", 0)
    if unnamed:
        warnings.append(f"{unnamed} vertebra candidate(s) above the highest nameable level were removed; "
                        "check the phase-1 segmentation or pass --lowest-vertebra")
    lut = dict(zip(naming["candidates_top_to_bottom"], naming["ids_top_to_bottom"]))
    for fragment in fragments:
        fragment["into_vertebra"] = lut.get(fragment["into"])
        if fragment["action"] != "kept: cut by the field of view":
            warnings.append(f"instance {fragment['instance']} ({fragment['voxels']} voxels, {fragment['ml']} ml) is "
                            f"a fragment, not a vertebra: {fragment['action']}")
    for record in records:
        record["vertebra"] = lut.get(record["instance"])
        if record["flagged"]:
            warnings.append(f"phase-2 cutouts disagree about vertebra slot {record['slot']} "
                            f"(votes {record['dice']}); the centre cutout's answer was used")
    metadata = {"naming": naming, "fragments": fragments, "merge": records, "instance_cleaning": clean_report,
                "cutouts": [c.to_json() for c in cutouts]}
    return CaseOutput(semantic, instance, side, None, metadata, warnings)
