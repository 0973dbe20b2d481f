"""Merging overlapping phase-2 cutout predictions by neighbour agreement (REFERENCE §5).

Cutout ``k`` (centres counted top to bottom) predicts three vertebrae: above (slot ``k - 1``),
centre (slot ``k``) and below (slot ``k + 1``). Each slot therefore collects up to three *votes*:
the centre answer of its own cutout and the below/above answers of the neighbouring cutouts.

- Two votes are *partners* when their Dice exceeds ``min_dice`` (0.3); Dice is computed only inside
  the source region both cutouts see, so padding at the field-of-view edge does not count as
  disagreement.
- A slot is *confirmed* when at least two votes agree. Its mask is every voxel claimed by at
  least half of the agreeing votes that see it: the majority when three agree, their union when two do.
- A slot whose votes all disagree is a *conflict*: it falls back to its centre vote, is placed after
  every confirmed slot and is flagged. A slot seen by one cutout only (beyond the outermost
  centres) is *single*.
- Slots are placed in order of agreement (more partners first, then higher mean Dice); voxels
  already owned are never overwritten.

Everything is in source voxels; votes are stored as boolean masks over their cutout's source box.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_symtc.instance.cutouts import Cutout
from nnunetv2_symtc.labels import PHASE2_CENTRE, PHASE2_LABELS, PHASE2_SLOT_OFFSETS

_CLASS_NAMES = {v: k for k, v in PHASE2_LABELS.items()}


@dataclass
class Vote:
    """One cutout's answer for one slot: a mask over the cutout's source ``box``."""

    slot: int
    cutout: int
    phase2_class: int
    box: Tuple[slice, ...]
    mask: np.ndarray

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())


def cutout_votes(cutout_number: int, cutout: Cutout, prediction: np.ndarray,
                 allowed: Optional[np.ndarray] = None) -> List[Vote]:
    """The votes of cutout ``cutout_number`` from its phase-2 ``prediction`` (cutout grid, classes
    0–3); ``allowed`` (source grid, bool) restricts votes to e.g. the semantic vertebra voxels."""
    pasted = cutout.paste(prediction)
    if allowed is not None:
        pasted = np.where(allowed[cutout.box], pasted, 0)
    return [Vote(cutout_number + offset, cutout_number, phase2_class, cutout.box, pasted == phase2_class)
            for phase2_class, offset in PHASE2_SLOT_OFFSETS.items()]


def _intersect(a: Tuple[slice, ...], b: Tuple[slice, ...]) -> Optional[Tuple[slice, ...]]:
    box = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.start >= s.stop for s in box) else box


def _within(vote: Vote, box: Tuple[slice, ...]) -> np.ndarray:
    return vote.mask[tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, vote.box))]


def vote_dice(a: Vote, b: Vote) -> float:
    """Dice of two votes inside the region both cutouts see (0 if they share none or both are empty there)."""
    box = _intersect(a.box, b.box)
    if box is None:
        return 0.0
    ma, mb = _within(a, box), _within(b, box)
    total = int(ma.sum()) + int(mb.sum())
    return 2.0 * int((ma & mb).sum()) / total if total else 0.0


def _agreeing_group(votes: List[Vote], dice: Dict[Tuple[int, int], float], min_dice: float) -> List[int]:
    """Indices of the largest set of mutually agreeing votes (ties: higher mean Dice, then the centre vote)."""
    best, best_key = [], None
    for size in range(len(votes), 0, -1):
        for group in combinations(range(len(votes)), size):
            pairs = list(combinations(group, 2))
            if any(dice[p] <= min_dice for p in pairs):
                continue
            mean = float(np.mean([dice[p] for p in pairs])) if pairs else 0.0
            has_centre = any(votes[i].phase2_class == PHASE2_CENTRE for i in group)
            key = (mean, has_centre)
            if best_key is None or key > best_key:
                best, best_key = list(group), key
        if best:
            return best
    return best


def _slot_mask(votes: List[Vote], shape: Tuple[int, ...]) -> Tuple[Tuple[slice, ...], np.ndarray]:
    """Voxels claimed by at least half of the ``votes`` whose cutouts see them, in their union box."""
    union = tuple(slice(min(v.box[a].start for v in votes), max(v.box[a].stop for v in votes)) for a in range(len(shape)))
    claimed = np.zeros(tuple(s.stop - s.start for s in union), dtype=np.int16)
    seen = np.zeros_like(claimed)
    for v in votes:
        local = tuple(slice(s.start - u.start, s.stop - u.start) for s, u in zip(v.box, union))
        claimed[local] += v.mask
        seen[local] += 1
    return union, (claimed > 0) & (2 * claimed >= seen)


def merge_by_agreement(votes: Sequence[Vote], shape: Tuple[int, ...], min_dice: float = 0.3
                       ) -> Tuple[np.ndarray, List[dict]]:
    """Merge phase-2 votes into one instance map (uint16, instances 1..n numbered top to bottom).

    Returns the map and one record per placed instance: its ``slot``, the ``votes`` (cutout,
    phase-2 class, voxels), pairwise ``dice``, the ``agreeing`` votes, ``rule`` (``majority``,
    ``union``, ``single`` or ``conflict``), ``agreement`` (mean Dice of the agreeing votes, ``None``
    for one vote) and ``flagged`` (True for a conflict).
    """
    by_slot: Dict[int, List[Vote]] = {}
    for v in votes:
        if v.voxels:
            by_slot.setdefault(v.slot, []).append(v)
    plans = []
    for slot, slot_votes in by_slot.items():
        dice = {(i, j): vote_dice(slot_votes[i], slot_votes[j]) for i, j in combinations(range(len(slot_votes)), 2)}
        group = _agreeing_group(slot_votes, dice, min_dice)
        if len(group) >= 2:
            rule = "majority" if len(group) >= 3 else "union"
        elif len(slot_votes) == 1:
            rule = "single"
        else:
            rule = "conflict"
            centre = [i for i, v in enumerate(slot_votes) if v.phase2_class == PHASE2_CENTRE]
            group = centre or [int(np.argmax([v.voxels for v in slot_votes]))]
        pairs = list(combinations(group, 2))
        agreement = float(np.mean([dice[p] for p in pairs])) if pairs else None
        record = {"slot": slot,
                  "votes": [{"cutout": v.cutout, "as": _CLASS_NAMES[v.phase2_class], "voxels": v.voxels} for v in slot_votes],
                  "dice": {f"{slot_votes[i].cutout}:{_CLASS_NAMES[slot_votes[i].phase2_class]}-"
                           f"{slot_votes[j].cutout}:{_CLASS_NAMES[slot_votes[j].phase2_class]}": round(d, 4)
                           for (i, j), d in dice.items()},
                  "agreeing": [slot_votes[i].cutout for i in group],
                  "rule": rule, "agreement": None if agreement is None else round(agreement, 4),
                  "flagged": rule == "conflict"}
        priority = (rule == "conflict", -len(group), -(agreement or 0.0), slot)
        plans.append((priority, [slot_votes[i] for i in group], record))
    owner = np.zeros(shape, dtype=np.int32)
    slot_of_owner = {}
    for number, (_, group_votes, record) in enumerate(sorted(plans, key=lambda p: p[0]), start=1):
        box, mask = _slot_mask(group_votes, shape)
        target = owner[box]
        free = mask & (target == 0)
        target[free] = number
        record["voxels"] = int(free.sum())
        slot_of_owner[number] = record
    # Number the placed instances top to bottom (by slot), dropping those left without voxels.
    placed = sorted((rec["slot"], number) for number, rec in slot_of_owner.items() if rec["voxels"])
    lut = np.zeros(len(plans) + 1, dtype=np.uint16)
    records = []
    for instance, (_, number) in enumerate(placed, start=1):
        lut[number] = instance
        record = slot_of_owner[number]
        record["instance"] = instance
        records.append(record)
    return lut[owner], records
